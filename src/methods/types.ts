// The method descriptor: everything the rest of the package needs to know about one fine-tuning
// method, in one object that lives in the method's folder (src/methods/<family>/). The registry
// (src/methods/registry.ts) lists the descriptors once; the public API, adapter files, the
// `vectors` command, the benchmark and the examples all read that list instead of keeping their
// own. See docs/adding-a-method.md.

import type { Context } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import type { Weight } from '../base.js';
import type { VectorRunner } from '../vectors/types.js';
import type { EncodeOptions } from './common.js';

/** Host values of one tensor, as adapter files store them. */
export interface HostValues {
  shape: number[];
  data: Float32Array | Uint32Array | Int32Array;
}

/** A layer's sizes: in-features n, out-features m, rank r (the method's own rank). */
export interface LayerDims {
  n: number;
  m: number;
  r: number;
}

/** What a method takes beyond rank and scale: BoRA's blocks, LoRMA's order, ... */
export type MethodOptions = Record<string, unknown>;

/** One tensor an adapter file stores per module. */
export interface TensorSpec {
  /** Plain name in a module's tensors: 'lora_A', 'lora_B', 'sigma', 'indices'. */
  name: string;
  /** Key suffix in the safetensors file, after '<module>.': 'lora_A.weight', 'sigma', ... */
  key: string;
  dtype: 'f32' | 'u32';
  /** False for frozen tensors saved with the adapter (SBoRA's indices). */
  trainable: boolean;
  /** Its shape in a layer of these sizes and options. */
  shape(d: LayerDims, options: MethodOptions): number[];
}

/** A field of adapter_config.json beyond PEFT's LoraConfig ones, mapped to a method option. */
export interface ConfigField {
  /** The JSON key, e.g. 'sigma_transform'. */
  key: string;
  /** The option it maps to, e.g. 'sigmaTransform'. */
  option: string;
  /** Returns the value typed, or throws a PeftError naming `where` and the key. */
  check(value: unknown, where: string): unknown;
  /** Used when absent; a field without a default is required. */
  default?: unknown;
}

/** How to make one adapted layer. */
export interface LayerSpec {
  /**
   * The frozen weight [m, n]: an f32 Tensor, or a BaseWeight in f16 or NF4 (src/base.ts), which
   * every product of the layer decodes in registers (the layer's merge then returns f32).
   */
  w0: Weight;
  /** The method's own rank. */
  r: number;
  /** Scale s = alpha / r. */
  alpha: number;
  options?: MethodOptions;
  /** Seed of the initialisation. */
  seed?: number;
  /** Values to start from (an adapter file's module), instead of the seeded init. */
  from?: Record<string, HostValues>;
  /** Prefix of the layer's tensor labels. */
  name?: string;
}

/** A trainable tensor and its gradient (what an optimizer updates). */
export interface Trainable {
  name: string;
  param: Tensor;
  grad: Tensor;
}

/**
 * One adapted layer: y = layer(x) with the frozen W0 and the method's trainable tensors. The
 * forward keeps what the backward needs (per token count), so forward then backward is a step.
 */
export interface AdapterLayer {
  readonly method: MethodDescriptor;
  readonly dims: LayerDims;
  readonly trainables: Trainable[];
  /** Y = X W0ᵀ + adapter term (adapterOnly: the adapter term alone). */
  forward(enc: GPUCommandEncoder, x: Tensor, y: Tensor, opts?: { adapterOnly?: boolean }): Promise<void>;
  /** dX into `dx`, the trainables' gradients into their `grad`. */
  backward(enc: GPUCommandEncoder, x: Tensor, g: Tensor, dx: Tensor, opts?: { adapterOnly?: boolean }): Promise<void>;
  /** W' = W0 + ΔW (deltaOnly: ΔW) as a new tensor, by the method's own merge kernel. */
  merge(opts?: EncodeOptions & { deltaOnly?: boolean }): Promise<Tensor>;
  /** What an adapter file stores for this layer, by TensorSpec name. */
  tensors(): Promise<Record<string, HostValues>>;
  destroy(): void;
}

/** FLOPs of each phase of one layer (a multiply-add counts 2). */
export interface PhaseFlops {
  forward: number;
  backward: number;
  adapterForward: number;
  adapterBackward: number;
}

/** The base sizes an adapter file's module is checked against, when known. */
export interface BaseShape {
  n: number;
  m: number;
}

export interface MethodDescriptor {
  /** The one id used everywhere: adapter files ('method'), bench rows, examples, CLI flags. */
  id: string;
  /** For tables and charts: 'BoRA', 'LoRMA_π'. */
  label: string;
  /** Other names resolveMethod accepts. */
  aliases: readonly string[];
  /** The kernel family: shaders/<family>.wgsl, src/methods/<family>/. */
  family: string;
  /** adapter_config.json's peft_type ('LORA' is what HF PEFT reads). */
  peftType: string;
  /** The method's page. */
  docs: string;
  /** Tensors an adapter file stores per module, in file order. */
  tensors: readonly TensorSpec[];
  /** Method-specific adapter_config.json fields. */
  config: readonly ConfigField[];
  /**
   * The method's rank at the trainable budget of a rank-r LoRA on this layer (a method whose
   * trainable count does not scale with n + m, such as VeRA's r + m, needs the layer's sizes).
   */
  rankFor(r: number, layer: { n: number; m: number }): number;
  /** Why this layer does not suit the method (e.g. blocks not dividing n), or null. */
  unsupported(d: LayerDims, options: MethodOptions): string | null;
  /** Trainable values of one layer. */
  paramCount(d: LayerDims, options: MethodOptions): number;
  /** FLOPs of one layer's phases for T tokens. */
  flops(T: number, d: LayerDims, options: MethodOptions): PhaseFlops;
  /**
   * The options as a layer made on this context runs them, where the context decides something the
   * options leave open (LoRMA_π's piPath 'auto': the FFT on CPUs, the tiles on GPUs), so that
   * `flops` counts the kernels that run. Absent: the options as given.
   */
  runOptions?(ctx: Context, d: LayerDims, options: MethodOptions): MethodOptions;
  /**
   * Checks one module's tensors (already of the right names, dtypes and lengths) against the
   * rank, options and, when given, the base shape; throws a PeftError naming `label(name)`, which
   * is '<module path>.<key>' (common.ts's moduleOf recovers the module for messages).
   */
  checkModule(
    t: Record<string, HostValues>,
    r: number,
    options: MethodOptions,
    base: BaseShape | undefined,
    label: (name: string) => string,
    where: string,
  ): void;
  /** Makes one adapted layer on the device. */
  createLayer(ctx: Context, spec: LayerSpec): AdapterLayer;
  /** Options of a benchmark layer (e.g. BoRA's blocks from the shape's b). */
  benchOptions?(shape: { b?: number }): MethodOptions;
  /** Further benchmark rows: this method with other options (LoRMA_π on its tile path). */
  benchVariants?: readonly { id: string; label: string; options: MethodOptions }[];
  /** The `vectors` command: cases whose params.method is `method` and that `accepts`. */
  vectors?: { method: string; accepts?(params: Record<string, unknown>): boolean; run: VectorRunner };
}
