// Host side of shaders/fft.wgsl: batched in-place complex FFTs of a power-of-two length n on data
// laid out [element][batch] (element k of transform b at complex index k·stride + b, two f32
// each; stride ≥ nb, padded by fftStride so that it is no power of two).
// The forward transform leaves its output in bit-reversed order and the inverse takes its input in
// that order (see the shader), so forward → pointwise product → inverse needs no permutation.

import type { Context } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import { PeftError } from '../validate.js';

const WG = 64;

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/** The bit reversal of k < n (n a power of two): where the forward transform puts bin k. */
export function bitReverse(k: number, n: number): number {
  let r = 0;
  for (let bit = 1, top = n >> 1; bit < n; bit <<= 1, top >>= 1) if (k & bit) r |= top;
  return r;
}

/**
 * The row stride (in complex values) to lay nb transforms out with: the smallest odd multiple of 8
 * from nb up — whole 64-byte lines, and rows 64·odd bytes apart, never a multiple of 128, so the
 * points of a butterfly do not share cache sets (measured on llvmpipe: 2048 transforms of 1024
 * points take 1.7× longer with stride 2048 than with 2056).
 */
export function fftStride(nb: number): number {
  const lines = Math.max(1, Math.ceil(nb / 8));
  return 8 * (lines % 2 === 1 ? lines : lines + 1);
}

// Twiddle tables are written once per scratch tensor (a released scratch comes back as a new one).
const written = new WeakSet<Tensor>();

/** tw[m] = exp(−2πi·m/n), m < n, rounded from float64: a scratch tensor [n, 2] of the context. */
export function fftTwiddles(ctx: Context, n: number): Tensor {
  const t = ctx.scratch('fft.twiddles', [n, 2]);
  if (!written.has(t)) {
    const v = new Float32Array(2 * n);
    for (let m = 0; m < n; m++) {
      v[2 * m] = Math.cos((2 * Math.PI * m) / n);
      v[2 * m + 1] = -Math.sin((2 * Math.PI * m) / n);
    }
    ctx.write(t, v);
    written.add(t);
  }
  return t;
}

export async function prepareFft(ctx: Context): Promise<void> {
  await ctx.prepare([
    { shader: 'fft', entry: 'fft', constants: { INVERSE: false } },
    { shader: 'fft', entry: 'fft', constants: { INVERSE: true } },
  ]);
}

/**
 * Encodes nb transforms of length n in place on `data` (n rows of `stride` complex values, [n][stride];
 * stride defaults to nb).
 * Forward: natural order in, bit-reversed out, exp(−2πi·jk/n). Inverse: bit-reversed in, natural
 * out, exp(+2πi·jk/n), not divided by n.
 * `partial` (n ≥ 8): the forward leaves out its first stage and the inverse its last, the radix-8
 * stage over whole transforms (three radix-2 stages, block lengths n, n/2, n/4), for a caller whose
 * own kernel runs that stage fused with its products (shaders/lorma.wgsl).
 */
export async function fftBatched(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: { data: Tensor; n: number; nb: number; stride?: number; inverse: boolean; partial?: boolean },
): Promise<void> {
  const { n, nb } = a;
  const stride = a.stride ?? nb;
  if (!isPowerOfTwo(n)) throw new PeftError(`fft: length n = ${n} is not a power of two`);
  if (a.partial && n < 8) throw new PeftError(`fft: a partial transform needs n ≥ 8 (a whole radix-8 stage), got n = ${n}`);
  if (!Number.isInteger(nb) || nb < 1) throw new PeftError(`fft: batch count ${nb} is not a positive integer`);
  if (!Number.isInteger(stride) || stride < nb) throw new PeftError(`fft: stride ${stride} is below the batch count ${nb}`);
  if (a.data.size < 2 * n * stride) {
    throw new PeftError(`fft: '${a.data.label}' has ${a.data.size} floats, ${n} × ${stride} complex values need ${2 * n * stride}`);
  }
  await prepareFft(ctx);
  const constants = { INVERSE: a.inverse };
  ctx.dispatch(enc, {
    shader: 'fft',
    entry: 'fft',
    constants,
    params: { n, nb, stride, partial: a.partial ? 1 : 0 },
    bindings: [fftTwiddles(ctx, n), a.data],
    workgroups: Math.ceil(nb / WG),
    label: `fft${a.inverse ? ' inverse' : ''}${a.partial ? ' partial' : ''} ${n}x${nb}`,
  });
}
