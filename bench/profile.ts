// Where a phase's time goes, kernel by kernel: every compute pass a method's phase encodes gets a
// pair of timestamp queries, and the passes are summed by label over several runs. The whole-phase
// figures of bench/run.ts and bench/compare.ts say how long; this says which dispatches.
//
//   npx tsx bench/profile.ts --method lorma-pi --phase step --T 512 --n 1024 --r 8 [--b 16] [--runs 5]
//
// Needs `timestamp-query` (lavapipe, Chromium and GPUs offer it). Per-pass timestamps serialise
// nothing on lavapipe, but on a GPU they can cost a little overlap between passes; the sum of the
// rows is therefore printed next to the phase's own time.

import { Context } from '../src/runtime.js';
import { loadMethods } from './methods/index.js';
import type { Phase } from './methods/types.js';
import { ensureNavigatorGpu } from './peers/common.js';

const MAX_PASSES = 2048;

function parse(argv: string[]) {
  const o = { method: 'lorma-pi', phase: 'step' as Phase, T: 512, n: 1024, m: 0, r: 8, b: 16, runs: 5 };
  for (let i = 0; i < argv.length; i += 2) {
    const [a, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`profile: ${a} needs a value`);
    if (a === '--method') o.method = v;
    else if (a === '--phase') o.phase = v as Phase;
    else if (['--T', '--n', '--m', '--r', '--b', '--runs'].includes(a)) {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`profile: ${a} must be a positive integer, got ${v}`);
      o[a.slice(2) as 'T'] = x;
    } else throw new Error(`profile: unknown option ${a}`);
  }
  if (o.m === 0) o.m = o.n;
  return o;
}

/** Groups the labels of one kernel run at different sizes ("fft 1024x256", "fft 1024x512"). */
function kernelOf(label: string): string {
  return label.replace(/\s+\d+(x\d+)*$/, '');
}

async function main() {
  const o = parse(process.argv.slice(2));
  await ensureNavigatorGpu();
  const ctx = await Context.create();
  if (!ctx.features.has('timestamp-query')) throw new Error('profile: this adapter offers no timestamp-query');
  const { methods, unavailable } = await loadMethods([o.method]);
  if (unavailable.length) throw new Error(unavailable[0].reason);
  const inst = await methods[0].setup(ctx, { T: o.T, n: o.n, m: o.m, r: o.r, b: o.b });
  const encode = inst.encode[o.phase];
  if (!encode) throw new Error(`profile: ${o.method} has no phase ${o.phase}`);
  const device = ctx.device;
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * MAX_PASSES });
  const resolve = device.createBuffer({ size: 16 * MAX_PASSES, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: 16 * MAX_PASSES, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const totals = new Map<string, { ms: number; passes: number }>();
  let phaseMs = 0;
  for (let run = 0; run <= o.runs; run++) {
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
    if (labels.length === 0) throw new Error(`profile: ${o.method} ${o.phase} encoded no compute pass`);
    enc.resolveQuerySet(querySet, 0, 2 * labels.length, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, readback, 0, 16 * labels.length);
    ctx.submit(enc);
    await ctx.sync();
    await readback.mapAsync(GPUMapMode.READ, 0, 16 * labels.length);
    const ts = new BigUint64Array(readback.getMappedRange(0, 16 * labels.length).slice(0));
    readback.unmap();
    if (run === 0) continue; // warm-up: pipelines, scratch and first-touch page faults
    phaseMs += Number(ts[2 * labels.length - 1] - ts[0]) / 1e6;
    labels.forEach((label, i) => {
      const k = kernelOf(label);
      const t = totals.get(k) ?? { ms: 0, passes: 0 };
      t.ms += Number(ts[2 * i + 1] - ts[2 * i]) / 1e6;
      t.passes++;
      totals.set(k, t);
    });
  }
  const rows = [...totals].sort((a, b) => b[1].ms - a[1].ms);
  const sum = rows.reduce((s, [, t]) => s + t.ms, 0) / o.runs;
  console.log(`${o.method} ${o.phase}, T=${o.T} n=${o.n} m=${o.m} r=${o.r}${o.method.includes('bora') ? ` b=${o.b}` : ''}, mean of ${o.runs} runs`);
  console.log(`phase ${(phaseMs / o.runs).toFixed(1)} ms (first pass begin to last pass end); passes sum to ${sum.toFixed(1)} ms\n`);
  console.log('| kernel | passes / run | ms / run | share |\n| --- | --- | --- | --- |');
  for (const [k, t] of rows) {
    console.log(`| ${k} | ${t.passes / o.runs} | ${(t.ms / o.runs).toFixed(2)} | ${((100 * t.ms) / o.runs / sum).toFixed(1)} % |`);
  }
  querySet.destroy();
  resolve.destroy();
  readback.destroy();
  inst.destroy();
  ctx.destroy();
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
