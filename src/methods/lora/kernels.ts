// Plain LoRA on the GPU (docs/math.md, "LoRA"; Hu et al., "LoRA: Low-Rank Adaptation of Large Language
// Models"): the baseline every other method is measured against.
//
// forward   Z = X Aᵀ;  Y = X W0ᵀ + s·Z Bᵀ           (2 dispatches: the adapter term is fused
//                                                   into the base product's epilogue)
// backward  H = G B;  dX = G W0 + s·H A;  dB = s·Gᵀ Z;  dA = s·Hᵀ X      (4 dispatches)
// merge     W' = W0 + s·B A  (or unmerge with −s)
// dropout   the adapter sees X ⊙ mask / (1 − p); the mask is a hash of (seed, index), so the
//           backward regenerates it: Xd = drop(X) feeds Z and dA, and the adapter's share of dX
//           goes through the same mask.

import type { Context } from '../../runtime.js';
import type { Tensor } from '../../tensor.js';
import type { Weight } from '../../base.js';
import { kaimingUniform } from '../../random.js';
import { matmul } from '../../ops/matmul.js';
import { dropoutApply, dropoutMaskedAdd, type Dropout } from '../../ops/dropout.js';
import { PeftError, checkDim, checkIo, checkMatrix, checkRank, checkScale, checkTensor, checkWeight, weightTensors } from '../../validate.js';
import {
  checkCall,
  checkDropoutArg,
  checkOptions,
  mergeInto,
  mergeName,
  withOutputs,
  type BackwardOptions,
  type ForwardOptions,
  type MergeOptions,
  FORWARD_OPTIONS,
  BACKWARD_OPTIONS,
  MERGE_OPTIONS,
} from '../common.js';

export interface LoraParams {
  /** [m, n]: an f32 Tensor, or a BaseWeight (f16, NF4) the products decode in registers. */
  w0: Weight;
  a: Tensor; // [r, n]
  b: Tensor; // [m, r]
  /** s = alpha / r. */
  scale: number;
}

export interface LoraForwardArgs extends LoraParams {
  x: Tensor; // [T, n]
  /** Output [T, m]; new when absent. */
  y?: Tensor;
  /** Z = drop(X) Aᵀ [T, r], kept for the backward; new when absent. */
  z?: Tensor;
  dropout?: Dropout;
}

export interface LoraBackwardArgs extends LoraParams {
  x: Tensor; // [T, n]
  /** dL/dY [T, m]. */
  g: Tensor;
  /** The forward's Z [T, r]; recomputed when absent. */
  z?: Tensor;
  dx?: Tensor;
  da?: Tensor;
  db?: Tensor;
  /** The forward's dropout (same seed), so the same mask is applied. */
  dropout?: Dropout;
}

export interface LoraMergeArgs extends LoraParams {
  /** Target [m, n]; new when absent (not with inPlace). */
  out?: Tensor;
}

export interface LoraDims {
  T: number;
  n: number;
  m: number;
  r: number;
}

const LAYER_FIELDS = '{ w0, a, b, scale }';

function layerDims(where: string, p: LoraParams, x?: Tensor, needX = false): LoraDims {
  const [m, n] = checkWeight(where, 'w0', p.w0, '[m, n]');
  const [r] = checkMatrix(where, 'a', p.a, '[r, n]');
  checkTensor(where, 'a', p.a, [r, n], '[r, n]');
  checkTensor(where, 'b', p.b, [m, r], '[m, r]');
  checkRank(where, r, n, m);
  checkScale(where, 'scale', p.scale);
  let T = 1;
  if (needX) T = checkMatrix(where, 'x', x, '[T, n]')[0];
  return { T, n, m, r };
}

/** Y = X W0ᵀ + s·(X Aᵀ)Bᵀ (adapterOnly: the second term alone). Returns Y and Z = X Aᵀ (kept for the backward). */
export async function loraForward(ctx: Context, p: LoraForwardArgs, opts: ForwardOptions = {}): Promise<{ y: Tensor; z: Tensor }> {
  const where = 'lora.forward';
  checkCall(where, ctx, p, `{ x, ${LAYER_FIELDS.slice(2)}`);
  checkOptions(where, opts, FORWARD_OPTIONS);
  const d = layerDims(where, p, p.x, true);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  if (p.y) checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]');
  if (p.z) checkTensor(where, 'z', p.z, [d.T, d.r], '[T, r]');
  checkIo(where, ctx, { y: p.y, z: p.z }, { x: p.x, ...weightTensors('w0', p.w0), a: p.a, b: p.b });
  const drop = checkDropoutArg(where, p.dropout);
  return withOutputs(ctx, where, async (out) => {
    const y = out.output('y', p.y, [d.T, d.m], '[T, m]', 'lora.y');
    const z = out.output('z', p.z, [d.T, d.r], '[T, r]', 'lora.z');
    await ctx.encode(opts.encoder, async (enc) => {
      await downProject(ctx, p.x, p.a, z, d, drop, enc);
      if (opts.adapterOnly) {
        await matmul(ctx, { a: z, b: p.b, c: y, M: d.T, N: d.m, K: d.r, transB: true, alpha: p.scale }, enc);
      } else {
        await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true, second: { a: z, b: p.b, K: d.r, alpha: p.scale } }, enc);
      }
    });
    return { y, z };
  });
}

/** dX, dA, dB of L = sum(Y ⊙ G) (adapterOnly: dX without G W0). Pass the forward's Z to skip recomputing it. */
export async function loraBackward(ctx: Context, p: LoraBackwardArgs, opts: BackwardOptions = {}): Promise<{ dx: Tensor; da: Tensor; db: Tensor }> {
  const where = 'lora.backward';
  checkCall(where, ctx, p, `{ x, g, ${LAYER_FIELDS.slice(2)}`);
  checkOptions(where, opts, BACKWARD_OPTIONS);
  const d = layerDims(where, p, p.x, true);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  checkTensor(where, 'g', p.g, [d.T, d.m], '[T, m]');
  if (p.z) checkTensor(where, 'z', p.z, [d.T, d.r], '[T, r]');
  if (p.dx) checkTensor(where, 'dx', p.dx, [d.T, d.n], '[T, n]');
  if (p.da) checkTensor(where, 'da', p.da, [d.r, d.n], '[r, n]');
  if (p.db) checkTensor(where, 'db', p.db, [d.m, d.r], '[m, r]');
  checkIo(where, ctx, { dx: p.dx, da: p.da, db: p.db }, { x: p.x, g: p.g, ...weightTensors('w0', p.w0), a: p.a, b: p.b, z: p.z });
  const drop = checkDropoutArg(where, p.dropout);
  return withOutputs(ctx, where, async (out) => {
    const dx = out.output('dx', p.dx, [d.T, d.n], '[T, n]', 'lora.dx');
    const da = out.output('da', p.da, [d.r, d.n], '[r, n]', 'lora.da');
    const db = out.output('db', p.db, [d.m, d.r], '[m, r]', 'lora.db');
    const h = ctx.scratch('lora.h', [d.T, d.r]); // H = G B
    const z = p.z ?? ctx.scratch('lora.z', [d.T, d.r]);
    await ctx.encode(opts.encoder, async (enc) => {
      if (!p.z) await downProject(ctx, p.x, p.a, z, d, drop, enc);
      await matmul(ctx, { a: p.g, b: p.b, c: h, M: d.T, N: d.r, K: d.m }, enc);
      if (drop) {
        // The mask cannot ride in the matmul epilogue, so H A goes through a scratch tensor.
        const hA = ctx.scratch('lora.ha', [d.T, d.n]);
        await matmul(ctx, { a: h, b: p.a, c: hA, M: d.T, N: d.n, K: d.r }, enc);
        if (opts.adapterOnly) enc.clearBuffer(dx.buffer, 0, dx.byteLength);
        else await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
        await dropoutMaskedAdd(ctx, hA, dx, drop, p.scale, enc);
      } else if (opts.adapterOnly) {
        await matmul(ctx, { a: h, b: p.a, c: dx, M: d.T, N: d.n, K: d.r, alpha: p.scale }, enc);
      } else {
        await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m, second: { a: h, b: p.a, K: d.r, alpha: p.scale } }, enc);
      }
      await matmul(ctx, { a: p.g, b: z, c: db, M: d.m, N: d.r, K: d.T, transA: true, alpha: p.scale }, enc);
      const xDropped = drop ? ctx.scratch('lora.xdrop', [d.T, d.n]) : p.x;
      if (drop) await dropoutApply(ctx, p.x, xDropped, drop, enc);
      await matmul(ctx, { a: h, b: xDropped, c: da, M: d.r, N: d.n, K: d.T, transA: true, alpha: p.scale }, enc);
    });
    return { dx, da, db };
  });
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
 * W' = W0 + s·B A into `out` (new by default), or into W0 itself with `inPlace`; `unmerge`
 * subtracts, `deltaOnly` writes ΔW = s·B A alone.
 */
export function loraMerge(ctx: Context, p: LoraMergeArgs & { w0: Tensor; out?: Tensor }, opts?: MergeOptions): Promise<Tensor>;
export function loraMerge(ctx: Context, p: LoraMergeArgs & { out?: Tensor }, opts?: MergeOptions & { inPlace?: false }): Promise<Tensor>;
/** A BaseWeight W0 merged inPlace, or into a BaseWeight `out`, returns that BaseWeight. */
export function loraMerge(ctx: Context, p: LoraMergeArgs, opts?: MergeOptions): Promise<Weight>;
export async function loraMerge(ctx: Context, p: LoraMergeArgs, opts: MergeOptions = {}): Promise<Weight> {
  const where = mergeName('lora', opts ?? {});
  checkCall(where, ctx, p, LAYER_FIELDS);
  checkOptions(where, opts, MERGE_OPTIONS);
  const d = layerDims(where, p);
  return mergeInto(ctx, where, p.w0, p.out, opts, { a: p.a, b: p.b }, (enc, target, sign) =>
    // beta = 1 accumulates onto what mergeInto put in the target (W0, or zero for deltaOnly).
    matmul(ctx, { a: p.b, b: p.a, c: target, M: d.m, N: d.n, K: d.r, alpha: sign * p.scale, beta: 1 }, enc),
  );
}

export interface LoraInitArgs {
  /** In-features. */
  n: number;
  /** Out-features. */
  m: number;
  /** Rank. */
  r: number;
  /** Seed of A's values. */
  seed: number;
}

/**
 * The usual LoRA start: A Kaiming-uniform [r, n] (as PyTorch's nn.Linear), B zero [m, r], so ΔW
 * is zero and the first step moves B.
 */
export function loraInit(args: LoraInitArgs): { a: Float32Array; b: Float32Array } {
  const where = 'lora.init';
  if (!args || typeof args !== 'object') throw new PeftError(`${where}: expected an object { n, m, r, seed }`);
  checkOptions(where, args, ['n', 'm', 'r', 'seed']);
  const n = checkDim(where, 'n', args.n);
  const m = checkDim(where, 'm', args.m);
  const r = checkDim(where, 'r', args.r);
  checkRank(where, r, n, m);
  if (!Number.isInteger(args.seed)) throw new PeftError(`${where}: 'seed' must be an integer, got ${String(args.seed)}`);
  return { a: kaimingUniform(r * n, n, args.seed), b: new Float32Array(m * r) };
}
