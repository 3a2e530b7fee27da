// Float64 reference for src/attention.ts (docs/attention.md): multi-head scaled dot-product
// attention on rows [batch·T, heads·headDim], causal or full. Written the plain way, with the
// whole softmax of each row formed (T floats at a time), so it shares no scheme with the kernels'
// online softmax and can check it.

import type { F64 } from './linalg.js';
import type { AttentionShape } from '../attention.js';

// The same shape the kernels take (type only: no production code is pulled in).
export type { AttentionShape };

interface Resolved {
  batch: number;
  T: number;
  heads: number;
  D: number;
  causal: boolean;
  scale: number;
  cols: number;
}

function resolve(p: AttentionShape): Resolved {
  return {
    batch: p.batch,
    T: p.T,
    heads: p.heads,
    D: p.headDim,
    causal: p.causal ?? true,
    scale: p.scale ?? 1 / Math.sqrt(p.headDim),
    cols: p.heads * p.headDim,
  };
}

/** Row i's softmax over the keys it sees (0 … i when causal), into `prob` (length T; 0 past them); returns log Σ exp. */
function rowSoftmax(s: Resolved, q: ArrayLike<number>, k: ArrayLike<number>, b: number, h: number, i: number, prob: Float64Array): number {
  const qi = (b * s.T + i) * s.cols + h * s.D;
  const keys = s.causal ? i + 1 : s.T;
  let max = -Infinity;
  for (let j = 0; j < keys; j++) {
    const kj = (b * s.T + j) * s.cols + h * s.D;
    let dot = 0;
    for (let c = 0; c < s.D; c++) dot += q[qi + c] * k[kj + c];
    prob[j] = s.scale * dot;
    if (prob[j] > max) max = prob[j];
  }
  let sum = 0;
  for (let j = 0; j < keys; j++) {
    prob[j] = Math.exp(prob[j] - max);
    sum += prob[j];
  }
  for (let j = 0; j < keys; j++) prob[j] /= sum;
  prob.fill(0, keys);
  return max + Math.log(sum);
}

/** y [batch·T·heads·headDim] and lse [batch·heads·T] (index (b·heads + h)·T + t). */
export function attentionForward(p: AttentionShape & { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number> }): { y: F64; lse: F64 } {
  const s = resolve(p);
  const y = new Float64Array(s.batch * s.T * s.cols);
  const lse = new Float64Array(s.batch * s.heads * s.T);
  const prob = new Float64Array(s.T);
  for (let b = 0; b < s.batch; b++) {
    for (let h = 0; h < s.heads; h++) {
      for (let i = 0; i < s.T; i++) {
        lse[(b * s.heads + h) * s.T + i] = rowSoftmax(s, p.q, p.k, b, h, i, prob);
        const yi = (b * s.T + i) * s.cols + h * s.D;
        for (let j = 0; j < s.T; j++) {
          if (prob[j] === 0) continue;
          const vj = (b * s.T + j) * s.cols + h * s.D;
          for (let c = 0; c < s.D; c++) y[yi + c] += prob[j] * p.v[vj + c];
        }
      }
    }
  }
  return { y, lse };
}

/**
 * dq, dk, dv given dy = ∂L/∂y, by the textbook chain rule through the softmax:
 * dP = dy vᵀ, dS_ij = P_ij (dP_ij − Σ_l P_il dP_il), dq = scale·dS k, dk = scale·dSᵀ q, dv = Pᵀ dy.
 */
export function attentionBackward(p: AttentionShape & { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>; dy: ArrayLike<number> }): {
  dq: F64;
  dk: F64;
  dv: F64;
} {
  const s = resolve(p);
  const n = s.batch * s.T * s.cols;
  const dq = new Float64Array(n);
  const dk = new Float64Array(n);
  const dv = new Float64Array(n);
  const prob = new Float64Array(s.T);
  const dp = new Float64Array(s.T);
  for (let b = 0; b < s.batch; b++) {
    for (let h = 0; h < s.heads; h++) {
      for (let i = 0; i < s.T; i++) {
        rowSoftmax(s, p.q, p.k, b, h, i, prob);
        const qi = (b * s.T + i) * s.cols + h * s.D;
        let mean = 0;
        for (let j = 0; j < s.T; j++) {
          dp[j] = 0;
          if (prob[j] === 0) continue;
          const vj = (b * s.T + j) * s.cols + h * s.D;
          for (let c = 0; c < s.D; c++) dp[j] += p.dy[qi + c] * p.v[vj + c];
          mean += prob[j] * dp[j];
        }
        for (let j = 0; j < s.T; j++) {
          if (prob[j] === 0) continue;
          const kj = (b * s.T + j) * s.cols + h * s.D;
          const ds = prob[j] * (dp[j] - mean) * s.scale;
          for (let c = 0; c < s.D; c++) {
            dq[qi + c] += ds * p.k[kj + c];
            dk[kj + c] += ds * p.q[qi + c];
            dv[kj + c] += prob[j] * p.dy[qi + c];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
