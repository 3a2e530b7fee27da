// Host side of shaders/matmul.wgsl: C = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2)] [+ beta·C].

import type { Context, Tuning } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import { PeftError, checkDim } from '../validate.js';

export interface MatmulArgs {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  M: number;
  N: number;
  K: number;
  /** A is stored [K, M] rather than [M, K]. */
  transA?: boolean;
  /** B is stored [N, K] rather than [K, N]. */
  transB?: boolean;
  alpha?: number;
  /** 0 (the default) overwrites C without reading it. */
  beta?: number;
  /** A second product with the same transposes, added before the store. */
  second?: { a: Tensor; b: Tensor; K: number; alpha?: number };
}

/**
 * Kernel variants of shaders/matmul.wgsl, the names ctx.tuning.matmul accepts. 'direct' reads
 * 16 bytes per load (entry `direct4`) when the contiguous dimensions are multiples of 4, else
 * falls back to scalar loads; 'direct-scalar' always uses scalar loads (kept for benchmarks).
 */
export type MatmulVariant = Tuning['matmul'];

/** Whether `direct4` can view A and B as vec4 arrays for these transposes and sizes. */
function vec4Fits(M: number, N: number, K: number, transA: boolean, transB: boolean): boolean {
  if (!transA && transB) return K % 4 === 0;
  if (!transA && !transB) return K % 4 === 0 && N % 4 === 0;
  if (transA && !transB) return M % 4 === 0 && N % 4 === 0;
  return false;
}

/** The shader entry point matmul() picks for these sizes under ctx.tuning (exported for tests). */
export function matmulEntry(ctx: Context, M: number, N: number, K: number, transA = false, transB = false): string {
  return config(ctx, M, N, K, transA, transB, false).entry;
}

function config(
  ctx: Context,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  second: boolean,
): { entry: string; constants: Record<string, number | boolean>; tileM: number; tileN: number } {
  const variant = ctx.tuning.matmul;
  const wg = variant === 'tiled' ? 16 : 8;
  let entry = 'direct';
  if (variant === 'tiled') entry = 'main';
  else if (variant !== 'direct-scalar' && vec4Fits(M, N, K, transA, transB)) entry = 'direct4';
  return {
    entry,
    constants: { TRANS_A: transA, TRANS_B: transB, SECOND: second, WG_M: wg, WG_N: wg },
    tileM: wg * 4,
    tileN: wg * 4,
  };
}

function need(where: string, name: string, t: Tensor, elements: number): void {
  if (t.size < elements) throw new PeftError(`${where}: '${name}' has ${t.size} elements, needs at least ${elements}`);
  if (t.dtype !== 'f32') throw new PeftError(`${where}: '${name}' is ${t.dtype}, expected f32`);
}

/** Encodes C = alpha·op(A)·op(B) (+ second) (+ beta·C) into `encoder` (or submits it now). */
export async function matmul(ctx: Context, args: MatmulArgs, encoder?: GPUCommandEncoder): Promise<void> {
  const where = 'matmul';
  const M = checkDim(where, 'M', args.M);
  const N = checkDim(where, 'N', args.N);
  const K = checkDim(where, 'K', args.K);
  need(where, 'a', args.a, M * K);
  need(where, 'b', args.b, K * N);
  need(where, 'c', args.c, M * N);
  if (args.second) {
    const K2 = checkDim(where, 'second.K', args.second.K);
    need(where, 'second.a', args.second.a, M * K2);
    need(where, 'second.b', args.second.b, K2 * N);
  }
  const cfg = config(ctx, M, N, K, !!args.transA, !!args.transB, !!args.second);
  await ctx.prepare([{ shader: 'matmul', entry: cfg.entry, constants: cfg.constants }]);
  const tilesN = Math.ceil(N / cfg.tileN);
  const tilesM = Math.ceil(M / cfg.tileM);
  const second = args.second;
  await ctx.encode(encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: 'matmul',
      entry: cfg.entry,
      constants: cfg.constants,
      params: { M, N, K, K2: second ? second.K : 0, alpha: args.alpha ?? 1, alpha2: second?.alpha ?? 1, beta: args.beta ?? 0, tiles_n: tilesN },
      // Unused second operands are bound to the first ones: WebGPU needs every declared binding.
      bindings: [args.a, args.b, args.c, second ? second.a : args.a, second ? second.b : args.b],
      workgroups: tilesM * tilesN,
      label: `matmul ${M}x${N}x${K}`,
    }),
  );
}
