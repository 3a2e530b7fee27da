// Plain LoRA on the GPU (KERNELS.md, "LoRA"): the baseline every other method is measured against.
//
// forward   Z = X Aᵀ;  Y = X W0ᵀ + s·Z Bᵀ           (2 dispatches: the adapter term is fused
//                                                   into the base product's epilogue)
// backward  H = G B;  dX = G W0 + s·H A;  dB = s·Gᵀ Z;  dA = s·Hᵀ X      (4 dispatches)
// merge     W' = W0 + s·B A  (or unmerge with −s)
// dropout   the adapter sees X ⊙ mask / (1 − p); the mask is a hash of (seed, index), so the
//           backward regenerates it: Xd = drop(X) feeds Z and dA, and the adapter's share of dX
//           goes through the same mask.

import type { Context } from './runtime.js';
import type { Tensor } from './tensor.js';
import { matmul } from './ops/matmul.js';
import { checkDropout, dropoutApply, dropoutMaskedAdd, type Dropout } from './ops/dropout.js';
import { PeftError, checkDistinct, checkRank, checkScale, checkTensor } from './validate.js';

export interface LoraParams {
  w0: Tensor; // [m, n]
  a: Tensor; // [r, n]
  b: Tensor; // [m, r]
  /** s = alpha / r. */
  scale: number;
}

export interface EncodeOptions {
  /** Encode into this encoder instead of submitting now. */
  encoder?: GPUCommandEncoder;
}

export interface LoraDims {
  T: number;
  n: number;
  m: number;
  r: number;
}

function dims(where: string, p: LoraParams, x?: Tensor, xName = 'x'): LoraDims {
  if (!p.w0 || p.w0.shape.length !== 2) throw new PeftError(`${where}: 'w0' must be a 2-D Tensor [m, n]`);
  const [m, n] = p.w0.shape;
  if (!p.a || p.a.shape.length !== 2) throw new PeftError(`${where}: 'a' must be a 2-D Tensor [r, n]`);
  const r = p.a.shape[0];
  checkTensor(where, 'w0', p.w0, [m, n], '[m, n]');
  checkTensor(where, 'a', p.a, [r, n], '[r, n]');
  checkTensor(where, 'b', p.b, [m, r], '[m, r]');
  checkRank(where, r, n, m);
  checkScale(where, 'scale', p.scale);
  let T = 1;
  if (x) {
    if (x.shape.length !== 2) throw new PeftError(`${where}: '${xName}' must be a 2-D Tensor [T, ${xName === 'x' ? 'n' : 'm'}]`);
    T = x.shape[0];
  }
  return { T, n, m, r };
}

/** Y = X W0ᵀ + s·(X Aᵀ)Bᵀ. Returns Y and Z = X Aᵀ (kept for the backward). */
export async function loraForward(
  ctx: Context,
  p: LoraParams & { x: Tensor; y?: Tensor; z?: Tensor; dropout?: Dropout },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<{ y: Tensor; z: Tensor }> {
  const where = 'lora.forward';
  const d = dims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  const y = p.y ? checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]') : ctx.tensor([d.T, d.m], 'f32', 'lora.y');
  const z = p.z ? checkTensor(where, 'z', p.z, [d.T, d.r], '[T, r]') : ctx.tensor([d.T, d.r], 'f32', 'lora.z');
  checkDistinct(where, { y, z, x: p.x, w0: p.w0, a: p.a, b: p.b });
  const drop = checkDropout(where, p.dropout);
  await ctx.encode(opts.encoder, async (enc) => {
    await downProject(ctx, p.x, p.a, z, d, drop, enc);
    if (opts.adapterOnly) {
      await matmul(ctx, { a: z, b: p.b, c: y, M: d.T, N: d.m, K: d.r, transB: true, alpha: p.scale }, enc);
    } else {
      await matmul(
        ctx,
        { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true, second: { a: z, b: p.b, K: d.r, alpha: p.scale } },
        enc,
      );
    }
  });
  return { y, z };
}

/** dX, dA, dB of L = sum(Y ⊙ G). Pass the forward's Z to skip recomputing it. */
export async function loraBackward(
  ctx: Context,
  p: LoraParams & { x: Tensor; g: Tensor; z?: Tensor; dx?: Tensor; da?: Tensor; db?: Tensor; dropout?: Dropout },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<{ dx: Tensor; da: Tensor; db: Tensor }> {
  const where = 'lora.backward';
  const d = dims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  checkTensor(where, 'g', p.g, [d.T, d.m], '[T, m]');
  if (p.z) checkTensor(where, 'z', p.z, [d.T, d.r], '[T, r]');
  const dx = p.dx ? checkTensor(where, 'dx', p.dx, [d.T, d.n], '[T, n]') : ctx.tensor([d.T, d.n], 'f32', 'lora.dx');
  const da = p.da ? checkTensor(where, 'da', p.da, [d.r, d.n], '[r, n]') : ctx.tensor([d.r, d.n], 'f32', 'lora.da');
  const db = p.db ? checkTensor(where, 'db', p.db, [d.m, d.r], '[m, r]') : ctx.tensor([d.m, d.r], 'f32', 'lora.db');
  checkDistinct(where, { dx, da, db, x: p.x, g: p.g, w0: p.w0, a: p.a, b: p.b, z: p.z });
  const h = ctx.scratch('lora.h', [d.T, d.r]);
  const z = p.z ?? ctx.scratch('lora.z', [d.T, d.r]);
  const drop = checkDropout(where, p.dropout);
  await ctx.encode(opts.encoder, async (enc) => {
    if (!p.z) await downProject(ctx, p.x, p.a, z, d, drop, enc);
    await matmul(ctx, { a: p.g, b: p.b, c: h, M: d.T, N: d.r, K: d.m }, enc);
    if (drop) {
      const ha = ctx.scratch('lora.ha', [d.T, d.n]);
      await matmul(ctx, { a: h, b: p.a, c: ha, M: d.T, N: d.n, K: d.r }, enc);
      if (opts.adapterOnly) enc.clearBuffer(dx.buffer, 0, dx.byteLength);
      else await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
      await dropoutMaskedAdd(ctx, ha, dx, drop, p.scale, enc);
    } else if (opts.adapterOnly) {
      await matmul(ctx, { a: h, b: p.a, c: dx, M: d.T, N: d.n, K: d.r, alpha: p.scale }, enc);
    } else {
      await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m, second: { a: h, b: p.a, K: d.r, alpha: p.scale } }, enc);
    }
    await matmul(ctx, { a: p.g, b: z, c: db, M: d.m, N: d.r, K: d.T, transA: true, alpha: p.scale }, enc);
    const xd = drop ? ctx.scratch('lora.xdrop', [d.T, d.n]) : p.x;
    if (drop) await dropoutApply(ctx, p.x, xd, drop, enc);
    await matmul(ctx, { a: h, b: xd, c: da, M: d.r, N: d.n, K: d.T, transA: true, alpha: p.scale }, enc);
  });
  return { dx, da, db };
}

/** Z = drop(X) Aᵀ. */
async function downProject(ctx: Context, x: Tensor, a: Tensor, z: Tensor, d: LoraDims, drop: Dropout | undefined, enc: GPUCommandEncoder) {
  let input = x;
  if (drop) {
    input = ctx.scratch('lora.xdrop', [d.T, d.n]);
    await dropoutApply(ctx, x, input, drop, enc);
  }
  await matmul(ctx, { a: input, b: a, c: z, M: d.T, N: d.r, K: d.n, transB: true }, enc);
}

/**
 * W' = W0 + sign·s·B A, written to `out` (new by default). With `inPlace`, W0 itself is updated
 * (sign = −1 unmerges). `deltaOnly` writes ΔW = s·B A instead.
 */
export async function loraMerge(
  ctx: Context,
  p: LoraParams & { out?: Tensor },
  opts: EncodeOptions & { inPlace?: boolean; unmerge?: boolean; deltaOnly?: boolean } = {},
): Promise<Tensor> {
  const where = opts.unmerge ? 'lora.unmerge' : 'lora.merge';
  const d = dims(where, p);
  const sign = opts.unmerge ? -1 : 1;
  let out: Tensor;
  if (opts.inPlace) {
    if (opts.deltaOnly) throw new PeftError(`${where}: 'inPlace' and 'deltaOnly' exclude each other`);
    out = p.w0;
  } else {
    out = p.out ? checkTensor(where, 'out', p.out, [d.m, d.n], '[m, n]') : ctx.tensor([d.m, d.n], 'f32', 'lora.merged');
    checkDistinct(where, { out, w0: p.w0, a: p.a, b: p.b });
  }
  await ctx.encode(opts.encoder, async (enc) => {
    if (!opts.inPlace && !opts.deltaOnly) ctx.copy(p.w0, out, enc);
    await matmul(ctx, { a: p.b, b: p.a, c: out, M: d.m, N: d.n, K: d.r, alpha: sign * p.scale, beta: opts.deltaOnly ? 0 : 1 }, enc);
  });
  return out;
}
