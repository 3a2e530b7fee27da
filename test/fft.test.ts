// The batched FFT of shaders/fft.wgsl (src/ops/fft.ts) against a float64 DFT: forward output in
// bit-reversed order, inverse from that order back to natural order (times n), lengths with an
// every mix of radix-8, radix-4 and radix-2 stages, batches past one workgroup of 64 transforms,
// and the partial transforms whose whole-length stage a caller runs.

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

/**
 * One radix-2 stage of block length L on every transform of data laid out [n][nb], in float64 and in
 * place: decimation in frequency (a, b) → (a + b, (a − b)·w^j) or in time (a, b) → (a + b·w̄^j,
 * a − b·w̄^j), w = exp(−2πi/L), j the position in the half block.
 */
function radix2Stage(x: Float64Array, n: number, nb: number, L: number, inverse: boolean): void {
  for (let b = 0; b < nb; b++) {
    for (let s = 0; s < n; s += L) {
      for (let j = 0; j < L / 2; j++) {
        const [i0, i1] = [2 * ((s + j) * nb + b), 2 * ((s + j + L / 2) * nb + b)];
        const [c, sn] = [Math.cos((2 * Math.PI * j) / L), -Math.sin((2 * Math.PI * j) / L)];
        const [ar, ai, br, bi] = [x[i0], x[i0 + 1], x[i1], x[i1 + 1]];
        if (!inverse) {
          const [dr, di] = [ar - br, ai - bi];
          [x[i0], x[i0 + 1]] = [ar + br, ai + bi];
          [x[i1], x[i1 + 1]] = [dr * c - di * sn, dr * sn + di * c];
        } else {
          const [tr, ti] = [br * c + bi * sn, bi * c - br * sn];
          [x[i0], x[i0 + 1]] = [ar + tr, ai + ti];
          [x[i1], x[i1 + 1]] = [ar - tr, ai - ti];
        }
      }
    }
  }
}

// f32 transforms: each of the log2(n) stages adds about one rounding (ε = 6e-8) of the values'
// scale, so the error relative to max |X| stays near ε·log2(n) ≈ 6e-7 at n = 1024; 2e-6 leaves
// room for that and fails on any misplaced bin or twiddle (errors of order 1).
const TOL = 2e-6;

describe('fft (batched, one transform per invocation) against a float64 DFT', () => {
  // 1 to 1024: log2(n) = 3·a + 2·b + c for every a ≤ 3 with b ≤ 2, and the lone radix-2 stage (n = 2, 16).
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

  // `partial`: the caller runs the whole-length radix-8 stage (block lengths n, n/2, n/4). Here the
  // test runs it in float64 (before the forward, after the inverse), and the composition must be
  // the whole transform.
  for (const n of [8, 16, 128, 1024]) {
    it(`n = ${n}, partial: the forward without its first stage and the inverse without its last compose with those stages to the whole transforms`, async () => {
      const ctx = await gpu();
      const count = 70;
      const nb = fftStride(count);
      const x = Float64Array.from(rand(2 * n * nb));
      const staged = Float64Array.from(x);
      for (const L of [n, n / 2, n / 4]) radix2Stage(staged, n, nb, L, false);
      const data = ctx.upload(Float32Array.from(staged), [n, nb, 2], 'f32', 'fft data');
      await ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n, nb: count, stride: nb, inverse: false, partial: true }));
      const spectrum = await ctx.read(data);
      let err = 0;
      let scale = 0;
      for (const b of [0, 37, count - 1]) {
        const want = dft(x, n, nb, b, -1);
        for (let k = 0; k < n; k++) {
          const at = 2 * (bitReverse(k, n) * nb + b);
          err = Math.max(err, Math.abs(spectrum[at] - want[2 * k]), Math.abs(spectrum[at + 1] - want[2 * k + 1]));
          scale = Math.max(scale, Math.abs(want[2 * k]), Math.abs(want[2 * k + 1]));
        }
      }
      expect(err / scale, 'forward').to.be.at.most(TOL);

      // The inverse of the spectrum the whole forward made (bit-reversed): n·x back.
      await ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n, nb: count, stride: nb, inverse: true, partial: true }));
      const back = Float64Array.from(await ctx.read(data));
      for (const L of [n / 4, n / 2, n]) radix2Stage(back, n, nb, L, true);
      let err2 = 0;
      for (let i = 0; i < x.length; i++) if (Math.floor(i / 2) % nb < count) err2 = Math.max(err2, Math.abs(back[i] / n - x[i]));
      expect(err2, 'round trip').to.be.at.most(TOL);
      data.destroy();
    });
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
    await expectThrows(
      () => ctx.encode(undefined, (enc) => fftBatched(ctx, enc, { data, n: 4, nb: 2, inverse: true, partial: true })),
      /fft: a partial transform needs n ≥ 8 \(a whole radix-8 stage\), got n = 4/,
    );
    data.destroy();
  });
});
