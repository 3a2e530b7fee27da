// AdamW on the GPU over every trainable buffer, with a warm-up + decay learning-rate schedule and
// gradient clipping by global norm computed on the device (docs/nn.md). Kernels: shaders/adamw.wgsl;
// float64 reference: src/reference/optim.ts.

import type { Context } from './runtime.js';
import type { Tensor } from './tensor.js';
import { PeftError, asTensor, checkContext, checkDistinct, checkOwner, checkTensor, describeValue } from './validate.js';

const SHADER = 'adamw';
const WG = 64;
const CHUNK = 4096; // elements per sum_squares workgroup (shaders/adamw.wgsl)
const SLOT = 4; // floats per partial sum: exponent, scaled sum of squares, NaNs, Infs
// The optimizer's state on the device (shaders/adamw.wgsl, clip_scale): [‖g‖, clip scale, its
// power-of-two shift, non-finite gradients of the last step, steps skipped].
const STATE = [0, 1, 0, 0, 0];

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
  /**
   * Skip a step on the device when any gradient is NaN or ±Inf, as mixed-precision trainers do:
   * no parameter, moment or weight-decay change. The step still counts for the schedule and the
   * bias correction. `lastStepSkipped()` and `skippedSteps()` read it back on demand; nothing
   * waits for the device during the step. Implies the norm pass (so `gradNorm()` works too).
   */
  skipNonFinite?: boolean;
  schedule?: ScheduleOptions;
  /**
   * Pack every buffer into one arena so a step is 3 dispatches whatever the number of buffers
   * (default: when the total fits one storage binding). false: 2 dispatches per buffer + 1.
   */
  fused?: boolean;
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
  readonly skipNonFinite: boolean;
  /** True when every buffer is packed into one arena (3 dispatches a step); see AdamWOptions.fused. */
  readonly fused: boolean;
  #t = 0;
  // Fused: one arena each for params, grads, m, v; `#offset[k]` is buffer k's first element.
  // Per buffer: m and v per param, the arenas unused.
  #m: Tensor<'f32'>[];
  #v: Tensor<'f32'>[];
  #flat: { p: Tensor; g: Tensor } | undefined;
  #offset: number[];
  #decayEnd = 0;
  #total: number;
  #partial: Tensor;
  #state: Tensor;
  #slots: number[];
  #totalSlots: number;

  constructor(ctx: Context, params: TrainableParam[], options: AdamWOptions) {
    const where = 'AdamW';
    checkContext(where, ctx);
    if (!Array.isArray(params) || params.length === 0) throw new PeftError(`${where}: 'params' must be a non-empty array of { param, grad }`);
    const named = params.map((p, i) => {
      const name = p?.name ?? `params[${i}]`;
      if (!p || typeof p !== 'object') throw new PeftError(`${where}: '${name}' must be { param, grad }, got ${describeValue(p)}`);
      asTensor(where, `${name}.param`, p.param);
      checkOwner(where, `${name}.param`, ctx, p.param);
      asTensor(where, `${name}.grad`, p.grad);
      checkOwner(where, `${name}.grad`, ctx, p.grad);
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
      if (!Number.isInteger(s.warmup) || s.warmup < 0)
        throw new PeftError(`${where}: 'schedule.warmup' must be a non-negative integer, got ${String(s.warmup)}`);
      if (!Number.isInteger(s.total) || s.total < s.warmup)
        throw new PeftError(`${where}: 'schedule.total' must be an integer ≥ warmup (${s.warmup}), got ${String(s.total)}`);
      if (s.decay !== undefined && !['cosine', 'linear', 'constant'].includes(s.decay)) {
        throw new PeftError(`${where}: 'schedule.decay' must be 'cosine', 'linear' or 'constant', got ${String(s.decay)}`);
      }
      if (s.minRatio !== undefined && !(typeof s.minRatio === 'number' && s.minRatio >= 0 && s.minRatio <= 1)) {
        throw new PeftError(`${where}: 'schedule.minRatio' must be a number in [0, 1], got ${String(s.minRatio)}`);
      }
      this.schedule = { ...s };
    }
    if (options.skipNonFinite !== undefined && typeof options.skipNonFinite !== 'boolean') {
      throw new PeftError(`${where}: 'skipNonFinite' must be a boolean, got ${typeof options.skipNonFinite}`);
    }
    this.skipNonFinite = !!options.skipNonFinite;
    this.trackNorm = !!options.trackNorm || this.maxGradNorm !== undefined || this.skipNonFinite;
    this.ctx = ctx;
    this.params = named;
    this.#total = named.reduce((a, p) => a + p.param.size, 0);
    const fits = this.#total * 4 <= ctx.limits.maxStorageBufferBindingSize;
    if (options.fused === true && !fits) {
      throw new PeftError(`${where}: 'fused' needs all ${this.#total} elements in one binding, past this device's maxStorageBufferBindingSize`);
    }
    this.fused = options.fused ?? fits;
    this.#offset = [];
    this.#slots = [];
    if (this.fused) {
      // Buffers with decay first, so one bound [0, decayEnd) tells the kernel which elements decay.
      let at = 0;
      for (const pass of [true, false]) {
        named.forEach((p, k) => {
          if (p.decay !== pass) return;
          this.#offset[k] = at;
          at += p.param.size;
        });
        if (pass) this.#decayEnd = at;
      }
      this.#flat = { p: ctx.tensor([this.#total], 'f32', 'adamw.params'), g: ctx.tensor([this.#total], 'f32', 'adamw.grads') };
      this.#m = [ctx.zeros([this.#total], 'f32', 'adamw.m')];
      this.#v = [ctx.zeros([this.#total], 'f32', 'adamw.v')];
      this.#slots = [0];
      this.#totalSlots = Math.ceil(this.#total / CHUNK);
    } else {
      this.#m = named.map((p) => ctx.zeros(p.param.shape, 'f32', `adamw.m ${p.name}`));
      this.#v = named.map((p) => ctx.zeros(p.param.shape, 'f32', `adamw.v ${p.name}`));
      let slots = 0;
      for (const p of named) {
        this.#slots.push(slots);
        slots += Math.ceil(p.param.size / CHUNK);
      }
      this.#totalSlots = slots;
    }
    this.#partial = ctx.zeros([this.#totalSlots, SLOT], 'f32', 'adamw.partial');
    this.#state = ctx.upload(STATE, [STATE.length], 'f32', 'adamw.state');
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
   * Fused: params and grads are copied into the arenas, updated there by 3 dispatches (1 without
   * the norm) and the params copied back, all in one encoder.
   */
  async step(opts: { encoder?: GPUCommandEncoder } = {}): Promise<void> {
    const ctx = this.ctx;
    checkContext('AdamW.step', ctx);
    if (opts === null || typeof opts !== 'object') throw new PeftError(`AdamW.step: options must be an object, got ${describeValue(opts)}`);
    await ctx.prepare([
      { shader: SHADER, entry: 'adamw_update' },
      ...(this.trackNorm
        ? [
            { shader: SHADER, entry: 'sum_squares' },
            { shader: SHADER, entry: 'clip_scale' },
          ]
        : []),
    ]);
    const lr = this.currentLr;
    this.#t += 1;
    const t = this.#t;
    const [b1, b2] = this.betas;
    // The step's hyperparameters, the same for every binding (shaders/adamw.wgsl, AdamWParams).
    const hyper = {
      clip: this.maxGradNorm !== undefined ? 1 : 0,
      skip: this.skipNonFinite ? 1 : 0,
      lr,
      beta1: b1,
      beta2: b2,
      omb1: 1 - b1,
      omb2: 1 - b2,
      eps: this.eps,
      decay: lr * this.weightDecay,
      bc1: 1 - b1 ** t,
      bc2: 1 - b2 ** t,
    };
    // [buffer, grad, m, v, elements, slot, decayEnd]
    const groups: [Tensor, Tensor, Tensor, Tensor, number, number, number][] = this.#flat
      ? [[this.#flat.p, this.#flat.g, this.#m[0], this.#v[0], this.#total, 0, this.#decayEnd]]
      : this.params.map((p, k) => [p.param, p.grad, this.#m[k], this.#v[k], p.param.size, this.#slots[k], p.decay ? p.param.size : 0]);
    await ctx.encode(opts.encoder, (enc) => {
      const flat = this.#flat;
      if (flat) {
        this.params.forEach((p, k) => {
          enc.copyBufferToBuffer(p.grad.buffer, 0, flat.g.buffer, this.#offset[k] * 4, p.param.byteLength);
          enc.copyBufferToBuffer(p.param.buffer, 0, flat.p.buffer, this.#offset[k] * 4, p.param.byteLength);
        });
      }
      if (this.trackNorm) {
        for (const [, g, , , n, slot] of groups) {
          ctx.dispatch(enc, {
            shader: SHADER,
            entry: 'sum_squares',
            params: { n, slot },
            bindings: [g, this.#partial],
            workgroups: Math.ceil(n / CHUNK),
            label: 'adamw grad norm',
          });
        }
        ctx.dispatch(enc, {
          shader: SHADER,
          entry: 'clip_scale',
          params: { slots: this.#totalSlots, max_norm: this.maxGradNorm ?? 3.4e38, nan_bits: 0x7fc00000, skip: this.skipNonFinite ? 1 : 0 },
          bindings: [this.#partial, this.#state],
          workgroups: 1,
          label: 'adamw clip scale',
        });
      }
      for (const [p, g, m, v, n, , decayEnd] of groups) {
        ctx.dispatch(enc, {
          shader: SHADER,
          entry: 'adamw_update',
          params: { ...hyper, n, decay_end: decayEnd },
          bindings: [p, g, m, v, this.#state],
          workgroups: Math.ceil(n / WG),
          label: 'adamw update',
        });
      }
      if (flat) {
        this.params.forEach((p, k) => enc.copyBufferToBuffer(flat.p.buffer, this.#offset[k] * 4, p.param.buffer, 0, p.param.byteLength));
      }
    });
  }

  /**
   * The global gradient norm (before clipping) of the last step; needs maxGradNorm, trackNorm or
   * skipNonFinite. NaN when a gradient was NaN, Infinity when one was ±Inf or the norm passes f32.
   */
  async gradNorm(): Promise<number> {
    if (!this.trackNorm) throw new PeftError("AdamW.gradNorm: the norm is only computed with 'maxGradNorm' or 'trackNorm' set (or 'skipNonFinite')");
    return (await this.ctx.read(this.#state))[0];
  }

  /** Whether the last step was skipped for a non-finite gradient (needs skipNonFinite; reads the device). */
  async lastStepSkipped(): Promise<boolean> {
    this.#needGuard('lastStepSkipped');
    return this.#t > 0 && (await this.ctx.read(this.#state))[3] > 0;
  }

  /** Steps skipped for non-finite gradients since construction or reset() (needs skipNonFinite; reads the device). */
  async skippedSteps(): Promise<number> {
    this.#needGuard('skippedSteps');
    return (await this.ctx.read(this.#state))[4];
  }

  #needGuard(what: string): void {
    if (!this.skipNonFinite) throw new PeftError(`AdamW.${what}: steps are only checked for non-finite gradients with 'skipNonFinite' set`);
  }

  /** Reads buffer k's first and second moments back (for checkpoints and tests). */
  async moments(k: number): Promise<{ m: Float32Array; v: Float32Array }> {
    const p = this.params[k];
    if (!p) throw new PeftError(`AdamW.moments: 'k' must be an index in [0, ${this.params.length}), got ${k}`);
    if (!this.#flat) return { m: await this.ctx.read(this.#m[k]), v: await this.ctx.read(this.#v[k]) };
    const at = this.#offset[k];
    const slice = (a: Float32Array) => a.slice(at, at + p.param.size);
    return { m: slice(await this.ctx.read(this.#m[0])), v: slice(await this.ctx.read(this.#v[0])) };
  }

  /** Zeroes the moments and the step count (the schedule starts over). */
  reset(): void {
    for (const t of [...this.#m, ...this.#v]) this.ctx.fill(t, 0);
    this.ctx.write(this.#state, STATE);
    this.#t = 0;
  }

  /** Frees the optimizer's own buffers (moments, arenas, norm partials); params and grads are the caller's. */
  destroy(): void {
    for (const t of [...this.#m, ...this.#v, this.#partial, this.#state]) t.destroy();
    if (this.#flat) {
      this.#flat.p.destroy();
      this.#flat.g.destroy();
    }
  }
}
