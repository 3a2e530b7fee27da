// The training loop shared by pretraining, the Node fine-tuning script and the browser demo:
// batches from a seeded Batcher, one command encoder per step (forward, backward, AdamW), and
// every step's loss copied on the device into a history buffer, so logging does not force a
// host round-trip each step. The host reads the history every `logEvery` steps.

import { AdamW, type TrainableParam } from '../../src/optim.js';
import type { Tensor } from '../../src/tensor.js';
import { Batcher, type Windows } from './data.js';
import type { CharLM } from './model.js';
import { encodeTrainingStep } from '../common.js';

export interface TrainConfig {
  steps: number;
  batch: number;
  lr: number;
  warmup?: number;
  /** Floor of the cosine decay as a fraction of lr. */
  minRatio?: number;
  weightDecay?: number;
  clip?: number;
  seed?: number;
  /** Read the loss history back every this many steps (and at the end). */
  logEvery?: number;
}

export interface Progress {
  step: number;
  /** Per-step training losses read so far: [step, loss]. */
  losses: [number, number][];
  lr: number;
  /** Mean wall-clock ms per step since the first step (which compiles the pipelines). */
  msPerStep: number;
}

export interface TrainResult {
  losses: [number, number][];
  msPerStep: number;
  optimizer: AdamW;
}

export async function train(
  model: CharLM,
  params: TrainableParam[],
  windows: Windows,
  cfg: TrainConfig,
  onProgress?: (p: Progress) => void | Promise<void>,
  shouldStop?: () => boolean,
): Promise<TrainResult> {
  const { ctx } = model;
  const B = cfg.batch;
  const C = model.config.context;
  const opt = new AdamW(ctx, params, {
    lr: cfg.lr,
    weightDecay: cfg.weightDecay ?? 0,
    maxGradNorm: cfg.clip,
    schedule: { warmup: Math.min(cfg.warmup ?? 0, cfg.steps), total: cfg.steps, decay: 'cosine', minRatio: cfg.minRatio ?? 0.1 },
  });
  const batcher = new Batcher(windows, cfg.seed ?? 1);
  const b = model.batch(B);
  const ids = new Uint32Array(B * C);
  const targets = new Uint32Array(B);
  const logEvery = cfg.logEvery ?? 10;
  const history: Tensor = ctx.zeros([cfg.steps], 'f32', 'loss history');
  const losses: [number, number][] = [];
  let read = 0;
  let t0 = 0;
  const readBack = async (upTo: number) => {
    const all = await ctx.read(history);
    for (; read < upTo; read++) losses.push([read + 1, all[read]]);
  };
  try {
    for (let step = 0; step < cfg.steps; step++) {
      if (shouldStop?.()) break;
      batcher.fill(ids, targets);
      model.setBatch(b, ids, targets);
      const lr = opt.currentLr;
      await encodeTrainingStep(ctx, model, b, opt, history, step);
      if (step === 0) {
        await ctx.sync();
        t0 = performance.now();
      }
      if ((step + 1) % logEvery === 0 || step + 1 === cfg.steps) {
        await readBack(step + 1);
        const msPerStep = step > 0 ? (performance.now() - t0) / step : 0;
        await onProgress?.({ step: step + 1, losses, lr, msPerStep });
      }
    }
    await ctx.sync();
    const done = Math.max(read, opt.stepCount);
    if (read < done) await readBack(done);
    const steps = opt.stepCount;
    return { losses, msPerStep: steps > 1 ? (performance.now() - t0) / (steps - 1) : 0, optimizer: opt };
  } catch (e) {
    // The caller gets the optimizer only from a finished run; a failed one frees its state here.
    opt.destroy();
    throw e;
  } finally {
    history.destroy();
  }
}
