#!/usr/bin/env node
// peft-wgsl command line: `peft-wgsl vectors FILE --out RESULT [--check] [--tol X]`.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { duplicateKey } from './adapters.js';
import { Context } from './runtime.js';
import { runVectors } from './vectors/index.js';
import { checkVectorFile } from './vectors/types.js';

const USAGE = `usage: peft-wgsl vectors FILE --out RESULT [--check] [--tol X]
  Runs every case of a test-vector file on this machine's WebGPU device and writes what it
  computed to RESULT. --check compares with the file's outputs and exits 1 when any relative
  error passes --tol (default 1e-5), and also when anything went unchecked: every case must
  compare at least one output, so a case with no expected outputs, an unsupported method or a
  malformed field fails the check, and so does a run that compared nothing. Without --check,
  exits 1 when a case fails to run or no case ran. Exits 2 on bad usage or a file that is not
  a JSON object with a 'cases' array. The format, and test/vectors/cases.json (the repository's
  own cases), are described in docs/vectors.md.`;

function fail(message: string): never {
  process.stderr.write(`peft-wgsl: ${message}\n${USAGE}\n`);
  process.exit(2);
}

/** The file as JSON: strict UTF-8, and no key named twice in one object (JSON.parse keeps the last). */
function readJson(file: string): unknown {
  let text: string;
  let parsed: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(file));
    parsed = JSON.parse(text);
  } catch (e) {
    fail(`cannot read ${file}: ${(e as Error).message}`);
  }
  const dup = duplicateKey(text);
  if (dup) fail(`${file}: names ${dup} twice`);
  return parsed;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'vectors') fail(`unknown command '${command}'`);
  let file: string | undefined;
  let out: string | undefined;
  let check = false;
  let tol = 1e-5;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--out') out = rest[++i] ?? fail('--out needs a file name');
    else if (a === '--check') check = true;
    else if (a === '--tol') {
      const v = Number(rest[++i]);
      if (!(v > 0)) fail(`--tol needs a positive number, got '${rest[i]}'`);
      tol = v;
    } else if (a.startsWith('--')) fail(`unknown option '${a}'`);
    else if (file === undefined) file = a;
    else fail(`unexpected argument '${a}'`);
  }
  if (!file) fail('missing FILE');
  if (!out) fail('missing --out RESULT');
  const parsed = readJson(file);
  // The file's shape is checked before a device is opened, so a wrong file fails at once.
  try {
    checkVectorFile(parsed);
  } catch (e) {
    fail(`${file}: ${(e as Error).message}`);
  }
  const ctx = await Context.create();
  try {
    const report = await runVectors(ctx, parsed, { check, tol });
    for (const line of report.lines) process.stdout.write(`${line}\n`);
    // Written through a temporary name so a crash never leaves a half-written result.
    writeFileSync(`${out}.tmp`, JSON.stringify(report.result));
    renameSync(`${out}.tmp`, out);
    return report.failed ? 1 : 0;
  } finally {
    ctx.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`peft-wgsl: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
