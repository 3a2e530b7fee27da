// A device buffer with a shape and an element type. Tensors made by a Context are owned by it;
// `Tensor.wrap` adopts a caller's GPUBuffer without copying (the caller keeps ownership).

import type { Context } from './runtime.js';
import { PeftError } from './validate.js';

export type DType = 'f32' | 'u32' | 'i32';
export type HostArray = Float32Array | Float64Array | Uint32Array | Int32Array | number[];
/** What `ctx.read` returns for a tensor of dtype D (a union when D is not known statically). */
export type HostArrayOf<D extends DType> = D extends 'f32' ? Float32Array : D extends 'u32' ? Uint32Array : Int32Array;

export function bytesPerElement(_dtype: DType): number {
  return 4;
}

/**
 * `D` is the element type where it is known (`ctx.tensor([n])` is a Tensor<'f32'>), so `ctx.read`
 * returns the matching typed array; a plain `Tensor` is any dtype.
 */
export class Tensor<D extends DType = DType> {
  // D lives only at the type level, read through a method signature so that it is bivariant: a
  // Tensor<'f32'> and a plain Tensor pass for each other as they did before D existed (arrays of
  // tensors, fields typed Tensor), while a Tensor<'u32'> where a Tensor<'f32'> is wanted is an
  // error. `declare`: never set, nothing emitted.
  declare readonly _dtype?: { of(d: D): void };

  constructor(
    readonly ctx: Context,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly owned: boolean,
    readonly label: string,
  ) {}

  /** Wraps a caller's buffer (usage must include STORAGE) as a tensor of the given shape. */
  static wrap<D extends DType = 'f32'>(
    ctx: Context,
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: D = 'f32' as D,
    label = 'buffer',
  ): Tensor<D> {
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
