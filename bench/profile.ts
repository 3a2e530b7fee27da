// Where a phase's time goes, kernel by kernel: every compute pass a method's phase encodes gets a
// pair of timestamp queries, and the passes are summed by label over several runs. The whole-phase
// figures of bench/run.ts and bench/compare.ts say how long; this says which dispatches.
//
//   npx tsx bench/profile.ts --methods lorma-pi[,lora,…] --phase step --T 512 --n 1024 --r 8 [--b 16]
//       [--runs 5] [--matmul VARIANT] [--json FILE]
//
// Needs `timestamp-query` (lavapipe, Chromium and GPUs offer it). Per-pass timestamps cost nothing
// measurable on lavapipe, but on a GPU they can take away some overlap between passes; the sum of
// the rows is therefore printed next to the phase's own span.

import { writeFileSync } from 'node:fs';
import type { Context, Tuning } from '../src/runtime.js';
import { loadMethods } from './methods/index.js';
import type { BenchInstance, Phase } from './methods/types.js';
import { benchContext, matmulOption } from './context.js';

const MAX_PASSES = 2048;
const PHASES: readonly Phase[] = ['forward', 'backward', 'step', 'adapterForward', 'adapterBackward'];

function parse(argv: string[]) {
  const o = {
    methods: ['lorma-pi'],
    phase: 'step' as Phase,
    T: 512,
    n: 1024,
    m: 0,
    r: 8,
    b: 16,
    runs: 5,
    matmul: undefined as Tuning['matmul'] | undefined,
    json: undefined as string | undefined,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [a, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`profile: ${a} needs a value`);
    if (a === '--methods' || a === '--method') o.methods = v.split(',');
    else if (a === '--phase') {
      if (!PHASES.includes(v as Phase)) throw new Error(`profile: --phase takes ${PHASES.join(', ')}; got ${v}`);
      o.phase = v as Phase;
    } else if (a === '--matmul') o.matmul = matmulOption('profile', v);
    else if (a === '--json') o.json = v;
    else if (['--T', '--n', '--m', '--r', '--b', '--runs'].includes(a)) {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`profile: ${a} must be a positive integer, got ${v}`);
      o[a.slice(2) as 'T'] = x;
    } else throw new Error(`profile: unknown option ${a}`);
  }
  if (o.m === 0) o.m = o.n;
  return o;
}

interface KernelRow {
  kernel: string;
  passesPerRun: number;
  msPerRun: number;
  share: number;
}

interface Profile {
  method: string;
  phase: Phase;
  /** First pass's beginning to the last pass's end, mean per run. */
  spanMs: number;
  /** The rows summed, mean per run. */
  sumMs: number;
  kernels: KernelRow[];
}

async function profileOne(ctx: Context, inst: BenchInstance, method: string, phase: Phase, runs: number): Promise<Profile> {
  const encode = inst.encode[phase];
  if (!encode) throw new Error(`profile: ${method} has no phase ${phase}`);
  const device = ctx.device;
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * MAX_PASSES });
  const resolve = device.createBuffer({ size: 16 * MAX_PASSES, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: 16 * MAX_PASSES, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const totals = new Map<string, { ms: number; passes: number }>();
  let spanMs = 0;
  try {
    for (let run = 0; run <= runs; run++) {
      const enc = device.createCommandEncoder();
      const labels: string[] = [];
      const begin = enc.beginComputePass.bind(enc);
      // Every pass the phase begins gets the next pair of queries.
      enc.beginComputePass = (desc?: GPUComputePassDescriptor) => {
        const i = labels.length;
        if (i >= MAX_PASSES) throw new Error(`profile: more than ${MAX_PASSES} passes in one phase`);
        labels.push(desc?.label ?? '(unlabelled)');
        return begin({ ...desc, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      };
      await encode(enc);
      if (labels.length === 0) throw new Error(`profile: ${method} ${phase} encoded no compute pass`);
      enc.resolveQuerySet(querySet, 0, 2 * labels.length, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, readback, 0, 16 * labels.length);
      ctx.submit(enc);
      await ctx.sync();
      await readback.mapAsync(GPUMapMode.READ, 0, 16 * labels.length);
      const ts = new BigUint64Array(readback.getMappedRange(0, 16 * labels.length).slice(0));
      readback.unmap();
      if (run === 0) continue; // warm-up: pipelines, scratch and first-touch page faults
      spanMs += Number(ts[2 * labels.length - 1] - ts[0]) / 1e6;
      labels.forEach((label, i) => {
        // Rows by the whole label, sizes included ('matmul 512x1024x8', 'fft inverse 1024x256'): the
        // thin rank-r products and the base product are different tuning targets.
        const k = label;
        const t = totals.get(k) ?? { ms: 0, passes: 0 };
        t.ms += Number(ts[2 * i + 1] - ts[2 * i]) / 1e6;
        t.passes++;
        totals.set(k, t);
      });
    }
  } finally {
    querySet.destroy();
    resolve.destroy();
    readback.destroy();
  }
  const sumMs = [...totals.values()].reduce((s, t) => s + t.ms, 0) / runs;
  const kernels = [...totals]
    .map(([kernel, t]) => ({ kernel, passesPerRun: t.passes / runs, msPerRun: t.ms / runs, share: t.ms / runs / sumMs }))
    .sort((a, b) => b.msPerRun - a.msPerRun);
  return { method, phase, spanMs: spanMs / runs, sumMs, kernels };
}

async function main() {
  const o = parse(process.argv.slice(2));
  const ctx = await benchContext(o.matmul);
  if (!ctx.features.has('timestamp-query')) throw new Error('profile: this adapter offers no timestamp-query');
  const { methods, unavailable } = await loadMethods(o.methods);
  if (unavailable.length) throw new Error(unavailable.map((u) => `${u.method}: ${u.reason}`).join('; '));
  const shape = { T: o.T, n: o.n, m: o.m, r: o.r, b: o.b };
  const device = ctx.adapterInfo.description || `${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`.trim();
  console.log(
    `# Kernel profile: ${o.phase}, T=${o.T} n=${o.n} m=${o.m} r=${o.r} b=${o.b}; mean of ${o.runs} runs; ${device}; ${new Date().toISOString()}\n`,
  );
  const profiles: Profile[] = [];
  for (const m of methods) {
    if (m.supports && !m.supports(shape)) {
      console.log(`## ${m.method}\n\nskipped: the shape does not suit it\n`);
      continue;
    }
    const inst = await m.setup(ctx, shape);
    try {
      const p = await profileOne(ctx, inst, m.method, o.phase, o.runs);
      profiles.push(p);
      console.log(`## ${m.method}\n\nspan ${p.spanMs.toFixed(2)} ms (first pass begin to last pass end); passes sum to ${p.sumMs.toFixed(2)} ms\n`);
      console.log('| kernel | passes / run | ms / run | share |\n| --- | --- | --- | --- |');
      for (const k of p.kernels) console.log(`| ${k.kernel} | ${k.passesPerRun} | ${k.msPerRun.toFixed(3)} | ${(100 * k.share).toFixed(1)} % |`);
      console.log('');
    } finally {
      inst.destroy();
    }
  }
  if (o.json)
    writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), device, shape, phase: o.phase, runs: o.runs, profiles }, null, 2));
  ctx.destroy();
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
