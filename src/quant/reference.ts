// The reference of the base-weight formats (docs/quantization.md), on the host: f32 → f16
// rounding, bitsandbytes' NF4 quantizer and its dequantization, and the byte packing. Written in
// float64 arithmetic with explicit rounding to f32 (Math.fround), not in the integer bit
// manipulation the shaders use, so the two check each other.

import { NF4_VALUES } from '../base.js';

export { NF4_VALUES };

/** The largest finite f16 value. */
export const F16_MAX = 65504;

/**
 * The f16 nearest to `v` (ties to even), as a number; ±0 kept. NaN for non-finite input or
 * |v| > 65504 (the callers' "out of range").
 */
export function roundF16(v: number): number {
  if (!Number.isFinite(v) || Math.abs(v) > F16_MAX) return NaN;
  const a = Math.abs(v);
  if (a === 0) return v;
  // The spacing of f16 values around a: 2^-24 below 2^-14 (subnormals), else 2^(⌊log2 a⌋ − 10).
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10);
  const q = a / ulp; // exact: a power-of-two scale
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const out = r * ulp;
  return v < 0 ? -out : out;
}

/** IEEE half bits of an f16 value (as roundF16 returns). */
export function f16Bits(h: number): number {
  const sign = h < 0 || Object.is(h, -0) ? 0x8000 : 0;
  const a = Math.abs(h);
  if (a === 0) return sign;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

/** The value of IEEE half bits `h` (NaN and ±Inf as such). */
export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (exp === 0 ? frac * 2 ** -24 : (1 + frac / 1024) * 2 ** (exp - 15));
}

/** f32 values → f16 bits, rounding to nearest even; throws (via `fail`) on the first value out of range. */
export function toF16Bits(values: ArrayLike<number>, fail: (index: number, value: number) => never): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const h = roundF16(values[i]);
    if (Number.isNaN(h)) fail(i, values[i]);
    out[i] = f16Bits(h);
  }
  return out;
}

/** The index of the NF4 level nearest to x; a tie takes the lower index. */
export function nearestNf4(x: number): number {
  let best = 0;
  let bestD = Infinity;
  for (let k = 0; k < 16; k++) {
    // x and the levels are f32 values, so near a midpoint (where it matters) the difference is exact in f64.
    const d = Math.abs(x - NF4_VALUES[k]);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

/**
 * For each pair of neighbouring levels k, k+1: the largest f32 that still takes code k (the
 * exact midpoint rounded down to f32). Code = the number of thresholds below x.
 */
export function nf4Thresholds(): Float32Array {
  const t = new Float32Array(15);
  for (let k = 0; k < 15; k++) {
    const mid = (NF4_VALUES[k] + NF4_VALUES[k + 1]) / 2; // exact in f64
    let f = Math.fround(mid);
    if (f > mid) f = nextDown(f);
    t[k] = f;
  }
  return t;
}

const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
/** f32 bits of `v` (rounded to f32 first). */
export function f32Bits(v: number): number {
  F[0] = v;
  return U[0];
}
export function f32FromBits(b: number): number {
  U[0] = b >>> 0;
  return F[0];
}
/** The f32 below a finite f32 `v`. */
export function nextDown(v: number): number {
  if (v === 0) return -f32FromBits(1);
  const b = f32Bits(v);
  return f32FromBits(v > 0 ? b - 1 : b + 1);
}
/** The f32 above a finite f32 `v`. */
export function nextUp(v: number): number {
  return -nextDown(-v);
}

export interface Nf4Quantized {
  /** ⌈size/2⌉ bytes: value 2j in the high nibble of byte j, value 2j+1 in its low nibble. */
  codes: Uint8Array;
  /** ⌈size/blockSize⌉ f32 values: each block's largest |value|. */
  absmax: Float32Array;
}

/**
 * bitsandbytes' NF4 rule: absmax = the block's largest |value|; code = the level nearest to
 * value · fround(1/absmax), the product rounded to f32, a tie taking the lower code. An all-zero
 * block (absmax 0) gets code 7 (the level 0) throughout. `values` are taken as f32.
 */
export function quantizeNf4Ref(values: ArrayLike<number>, blockSize: number): Nf4Quantized {
  const size = values.length;
  const blocks = Math.ceil(size / blockSize);
  const absmax = new Float32Array(blocks);
  const codes = new Uint8Array(Math.ceil(size / 2));
  for (let b = 0; b < blocks; b++) {
    const end = Math.min(size, (b + 1) * blockSize);
    let amax = 0;
    for (let i = b * blockSize; i < end; i++) amax = Math.max(amax, Math.abs(Math.fround(values[i])));
    absmax[b] = amax;
    // 1/absmax in f64 then rounded to f32 is the correctly rounded f32 quotient (53 ≥ 2·24 + 2 bits).
    const recip = Math.fround(1 / amax);
    for (let i = b * blockSize; i < end; i++) {
      const code = amax === 0 ? 7 : nearestNf4(Math.fround(Math.fround(values[i]) * recip));
      codes[i >> 1] |= i & 1 ? code : code << 4;
    }
  }
  return { codes, absmax };
}

/** The code of value i in bitsandbytes' byte layout. */
export function nf4Code(codes: Uint8Array, i: number): number {
  const byte = codes[i >> 1];
  return i & 1 ? byte & 15 : byte >> 4;
}

/** NF4[code_i] · absmax[⌊i / blockSize⌋], rounded to f32 (as the device computes it). */
export function dequantizeNf4Ref(codes: Uint8Array, absmax: ArrayLike<number>, blockSize: number, size: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.fround(NF4_VALUES[nf4Code(codes, i)] * Math.fround(absmax[Math.floor(i / blockSize)]));
  return out;
}

/** f16 bits → f32 values (exact). */
export function dequantizeF16Ref(bits: Uint16Array): Float32Array {
  return Float32Array.from(bits, f16Value);
}

/** Bytes (codes, or f16 halves as little-endian pairs) packed into little-endian u32 words, zero-padded. */
export function packBytes(bytes: Uint8Array): Uint32Array {
  const words = new Uint32Array(Math.ceil(bytes.length / 4));
  for (let j = 0; j < bytes.length; j++) words[j >> 2] |= bytes[j] << (8 * (j & 3));
  return words;
}

/** f16 halves packed two a word, value 2i in the low half. */
export function packHalves(bits: Uint16Array): Uint32Array {
  const words = new Uint32Array(Math.ceil(bits.length / 2));
  for (let i = 0; i < bits.length; i++) words[i >> 1] |= bits[i] << (16 * (i & 1));
  return words;
}

export function unpackBytes(words: Uint32Array, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let j = 0; j < count; j++) out[j] = (words[j >> 2] >>> (8 * (j & 3))) & 0xff;
  return out;
}

export function unpackHalves(words: Uint32Array, count: number): Uint16Array {
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = (words[i >> 1] >>> (16 * (i & 1))) & 0xffff;
  return out;
}
