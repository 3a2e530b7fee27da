// Float64 reference for src/optim.ts (docs/nn.md): the learning-rate schedule, the global gradient
// norm and clipping, and one AdamW step over several buffers.

import type { F64 } from './linalg.js';

export interface ScheduleRef {
  warmup: number;
  total: number;
  decay?: 'cosine' | 'linear' | 'constant';
  minRatio?: number;
}

/** Learning rate of 0-based step `step`: linear warm-up to `peak`, then cosine / linear decay to minRatio·peak at `total`. */
export function learningRate(step: number, peak: number, s?: ScheduleRef): number {
  if (!s) return peak;
  if (step < s.warmup) return peak * ((step + 1) / s.warmup);
  if (s.decay === 'constant') return peak;
  const lo = peak * (s.minRatio ?? 0);
  const progress = s.total === s.warmup ? 1 : Math.min(1, (step - s.warmup) / (s.total - s.warmup));
  const f = s.decay === 'linear' ? 1 - progress : (1 + Math.cos(Math.PI * progress)) / 2;
  return lo + (peak - lo) * f;
}

/** ‖(g_1, …, g_K)‖₂ over all buffers together. */
export function globalNorm(grads: ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/** min(1, maxNorm / (‖g‖ + 1e-6)), as torch.nn.utils.clip_grad_norm_. */
export function clipScale(norm: number, maxNorm?: number): number {
  return maxNorm === undefined ? 1 : Math.min(1, maxNorm / (norm + 1e-6));
}

export interface AdamWRefState {
  m: F64[];
  v: F64[];
  /** Steps taken. */
  t: number;
}

export function adamwInit(sizes: number[]): AdamWRefState {
  return { m: sizes.map((n) => new Float64Array(n)), v: sizes.map((n) => new Float64Array(n)), t: 0 };
}

/**
 * One AdamW step, in place on `params` and `state`, at learning rate `lr`:
 *   g ← c·g (c the clip scale), m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g²,
 *   p ← p − lr·λ·p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε).
 * Returns the global norm before clipping and the scale applied.
 */
export function adamwStep(
  params: Float64Array[],
  grads: ArrayLike<number>[],
  state: AdamWRefState,
  o: { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number; decay?: boolean[]; maxGradNorm?: number },
): { norm: number; scale: number } {
  const [b1, b2] = o.betas ?? [0.9, 0.999];
  const eps = o.eps ?? 1e-8;
  const wd = o.weightDecay ?? 0.01;
  const norm = globalNorm(grads);
  const c = clipScale(norm, o.maxGradNorm);
  state.t += 1;
  const bc1 = 1 - Math.pow(b1, state.t);
  const bc2 = 1 - Math.pow(b2, state.t);
  params.forEach((p, k) => {
    const lam = o.decay?.[k] === false ? 0 : wd;
    const m = state.m[k];
    const v = state.v[k];
    for (let i = 0; i < p.length; i++) {
      const g = c * grads[k][i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      p[i] = p[i] - o.lr * lam * p[i] - (o.lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
    }
  });
  return { norm, scale: c };
}
