// What the two example models (examples/charlm, examples/gpt) share beyond the package itself:
// the adapter contract of their layers, the encoded training step, temperature sampling, what a
// fine-tuning run returns and the report's averages and loss curves. Each is written once here; the
// scripts and sessions import it.

import type { Adapter, AdapterMethod } from '../src/adapters.js';
import type { Context } from '../src/runtime.js';
import type { Tensor } from '../src/tensor.js';

/** A trainable tensor and its gradient, for the optimizer. */
export interface Trainable {
  name: string;
  param: Tensor;
  grad: Tensor;
}

/**
 * What a model needs from a fine-tuning method on one of its layers (the package's AdapterLayer
 * fits): `forward` writes the whole output y = x W0ᵀ + adapter(x), `backward` writes dx and the
 * method's own gradients (listed in `trainables`).
 */
export interface LayerAdapter {
  readonly trainables: Trainable[];
  forward(enc: GPUCommandEncoder, x: Tensor, y: Tensor): Promise<void>;
  backward(enc: GPUCommandEncoder, x: Tensor, g: Tensor, dx: Tensor): Promise<void>;
  destroy(): void;
}

/**
 * One training step in one submission: forward, backward, the optimizer's update, and the batch's
 * mean loss copied into `history` at `step` (read back once at the end, not every step).
 */
export async function encodeTrainingStep<B extends { loss: Tensor }>(
  ctx: Context,
  model: { forward(enc: GPUCommandEncoder, b: B): Promise<void>; backward(enc: GPUCommandEncoder, b: B): Promise<void> },
  b: B,
  opt: { step(o: { encoder: GPUCommandEncoder }): Promise<unknown> },
  history: Tensor,
  step: number,
): Promise<void> {
  await ctx.encode(undefined, async (enc) => {
    await model.forward(enc, b);
    await model.backward(enc, b);
    await opt.step({ encoder: enc });
    enc.copyBufferToBuffer(b.loss.buffer, 0, history.buffer, step * 4, 4);
  });
}

/** An index drawn from softmax(row / temperature), with `u` uniform in [0, 1). */
export function sampleIndex(row: ArrayLike<number>, temperature: number, u: number): number {
  let max = -Infinity;
  for (let k = 0; k < row.length; k++) max = Math.max(max, row[k]);
  const p = Array.from(row, (v) => Math.exp((v - max) / temperature));
  let rest = u * p.reduce((a, c) => a + c, 0);
  for (let k = 0; k < p.length; k++) {
    rest -= p[k];
    if (rest <= 0) return k;
  }
  return p.length - 1;
}

/** Mean of the last `k` losses of a curve of (step, loss) points: a smoothed loss. */
export function tailMean(losses: [number, number][], k = 20): number {
  const tail = losses.slice(-k);
  return tail.reduce((a, [, l]) => a + l, 0) / Math.max(1, tail.length);
}

/** A fine-tuning run's final training loss: the mean of its last twentieth (at least 5 points). */
export function finalTrainLoss(losses: [number, number][]): number {
  return tailMean(losses, Math.max(5, Math.round(losses.length / 20)));
}

export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The sample standard deviation (0 for fewer than two values). */
export const sd = (xs: number[]): number => (xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)) : 0);
/** "mean ± sd" to four places over several seeds, or the one value. */
export const meanSd = (xs: number[]): string => (xs.length > 1 ? `${mean(xs).toFixed(4)} ± ${sd(xs).toFixed(4)}` : mean(xs).toFixed(4));

/** What one fine-tuning run returns (examples/charlm/session.ts; the GPT's adds its throughput). */
export interface FinetuneResult {
  method: AdapterMethod;
  label: string;
  r: number;
  trainable: number;
  msPerStep: number;
  steps: number;
  losses: [number, number][];
  trainLoss: number;
  validationLoss: number;
  samples: string[];
  adapter: Adapter;
  /** Numerical rank of ΔW = W' − W0 per module (singular values above 1e-4 of the largest, src/rank.ts). */
  deltaRank: Record<string, number>;
}

/** The mean training loss of a run: the area under its loss curve over its steps. */
export const meanLoss = (r: FinetuneResult): number => mean(r.losses.map(([, l]) => l));

/**
 * The loss chart's series: each method's loss averaged over its seeds step by step, then a trailing
 * mean over `k` steps; LoRMA's lines dashed.
 */
export function lossSeries(runs: Iterable<FinetuneResult[]>, k: number): { name: string; points: [number, number][]; dashed: boolean }[] {
  return [...runs].map((rs) => {
    const curve = rs[0].losses.map(([x], i): [number, number] => [x, mean(rs.map((r) => r.losses[i]?.[1] ?? NaN))]);
    const points = curve.map(([x], i): [number, number] => {
      const w = curve.slice(Math.max(0, i - k + 1), i + 1);
      return [x, w.reduce((a, [, y]) => a + y, 0) / w.length];
    });
    return { name: rs[0].label, points, dashed: rs[0].method.startsWith('lorma') };
  });
}
