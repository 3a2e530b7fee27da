// Seeded random numbers for inits and index sampling, so a run can be repeated exactly.

/** mulberry32: a small, fast 32-bit generator with a full 2^32 period. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` values uniform in [-bound, bound). */
export function uniform(count: number, bound: number, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (2 * next() - 1) * bound;
  return out;
}

/** Kaiming-uniform as PyTorch initialises nn.Linear (a = √5): U(-1/√fanIn, 1/√fanIn). */
export function kaimingUniform(count: number, fanIn: number, seed: number): Float32Array {
  return uniform(count, 1 / Math.sqrt(fanIn), seed);
}
