// A character-level language model on the package's kernels (after Bengio et al. 2003 and
// Karpathy's makemore MLP): C characters of context → embeddings [C, D] concatenated → two
// square hidden layers with tanh → logits over the 27 characters.
//
//   e  = emb[ids] flattened          [B, C·D]   (C·D = H, so both hidden layers are square)
//   a1 = tanh(e  W1ᵀ + b1)           [B, H]     module 'h1'
//   a2 = tanh(a1 W2ᵀ + b2)           [B, H]     module 'h2'
//   logits = a2 Woᵀ + bo             [B, V]     module 'out'
//
// Pretraining trains every weight. Fine-tuning freezes them all and puts an adapter (any of the
// package's methods) on h1 and h2: the adapter computes the whole product `x W0ᵀ + adapter(x)`
// and the frozen bias is added by the activation kernel. The frozen h1 and h2 weights may be held
// in f16 or NF4 (`setBase`, QLoRA-style): every product reads them packed.
//
// Browser-safe: no Node APIs (the demo runs this file as it is).

import type { Context } from '../../src/runtime.js';
import type { LayerAdapter, Trainable } from '../common.js';
import type { Tensor } from '../../src/tensor.js';
import type { BaseFormat, BaseWeight, Weight } from '../../src/base.js';
import { quantizeNf4, toF16 } from '../../src/quant/index.js';
import { matmul } from '../../src/ops/matmul.js';
import { kaimingUniform } from '../../src/random.js';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from '../../src/adapters.js';
import {
  activationBackward,
  activationForward,
  embeddingBackward,
  embeddingForward,
  linearBackward,
  linearForward,
  softmaxCrossEntropy,
} from '../../src/nn.js';
import { V } from './data.js';

export interface CharLMConfig {
  context: number;
  embed: number;
  hidden: number;
  vocab: number;
}

export const DEFAULT_CONFIG: CharLMConfig = { context: 8, embed: 16, hidden: 128, vocab: V };

export const HIDDEN_MODULES = ['h1', 'h2'] as const;
export type HiddenModule = (typeof HIDDEN_MODULES)[number];

// The adapter contract of a layer (examples/common.ts), re-exported for the sessions.
export type { LayerAdapter, Trainable };

interface Weights {
  emb: Tensor; // [V, D]
  w1: Tensor; // [H, C·D]
  b1: Tensor; // [H]
  w2: Tensor; // [H, H]
  b2: Tensor; // [H]
  wo: Tensor; // [V, H]
  bo: Tensor; // [V]
}

const WEIGHT_KEYS: Record<keyof Weights, string> = {
  emb: 'emb.weight',
  w1: 'h1.weight',
  b1: 'h1.bias',
  w2: 'h2.weight',
  b2: 'h2.bias',
  wo: 'out.weight',
  bo: 'out.bias',
};

function weightShapes(c: CharLMConfig): Record<keyof Weights, number[]> {
  const CD = c.context * c.embed;
  return {
    emb: [c.vocab, c.embed],
    w1: [c.hidden, CD],
    b1: [c.hidden],
    w2: [c.hidden, c.hidden],
    b2: [c.hidden],
    wo: [c.vocab, c.hidden],
    bo: [c.vocab],
  };
}

/** Per-batch-size activations and their gradients; made on first use of a batch size. */
interface Batch {
  B: number;
  ids: Tensor; // u32 [B, C]
  targets: Tensor; // u32 [B]
  e: Tensor;
  p1: Tensor; // pre-activation (bias added in place)
  a1: Tensor;
  p2: Tensor;
  a2: Tensor;
  logits: Tensor;
  loss: Tensor;
  dlogits: Tensor;
  da2: Tensor;
  dp2: Tensor;
  da1: Tensor;
  dp1: Tensor;
  de: Tensor;
}

/** How the frozen h1 and h2 weights are held: f32 (the weights themselves), f16 or NF4. */
export interface BaseSettings {
  format: BaseFormat;
  /** NF4 block size (a power of two from 32 to 4096); default 64, bitsandbytes'. */
  blockSize?: number;
  /**
   * Free the f32 h1 and h2 weights once packed, so that the device holds the packed base only
   * (default false: they stay, to switch formats again; pretraining and `toSafetensors` need them).
   */
  dropF32?: boolean;
}

export class CharLM {
  readonly weights: Weights;
  /** Gradients of every weight, made by `trainAll()` for pretraining. */
  grads?: Weights;
  readonly adapters: Partial<Record<HiddenModule, LayerAdapter>> = {};
  #batches = new Map<number, Batch>();
  /** The packed h1 and h2 weights when the base is f16 or NF4. */
  #packed?: Record<HiddenModule, BaseWeight>;
  #f32Dropped = false;

  private constructor(
    readonly ctx: Context,
    readonly config: CharLMConfig,
    weights: Weights,
  ) {
    this.weights = weights;
  }

  /** A freshly initialised model (PyTorch's nn.Linear / nn.Embedding-like inits, seeded). */
  static init(ctx: Context, config: CharLMConfig = DEFAULT_CONFIG, seed = 1): CharLM {
    const s = weightShapes(config);
    const CD = config.context * config.embed;
    const size = (k: keyof Weights) => s[k].reduce((a, b) => a * b, 1);
    // Embeddings N(0,1)-like in scale: uniform with unit variance.
    const w: Weights = {
      emb: ctx.upload(kaimingUniform(size('emb'), 1 / 3, seed), s.emb, 'f32', 'emb'),
      w1: ctx.upload(kaimingUniform(size('w1'), CD, seed + 1), s.w1, 'f32', 'h1.weight'),
      b1: ctx.upload(kaimingUniform(size('b1'), CD, seed + 2), s.b1, 'f32', 'h1.bias'),
      w2: ctx.upload(kaimingUniform(size('w2'), config.hidden, seed + 3), s.w2, 'f32', 'h2.weight'),
      b2: ctx.upload(kaimingUniform(size('b2'), config.hidden, seed + 4), s.b2, 'f32', 'h2.bias'),
      // A small output layer starts the loss near log(V) instead of far above it.
      wo: ctx.upload(kaimingUniform(size('wo'), config.hidden * 100, seed + 5), s.wo, 'f32', 'out.weight'),
      bo: ctx.zeros(s.bo, 'f32', 'out.bias'),
    };
    return new CharLM(ctx, config, w);
  }

  /** Loads weights written by `toSafetensors` (the config travels in the file's metadata). */
  static fromSafetensors(ctx: Context, bytes: Uint8Array): CharLM {
    const { tensors, metadata } = decodeSafetensors(bytes, 'charlm weights');
    if (!metadata.config) throw new Error("charlm weights: metadata has no 'config'");
    const config = JSON.parse(metadata.config) as CharLMConfig;
    const shapes = weightShapes(config);
    const w = {} as Weights;
    for (const k of Object.keys(WEIGHT_KEYS) as (keyof Weights)[]) {
      const t = tensors[WEIGHT_KEYS[k]];
      if (!t) throw new Error(`charlm weights: '${WEIGHT_KEYS[k]}' is missing`);
      if (t.shape.join(',') !== shapes[k].join(','))
        throw new Error(`charlm weights: '${WEIGHT_KEYS[k]}' has shape [${t.shape.join(', ')}], expected [${shapes[k].join(', ')}]`);
      w[k] = ctx.upload(t.data, shapes[k], 'f32', WEIGHT_KEYS[k]);
    }
    return new CharLM(ctx, config, w);
  }

  async toSafetensors(metadata: Record<string, string> = {}): Promise<Uint8Array> {
    this.#needF32('toSafetensors');
    const shapes = weightShapes(this.config);
    const out: Record<string, NamedTensor> = {};
    for (const k of Object.keys(WEIGHT_KEYS) as (keyof Weights)[]) {
      out[WEIGHT_KEYS[k]] = { shape: shapes[k], data: await this.ctx.readF32(this.weights[k]) };
    }
    return encodeSafetensors(out, { ...metadata, config: JSON.stringify(this.config) });
  }

  /** In- and out-features of the adaptable modules. */
  get moduleShapes(): Record<HiddenModule, { n: number; m: number }> {
    const c = this.config;
    return { h1: { n: c.context * c.embed, m: c.hidden }, h2: { n: c.hidden, m: c.hidden } };
  }

  /** Frozen base weight W0 [m, n] of a hidden module, in the base's format. */
  baseWeight(mod: HiddenModule): Weight {
    if (this.#packed) return this.#packed[mod];
    return this.#f32Weight(mod);
  }

  #f32Weight(mod: HiddenModule): Tensor {
    return mod === 'h1' ? this.weights.w1 : this.weights.w2;
  }

  #needF32(where: string): void {
    if (this.#f32Dropped) throw new Error(`charlm.${where}: the f32 h1 and h2 weights were freed by setBase({ dropF32: true })`);
  }

  /** The format of the frozen h1 and h2 weights and its block size (0 unless NF4). */
  get base(): { format: BaseFormat; blockSize: number } {
    const w = this.#packed?.h1;
    return w ? { format: w.format, blockSize: w.blockSize } : { format: 'f32', blockSize: 0 };
  }

  /** Device bytes of the frozen h1 and h2 weights as held now (NF4: codes and absmax). */
  get baseBytes(): number {
    return HIDDEN_MODULES.reduce((a, mod) => {
      const w = this.baseWeight(mod);
      return a + (this.#packed ? (w as BaseWeight).bytes : (w as Tensor).buffer.size);
    }, 0);
  }

  /**
   * Holds the frozen h1 and h2 weights in `format`, made on the device from the f32 weights
   * (NF4 by `quantizeNf4`, f16 by `toF16`); 'f32' goes back to the f32 weights. Set it while no
   * adapter is installed (an adapter keeps the weight it was made on).
   */
  async setBase(s: BaseSettings): Promise<void> {
    const { format, blockSize = 64, dropF32 = false } = s;
    this.#needF32('setBase');
    // An adapter holds the weight it was made on, which this call replaces.
    if (HIDDEN_MODULES.some((mod) => this.adapters[mod])) throw new Error('charlm.setBase: remove the adapters first');
    if (format !== 'nf4' && s.blockSize !== undefined) throw new Error(`charlm.setBase: blockSize applies to an NF4 base only (format ${format})`);
    let packed: Record<HiddenModule, BaseWeight> | undefined;
    if (format !== 'f32') {
      const made: BaseWeight[] = [];
      try {
        for (const mod of HIDDEN_MODULES) {
          const w = this.#f32Weight(mod);
          const label = `${mod}.weight.${format}`;
          made.push(format === 'nf4' ? await quantizeNf4(this.ctx, w, { blockSize, label }) : await toF16(this.ctx, w, { label }));
        }
      } catch (e) {
        for (const w of made) w.destroy();
        throw e;
      }
      packed = { h1: made[0], h2: made[1] };
    } else if (dropF32) {
      throw new Error('charlm.setBase: dropF32 needs a packed format (f16 or nf4)');
    }
    if (this.#packed) for (const w of Object.values(this.#packed)) w.destroy();
    this.#packed = packed;
    if (dropF32) {
      for (const mod of HIDDEN_MODULES) this.#f32Weight(mod).destroy();
      this.#f32Dropped = true;
    }
  }

  get parameterCount(): number {
    return Object.values(this.weights).reduce((a, t) => a + t.size, 0);
  }

  /** Every weight becomes trainable (pretraining). */
  trainAll(): Trainable[] {
    if (this.#packed) throw new Error(`charlm.trainAll: pretraining needs the f32 base; this model's base is ${this.base.format}`);
    const s = weightShapes(this.config);
    if (!this.grads) {
      const g = {} as Weights;
      for (const k of Object.keys(s) as (keyof Weights)[]) g[k] = this.ctx.tensor(s[k], 'f32', `d${WEIGHT_KEYS[k]}`);
      this.grads = g;
    }
    return (Object.keys(s) as (keyof Weights)[]).map((k) => ({ name: WEIGHT_KEYS[k], param: this.weights[k], grad: this.grads![k] }));
  }

  batch(B: number): Batch {
    let b = this.#batches.get(B);
    if (b) return b;
    const { context: C, embed: D, hidden: H, vocab } = this.config;
    const t = (shape: number[], label: string) => this.ctx.tensor(shape, 'f32', `${label}[${B}]`);
    b = {
      B,
      ids: this.ctx.tensor([B, C], 'u32', 'ids'),
      targets: this.ctx.tensor([B], 'u32', 'targets'),
      e: t([B, C * D], 'e'),
      p1: t([B, H], 'p1'),
      a1: t([B, H], 'a1'),
      p2: t([B, H], 'p2'),
      a2: t([B, H], 'a2'),
      logits: t([B, vocab], 'logits'),
      loss: t([1], 'loss'),
      dlogits: t([B, vocab], 'dlogits'),
      da2: t([B, H], 'da2'),
      dp2: t([B, H], 'dp2'),
      da1: t([B, H], 'da1'),
      dp1: t([B, H], 'dp1'),
      de: t([B, C * D], 'de'),
    };
    this.#batches.set(B, b);
    return b;
  }

  /** Writes a batch's ids [B, C] and targets [B] (host arrays checked by the caller's data code). */
  setBatch(b: Batch, ids: Uint32Array, targets?: Uint32Array): void {
    this.ctx.write(b.ids, ids);
    if (targets) this.ctx.write(b.targets, targets);
  }

  async #hidden(enc: GPUCommandEncoder, mod: HiddenModule, x: Tensor, y: Tensor): Promise<void> {
    const adapter = this.adapters[mod];
    if (adapter) await adapter.forward(enc, x, y);
    else {
      const c = this.moduleShapes[mod];
      await matmul(this.ctx, { a: x, b: this.baseWeight(mod), c: y, M: x.shape[0], N: c.m, K: c.n, transB: true }, enc);
    }
  }

  /** Encodes the forward pass to logits; with `loss`, also the loss and dlogits. */
  async forward(enc: GPUCommandEncoder, b: Batch, loss = true): Promise<void> {
    const { ctx, weights: w } = this;
    const o = { encoder: enc };
    await embeddingForward(ctx, { table: w.emb, ids: b.ids, out: b.e }, o);
    await this.#hidden(enc, 'h1', b.e, b.p1);
    await activationForward(ctx, { x: b.p1, b: w.b1, y: b.a1, fn: 'tanh' }, o);
    await this.#hidden(enc, 'h2', b.a1, b.p2);
    await activationForward(ctx, { x: b.p2, b: w.b2, y: b.a2, fn: 'tanh' }, o);
    await linearForward(ctx, { x: b.a2, w: w.wo, b: w.bo, y: b.logits }, o);
    if (loss) await softmaxCrossEntropy(ctx, { logits: b.logits, targets: b.targets, loss: b.loss, dlogits: b.dlogits }, o);
  }

  /**
   * Encodes the backward pass from dlogits. Pretraining (after `trainAll`) fills every weight
   * gradient; with adapters, only the adapters' gradients are made (the base stays frozen).
   */
  async backward(enc: GPUCommandEncoder, b: Batch): Promise<void> {
    const { ctx, weights: w } = this;
    const o = { encoder: enc };
    const g = this.grads;
    const full = g !== undefined && !this.adapters.h1 && !this.adapters.h2;
    await linearBackward(ctx, { x: b.a2, w: w.wo, g: b.dlogits, dx: b.da2, dw: g?.wo, db: g?.bo }, { ...o, dw: full, db: full });
    await activationBackward(ctx, { x: b.p2, g: b.da2, dx: b.dp2, db: full ? g!.b2 : undefined, fn: 'tanh' }, o);
    if (this.adapters.h2) await this.adapters.h2.backward(enc, b.a1, b.dp2, b.da1);
    else if (this.#packed) {
      // dA1 = dP2 · W2 through the packed weight (no weight gradient: the base is frozen).
      const { n, m } = this.moduleShapes.h2;
      await matmul(ctx, { a: b.dp2, b: this.#packed.h2, c: b.da1, M: b.B, N: n, K: m }, enc);
    } else await linearBackward(ctx, { x: b.a1, w: w.w2, g: b.dp2, dx: b.da1, dw: g?.w2 }, { ...o, db: false, dw: full });
    await activationBackward(ctx, { x: b.p1, g: b.da1, dx: b.dp1, db: full ? g!.b1 : undefined, fn: 'tanh' }, o);
    if (this.adapters.h1) {
      await this.adapters.h1.backward(enc, b.e, b.dp1, b.de);
    } else if (full) {
      await linearBackward(ctx, { x: b.e, w: w.w1, g: b.dp1, dx: b.de, dw: g!.w1 }, { ...o, db: false });
      await embeddingBackward(ctx, { ids: b.ids, g: b.de, vocab: this.config.vocab, dtable: g!.emb }, o);
    }
  }

  /** Mean cross-entropy over windows (forward only, batches of `B`). */
  async evaluate(ids: Uint32Array, targets: Uint32Array, B = 512): Promise<number> {
    const C = this.config.context;
    const N = targets.length;
    let total = 0;
    for (let start = 0; start < N; start += B) {
      const size = Math.min(B, N - start);
      const b = this.batch(size);
      this.setBatch(b, ids.subarray(start * C, (start + size) * C), targets.subarray(start, start + size));
      await this.ctx.encode(undefined, (enc) => this.forward(enc, b, true));
      total += (await this.ctx.readF32(b.loss))[0] * size;
    }
    return total / N;
  }

  /** Logits [B, V] for contexts [B, C]. */
  async logits(ids: Uint32Array): Promise<Float32Array> {
    const B = ids.length / this.config.context;
    const b = this.batch(B);
    this.setBatch(b, ids);
    await this.ctx.encode(undefined, (enc) => this.forward(enc, b, false));
    return this.ctx.readF32(b.logits);
  }

  destroy(): void {
    for (const [k, t] of Object.entries(this.weights)) if (!(this.#f32Dropped && (k === 'w1' || k === 'w2'))) t.destroy();
    if (this.#packed) for (const w of Object.values(this.#packed)) w.destroy();
    if (this.grads) for (const t of Object.values(this.grads)) t.destroy();
    for (const b of this.#batches.values()) for (const v of Object.values(b)) if (typeof v === 'object') v.destroy();
    this.#batches.clear();
    for (const a of Object.values(this.adapters)) a?.destroy();
  }
}
