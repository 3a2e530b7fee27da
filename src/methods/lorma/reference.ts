// Float64 reference for LoRMA (docs/lorma.md; the math in docs/math.md). Unlike the GPU kernels it builds the dense
// d×d matrix M and differentiates through it (dM, then dB and dA), an independent route to the
// same numbers. Same arguments as the GPU kernels, host arrays.

import { add, matmul, scale, type F64 } from '../../reference/linalg.js';

export type LormaVariant = 'pi' | 'plus' | 'none';
export type LormaOrder = 'pre' | 'post';

export interface LormaRefArgs {
  T: number;
  n: number;
  m: number;
  r: number;
  scale: number;
  variant: LormaVariant;
  order: LormaOrder;
  x: ArrayLike<number>; // [T, n]
  w0: ArrayLike<number>; // [m, n]
  a: ArrayLike<number>; // [r, d]
  b: ArrayLike<number>; // [d, r]
}

export function dimOf(p: { n: number; m: number; order: LormaOrder }): number {
  return p.order === 'pre' ? p.m : p.n;
}

/** π(P)[i, c] = P[i, (c − i) mod d]: row i rotated right by i. */
export function inflatePi(P: ArrayLike<number>, d: number): F64 {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let c = 0; c < d; c++) out[i * d + c] = P[i * d + ((c - i + d) % d)];
  return out;
}

/** The dense multiplier M [d, d]. */
export function lormaM(p: { d: number; r: number; scale: number; variant: LormaVariant; a: ArrayLike<number>; b: ArrayLike<number> }): F64 {
  const { d, r } = p;
  const P = matmul(p.b, p.a, d, r, d);
  if (p.variant === 'pi') return scale(inflatePi(P, d), p.scale);
  const M = scale(P, p.scale);
  if (p.variant === 'plus') for (let i = 0; i < d; i++) M[i * d + i] += 1;
  return M;
}

function mOf(p: LormaRefArgs): F64 {
  return lormaM({ d: dimOf(p), r: p.r, scale: p.scale, variant: p.variant, a: p.a, b: p.b });
}

/** W' = M W0 (pre) or W0 M (post). */
export function lormaMerge(p: Omit<LormaRefArgs, 'x' | 'T'>): F64 {
  const M = mOf(p as LormaRefArgs);
  return p.order === 'pre' ? matmul(M, p.w0, p.m, p.m, p.n) : matmul(p.w0, M, p.m, p.n, p.n);
}

/** ΔW = W' − W0. */
export function lormaDelta(p: Omit<LormaRefArgs, 'x' | 'T'>): F64 {
  return add(lormaMerge(p), p.w0, -1);
}

/** Y = X W'ᵀ. */
export function lormaForward(p: LormaRefArgs): F64 {
  return matmul(p.x, lormaMerge(p), p.T, p.n, p.m, false, true);
}

/** dX, dA, dB of L = sum(Y ⊙ G), through dM. */
export function lormaBackward(p: LormaRefArgs & { g: ArrayLike<number> }): { dx: F64; da: F64; db: F64 } {
  const { T, n, m, r } = p;
  const d = dimOf(p);
  const M = mOf(p);
  let dM: F64;
  let dx: F64;
  if (p.order === 'pre') {
    // Y = U Mᵀ, U = X W0ᵀ.
    const U = matmul(p.x, p.w0, T, n, m, false, true);
    dM = matmul(p.g, U, m, T, m, true, false);
    const dU = matmul(p.g, M, T, m, m);
    dx = matmul(dU, p.w0, T, m, n);
  } else {
    // Y = V W0ᵀ, V = X Mᵀ.
    const dV = matmul(p.g, p.w0, T, m, n);
    dM = matmul(dV, p.x, n, T, n, true, false);
    dx = matmul(dV, M, T, n, n);
  }
  // Gradient with respect to P = B A (dP) from dM.
  let dP: F64;
  if (p.variant === 'pi') {
    dP = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) dP[i * d + j] = p.scale * dM[i * d + ((i + j) % d)];
  } else {
    dP = scale(dM, p.scale);
  }
  const db = matmul(dP, p.a, d, d, r, false, true);
  const da = matmul(p.b, dP, r, d, d, true, false);
  return { dx, da, db };
}
