// peft-wgsl public API. Layers: shaders/*.wgsl → runtime (Context, dispatch) → method modules
// (lora, bora, sbora, lorma) → this file. See docs/ARCHITECTURE.md.

export { Context, createContext, Usage, f32, i32 } from './runtime.js';
export type { ContextOptions, DispatchSpec, ParamValue, AllocationRecord, DeviceDescription, Tuning } from './runtime.js';
export { Tensor } from './tensor.js';
export type { DType, HostArray } from './tensor.js';
export { PeftError } from './validate.js';
export { onDevice } from './host.js';
export type { HostTensor } from './host.js';
export { matmul } from './ops/matmul.js';
export type { MatmulArgs } from './ops/matmul.js';
export { dropoutApply, dropoutMaskedAdd } from './ops/dropout.js';
export type { Dropout } from './ops/dropout.js';
export { rng, uniform, kaimingUniform } from './random.js';
export { runVectors, RUNNERS } from './vectors/index.js';

// Methods
export { loraForward, loraBackward, loraMerge } from './lora.js';
export type { LoraParams, EncodeOptions, LoraDims } from './lora.js';

// Adapter files (safetensors + adapter_config.json, HF PEFT-like)
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
  tensorsOf,
  writeFileAtomic,
  ADAPTER_METHODS,
  ADAPTER_WEIGHTS_FILE,
  ADAPTER_CONFIG_FILE,
} from './adapters.js';
export type { Adapter, AdapterConfig, AdapterMethod, ModuleTensors, ModuleShapes, NamedTensor, TensorData, SafetensorsDType, SigmaTransform } from './adapters.js';

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

// Optimizer (docs/nn.md)
export { AdamW, learningRate } from './optim.js';
export type { AdamWOptions, ScheduleOptions, TrainableParam } from './optim.js';

// SBoRA (docs/sbora.md)
export { sboraFaForward, sboraFaBackward, sboraFaMerge, sboraFbForward, sboraFbBackward, sboraFbMerge, sboraMultiMerge, sboraAccounting } from './sbora.js';
export type { SboraFaParams, SboraFbParams, SboraDims, SboraVariant, SboraAdapter, SboraAccount, MergeOptions as SboraMergeOptions } from './sbora.js';
export { IndexSet, IndexAllocator, createIndexSet, sampleIndices, checkIndices, checkDisjoint } from './indices.js';
export type { IndexSpec } from './indices.js';

// LoRMA (docs/lorma.md)
export { lormaForward, lormaBackward, lormaMerge, lormaInit, lormaPiPath, lormaCorrelationsShape, LORMA_FFT_MIN_D } from './lorma.js';
export type { LormaParams, LormaDims, Inflation as LormaInflation, Order as LormaOrder } from './lorma.js';

// BoRA and MELoRA (docs/bora.md)
export { boraForward, boraBackward, boraMerge, boraSigma, boraCheckSigma, checkSigmaHost, boraInit, boraParamCount, boraFlops, recommendedBlocks, boraRank } from './bora.js';
export type { BoraParams, BoraSigma, BoraGrads, BoraDims, BoraMode, SigmaTransform as BoraSigmaTransform } from './bora.js';
