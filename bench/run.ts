// `npm run bench`: times every method (forward, backward, a whole step) against plain LoRA, and the
// same math in TensorFlow.js and gpu.js on the same WebGPU device, then writes JSON, a markdown
// table and SVG charts under bench/results/ (ignored by git; `--docs` refreshes docs/benchmarks/).
//
//   npm run bench                      quick: T=128, n=m=768, r=8, b=4 (a few minutes on lavapipe)
//   npm run bench -- --full            n=m ∈ {768, 1024, 4096}, r ∈ {8, 16, 32}, b ∈ {4, 8, 16}
//   npm run bench -- --full --sizes 768,1024   the same without n = 4096 (about an hour of it on lavapipe)
//   options: --json FILE  --out DIR  --docs  --reps N  --warmup N  --methods lora,bora  --no-peers
//            --T N --n N --r N --b N (one custom shape)  --no-progress (plain lines)  --list (print the shapes)
//            --no-ceilings (skip the device ceilings and the roofline columns)
//            --ceilings-only (measure the device's ceilings, print them, write them to --json FILE if given)
//            --matmul VARIANT (tiled, tiled4, tiled-vec4, tiled-vec4-128, subgroup, direct, direct-scalar: the matrix-product kernels every method uses; default: the adapter's choice)

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { SingleBar, Presets } from 'cli-progress';
import type { Context, Tuning } from '../src/runtime.js';
import { MATMUL_VARIANTS as MATMUL_NAMES } from '../src/runtime/device.js';
import { matmul } from '../src/ops/matmul.js';
import { loraBackward, loraForward } from '../src/methods/lora/index.js';
import * as boraFamily from '../src/methods/bora/index.js';
import { relativeError } from '../src/reference/linalg.js';
import { timeEncoded } from './timing.js';
import { benchContext, matmulOption } from './context.js';
import { ceilingsMarkdown, measureCeilings, minimumBytes, roofline, type Ceilings } from './ceilings.js';
import { BLOCK_METHODS, loadMethods, type Unavailable } from './methods/index.js';
import type { BenchMethod, BenchShape, Phase } from './methods/types.js';
import { peerInputs, summarize, type Peer, type PeerInputs, type PeerMethod, type PeerPhase } from './peers/common.js';
import { oursAgainst, writeReport, type BenchRow, type BenchResult, type Check } from './report.js';

interface Options {
  full: boolean;
  json?: string;
  out: string;
  reps: number;
  warmup: number;
  methods?: string[];
  peers: boolean;
  progress: boolean;
  /** Print the planned shapes and exit. */
  list: boolean;
  /** Measure the device's FMA and streaming ceilings first (bench/ceilings.ts). */
  ceilings: boolean;
  ceilingsOnly: boolean;
  /** The context's matmul kernels (the GPU kit runs both); the adapter's default when absent. */
  matmul?: Tuning['matmul'];
  custom?: Partial<BenchShape>;
  /** --full restricted to these n (each with its T). */
  sizes?: number[];
}

/**
 * Whether a method is timed in a shape group. The blocks-only groups of --full (b = 8, 16) time
 * BoRA and MELoRA, and LoRA beside them, so that every ×LoRA ratio comes from runs interleaved in
 * the same group rather than from another group's minutes.
 */
function inGroup(c: { blockOnly: boolean }, method: string): boolean {
  return !c.blockOnly || BLOCK_METHODS.has(method) || method === 'lora';
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    full: false,
    out: 'bench/results',
    reps: 5,
    warmup: 1,
    peers: true,
    progress: true,
    list: false,
    ceilings: true,
    ceilingsOnly: false,
  };
  const custom: Partial<BenchShape> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`bench: ${a} needs a value`);
      return v;
    };
    const int = (name: string) => {
      const v = Number(next());
      if (!Number.isInteger(v) || v < 1) throw new Error(`bench: ${name} must be a positive integer`);
      return v;
    };
    if (a === '--full') o.full = true;
    else if (a === '--quick') o.full = false;
    else if (a === '--json') o.json = next();
    else if (a === '--out') o.out = next();
    // The committed report under docs/ changes only when asked for.
    else if (a === '--docs') o.out = 'docs/benchmarks';
    else if (a === '--reps') o.reps = Math.max(5, int('--reps'));
    else if (a === '--warmup') o.warmup = int('--warmup');
    else if (a === '--methods') o.methods = next().split(',');
    else if (a === '--no-peers') o.peers = false;
    else if (a === '--no-progress') o.progress = false;
    else if (a === '--list') o.list = true;
    else if (a === '--no-ceilings') o.ceilings = false;
    else if (a === '--ceilings-only') o.ceilingsOnly = true;
    else if (a === '--matmul') o.matmul = matmulOption('bench', next());
    else if (a === '--sizes') {
      o.sizes = next().split(',').map(Number);
      for (const v of o.sizes)
        if (![768, 1024, 4096].includes(v)) throw new Error(`bench: --sizes takes 768, 1024 and/or 4096 (the --full sizes), got ${v}`);
    } else if (a === '--T' || a === '--n' || a === '--r' || a === '--b') {
      const key = a.slice(2) as 'T' | 'n' | 'r' | 'b';
      custom[key] = int(a);
    } else if (a === '--help' || a === '-h') {
      console.log(
        'usage: npm run bench -- [--full [--sizes 768,1024,4096]] [--json FILE] [--out DIR (default bench/results)] [--docs (write docs/benchmarks instead)] [--reps N] [--warmup N] [--methods a,b] [--no-peers] [--no-ceilings | --ceilings-only] [--matmul tiled|tiled4|tiled-vec4|tiled-vec4-128|subgroup|direct|direct-scalar] [--T N --n N --r N --b N]',
      );
      process.exit(0);
    } else throw new Error(`bench: unknown option ${a}`);
  }
  if (Object.keys(custom).length) o.custom = custom;
  return o;
}

/** One benchmark configuration: a shape, and whether peers run on it. */
interface Config {
  shape: BenchShape;
  peers: boolean;
  /** Methods with blocks run for every b; the others once per (T, n, r), at the first b. */
  blockOnly: boolean;
  /** Time the base product's kernel variants (once per (T, n)). */
  matmul: boolean;
}

function configs(o: Options): Config[] {
  if (o.custom) {
    const n = o.custom.n ?? 768;
    return [{ shape: { T: o.custom.T ?? 128, n, m: n, r: o.custom.r ?? 8, b: o.custom.b ?? 4 }, peers: true, blockOnly: false, matmul: true }];
  }
  // Quick: one small shape, so 2 shared CPU cores finish in minutes.
  if (!o.full) return [{ shape: { T: 128, n: 768, m: 768, r: 8, b: 4 }, peers: true, blockOnly: false, matmul: true }];
  const out: Config[] = [];
  // T chosen to fit lavapipe: at n = 4096 one base product is already 2·64·4096² ≈ 2.1 GFLOP.
  for (const [n, T] of [
    [768, 256],
    [1024, 256],
    [4096, 64],
  ] as const) {
    if (o.sizes && !o.sizes.includes(n)) continue;
    for (const r of [8, 16, 32]) {
      for (const b of [4, 8, 16]) {
        out.push({ shape: { T, n, m: n, r, b }, peers: r === 16 && b === 4, blockOnly: b !== 4, matmul: r === 8 && b === 4 });
      }
    }
  }
  return out;
}

const PHASES = ['forward', 'backward', 'step'] as const satisfies readonly Phase[];
// Every matmul kernel of the runtime, the CPU-friendly direct ones first (the report's row order).
const MATMUL_VARIANTS = [...MATMUL_NAMES.filter((v) => v.startsWith('direct')), ...MATMUL_NAMES.filter((v) => !v.startsWith('direct'))];

function log(bar: SingleBar | null, msg: string) {
  if (bar) {
    process.stderr.write('\r\x1b[2K' + msg + '\n');
    bar.render?.();
  } else console.error(msg);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.list) {
    for (const c of configs(o)) {
      console.log(
        JSON.stringify(c.shape),
        c.blockOnly ? 'bora/melora (and lora, for the ratios)' : 'all methods',
        c.matmul ? '+ matmul variants' : '',
        c.peers && !c.blockOnly ? '+ peers' : '',
      );
    }
    return;
  }
  const ctx = await benchContext(o.matmul);
  const device = ctx.adapterInfo.description || `${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`.trim() || 'unknown';
  const defaultVariant = ctx.tuning.matmul;
  // Once per run, before the methods, on the same device: the roof every row is placed under.
  let ceilings: Ceilings | null = null;
  if (o.ceilings || o.ceilingsOnly) {
    console.error('bench: measuring the device ceilings (FMA loop, streaming read and copy)');
    ceilings = await measureCeilings(ctx, { log: (msg) => console.error(msg) });
    console.error(
      `bench: roof ${ceilings.peakGflops.toFixed(2)} GFLOP/s, ${ceilings.bandwidthGBs.toFixed(2)} GB/s, ridge ${ceilings.ridge.toFixed(2)} FLOP/byte (${ceilings.seconds.toFixed(0)} s)`,
    );
  }
  if (o.ceilingsOnly) {
    console.log(`# Ceilings of ${device}, ${ceilings!.date}\n\n${ceilingsMarkdown(ceilings!).join('\n')}`);
    if (o.json) {
      mkdirSync(dirnameOf(o.json), { recursive: true });
      writeFileSync(o.json, JSON.stringify({ device, ...ceilings }, null, 2));
      console.log(`wrote ${o.json}`);
    }
    ctx.destroy();
    process.exit(0);
  }
  const { methods, unavailable } = await loadMethods(o.methods);
  const peers: Peer[] = [];
  const peerFailures: Unavailable[] = [];
  if (o.peers) {
    for (const [impl, load] of [
      ['tfjs-webgpu', async () => (await import('./peers/tfjs.js')).createTfjsPeer()],
      ['gpujs-webgpu', async () => (await import('./peers/gpujs.js')).createGpujsPeer()],
    ] as const) {
      try {
        peers.push(await load());
      } catch (e) {
        peerFailures.push({ method: impl, reason: (e as Error).message.split('\n')[0] });
      }
    }
  }
  const cfgs = configs(o);
  const total = cfgs.reduce((sum, c) => {
    const ms = methods.filter((m) => inGroup(c, m.method)).length;
    return sum + (c.matmul ? MATMUL_VARIANTS.length : 0) + ms * PHASES.length + (c.peers && !c.blockOnly ? peers.length * 5 : 0);
  }, 0);
  // A bar on a terminal; plain lines in logs and CI (and with --no-progress), so a long --full
  // run still says where it is.
  const bar =
    o.progress && process.stderr.isTTY
      ? new SingleBar(
          { format: 'bench {bar} {percentage}% | {value}/{total} | {task}', hideCursor: true, clearOnComplete: false, stream: process.stderr },
          Presets.shades_classic,
        )
      : null;
  bar?.start(total, 0, { task: 'starting' });
  let done = 0;
  const benchStart = Date.now();
  const tick = (task: string) => {
    done++;
    if (bar) bar.increment(1, { task });
    else console.error(`bench [${done}/${total}] ${task} (${((Date.now() - benchStart) / 1000).toFixed(0)} s)`);
  };
  const timing = { warmup: o.warmup, reps: o.reps };
  const rows: BenchRow[] = [];
  const checks: Check[] = [];
  const failures: { method: string; shape: BenchShape; error: string }[] = [];
  const started = new Date();
  const load0 = loadavg()[0];

  for (const cfg of cfgs) {
    const sh = cfg.shape;
    const { T, n, m, r } = sh;
    const tag = `T=${T} n=${n} r=${r} b=${sh.b}`;
    // The base matrix product X W0ᵀ in each kernel variant of shaders/matmul.wgsl.
    if (cfg.matmul) {
      const x = ctx.upload(peerInputs(T, n, m, 1, 1).x, [T, n], 'f32', 'bench.x');
      const w0 = ctx.upload(peerInputs(1, n, m, 1, 1).w0, [m, n], 'f32', 'bench.w0');
      const y = ctx.tensor([T, m], 'f32', 'bench.y');
      for (const variant of MATMUL_VARIANTS) {
        bar?.update({ task: `matmul ${variant} ${tag}` });
        ctx.tuning.matmul = variant;
        const t = await timeEncoded(ctx, (enc) => matmul(ctx, { a: x, b: w0, c: y, M: T, N: m, K: n, transB: true }, enc), timing);
        rows.push({
          method: variant === defaultVariant ? 'matmul' : `matmul-${variant}`,
          impl: 'peft-wgsl',
          phase: 'matmul',
          T,
          n,
          m,
          r: null,
          b: null,
          medianMs: t.medianMs,
          minMs: t.minMs,
          maxMs: t.maxMs,
          flops: 2 * T * m * n,
          params: 0,
          bytes: (T * n + m * n + T * m) * 4,
          device,
          clock: t.clock,
          cpuMs: t.cpuMs ?? null,
          variant,
        });
        tick(`matmul ${variant} ${tag}`);
      }
      ctx.tuning.matmul = defaultVariant;
      x.destroy();
      w0.destroy();
      y.destroy();
    }
    // Every method, every phase, interleaved: all instances are set up first, then each rep times
    // every (method, phase) once, the method order rotating from rep to rep. On a shared or
    // virtualised machine the speed of the cores drifts by up to 2x over seconds; timing one
    // method's reps back to back put that drift into the ratios to LoRA, interleaving spreads it
    // over every method alike (the same scheme as bench/compare.ts).
    const live: { method: BenchMethod; b: number | null; inst: Awaited<ReturnType<BenchMethod['setup']>> }[] = [];
    for (const method of methods) {
      if (!inGroup(cfg, method.method)) continue;
      const b = BLOCK_METHODS.has(method.method) ? sh.b! : null;
      if (method.supports && !method.supports(sh)) {
        for (const _ of PHASES) tick(`${method.method} skipped ${tag}`);
        failures.push({ method: method.method, shape: sh, error: 'shape not supported by the method' });
        continue;
      }
      bar?.update({ task: `${method.method} setup ${tag}` });
      try {
        live.push({ method, b, inst: await method.setup(ctx, sh) });
      } catch (e) {
        failures.push({ method: method.method, shape: sh, error: (e as Error).message });
        log(bar, `${method.method} ${tag}: setup failed: ${(e as Error).message}`);
        for (const _ of PHASES) tick(`${method.method} failed ${tag}`);
      }
    }
    const key = (m: string, phase: Phase) => `${m}/${phase}`;
    const got = new Map<string, { samples: number[]; cpu: number[]; clock: string }>();
    const failed = new Set<string>();
    try {
      for (let rep = 0; rep < timing.reps; rep++) {
        // The bar's task line shows each (method, phase, rep); plain output says where the reps are.
        if (!bar)
          console.error(`bench rep ${rep + 1}/${timing.reps} of ${live.length} methods ${tag} (${((Date.now() - benchStart) / 1000).toFixed(0)} s)`);
        for (let i = 0; i < live.length; i++) {
          const { method, inst } = live[(i + rep) % live.length];
          for (const phase of PHASES) {
            const enc = inst.encode[phase];
            const k = key(method.method, phase);
            if (!enc || failed.has(k)) continue;
            bar?.update({ task: `${method.method} ${phase} ${tag} (rep ${rep + 1}/${timing.reps})` });
            try {
              const t = await timeEncoded(ctx, enc, { warmup: rep === 0 ? timing.warmup : 0, reps: 1 });
              const g = got.get(k) ?? { samples: [], cpu: [], clock: t.clock };
              g.samples.push(t.samplesMs[0]);
              if (t.cpuMs !== null && t.cpuMs !== undefined) g.cpu.push(t.cpuMs);
              got.set(k, g);
            } catch (e) {
              failed.add(k);
              failures.push({ method: method.method, shape: sh, error: `${phase}: ${(e as Error).message}` });
              log(bar, `${method.method} ${phase} ${tag}: ${(e as Error).message}`);
            }
          }
        }
      }
      for (const { method, b, inst } of live) {
        for (const phase of PHASES) {
          const g = got.get(key(method.method, phase));
          if (g && !failed.has(key(method.method, phase))) {
            const t = summarize(g.samples, g.clock, g.cpu);
            rows.push({
              method: method.method,
              impl: 'peft-wgsl',
              phase,
              T,
              n,
              m,
              r,
              b,
              medianMs: t.medianMs,
              minMs: t.minMs,
              maxMs: t.maxMs,
              flops: inst.flops[phase] ?? null,
              params: inst.params,
              bytes: inst.bytes,
              device,
              clock: t.clock,
              cpuMs: t.cpuMs ?? null,
              group: cfg.blockOnly ? sh.b : undefined,
            });
          }
          tick(`${method.method} ${phase}${inst.encode[phase] ? '' : ' n/a'} ${tag}`);
        }
      }
    } catch (e) {
      for (const { inst } of live) inst.destroy();
      throw e;
    }
    // Peers on the same shape, checked against our kernels on the same inputs.
    if (cfg.peers && !cfg.blockOnly && peers.length) {
      const b = sh.b!;
      const inp = peerInputs(T, n, m, r, b);
      const ours = await ourOutputs(ctx, inp);
      // Our side of each comparison is timed again, alternating run by run with the peer's, so
      // the speed-ups compare runs seconds apart rather than minutes (see the methods above).
      const mx = ctx.upload(inp.x, [T, n], 'f32', 'bench.pair.x');
      const mw0 = ctx.upload(inp.w0, [m, n], 'f32', 'bench.pair.w0');
      const my = ctx.tensor([T, m], 'f32', 'bench.pair.y');
      const ourEncoder = (pm: PeerMethod, pp: PeerPhase) =>
        pm === 'matmul'
          ? (enc: GPUCommandEncoder) => matmul(ctx, { a: mx, b: mw0, c: my, M: T, N: m, K: n, transB: true }, enc)
          : live.find((l) => l.method.method === pm)?.inst.encode[pp as Phase];
      for (const peer of peers) {
        for (const [pm, pp] of [
          ['matmul', 'matmul'],
          ['lora', 'forward'],
          ['lora', 'backward'],
          ['bora', 'forward'],
          ['bora', 'backward'],
        ] as [PeerMethod, PeerPhase][]) {
          bar?.update({ task: `${peer.impl} ${pm} ${pp} ${tag}` });
          try {
            const ourEnc = ourEncoder(pm, pp);
            const peerSamples: number[] = [];
            const peerCpu: number[] = [];
            const oursSamples: number[] = [];
            const oursCpu: number[] = [];
            let res: Awaited<ReturnType<Peer['run']>> | undefined;
            let ourClock = '';
            for (let rep = 0; rep < timing.reps; rep++) {
              if (ourEnc) {
                const t = await timeEncoded(ctx, ourEnc, { warmup: rep === 0 ? timing.warmup : 0, reps: 1 });
                oursSamples.push(t.samplesMs[0]);
                if (t.cpuMs !== null && t.cpuMs !== undefined) oursCpu.push(t.cpuMs);
                ourClock = t.clock;
              }
              // A warm-up in every call: a peer may build its kernels inside run().
              res = await peer.run(pm, pp, inp, { warmup: Math.max(1, timing.warmup), reps: 1 });
              peerSamples.push(res.timing.samplesMs[0]);
              if (res.timing.cpuMs !== null && res.timing.cpuMs !== undefined) peerCpu.push(res.timing.cpuMs);
            }
            const paired = oursSamples.length ? summarize(oursSamples, ourClock, oursCpu) : null;
            const peerTiming = summarize(peerSamples, res!.timing.clock, peerCpu);
            res = { ...res!, timing: peerTiming };
            const ref = ours[`${pm}.${pp}`];
            const errs: Record<string, number> = {};
            if (ref) for (const [k, v] of Object.entries(res.outputs)) if (ref[k]) errs[k] = relativeError(v, ref[k]);
            const worst = Object.values(errs).length ? Math.max(...Object.values(errs)) : null;
            checks.push({
              impl: peer.impl,
              method: pm,
              phase: pp,
              T,
              n,
              m,
              r,
              b,
              relErr: errs,
              worst,
              against: ref ? 'peft-wgsl' : 'none (our kernel unavailable)',
            });
            const ourRow = rows.find(
              (x) =>
                x.impl === 'peft-wgsl' &&
                x.T === T &&
                x.n === n &&
                x.phase === pp &&
                (pm === 'matmul' ? x.method === 'matmul' : x.method === pm && x.r === r && (pm !== 'bora' || x.b === b)),
            );
            rows.push({
              method: pm,
              impl: peer.impl,
              phase: pp,
              T,
              n,
              m,
              r: pm === 'matmul' ? null : r,
              b: pm === 'bora' ? b : null,
              medianMs: res.timing.medianMs,
              minMs: res.timing.minMs,
              maxMs: res.timing.maxMs,
              flops: ourRow?.flops ?? peerFlops(pm, pp, inp),
              params: pm === 'matmul' ? 0 : (ourRow?.params ?? null),
              bytes: null,
              device: peer.device,
              clock: res.timing.clock,
              cpuMs: res.timing.cpuMs ?? null,
              relErr: worst,
              pairedOursMs: paired?.medianMs ?? null,
              pairedOursCpuMs: paired?.cpuMs ?? null,
            });
          } catch (e) {
            failures.push({ method: `${peer.impl}:${pm}`, shape: sh, error: `${pp}: ${(e as Error).message.split('\n')[0]}` });
            log(bar, `${peer.impl} ${pm} ${pp} ${tag}: ${(e as Error).message.split('\n')[0]}`);
          }
          tick(`${peer.impl} ${pm} ${pp} ${tag}`);
        }
      }
      for (const t of [mx, mw0, my]) t.destroy();
    }
    for (const { inst } of live) inst.destroy();
  }
  bar?.update({ task: 'done' });
  bar?.stop();
  for (const p of peers) await p.dispose();

  const result: BenchResult = {
    date: started.toISOString(),
    finished: new Date().toISOString(),
    mode: o.custom ? 'custom' : o.full ? 'full' : 'quick',
    device,
    deviceIsCpu: ctx.adapterInfo.isCpu,
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', loadavgAtStart: load0, loadavgAtEnd: loadavg()[0], node: process.version },
    matmulDefault: defaultVariant,
    warmup: o.warmup,
    reps: o.reps,
    ceilings,
    rows: finishRows(rows, ceilings),
    checks,
    unavailable: [...unavailable, ...peerFailures],
    failures,
  };
  const files = writeReport(result, o.out);
  if (o.json) {
    mkdirSync(dirnameOf(o.json), { recursive: true });
    writeFileSync(o.json, JSON.stringify(result, null, 2));
    files.push(o.json);
  }
  printSummary(result);
  console.log(`wrote ${files.join(', ')}`);
  ctx.destroy();
  process.exit(0);
}

function dirnameOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '.' : p.slice(0, i);
}

/**
 * Achieved GFLOP/s, the row's place under the roofline (intensity over the minimum bytes of
 * bench/ceilings.ts, share of the roof above it), ratio to LoRA (same impl, shape, r, phase) and
 * our speed-up over each peer.
 */
function finishRows(rows: BenchRow[], ceilings: Ceilings | null): BenchRow[] {
  for (const row of rows) {
    row.gflops = row.flops ? row.flops / row.medianMs / 1e6 : null;
    row.minBytes = minimumBytes(row.phase, row);
    if (row.flops) {
      const p = ceilings ? roofline(ceilings, row.flops, row.minBytes, row.medianMs) : null;
      row.intensity = row.flops / row.minBytes;
      row.attainableGflops = p?.attainableGflops ?? null;
      row.roofShare = p?.share ?? null;
      row.bound = p?.bound ?? null;
    }
    // The LoRA row timed in the same group (interleaved with this row), if the group had one.
    const loraRow = rows.find(
      (x) =>
        x.method === 'lora' &&
        x.impl === row.impl &&
        x.phase === row.phase &&
        x.T === row.T &&
        x.n === row.n &&
        x.r === row.r &&
        x.group === row.group,
    );
    row.vsLora = loraRow && row.r !== null ? row.medianMs / loraRow.medianMs : null;
    row.vsLoraCpu = loraRow?.cpuMs && row.cpuMs && row.r !== null ? row.cpuMs / loraRow.cpuMs : null;
    if (row.impl !== 'peft-wgsl') {
      const ours = rows.find(
        (x) =>
          x.impl === 'peft-wgsl' &&
          x.method === row.method &&
          x.phase === row.phase &&
          x.T === row.T &&
          x.n === row.n &&
          x.r === row.r &&
          x.b === row.b,
      );
      const o = oursAgainst(row, ours);
      row.oursSpeedup = o.ms ? row.medianMs / o.ms : null;
      row.oursSpeedupCpu = o.cpu && row.cpuMs ? row.cpuMs / o.cpu : null;
    }
  }
  return rows;
}

/** Analytic FLOPs (docs/math.md) for a peer whose method module is missing from this run. */
function peerFlops(method: PeerMethod, phase: PeerPhase, p: PeerInputs): number {
  const { T, n, m, r, b } = p;
  const base = 2 * m * n * T;
  if (method === 'matmul') return base;
  const extra = method === 'bora' ? 2 * b * b * r * T : 0;
  return phase === 'forward' ? base + 2 * (n + m) * r * T + extra : base + 4 * (n + m) * r * T + 2 * extra;
}

/** Our LoRA and BoRA outputs on the peers' inputs, for the agreement check. */
async function ourOutputs(ctx: Context, p: PeerInputs): Promise<Record<string, Record<string, Float32Array>>> {
  const out: Record<string, Record<string, Float32Array>> = {};
  const { T, n, m, r, b, s } = p;
  const x = ctx.upload(p.x, [T, n], 'f32', 'check.x');
  const w0 = ctx.upload(p.w0, [m, n], 'f32', 'check.w0');
  const a = ctx.upload(p.a, [r, n], 'f32', 'check.a');
  const bm = ctx.upload(p.bm, [m, r], 'f32', 'check.b');
  const g = ctx.upload(p.g, [T, m], 'f32', 'check.g');
  const held = [x, w0, a, bm, g];
  try {
    const y = ctx.tensor([T, m], 'f32', 'check.y');
    held.push(y);
    await matmul(ctx, { a: x, b: w0, c: y, M: T, N: m, K: n, transB: true });
    out['matmul.matmul'] = { y: await ctx.readF32(y) };
    const f = await loraForward(ctx, { x, w0, a, b: bm, scale: s });
    held.push(f.y, f.z);
    out['lora.forward'] = { y: await ctx.readF32(f.y) };
    const d = await loraBackward(ctx, { x, g, z: f.z, w0, a, b: bm, scale: s });
    held.push(d.dx, d.da, d.db);
    out['lora.backward'] = { dx: await ctx.readF32(d.dx), da: await ctx.readF32(d.da), db: await ctx.readF32(d.db) };
    try {
      const bora = boraFamily;
      const sigma = ctx.upload(p.sigma, [b, b, r], 'f32', 'check.sigma');
      held.push(sigma);
      const bp = { w0, a, b: bm, blocks: b, scale: s, sigma };
      const bf = await bora.boraForward(ctx, { ...bp, x }, { save: true });
      held.push(bf.y, ...(bf.z ? [bf.z] : []), ...(bf.s ? [bf.s] : []));
      out['bora.forward'] = { y: await ctx.readF32(bf.y) };
      const bb = await bora.boraBackward(ctx, { ...bp, x, g, z: bf.z, s: bf.s });
      held.push(bb.dx, bb.da, bb.db, ...(bb.dsigma ? [bb.dsigma] : []));
      out['bora.backward'] = { dx: await ctx.readF32(bb.dx), da: await ctx.readF32(bb.da), db: await ctx.readF32(bb.db) };
      if (bb.dsigma) out['bora.backward'].dsigma = await ctx.readF32(bb.dsigma);
    } catch (e) {
      console.error(`bench: our BoRA kernels could not run for the peer check (${(e as Error).message.split('\n')[0]})`);
    }
  } finally {
    for (const t of held) t.destroy();
  }
  return out;
}

function printSummary(res: BenchResult) {
  const fmt = (v: number | null | undefined, d = 2) => (v === null || v === undefined ? '—' : v.toFixed(d));
  console.log(`\n${res.mode} run on ${res.device} (${res.rows.length} rows)`);
  for (const row of res.rows) {
    const extra =
      row.impl === 'peft-wgsl'
        ? `×LoRA ${fmt(row.vsLora)}`
        : `ours ${fmt(row.oursSpeedup)}× faster (cpu ${fmt(row.oursSpeedupCpu)}×), rel.err ${row.relErr === null || row.relErr === undefined ? '—' : row.relErr.toExponential(1)}`;
    console.log(
      `${row.method.padEnd(14)} ${row.impl.padEnd(13)} ${row.phase.padEnd(9)} T=${row.T} n=${row.n} r=${row.r ?? '-'} b=${row.b ?? '-'}  ` +
        `${fmt(row.medianMs, 1).padStart(8)} ms (cpu ${fmt(row.cpuMs, 0)})  ${fmt(row.gflops).padStart(6)} GFLOP/s  ` +
        `${fmt(row.intensity, 1).padStart(6)} FLOP/B ${row.roofShare == null ? '' : `${(row.roofShare * 100).toFixed(0)}% of ${row.bound} roof  `}${extra}`,
    );
  }
  for (const u of res.unavailable) console.log(`not available: ${u.method}: ${u.reason}`);
  for (const f of res.failures) console.log(`failed: ${f.method} T=${f.shape.T} n=${f.shape.n} r=${f.shape.r}: ${f.error}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
