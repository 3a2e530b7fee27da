// Fused attention (src/attention.ts) against the naive two-pass attention that materialises the
// T×T scores, composed from the package's matmul and a small softmax kernel written here. Both do
// forward + backward (dq, dk, dv) on the same inputs; timed with timestamp queries in interleaved
// rounds; reports ms, the ratio and the bytes each allocates. docs/attention.md records a run.
//
//   npx tsx bench/attention.ts [--T 512] [--heads 4] [--headDim 32] [--rounds 5] [--full]   (--full: non-causal)

import { Context } from '../src/runtime.js';
import { attentionBackward, attentionForward } from '../src/attention.js';
import { matmul } from '../src/ops/matmul.js';
import type { Tensor } from '../src/tensor.js';
import { uniform } from '../src/random.js';
import { medianOf, timeEncoded } from './timing.js';

// The naive path's own kernels: head-major copies in and out (the package's matmul takes packed
// matrices), the masked row softmax, and dS = P ⊙ (dP − rowsum(dP ⊙ P)). One invocation per row.
const NAIVE = `
struct NP { T: u32, heads: u32, hd: u32, causal: u32, scale: f32, h: u32 }
@group(0) @binding(0) var<uniform> P: NP;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// dst [T, hd] = head P.h of src [T, heads·hd], and back.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= P.T * P.hd) { return; }
  let t = g.x / P.hd; let c = g.x % P.hd;
  dst[g.x] = src[(t * P.heads + P.h) * P.hd + c];
}
@compute @workgroup_size(64)
fn scatter(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= P.T * P.hd) { return; }
  let t = g.x / P.hd; let c = g.x % P.hd;
  dst[(t * P.heads + P.h) * P.hd + c] = src[g.x];
}
// dst = P [T, T], the masked softmax per row of src = S [T, T] (already scaled).
@compute @workgroup_size(64)
fn softmax(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= P.T) { return; }
  let n = select(P.T, i + 1u, P.causal == 1u);
  var m = -3.0e38;
  for (var j = 0u; j < n; j++) { m = max(m, src[i * P.T + j]); }
  var s = 0.0;
  for (var j = 0u; j < n; j++) { let e = exp(src[i * P.T + j] - m); dst[i * P.T + j] = e; s += e; }
  for (var j = 0u; j < P.T; j++) { dst[i * P.T + j] = select(0.0, dst[i * P.T + j] / s, j < n); }
}
// dst = dP [T, T] in, dS out, with src = P.
@compute @workgroup_size(64)
fn softmax_grad(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= P.T) { return; }
  var d = 0.0;
  for (var j = 0u; j < P.T; j++) { d += src[i * P.T + j] * dst[i * P.T + j]; }
  for (var j = 0u; j < P.T; j++) { dst[i * P.T + j] = src[i * P.T + j] * (dst[i * P.T + j] - d); }
}
`;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

const T = arg('T', 512);
const heads = arg('heads', 4);
const headDim = arg('headDim', 32);
const rounds = arg('rounds', 5);
const causal = !process.argv.includes('--full');
const scale = 1 / Math.sqrt(headDim);
const shape = { batch: 1, T, heads, headDim, causal, scale };

const ctx = await Context.create();
ctx.addShader('attention-naive', NAIVE);
const cols = heads * headDim;
const [q, k, v, dy] = [1, 2, 3, 4].map((seed) => ctx.upload(uniform(T * cols, 1, seed), [T, cols]));

// Fused: outputs made once, reused each round.
const fused = {
  y: ctx.tensor([T, cols]),
  lse: ctx.tensor([heads * T]),
  dq: ctx.tensor([T, cols]),
  dk: ctx.tensor([T, cols]),
  dv: ctx.tensor([T, cols]),
};
const fusedBytes = (4 * T * cols + heads * T) * 4 + heads * T * 4; // y, dq, dk, dv, lse + the scratch D

// Naive: per head, head-major copies of q, k, v, dy and the outputs, and two T×T matrices.
const hm = () => ctx.tensor([T, headDim]);
const naive = {
  q: hm(),
  k: hm(),
  v: hm(),
  dy: hm(),
  y: hm(),
  dq: hm(),
  dk: hm(),
  dv: hm(),
  p: ctx.tensor([T, T]),
  ds: ctx.tensor([T, T]),
  out: { y: ctx.tensor([T, cols]), dq: ctx.tensor([T, cols]), dk: ctx.tensor([T, cols]), dv: ctx.tensor([T, cols]) },
};
const naiveBytes = (8 * T * headDim + 2 * T * T + 4 * T * cols) * 4;
const row64 = (n: number) => Math.ceil(n / 64);
await ctx.prepare(['gather', 'scatter', 'softmax', 'softmax_grad'].map((entry) => ({ shader: 'attention-naive', entry })));

function naiveKernel(enc: GPUCommandEncoder, entry: string, h: number, src: Tensor, dst: Tensor, count: number): void {
  ctx.dispatch(enc, {
    shader: 'attention-naive',
    entry,
    params: { T, heads, hd: headDim, causal: causal ? 1 : 0, scale, h },
    bindings: [src, dst],
    workgroups: row64(count),
  });
}

async function naiveStep(enc: GPUCommandEncoder): Promise<void> {
  const n = naive;
  for (let h = 0; h < heads; h++) {
    for (const [s, d] of [
      [q, n.q],
      [k, n.k],
      [v, n.v],
      [dy, n.dy],
    ] as const)
      naiveKernel(enc, 'gather', h, s, d, T * headDim);
    // Forward: P = softmax(scale·Q Kᵀ + mask), Y = P V.
    // S goes to ds (free until dP), so the softmax reads one matrix and writes the other.
    await matmul(ctx, { a: n.q, b: n.k, c: n.ds, M: T, N: T, K: headDim, transB: true, alpha: scale }, enc);
    naiveKernel(enc, 'softmax', h, n.ds, n.p, T);
    await matmul(ctx, { a: n.p, b: n.v, c: n.y, M: T, N: headDim, K: T }, enc);
    // Backward: dV = Pᵀ dY, dP = dY Vᵀ, dS = P ⊙ (dP − rowsum), dQ = scale·dS K, dK = scale·dSᵀ Q.
    await matmul(ctx, { a: n.p, b: n.dy, c: n.dv, M: T, N: headDim, K: T, transA: true }, enc);
    await matmul(ctx, { a: n.dy, b: n.v, c: n.ds, M: T, N: T, K: headDim, transB: true }, enc);
    naiveKernel(enc, 'softmax_grad', h, n.p, n.ds, T);
    await matmul(ctx, { a: n.ds, b: n.k, c: n.dq, M: T, N: headDim, K: T, alpha: scale }, enc);
    await matmul(ctx, { a: n.ds, b: n.q, c: n.dk, M: T, N: headDim, K: T, transA: true, alpha: scale }, enc);
    for (const [s, d] of [
      [n.y, n.out.y],
      [n.dq, n.out.dq],
      [n.dk, n.out.dk],
      [n.dv, n.out.dv],
    ] as const)
      naiveKernel(enc, 'scatter', h, s, d, T * headDim);
  }
}

async function fusedStep(enc: GPUCommandEncoder): Promise<void> {
  await attentionForward(ctx, { ...shape, q, k, v, y: fused.y, lse: fused.lse }, { encoder: enc });
  await attentionBackward(ctx, { ...shape, q, k, v, y: fused.y, lse: fused.lse, dy, dq: fused.dq, dk: fused.dk, dv: fused.dv }, { encoder: enc });
}

// The two must agree before their times mean anything.
for (const step of [naiveStep, fusedStep]) {
  const enc = ctx.device.createCommandEncoder();
  await step(enc);
  ctx.submit(enc);
}
let worst = 0;
for (const name of ['y', 'dq', 'dk', 'dv'] as const) {
  const a = await ctx.read(fused[name]);
  const b = await ctx.read(naive.out[name]);
  let err = 0;
  let ref = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  worst = Math.max(worst, err / ref);
}

const times: Record<'fused' | 'naive', number[]> = { fused: [], naive: [] };
// Worker-thread CPU per run: on lavapipe the shaders' own cost, which other processes' load moves far less than GPU time.
const cpu: Record<'fused' | 'naive', number[]> = { fused: [], naive: [] };
for (let r = 0; r < rounds; r++) {
  // Alternating order, so load from other processes lands on both alike.
  const order = r % 2 === 0 ? (['fused', 'naive'] as const) : (['naive', 'fused'] as const);
  for (const which of order) {
    const t = await timeEncoded(ctx, which === 'fused' ? fusedStep : naiveStep, { warmup: r === 0 ? 1 : 0, reps: 3 });
    times[which].push(t.medianMs);
    if (t.cpuMs !== undefined && t.cpuMs !== null) cpu[which].push(t.cpuMs);
  }
}
const ratios = times.naive.map((n, i) => n / times.fused[i]);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
console.log(
  `attention forward+backward, batch 1, T ${T}, heads ${heads}, headDim ${headDim}, ${causal ? 'causal' : 'full'}; ${ctx.adapterInfo.description || ctx.adapterInfo.vendor}; ${new Date().toISOString().slice(0, 10)}`,
);
console.log(`  fused and naive agree to ${worst.toExponential(2)} (max error relative to each output's scale)`);
console.log(`  fused  ${medianOf(times.fused).toFixed(1)} ms (median of ${rounds}), allocates ${mib(fusedBytes)} beyond q, k, v, dy`);
console.log(
  `  naive  ${medianOf(times.naive).toFixed(1)} ms, allocates ${mib(naiveBytes)} (of which ${mib(2 * T * T * 4)} are the two T×T matrices)`,
);
console.log(`  naive / fused: ${medianOf(ratios).toFixed(2)}× (median of per-round ratios; rounds ${ratios.map((x) => x.toFixed(2)).join(', ')})`);
if (cpu.fused.length === rounds && cpu.naive.length === rounds) {
  const cpuRatios = cpu.naive.map((n, i) => n / cpu.fused[i]);
  console.log(
    `  worker CPU per run: fused ${medianOf(cpu.fused).toFixed(1)} ms, naive ${medianOf(cpu.naive).toFixed(1)} ms; naive / fused ${medianOf(cpuRatios).toFixed(2)}× ` +
      `(rounds ${cpuRatios.map((x) => x.toFixed(2)).join(', ')})`,
  );
}
ctx.destroy();
