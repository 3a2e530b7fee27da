// The device's own ceilings, measured once per bench run on the device the bench runs on: how many
// f32 (and f16) FLOP/s a register-only FMA loop reaches, and how many bytes/s a streaming read and
// a streaming copy move. Every bench row is then placed under the roofline these make:
// attainable GFLOP/s = min(peak, intensity × bandwidth), intensity = FLOPs / minimum bytes moved.
//
// The kernels are compiled here, straight on the device, rather than through ctx.addShader: the
// f16 one needs `enable f16;` as its first line, and the runtime prepends its prelude to every
// shader it compiles. None of them reads a uniform (sizes are override constants or arrayLength),
// so nothing is lost by skipping the dispatcher; submission and error checks still go through
// ctx.submit / ctx.sync (bench/timing.ts).

import type { Context } from '../src/runtime.js';
import { timeEncoded } from './timing.js';
import type { Phase } from './methods/types.js';

/** One measured ceiling: the best configuration's rate, best and median over its timed samples. */
export interface Ceiling {
  /** 'fma-f32', 'fma-f16', 'read', 'copy'. */
  name: string;
  kind: 'compute' | 'memory';
  unit: 'GFLOP/s' | 'GB/s';
  /** The highest rate among the samples (the ceiling the roofline uses). */
  best: number;
  median: number;
  /** The configuration that reached it, e.g. '4 × vec4 chains, 1024 FMA each, 4096 × 64 invocations'. */
  config: string;
  /** Work per timed sample (FLOPs or bytes) and the sample times in ms. */
  workPerSample: number;
  samplesMs: number[];
}

export interface Ceilings {
  date: string;
  clock: string;
  /** Every configuration tried (FMA chain counts, both memory kernels). */
  measured: Ceiling[];
  /** The best f32 FMA configuration: the roofline's compute roof (every kernel here is f32). */
  computeF32: Ceiling;
  /** The best f16 FMA configuration, where the device has `shader-f16`; drawn for reference. */
  computeF16: Ceiling | null;
  read: Ceiling;
  copy: Ceiling;
  /** The roof: f32 GFLOP/s and the best streaming rate in GB/s (read or copy, whichever is higher). */
  peakGflops: number;
  bandwidthGBs: number;
  /** FLOP per byte where the two roofs meet: below it a kernel is bound by memory. */
  ridge: number;
  /** Seconds the measurement took (wall clock). */
  seconds: number;
}

/** Bytes of one element of every bench tensor: the layers are f32 throughout. */
const ELEMENT_BYTES = 4;

/**
 * The least a phase must move, in bytes: each input read once and each output written once, from
 * the layer's tensors (X: T×n, W0: m×n, the upstream gradient G: T×m, and the method's trainable
 * parameters). Anything a kernel re-reads or keeps between phases (Z, spectra, scratch) is its own
 * choice and not counted, so the intensity is the best the math allows.
 *
 *   forward          X, W0, params        → Y
 *   backward         X, G, W0, params     → dX, d(params)
 *   step             X, G, W0, params     → Y, dX, d(params)   (one fused pass over the inputs)
 *   adapterForward   X, params            → Y
 *   adapterBackward  X, G, params         → dX, d(params)
 *   matmul           X, W0                → Y
 */
export function minimumBytes(phase: Phase | 'matmul', s: { T: number; n: number; m: number; params: number | null; w0Bytes?: number }): number {
  const x = s.T * s.n;
  const w0 = s.m * s.n;
  const yg = s.T * s.m; // Y and G have the same shape
  const p = s.params ?? 0;
  const elements: Record<Phase | 'matmul', number> = {
    matmul: x + w0 + yg,
    forward: x + w0 + p + yg,
    backward: x + yg + w0 + p + x + p,
    step: x + yg + w0 + p + yg + x + p,
    adapterForward: x + p + yg,
    adapterBackward: x + yg + p + x + p,
  };
  // A packed W0 (f16, NF4) is read in its own bytes; phases without W0 are unchanged.
  const w0Read = phase === 'adapterForward' || phase === 'adapterBackward' ? 0 : (s.w0Bytes ?? w0 * ELEMENT_BYTES);
  return (elements[phase] - (w0Read ? w0 : 0)) * ELEMENT_BYTES + w0Read;
}

export interface RooflinePoint {
  /** FLOP per byte (FLOPs / minimumBytes). */
  intensity: number;
  /** min(peak, intensity × bandwidth), GFLOP/s. */
  attainableGflops: number;
  /** Achieved / attainable (0.25 = 25 % of the roof above the point). */
  share: number;
  bound: 'compute' | 'memory';
}

/** Where a kernel that did `flops` in `ms` while moving at least `bytes` sits under the roofline. */
export function roofline(c: Pick<Ceilings, 'peakGflops' | 'bandwidthGBs'>, flops: number, bytes: number, ms: number): RooflinePoint {
  const intensity = flops / bytes;
  const memoryRoof = intensity * c.bandwidthGBs;
  const attainableGflops = Math.min(c.peakGflops, memoryRoof);
  const achieved = flops / ms / 1e6;
  return { intensity, attainableGflops, share: achieved / attainableGflops, bound: memoryRoof < c.peakGflops ? 'memory' : 'compute' };
}

// ------------------------------------------------------------------------------ kernels

const FMA_WG = 64;
const MEM_WG = 256;

/**
 * `chains` independent vec4 accumulators, each `a = fma(a, m, c)` ITERS times: no loads in the
 * loop, so only the FMA pipes and their latency limit it; enough chains hide the latency. m and c
 * come from a buffer so nothing folds, and a = a·m + c converges to c / (1 − m) = 1 (finite in f16
 * too). The result is stored only when it is impossible, so there is no write traffic either.
 */
function fmaShader(dtype: 'f32' | 'f16', chains: number): string {
  const t = `vec4<${dtype}>`;
  const lines: string[] = [];
  if (dtype === 'f16') lines.push('enable f16;');
  lines.push(
    'override ITERS: u32 = 1024u;',
    '@group(0) @binding(0) var<storage, read> seed: array<vec4<f32>, 2>;',
    '@group(0) @binding(1) var<storage, read_write> sink: array<vec4<f32>>;',
    `@compute @workgroup_size(${FMA_WG})`,
    'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {',
    // Scalars: a vec4 of m would hold four registers per lane group on a CPU adapter, which then
    // spills the chains (lavapipe keeps one 8-wide register per vec4 component).
    `  let m = ${dtype}(seed[0].x);`,
    `  let c = ${dtype}(seed[1].x);`,
    `  let start = ${t}(${dtype}(gid.x & 255u) * ${dtype}(0.001));`,
  );
  for (let k = 0; k < chains; k++) lines.push(`  var a${k} = start + ${t}(${dtype}(${k}) * ${dtype}(0.01));`);
  lines.push('  for (var i = 0u; i < ITERS; i++) {');
  for (let k = 0; k < chains; k++) lines.push(`    a${k} = fma(a${k}, ${t}(m), ${t}(c));`);
  lines.push('  }');
  lines.push(`  var sum = a0;`);
  for (let k = 1; k < chains; k++) lines.push(`  sum += a${k};`);
  lines.push('  if (sum.x == -1.0) {', '    sink[0] = vec4<f32>(sum);', '  }', '}');
  return lines.join('\n');
}

/**
 * Streaming kernels over vec4<f32>, in two layouts, and the faster one is the ceiling: `strided`
 * (a grid-stride loop, consecutive invocations on consecutive vec4s: coalesced on a GPU) and
 * `blocked` (each invocation walks its own contiguous run of PER vec4s: a CPU adapter runs the
 * lanes of a workgroup on one core, and contiguous runs keep its prefetchers streaming). `read`
 * sums into four accumulators and stores only the impossible; `copy` writes every element once.
 */
const MEMORY_SHADER = `
override BLOCKED: bool = false;
const PER = 16u;
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

// The j-th element of invocation g: a whole number of PER-runs per pass (the host sizes the grid).
fn at(g: u32, j: u32, total: u32) -> u32 {
  if (BLOCKED) {
    return g * PER + j;
  }
  return g + j * total;
}

@compute @workgroup_size(${MEM_WG})
fn stream_read(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let total = nwg.x * ${MEM_WG}u;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var j = 0u; j < PER; j += 4u) {
    a0 += src[at(gid.x, j, total)];
    a1 += src[at(gid.x, j + 1u, total)];
    a2 += src[at(gid.x, j + 2u, total)];
    a3 += src[at(gid.x, j + 3u, total)];
  }
  let sum = a0 + a1 + a2 + a3;
  if (sum.x == -1.0) {
    dst[gid.x] = sum;
  }
}

@compute @workgroup_size(${MEM_WG})
fn stream_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let total = nwg.x * ${MEM_WG}u;
  for (var j = 0u; j < PER; j++) {
    let i = at(gid.x, j, total);
    dst[i] = src[i];
  }
}
`;
const MEM_PER = 16;

async function compile(device: GPUDevice, code: string, label: string, entry: string, constants: Record<string, number> = {}) {
  // The scope keeps a compile error from surfacing again, uncaptured, at the bench's next sync.
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code, label });
  void device.popErrorScope();
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length)
    throw new Error(`ceilings: ${label} does not compile: ${errors.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join('; ')}`);
  return device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: entry, constants }, label });
}

export interface CeilingOptions {
  /** Timed samples per configuration (after calibration). */
  samples?: number;
  /** Aim for samples of about this many ms, so timer resolution and launch costs vanish. */
  targetMs?: number;
  /** FMA chain counts (vec4 accumulators per invocation) to try; the best is the ceiling. */
  chains?: number[];
  /** Cap on the streaming buffers' size in bytes (default 256 MiB, or the device's binding limit). */
  memoryBytes?: number;
  log?: (msg: string) => void;
}

/**
 * Times `encode(enc, k)` (k repeats of a unit of `work`), first once at k = 1 to size k so a sample
 * takes about targetMs, then `samples` times. Returns rates in work per ns (= G per s).
 */
async function rate(
  ctx: Context,
  name: string,
  kind: Ceiling['kind'],
  config: string,
  work: number,
  encode: (enc: GPUCommandEncoder, k: number) => void,
  o: Required<Pick<CeilingOptions, 'samples' | 'targetMs'>>,
): Promise<Ceiling> {
  const once = async (k: number, reps: number, warmup: number) =>
    timeEncoded(
      ctx,
      (enc) => {
        encode(enc, k);
        return Promise.resolve();
      },
      { warmup, reps },
    );
  let k = 1;
  // Calibrate: a first sample of one unit, then grow k until a sample lasts about targetMs.
  for (let tries = 0; tries < 4; tries++) {
    const t = await once(k, 1, tries === 0 ? 1 : 0);
    if (t.medianMs >= o.targetMs * 0.5) break;
    k = Math.min(4096, Math.ceil((k * o.targetMs) / Math.max(t.medianMs, 0.01)));
  }
  const t = await once(k, o.samples, 0);
  const perSample = work * k;
  const rates = t.samplesMs.map((ms) => perSample / ms / 1e6);
  const sorted = [...rates].sort((a, b) => a - b);
  return {
    name,
    kind,
    unit: kind === 'compute' ? 'GFLOP/s' : 'GB/s',
    best: sorted[sorted.length - 1],
    median: sorted[Math.floor(sorted.length / 2)],
    config: `${config}, ${k} dispatch${k > 1 ? 'es' : ''} per sample`,
    workPerSample: perSample,
    samplesMs: t.samplesMs,
  };
}

/** Measures the FMA and streaming ceilings on `ctx`'s device (a few seconds on lavapipe). */
export async function measureCeilings(ctx: Context, opts: CeilingOptions = {}): Promise<Ceilings> {
  const started = Date.now();
  const o = { samples: opts.samples ?? 5, targetMs: opts.targetMs ?? 60 };
  const log = opts.log ?? (() => {});
  const device = ctx.device;
  const measured: Ceiling[] = [];
  const held: { destroy(): void }[] = [];
  try {
    // ------------------------------------------------------------ compute
    const seed = ctx.upload(new Float32Array([0.999, 0.999, 0.999, 0.999, 0.001, 0.001, 0.001, 0.001]), [8], 'f32', 'ceilings.seed');
    const sink = ctx.tensor([4], 'f32', 'ceilings.sink');
    held.push(seed, sink);
    // Enough invocations to fill a large GPU (65535 workgroups is the per-dimension limit); a CPU
    // adapter is filled by far fewer, and each sample is then a few repeats of the same dispatch.
    const workgroups = Math.min(ctx.limits.maxComputeWorkgroupsPerDimension, ctx.adapterInfo.isCpu ? 256 : 8192);
    const iters = 1024;
    const dtypes: ('f32' | 'f16')[] = ctx.features.has('shader-f16') ? ['f32', 'f16'] : ['f32'];
    for (const dtype of dtypes) {
      for (const chains of opts.chains ?? [1, 2, 3, 4, 6]) {
        const pipe = await compile(device, fmaShader(dtype, chains), `ceilings.fma-${dtype}-${chains}`, 'main', { ITERS: iters });
        const bind = device.createBindGroup({
          layout: pipe.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: seed.buffer } },
            { binding: 1, resource: { buffer: sink.buffer } },
          ],
        });
        const flops = workgroups * FMA_WG * iters * chains * 4 * 2;
        const c = await rate(
          ctx,
          `fma-${dtype}`,
          'compute',
          `${chains} × vec4<${dtype}> chains, ${iters} FMA each, ${workgroups} × ${FMA_WG} invocations`,
          flops,
          (enc, k) => {
            const pass = enc.beginComputePass({ label: `ceilings.fma-${dtype}` });
            pass.setPipeline(pipe);
            pass.setBindGroup(0, bind);
            for (let i = 0; i < k; i++) pass.dispatchWorkgroups(workgroups);
            pass.end();
          },
          o,
        );
        log(`ceilings: ${c.name} ${chains} chains: ${c.best.toFixed(2)} GFLOP/s best, ${c.median.toFixed(2)} median`);
        measured.push(c);
      }
    }
    // ------------------------------------------------------------ memory
    // Far past any cache: 256 MiB where the device binds that much, else its binding limit
    // (128 MiB on lavapipe); a whole number of workgroups' runs (MEM_WG × MEM_PER vec4s each).
    const run = MEM_WG * MEM_PER * 16;
    const maxBytes = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize, opts.memoryBytes ?? 256 * 2 ** 20);
    const memWorkgroups = Math.min(ctx.limits.maxComputeWorkgroupsPerDimension, Math.floor(maxBytes / run));
    const bytes = memWorkgroups * run;
    const src = ctx.tensor([bytes / 4], 'f32', 'ceilings.src');
    const dst = ctx.tensor([bytes / 4], 'f32', 'ceilings.dst');
    held.push(src, dst);
    for (const entry of ['read', 'copy'] as const) {
      for (const blocked of [false, true]) {
        const layout = blocked ? 'blocked' : 'strided';
        const pipe = await compile(device, MEMORY_SHADER, `ceilings.${entry}`, `stream_${entry}`, { BLOCKED: blocked ? 1 : 0 });
        const bind = device.createBindGroup({
          layout: pipe.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: src.buffer } },
            { binding: 1, resource: { buffer: dst.buffer } },
          ],
        });
        const c = await rate(
          ctx,
          entry,
          'memory',
          `${(bytes / 2 ** 20).toFixed(0)} MiB ${entry === 'read' ? 'read' : 'read and written'}, ${layout}, ${memWorkgroups} × ${MEM_WG} invocations`,
          entry === 'read' ? bytes : 2 * bytes,
          (enc, k) => {
            const pass = enc.beginComputePass({ label: `ceilings.${entry}` });
            pass.setPipeline(pipe);
            pass.setBindGroup(0, bind);
            for (let i = 0; i < k; i++) pass.dispatchWorkgroups(memWorkgroups);
            pass.end();
          },
          o,
        );
        log(`ceilings: ${entry} ${layout}: ${c.best.toFixed(2)} GB/s best, ${c.median.toFixed(2)} median`);
        measured.push(c);
      }
    }
  } finally {
    for (const h of held) h.destroy();
  }
  const best = (name: string) =>
    measured.filter((c) => c.name === name).reduce<Ceiling | null>((a, c) => (a === null || c.best > a.best ? c : a), null);
  const computeF32 = best('fma-f32')!;
  const read = best('read')!;
  const copy = best('copy')!;
  const peakGflops = computeF32.best;
  const bandwidthGBs = Math.max(read.best, copy.best);
  return {
    date: new Date(started).toISOString(),
    clock: ctx.features.has('timestamp-query') ? 'timestamp-query' : 'wall-clock',
    measured,
    computeF32,
    computeF16: best('fma-f16'),
    read,
    copy,
    peakGflops,
    bandwidthGBs,
    ridge: peakGflops / bandwidthGBs,
    seconds: (Date.now() - started) / 1000,
  };
}

/** The ceilings as a markdown table (the bench report's and `--ceilings-only`'s). */
export function ceilingsMarkdown(c: Ceilings): string[] {
  const L = ['| ceiling | best | median of samples | configuration |', '| --- | --- | --- | --- |'];
  for (const x of [c.computeF32, ...(c.computeF16 ? [c.computeF16] : []), c.read, c.copy]) {
    L.push(`| ${x.name} | ${x.best.toFixed(2)} ${x.unit} | ${x.median.toFixed(2)} ${x.unit} | ${x.config} |`);
  }
  L.push(
    '',
    `Roof: ${c.peakGflops.toFixed(2)} GFLOP/s (f32 FMA) and ${c.bandwidthGBs.toFixed(2)} GB/s (best stream); ridge at ${c.ridge.toFixed(2)} FLOP/byte. Measured in ${c.seconds.toFixed(1)} s with ${c.clock}.`,
  );
  return L;
}
