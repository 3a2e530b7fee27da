// LoRMA₊ and LoRMA_π as methods of the package: the two descriptors every registry reads (adapter
// files, the `vectors` command, the benchmark, the examples), and the family's public functions.
// Both are one kernel family (shaders/lorma.wgsl, ./kernels.ts) with variant 'plus' or 'pi'; the
// paper's naive variant 'none' is in the kernels, the reference and the vectors, not a method.

import type { Tensor } from '../../tensor.js';
import type { Context } from '../../runtime.js';
import { PeftError, checkDim, checkWeight, checkScale } from '../../validate.js';
import type { AdapterLayer, ConfigField, HostValues, LayerDims, LayerSpec, MethodDescriptor, MethodOptions, PhaseFlops } from '../types.js';
import {
  moduleOf,
  SavedTensors,
  checkOptions,
  trainableValues,
  type EncodeOptions,
  layerLabel,
  layerTrainable,
  destroyTrainables,
} from '../common.js';
import {
  LORMA_ORDERS,
  LORMA_PI_CHOICES,
  lormaBackward,
  lormaCorrelationsShape,
  lormaForward,
  lormaInit,
  lormaMerge,
  lormaPiPath,
  lormaTuning,
  piPathFor,
  type LormaOrder,
  type LormaParams,
  type LormaPiChoice,
} from './kernels.js';
import { runLorma } from './vectors.js';

export * from './kernels.js';
export { runLorma } from './vectors.js';
export type { EncodeOptions, ForwardOptions, BackwardOptions, MergeOptions } from '../common.js';

/** A and B under PEFT's LoRA keys (A [r, d], B [d, r]); peft_type 'LORMA' keeps PEFT from reading them as LoRA. */
const TENSORS = [
  { name: 'lora_A', key: 'lora_A.weight', dtype: 'f32', trainable: true, shape: (d: LayerDims, o: MethodOptions) => [d.r, sizeOfM(d, orderOf(o))] },
  { name: 'lora_B', key: 'lora_B.weight', dtype: 'f32', trainable: true, shape: (d: LayerDims, o: MethodOptions) => [sizeOfM(d, orderOf(o)), d.r] },
] as const;

const ORDER_FIELD: ConfigField = {
  key: 'order',
  option: 'order',
  default: 'pre',
  check(value, where) {
    if (value !== 'pre' && value !== 'post') throw new PeftError(`${where}: 'order' must be 'pre' or 'post', got ${JSON.stringify(value)}`);
    return value;
  },
};

type Variant = 'plus' | 'pi';

/** Layer options: order (both), piPath (LoRMA_π: 'auto', 'tiles' or 'fft'; default: the context's). */
function optionNames(variant: Variant): string[] {
  return variant === 'pi' ? ['order', 'piPath'] : ['order'];
}

/** The options' problem as a sentence, or null. */
function badOption(variant: Variant, options: MethodOptions | undefined): string | null {
  const known = optionNames(variant);
  const unknown = Object.keys(options ?? {}).filter((k) => !known.includes(k));
  if (unknown.length > 0)
    return `unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} (LoRMA takes ${known.join(', ')})`;
  const order = options?.order;
  if (order !== undefined && !LORMA_ORDERS.includes(order as LormaOrder)) return `'order' must be 'pre' or 'post', got ${JSON.stringify(order)}`;
  const piPath = options?.piPath;
  if (piPath !== undefined && !LORMA_PI_CHOICES.includes(piPath as LormaPiChoice))
    return `'piPath' must be 'auto', 'tiles' or 'fft', got ${JSON.stringify(piPath)}`;
  return null;
}

function orderOf(options: MethodOptions | undefined): LormaOrder {
  return (options?.order as LormaOrder | undefined) ?? 'pre';
}

/** M is d×d: d = m for pre-multiplication, n for post. */
function sizeOfM(d: LayerDims, order: LormaOrder): number {
  return order === 'pre' ? d.m : d.n;
}

/**
 * FLOPs (a multiply-add counts 2) of the kernels each phase runs, with the state the layer keeps
 * (Z for plus, U and the FFT path's correlations for pi). LoRMA has no adapter-only phase: the
 * adapter figures are what it adds to the base layer's products (Y = X W0ᵀ, dX = G W0).
 */
function lormaFlops(variant: Variant, T: number, dims: LayerDims, options: MethodOptions): PhaseFlops {
  const { n, m, r } = dims;
  const order = orderOf(options);
  const d = sizeOfM(dims, order);
  const base = 2 * m * n * T;
  let adapterForward: number;
  let adapterBackward: number;
  if (variant === 'plus') {
    if (order === 'pre') {
      // Z = U Aᵀ, Y += s·Z Bᵀ; backward H = G B, dU = G + s·H A, dB = s·Gᵀ Z, dA' = s·Hᵀ X, and
      // the one fold left, dA = dA' W0ᵀ.
      adapterForward = 4 * m * r * T;
      adapterBackward = 6 * m * r * T + 2 * n * r * T + 2 * m * n * r;
    } else {
      // B' = W0 B in both phases, then LoRA's products; backward also dB = W0ᵀ dB'.
      adapterForward = 2 * m * n * r + 2 * (n + m) * r * T;
      adapterBackward = 4 * m * n * r + 4 * (n + m) * r * T;
    }
  } else if (piPathFor((options.piPath as LormaPiChoice | undefined) ?? 'auto', d) === 'fft') {
    // A complex FFT of length d is 5·d·log2 d flops; two real rows share one. Forward:
    // ⌈r/2⌉T + T/2 transforms (C_q, In's rows), 8drT pointwise; backward ⌈r/2⌉T (H_q), T/2 (dIn's
    // rows) and ⌈r/2⌉T again (C_q, recomputed for dB a token chunk at a time) transforms, In's
    // spectra kept from the forward, about 32drT pointwise (products, dA over tokens, dB).
    const fft = 5 * d * Math.log2(d);
    const pairs = Math.ceil(r / 2);
    adapterForward = (pairs * T + T / 2) * fft + 8 * d * r * T;
    adapterBackward = (2 * pairs * T + T / 2) * fft + 32 * d * r * T;
  } else {
    // Tiles: the d×d mixing is 2d²T plus generating π(BA) tiles, 2d²r per 128 tokens; the
    // backward mixes once more (dU through π(BA)ᵀ), makes dM' strip by strip (2d²T) and
    // contracts them into dA and dB (4d²r).
    const tiles = Math.ceil(T / 128);
    adapterForward = 2 * d * d * T + 2 * d * d * r * tiles;
    adapterBackward = 4 * d * d * T + 2 * d * d * r * tiles + 4 * d * d * r;
  }
  return { forward: base + adapterForward, backward: base + adapterBackward, adapterForward, adapterBackward };
}

function checkLormaModule(
  variant: Variant,
  t: Record<string, HostValues>,
  r: number,
  options: MethodOptions,
  base: { n: number; m: number } | undefined,
  label: (name: string) => string,
  where: string,
): void {
  const bad = badOption(variant, options);
  if (bad) throw new PeftError(`${where}: ${bad}`);
  const order = orderOf(options);
  const a = t.lora_A;
  const b = t.lora_B;
  if (!a || a.shape.length !== 2 || a.shape[0] !== r) {
    throw new PeftError(`${where}: '${label('lora_A')}' has shape [${a?.shape.join(', ') ?? ''}], expected [r, d] with r = ${r}`);
  }
  if (!b || b.shape.length !== 2 || b.shape[1] !== r) {
    throw new PeftError(`${where}: '${label('lora_B')}' has shape [${b?.shape.join(', ') ?? ''}], expected [d, r] with r = ${r}`);
  }
  // M is d×d with d = m (pre) or n (post): B [d, r], A [r, d].
  const d = b.shape[0];
  if (a.shape[1] !== d)
    throw new PeftError(`${where}: LoRMA's '${label('lora_A')}' [r, d] and '${label('lora_B')}' [d, r] disagree on d (${a.shape[1]} vs ${d})`);
  if (base) {
    const want = order === 'post' ? base.n : base.m;
    if (d !== want) {
      const mod = moduleOf(label, TENSORS[1]);
      throw new PeftError(
        `${where}: '${label('lora_B')}' has d = ${d}, but LoRMA-${order} on module '${mod}' needs d = ${order === 'post' ? 'n' : 'm'} = ${want}`,
      );
    }
  }
}

function createLormaLayer(method: MethodDescriptor, variant: Variant, ctx: Context, spec: LayerSpec): AdapterLayer {
  const where = `${method.id}.createLayer`;
  checkOptions(where, spec.options, optionNames(variant));
  const bad = badOption(variant, spec.options);
  if (bad) throw new PeftError(`${where}: ${bad}`);
  const [m, n] = checkWeight(where, 'w0', spec.w0, '[m, n]', ctx);
  const order = orderOf(spec.options);
  const d = order === 'pre' ? m : n;
  const r = checkDim(where, 'r', spec.r);
  if (r > d) throw new PeftError(`${where}: rank r = ${r} is above d = ${d} (d = ${order === 'pre' ? 'm' : 'n'} for ${order}-multiplication)`);
  const scale = checkScale(where, 'alpha', spec.alpha) / r;
  // Fixed when the layer is made, so that its forward and backward always take the same path
  // (the backward reads the forward's correlations only on the FFT path).
  const piPath: LormaPiChoice = (spec.options?.piPath as LormaPiChoice | undefined) ?? lormaTuning(ctx).pi;
  const prefix = spec.name ?? '';
  const named = (t: string) => layerLabel(spec, t);
  let fresh: { a: Float32Array; b: Float32Array } | undefined;
  const init = () => (fresh ??= lormaInit({ d, r, scale, variant, seed: spec.seed ?? 0 }));
  const a = layerTrainable(ctx, spec, 'lora_A', [r, d], () => init().a);
  const b = layerTrainable(ctx, spec, 'lora_B', [d, r], () => init().b);
  const trainables = [a, b];
  const p: LormaParams =
    variant === 'pi'
      ? { w0: spec.w0, a: a.param, b: b.param, scale, variant, order, piPath }
      : { w0: spec.w0, a: a.param, b: b.param, scale, variant, order };
  // What the forward keeps for the backward of the same batch: Z = X A'ᵀ for plus; for pi,
  // U = X W0ᵀ (pre) and, on the FFT path, the correlations C (a third less backward work).
  const saved = new SavedTensors(ctx, named(method.id));
  const fft = variant === 'pi' && lormaPiPath(ctx, d, piPath) === 'fft';
  const keep = (T: number) => {
    if (variant === 'plus') return { z: saved.get('z', [T, r]) };
    return {
      u: order === 'pre' ? saved.get('u', [T, m]) : undefined,
      c: fft ? saved.get('c', lormaCorrelationsShape(T, d, r)) : undefined,
    };
  };
  return {
    method,
    dims: { n, m, r },
    trainables,
    async forward(enc, x, y, opts = {}) {
      checkOptions(`${method.id}.layer.forward`, opts, ['adapterOnly']);
      await lormaForward(ctx, { ...p, x, y, ...keep(x.shape[0]) }, { encoder: enc, adapterOnly: opts.adapterOnly });
    },
    async backward(enc, x, g, dx, opts = {}) {
      checkOptions(`${method.id}.layer.backward`, opts, ['adapterOnly']);
      await lormaBackward(ctx, { ...p, x, g, ...keep(x.shape[0]), dx, da: a.grad, db: b.grad }, { encoder: enc, adapterOnly: opts.adapterOnly });
    },
    merge(opts: EncodeOptions & { deltaOnly?: boolean } = {}) {
      checkOptions(`${method.id}.layer.merge`, opts, ['encoder', 'deltaOnly']);
      // Neither inPlace nor out: always a new f32 tensor, whatever W0's format.
      return lormaMerge(ctx, p, { encoder: opts.encoder, deltaOnly: opts.deltaOnly }) as Promise<Tensor>;
    },
    tensors(): Promise<Record<string, HostValues>> {
      return trainableValues(ctx, prefix, trainables);
    },
    destroy() {
      destroyTrainables(trainables);
      saved.destroy();
    },
  };
}

function descriptor(variant: Variant): MethodDescriptor {
  const self: MethodDescriptor = {
    id: variant === 'plus' ? 'lorma-plus' : 'lorma-pi',
    label: variant === 'plus' ? 'LoRMA₊' : 'LoRMA_π',
    aliases: [],
    family: 'lorma',
    peftType: 'LORMA',
    docs: 'docs/lorma.md',
    tensors: TENSORS,
    config: [ORDER_FIELD],
    rankFor: (r) => r,
    unsupported(d, options) {
      const bad = badOption(variant, options);
      if (bad) return bad;
      const order = orderOf(options);
      const size = sizeOfM(d, order);
      if (d.r > size) return `rank r = ${d.r} is above d = ${order === 'pre' ? 'm' : 'n'} = ${size} (${order}-multiplication)`;
      return null;
    },
    paramCount: (d, options) => 2 * sizeOfM(d, orderOf(options)) * d.r,
    flops: (T, d, options) => lormaFlops(variant, T, d, options ?? {}),
    // LoRMA_π's 'auto' (or no piPath) is settled by the context: its tuning, and tiles on GPUs.
    runOptions: (ctx, d, options) =>
      variant === 'pi'
        ? { ...options, piPath: lormaPiPath(ctx, sizeOfM(d, orderOf(options)), options.piPath as LormaPiChoice | undefined) }
        : options,
    checkModule: (t, r, options, base, label, where) => checkLormaModule(variant, t, r, options ?? {}, base, label, where),
    createLayer: (ctx, spec) => createLormaLayer(self, variant, ctx, spec),
    // The vectors format names the variant 'inflation'; lorma-plus also runs the naive 'none'.
    vectors: { method: 'lorma', accepts: (params) => (variant === 'pi') === (params.inflation === 'pi'), run: runLorma },
  };
  if (variant === 'pi') self.benchVariants = [{ id: 'lorma-pi-tiles', label: 'LoRMA_π (tiles)', options: { piPath: 'tiles' } }];
  return self;
}

/** LoRMA₊: W' = (I + s·B A)·W0 (order 'pre', the default) or W0·(I + s·B A) ('post'). */
export const lormaPlus: MethodDescriptor = descriptor('plus');

/** LoRMA_π: W' = s·π(B A)·W0 or W0·s·π(B A), π rotating row i of B A right by i. */
export const lormaPi: MethodDescriptor = descriptor('pi');
