// Float64 reference for the layers in src/nn.ts (docs/nn.md). Host arrays, shapes passed
// explicitly, row-major; backward functions return ∂L/∂· given g = ∂L/∂(output).

import { matmul, type F64 } from './linalg.js';

export type Activation = 'gelu' | 'tanh';

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_C * (x + GELU_A * x ** 3)));
}

export function geluGrad(x: number): number {
  const t = Math.tanh(GELU_C * (x + GELU_A * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * x * x);
}

function fAct(fn: Activation): [(x: number) => number, (x: number) => number] {
  return fn === 'tanh' ? [Math.tanh, (x) => 1 - Math.tanh(x) ** 2] : [gelu, geluGrad];
}

/** out[t, :] = table[ids[t], :] → [N·D]. Throws on an id outside [0, V). */
export function embeddingForward(p: { V: number; D: number; table: ArrayLike<number>; ids: ArrayLike<number> }): F64 {
  const out = new Float64Array(p.ids.length * p.D);
  for (let t = 0; t < p.ids.length; t++) {
    const id = p.ids[t];
    if (!(Number.isInteger(id) && id >= 0 && id < p.V)) throw new Error(`embedding: id ${id} at ${t} outside [0, ${p.V})`);
    for (let d = 0; d < p.D; d++) out[t * p.D + d] = p.table[id * p.D + d];
  }
  return out;
}

/** dtable[v, :] = Σ_{t: ids[t] = v} g[t, :] → [V·D]. */
export function embeddingBackward(p: { V: number; D: number; ids: ArrayLike<number>; g: ArrayLike<number> }): F64 {
  const dt = new Float64Array(p.V * p.D);
  for (let t = 0; t < p.ids.length; t++) {
    for (let d = 0; d < p.D; d++) dt[p.ids[t] * p.D + d] += p.g[t * p.D + d];
  }
  return dt;
}

/** db[j] = Σ_t g[t, j]. */
export function biasGrad(p: { T: number; n: number; g: ArrayLike<number> }): F64 {
  const db = new Float64Array(p.n);
  for (let t = 0; t < p.T; t++) for (let j = 0; j < p.n; j++) db[j] += p.g[t * p.n + j];
  return db;
}

/** y = x wᵀ + b: x [T, n], w [m, n], b [m] → [T, m]. */
export function linearForward(p: { T: number; n: number; m: number; x: ArrayLike<number>; w: ArrayLike<number>; b?: ArrayLike<number> }): F64 {
  const y = matmul(p.x, p.w, p.T, p.n, p.m, false, true);
  if (p.b) for (let t = 0; t < p.T; t++) for (let j = 0; j < p.m; j++) y[t * p.m + j] += p.b[j];
  return y;
}

export function linearBackward(p: { T: number; n: number; m: number; x: ArrayLike<number>; w: ArrayLike<number>; g: ArrayLike<number> }): {
  dx: F64;
  dw: F64;
  db: F64;
} {
  return {
    dx: matmul(p.g, p.w, p.T, p.m, p.n),
    dw: matmul(p.g, p.x, p.m, p.T, p.n, true, false),
    db: biasGrad({ T: p.T, n: p.m, g: p.g }),
  };
}

/** y = f(x + b) elementwise (b [n] broadcast over rows, optional). */
export function activationForward(p: { n: number; x: ArrayLike<number>; b?: ArrayLike<number>; fn?: Activation }): F64 {
  const [f] = fAct(p.fn ?? 'gelu');
  return Float64Array.from(p.x as ArrayLike<number>, (v, i) => f(v + (p.b ? p.b[i % p.n] : 0)));
}

/** dx = g ⊙ f'(x) (x the pre-activation) and db = Σ_t dx. */
export function activationBackward(p: { n: number; x: ArrayLike<number>; g: ArrayLike<number>; fn?: Activation }): { dx: F64; db: F64 } {
  const [, df] = fAct(p.fn ?? 'gelu');
  const dx = Float64Array.from(p.x as ArrayLike<number>, (v, i) => p.g[i] * df(v));
  return { dx, db: biasGrad({ T: p.x.length / p.n, n: p.n, g: dx }) };
}

/** Per row: y = (x − μ)·rstd·γ + β, rstd = 1/√(σ² + eps) with the biased variance. */
export function layerNormForward(p: {
  T: number;
  n: number;
  x: ArrayLike<number>;
  gamma: ArrayLike<number>;
  beta: ArrayLike<number>;
  eps?: number;
}): {
  y: F64;
  mean: F64;
  rstd: F64;
} {
  const eps = p.eps ?? 1e-5;
  const y = new Float64Array(p.T * p.n);
  const mean = new Float64Array(p.T);
  const rstd = new Float64Array(p.T);
  for (let t = 0; t < p.T; t++) {
    let s = 0;
    for (let j = 0; j < p.n; j++) s += p.x[t * p.n + j];
    const mu = s / p.n;
    let q = 0;
    for (let j = 0; j < p.n; j++) q += (p.x[t * p.n + j] - mu) ** 2;
    const r = 1 / Math.sqrt(q / p.n + eps);
    for (let j = 0; j < p.n; j++) y[t * p.n + j] = (p.x[t * p.n + j] - mu) * r * p.gamma[j] + p.beta[j];
    mean[t] = mu;
    rstd[t] = r;
  }
  return { y, mean, rstd };
}

/** dx, dγ, dβ of layer norm given g = ∂L/∂y (statistics recomputed from x). */
export function layerNormBackward(p: { T: number; n: number; x: ArrayLike<number>; gamma: ArrayLike<number>; g: ArrayLike<number>; eps?: number }): {
  dx: F64;
  dgamma: F64;
  dbeta: F64;
} {
  const { mean, rstd } = layerNormForward({ ...p, beta: new Float64Array(p.n) });
  const { T, n } = p;
  const dx = new Float64Array(T * n);
  const dgamma = new Float64Array(n);
  const dbeta = new Float64Array(n);
  for (let t = 0; t < T; t++) {
    const xh = (j: number) => (p.x[t * n + j] - mean[t]) * rstd[t];
    let m1 = 0;
    let m2 = 0;
    for (let j = 0; j < n; j++) {
      const gh = p.g[t * n + j] * p.gamma[j];
      m1 += gh / n;
      m2 += (gh * xh(j)) / n;
      dgamma[j] += p.g[t * n + j] * xh(j);
      dbeta[j] += p.g[t * n + j];
    }
    for (let j = 0; j < n; j++) dx[t * n + j] = rstd[t] * (p.g[t * n + j] * p.gamma[j] - m1 - xh(j) * m2);
  }
  return { dx, dgamma, dbeta };
}

/** loss = (1/T) Σ_t [logsumexp(z_t) − z_t[target_t]], dlogits = (softmax(z) − onehot)/T. */
export function softmaxCrossEntropy(p: { T: number; V: number; logits: ArrayLike<number>; targets: ArrayLike<number> }): {
  loss: number;
  dlogits: F64;
} {
  const { T, V } = p;
  const dlogits = new Float64Array(T * V);
  let loss = 0;
  for (let t = 0; t < T; t++) {
    const tgt = p.targets[t];
    if (!(Number.isInteger(tgt) && tgt >= 0 && tgt < V)) throw new Error(`softmaxCrossEntropy: target ${tgt} at ${t} outside [0, ${V})`);
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, p.logits[t * V + j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(p.logits[t * V + j] - mx);
    loss += Math.log(s) + mx - p.logits[t * V + tgt];
    for (let j = 0; j < V; j++) dlogits[t * V + j] = (Math.exp(p.logits[t * V + j] - mx) / s - (j === tgt ? 1 : 0)) / T;
  }
  return { loss: loss / T, dlogits };
}

/** x[i, :] + pos[i mod T, :] for x [N·D] (N = batch·T rows) and pos [P·D], P ≥ T. */
export function addPositions(p: { N: number; D: number; T: number; x: ArrayLike<number>; pos: ArrayLike<number> }): F64 {
  const out = new Float64Array(p.N * p.D);
  for (let i = 0; i < p.N; i++) for (let d = 0; d < p.D; d++) out[i * p.D + d] = p.x[i * p.D + d] + p.pos[(i % p.T) * p.D + d];
  return out;
}

/** dpos[t, :] = Σ_{i: i mod T = t} g[i, :] for t < T, zero past T → [P·D]. */
export function positionGrad(p: { N: number; D: number; T: number; P: number; g: ArrayLike<number> }): F64 {
  const dpos = new Float64Array(p.P * p.D);
  for (let i = 0; i < p.N; i++) for (let d = 0; d < p.D; d++) dpos[(i % p.T) * p.D + d] += p.g[i * p.D + d];
  return dpos;
}

/**
 * A tied embedding at both ends: x = table[ids] (+ positions), h = x (the model's body is the
 * caller's), logits = h tableᵀ. Given dlogits and dh_in (the gradient that reached the input
 * embeddings through the body), dtable = Σ_t dx[t] scattered by id + dlogitsᵀ h.
 */
export function tiedOutputForward(p: { T: number; V: number; D: number; h: ArrayLike<number>; table: ArrayLike<number> }): F64 {
  return matmul(p.h, p.table, p.T, p.D, p.V, false, true);
}

export function tiedOutputBackward(p: {
  T: number;
  V: number;
  D: number;
  h: ArrayLike<number>;
  table: ArrayLike<number>;
  g: ArrayLike<number>;
  /** Token ids whose embeddings the table also gave, with their gradients (the input end). */
  ids?: ArrayLike<number>;
  dx?: ArrayLike<number>;
}): { dh: F64; dtable: F64 } {
  const dh = matmul(p.g, p.table, p.T, p.V, p.D);
  const dtable = matmul(p.g, p.h, p.V, p.T, p.D, true, false);
  if (p.ids && p.dx) {
    const din = embeddingBackward({ V: p.V, D: p.D, ids: p.ids, g: p.dx });
    for (let i = 0; i < dtable.length; i++) dtable[i] += din[i];
  }
  return { dh, dtable };
}
