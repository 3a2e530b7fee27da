// Interleaved A/B comparison of methods on one shape: the figures behind the per-method cost
// tables in docs/bora.md, docs/sbora.md and docs/lorma.md. Unlike bench/run.ts, which times one
// method after another, each round here runs every method once, in a rotating order, so load from
// other processes lands on all of them alike; ratios are taken per round against the first method.
//
//   npx tsx bench/compare.ts --methods lora,sbora-fa,sbora-fb --phases adapterForward,forward \
//       --T 64 --n 768 --r 8 [--b 4] [--rounds 9] [--calls 16] [--json FILE] [--no-ceilings] [--matmul VARIANT (as in bench/run.ts)]
//
// Two clocks per (method, phase, round): GPU timestamps around the `calls` encoded calls, and the
// CPU time the process's worker threads used meanwhile (on lavapipe: the threads that run the
// shaders). On a shared machine the second is the steadier measure of work done. Each row also
// carries its arithmetic intensity and its share of the device's roofline, from ceilings measured
// once before the rounds (bench/ceilings.ts; --no-ceilings skips them).

import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { Tuning } from '../src/runtime.js';
import { timeEncoded, medianOf } from './timing.js';
import { loadMethods } from './methods/index.js';
import type { BenchInstance, Phase } from './methods/types.js';
import { benchContext, matmulOption } from './context.js';
import { measureCeilings, minimumBytes, roofline, type Ceilings } from './ceilings.js';

const ALL_PHASES: readonly Phase[] = ['adapterForward', 'adapterBackward', 'forward', 'backward', 'step'];

function parse(argv: string[]) {
  const o = {
    methods: ['lora', 'sbora-fa'],
    phases: ['adapterForward'] as Phase[],
    T: 64,
    n: 768,
    r: 8,
    b: 4,
    rounds: 9,
    calls: 16,
    json: undefined as string | undefined,
    ceilings: true,
    /** The context's matmul kernels (the GPU kit compares both); the adapter's default when absent. */
    matmul: undefined as Tuning['matmul'] | undefined,
    base: ['f32'] as ('f32' | 'f16' | 'nf4')[],
    blockSize: 64,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-ceilings') {
      o.ceilings = false;
      continue;
    }
    const v = argv[++i];
    if (v === undefined) throw new Error(`compare: ${a} needs a value`);
    const int = () => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`compare: ${a} must be a positive integer, got ${v}`);
      return x;
    };
    if (a === '--methods') o.methods = v.split(',');
    else if (a === '--phases') {
      o.phases = v.split(',') as Phase[];
      for (const p of o.phases) if (!ALL_PHASES.includes(p)) throw new Error(`compare: --phases takes ${ALL_PHASES.join(', ')}; got ${p}`);
    } else if (a === '--T' || a === '--n' || a === '--r' || a === '--b' || a === '--rounds' || a === '--calls') o[a.slice(2) as 'T'] = int();
    else if (a === '--json') o.json = v;
    else if (a === '--base') {
      const formats = v.split(',');
      for (const f of formats) if (f !== 'f32' && f !== 'f16' && f !== 'nf4') throw new Error(`compare: --base takes f32, f16 or nf4; got ${f}`);
      o.base = formats as typeof o.base;
    } else if (a === '--block-size') o.blockSize = int();
    else if (a === '--matmul') o.matmul = matmulOption('compare', v);
    else throw new Error(`compare: unknown option ${a}`);
  }
  if (o.methods.length * o.base.length < 2) throw new Error('compare: --methods needs at least two methods (the first is the baseline)');
  return o;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const ctx = await benchContext(o.matmul);
  const shape = { T: o.T, n: o.n, m: o.n, r: o.r, b: o.b };
  const { methods, unavailable } = await loadMethods(o.methods);
  if (unavailable.length) throw new Error(`compare: ${unavailable.map((u) => `${u.method}: ${u.reason}`).join('; ')}`);
  // Keep the command-line order: the first method is the baseline.
  methods.sort((x, y) => o.methods.indexOf(x.method) - o.methods.indexOf(y.method));
  const named = (method: string, f: string) => (o.base.length === 1 && f === 'f32' ? method : `${method}@${f}`);
  const inst = new Map<string, BenchInstance>();
  /** Each row's f32-base counterpart, for the per-round ratio to it. */
  const f32Of = new Map<string, string>();
  const names: string[] = [];
  for (const m of methods) {
    if (m.supports && !m.supports(shape)) throw new Error(`compare: ${m.method} does not support ${JSON.stringify(shape)}`);
    for (const f of o.base) {
      const name = named(m.method, f);
      inst.set(name, await m.setup(ctx, { ...shape, base: f, blockSize: o.blockSize }));
      names.push(name);
      if (o.base.includes('f32') && f !== 'f32') f32Of.set(name, named(m.method, 'f32'));
    }
  }
  let ceilings: Ceilings | null = null;
  if (o.ceilings) {
    ceilings = await measureCeilings(ctx);
    console.error(
      `compare: roof ${ceilings.peakGflops.toFixed(2)} GFLOP/s, ${ceilings.bandwidthGBs.toFixed(2)} GB/s (${ceilings.seconds.toFixed(0)} s)`,
    );
  }
  type Sample = { gpu: number; cpu: number | null };
  const samples = new Map<string, Sample[]>();
  const key = (method: string, phase: Phase) => `${method}/${phase}`;
  const load0 = loadavg()[0];
  for (let round = 0; round < o.rounds; round++) {
    for (const phase of o.phases) {
      for (let k = 0; k < names.length; k++) {
        const method = names[(k + round) % names.length];
        const encode = inst.get(method)!.encode[phase];
        if (!encode) continue;
        const t = await timeEncoded(
          ctx,
          async (enc) => {
            for (let c = 0; c < o.calls; c++) await encode(enc);
          },
          { warmup: round === 0 ? 2 : 1, reps: 1 },
        );
        const list = samples.get(key(method, phase)) ?? [];
        list.push({ gpu: t.medianMs / o.calls, cpu: t.cpuMs == null ? null : t.cpuMs / o.calls });
        samples.set(key(method, phase), list);
      }
    }
  }
  const base = names[0];
  const rows: Record<string, unknown>[] = [];
  console.log(
    `# ${names.join(' vs ')}: T=${o.T} n=m=${o.n} r=${o.r} b=${o.b}; ${o.rounds} rounds x ${o.calls} calls; matmul ${ctx.tuning.matmul}; ${ctx.adapterInfo.description || ctx.adapterInfo.vendor}; load ${load0.toFixed(1)}→${loadavg()[0].toFixed(1)}; ${new Date().toISOString()}`,
  );
  if (ceilings)
    console.log(
      `Roof: ${ceilings.peakGflops.toFixed(2)} GFLOP/s (f32 FMA), ${ceilings.bandwidthGBs.toFixed(2)} GB/s (stream), ridge ${ceilings.ridge.toFixed(2)} FLOP/B.`,
    );
  console.log(
    `| phase | method | GPU ms (median) | ratio (median per round) | worker CPU ms (median) | CPU ratio (of totals) | GFLOP/s | FLOP/B | % of roof (bound) |${f32Of.size ? ' W0 bytes | × f32 base (GPU, per round) | × f32 base (CPU, of totals) |' : ''}`,
  );
  console.log(`|---|---|---|---|---|---|---|---|---|${f32Of.size ? '---|---|---|' : ''}`);
  for (const phase of o.phases) {
    const ref = samples.get(key(base, phase));
    if (!ref) continue;
    for (const method of names) {
      const s = samples.get(key(method, phase));
      if (!s) continue;
      const gpu = medianOf(s.map((x) => x.gpu));
      const gpuRatio = medianOf(s.map((x, i) => x.gpu / ref[i].gpu));
      const cpuOk = s.every((x) => x.cpu !== null) && ref.every((x) => x.cpu !== null);
      const cpu = cpuOk ? medianOf(s.map((x) => x.cpu!)) : null;
      // The kernel counts CPU time in 10 ms ticks, so the CPU ratio is one of totals over all rounds.
      const total = (xs: Sample[]) => xs.reduce((a, x) => a + x.cpu!, 0);
      // No ratio when the baseline used under one tick (a GPU, whose worker threads do little).
      const cpuRatio = cpuOk && total(ref) > 0 ? total(s) / total(ref) : null;
      const it = inst.get(method)!;
      const flops = it.flops[phase] ?? null;
      const minBytes = minimumBytes(phase, { ...shape, params: it.params, w0Bytes: it.w0Bytes });
      const f32Name = f32Of.get(method);
      const f32s = f32Name ? samples.get(key(f32Name, phase)) : undefined;
      const vsF32 = f32s ? medianOf(s.map((x, i) => x.gpu / f32s[i].gpu)) : null;
      const vsF32Cpu = f32s && cpuOk && f32s.every((x) => x.cpu !== null) && total(f32s) > 0 ? total(s) / total(f32s) : null;
      const roof = flops && ceilings ? roofline(ceilings, flops, minBytes, gpu) : null;
      const gflops = flops ? flops / gpu / 1e6 : null;
      rows.push({
        phase,
        method,
        baseline: base,
        ...shape,
        gpuMs: gpu,
        gpuRatio,
        cpuMs: cpu,
        cpuRatio,
        flops,
        gflops,
        minBytes,
        intensity: flops ? flops / minBytes : null,
        attainableGflops: roof?.attainableGflops ?? null,
        roofShare: roof?.share ?? null,
        bound: roof?.bound ?? null,
        w0Bytes: it.w0Bytes ?? null,
        vsF32Base: vsF32,
        vsF32BaseCpu: vsF32Cpu,
        samples: s,
      });
      console.log(
        `| ${phase} | ${method} | ${gpu.toFixed(2)} | ${gpuRatio.toFixed(2)} | ${cpu === null ? '–' : cpu.toFixed(2)} | ${cpuRatio === null ? '–' : cpuRatio.toFixed(2)} | ` +
          `${gflops === null ? '–' : gflops.toFixed(2)} | ${flops ? (flops / minBytes).toFixed(1) : '–'} | ${roof ? `${(roof.share * 100).toFixed(0)} % (${roof.bound})` : '–'} |` +
          (f32Of.size
            ? ` ${it.w0Bytes ?? '–'} | ${vsF32 === null ? '–' : vsF32.toFixed(2)} | ${vsF32Cpu === null ? '–' : vsF32Cpu.toFixed(2)} |`
            : ''),
      );
    }
  }
  if (o.json)
    writeFileSync(
      o.json,
      JSON.stringify(
        { date: new Date().toISOString(), device: ctx.adapterInfo, matmul: ctx.tuning.matmul, rounds: o.rounds, calls: o.calls, ceilings, rows },
        null,
        2,
      ),
    );
  for (const i of inst.values()) i.destroy();
  ctx.destroy();
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
