// Float64 reference of the dropout mask: the same 32-bit hash as shaders/dropout.wgsl.

function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> (((state >>> 28) + 4) >>> 0)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** floor(p · 2³²), the hash value below which an element is dropped. */
export { dropThreshold } from '../ops/dropout.js';
import { dropThreshold } from '../ops/dropout.js';

/** The keep factor of each element: 0 where dropped, 1 / (1 − p) where kept. */
export function dropoutMask(count: number, p: number, seed: number): Float64Array {
  const threshold = dropThreshold(p);
  const mixed = pcg(seed);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = pcg((i ^ mixed) >>> 0) >= threshold ? 1 / (1 - p) : 0;
  return out;
}

export function applyDropout(x: ArrayLike<number>, p: number, seed: number): Float64Array {
  const mask = dropoutMask(x.length, p, seed);
  return mask.map((k, i) => k * x[i]);
}
