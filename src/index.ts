// peft-wgsl public API. Layers: shaders/*.wgsl → runtime (Context and its parts) → ops (matmul,
// dropout, fft) → methods (src/methods/<family>/, listed once in src/methods/registry.ts) → this
// file. See docs/ARCHITECTURE.md.

// Runtime
export { Context, createContext, Usage, setGpuProvider, noWebGpuMessage } from './runtime.js';
export type { ContextOptions, DispatchSpec, PipelineSpec, ParamValues, AllocationRecord, DeviceDescription, GpuProvider, Tuning } from './runtime.js';
export { Tensor } from './tensor.js';
export type { DType, HostArray, HostArrayOf } from './tensor.js';
export { PeftError } from './validate.js';
export { onDevice } from './host.js';
export type { HostTensor } from './host.js';
export { rng, uniform, kaimingUniform } from './random.js';

// Base weights in f16 and NF4 (docs/quantization.md)
export { BaseWeight, NF4_VALUES, formatOf } from './base.js';
export type { BaseFormat, Weight } from './base.js';
export {
  f16Weight,
  f16WeightFromBits,
  f16WeightFromBf16,
  nf4Weight,
  nf4WeightFromNested,
  weightFromSafetensors,
  toF16,
  quantizeNf4,
  dequantize,
  readWeight,
  bytesPerValue,
} from './quant/index.js';
export type { Nf4Data, Nf4NestedData, SafetensorsEntry, LoadOptions, QuantizeOptions, QuantError } from './quant/index.js';

// Shared ops
export { matmul } from './ops/matmul.js';
export type { MatmulArgs } from './ops/matmul.js';
export { dropoutApply, dropoutMaskedAdd } from './ops/dropout.js';
export type { Dropout } from './ops/dropout.js';

// Methods: the registry, the contract every method fulfils, and each family's own functions
// (each family's index.ts says what it makes public).
export { METHODS, METHOD_IDS, methodById } from './methods/registry.js';
export type {
  MethodDescriptor,
  AdapterLayer,
  LayerSpec,
  LayerDims,
  MethodOptions,
  Trainable,
  TensorSpec,
  ConfigField,
  PhaseFlops,
  HostValues,
} from './methods/types.js';
export type { EncodeOptions, ForwardOptions, BackwardOptions, MergeOptions } from './methods/common.js';
export * from './methods/lora/index.js';
export * from './methods/bora/index.js';
export * from './methods/sbora/index.js';
export * from './methods/lorma/index.js';

// Test vectors (docs/vectors.md)
export { runVectors, vectorRunner } from './vectors/index.js';
export type { VectorCase, VectorFile, VectorTensor, VectorRunner } from './vectors/types.js';

// Adapter files (safetensors + adapter_config.json, HF PEFT's layout; docs/adapters.md)
export {
  encodeSafetensors,
  decodeSafetensors,
  encodeAdapter,
  decodeAdapter,
  saveAdapter,
  loadAdapter,
  validateAdapter,
  validateConfig,
  adapterConfig,
  configOptions,
  targetMatches,
  tensorsOf,
  writeFileAtomic,
  halfToFloat,
  ADAPTER_METHODS,
  ADAPTER_WEIGHTS_FILE,
  ADAPTER_CONFIG_FILE,
  PEFT_KEY_PREFIX,
} from './adapters.js';
export type { Adapter, AdapterConfig, AdapterMethod, ModuleTensors, ModuleShapes, NamedTensor, TensorData, SafetensorsDType } from './adapters.js';

// Layers of a small model (docs/nn.md)
export {
  uploadIds,
  embeddingForward,
  embeddingBackward,
  addBias,
  biasGrad,
  linearForward,
  linearBackward,
  activationForward,
  activationBackward,
  layerNormForward,
  layerNormBackward,
  softmaxCrossEntropy,
} from './nn.js';
export type { Activation, NnEncodeOptions, LinearBackwardOptions } from './nn.js';
export * as nn from './nn.js';
export { attentionForward, attentionBackward, ATTENTION_MAX_HEAD_DIM, type AttentionShape } from './attention.js';

// Optimizer (docs/nn.md)
export { AdamW, learningRate } from './optim.js';
export type { AdamWOptions, ScheduleOptions, TrainableParam } from './optim.js';
