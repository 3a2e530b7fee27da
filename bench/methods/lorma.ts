// LoRMA₊ and LoRMA_π (pre-multiplication, d = m, the descriptors' default), and the plain base
// layer (Y = X W0ᵀ, dX = G W0) that LoRMA_π's ratio is taken against. LoRMA₊'s is taken against
// LoRA. Each row is the descriptor's layer (bench/layer.ts): what a training loop runs, including
// the state it keeps (LoRMA_π keeps U and, on the FFT path, the correlations C for dB), with the
// descriptor's FLOPs; the set-up also records its largest allocation, the "no d×d buffer" check
// beside the timings.

import { lormaPi as lormaPiMethod, lormaPlus as lormaPlusMethod } from '../../src/methods/lorma/index.js';
import { base, benchMethodOf } from '../layer.js';
import type { BenchMethod } from './types.js';

export { base };

export const lormaPlus: BenchMethod = benchMethodOf(lormaPlusMethod);

/** LoRMA_π on the context's path (setLormaTuning; 'auto': FFTs at d = 1024). */
export const lormaPi: BenchMethod = benchMethodOf(lormaPiMethod);

/** LoRMA_π with π(BA) generated tile by tile (the path for d not a power of two), to compare. */
export const lormaPiTiles: BenchMethod = benchMethodOf(
  lormaPiMethod,
  lormaPiMethod.benchVariants!.find((v) => v.id === 'lorma-pi-tiles')!,
);
