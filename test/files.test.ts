// Hostile files: seeded mutations of real adapter files, weight files and test-vector files.
// Every mutated file either loads or fails with a PeftError, within a bounded time, and nothing a
// file declares is allocated before it is checked against the file's real size (what a decode
// returns is at most twice the file: F16 and BF16 widen to f32). Replay a failure with the seed
// and path fast-check prints: fc.assert(..., { seed, path }).

import { expect } from 'chai';
import fc from 'fast-check';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { adapterConfig, decodeAdapter, decodeSafetensors, encodeAdapter, tensorsOf, type Adapter, type ModuleTensors } from '../src/adapters.js';
import { METHOD_IDS } from '../src/methods/registry.js';
import { PeftError } from '../src/validate.js';
import { runVectors, vectorRunner } from '../src/vectors/index.js';
import { caseHeader, checkCase, checkVectorFile } from '../src/vectors/types.js';
import { gpu, rand } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
const SEED = 0x13d;

function fileBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

// A collector for the heap check: V8 lets a running process turn on --expose-gc and hands out
// `gc` to a new context.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
function memory(): number {
  collect();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Runs `fn` and returns it only if it threw a PeftError or nothing; anything else fails the property. */
function peftOrNothing(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof PeftError)) throw new Error(`not a PeftError: ${(e as Error)?.stack ?? String(e)}`);
    return e;
  }
}

// ------------------------------------------------------------------ mutations

const HOSTILE: unknown[] = [
  null,
  true,
  0,
  -1,
  -0,
  1.5,
  2 ** 31,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 64,
  1e300,
  '',
  '3',
  'F32',
  'F64',
  'BOOL',
  'f32',
  [],
  [0],
  [-1],
  [2.5],
  [1, 2, 3],
  [2 ** 31, 2 ** 31, 2 ** 31],
  [1e300, 0],
  [null],
  ['1'],
  [[1]],
  {},
  JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 1}}}'),
  JSON.parse(`${'['.repeat(40)}0${']'.repeat(40)}`),
];

/** One change to a JSON value: a path picked by index, and what to do there. */
interface JsonEdit {
  at: number;
  op: 'replace' | 'delete' | 'tweak' | 'rename' | 'duplicate';
  value: number;
}
const jsonEdit = fc.record({
  at: fc.nat(),
  op: fc.constantFrom<JsonEdit['op']>('replace', 'delete', 'tweak', 'rename', 'duplicate'),
  value: fc.nat(),
});

type Container = Record<string, unknown> | unknown[];
function slots(v: unknown, out: [Container, string | number][] = []): [Container, string | number][] {
  const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : v && typeof v === 'object' ? Object.entries(v) : [];
  for (const [k, x] of entries) {
    out.push([v as Container, k]);
    slots(x, out);
  }
  return out;
}

const ODD_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '', 'x'];

/**
 * Applies edits to a JSON value and returns its text. 'duplicate' repeats a key of an object in
 * the text (JSON.stringify cannot), so readers see the same name twice.
 */
function mutateJson(value: unknown, edits: JsonEdit[]): string {
  const root = { v: structuredClone(value) as unknown };
  let dupKey: string | undefined;
  for (const e of edits) {
    const all = slots(root);
    const [parent, key] = all[e.at % all.length];
    const cur = (parent as Record<string | number, unknown>)[key];
    if (e.op === 'replace') (parent as Record<string | number, unknown>)[key] = structuredClone(HOSTILE[e.value % HOSTILE.length]);
    else if (e.op === 'delete') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else if (parent !== root) delete parent[key as string];
    } else if (e.op === 'tweak' && typeof cur === 'number') {
      const tweaks = [cur + 1, cur - 1, -cur, cur * 2 ** 20, cur / 2, cur + 0.5, cur * 4, 2 ** 53 - cur];
      (parent as Record<string | number, unknown>)[key] = tweaks[e.value % tweaks.length];
    } else if (e.op === 'rename' && !Array.isArray(parent) && parent !== root) {
      const name = ODD_KEYS[e.value % ODD_KEYS.length];
      delete parent[key as string];
      Object.defineProperty(parent, name, { value: cur, enumerable: true, writable: true, configurable: true });
    } else if (e.op === 'duplicate' && !Array.isArray(parent) && parent !== root) {
      dupKey = key as string;
    }
  }
  let text = JSON.stringify(root.v) ?? 'null';
  if (dupKey !== undefined) {
    const needle = `${JSON.stringify(dupKey)}:`;
    const at = text.indexOf(needle);
    if (at >= 0) text = `${text.slice(0, at)}${needle}0,${text.slice(at)}`;
  }
  return text;
}

/** A byte-level change: flip, truncate, overwrite the header length, insert or delete bytes. */
interface ByteEdit {
  op: 'flip' | 'truncate' | 'headerLength' | 'insert' | 'remove';
  at: number;
  value: number;
}
const byteEdit = fc.record({
  op: fc.constantFrom<ByteEdit['op']>('flip', 'flip', 'truncate', 'headerLength', 'insert', 'remove'),
  at: fc.nat(),
  value: fc.nat(),
});

function headerLength(bytes: Uint8Array): number {
  if (bytes.length < 8) return 0;
  return Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true));
}

function mutateBytes(src: Uint8Array, e: ByteEdit): Uint8Array {
  // Half the positions fall in the first 8 bytes and the header, where structure lives.
  const hdr = Math.min(src.length, 8 + headerLength(src));
  const pos = e.value % 2 === 0 ? e.at % Math.max(hdr, 1) : e.at % Math.max(src.length, 1);
  if (e.op === 'flip') {
    const out = src.slice();
    out[pos] ^= 1 << (e.value % 8);
    return out;
  }
  if (e.op === 'truncate') {
    // Every length class: inside the length field, inside the header, at its end, in the data.
    const cuts = [0, 1, 7, 8, 9, hdr - 1, hdr, hdr + 1, src.length - 1, pos];
    return src.slice(0, Math.max(0, Math.min(src.length, cuts[e.value % cuts.length])));
  }
  if (e.op === 'headerLength' && src.length >= 8) {
    const h = headerLength(src);
    const lengths = [
      0n,
      1n,
      2n ** 64n - 1n,
      2n ** 63n,
      2n ** 53n + 1n,
      BigInt(src.length),
      BigInt(src.length - 7),
      BigInt(h + 1),
      BigInt(h - 1),
      BigInt(h + 8),
      BigInt(h - 8),
      100n * 1024n * 1024n + 1n,
    ];
    const out = src.slice();
    const v = lengths[e.value % lengths.length];
    new DataView(out.buffer).setBigUint64(0, v < 0n ? 0n : v, true);
    return out;
  }
  if (e.op === 'insert') {
    const k = (e.value % 16) + 1;
    const out = new Uint8Array(src.length + k).fill(e.value & 0xff);
    out.set(src.subarray(0, pos));
    out.set(src.subarray(pos), pos + k);
    return out;
  }
  if (e.op === 'remove') {
    const end = Math.min(src.length, pos + (e.value % 16) + 1);
    const out = new Uint8Array(src.length - (end - pos));
    out.set(src.subarray(0, pos));
    out.set(src.subarray(end), pos);
    return out;
  }
  return src;
}

/** A safetensors file with its header replaced by `text`; the length field is right unless `lie`. */
function withHeader(src: Uint8Array, text: string, lie?: number): Uint8Array {
  const data = src.subarray(8 + headerLength(src));
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lie ?? h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function headerJson(src: Uint8Array): unknown {
  return JSON.parse(new TextDecoder().decode(src.subarray(8, 8 + headerLength(src))));
}

const fileEdit = fc.oneof(
  fc.record({ kind: fc.constant('bytes' as const), edits: fc.array(byteEdit, { minLength: 1, maxLength: 3 }) }),
  fc.record({
    kind: fc.constant('header' as const),
    edits: fc.array(jsonEdit, { minLength: 1, maxLength: 3 }),
    lie: fc.option(fc.nat(), { nil: undefined }),
  }),
);
type FileEdit = typeof fileEdit extends fc.Arbitrary<infer T> ? T : never;

function mutateFile(src: Uint8Array, m: FileEdit): Uint8Array {
  if (m.kind === 'bytes') return m.edits.reduce(mutateBytes, src);
  const text = mutateJson(headerJson(src), m.edits);
  const lies = [undefined, 0, text.length + 1, text.length - 1, src.length * 2];
  return withHeader(src, text, m.lie === undefined ? undefined : lies[m.lie % lies.length]);
}

/** The decoded tensors' bytes: what a declared size could have inflated. */
function decodedBytes(r: unknown): number {
  if (r instanceof Error || !r || typeof r !== 'object') return 0;
  const t = (r as { tensors?: Record<string, { data: ArrayBufferView }> }).tensors ?? {};
  return Object.values(t).reduce((s, x) => s + x.data.byteLength, 0);
}

// ------------------------------------------------------------------ seed files

const n = 12;
const m = 8;
const r = 2;

function adapterFor(method: string): Adapter {
  const t = (): ModuleTensors => {
    const out: ModuleTensors = {};
    const d = method.startsWith('lorma') ? m : 0;
    for (const k of tensorsOf(method)) {
      if (k === 'lora_A') out.lora_A = { shape: [r, d || n], data: rand(r * (d || n)) };
      if (k === 'lora_B') out.lora_B = { shape: [d || m, r], data: rand((d || m) * r) };
      if (k === 'sigma') out.sigma = { shape: [4, 4, r], data: rand(16 * r) };
      if (k === 'indices') out.indices = { shape: [r], data: Uint32Array.from([1, 5]) };
    }
    return out;
  };
  return {
    config: adapterConfig(method, { r, lora_alpha: 4, target_modules: ['h1', 'h2'], blocks: 4 }),
    modules: { h1: t(), h2: t() },
  };
}

const shapes = { h1: { n, m }, h2: { n, m } };

// ------------------------------------------------------------------ tests

describe('hostile files: safetensors and adapters', function () {
  this.timeout(120000);

  it('weight files: 2,500 mutations of the character model load or fail with a PeftError, in bounded time and memory', () => {
    const src = fileBytes(join(ROOT, 'examples/charlm/weights/charlm.safetensors'));
    expect(Object.keys(decodeSafetensors(src).tensors)).to.have.length(7);
    const before = memory();
    let slowest = 0;
    let loaded = 0;
    fc.assert(
      fc.property(fileEdit, (edit) => {
        const bytes = mutateFile(src, edit);
        const t0 = performance.now();
        const result = peftOrNothing(() => decodeSafetensors(bytes, 'charlm weights'));
        slowest = Math.max(slowest, performance.now() - t0);
        if (!(result instanceof PeftError)) loaded++;
        expect(decodedBytes(result)).to.be.at.most(2 * bytes.length);
      }),
      { seed: SEED, numRuns: 2500 },
    );
    // Some mutations leave a valid file (a flipped data bit, a renamed tensor): they load.
    expect(loaded).to.be.above(0);
    expect(slowest, 'slowest decode, ms').to.be.below(1000);
    expect((memory() - before) / 2 ** 20, 'heap growth, MiB').to.be.below(32);
  });

  it('adapter files: 2,500 mutations of each method and of a PEFT-saved adapter load or fail with a PeftError', () => {
    const seeds = METHOD_IDS.map((id) => encodeAdapter(adapterFor(id), shapes));
    seeds.push({
      safetensors: fileBytes(join(ROOT, 'test/fixtures/peft-lora/adapter_model.safetensors')),
      config: readFileSync(join(ROOT, 'test/fixtures/peft-lora/adapter_config.json'), 'utf8'),
    });
    for (const s of seeds) peftOrNothing(() => decodeAdapter(s));
    const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort();
    const before = memory();
    let slowest = 0;
    fc.assert(
      fc.property(
        fc.nat(),
        fc.oneof(
          fc.record({ file: fc.constant('weights' as const), edit: fileEdit }),
          fc.record({ file: fc.constant('config' as const), edits: fc.array(jsonEdit, { minLength: 1, maxLength: 3 }) }),
          fc.record({ file: fc.constant('configBytes' as const), edit: byteEdit }),
        ),
        fc.boolean(),
        (which, edit, withShapes) => {
          const s = seeds[which % seeds.length];
          let files = s;
          if (edit.file === 'weights') files = { ...s, safetensors: mutateFile(s.safetensors, edit.edit) };
          else if (edit.file === 'config') files = { ...s, config: mutateJson(JSON.parse(s.config), edit.edits) };
          else {
            // Bit flips and cuts in the config's text; a header length means nothing there.
            const text = new TextEncoder().encode(s.config);
            const cut = { ...edit.edit, op: edit.edit.op === 'headerLength' ? ('flip' as const) : edit.edit.op };
            const padded = new Uint8Array(8 + text.length);
            padded.set(text, 8);
            files = { ...s, config: new TextDecoder().decode(mutateBytes(padded, cut).subarray(8)) };
          }
          const t0 = performance.now();
          const result = peftOrNothing(() => decodeAdapter(files, withShapes ? shapes : undefined));
          slowest = Math.max(slowest, performance.now() - t0);
          if (!(result instanceof PeftError)) {
            const a = result as Adapter;
            expect(Object.getPrototypeOf(a.modules)).to.equal(null);
            expect(Object.getPrototypeOf(a.config)).to.equal(null);
          }
        },
      ),
      { seed: SEED, numRuns: 2500 },
    );
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).to.deep.equal(protoBefore);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(slowest, 'slowest decode, ms').to.be.below(1000);
    expect((memory() - before) / 2 ** 20, 'heap growth, MiB').to.be.below(32);
  });
});

// ------------------------------------------------------------------ vectors

const CASES = join(ROOT, 'test/vectors/cases.json');
const run = promisify(execFile);
const cli = (args: string[]) =>
  run(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args]).then(
    (res) => ({ code: 0, ...res }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

interface RawCase {
  name: string;
  params: Record<string, unknown>;
  inputs: Record<string, { shape: number[]; data: unknown[] }>;
  outputs?: Record<string, { shape: number[]; data: unknown[] }>;
}
function loraCase(): RawCase {
  const file = JSON.parse(readFileSync(CASES, 'utf8')) as { cases: RawCase[] };
  return file.cases.find((c) => c.name === 'lora')!;
}

describe('hostile files: test vectors', function () {
  this.timeout(180000);

  it('--check fails when nothing was checked, naming the case', async () => {
    const ctx = await gpu();
    const lora = loraCase();
    const edit = (f: (c: RawCase) => void) => {
      const c = structuredClone(lora);
      f(c);
      return c;
    };
    const probes: [string, unknown, RegExp][] = [
      ['a number for a case', { cases: [42] }, /^cases\[0\]: error: cases\[0\] must be an object .* got 42$/m],
      ['null for a case', { cases: [null] }, /^cases\[0\]: error: .* got null$/m],
      ['no params', { cases: [edit((c) => delete (c as Partial<RawCase>).params)] }, /^lora: error: case 'lora': 'params' must be an object/m],
      ['an unknown method', { cases: [edit((c) => (c.params.method = 'dora'))] }, /^lora: unsupported \(method 'dora'\): nothing checked$/m],
      ['no outputs', { cases: [edit((c) => delete c.outputs)] }, /^lora: error: case 'lora': no expected 'outputs'/m],
      ['empty outputs', { cases: [edit((c) => (c.outputs = {}))] }, /^lora: error: case 'lora': no expected 'outputs'/m],
      ['no cases', { cases: [] }, /^FAIL: nothing was checked \(0 cases/m],
    ];
    for (const [what, file, line] of probes) {
      const report = await runVectors(ctx, file, { check: true });
      expect(report.failed, what).to.equal(true);
      expect(report.checked, what).to.equal(0);
      expect(report.lines.join('\n'), what).to.match(line);
      expect(report.lines.at(-1), what).to.match(/^FAIL: nothing was checked/);
    }
    // One good case beside an unsupported one: the good one is checked, the run still fails.
    const mixed = await runVectors(ctx, { cases: [lora, edit((c) => ((c.name = 'later'), (c.params.method = 'dora')))] }, { check: true });
    expect(mixed.failed).to.equal(true);
    expect(mixed.checked).to.equal(6);
    expect(mixed.lines.join('\n')).to.match(/^later: unsupported \(method 'dora'\): nothing checked$/m);
    expect(mixed.lines.at(-1)).to.equal('checked 6 outputs in 1 of 2 cases: FAIL');
    // Without --check, a run in which nothing ran fails too; one that ran passes.
    const none = await runVectors(ctx, { cases: [edit((c) => (c.params.method = 'dora'))] });
    expect(none.failed).to.equal(true);
    expect(none.lines.at(-1)).to.match(/^FAIL: nothing was run/);
    const good = await runVectors(ctx, { cases: [edit((c) => delete c.outputs)] });
    expect(good.failed, good.lines.join('\n')).to.equal(false);
  });

  it('malformed cases get messages naming the case and the field, never a TypeError or a coercion', async () => {
    const ctx = await gpu();
    const lora = loraCase();
    const edit = (f: (c: RawCase) => void) => {
      const c = structuredClone(lora);
      f(c);
      return c;
    };
    const probes: [RawCase, RegExp][] = [
      [
        edit((c) => delete (c.inputs.x as Partial<{ data: unknown }>).data),
        /case 'lora': input 'x': 'data' must be an array of numbers, got nothing/,
      ],
      [
        edit((c) => delete (c.inputs.x as Partial<{ shape: unknown }>).shape),
        /case 'lora': input 'x': 'shape' must be an array of non-negative integers/,
      ],
      [edit((c) => delete (c as Partial<RawCase>).inputs), /case 'lora': 'inputs' must be an object/],
      [edit((c) => delete c.params.T), /case 'lora': params\.T must be a positive integer, got nothing/],
      [edit((c) => (c.params.T = '3')), /case 'lora': params\.T must be a positive integer, got "3"/],
      [edit((c) => (c.params.scale = '2')), /case 'lora': params\.scale must be a finite number, got "2"/],
      [edit((c) => (c.inputs.x.data[4] = null)), /case 'lora': input 'x': data\[4\] is null, expected a number/],
      [edit((c) => (c.outputs!.y.data[0] = null)), /case 'lora': output 'y': data\[0\] is null, expected a number/],
      [edit((c) => c.outputs!.y.data.pop()), /case 'lora': output 'y': shape \[3, 7\] holds 21 values but 'data' has 20/],
      [edit((c) => c.inputs.x.data.pop()), /case 'lora': input 'x' has 29 values, expected 30/],
      [edit((c) => (c.inputs.x.shape = [10, 3])), /case 'lora': input 'x' has shape \[10, 3\], expected \[3, 10\]/],
      [edit((c) => ((c as { name: unknown }).name = 7)), /cases\[0\]: 'name' must be a non-empty string, got 7/],
    ];
    for (const [c, message] of probes) {
      const report = await runVectors(ctx, { cases: [c] }, { check: true });
      expect(report.failed).to.equal(true);
      const res = report.result.cases[0];
      expect(res.status, String(message)).to.equal('error');
      expect(res.message).to.match(message);
      expect(res.message).not.to.match(/TypeError|Cannot read|undefined \(reading/);
    }
    // An expected output the method does not compute, named like an Object.prototype member,
    // is reported missing (not found on the prototype), and one with the wrong shape fails.
    const proto = edit((c) => {
      Object.defineProperty(c.outputs, 'toString', { value: c.outputs!.y, enumerable: true });
      c.outputs!.dx.shape = [10, 3];
    });
    const report = await runVectors(ctx, { cases: [proto] }, { check: true });
    expect(report.failed).to.equal(true);
    expect(report.lines).to.include('lora toString: FAIL (not computed)');
    expect(report.lines).to.include('lora dx: FAIL (computed shape [3, 10], expected [10, 3])');
    expect(report.lines.join('\n')).to.match(/^lora y: \S+ ok$/m);
    expect(Object.getPrototypeOf(report.result.cases[0].errors)).to.equal(null);
  });

  it('3,000 mutations of a vectors file are checked without a TypeError, and 30 of them run', async () => {
    const lora = loraCase();
    const file = { generator: 'test', cases: [lora] };
    const before = memory();
    fc.assert(
      fc.property(fc.array(jsonEdit, { minLength: 1, maxLength: 4 }), (edits) => {
        const parsed = peftOrNothing(() => JSON.parse(mutateJson(file, edits)));
        const top = peftOrNothing(() => checkVectorFile(parsed));
        if (top instanceof PeftError) return;
        for (const [i, c] of (top as { cases: unknown[] }).cases.entries()) {
          const head = peftOrNothing(() => caseHeader(c, i));
          if (head instanceof PeftError) {
            expect(head.message).to.match(/cases\[\d+\]|case '/);
            continue;
          }
          if (!vectorRunner((head as { params: Record<string, unknown> }).params)) continue;
          const checked = peftOrNothing(() => checkCase(c, i, true));
          if (checked instanceof PeftError) expect(checked.message).to.match(/cases\[\d+\]|case '/);
        }
      }),
      { seed: SEED, numRuns: 3000 },
    );
    expect((memory() - before) / 2 ** 20, 'heap growth, MiB').to.be.below(32);

    // Through the GPU: a run never rejects for a case's fault, and a run that passes checked
    // every case it was given.
    const ctx = await gpu();
    const runs = fc.sample(fc.array(jsonEdit, { minLength: 1, maxLength: 2 }), { seed: SEED, numRuns: 30 });
    for (const edits of runs) {
      const parsed = JSON.parse(mutateJson(file, edits)) as unknown;
      if (peftOrNothing(() => checkVectorFile(parsed)) instanceof PeftError) continue;
      const report = await runVectors(ctx, parsed, { check: true });
      if (!report.failed) {
        expect(report.checked).to.be.above(0);
        expect(report.result.cases.every((c) => c.status === 'ok')).to.equal(true);
      }
      for (const c of report.result.cases)
        if (c.status === 'error')
          expect(c.message)
            .to.be.a('string')
            .and.not.match(/Cannot read|is not a function/);
    }
  });

  it('the command exits 1 when nothing was checked and 2 on a file that is no vectors file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peft-files-'));
    const write = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
    const lora = loraCase();
    const unsupported = { ...structuredClone(lora), params: { ...lora.params, method: 'dora' } };
    const nothing = await cli(['vectors', write('u.json', JSON.stringify({ cases: [unsupported] })), '--out', join(dir, 'r.json'), '--check']);
    expect(nothing.code, nothing.stderr).to.equal(1);
    expect(nothing.stdout).to.match(/^lora: unsupported \(method 'dora'\): nothing checked$/m);
    expect(nothing.stdout).to.match(/^FAIL: nothing was checked/m);
    for (const [text, message] of [
      ['[1, 2]', /the file must be a JSON object with a 'cases' array, got \[1,2\]/],
      ['{"cases": {"0": {}}}', /'cases' array, got \{"0":\{\}\}/],
      ['{"cases": [], "cases": [1]}', /names "cases" twice/],
      ['{"cases": [', /cannot read .*JSON/],
    ] as const) {
      const res = await cli(['vectors', write('bad.json', text), '--out', join(dir, 'r.json'), '--check']);
      expect(res.code, text).to.equal(2);
      expect(res.stderr, text).to.match(message);
    }
    writeFileSync(join(dir, 'latin1.json'), new Uint8Array([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]));
    const latin1 = await cli(['vectors', join(dir, 'latin1.json'), '--out', join(dir, 'r.json')]);
    expect(latin1.code).to.equal(2);
    expect(latin1.stderr).to.match(/cannot read .*latin1\.json/);
  });
});
