// A device buffer with a shape and an element type. Tensors made by a Context are owned by it;
// `Tensor.wrap` adopts a caller's GPUBuffer without copying (the caller keeps ownership).

import type { Context } from './runtime.js';
import { PeftError, describeValue, isValidShape } from './validate.js';

export type DType = 'f32' | 'u32' | 'i32';
export type HostArray = Float32Array | Float64Array | Uint32Array | Int32Array | number[];
/** What `ctx.read` returns for a tensor of dtype D (a union when D is not known statically). */
export type HostArrayOf<D extends DType> = D extends 'f32' ? Float32Array : D extends 'u32' ? Uint32Array : Int32Array;

export function bytesPerElement(_dtype: DType): number {
  return 4;
}

// A registered symbol rather than instanceof: a program that loads the package twice (CommonJS and
// ESM copies under a test runner, two bundles) still recognises the other copy's tensors.
const TENSOR_BRAND = Symbol.for('peft-wgsl.Tensor');

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

  get [TENSOR_BRAND](): true {
    return true;
  }

  /** Whether `v` is a Tensor (of this or another copy of the package). */
  static isTensor(v: unknown): v is Tensor {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[TENSOR_BRAND] === true;
  }

  /**
   * Wraps a caller's buffer (usage must include STORAGE) as a tensor of the given shape: a
   * non-empty array of positive integers whose elements fit in the buffer. The tensor belongs to
   * `ctx`: kernels of another context refuse it.
   */
  static wrap<D extends DType = 'f32'>(
    ctx: Context,
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: D = 'f32' as D,
    label = 'buffer',
  ): Tensor<D> {
    const where = `Tensor.wrap '${String(label)}'`;
    const c = ctx as Context | null | undefined;
    if (!c || typeof c !== 'object' || typeof c.assertAlive !== 'function') {
      throw new PeftError(`${where}: 'ctx' must be a Context, got ${describeValue(ctx)}`);
    }
    c.assertAlive(where);
    const b = buffer as GPUBuffer | null | undefined;
    if (!b || typeof b !== 'object' || typeof b.size !== 'number' || typeof b.usage !== 'number') {
      throw new PeftError(`${where}: 'buffer' must be a GPUBuffer, got ${describeValue(buffer)}`);
    }
    if (!isValidShape(shape)) {
      throw new PeftError(
        `${where}: 'shape' must be a non-empty array of positive integers, got ${Array.isArray(shape) ? `[${(shape as unknown[]).map(String).join(', ')}]` : describeValue(shape)}`,
      );
    }
    if (dtype !== 'f32' && dtype !== 'u32' && dtype !== 'i32')
      throw new PeftError(`${where}: 'dtype' must be 'f32', 'u32' or 'i32', got ${describeValue(dtype)}`);
    const count = shape.reduce((a, d) => a * d, 1);
    const need = count * bytesPerElement(dtype);
    if (b.size < need) {
      throw new PeftError(`${where}: buffer has ${b.size} bytes, shape [${shape.join(', ')}] of ${dtype} needs ${need}`);
    }
    if ((b.usage & 0x80) === 0) throw new PeftError(`${where}: 'buffer' usage lacks STORAGE`);
    return new Tensor(c, b, [...shape], dtype, false, label);
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
