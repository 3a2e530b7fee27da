// A device buffer with a shape and an element type. Tensors made by a Context are owned by it;
// `Tensor.wrap` adopts a caller's GPUBuffer without copying (the caller keeps ownership).

import type { Context } from './runtime.js';
import { PeftError } from './validate.js';

export type DType = 'f32' | 'u32' | 'i32';
export type HostArray = Float32Array | Float64Array | Uint32Array | Int32Array | number[];

export function bytesPerElement(_dtype: DType): number {
  return 4;
}

export class Tensor {
  constructor(
    readonly ctx: Context,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly owned: boolean,
    readonly label: string,
  ) {}

  /** Wraps a caller's buffer (usage must include STORAGE) as a tensor of the given shape. */
  static wrap(ctx: Context, buffer: GPUBuffer, shape: readonly number[], dtype: DType = 'f32', label = 'buffer'): Tensor {
    const count = shape.reduce((a, b) => a * b, 1);
    const need = count * bytesPerElement(dtype);
    if (buffer.size < need) {
      throw new PeftError(`'${label}': buffer has ${buffer.size} bytes, shape [${shape.join(', ')}] of ${dtype} needs ${need}`);
    }
    if ((buffer.usage & 0x80) === 0) throw new PeftError(`'${label}': buffer usage lacks STORAGE`);
    return new Tensor(ctx, buffer, shape, dtype, false, label);
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  /** Frees the buffer if the package allocated it; wrapped buffers are left to their owner. */
  destroy(): void {
    if (this.owned) this.ctx.releaseBuffer(this.buffer);
  }
}
