// A small pre-norm decoder-only transformer (GPT-2's layout) on the package's kernels.
//
//   x₀ = E[ids] + P[0..T)                                   token + learned position embeddings
//   per layer l:
//     a = LN₁(x);  q, k, v = a W_qᵀ, a W_kᵀ, a W_vᵀ          modules self_attn.{q,k,v}_proj
//     x = x + attention(q, k, v) W_oᵀ                        causal, fused (src/attention.ts); o_proj
//     b = LN₂(x);  x = x + gelu(b W_fc1ᵀ) W_fc2ᵀ              modules mlp.fc1, mlp.fc2
//   logits = LN_f(x) Eᵀ                                      output projection tied to E
//
// Linear layers have no bias (as LLaMA's), so an adapter computes a whole projection
// `x W0ᵀ + adapter(x)`, the same seam as examples/charlm: `adapters[module]` replaces the frozen
// product, forward and backward, for any of the six projections of any layer. Module names follow
// PEFT's conventions (`layers.0.self_attn.q_proj`, `layers.0.mlp.fc1`), so target_modules
// ['q_proj', 'v_proj'] selects what it does in PEFT.
//
// Browser-safe: no Node APIs.

import type { Context } from '../../src/runtime.js';
import type { LayerAdapter, Trainable } from '../common.js';
import type { Tensor } from '../../src/tensor.js';
import { matmul } from '../../src/ops/matmul.js';
import { uniform } from '../../src/random.js';
import { attentionBackward, attentionForward } from '../../src/attention.js';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from '../../src/adapters.js';
import type { BaseFormat, BaseWeight, Weight } from '../../src/base.js';
import { quantizeNf4, toF16 } from '../../src/quant/index.js';
import {
  activationBackward,
  activationForward,
  addPositions,
  embeddingBackward,
  embeddingForward,
  layerNormBackward,
  layerNormForward,
  linearBackward,
  linearForward,
  positionGrad,
  residualAdd,
  softmaxCrossEntropy,
} from '../../src/nn.js';

export interface GPTConfig {
  vocab: number;
  /** Longest sequence: rows of the position table. */
  context: number;
  dim: number;
  layers: number;
  heads: number;
  /** Hidden width of the MLP (4·dim in GPT-2). */
  mlp: number;
}

/** The six adaptable projections of a layer, by their PEFT short names. */
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'fc1', 'fc2'] as const;
export type Projection = (typeof PROJECTIONS)[number];

export function moduleName(layer: number, proj: Projection): string {
  return `layers.${layer}.${proj === 'fc1' || proj === 'fc2' ? 'mlp' : 'self_attn'}.${proj}`;
}

// The adapter contract of a layer (examples/common.ts), re-exported for the sessions.
export type { LayerAdapter, Trainable };

/** Every weight's name and shape, in file order (safetensors keys, PyTorch [out, in] layout). */
export function weightShapes(c: GPTConfig): Map<string, number[]> {
  const s = new Map<string, number[]>();
  s.set('tok_emb.weight', [c.vocab, c.dim]);
  s.set('pos_emb.weight', [c.context, c.dim]);
  for (let l = 0; l < c.layers; l++) {
    s.set(`layers.${l}.ln1.weight`, [c.dim]);
    s.set(`layers.${l}.ln1.bias`, [c.dim]);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const) s.set(`${moduleName(l, p)}.weight`, [c.dim, c.dim]);
    s.set(`layers.${l}.ln2.weight`, [c.dim]);
    s.set(`layers.${l}.ln2.bias`, [c.dim]);
    s.set(`${moduleName(l, 'fc1')}.weight`, [c.mlp, c.dim]);
    s.set(`${moduleName(l, 'fc2')}.weight`, [c.dim, c.mlp]);
  }
  s.set('ln_f.weight', [c.dim]);
  s.set('ln_f.bias', [c.dim]);
  return s;
}

/**
 * Seeded initial values (GPT-2's scheme with uniform instead of normal draws of the same
 * standard deviation): matrices and embeddings σ = 0.02, the projections that write into the
 * residual stream (o_proj, fc2) σ = 0.02/√(2·layers), layer norms γ = 1, β = 0.
 */
export function initialWeights(c: GPTConfig, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  let k = 0;
  for (const [name, shape] of weightShapes(c)) {
    const size = shape.reduce((a, b) => a * b, 1);
    k++;
    if (name.includes('.ln') || name.startsWith('ln_f')) out.set(name, new Float32Array(size).fill(name.endsWith('.weight') ? 1 : 0));
    else {
      const sigma = /o_proj|fc2/.test(name) ? 0.02 / Math.sqrt(2 * c.layers) : 0.02;
      out.set(name, uniform(size, sigma * Math.sqrt(3), seed * 1000 + k));
    }
  }
  return out;
}

interface LayerActs {
  a1: Tensor; // LN₁ output [N, D]
  m1: Tensor; // its row mean [N]
  r1: Tensor; // its row rstd [N]
  q: Tensor;
  k: Tensor;
  v: Tensor;
  att: Tensor; // attention output, before o_proj [N, D]
  lse: Tensor; // [B·H·T]
  a2: Tensor;
  m2: Tensor;
  r2: Tensor;
  u: Tensor; // fc1 output, GELU's input [N, F]
  z: Tensor; // GELU output [N, F]
}

/** Activations of one (batch, T): the residual stream xs[0..2L] and each layer's saved values. */
export interface Batch {
  B: number;
  T: number;
  ids: Tensor; // u32 [N]
  targets: Tensor; // u32 [N]
  xs: Tensor[];
  layers: LayerActs[];
  hf: Tensor;
  mf: Tensor;
  rf: Tensor;
  logits: Tensor; // [N, V]
  loss: Tensor; // [1]
  dlogits: Tensor;
  work?: Workspace;
}

/** Gradient buffers of the backward, reused across layers. */
interface Workspace {
  g: Tensor; // ∂L/∂(residual stream) at the current layer boundary [N, D]
  g2: Tensor; // the same between a layer's attention and MLP halves
  dh: Tensor; // gradient into a layer norm's output [N, D]
  datt: Tensor;
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  scratch: Tensor; // an adapter's dx before it is added to dh
  dz: Tensor; // [N, F]
  du: Tensor;
}

export class GPT {
  readonly weights: Map<string, Tensor>;
  /** Gradients of every weight, made by `trainAll()` for pretraining. */
  grads?: Map<string, Tensor>;
  /** Adapters by module name (`layers.0.self_attn.q_proj`); a module without one uses W0. */
  readonly adapters: Record<string, LayerAdapter | undefined> = {};
  #batches = new Map<string, Batch>();
  /** The adaptable projections in f16 or NF4 after `setBase` (the f32 copies stay, for `setBase('f32')`). */
  #packed: Map<string, BaseWeight> | undefined;

  private constructor(
    readonly ctx: Context,
    readonly config: GPTConfig,
    weights: Map<string, Tensor>,
  ) {
    this.weights = weights;
  }

  static fromHost(ctx: Context, config: GPTConfig, values: Map<string, Float32Array>): GPT {
    checkConfig(config);
    const w = new Map<string, Tensor>();
    for (const [name, shape] of weightShapes(config)) {
      const v = values.get(name);
      if (!v) throw new Error(`gpt weights: '${name}' is missing`);
      if (v.length !== shape.reduce((a, b) => a * b, 1))
        throw new Error(`gpt weights: '${name}' has ${v.length} values, expected [${shape.join(', ')}]`);
      w.set(name, ctx.upload(v, shape, 'f32', name));
    }
    return new GPT(ctx, config, w);
  }

  static init(ctx: Context, config: GPTConfig, seed = 1): GPT {
    return GPT.fromHost(ctx, config, initialWeights(config, seed));
  }

  /** Loads weights written by `toSafetensors` (config and vocabulary travel in the metadata). */
  static fromSafetensors(ctx: Context, bytes: Uint8Array): { model: GPT; metadata: Record<string, string> } {
    const { tensors, metadata } = decodeSafetensors(bytes, 'gpt weights');
    if (!metadata.config) throw new Error("gpt weights: metadata has no 'config'");
    const config = JSON.parse(metadata.config) as GPTConfig;
    const values = new Map<string, Float32Array>();
    for (const [name, shape] of weightShapes(config)) {
      const t = tensors[name];
      if (!t) throw new Error(`gpt weights: '${name}' is missing`);
      if (t.shape.join(',') !== shape.join(','))
        throw new Error(`gpt weights: '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      values.set(name, t.data as Float32Array);
    }
    return { model: GPT.fromHost(ctx, config, values), metadata };
  }

  async toSafetensors(metadata: Record<string, string> = {}): Promise<Uint8Array> {
    const out: Record<string, NamedTensor> = {};
    for (const [name, shape] of weightShapes(this.config)) out[name] = { shape, data: await this.ctx.readF32(this.weights.get(name)!) };
    return encodeSafetensors(out, { ...metadata, config: JSON.stringify(this.config) });
  }

  get parameterCount(): number {
    let n = 0;
    for (const t of this.weights.values()) n += t.size;
    return n;
  }

  /** In- and out-features of every adaptable module, by full module name. */
  get moduleShapes(): Record<string, { n: number; m: number }> {
    const { dim: D, mlp: F, layers } = this.config;
    const out: Record<string, { n: number; m: number }> = {};
    for (let l = 0; l < layers; l++) {
      for (const p of PROJECTIONS) out[moduleName(l, p)] = p === 'fc1' ? { n: D, m: F } : p === 'fc2' ? { n: F, m: D } : { n: D, m: D };
    }
    return out;
  }

  /** Frozen base weight W0 [m, n] of a module, in the base's format. */
  baseWeight(module: string): Weight {
    const w = this.weights.get(`${module}.weight`);
    if (!w || !(module in this.moduleShapes)) throw new Error(`gpt: no adaptable module '${module}'`);
    return this.#packed?.get(module) ?? w;
  }

  /** The format of the adaptable projections' frozen weights, and the NF4 block size (0 otherwise). */
  get base(): { format: BaseFormat; blockSize: number } {
    const w = this.#packed?.values().next().value;
    return w ? { format: w.format, blockSize: w.blockSize } : { format: 'f32', blockSize: 0 };
  }

  /** Device bytes of the adaptable projections' frozen weights as held now (NF4: codes and absmax). */
  get baseBytes(): number {
    let n = 0;
    for (const mod of Object.keys(this.moduleShapes)) {
      const w = this.baseWeight(mod);
      n += this.#packed ? (w as BaseWeight).bytes : (w as Tensor).buffer.size;
    }
    return n;
  }

  /**
   * Holds every adaptable projection in `format` (QLoRA-style), made on the device from the f32
   * weights; embeddings and layer norms stay f32. Only while no adapter is installed: an adapter
   * keeps the weight it was made on.
   */
  async setBase(format: BaseFormat, blockSize = 64): Promise<void> {
    if (Object.values(this.adapters).some((a) => a !== undefined)) throw new Error('gpt.setBase: remove the adapters first');
    if (this.grads) throw new Error('gpt.setBase: a model being pretrained keeps an f32 base');
    let packed: Map<string, BaseWeight> | undefined;
    if (format !== 'f32') {
      packed = new Map();
      try {
        for (const mod of Object.keys(this.moduleShapes)) {
          const w = this.weights.get(`${mod}.weight`)!;
          const label = `${mod}.weight.${format}`;
          packed.set(mod, format === 'nf4' ? await quantizeNf4(this.ctx, w, { blockSize, label }) : await toF16(this.ctx, w, { label }));
        }
      } catch (e) {
        for (const w of packed.values()) w.destroy();
        throw e;
      }
    }
    if (this.#packed) for (const w of this.#packed.values()) w.destroy();
    this.#packed = packed;
  }

  /** Every weight becomes trainable (pretraining). */
  trainAll(): Trainable[] {
    if (!this.grads) {
      this.grads = new Map();
      for (const [name, shape] of weightShapes(this.config)) this.grads.set(name, this.ctx.tensor(shape, 'f32', `d${name}`));
    }
    return [...this.weights.keys()].map((name) => ({ name, param: this.weights.get(name)!, grad: this.grads!.get(name)! }));
  }

  batch(B: number, T: number): Batch {
    const key = `${B}x${T}`;
    const have = this.#batches.get(key);
    if (have) return have;
    const { dim: D, mlp: F, vocab: V, layers: L, heads: H, context } = this.config;
    if (!Number.isInteger(T) || T < 1 || T > context) throw new Error(`gpt: sequence length ${T} outside 1..${context}`);
    const N = B * T;
    const t = (shape: number[], label: string) => this.ctx.tensor(shape, 'f32', `${label}[${key}]`);
    const b: Batch = {
      B,
      T,
      ids: this.ctx.tensor([N], 'u32', 'ids'),
      targets: this.ctx.tensor([N], 'u32', 'targets'),
      xs: Array.from({ length: 2 * L + 1 }, (_, i) => t([N, D], `x${i}`)),
      layers: Array.from({ length: L }, (_, l) => ({
        a1: t([N, D], `l${l}.a1`),
        m1: t([N], `l${l}.m1`),
        r1: t([N], `l${l}.r1`),
        q: t([N, D], `l${l}.q`),
        k: t([N, D], `l${l}.k`),
        v: t([N, D], `l${l}.v`),
        att: t([N, D], `l${l}.att`),
        lse: t([B * H * T], `l${l}.lse`),
        a2: t([N, D], `l${l}.a2`),
        m2: t([N], `l${l}.m2`),
        r2: t([N], `l${l}.r2`),
        u: t([N, F], `l${l}.u`),
        z: t([N, F], `l${l}.z`),
      })),
      hf: t([N, D], 'hf'),
      mf: t([N], 'mf'),
      rf: t([N], 'rf'),
      logits: t([N, V], 'logits'),
      loss: t([1], 'loss'),
      dlogits: t([N, V], 'dlogits'),
    };
    this.#batches.set(key, b);
    return b;
  }

  #workspace(b: Batch): Workspace {
    if (b.work) return b.work;
    const { dim: D, mlp: F } = this.config;
    const N = b.B * b.T;
    const t = (shape: number[], label: string) => this.ctx.tensor(shape, 'f32', `${label}[${b.B}x${b.T}]`);
    b.work = {
      g: t([N, D], 'g'),
      g2: t([N, D], 'g2'),
      dh: t([N, D], 'dh'),
      datt: t([N, D], 'datt'),
      dq: t([N, D], 'dq'),
      dk: t([N, D], 'dk'),
      dv: t([N, D], 'dv'),
      scratch: t([N, D], 'scratch'),
      dz: t([N, F], 'dz'),
      du: t([N, F], 'du'),
    };
    return b.work;
  }

  /** Frees a batch's buffers (sampling makes one per prefix length). */
  releaseBatch(b: Batch): void {
    const key = `${b.B}x${b.T}`;
    if (this.#batches.get(key) !== b) return;
    this.#batches.delete(key);
    destroyBatch(b);
  }

  /** Writes a batch's ids [B·T] and targets [B·T] (checked by the caller's data code). */
  setBatch(b: Batch, ids: Uint32Array, targets?: Uint32Array): void {
    this.ctx.write(b.ids, ids);
    if (targets) this.ctx.write(b.targets, targets);
  }

  #w(name: string): Tensor {
    return this.weights.get(name)!;
  }

  async #project(enc: GPUCommandEncoder, mod: string, x: Tensor, y: Tensor): Promise<void> {
    const adapter = this.adapters[mod];
    if (adapter) return adapter.forward(enc, x, y);
    const { n, m } = this.moduleShapes[mod];
    await matmul(this.ctx, { a: x, b: this.baseWeight(mod), c: y, M: x.shape[0], N: m, K: n, transB: true }, enc);
  }

  /** dx (= or += with `add`) and, in pretraining, dW of one projection; an adapter's own gradients instead where one is installed. */
  async #projectBack(enc: GPUCommandEncoder, mod: string, x: Tensor, g: Tensor, dx: Tensor, add: boolean, scratch: Tensor): Promise<void> {
    const adapter = this.adapters[mod];
    if (adapter) {
      await adapter.backward(enc, x, g, add ? scratch : dx);
      if (add) await residualAdd(this.ctx, { y: dx, x: scratch }, { encoder: enc });
      return;
    }
    const packed = this.#packed?.get(mod);
    if (packed) {
      // dx = g W0 through the packed weight (a frozen base has no weight gradient).
      const { n, m } = this.moduleShapes[mod];
      await matmul(this.ctx, { a: g, b: packed, c: add ? scratch : dx, M: g.shape[0], N: n, K: m }, enc);
      if (add) await residualAdd(this.ctx, { y: dx, x: scratch }, { encoder: enc });
      return;
    }
    const dw = this.#full ? this.grads!.get(`${mod}.weight`) : undefined;
    await linearBackward(
      this.ctx,
      { x, w: this.weights.get(`${mod}.weight`)!, g, dx, dw },
      { encoder: enc, db: false, dw: !!dw, accumulate: add ? ['dx'] : [] },
    );
  }

  /** Pretraining: every weight gets a gradient (after trainAll, with no adapter installed). */
  get #full(): boolean {
    return this.grads !== undefined && !Object.values(this.adapters).some((a) => a !== undefined);
  }

  /** Encodes the forward pass to logits; with `loss`, also the mean loss and dlogits. */
  async forward(enc: GPUCommandEncoder, b: Batch, loss = true): Promise<void> {
    const { ctx, config: c } = this;
    const o = { encoder: enc };
    const shape = { batch: b.B, T: b.T, heads: c.heads, headDim: c.dim / c.heads, causal: true };
    await embeddingForward(ctx, { table: this.#w('tok_emb.weight'), ids: b.ids, out: b.xs[0] }, o);
    await addPositions(ctx, { x: b.xs[0], pos: this.#w('pos_emb.weight'), T: b.T }, o);
    for (let l = 0; l < c.layers; l++) {
      const s = b.layers[l];
      const [x0, x1, x2] = [b.xs[2 * l], b.xs[2 * l + 1], b.xs[2 * l + 2]];
      const ln = (i: number, k: string) => this.#w(`layers.${l}.ln${i}.${k}`);
      await layerNormForward(ctx, { x: x0, gamma: ln(1, 'weight'), beta: ln(1, 'bias'), y: s.a1, mean: s.m1, rstd: s.r1 }, o);
      await this.#project(enc, moduleName(l, 'q_proj'), s.a1, s.q);
      await this.#project(enc, moduleName(l, 'k_proj'), s.a1, s.k);
      await this.#project(enc, moduleName(l, 'v_proj'), s.a1, s.v);
      await attentionForward(ctx, { ...shape, q: s.q, k: s.k, v: s.v, y: s.att, lse: s.lse }, o);
      await this.#project(enc, moduleName(l, 'o_proj'), s.att, x1);
      await residualAdd(ctx, { y: x1, x: x0 }, o);
      await layerNormForward(ctx, { x: x1, gamma: ln(2, 'weight'), beta: ln(2, 'bias'), y: s.a2, mean: s.m2, rstd: s.r2 }, o);
      await this.#project(enc, moduleName(l, 'fc1'), s.a2, s.u);
      await activationForward(ctx, { x: s.u, y: s.z, fn: 'gelu' }, o);
      await this.#project(enc, moduleName(l, 'fc2'), s.z, x2);
      await residualAdd(ctx, { y: x2, x: x1 }, o);
    }
    const last = b.xs[2 * c.layers];
    await layerNormForward(ctx, { x: last, gamma: this.#w('ln_f.weight'), beta: this.#w('ln_f.bias'), y: b.hf, mean: b.mf, rstd: b.rf }, o);
    await linearForward(ctx, { x: b.hf, w: this.#w('tok_emb.weight'), y: b.logits }, o);
    if (loss) await softmaxCrossEntropy(ctx, { logits: b.logits, targets: b.targets, loss: b.loss, dlogits: b.dlogits }, o);
  }

  /**
   * Encodes the backward pass from dlogits. Pretraining (after `trainAll`, no adapters) fills
   * every weight's gradient; with adapters only theirs are made (the base stays frozen), and the
   * gradient still flows through every layer to the lowest adapter.
   */
  async backward(enc: GPUCommandEncoder, b: Batch): Promise<void> {
    const { ctx, config: c } = this;
    const o = { encoder: enc };
    const full = this.#full;
    const G = this.grads;
    const w = this.#workspace(b);
    const shape = { batch: b.B, T: b.T, heads: c.heads, headDim: c.dim / c.heads, causal: true };
    const lnBack = async (x: Tensor, prefix: string, g: Tensor, mean: Tensor, rstd: Tensor, dx: Tensor) => {
      await layerNormBackward(
        ctx,
        {
          x,
          gamma: this.#w(`${prefix}.weight`),
          g,
          mean,
          rstd,
          dx,
          dgamma: full ? G!.get(`${prefix}.weight`) : undefined,
          dbeta: full ? G!.get(`${prefix}.bias`) : undefined,
        },
        { ...o, params: full },
      );
    };
    // Output end of the tied embedding: dh_f = dlogits E, dE = dlogitsᵀ h_f (added to the input
    // end's gradient at the bottom, after the embedding backward has overwritten dE).
    await linearBackward(ctx, { x: b.hf, w: this.#w('tok_emb.weight'), g: b.dlogits, dx: w.dh }, { ...o, dw: false, db: false });
    await lnBack(b.xs[2 * c.layers], 'ln_f', w.dh, b.mf, b.rf, w.g);
    for (let l = c.layers - 1; l >= 0; l--) {
      const s = b.layers[l];
      const [x0, x1] = [b.xs[2 * l], b.xs[2 * l + 1]];
      // w.g holds ∂L/∂x₂ (the layer's output).
      await this.#projectBack(enc, moduleName(l, 'fc2'), s.z, w.g, w.dz, false, w.scratch);
      await activationBackward(ctx, { x: s.u, g: w.dz, dx: w.du, fn: 'gelu' }, o);
      await this.#projectBack(enc, moduleName(l, 'fc1'), s.a2, w.du, w.dh, false, w.scratch);
      await lnBack(x1, `layers.${l}.ln2`, w.dh, s.m2, s.r2, w.g2);
      await residualAdd(ctx, { y: w.g2, x: w.g }, o); // ∂L/∂x₁
      await this.#projectBack(enc, moduleName(l, 'o_proj'), s.att, w.g2, w.datt, false, w.scratch);
      await attentionBackward(ctx, { ...shape, q: s.q, k: s.k, v: s.v, y: s.att, lse: s.lse, dy: w.datt, dq: w.dq, dk: w.dk, dv: w.dv }, o);
      await this.#projectBack(enc, moduleName(l, 'q_proj'), s.a1, w.dq, w.dh, false, w.scratch);
      await this.#projectBack(enc, moduleName(l, 'k_proj'), s.a1, w.dk, w.dh, true, w.scratch);
      await this.#projectBack(enc, moduleName(l, 'v_proj'), s.a1, w.dv, w.dh, true, w.scratch);
      await lnBack(x0, `layers.${l}.ln1`, w.dh, s.m1, s.r1, w.g);
      await residualAdd(ctx, { y: w.g, x: w.g2 }, o); // ∂L/∂x₀
    }
    if (!full) return;
    await positionGrad(ctx, { g: w.g, T: b.T, positions: c.context, dpos: G!.get('pos_emb.weight') }, o);
    const dE = G!.get('tok_emb.weight')!;
    await embeddingBackward(ctx, { ids: b.ids, g: w.g, vocab: c.vocab, dtable: dE }, o);
    await linearBackward(ctx, { x: b.hf, w: this.#w('tok_emb.weight'), g: b.dlogits, dw: dE }, { ...o, dx: false, db: false, accumulate: ['dw'] });
  }

  /** Mean cross-entropy over windows ids/targets [count·T] (forward only, `B` windows at a time). */
  async evaluate(ids: Uint32Array, targets: Uint32Array, T: number, B = 16): Promise<number> {
    const count = ids.length / T;
    let total = 0;
    for (let start = 0; start < count; start += B) {
      const size = Math.min(B, count - start);
      const b = this.batch(size, T);
      this.setBatch(b, ids.subarray(start * T, (start + size) * T), targets.subarray(start * T, (start + size) * T));
      await this.ctx.encode(undefined, (enc) => this.forward(enc, b, true));
      total += (await this.ctx.readF32(b.loss))[0] * size;
      if (size !== B) this.releaseBatch(b);
    }
    return total / count;
  }

  /** Logits [B·T, V] of sequences ids [B·T]. */
  async logits(ids: Uint32Array, T: number): Promise<Float32Array> {
    const b = this.batch(ids.length / T, T);
    this.setBatch(b, ids);
    await this.ctx.encode(undefined, (enc) => this.forward(enc, b, false));
    return this.ctx.readF32(b.logits);
  }

  destroy(): void {
    for (const t of this.weights.values()) t.destroy();
    if (this.grads) for (const t of this.grads.values()) t.destroy();
    for (const b of this.#batches.values()) destroyBatch(b);
    this.#batches.clear();
    for (const a of Object.values(this.adapters)) a?.destroy();
    if (this.#packed) for (const w of this.#packed.values()) w.destroy();
    this.#packed = undefined;
  }
}

function destroyBatch(b: Batch): void {
  const all: Tensor[] = [b.ids, b.targets, ...b.xs, b.hf, b.mf, b.rf, b.logits, b.loss, b.dlogits];
  for (const s of b.layers) all.push(...Object.values(s));
  if (b.work) all.push(...Object.values(b.work));
  for (const t of all) t.destroy();
}

function checkConfig(c: GPTConfig): void {
  for (const k of ['vocab', 'context', 'dim', 'layers', 'heads', 'mlp'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`gpt config: '${k}' must be a positive integer, got ${String(c[k])}`);
  }
  if (c.dim % c.heads !== 0) throw new Error(`gpt config: dim ${c.dim} is not a multiple of heads ${c.heads}`);
}
