// Host side of shaders/finite.wgsl: counts a tensor's NaN and ±Inf values on the device into a
// two-word u32 result, so a check costs one read of the tensor and 8 bytes read back.

import type { Context } from '../runtime.js';
import type { Tensor } from '../tensor.js';

const WG = 64;
const PER = 16;

export interface NonFinite {
  /** NaN and ±Inf values found. */
  count: number;
  /** Flat index of the first of them. */
  first: number;
}

export async function prepareFiniteCheck(ctx: Context): Promise<void> {
  await ctx.prepare([{ shader: 'finite', entry: 'count_non_finite' }]);
}

/**
 * A fresh result tensor for one check. Not a scratch: two checks in flight at once (un-awaited
 * calls) must not read each other's counts.
 */
export function finiteResult(ctx: Context, label: string): Tensor<'u32'> {
  return ctx.tensor([2], 'u32', label);
}

/** Encodes the check of `x` into `result` (cleared first). The pipeline must have been prepared. */
export function encodeFiniteCheck(ctx: Context, enc: GPUCommandEncoder, x: Tensor, result: Tensor<'u32'>): void {
  enc.clearBuffer(result.buffer, 0, result.byteLength);
  ctx.dispatch(enc, {
    shader: 'finite',
    entry: 'count_non_finite',
    params: { n: x.size },
    bindings: [x, result],
    workgroups: Math.ceil(x.size / (WG * PER)),
    label: `finite check ${x.label}`,
  });
}

/** Reads a check's result back: null when every value was finite. */
export async function readFiniteCheck(ctx: Context, result: Tensor<'u32'>): Promise<NonFinite | null> {
  const [count, first] = await ctx.read(result);
  return count === 0 ? null : { count, first: 0xffffffff - first };
}
