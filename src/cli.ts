#!/usr/bin/env node
// peft-wgsl command line: `peft-wgsl vectors FILE --out RESULT [--check] [--tol X]`.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Context } from './runtime.js';
import { runVectors } from './vectors/index.js';

const USAGE = `usage: peft-wgsl vectors FILE --out RESULT [--check] [--tol X]
  Runs every case of a test-vector file on this machine's WebGPU device and writes what it
  computed to RESULT. --check compares with the file's outputs and exits 1 when any relative
  error passes --tol (default 1e-5). The format, and test/vectors/cases.json (the repository's
  own cases), are described in docs/vectors.md.`;

function fail(message: string): never {
  process.stderr.write(`peft-wgsl: ${message}\n${USAGE}\n`);
  process.exit(2);
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
  let parsed;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`cannot read ${file}: ${(e as Error).message}`);
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
