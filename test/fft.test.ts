// The batched FFT of shaders/fft.wgsl (src/ops/fft.ts) against a float64 DFT: forward output in
// bit-reversed order, inverse from that order back to natural order (times n), lengths with an
// even and an odd number of radix-2 stages, batches past one workgroup of 64 transforms.

import { expect } from 'chai';
import { bitReverse, fftBatched, fftStride, isPowerOfTwo } from '../src/ops/fft.js';
import { expectThrows, gpu, rand } from './helpers.js';

/** X[k] = Σ_j x[j]·exp(sign·2πi·jk/n) in float64, for transform b of data laid out [n][nb] (nb: the row stride). */
function dft(x: ArrayLike<number>, n: number, nb: number, b: number, sign: number): Float64Array {
  const out = new Float64Array(2 * n);
  for (let k = 0; k < n; k++) {
    let re = 0;
    let im = 0;
    for (let j = 0; j < n; j++) {
      const angle = (sign * 2 * Math.PI * ((j * k) % n)) / n;
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const xr = x[2 * (j * nb + b)];
      const xi = x[2 * (j * nb + b) + 1];
      re += xr * c - xi * s;
      im += xr * s + xi * c;
    }
    out[2 * k] = re;
    out[2 * k + 1] = im;
  }
  return out;
}

// f32 transforms: each of the log2(n) stages adds about one rounding (ε = 6e-8) of the values'
// scale, so the error relative to max |X| stays near ε·log2(n) ≈ 6e-7 at n = 1024; 2e-6 leaves
// room for that and fails on any misplaced bin or twiddle (errors of order 1).
const TOL = 2e-6;

describe('fft (batched, one transform per invocation) against a float64 DFT', () => {
  // 16 to 512: every count of fused radix-4 pairs, with and without a single radix-4 stage and the odd radix-2 stage.
  for (const n of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]) {
    for (const [count, padded] of n <= 256
      ? ([
          [1, false],
          [3, true],
          [70, false],
          [70, true],
        ] as const)
      : ([[5, true]] as const)) {
      const stride = padded ? fftStride(count) : count;
      it(`n = ${n}, ${count} transform${count > 1 ? 's' : ''}, row stride ${stride}: forward to bit-reversed order, inverse back to natural order`, async () => {
        const ctx = await gpu();
        // Rows of `stride` complex values, the first `count` of them transformed; the padding too
        // is random, and must come back untouched.
        const nb = stride;
        const x = rand(2 * n * nb);
        const data = ctx.upload(x, [n, nb, 2], 'f32', 'fft data');
        await ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n, nb: count, stride, inverse: false }));
        const spectrum = await ctx.read(data);
        let err = 0;
        let scale = 0;
        for (let b = 0; b < count; b++) {
          const want = dft(x, n, nb, b, -1);
          for (let k = 0; k < n; k++) {
            const at = bitReverse(k, n) * nb + b;
            err = Math.max(err, Math.abs(spectrum[2 * at] - want[2 * k]), Math.abs(spectrum[2 * at + 1] - want[2 * k + 1]));
            scale = Math.max(scale, Math.abs(want[2 * k]), Math.abs(want[2 * k + 1]));
          }
        }
        expect(err / scale, 'forward').to.be.at.most(TOL);
        for (let k = 0; k < n; k++) {
          for (let b = count; b < nb; b++) {
            for (const part of [0, 1]) expect(spectrum[2 * (k * nb + b) + part], 'padding').to.equal(x[2 * (k * nb + b) + part]);
          }
        }

        // The inverse of a bit-reversed spectrum: exp(+2πi·jk/n), natural order out, not divided by n.
        const inverse = dft(
          Float64Array.from({ length: 2 * n * nb }, (_, i) => {
            const [k, b, part] = [Math.floor(i / (2 * nb)), Math.floor(i / 2) % nb, i % 2];
            return x[2 * (bitReverse(k, n) * nb + b) + part];
          }),
          n,
          nb,
          0,
          1,
        );
        const data2 = ctx.upload(x, [n, nb, 2], 'f32', 'fft data');
        await ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data: data2, n, nb: count, stride, inverse: true }));
        const back = await ctx.read(data2);
        let err2 = 0;
        let scale2 = 0;
        for (let j = 0; j < n; j++) {
          err2 = Math.max(err2, Math.abs(back[2 * j * nb] - inverse[2 * j]), Math.abs(back[2 * j * nb + 1] - inverse[2 * j + 1]));
          scale2 = Math.max(scale2, Math.abs(inverse[2 * j]), Math.abs(inverse[2 * j + 1]));
        }
        expect(err2 / scale2, 'inverse (transform 0)').to.be.at.most(TOL);

        // Forward then inverse gives n·x back, every transform (and the padding as it was).
        await ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n, nb: count, stride, inverse: true }));
        const round = await ctx.read(data);
        let err3 = 0;
        for (let i = 0; i < x.length; i++) err3 = Math.max(err3, Math.abs((Math.floor(i / 2) % nb < count ? round[i] / n : round[i]) - x[i]));
        expect(err3, 'round trip').to.be.at.most(TOL);
        data.destroy();
        data2.destroy();
      });
    }
  }

  it('bitReverse, isPowerOfTwo and fftStride (the smallest odd multiple of 8 from nb up)', () => {
    expect([1, 8, 9, 20, 256, 2048].map(fftStride)).to.deep.equal([8, 8, 24, 24, 264, 2056]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((k) => bitReverse(k, 8))).to.deep.equal([0, 4, 2, 6, 1, 5, 3, 7]);
    expect(bitReverse(0, 1)).to.equal(0);
    expect([1, 2, 64, 1024].every(isPowerOfTwo)).to.equal(true);
    expect([0, 3, 12, 37, -4, 2.5].some(isPowerOfTwo)).to.equal(false);
  });

  it('rejects a length that is not a power of two, and a buffer too small', async () => {
    const ctx = await gpu();
    const data = ctx.tensor([12, 2, 2]);
    await expectThrows(
      () => ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n: 12, nb: 2, inverse: false })),
      /fft: length n = 12 is not a power of two/,
    );
    await expectThrows(
      () => ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n: 16, nb: 2, inverse: false })),
      /has 48 floats, 16 × 2 complex values need 64/,
    );
    await expectThrows(
      () => ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n: 4, nb: 2, stride: 1, inverse: false })),
      /fft: stride 1 is below the batch count 2/,
    );
    data.destroy();
  });
});
