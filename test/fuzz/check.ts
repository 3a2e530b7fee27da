// What a fuzz case asserts, and the pieces every generator shares: problem sizes, seeded values and
// output checks that throw (fast-check treats a throw as a counterexample and shrinks it).

import fc from 'fast-check';
import { relativeError } from '../../src/numeric.js';
import { uniform } from '../../src/random.js';
import type { Context, Tuning } from '../../src/runtime.js';
import type { Tensor } from '../../src/tensor.js';
import { F32_TOL } from '../helpers.js';

export { F32_TOL };

/** Raised by a check: the message says which output, by how much and against which tolerance. */
export class FuzzMismatch extends Error {
  override name = 'FuzzMismatch';
}

/** The measure of expectClose (max error over max |expected|), as a throw instead of an assertion. */
export function near(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = F32_TOL): void {
  if (actual.length !== expected.length) throw new FuzzMismatch(`${what}: ${actual.length} values, expected ${expected.length}`);
  const err = relativeError(actual, expected);
  if (!(err <= tol)) throw new FuzzMismatch(`${what}: relative error ${err.toExponential(2)} > ${tol}`);
}

/**
 * Like `near`, but measured against `scale` (a bound on the terms the output is a difference of)
 * instead of max |expected|: for outputs that cancel by construction (BoRA's dσ), as the family's
 * own test measures them.
 */
export function nearOnScale(actual: ArrayLike<number>, expected: ArrayLike<number>, scale: number, what: string, tol = F32_TOL): void {
  if (actual.length !== expected.length) throw new FuzzMismatch(`${what}: ${actual.length} values, expected ${expected.length}`);
  let err = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= err)) err = Number.isNaN(d) ? Infinity : d;
  }
  const rel = scale > 0 ? err / scale : err;
  if (!(rel <= tol)) throw new FuzzMismatch(`${what}: error ${rel.toExponential(2)} of the terms' scale ${scale.toExponential(2)} > ${tol}`);
}

// Sizes: 1 first (fast-check shrinks constantFrom toward the first entry), primes, and the edges
// of the kernels' tiles (4, 8, 16, 32 and one past them). Every size stays small so a case runs in
// well under a second on lavapipe.
export const SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 11, 13, 16, 17, 23, 29, 31, 32, 33, 37] as const;
/** Token counts: past the 8-token tiles of BoRA and the 16-row blocks of LoRMA's spectra. */
export const TOKENS = [1, 2, 3, 5, 7, 8, 9, 13, 17, 19, 33] as const;
// Ranks come from a small set: BoRA and SBoRA compile a pipeline per rank, so the campaign's
// pipelines stay few. r = 16 and 17 cross SBoRA's 16-rank pass and BoRA's 8-rank chunks.
export const RANKS = [1, 2, 3, 4, 5, 8, 16, 17] as const;

export const size = () => fc.constantFrom(...SIZES);
export const tokens = () => fc.constantFrom(...TOKENS);
/** A seed for a case's values (small: it shrinks quickly and prints short). */
export const seed = () => fc.nat({ max: 0xffff });
export const tuning = () => fc.constantFrom<Tuning['matmul']>('direct', 'direct-scalar', 'tiled');
/** Scales with a sign and a magnitude other than 1; 1 first so it shrinks to the plain case. */
export const scaleArb = () => fc.constantFrom(1, 2, -0.5, 0.125, 3.75);
/** Adapter dropout, absent or p in (0, 1) with a u32 mask seed. */
export const dropoutArb = () =>
  fc.option(fc.record({ p: fc.constantFrom(0.1, 0.5, 0.9), seed: fc.nat({ max: 0xffffffff }) }), { nil: undefined, freq: 2 });

/** `count` seeded values uniform in [-bound, bound): stream `k` of the case's seed. */
export function values(caseSeed: number, k: number, count: number, bound = 1): Float32Array {
  return uniform(count, bound, (Math.imul(caseSeed + 1, 0x9e3779b1) ^ Math.imul(k + 1, 0x85ebca77)) >>> 0);
}

/** Tensors of one case, destroyed together when the case ends (also when it throws). */
export class Arena {
  #tensors: { destroy(): void }[] = [];
  constructor(readonly ctx: Context) {}
  upload(data: Float32Array | Uint32Array, shape: readonly number[], label: string, dtype: 'f32' | 'u32' = 'f32'): Tensor {
    return this.keep(this.ctx.upload(data, shape, dtype, label));
  }
  keep<T extends { destroy(): void } | undefined>(t: T): T {
    if (t) this.#tensors.push(t);
    return t;
  }
  destroy(): void {
    for (const t of this.#tensors) t.destroy();
    this.#tensors = [];
  }
}

/**
 * Runs `fn` with matmul tuning `t` and a fresh arena, restoring the tuning and freeing the case's
 * tensors afterwards. Kernels with `encoder` record into it; it is submitted before the reads.
 */
export async function withCase<T>(ctx: Context, t: Tuning['matmul'], fn: (arena: Arena) => Promise<T>): Promise<T> {
  const saved = ctx.tuning.matmul;
  ctx.tuning.matmul = t;
  const arena = new Arena(ctx);
  try {
    return await fn(arena);
  } finally {
    ctx.tuning.matmul = saved;
    // Reads have synced, so nothing the GPU still needs is freed here.
    arena.destroy();
  }
}

/** The caller's encoder when `useEncoder`, else undefined (each call submits its own). */
export function encoderFor(ctx: Context, useEncoder: boolean): GPUCommandEncoder | undefined {
  return useEncoder ? ctx.device.createCommandEncoder() : undefined;
}

export function submit(ctx: Context, enc: GPUCommandEncoder | undefined): void {
  if (enc) ctx.submit(enc);
}
