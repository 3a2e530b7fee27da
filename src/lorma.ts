// LoRMA on the GPU (KERNELS.md, "LoRMA"): a multiplicative adapter W' = M·W0 (pre, d = m) or
// W0·M (post, d = n), with M built from B [d, r] and A [r, d]:
//
//   plus  M = s·B A + I          none  M = s·B A          pi  M = s·π(B A), π rotating row i right by i
//
// The layer output is Y = X W'ᵀ. Pre: U = X W0ᵀ once, then Y = U Mᵀ. Post: V = X Mᵀ, Y = V W0ᵀ.
// "Mixing" below is In ↦ In Mᵀ on rows of width d, and its backward.
//
// plus / none   low rank, so mixing is two thin matmuls: out = [In] + s·(In Aᵀ) Bᵀ
// pi            shaders/lorma.wgsl generates tiles of π(B A) on the fly; no d×d buffer is ever
//               allocated (forward, backward or merge), the extra memory is O(d·r).
//
// forward   pre: U = X W0ᵀ; Y = mix(U)             post: V = mix(X); Y = V W0ᵀ
// backward  pre: dU = mixᵀ(G); dX = dU W0         post: dV = G W0; dX = mixᵀ(dV)
//           dA, dB from (In, dOut) = (U, G) pre or (X, dV) post
// merge     W' = M W0 or W0 M on the device (the output is the only m×n buffer)

import type { Context } from './runtime.js';
import { f32 } from './runtime.js';
import type { Tensor } from './tensor.js';
import { matmul } from './ops/matmul.js';
import { kaimingUniform } from './random.js';
import { PeftError, checkDim, checkDistinct, checkScale, checkTensor } from './validate.js';

export type Inflation = 'pi' | 'plus' | 'none';
export type Order = 'pre' | 'post';
export const INFLATIONS: readonly Inflation[] = ['pi', 'plus', 'none'];
export const ORDERS: readonly Order[] = ['pre', 'post'];

export interface LormaParams {
  w0: Tensor; // [m, n]
  a: Tensor; // [r, d]
  b: Tensor; // [d, r]
  /** s = alpha / r. */
  scale: number;
  inflation: Inflation;
  /** 'pre' (W' = M W0, d = m; the paper's default) or 'post' (W' = W0 M, d = n). Default 'pre'. */
  order?: Order;
}

export interface EncodeOptions {
  encoder?: GPUCommandEncoder;
}

export interface LormaDims {
  T: number;
  n: number;
  m: number;
  r: number;
  d: number;
  order: Order;
  inflation: Inflation;
}

function dims(where: string, p: LormaParams, x?: Tensor, xName = 'x'): LormaDims {
  if (!p || typeof p !== 'object') throw new PeftError(`${where}: expected parameters {w0, a, b, scale, inflation}`);
  if (!INFLATIONS.includes(p.inflation)) {
    throw new PeftError(`${where}: 'inflation' must be one of ${INFLATIONS.map((s) => `'${s}'`).join(', ')}, got ${JSON.stringify(p.inflation)}`);
  }
  const order = p.order ?? 'pre';
  if (!ORDERS.includes(order)) throw new PeftError(`${where}: 'order' must be 'pre' or 'post', got ${JSON.stringify(p.order)}`);
  if (!p.w0 || !Array.isArray(p.w0.shape) || p.w0.shape.length !== 2) throw new PeftError(`${where}: 'w0' must be a 2-D Tensor [m, n]`);
  const [m, n] = p.w0.shape;
  const d = order === 'pre' ? m : n;
  const dName = order === 'pre' ? `d = m = ${m} for pre-multiplication` : `d = n = ${n} for post-multiplication`;
  if (!p.a || !Array.isArray(p.a.shape) || p.a.shape.length !== 2) throw new PeftError(`${where}: 'a' must be a 2-D Tensor [r, d] (${dName})`);
  const r = p.a.shape[0];
  checkTensor(where, 'w0', p.w0, [m, n], '[m, n]');
  if (p.a.shape[1] !== d) {
    throw new PeftError(`${where}: 'a' has shape [${p.a.shape.join(', ')}], expected [r, d] = [${r}, ${d}] (${dName})`);
  }
  checkTensor(where, 'a', p.a, [r, d], '[r, d]');
  if (p.b && Array.isArray(p.b.shape) && p.b.shape.length === 2 && p.b.shape[0] !== d) {
    throw new PeftError(`${where}: 'b' has shape [${p.b.shape.join(', ')}], expected [d, r] = [${d}, ${r}] (${dName})`);
  }
  checkTensor(where, 'b', p.b, [d, r], '[d, r]');
  if (r > d) throw new PeftError(`${where}: rank r = ${r} is above d = ${d} (${dName})`);
  checkScale(where, 'scale', p.scale);
  let T = 1;
  if (x) {
    if (!Array.isArray(x.shape) || x.shape.length !== 2) throw new PeftError(`${where}: '${xName}' must be a 2-D Tensor [T, ${xName === 'x' ? 'n' : 'm'}]`);
    T = x.shape[0];
  }
  return { T, n, m, r, d, order, inflation: p.inflation };
}

// ------------------------------------------------------------------ π kernels

const MIX_WG = 8;
const MIX_BM = MIX_WG * 8;
const MIX_BN = MIX_WG * 8;
const DP_TILE = 64;
/** Partial-sum slices per side for dB and dA: the dP kernel's extra memory is 2·S·d·r floats. */
const DP_SLICES = 8;

function mixConstants(trans: boolean, inT: boolean, outT: boolean) {
  return { TRANS: trans, IN_T: inT, OUT_T: outT, WG_M: MIX_WG, WG_N: MIX_WG };
}

/** out[M, d] = s·op(In) M'ᵀ (trans) or s·op(In) M' (+ beta·out), M' = π(B A) generated on the fly. */
async function piMix(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: { input: Tensor; b: Tensor; a: Tensor; out: Tensor; M: number; d: number; r: number; s: number; trans: boolean; inT?: boolean; outT?: boolean; beta?: number },
): Promise<void> {
  const constants = mixConstants(a.trans, !!a.inT, !!a.outT);
  await ctx.prepare([{ shader: 'lorma', entry: 'mix', constants }]);
  const tilesN = Math.ceil(a.d / MIX_BN);
  ctx.dispatch(enc, {
    shader: 'lorma',
    entry: 'mix',
    constants,
    params: [a.M, a.d, a.r, tilesN, f32(a.s), f32(a.beta ?? 0)],
    bindings: [a.input, a.b, a.a, a.out],
    workgroups: Math.ceil(a.M / MIX_BM) * tilesN,
    label: `lorma.pi.mix ${a.M}x${a.d}${a.trans ? '' : ' T'}`,
  });
}

/** dB = dP Aᵀ, dA = Bᵀ dP with dP[i, j] = s·Σ_t dOut[t, i] In[t, (i + j) mod d], dP never stored. */
async function piGrads(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: { input: Tensor; dOut: Tensor; b: Tensor; a: Tensor; da: Tensor; db: Tensor; T: number; d: number; r: number; s: number },
): Promise<void> {
  const tiles = Math.ceil(a.d / DP_TILE);
  const S = Math.min(DP_SLICES, tiles);
  await ctx.prepare([
    { shader: 'lorma', entry: 'dp' },
    { shader: 'lorma', entry: 'reduce' },
  ]);
  const dbp = ctx.scratch('lorma.dbp', [S, a.d, a.r]);
  const dap = ctx.scratch('lorma.dap', [S, a.r, a.d]);
  enc.clearBuffer(dbp.buffer);
  enc.clearBuffer(dap.buffer);
  ctx.dispatch(enc, {
    shader: 'lorma',
    entry: 'dp',
    params: [a.T, a.d, a.r, S, f32(a.s)],
    bindings: [a.dOut, a.input, a.b, a.a, dbp, dap],
    workgroups: S * S,
    label: `lorma.pi.dp ${a.T}x${a.d}`,
  });
  ctx.dispatch(enc, {
    shader: 'lorma',
    entry: 'reduce',
    params: [a.d * a.r, S],
    bindings: [dbp, dap, a.db, a.da],
    workgroups: Math.ceil((a.d * a.r) / 64),
    label: 'lorma.pi.reduce',
  });
}

// ------------------------------------------------------------------ mixing, all inflations

interface MixArgs {
  input: Tensor; // [T, d]
  out: Tensor; // [T, d]
  z?: Tensor; // [T, r] for plus / none: In Aᵀ is written here
  T: number;
}

async function mixForward(ctx: Context, enc: GPUCommandEncoder, p: LormaParams, dm: LormaDims, a: MixArgs): Promise<void> {
  const { d, r } = dm;
  if (dm.inflation === 'pi') {
    await piMix(ctx, enc, { input: a.input, b: p.b, a: p.a, out: a.out, M: a.T, d, r, s: p.scale, trans: true });
    return;
  }
  const z = a.z ?? ctx.scratch('lorma.z', [a.T, r]);
  await matmul(ctx, { a: a.input, b: p.a, c: z, M: a.T, N: r, K: d, transB: true }, enc);
  if (dm.inflation === 'plus') ctx.copy(a.input, a.out, enc);
  await matmul(ctx, { a: z, b: p.b, c: a.out, M: a.T, N: d, K: r, transB: true, alpha: p.scale, beta: dm.inflation === 'plus' ? 1 : 0 }, enc);
}

interface MixBackArgs {
  input: Tensor; // In [T, d]
  dOut: Tensor; // [T, d]
  dIn: Tensor; // [T, d]
  da: Tensor;
  db: Tensor;
  z?: Tensor; // In Aᵀ from the forward (plus / none)
  T: number;
}

async function mixBackward(ctx: Context, enc: GPUCommandEncoder, p: LormaParams, dm: LormaDims, a: MixBackArgs): Promise<void> {
  const { d, r } = dm;
  const T = a.T;
  if (dm.inflation === 'pi') {
    await piMix(ctx, enc, { input: a.dOut, b: p.b, a: p.a, out: a.dIn, M: T, d, r, s: p.scale, trans: false });
    await piGrads(ctx, enc, { input: a.input, dOut: a.dOut, b: p.b, a: p.a, da: a.da, db: a.db, T, d, r, s: p.scale });
    return;
  }
  let z = a.z;
  if (!z) {
    z = ctx.scratch('lorma.z', [T, r]);
    await matmul(ctx, { a: a.input, b: p.a, c: z, M: T, N: r, K: d, transB: true }, enc);
  }
  const h = ctx.scratch('lorma.h', [T, r]);
  await matmul(ctx, { a: a.dOut, b: p.b, c: h, M: T, N: r, K: d }, enc);
  if (dm.inflation === 'plus') ctx.copy(a.dOut, a.dIn, enc);
  await matmul(ctx, { a: h, b: p.a, c: a.dIn, M: T, N: d, K: r, alpha: p.scale, beta: dm.inflation === 'plus' ? 1 : 0 }, enc);
  await matmul(ctx, { a: a.dOut, b: z, c: a.db, M: d, N: r, K: T, transA: true, alpha: p.scale }, enc);
  await matmul(ctx, { a: h, b: a.input, c: a.da, M: r, N: d, K: T, transA: true, alpha: p.scale }, enc);
}

// ------------------------------------------------------------------ public API

/**
 * Y = X W'ᵀ. Returns Y; for pre-multiplication also U = X W0ᵀ [T, m], and for plus / none
 * Z = In Aᵀ [T, r] (In = U pre, X post): pass them to lormaBackward to skip recomputing them.
 */
export async function lormaForward(
  ctx: Context,
  p: LormaParams & { x: Tensor; y?: Tensor; u?: Tensor; z?: Tensor },
  opts: EncodeOptions = {},
): Promise<{ y: Tensor; u?: Tensor; z?: Tensor }> {
  const where = 'lorma.forward';
  const dm = dims(where, p, p.x);
  const { T, n, m, r } = dm;
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  const y = p.y ? checkTensor(where, 'y', p.y, [T, m], '[T, m]') : ctx.tensor([T, m], 'f32', 'lorma.y');
  const pre = dm.order === 'pre';
  const u = pre ? (p.u ? checkTensor(where, 'u', p.u, [T, m], '[T, m]') : ctx.tensor([T, m], 'f32', 'lorma.u')) : undefined;
  const lowRank = dm.inflation !== 'pi';
  const z = lowRank ? (p.z ? checkTensor(where, 'z', p.z, [T, r], '[T, r]') : ctx.tensor([T, r], 'f32', 'lorma.z')) : undefined;
  checkDistinct(where, { y, u, z, x: p.x, w0: p.w0, a: p.a, b: p.b });
  await ctx.encode(opts.encoder, async (enc) => {
    if (pre) {
      await matmul(ctx, { a: p.x, b: p.w0, c: u!, M: T, N: m, K: n, transB: true }, enc);
      await mixForward(ctx, enc, p, dm, { input: u!, out: y, z, T });
    } else {
      const v = ctx.scratch('lorma.v', [T, n]);
      await mixForward(ctx, enc, p, dm, { input: p.x, out: v, z, T });
      await matmul(ctx, { a: v, b: p.w0, c: y, M: T, N: m, K: n, transB: true }, enc);
    }
  });
  return { y, u, z };
}

/** dX, dA, dB of L = sum(Y ⊙ G). Pass the forward's u (pre) and z (plus / none) to skip recomputing them. */
export async function lormaBackward(
  ctx: Context,
  p: LormaParams & { x: Tensor; g: Tensor; u?: Tensor; z?: Tensor; dx?: Tensor; da?: Tensor; db?: Tensor },
  opts: EncodeOptions = {},
): Promise<{ dx: Tensor; da: Tensor; db: Tensor }> {
  const where = 'lorma.backward';
  const dm = dims(where, p, p.x);
  const { T, n, m, r, d } = dm;
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'g', p.g, [T, m], '[T, m]');
  const pre = dm.order === 'pre';
  if (p.u) {
    if (!pre) throw new PeftError(`${where}: 'u' (U = X W0ᵀ) belongs to pre-multiplication; post-multiplication takes none`);
    checkTensor(where, 'u', p.u, [T, m], '[T, m]');
  }
  if (p.z) {
    if (dm.inflation === 'pi') throw new PeftError(`${where}: 'z' belongs to the plus and none inflations; pi takes none`);
    checkTensor(where, 'z', p.z, [T, r], '[T, r]');
  }
  const dx = p.dx ? checkTensor(where, 'dx', p.dx, [T, n], '[T, n]') : ctx.tensor([T, n], 'f32', 'lorma.dx');
  const da = p.da ? checkTensor(where, 'da', p.da, [r, d], '[r, d]') : ctx.tensor([r, d], 'f32', 'lorma.da');
  const db = p.db ? checkTensor(where, 'db', p.db, [d, r], '[d, r]') : ctx.tensor([d, r], 'f32', 'lorma.db');
  checkDistinct(where, { dx, da, db, x: p.x, g: p.g, w0: p.w0, a: p.a, b: p.b, u: p.u, z: p.z });
  await ctx.encode(opts.encoder, async (enc) => {
    if (pre) {
      let u = p.u;
      if (!u) {
        u = ctx.scratch('lorma.u', [T, m]);
        await matmul(ctx, { a: p.x, b: p.w0, c: u, M: T, N: m, K: n, transB: true }, enc);
      }
      const du = ctx.scratch('lorma.du', [T, m]);
      await mixBackward(ctx, enc, p, dm, { input: u, dOut: p.g, dIn: du, da, db, z: p.z, T });
      await matmul(ctx, { a: du, b: p.w0, c: dx, M: T, N: n, K: m }, enc);
    } else {
      const dv = ctx.scratch('lorma.dv', [T, n]);
      await matmul(ctx, { a: p.g, b: p.w0, c: dv, M: T, N: n, K: m }, enc);
      await mixBackward(ctx, enc, p, dm, { input: p.x, dOut: dv, dIn: dx, da, db, z: p.z, T });
    }
  });
  return { dx, da, db };
}

/**
 * W' = M W0 (pre) or W0 M (post), computed on the device into `out` (new by default); with
 * `deltaOnly`, ΔW = W' − W0. M is never stored: π(B A) is generated tile by tile, and the low-rank
 * inflations go through A W0 [r, n] or W0 B [m, r]. Unlike LoRA's, the merge cannot be undone
 * without W0, so there is no in-place form.
 */
export async function lormaMerge(
  ctx: Context,
  p: LormaParams & { out?: Tensor },
  opts: EncodeOptions & { deltaOnly?: boolean } = {},
): Promise<Tensor> {
  const where = 'lorma.merge';
  const dm = dims(where, p);
  const { n, m, r, d } = dm;
  const out = p.out ? checkTensor(where, 'out', p.out, [m, n], '[m, n]') : ctx.tensor([m, n], 'f32', 'lorma.merged');
  checkDistinct(where, { out, w0: p.w0, a: p.a, b: p.b });
  const delta = !!opts.deltaOnly;
  await ctx.encode(opts.encoder, async (enc) => {
    if (dm.inflation === 'pi') {
      // ΔW = M W0 − W0: the kernel's epilogue subtracts the W0 copied into out (beta = −1).
      if (delta) ctx.copy(p.w0, out, enc);
      const beta = delta ? -1 : 0;
      if (dm.order === 'pre') {
        // W'ᵀ = W0ᵀ M'ᵀ·s: tokens are W0's n columns, read and written transposed.
        await piMix(ctx, enc, { input: p.w0, b: p.b, a: p.a, out, M: n, d, r, s: p.scale, trans: true, inT: true, outT: true, beta });
      } else {
        await piMix(ctx, enc, { input: p.w0, b: p.b, a: p.a, out, M: m, d, r, s: p.scale, trans: false, beta });
      }
      return;
    }
    // plus: W' = W0 + s·B (A W0) or W0 + s·(W0 B) A; none drops the W0 term.
    const plus = dm.inflation === 'plus';
    if (!delta && plus) ctx.copy(p.w0, out, enc);
    if (delta && !plus) ctx.copy(p.w0, out, enc);
    const beta = plus ? (delta ? 0 : 1) : delta ? -1 : 0;
    if (dm.order === 'pre') {
      const aw = ctx.scratch('lorma.aw0', [r, n]);
      await matmul(ctx, { a: p.a, b: p.w0, c: aw, M: r, N: n, K: m }, enc);
      await matmul(ctx, { a: p.b, b: aw, c: out, M: m, N: n, K: r, alpha: p.scale, beta }, enc);
    } else {
      const wb = ctx.scratch('lorma.w0b', [m, r]);
      await matmul(ctx, { a: p.w0, b: p.b, c: wb, M: m, N: r, K: n }, enc);
      await matmul(ctx, { a: wb, b: p.a, c: out, M: m, N: n, K: r, alpha: p.scale, beta }, enc);
    }
  });
  return out;
}

/**
 * Host initial values of A [r, d] and B [d, r] (seeded):
 * - pi: B ~ U(−1/√r, 1/√r) with B[:, 0] = 1, A = 0 with A[0, 0] = 1, both divided by √s, so that
 *   s·π(B A) = I and the layer starts as the base layer;
 * - plus: B = 0, A kaiming-uniform U(−1/√d, 1/√d), so s·B A + I = I;
 * - none: no init gives M = I (rank ≤ r); A and B kaiming-uniform, A ~ U(−1/√d, 1/√d), B ~ U(−1/√r, 1/√r).
 */
export function lormaInit(opts: { d: number; r: number; scale: number; inflation: Inflation; seed?: number }): { a: Float32Array; b: Float32Array } {
  const where = 'lorma.init';
  const d = checkDim(where, 'd', opts?.d);
  const r = checkDim(where, 'r', opts.r);
  if (r > d) throw new PeftError(`${where}: rank r = ${r} is above d = ${d}`);
  const s = checkScale(where, 'scale', opts.scale);
  if (!INFLATIONS.includes(opts.inflation)) {
    throw new PeftError(`${where}: 'inflation' must be one of ${INFLATIONS.map((v) => `'${v}'`).join(', ')}, got ${JSON.stringify(opts.inflation)}`);
  }
  const seed = opts.seed ?? 0;
  if (opts.inflation === 'pi') {
    if (!(s > 0)) throw new PeftError(`${where}: the pi init divides by √s and needs scale > 0, got ${s}`);
    const root = Math.sqrt(s);
    const b = kaimingUniform(d * r, r, seed);
    for (let i = 0; i < d; i++) b[i * r] = 1;
    for (let i = 0; i < b.length; i++) b[i] /= root;
    const a = new Float32Array(r * d);
    a[0] = 1 / root;
    return { a, b };
  }
  const a = kaimingUniform(r * d, d, seed);
  const b = opts.inflation === 'plus' ? new Float32Array(d * r) : kaimingUniform(d * r, r, seed + 1);
  return { a, b };
}
