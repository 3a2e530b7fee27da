// Host side of shaders/dropout.wgsl: a keep mask hashed from (seed, element index), so the
// backward regenerates it and no mask is stored (docs/math.md, "Dropout on the adapter").

import type { Context } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import { PeftError } from '../validate.js';

/** The u32 threshold below which a hashed element is dropped: P(drop) = p. */
export function dropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

export interface Dropout {
  /** Probability of dropping an element, in [0, 1). */
  p: number;
  /** Mask seed: use a new one each step, the same one for a step's forward and backward. */
  seed: number;
}

export function checkDropout(where: string, d: Dropout | undefined): Dropout | undefined {
  if (d === undefined || d.p === 0) return undefined;
  if (typeof d.p !== 'number' || !(d.p >= 0 && d.p < 1)) throw new PeftError(`${where}: 'dropout.p' must be in [0, 1), got ${String(d.p)}`);
  if (!Number.isInteger(d.seed) || d.seed < 0 || d.seed > 0xffffffff) {
    throw new PeftError(`${where}: 'dropout.seed' must be a u32 integer, got ${String(d.seed)}`);
  }
  return d;
}

const WG = 256;
const PER = 4;

async function run(ctx: Context, entry: 'apply' | 'masked_add', src: Tensor, dst: Tensor, d: Dropout, alpha: number, enc: GPUCommandEncoder) {
  if (src.size !== dst.size) throw new PeftError(`dropout: '${src.label}' has ${src.size} elements, '${dst.label}' ${dst.size}`);
  await ctx.prepare([{ shader: 'dropout', entry }]);
  ctx.dispatch(enc, {
    shader: 'dropout',
    entry,
    params: { count: src.size, seed: d.seed, threshold: dropThreshold(d.p), keep_scale: 1 / (1 - d.p), alpha },
    bindings: [src, dst],
    workgroups: Math.ceil(src.size / (WG * PER)),
    label: `dropout.${entry}`,
  });
}

/** dst = src ⊙ mask / (1 − p). */
export function dropoutApply(ctx: Context, src: Tensor, dst: Tensor, d: Dropout, enc: GPUCommandEncoder): Promise<void> {
  return run(ctx, 'apply', src, dst, d, 1, enc);
}

/** dst += alpha · src ⊙ mask / (1 − p). */
export function dropoutMaskedAdd(ctx: Context, src: Tensor, dst: Tensor, d: Dropout, alpha: number, enc: GPUCommandEncoder): Promise<void> {
  return run(ctx, 'masked_add', src, dst, d, alpha, enc);
}
