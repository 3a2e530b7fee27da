// Float64 reference for LoRA (docs/math.md, "LoRA"). Same arguments as the GPU kernels, host arrays.

import { add, matmul, scale, type F64 } from '../../reference/linalg.js';
import { applyDropout, dropoutMask } from '../../reference/dropout.js';

export interface LoraRefArgs {
  T: number;
  n: number;
  m: number;
  r: number;
  scale: number;
  x: ArrayLike<number>; // [T, n]
  w0: ArrayLike<number>; // [m, n]
  a: ArrayLike<number>; // [r, n]
  b: ArrayLike<number>; // [m, r]
  /** Adapter dropout on X (docs/math.md, "Dropout on the adapter"). */
  dropout?: { p: number; seed: number };
}

function dropped(p: LoraRefArgs): ArrayLike<number> {
  return p.dropout && p.dropout.p > 0 ? applyDropout(p.x, p.dropout.p, p.dropout.seed) : p.x;
}

/** Y = X W0ᵀ + s·(X Aᵀ) Bᵀ; with adapterOnly, the second term alone. */
export function loraForward(p: LoraRefArgs, adapterOnly = false): F64 {
  const z = matmul(dropped(p), p.a, p.T, p.n, p.r, false, true);
  const adapter = scale(matmul(z, p.b, p.T, p.r, p.m, false, true), p.scale);
  if (adapterOnly) return adapter;
  return add(matmul(p.x, p.w0, p.T, p.n, p.m, false, true), adapter);
}

/** dX, dA, dB of L = sum(Y ⊙ G). */
export function loraBackward(p: LoraRefArgs & { g: ArrayLike<number> }): { dx: F64; da: F64; db: F64 } {
  const xd = dropped(p);
  const z = matmul(xd, p.a, p.T, p.n, p.r, false, true); // [T, r]
  const h = matmul(p.g, p.b, p.T, p.m, p.r); // [T, r]
  const db = scale(matmul(p.g, z, p.m, p.T, p.r, true, false), p.scale);
  const da = scale(matmul(h, xd, p.r, p.T, p.n, true, false), p.scale);
  let ha = matmul(h, p.a, p.T, p.r, p.n);
  if (p.dropout && p.dropout.p > 0) {
    const mask = dropoutMask(ha.length, p.dropout.p, p.dropout.seed);
    ha = ha.map((v, i) => v * mask[i]);
  }
  const dx = add(matmul(p.g, p.w0, p.T, p.m, p.n), ha, p.scale);
  return { dx, da, db };
}

/** ΔW = s·B A [m, n]. */
export function loraDelta(p: Omit<LoraRefArgs, 'x' | 'T' | 'w0'>): F64 {
  return scale(matmul(p.b, p.a, p.m, p.r, p.n), p.scale);
}

/** W' = W0 + s·B A. */
export function loraMerge(p: Omit<LoraRefArgs, 'x' | 'T'>): F64 {
  return add(p.w0, loraDelta(p));
}
