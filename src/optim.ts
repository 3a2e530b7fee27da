// AdamW on the GPU over every trainable buffer, with a warm-up + decay learning-rate schedule and
// gradient clipping by global norm computed on the device (docs/nn.md). Kernels: shaders/adamw.wgsl;
// float64 reference: src/reference/optim.ts.

import type { Context } from './runtime.js';
import { f32 } from './runtime.js';
import type { Tensor } from './tensor.js';
import { PeftError, checkDistinct, checkTensor } from './validate.js';

const SHADER = 'adamw';
const WG = 64;
const CHUNK = 4096; // elements per sum_squares workgroup (shaders/adamw.wgsl)

export interface ScheduleOptions {
  /** Steps of linear warm-up from lr/warmup to lr (0: none). */
  warmup: number;
  /** Step at which the decay reaches its floor; the rate stays there afterwards. */
  total: number;
  /** Shape of the decay after warm-up (default 'cosine'). */
  decay?: 'cosine' | 'linear' | 'constant';
  /** Floor as a fraction of the peak rate (default 0). */
  minRatio?: number;
}

/**
 * The learning rate of 0-based step `step`: (step + 1)/warmup · peak during warm-up, then a
 * cosine (or linear) decay from peak at step = warmup to minRatio·peak at step = total.
 */
export function learningRate(step: number, peak: number, schedule?: ScheduleOptions): number {
  if (!schedule) return peak;
  const { warmup, total } = schedule;
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const floor = peak * (schedule.minRatio ?? 0);
  const decay = schedule.decay ?? 'cosine';
  if (decay === 'constant') return peak;
  const progress = total > warmup ? Math.min(1, (step - warmup) / (total - warmup)) : 1;
  const shape = decay === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return floor + (peak - floor) * shape;
}

export interface TrainableParam {
  param: Tensor;
  /** Same shape as param; written by the backward before each step (not modified by the step). */
  grad: Tensor;
  /** Apply weight decay to this buffer (default true; usual practice turns it off for biases and norms). */
  decay?: boolean;
  /** For error messages. */
  name?: string;
}

export interface AdamWOptions {
  /** Peak learning rate. */
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** Decoupled weight decay λ (default 0.01, as PyTorch's AdamW). */
  weightDecay?: number;
  /** Clip gradients to this global L2 norm (over all buffers) before the update. */
  maxGradNorm?: number;
  /** Compute the global gradient norm every step even without clipping (for `gradNorm()`). */
  trackNorm?: boolean;
  schedule?: ScheduleOptions;
}

function positive(where: string, name: string, v: unknown, allowZero = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new PeftError(`${where}: '${name}' must be a ${allowZero ? 'non-negative' : 'positive'} finite number, got ${String(v)}`);
  }
  return v;
}

export class AdamW {
  readonly ctx: Context;
  readonly params: readonly Required<TrainableParam>[];
  readonly lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number | undefined;
  readonly schedule: ScheduleOptions | undefined;
  readonly trackNorm: boolean;
  /** First and second moments, one pair per param, zero at the start. */
  readonly m: Tensor[];
  readonly v: Tensor[];
  #t = 0;
  #partial: Tensor;
  #state: Tensor;
  #slots: number[];
  #totalSlots: number;

  constructor(ctx: Context, params: TrainableParam[], options: AdamWOptions) {
    const where = 'AdamW';
    if (!Array.isArray(params) || params.length === 0) throw new PeftError(`${where}: 'params' must be a non-empty array of { param, grad }`);
    const named = params.map((p, i) => {
      const name = p?.name ?? `params[${i}]`;
      if (!p || !p.param || !('buffer' in p.param)) throw new PeftError(`${where}: '${name}.param' must be a Tensor`);
      checkTensor(where, `${name}.param`, p.param, p.param.shape, `[${p.param.shape.join(', ')}]`);
      checkTensor(where, `${name}.grad`, p.grad, p.param.shape, `the shape of ${name}.param`);
      return { param: p.param, grad: p.grad, decay: p.decay !== false, name };
    });
    const all: Record<string, Tensor> = {};
    for (const p of named) {
      all[`${p.name}.param`] = p.param;
      all[`${p.name}.grad`] = p.grad;
    }
    checkDistinct(where, all);
    if (!options || typeof options !== 'object') throw new PeftError(`${where}: 'options' must be an object with at least { lr }`);
    this.lr = positive(where, 'lr', options.lr);
    const betas = options.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
      throw new PeftError(`${where}: 'betas' must be two numbers in [0, 1), got ${JSON.stringify(betas)}`);
    }
    this.betas = [betas[0], betas[1]];
    this.eps = positive(where, 'eps', options.eps ?? 1e-8);
    this.weightDecay = positive(where, 'weightDecay', options.weightDecay ?? 0.01, true);
    this.maxGradNorm = options.maxGradNorm === undefined ? undefined : positive(where, 'maxGradNorm', options.maxGradNorm);
    const s = options.schedule;
    if (s) {
      if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new PeftError(`${where}: 'schedule.warmup' must be a non-negative integer, got ${String(s.warmup)}`);
      if (!Number.isInteger(s.total) || s.total < s.warmup) throw new PeftError(`${where}: 'schedule.total' must be an integer ≥ warmup (${s.warmup}), got ${String(s.total)}`);
      if (s.decay !== undefined && !['cosine', 'linear', 'constant'].includes(s.decay)) {
        throw new PeftError(`${where}: 'schedule.decay' must be 'cosine', 'linear' or 'constant', got ${String(s.decay)}`);
      }
      if (s.minRatio !== undefined && !(typeof s.minRatio === 'number' && s.minRatio >= 0 && s.minRatio <= 1)) {
        throw new PeftError(`${where}: 'schedule.minRatio' must be a number in [0, 1], got ${String(s.minRatio)}`);
      }
      this.schedule = { ...s };
    }
    this.trackNorm = !!options.trackNorm || this.maxGradNorm !== undefined;
    this.ctx = ctx;
    this.params = named;
    this.m = named.map((p) => ctx.zeros(p.param.shape, 'f32', `adamw.m ${p.name}`));
    this.v = named.map((p) => ctx.zeros(p.param.shape, 'f32', `adamw.v ${p.name}`));
    this.#slots = [];
    let slots = 0;
    for (const p of named) {
      this.#slots.push(slots);
      slots += Math.ceil(p.param.size / CHUNK);
    }
    this.#totalSlots = slots;
    this.#partial = ctx.zeros([slots], 'f32', 'adamw.partial');
    // [‖g‖, clip scale]
    this.#state = ctx.upload([0, 1], [2], 'f32', 'adamw.state');
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.#t;
  }

  /** The learning rate the next step will use. */
  get currentLr(): number {
    return learningRate(this.#t, this.lr, this.schedule);
  }

  /**
   * One AdamW step over every buffer from its current gradient. With clipping or trackNorm the
   * global norm is reduced on the device and applied in the update without a host round-trip.
   */
  async step(opts: { encoder?: GPUCommandEncoder } = {}): Promise<void> {
    const ctx = this.ctx;
    await ctx.prepare([
      { shader: SHADER, entry: 'adamw_update' },
      ...(this.trackNorm ? [{ shader: SHADER, entry: 'sum_squares' }, { shader: SHADER, entry: 'clip_scale' }] : []),
    ]);
    const lr = this.currentLr;
    this.#t += 1;
    const t = this.#t;
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    const clip = this.maxGradNorm !== undefined;
    await ctx.encode(opts.encoder, (enc) => {
      if (this.trackNorm) {
        this.params.forEach((p, k) => {
          ctx.dispatch(enc, {
            shader: SHADER, entry: 'sum_squares', params: [p.param.size, this.#slots[k]], bindings: [p.grad, this.#partial],
            workgroups: Math.ceil(p.param.size / CHUNK), label: `grad norm ${p.name}`,
          });
        });
        ctx.dispatch(enc, {
          shader: SHADER, entry: 'clip_scale', params: [this.#totalSlots, f32(this.maxGradNorm ?? 3.4e38)],
          bindings: [this.#partial, this.#state], workgroups: 1, label: 'clip scale',
        });
      }
      this.params.forEach((p, k) => {
        ctx.dispatch(enc, {
          shader: SHADER, entry: 'adamw_update',
          params: [p.param.size, clip ? 1 : 0, f32(lr), f32(b1), f32(b2), f32(this.eps), f32(p.decay ? lr * this.weightDecay : 0), f32(bc1), f32(bc2)],
          bindings: [p.param, p.grad, this.m[k], this.v[k], this.#state],
          workgroups: Math.ceil(p.param.size / WG), label: `adamw ${p.name}`,
        });
      });
    });
  }

  /** The global gradient norm (before clipping) of the last step; needs maxGradNorm or trackNorm. */
  async gradNorm(): Promise<number> {
    if (!this.trackNorm) throw new PeftError("AdamW.gradNorm: the norm is only computed with 'maxGradNorm' or 'trackNorm' set");
    return (await this.ctx.read(this.#state))[0];
  }

  /** Zeroes the moments and the step count (the schedule starts over). */
  reset(): void {
    for (const t of [...this.m, ...this.v]) this.ctx.fill(t, 0);
    this.ctx.write(this.#state, [0, 1]);
    this.#t = 0;
  }

  /** Frees the optimizer's own buffers (moments, norm partials); params and grads are the caller's. */
  destroy(): void {
    for (const t of [...this.m, ...this.v, this.#partial, this.#state]) t.destroy();
  }
}
