// Float64 reference for SBoRA (docs/sbora.md; the math in docs/math.md). Same arguments as the
// GPU kernels, host arrays; the index set is a plain array. Written with explicit loops over the index set rather
// than one-hot matrices, and independently of the WGSL (the tests also check it against LoRA
// with a one-hot factor and against finite differences).

import { add, matmul, scale, type F64 } from '../../reference/linalg.js';
import { applyDropout, dropoutMask } from '../../reference/dropout.js';

export interface SboraRefArgs {
  T: number;
  n: number;
  m: number;
  r: number;
  scale: number;
  x: ArrayLike<number>; // [T, n]
  w0: ArrayLike<number>; // [m, n]
  /** r distinct indices: into [0, n) for FA, [0, m) for FB. */
  idx: ArrayLike<number>;
  /** Adapter dropout on X (docs/math.md): the adapter sees X ⊙ mask / (1 − p). */
  dropout?: { p: number; seed: number };
}

/** The adapter's input: X, or X through the dropout mask. */
function adapterInput(p: SboraRefArgs): ArrayLike<number> {
  return p.dropout && p.dropout.p > 0 ? applyDropout(p.x, p.dropout.p, p.dropout.seed) : p.x;
}

/** v ⊙ the dropout mask of X (v is [T, n]); v itself without dropout. */
function throughMask(p: SboraRefArgs, v: Float64Array): Float64Array {
  if (!p.dropout || p.dropout.p === 0) return v;
  const mask = dropoutMask(v.length, p.dropout.p, p.dropout.seed);
  return v.map((e, i) => e * mask[i]);
}

export type FaRefArgs = SboraRefArgs & { b: ArrayLike<number> }; // B [m, r]
export type FbRefArgs = SboraRefArgs & { a: ArrayLike<number> }; // A [r, n]

/** X[:, idx] [T, r]. */
export function gather(x: ArrayLike<number>, T: number, n: number, idx: ArrayLike<number>): F64 {
  const r = idx.length;
  const out = new Float64Array(T * r);
  for (let t = 0; t < T; t++) for (let q = 0; q < r; q++) out[t * r + q] = x[t * n + idx[q]];
  return out;
}

/** out[:, idx[q]] += v[:, q] for out [T, width], v [T, r] (index_add along columns). */
export function indexAddCols(out: Float64Array, width: number, v: ArrayLike<number>, T: number, idx: ArrayLike<number>): F64 {
  const r = idx.length;
  for (let t = 0; t < T; t++) for (let q = 0; q < r; q++) out[t * width + idx[q]] += v[t * r + q];
  return out;
}

// ------------------------------------------------------------------------------------- FA

/** Y = X W0ᵀ + s·X[:, idx] Bᵀ; with adapterOnly, the second term alone. */
export function faForward(p: FaRefArgs, adapterOnly = false): F64 {
  const adapter = scale(matmul(gather(adapterInput(p), p.T, p.n, p.idx), p.b, p.T, p.r, p.m, false, true), p.scale);
  if (adapterOnly) return adapter;
  return add(matmul(p.x, p.w0, p.T, p.n, p.m, false, true), adapter);
}

/** dX, dB of L = sum(Y ⊙ G); with adapterOnly, dX's adapter part alone. */
export function faBackward(p: FaRefArgs & { g: ArrayLike<number> }, adapterOnly = false): { dx: F64; db: F64 } {
  const db = scale(matmul(p.g, gather(adapterInput(p), p.T, p.n, p.idx), p.m, p.T, p.r, true, false), p.scale);
  const h = scale(matmul(p.g, p.b, p.T, p.m, p.r), p.scale); // s·G B [T, r]
  const adapter = throughMask(p, indexAddCols(new Float64Array(p.T * p.n), p.n, h, p.T, p.idx));
  const dx = adapterOnly ? adapter : add(matmul(p.g, p.w0, p.T, p.m, p.n), adapter);
  return { dx, db };
}

/** ΔW [m, n]: s·B[:, q] in column idx[q], zero elsewhere. */
export function faDelta(p: Omit<FaRefArgs, 'x' | 'T' | 'w0'>): F64 {
  const out = new Float64Array(p.m * p.n);
  for (let j = 0; j < p.m; j++) for (let q = 0; q < p.r; q++) out[j * p.n + p.idx[q]] += p.scale * p.b[j * p.r + q];
  return out;
}

export function faMerge(p: Omit<FaRefArgs, 'x' | 'T'>): F64 {
  return add(p.w0, faDelta(p));
}

// ------------------------------------------------------------------------------------- FB

/** Y = X W0ᵀ, then Y[:, idx[q]] += s·(X Aᵀ)[:, q]; with adapterOnly, Y is zero outside idx. */
export function fbForward(p: FbRefArgs, adapterOnly = false): F64 {
  const z = scale(matmul(adapterInput(p), p.a, p.T, p.n, p.r, false, true), p.scale);
  const y = adapterOnly ? new Float64Array(p.T * p.m) : matmul(p.x, p.w0, p.T, p.n, p.m, false, true);
  return indexAddCols(y, p.m, z, p.T, p.idx);
}

/** dX, dA of L = sum(Y ⊙ G); with adapterOnly, dX's adapter part alone. */
export function fbBackward(p: FbRefArgs & { g: ArrayLike<number> }, adapterOnly = false): { dx: F64; da: F64 } {
  const gi = gather(p.g, p.T, p.m, p.idx); // G[:, idx] [T, r]
  const da = scale(matmul(gi, adapterInput(p), p.r, p.T, p.n, true, false), p.scale);
  const adapter = throughMask(p, scale(matmul(gi, p.a, p.T, p.r, p.n), p.scale));
  const dx = adapterOnly ? adapter : add(matmul(p.g, p.w0, p.T, p.m, p.n), adapter);
  return { dx, da };
}

/** ΔW [m, n]: s·A[q, :] in row idx[q], zero elsewhere. */
export function fbDelta(p: Omit<FbRefArgs, 'x' | 'T' | 'w0'>): F64 {
  const out = new Float64Array(p.m * p.n);
  for (let q = 0; q < p.r; q++) for (let k = 0; k < p.n; k++) out[p.idx[q] * p.n + k] += p.scale * p.a[q * p.n + k];
  return out;
}

export function fbMerge(p: Omit<FbRefArgs, 'x' | 'T'>): F64 {
  return add(p.w0, fbDelta(p));
}

/** The one-hot factor an index set stands for: FA's A [r, n] (rows e_idx[q]) or FB's B [m, r]. */
export function oneHot(variant: 'fa' | 'fb', idx: ArrayLike<number>, size: number): F64 {
  const r = idx.length;
  const out = new Float64Array(r * size);
  for (let q = 0; q < r; q++) {
    if (variant === 'fa') out[q * size + idx[q]] = 1;
    else out[idx[q] * r + q] = 1;
  }
  return out;
}

// ------------------------------------------------------------------------- by variant

/** The arguments of either variant, told apart by `variant` as the GPU functions are. */
export type VariantRefArgs = (FaRefArgs & { variant: 'fa' }) | (FbRefArgs & { variant: 'fb' });

/** faForward or fbForward by `variant`. */
export function forward(p: VariantRefArgs, adapterOnly = false): F64 {
  return p.variant === 'fa' ? faForward(p, adapterOnly) : fbForward(p, adapterOnly);
}

/** dX and the trained factor's gradient (db for FA, da for FB). */
export function backward(p: VariantRefArgs & { g: ArrayLike<number> }, adapterOnly = false): { dx: F64; dFactor: F64 } {
  if (p.variant === 'fa') {
    const { dx, db } = faBackward(p, adapterOnly);
    return { dx, dFactor: db };
  }
  const { dx, da } = fbBackward(p, adapterOnly);
  return { dx, dFactor: da };
}

/** ΔW [m, n] of either variant. */
export function delta(p: (Omit<FaRefArgs, 'x' | 'T' | 'w0'> & { variant: 'fa' }) | (Omit<FbRefArgs, 'x' | 'T' | 'w0'> & { variant: 'fb' })): F64 {
  return p.variant === 'fa' ? faDelta(p) : fbDelta(p);
}
