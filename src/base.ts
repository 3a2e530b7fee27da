// A frozen base weight W0 [rows, cols] kept on the device in a compact format. f32 weights stay
// plain Tensors; a BaseWeight holds f16 or NF4 (bitsandbytes' 4-bit NormalFloat) and every
// product that reads W0 dequantizes it in registers (src/ops/matmul.ts), so W0 is never widened
// to an f32 buffer. Creation, the on-device quantizer and dequantization: src/quant/.
//
// Storage (both in a u32 tensor, little-endian bytes, padded to whole words):
// - f16: value i in word i >> 1, low half for even i (what unpack2x16float(word).x returns).
// - nf4: row-major values in blocks of blockSize; byte j (byte j & 3 of word j >> 2) holds
//   value 2j in its high nibble and 2j + 1 in its low nibble; value i = NF4[code] · absmax[i / blockSize].

import type { Context } from './runtime.js';
import type { Tensor } from './tensor.js';

export type BaseFormat = 'f32' | 'f16' | 'nf4';

/** The 16 NF4 levels (QLoRA, bitsandbytes), code 0 to 15. */
export const NF4_VALUES: Float32Array = Float32Array.of(
  -1,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1,
);

const BASE_BRAND = Symbol.for('peft-wgsl.BaseWeight');

export class BaseWeight {
  constructor(
    readonly format: 'f16' | 'nf4',
    /** [rows, cols] of the logical row-major matrix. */
    readonly shape: readonly [number, number],
    /** Packed values (dtype u32), layout above. */
    readonly data: Tensor,
    /** NF4: one f32 per block, ⌈rows·cols / blockSize⌉ of them; null for f16. */
    readonly absmax: Tensor | null,
    /** NF4 block size (a power of two, 32–4096); 0 for f16. */
    readonly blockSize: number,
    readonly label: string,
  ) {}

  /**
   * For a weight last written by a requantizing merge (`requantize: true`): the error that
   * requantization introduced against the exact f32 result; null otherwise.
   */
  quantError: { maxAbs: number; relative: number } | null = null;

  get [BASE_BRAND](): true {
    return true;
  }

  /** Whether `v` is a BaseWeight (of this or another copy of the package). */
  static isBaseWeight(v: unknown): v is BaseWeight {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[BASE_BRAND] === true;
  }

  get ctx(): Context {
    return this.data.ctx;
  }

  get dtype(): 'f16' | 'nf4' {
    return this.format;
  }

  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  /** Device bytes of the weight: packed values and absmax together. */
  get bytes(): number {
    return this.data.buffer.size + (this.absmax ? this.absmax.buffer.size : 0);
  }

  destroy(): void {
    this.data.destroy();
    this.absmax?.destroy();
  }
}

/** W0 in any of the three formats. */
export type Weight = Tensor | BaseWeight;

export function formatOf(w: Weight): BaseFormat {
  return BaseWeight.isBaseWeight(w) ? w.format : 'f32';
}
