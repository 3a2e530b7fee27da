// Float64 dense helpers for the reference kernels. Row-major, shapes passed explicitly.

export type F64 = Float64Array;

export function toF64(a: ArrayLike<number>): F64 {
  return Float64Array.from(a as ArrayLike<number>);
}

/** C[M, N] = op(A) op(B); A is [M, K] (or [K, M] with transA), B is [K, N] (or [N, K] with transB). */
export function matmul(A: ArrayLike<number>, B: ArrayLike<number>, M: number, K: number, N: number, transA = false, transB = false): F64 {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const a = transA ? A[k * M + i] : A[i * K + k];
      if (a === 0) continue;
      for (let j = 0; j < N; j++) {
        C[i * N + j] += a * (transB ? B[j * K + k] : B[k * N + j]);
      }
    }
  }
  return C;
}

export function add(a: ArrayLike<number>, b: ArrayLike<number>, scaleB = 1): F64 {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + scaleB * b[i];
  return out;
}

export function scale(a: ArrayLike<number>, s: number): F64 {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = s * a[i];
  return out;
}

/** sum(a ⊙ b): the loss L = sum(Y ⊙ G) whose gradients the backward kernels return. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Central finite differences of a scalar function with respect to every entry of `param`
 * (modified in place and restored): (f(p + h) - f(p - h)) / 2h.
 */
export function finiteDifference(f: () => number, param: Float64Array, h = 1e-6): F64 {
  const grad = new Float64Array(param.length);
  for (let i = 0; i < param.length; i++) {
    const keep = param[i];
    param[i] = keep + h;
    const up = f();
    param[i] = keep - h;
    const down = f();
    param[i] = keep;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

export { relativeError } from '../numeric.js';
