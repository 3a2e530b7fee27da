// LoRMA: every variant (pi, plus, none) and order (pre, post) on the GPU against the float64
// reference (which builds the dense M), the reference's gradients against central finite
// differences, the inits (M = I), the no-d×d-buffer guarantee of π, the rank of ΔW, the path
// setting, the lorma-plus and lorma-pi descriptors' layers, bad input.

import { expect } from 'chai';
import {
  LORMA_FFT_MIN_D,
  lormaBackward,
  lormaCorrelationsShape,
  lormaForward,
  lormaInit,
  lormaMerge,
  lormaPi,
  lormaPiPath,
  lormaPlus,
  lormaTuning,
  setLormaTuning,
  type LormaBackwardArgs,
  type LormaForwardArgs,
  type LormaOrder,
  type LormaPiChoice,
  type LormaVariant,
} from '../src/methods/lorma/index.js';
import { Context } from '../src/runtime.js';
import * as ref from '../src/methods/lorma/reference.js';
import { dot, finiteDifference, matmul as refMatmul, relativeError, toF64 } from '../src/reference/linalg.js';
import { numericalRank } from '../src/rank.js';
import type { AllocationRecord } from '../src/runtime.js';
import { expectClose, expectThrows, gpu, rand, uploads } from './helpers.js';

const VARIANTS: LormaVariant[] = ['pi', 'plus', 'none'];
const ORDERS: LormaOrder[] = ['pre', 'post'];

// [T, n, m, r]: T = 1, d no multiple of any tile (64), m ≠ n both ways, d past one tile.
const SHAPES: [number, number, number, number][] = [
  [1, 37, 29, 1],
  [7, 29, 37, 5],
  [33, 21, 40, 3],
  [70, 45, 67, 8],
  [5, 23, 41, 20], // r > 16: the forward's generation reads B rows from memory, not registers
];

async function setup(T: number, n: number, m: number, r: number, order: LormaOrder) {
  const ctx = await gpu();
  const d = order === 'pre' ? m : n;
  const host = { x: rand(T * n), w0: rand(m * n, 0.5), a: rand(r * d, 0.5), b: rand(d * r, 0.5), g: rand(T * m) };
  const dev = {
    x: ctx.upload(host.x, [T, n], 'f32', 'x'),
    w0: ctx.upload(host.w0, [m, n], 'f32', 'w0'),
    a: ctx.upload(host.a, [r, d], 'f32', 'a'),
    b: ctx.upload(host.b, [d, r], 'f32', 'b'),
    g: ctx.upload(host.g, [T, m], 'f32', 'g'),
  };
  const free = () => Object.values(dev).forEach((t) => t.destroy());
  return { ctx, host, dev, d, free };
}

describe('lorma kernels against the float64 reference', () => {
  for (const variant of VARIANTS) {
    for (const order of ORDERS) {
      for (const [T, n, m, r] of SHAPES) {
        it(`${variant} ${order}: forward, backward, merge at T=${T} n=${n} m=${m} r=${r}`, async () => {
          const { ctx, host, dev, free } = await setup(T, n, m, r, order);
          const scale = 1.5;
          const refArgs = { T, n, m, r, scale, variant, order, x: host.x, w0: host.w0, a: host.a, b: host.b };
          const p = { w0: dev.w0, a: dev.a, b: dev.b, scale, variant, order };
          const fwd = await lormaForward(ctx, { ...p, x: dev.x });
          expectClose(await ctx.read(fwd.y), ref.lormaForward(refArgs), 'y');
          if (variant === 'pi' && order === 'pre') expectClose(await ctx.read(fwd.u!), refMatmul(host.x, host.w0, T, n, m, false, true), 'u');
          else expect(fwd.u).to.equal(undefined);
          expect(fwd.z === undefined).to.equal(variant === 'pi');

          const expected = ref.lormaBackward({ ...refArgs, g: host.g });
          for (const reuse of [true, false]) {
            const grads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u: reuse ? fwd.u : undefined, z: reuse ? fwd.z : undefined });
            const how = reuse ? 'forward state given' : 'recomputed';
            expectClose(await ctx.read(grads.dx), expected.dx, `dx (${how})`);
            expectClose(await ctx.read(grads.da), expected.da, `da (${how})`);
            expectClose(await ctx.read(grads.db), expected.db, `db (${how})`);
            Object.values(grads).forEach((t) => t.destroy());
          }

          const merged = await lormaMerge(ctx, p);
          expectClose(await ctx.read(merged), ref.lormaMerge(refArgs), 'merged');
          const delta = await lormaMerge(ctx, p, { deltaOnly: true });
          expectClose(await ctx.read(delta), ref.lormaDelta(refArgs), 'delta', 5e-5);
          for (const t of [fwd.y, fwd.u, fwd.z, merged, delta]) t?.destroy();
          free();
        });
      }
    }
  }

  for (const order of ORDERS) {
    it(`pi ${order} at d = 520: nine 64-column strips of dM' accumulate into dA and dB`, async () => {
      const [T, d, other, r] = [3, 520, 5, 2];
      const [n, m] = order === 'pre' ? [other, d] : [d, other];
      const { ctx, host, dev, free } = await setup(T, n, m, r, order);
      const refArgs = { T, n, m, r, scale: 1.5, variant: 'pi' as const, order, x: host.x, w0: host.w0, a: host.a, b: host.b };
      const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 1.5, variant: 'pi' as const, order };
      const fwd = await lormaForward(ctx, { ...p, x: dev.x });
      expectClose(await ctx.read(fwd.y), ref.lormaForward(refArgs), 'y');
      const grads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u: fwd.u });
      const expected = ref.lormaBackward({ ...refArgs, g: host.g });
      expectClose(await ctx.read(grads.dx), expected.dx, 'dx');
      expectClose(await ctx.read(grads.da), expected.da, 'da');
      expectClose(await ctx.read(grads.db), expected.db, 'db');
      expectClose(await ctx.read(await lormaMerge(ctx, p)), ref.lormaMerge(refArgs), 'merged');
      free();
    });
  }

  it("merged weights reproduce the forward: X W'ᵀ = Y, for every variant and order", async () => {
    const [T, n, m, r] = [9, 23, 31, 4];
    for (const variant of VARIANTS) {
      for (const order of ORDERS) {
        const { ctx, host, dev, free } = await setup(T, n, m, r, order);
        const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant, order };
        const { y } = await lormaForward(ctx, { ...p, x: dev.x });
        const merged = await ctx.read(await lormaMerge(ctx, p));
        expectClose(refMatmul(host.x, merged, T, n, m, false, true), await ctx.read(y), `${variant} ${order}: X W'ᵀ vs forward`);
        free();
      }
    }
  });

  it("encodes into the caller's command encoder and writes into the caller's tensors", async () => {
    const { ctx, host, dev, free } = await setup(5, 12, 10, 3, 'pre');
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'pi' as const };
    const y = ctx.tensor([5, 10]);
    const u = ctx.tensor([5, 10]);
    const dx = ctx.tensor([5, 12]);
    const enc = ctx.device.createCommandEncoder();
    const out = await lormaForward(ctx, { ...p, x: dev.x, y, u }, { encoder: enc });
    const grads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u, dx }, { encoder: enc });
    expect(out.y).to.equal(y);
    expect(grads.dx).to.equal(dx);
    ctx.submit(enc);
    const refArgs = {
      T: 5,
      n: 12,
      m: 10,
      r: 3,
      scale: 2,
      variant: 'pi' as const,
      order: 'pre' as const,
      x: host.x,
      w0: host.w0,
      a: host.a,
      b: host.b,
    };
    expectClose(await ctx.read(y), ref.lormaForward(refArgs), 'y');
    expectClose(await ctx.read(dx), ref.lormaBackward({ ...refArgs, g: host.g }).dx, 'dx');
    free();
  });
});

/** Runs `fn` with the shared context's LoRMA_π path set, restoring its setting afterwards. */
async function withPiPath<T>(path: LormaPiChoice, fn: () => Promise<T>): Promise<T> {
  const ctx = await gpu();
  const saved = lormaTuning(ctx);
  setLormaTuning(ctx, { pi: path });
  try {
    return await fn();
  } finally {
    setLormaTuning(ctx, saved);
  }
}

// The FFT path (power-of-two d): f32 FFTs of length d round once per radix-2 stage, so the error of
// a correlation grows like ε·log2(d) of the output's scale (ε = 6e-8); the pointwise products and
// the sums over r and T add a few roundings more. Measured: at most 6e-7 of max |expected| for
// d ≤ 256. The shared F32_TOL, 2e-5 of max |expected|, keeps 30× margin and fails on any misplaced
// bin, twiddle or pair (errors of order 1).
describe('lorma π by FFT (power-of-two d) against the float64 reference', () => {
  for (const order of ORDERS) {
    for (const d of [8, 64, 256]) {
      for (const T of [1, 19]) {
        for (const r of [1, 3, 8]) {
          it(`${order} d=${d} T=${T} r=${r}: forward, backward (dX, dA, dB; with and without the forward's u, c) and merge`, () =>
            withPiPath('fft', async () => {
              const other = order === 'pre' ? 13 : 11;
              const [n, m] = order === 'pre' ? [other, d] : [d, other];
              const { ctx, host, dev, free } = await setup(T, n, m, r, order);
              expect(lormaPiPath(ctx, d)).to.equal('fft');
              const scale = 1.5;
              const refArgs = { T, n, m, r, scale, variant: 'pi' as const, order, x: host.x, w0: host.w0, a: host.a, b: host.b };
              const p = { w0: dev.w0, a: dev.a, b: dev.b, scale, variant: 'pi' as const, order };
              const c = ctx.tensor(lormaCorrelationsShape(T, d, r), 'f32', 'c');
              const fwd = await lormaForward(ctx, { ...p, x: dev.x, c });
              expect(fwd.c).to.equal(c);
              expectClose(await ctx.read(fwd.y), ref.lormaForward(refArgs), 'y');
              const expected = ref.lormaBackward({ ...refArgs, g: host.g });
              for (const reuse of [true, false]) {
                const grads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u: reuse ? fwd.u : undefined, c: reuse ? c : undefined });
                const how = reuse ? 'forward state given' : 'recomputed';
                expectClose(await ctx.read(grads.dx), expected.dx, `dx (${how})`);
                expectClose(await ctx.read(grads.da), expected.da, `da (${how})`);
                expectClose(await ctx.read(grads.db), expected.db, `db (${how})`);
                Object.values(grads).forEach((t) => t.destroy());
              }
              const merged = await lormaMerge(ctx, p);
              expectClose(await ctx.read(merged), ref.lormaMerge(refArgs), 'merged');
              for (const t of [fwd.y, fwd.u, c, merged]) t?.destroy();
              free();
            }));
        }
      }
    }
  }

  it('the FFT and tile paths agree at d = 128 (pre, T = 70, r = 5), and a second call reuses the spectra scratch', async () => {
    const [T, n, m, r] = [70, 24, 128, 5];
    const { ctx, dev, free } = await setup(T, n, m, r, 'pre');
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'pi' as const };
    const run = async () => {
      const { y, u } = await lormaForward(ctx, { ...p, x: dev.x });
      const g = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u });
      const out = { y: await ctx.read(y), dx: await ctx.read(g.dx), da: await ctx.read(g.da), db: await ctx.read(g.db) };
      for (const t of [y, u, g.dx, g.da, g.db]) t?.destroy();
      return out;
    };
    const tiles = await withPiPath('tiles', async () => {
      expect(lormaPiPath(ctx, m)).to.equal('tiles');
      return run();
    });
    for (let k = 0; k < 2; k++) {
      const fft = await withPiPath('fft', run);
      for (const key of ['y', 'dx', 'da', 'db'] as const) expectClose(fft[key], tiles[key], `${key} (fft vs tiles, call ${k + 1})`);
    }
    free();
  });

  it("setLormaTuning: 'auto' takes the FFT for a power-of-two d from LORMA_FFT_MIN_D, the tiles otherwise; 'fft' falls back to tiles for other d", async () => {
    const ctx = await gpu();
    await withPiPath('auto', async () => {
      expect(lormaPiPath(ctx, LORMA_FFT_MIN_D)).to.equal('fft');
      expect(lormaPiPath(ctx, 1024)).to.equal('fft');
      expect(lormaPiPath(ctx, LORMA_FFT_MIN_D / 2)).to.equal('tiles');
      expect(lormaPiPath(ctx, 96)).to.equal('tiles');
      // A call's (or layer's) piPath wins over the context's setting.
      expect(lormaPiPath(ctx, 1024, 'tiles')).to.equal('tiles');
      expect(lormaPiPath(ctx, 8, 'fft')).to.equal('fft');
    });
    await withPiPath('fft', async () => {
      expect(lormaPiPath(ctx, 8)).to.equal('fft');
      expect(lormaPiPath(ctx, 37)).to.equal('tiles');
      expect(lormaPiPath(ctx, 1)).to.equal('tiles');
      expect(lormaPiPath(ctx, 256, 'auto')).to.equal('fft');
      expect(lormaPiPath(ctx, 64, 'auto')).to.equal('tiles');
    });
    await withPiPath('tiles', async () => expect(lormaPiPath(ctx, 1024)).to.equal('tiles'));
    // The forward's correlations c exist on the FFT path only, in its layout.
    const { dev, free } = await setup(3, 5, 64, 3, 'pre');
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'pi' as const, x: dev.x };
    await withPiPath('tiles', () =>
      expectThrows(
        () => lormaForward(ctx, { ...p, c: ctx.tensor([64, 6, 2]) }),
        /lorma\.forward: 'c' \(the forward's spectra of In\) belongs to LoRMA_π's FFT path .* \(pi, d = 64, 'tiles'\) takes none/,
      ),
    );
    // The call's piPath decides, not the context's.
    await withPiPath('fft', () =>
      expectThrows(
        () => lormaForward(ctx, { ...p, piPath: 'tiles', c: ctx.tensor([64, 6, 2]) }),
        /'c' \(the forward's spectra of In\) belongs to LoRMA_π's FFT path .* \(pi, d = 64, 'tiles'\) takes none/,
      ),
    );
    await withPiPath('fft', async () => {
      await expectThrows(
        () => lormaBackward(ctx, { ...p, g: dev.g, c: ctx.tensor([64, 3, 2]) }),
        /lorma\.backward: 'c' has shape \[64, 3, 2\], expected \[d, fftStride\(⌈T\/2⌉\), 2\] = \[64, 8, 2\]/,
      );
      const plus = { ...p, variant: 'plus', c: ctx.tensor([64, 6, 2]) };
      await expectThrows(
        () => lormaForward(ctx, plus as unknown as LormaForwardArgs),
        /'c' \(the forward's spectra of In\) belongs to LoRMA_π's FFT path/,
      );
      const plusPath = { ...p, variant: 'plus', piPath: 'fft' };
      await expectThrows(
        () => lormaForward(ctx, plusPath as unknown as LormaForwardArgs),
        /lorma\.forward: 'piPath' belongs to the pi variant; plus takes none/,
      );
      await expectThrows(
        () => lormaForward(ctx, { ...p, piPath: 'dense' as 'fft' }),
        /lorma\.forward: 'piPath' is "dense", expected 'auto', 'tiles' or 'fft'/,
      );
    });
    free();
    // The setting belongs to one context: a second context on the same device starts at 'auto'.
    await withPiPath('tiles', async () => {
      const other = await Context.create({ device: ctx.device });
      try {
        expect(lormaTuning(other).pi).to.equal('auto');
        setLormaTuning(other, { pi: 'fft' });
        expect(lormaTuning(other).pi).to.equal('fft');
        expect(lormaTuning(ctx).pi).to.equal('tiles');
      } finally {
        other.destroy();
      }
    });
    expect(() => setLormaTuning(ctx, { pi: 'dense' as 'fft' })).to.throw(/setLormaTuning: 'pi' is "dense", expected 'auto', 'tiles' or 'fft'/);
    expect(() => setLormaTuning(ctx, { lormaPi: 'fft' } as never)).to.throw(/setLormaTuning: unknown option 'lormaPi' \(this call takes pi\)/);
  });
});

describe('lorma reference gradients against central finite differences', () => {
  for (const variant of VARIANTS) {
    for (const order of ORDERS) {
      it(`${variant} ${order}: dX, dA, dB of sum(Y ⊙ G)`, () => {
        const [T, n, m, r] = [3, 5, 4, 2];
        const d = order === 'pre' ? m : n;
        const x = toF64(rand(T * n)),
          w0 = toF64(rand(m * n)),
          a = toF64(rand(r * d)),
          b = toF64(rand(d * r)),
          g = toF64(rand(T * m));
        const args = { T, n, m, r, scale: 1.5, variant, order, x, w0, a, b };
        const loss = () => dot(ref.lormaForward(args), g);
        const grads = ref.lormaBackward({ ...args, g });
        for (const [name, param, grad] of [
          ['x', x, grads.dx],
          ['a', a, grads.da],
          ['b', b, grads.db],
        ] as const) {
          const fd = finiteDifference(loss, param);
          expect(relativeError(grad, fd), `d${name}`).to.be.below(1e-7);
        }
      });
    }
  }

  it('the π reference follows the spec formula Y[t, i] = s·Σ_q B[i, q]·Σ_j A[q, j]·U[t, (i + j) mod d]', () => {
    const [T, n, m, r, s] = [2, 5, 6, 2, 1.5];
    const x = rand(T * n),
      w0 = rand(m * n),
      a = rand(r * m),
      b = rand(m * r);
    const U = refMatmul(x, w0, T, n, m, false, true);
    const want = new Float64Array(T * m);
    for (let t = 0; t < T; t++)
      for (let i = 0; i < m; i++)
        for (let q = 0; q < r; q++) for (let j = 0; j < m; j++) want[t * m + i] += s * b[i * r + q] * a[q * m + j] * U[t * m + ((i + j) % m)];
    const got = ref.lormaForward({ T, n, m, r, scale: s, variant: 'pi', order: 'pre', x, w0, a, b });
    expect(relativeError(got, want)).to.be.below(1e-12);
  });
});

describe('lorma inits', () => {
  for (const order of ORDERS) {
    for (const variant of ['pi', 'plus'] as const) {
      it(`${variant} ${order}: the layer equals the base layer at init (M = I)`, async () => {
        const ctx = await gpu();
        const [T, n, m, r, scale] = [6, 19, 27, 4, 2];
        const d = order === 'pre' ? m : n;
        const init = lormaInit({ d, r, scale, variant, seed: 7 });
        const x = rand(T * n),
          w0 = rand(m * n),
          g = rand(T * m);
        const dev = {
          x: ctx.upload(x, [T, n]),
          w0: ctx.upload(w0, [m, n]),
          a: ctx.upload(init.a, [r, d]),
          b: ctx.upload(init.b, [d, r]),
          g: ctx.upload(g, [T, m]),
        };
        const p = { w0: dev.w0, a: dev.a, b: dev.b, scale, variant, order };
        const { y } = await lormaForward(ctx, { ...p, x: dev.x });
        expectClose(await ctx.read(y), refMatmul(x, w0, T, n, m, false, true), 'y = X W0ᵀ');
        const { dx } = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g });
        expectClose(await ctx.read(dx), refMatmul(g, w0, T, m, n), 'dX = G W0');
        expectClose(await ctx.read(await lormaMerge(ctx, p)), w0, 'merged = W0');
        const M = ref.lormaM({ d, r, scale, variant, a: init.a, b: init.b });
        for (let i = 0; i < d; i++) for (let c = 0; c < d; c++) expect(M[i * d + c]).to.be.closeTo(i === c ? 1 : 0, 1e-6);
        Object.values(dev).forEach((t) => t.destroy());
      });
    }
  }

  it('follow the spec: pi B ~ U(−1/√r, 1/√r)/√s with B[:, 0] = 1/√s, A = e₀e₀ᵀ/√s; plus B = 0, A ~ U(−1/√d, 1/√d)', () => {
    const [d, r, s] = [50, 6, 4];
    const pi = lormaInit({ d, r, scale: s, variant: 'pi', seed: 1 });
    for (let i = 0; i < d; i++) expect(pi.b[i * r]).to.be.closeTo(0.5, 1e-7);
    const rest = Array.from(pi.b).filter((_, k) => k % r !== 0);
    expect(Math.max(...rest.map(Math.abs))).to.be.at.most(1 / Math.sqrt(r) / 2);
    expect(Math.max(...rest.map(Math.abs))).to.be.above(0.8 / Math.sqrt(r) / 2);
    expect(Array.from(pi.a).filter((v) => v !== 0)).to.deep.equal([0.5]);
    expect(pi.a[0]).to.equal(0.5);
    const plus = lormaInit({ d, r, scale: s, variant: 'plus', seed: 1 });
    expect(plus.b.every((v) => v === 0)).to.equal(true);
    expect(Math.max(...Array.from(plus.a).map(Math.abs))).to.be.at.most(1 / Math.sqrt(d));
    expect(Math.max(...Array.from(plus.a).map(Math.abs))).to.be.above(0.9 / Math.sqrt(d));
    expect(lormaInit({ d, r, scale: s, variant: 'pi', seed: 1 }).b).to.deep.equal(pi.b);
  });
});

describe('lorma π never allocates a d×d buffer', () => {
  // tiles: d = 96 > T and n-or-m, so W0 [m, n], U, the dM' strip [d, 48] and W' all stay below d·d.
  // fft: d = 128; the spectra W [d, ⌈r/2⌉·T + 8] complex (14 336 floats) and F In [d, T] complex too.
  for (const [path, d] of [
    ['tiles', 96],
    ['fft', 128],
  ] as const) {
    for (const order of ORDERS) {
      it(`${order}, ${path}: forward, backward and merge allocate nothing of d·d floats or more`, () =>
        withPiPath(path, async () => {
          const ctx = await gpu();
          expect(lormaPiPath(ctx, d)).to.equal(path);
          const [T, other, r] = [24, 40, 4];
          const [n, m] = order === 'pre' ? [other, d] : [d, other];
          const host = { x: rand(T * n), w0: rand(m * n, 0.5), a: rand(r * d, 0.5), b: rand(d * r, 0.5), g: rand(T * m) };
          const dev = {
            x: ctx.upload(host.x, [T, n]),
            w0: ctx.upload(host.w0, [m, n]),
            a: ctx.upload(host.a, [r, d]),
            b: ctx.upload(host.b, [d, r]),
            g: ctx.upload(host.g, [T, m]),
          };
          // Scratch left by earlier tests would hide allocations: start without any.
          ctx.releaseScratch();
          const seen: AllocationRecord[] = [];
          const stop = ctx.onAllocate((rec) => seen.push(rec));
          const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'pi' as const, order };
          const refArgs = { T, n, m, r, scale: 2, variant: 'pi' as const, order, x: host.x, w0: host.w0, a: host.a, b: host.b };
          try {
            const fwd = await lormaForward(ctx, { ...p, x: dev.x });
            const grads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u: fwd.u });
            const merged = await lormaMerge(ctx, p);
            const delta = await lormaMerge(ctx, p, { deltaOnly: true });
            await ctx.sync();
            expectClose(await ctx.read(fwd.y), ref.lormaForward(refArgs), 'y');
            expectClose(await ctx.read(grads.da), ref.lormaBackward({ ...refArgs, g: host.g }).da, 'da');
            expectClose(await ctx.read(merged), ref.lormaMerge(refArgs), 'merged');
            expectClose(await ctx.read(delta), ref.lormaDelta(refArgs), 'delta', 5e-5);
          } finally {
            stop();
          }
          expect(seen.length, 'the calls allocate their outputs and scratch').to.be.above(3);
          const big = seen.filter((rec) => rec.bytes >= d * d * 4);
          expect(big, `buffers of d·d = ${d * d} floats or more: ${big.map((b) => `${b.label} [${b.shape?.join(', ')}]`).join(', ')}`).to.deep.equal(
            [],
          );
          if (path === 'fft')
            expect(
              seen.map((rec) => rec.label),
              'the FFT path ran',
            ).to.include('scratch lorma.fft.w');
          Object.values(dev).forEach((t) => t.destroy());
        }));
    }
  }
});

describe("lorma π's FFT step stays within twice the base layer's memory", () => {
  // The base layer's step holds X, W0, Y, G and dX (4·T·d + d² floats at n = m = d). π adds U, dU,
  // the forward's kept spectra of U (about T·d) and one token chunk of the spectra W (at most T·d):
  // about 1.7× here. Keeping all of W and the correlations C (T·r·d floats each, as before) would
  // give 3.3×, the 54 MiB against 12 of the benchmark shape.
  it('pre, d = 256, T = 128, r = 8: peak live bytes of a forward and backward ≤ 2× the base layer, outputs exact', async () => {
    const ctx = await gpu();
    const [T, d, r] = [128, 256, 8];
    expect(lormaPiPath(ctx, d)).to.equal('fft');
    ctx.releaseScratch();
    const host = { x: rand(T * d), w0: rand(d * d, 0.5), a: rand(r * d, 0.5), b: rand(d * r, 0.5), g: rand(T * d) };
    const before = ctx.allocations.liveBytes;
    const io = {
      x: ctx.upload(host.x, [T, d]),
      w0: ctx.upload(host.w0, [d, d]),
      y: ctx.tensor([T, d]),
      g: ctx.upload(host.g, [T, d]),
      dx: ctx.tensor([T, d]),
    };
    const baseBytes = ctx.allocations.liveBytes - before;
    expect(baseBytes).to.equal(4 * (4 * T * d + d * d));
    const a = ctx.upload(host.a, [r, d]);
    const b = ctx.upload(host.b, [d, r]);
    const c = ctx.tensor(lormaCorrelationsShape(T, d, r));
    ctx.resetPeak();
    const p = { w0: io.w0, a, b, scale: 2, variant: 'pi' as const, order: 'pre' as const };
    try {
      const fwd = await lormaForward(ctx, { ...p, x: io.x, y: io.y, c });
      const grads = await lormaBackward(ctx, { ...p, x: io.x, g: io.g, u: fwd.u, c, dx: io.dx });
      await ctx.sync();
      const peak = ctx.allocations.peakBytes - before;
      expect(peak, `peak ${peak} bytes against the base layer's ${baseBytes}`).to.be.at.most(2 * baseBytes);
      const refArgs = { T, n: d, m: d, r, scale: 2, variant: 'pi' as const, order: 'pre' as const, x: host.x, w0: host.w0, a: host.a, b: host.b };
      const want = ref.lormaBackward({ ...refArgs, g: host.g });
      expectClose(await ctx.read(io.y), ref.lormaForward(refArgs), 'y');
      expectClose(await ctx.read(grads.dx), want.dx, 'dx');
      expectClose(await ctx.read(grads.da), want.da, 'da');
      expectClose(await ctx.read(grads.db), want.db, 'db');
      for (const t of [fwd.u, grads.da, grads.db]) t?.destroy();
    } finally {
      for (const t of [...Object.values(io), a, b, c]) t.destroy();
    }
  });
});

describe("lorma rank of ΔW (the paper's Table 15)", () => {
  it("π: near full rank for random A, B; plus: at most r; none: W' itself at most r", async () => {
    const ctx = await gpu();
    const [d, r] = [40, 4];
    const w0h = rand(d * d);
    const w0 = ctx.upload(w0h, [d, d]);
    const a = ctx.upload(rand(r * d, 0.5), [r, d]);
    const b = ctx.upload(rand(d * r, 0.5), [d, r]);
    const rank = async (variant: LormaVariant, deltaOnly: boolean) => {
      const t = await lormaMerge(ctx, { w0, a, b, scale: 2, variant }, { deltaOnly });
      const v = await ctx.read(t);
      t.destroy();
      return numericalRank(v, d, d, 1e-4);
    };
    const base = numericalRank(w0h, d, d, 1e-4);
    expect(base, 'W0 is full rank').to.equal(d);
    expect(await rank('pi', true), 'rank of ΔW, π').to.be.at.least(d - 2);
    expect(await rank('plus', true), 'rank of ΔW, plus').to.equal(r);
    expect(await rank('none', false), "rank of W', naive").to.equal(r);
    for (const t of [w0, a, b]) t.destroy();
  });
});

describe('lorma bad input', () => {
  it('rejects a d that does not match W0, naming the order', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2, 'pre');
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'pi' as const };
    await expectThrows(
      () => lormaForward(ctx, { ...p, a: ctx.tensor([2, 8]), b: ctx.tensor([8, 2]), x: dev.x }),
      /lorma\.forward: 'a' has shape \[2, 8\], expected \[r, d\] = \[2, 6\] \(d = m = 6 for pre-multiplication\)/,
    );
    await expectThrows(
      () => lormaForward(ctx, { ...p, order: 'post', x: dev.x }),
      /'a' has shape \[2, 6\], expected \[r, d\] = \[2, 8\] \(d = n = 8 for post-multiplication\)/,
    );
    await expectThrows(
      () => lormaMerge(ctx, { ...p, b: ctx.tensor([5, 2]) }),
      /lorma\.merge: 'b' has shape \[5, 2\], expected \[d, r\] = \[6, 2\] \(d = m = 6/,
    );
    await expectThrows(() => lormaForward(ctx, { ...p, b: ctx.tensor([6, 3]), x: dev.x }), /'b' has shape \[6, 3\], expected \[d, r\] = \[6, 2\]/);
    free();
  });

  it('rejects a rank above d', async () => {
    const ctx = await gpu();
    await expectThrows(
      () => lormaMerge(ctx, { w0: ctx.tensor([3, 8]), a: ctx.tensor([4, 3]), b: ctx.tensor([3, 4]), scale: 1, variant: 'plus' }),
      /lorma\.merge: rank r = 4 is above d = 3 \(d = m = 3 for pre-multiplication\)/,
    );
    expect(() => lormaInit({ d: 3, r: 4, scale: 1, variant: 'pi' })).to.throw(/lorma\.init: rank r = 4 is above d = 3/);
  });

  it('rejects bad shapes of x, g and outputs, unknown variants and orders, and bad scales', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2, 'pre');
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'plus' as const };
    await expectThrows(
      () => lormaForward(ctx, { ...p, x: ctx.tensor([4, 9]) }),
      /lorma\.forward: 'x' has shape \[4, 9\], expected \[T, n\] = \[4, 8\]/,
    );
    await expectThrows(
      () => lormaBackward(ctx, { ...p, x: dev.x, g: ctx.tensor([4, 5]) }),
      /lorma\.backward: 'g' has shape \[4, 5\], expected \[T, m\] = \[4, 6\]/,
    );
    await expectThrows(() => lormaForward(ctx, { ...p, x: dev.x, y: ctx.tensor([4, 5]) }), /'y' has shape \[4, 5\], expected \[T, m\] = \[4, 6\]/);
    await expectThrows(
      () => lormaForward(ctx, { ...p, variant: 'pi', x: dev.x, u: ctx.tensor([4, 8]) }),
      /'u' has shape \[4, 8\], expected \[T, m\] = \[4, 6\]/,
    );
    // Mix-ups the types reject, as a JavaScript caller could still make them.
    await expectThrows(
      () => lormaForward(ctx, { ...p, x: dev.x, u: ctx.tensor([4, 6]) } as LormaForwardArgs),
      /'u' \(U = X W0ᵀ\) belongs to pi with pre-multiplication; plus pre takes none/,
    );
    await expectThrows(
      () => lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, da: ctx.tensor([2, 8]) }),
      /'da' has shape \[2, 8\], expected \[r, d\] = \[2, 6\]/,
    );
    await expectThrows(
      () =>
        lormaBackward(ctx, {
          ...p,
          order: 'post',
          a: ctx.tensor([2, 8]),
          b: ctx.tensor([8, 2]),
          x: dev.x,
          g: dev.g,
          u: ctx.tensor([4, 6]),
        } as LormaBackwardArgs),
      /'u' \(U = X W0ᵀ\) belongs to pi with pre-multiplication; plus post takes none/,
    );
    await expectThrows(
      () => lormaBackward(ctx, { ...p, variant: 'pi', x: dev.x, g: dev.g, z: ctx.tensor([4, 2]) } as LormaBackwardArgs),
      /'z' belongs to the plus and none variants/,
    );
    await expectThrows(
      () => lormaMerge(ctx, { ...p, out: ctx.tensor([6, 7]) }),
      /lorma\.merge: 'out' has shape \[6, 7\], expected \[m, n\] = \[6, 8\]/,
    );
    await expectThrows(
      () => lormaForward(ctx, { ...p, variant: 'times' as never, x: dev.x }),
      /'variant' must be one of 'pi', 'plus', 'none', got "times"/,
    );
    // The old name of the field, from a caller not yet moved over.
    const { variant: _, ...old } = p;
    await expectThrows(() => lormaForward(ctx, { ...old, inflation: 'plus', x: dev.x } as never), /lorma\.forward: 'inflation' is now 'variant'/);
    await expectThrows(() => lormaForward(ctx, { ...p, order: 'middle' as never, x: dev.x }), /'order' must be 'pre' or 'post', got "middle"/);
    await expectThrows(() => lormaForward(ctx, { ...p, scale: Infinity, x: dev.x }), /'scale' must be a finite number, got Infinity/);
    await expectThrows(() => lormaForward(ctx, { ...p, a: undefined as never, x: dev.x }), /'a' must be a 2-D Tensor \[r, d\]/);
    await expectThrows(
      () => lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, db: dev.b }),
      /'b' and 'db' are the same buffer|'db' and 'b' are the same buffer/,
    );
    expect(() => lormaInit({ d: 8, r: 2, scale: 0, variant: 'pi' })).to.throw(/needs scale > 0, got 0/);
    expect(() => lormaInit({ d: 8, r: 0, scale: 1, variant: 'plus' })).to.throw(/'r' must be a positive integer, got 0/);
    free();
  });
});

describe('lorma options', () => {
  it('an unknown option throws naming it; adapterOnly, inPlace and unmerge are refused, naming them', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2, 'pre');
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, variant: 'plus' as const };
    await expectThrows(
      () => lormaForward(ctx, { ...p, x: dev.x }, { encoder: undefined, save: true } as never),
      /lorma\.forward: unknown option 'save' \(this call takes encoder, adapterOnly\)/,
    );
    await expectThrows(
      () => lormaBackward(ctx, { ...p, x: dev.x, g: dev.g }, { adapteronly: true } as never),
      /lorma\.backward: unknown option 'adapteronly'/,
    );
    await expectThrows(
      () => lormaMerge(ctx, p, { delta: true } as never),
      /lorma\.merge: unknown option 'delta' \(this call takes encoder, deltaOnly, inPlace, unmerge, safeMerge\)/,
    );
    expect(() => lormaInit({ d: 8, r: 2, scale: 1, variant: 'plus', inflation: 'pi' } as never)).to.throw(/lorma\.init: unknown option 'inflation'/);
    // W' = M·W0 mixes the base product and the adapter: there is no adapter term to return alone.
    for (const variant of VARIANTS) {
      const q = { ...p, variant } as typeof p;
      await expectThrows(
        () => lormaForward(ctx, { ...q, x: dev.x }, { adapterOnly: true }),
        /lorma\.forward: 'adapterOnly' is not supported: LoRMA's W' = M·W0 has no adapter term/,
      );
      await expectThrows(
        () => lormaBackward(ctx, { ...q, x: dev.x, g: dev.g }, { adapterOnly: true }),
        /lorma\.backward: 'adapterOnly' is not supported/,
      );
    }
    await expectThrows(
      () => lormaMerge(ctx, p, { inPlace: true }),
      /lorma\.merge: 'inPlace' is not supported: LoRMA's W' = M·W0 cannot be undone without W0/,
    );
    await expectThrows(() => lormaMerge(ctx, p, { unmerge: true }), /lorma\.merge: 'unmerge' is not supported/);
    // adapterOnly: false is the whole layer, as for every method.
    const { y } = await lormaForward(ctx, { ...p, x: dev.x }, { adapterOnly: false });
    y.destroy();
    free();
  });
});

describe('lorma-plus and lorma-pi descriptors', () => {
  const METHODS = [lormaPlus, lormaPi];

  it('ids, labels, peft_type, config field and tensors as adapter files have them', async () => {
    expect(METHODS.map((m) => [m.id, m.label, m.family, m.peftType, m.docs])).to.deep.equal([
      ['lorma-plus', 'LoRMA₊', 'lorma', 'LORMA', 'docs/lorma.md'],
      ['lorma-pi', 'LoRMA_π', 'lorma', 'LORMA', 'docs/lorma.md'],
    ]);
    for (const m of METHODS) {
      expect(m.tensors.map((t) => [t.name, t.key, t.dtype, t.trainable])).to.deep.equal([
        ['lora_A', 'lora_A.weight', 'f32', true],
        ['lora_B', 'lora_B.weight', 'f32', true],
      ]);
      expect(m.config.map((f) => [f.key, f.option, f.default])).to.deep.equal([['order', 'order', 'pre']]);
      expect(m.config[0].check('post', 'cfg')).to.equal('post');
      expect(() => m.config[0].check('mid', 'cfg')).to.throw(/cfg: 'order' must be 'pre' or 'post', got "mid"/);
      expect(m.rankFor(8, { n: 64, m: 64 })).to.equal(8);
      expect(m.paramCount({ n: 30, m: 20, r: 4 }, {})).to.equal(2 * 20 * 4);
      expect(m.paramCount({ n: 30, m: 20, r: 4 }, { order: 'post' })).to.equal(2 * 30 * 4);
      expect(m.unsupported({ n: 30, m: 20, r: 4 }, {})).to.equal(null);
      expect(m.unsupported({ n: 30, m: 20, r: 24 }, {})).to.match(/rank r = 24 is above d = m = 20 \(pre-multiplication\)/);
      expect(m.unsupported({ n: 30, m: 20, r: 24 }, { order: 'post' })).to.equal(null);
      expect(m.unsupported({ n: 30, m: 20, r: 4 }, { blocks: 4 })).to.match(/unknown option 'blocks'/);
    }
    expect(lormaPlus.unsupported({ n: 30, m: 20, r: 4 }, { piPath: 'fft' })).to.match(/unknown option 'piPath'/);
    expect(lormaPi.unsupported({ n: 30, m: 20, r: 4 }, { piPath: 'dense' })).to.match(/'piPath' must be 'auto', 'tiles' or 'fft', got "dense"/);
    expect(lormaPi.benchVariants).to.deep.equal([{ id: 'lorma-pi-tiles', label: 'LoRMA_π (tiles)', options: { piPath: 'tiles' } }]);
    // The FFT path's FLOPs at d = 1024 are a fraction of the tiles'; 'auto' takes it there.
    const dims = { n: 1024, m: 1024, r: 8 };
    const fft = lormaPi.flops(512, dims, {});
    const tiles = lormaPi.flops(512, dims, { piPath: 'tiles' });
    expect(fft.adapterForward).to.be.below(tiles.adapterForward / 5);
    expect(fft.forward - fft.adapterForward).to.equal(2 * 1024 * 1024 * 512);
    expect(lormaPlus.flops(512, dims, {}).adapterForward).to.equal(4 * 1024 * 8 * 512);
    // runOptions settles 'auto' as this context runs it (the bench counts those kernels' FLOPs):
    // the FFT at d = 1024 on lavapipe (a CPU), the tiles at d = 96; an explicit choice stays.
    const ctx = await gpu();
    expect(lormaPi.runOptions!(ctx, dims, {})).to.deep.equal({ piPath: lormaPiPath(ctx, 1024) });
    expect(lormaPi.runOptions!(ctx, dims, {}).piPath).to.equal(ctx.adapterInfo.isCpu ? 'fft' : 'tiles');
    expect(lormaPi.runOptions!(ctx, { n: 96, m: 96, r: 8 }, {}).piPath).to.equal('tiles');
    expect(lormaPi.runOptions!(ctx, dims, { piPath: 'tiles', order: 'post' })).to.deep.equal({ piPath: 'tiles', order: 'post' });
    expect(lormaPlus.runOptions!(ctx, dims, { order: 'post' })).to.deep.equal({ order: 'post' });
    // The vectors format's 'inflation' routes pi cases to lorma-pi, plus and none to lorma-plus.
    for (const [inflation, id] of [
      ['pi', 'lorma-pi'],
      ['plus', 'lorma-plus'],
      ['none', 'lorma-plus'],
    ]) {
      expect(METHODS.filter((m) => m.vectors?.method === 'lorma' && m.vectors.accepts!({ inflation })).map((m) => m.id)).to.deep.equal([id]);
    }
  });

  // n = 29, m = 37 (pre: d = 37) and a pi layer at d = 64 on the FFT path, which keeps the
  // correlations for its backward.
  const CASES = [
    { method: lormaPlus, order: 'pre' as const, n: 29, m: 37, options: {} },
    { method: lormaPlus, order: 'post' as const, n: 29, m: 37, options: { order: 'post' } },
    { method: lormaPi, order: 'pre' as const, n: 29, m: 37, options: {} },
    { method: lormaPi, order: 'post' as const, n: 29, m: 37, options: { order: 'post' } },
    { method: lormaPi, order: 'pre' as const, n: 29, m: 64, options: { piPath: 'fft' } },
  ];
  for (const { method, order, n, m, options } of CASES) {
    it(`${method.id} ${JSON.stringify(options)}: the layer's forward and backward are the family's; forward = X merge()ᵀ; tensors() round-trip through spec.from`, async () => {
      const [T, r, alpha] = [7, 5, 7.5];
      const scale = alpha / r;
      const variant = method === lormaPi ? ('pi' as const) : ('plus' as const);
      const d = order === 'pre' ? m : n;
      const { ctx, host, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], g: [[T, m]] });
      const layer = method.createLayer(ctx, { w0: dev.w0, r, alpha, options, seed: 11, name: 'h1' });
      expect(layer.dims).to.deep.equal({ n, m, r });
      expect(layer.trainables.map((t) => [t.name, t.param.shape])).to.deep.equal([
        ['h1.lora_A', [r, d]],
        ['h1.lora_B', [d, r]],
      ]);
      // A fresh layer is the seeded init.
      const init = lormaInit({ d, r, scale, variant, seed: 11 });
      const fresh = await layer.tensors();
      expect(Array.from(fresh.lora_A.data)).to.deep.equal(Array.from(init.a));
      expect(Array.from(fresh.lora_B.data)).to.deep.equal(Array.from(init.b));
      // Move off the init (plus starts with B = 0), then compare with the family functions.
      const a = rand(r * d, 0.5);
      const b = rand(d * r, 0.5);
      ctx.write(layer.trainables[0].param, a);
      ctx.write(layer.trainables[1].param, b);
      const y = ctx.tensor([T, m]);
      const dx = ctx.tensor([T, n]);
      await ctx.encode(undefined, async (enc) => {
        await layer.forward(enc, dev.x, y);
        await layer.backward(enc, dev.x, dev.g, dx);
      });
      const p = { w0: dev.w0, a: layer.trainables[0].param, b: layer.trainables[1].param, scale, variant, order } as const;
      const want = await lormaForward(ctx, { ...p, x: dev.x });
      const wantGrads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g });
      const got = await ctx.read(y);
      expectClose(got, await ctx.read(want.y), 'layer y vs lormaForward');
      expectClose(await ctx.read(dx), await ctx.read(wantGrads.dx), 'layer dx vs lormaBackward');
      expectClose(await ctx.read(layer.trainables[0].grad), await ctx.read(wantGrads.da), 'layer dA');
      expectClose(await ctx.read(layer.trainables[1].grad), await ctx.read(wantGrads.db), 'layer dB');
      // And both against the float64 reference.
      const refArgs = { T, n, m, r, scale, variant, order, x: host.x, w0: host.w0, a, b };
      expectClose(got, ref.lormaForward(refArgs), 'layer y vs reference');
      expectClose(await ctx.read(layer.trainables[0].grad), ref.lormaBackward({ ...refArgs, g: host.g }).da, 'layer dA vs reference');
      // forward(x) = X W'ᵀ with W' = merge(); deltaOnly gives W' − W0.
      const merged = await layer.merge();
      const mergedHost = await ctx.read(merged);
      expectClose(refMatmul(host.x, mergedHost, T, n, m, false, true), got, 'X merge()ᵀ vs forward');
      const delta = await layer.merge({ deltaOnly: true });
      expectClose(await ctx.read(delta), ref.lormaDelta(refArgs), 'merge({ deltaOnly })', 5e-5);
      // tensors() → spec.from gives a layer with an identical forward.
      const saved = await layer.tensors();
      expect(Object.keys(saved).sort()).to.deep.equal(['lora_A', 'lora_B']);
      const again = method.createLayer(ctx, { w0: dev.w0, r, alpha, options, from: saved, name: 'h1' });
      const y2 = ctx.tensor([T, m]);
      await ctx.encode(undefined, (enc) => again.forward(enc, dev.x, y2));
      expect(Array.from(await ctx.read(y2))).to.deep.equal(Array.from(got));
      // No adapter term of its own: adapterOnly is refused by the layer too, naming it.
      await expectThrows(() => ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y, { adapterOnly: true })), /'adapterOnly' is not supported/);
      await expectThrows(
        () => ctx.encode(undefined, (enc) => layer.backward(enc, dev.x, dev.g, dx, { adapterOnly: true })),
        /'adapterOnly' is not supported/,
      );
      await expectThrows(() => layer.merge({ inPlace: true } as never), new RegExp(`${method.id}\\.layer\\.merge: unknown option 'inPlace'`));
      for (const t of [y, dx, y2, merged, delta, want.y, want.u, want.z, wantGrads.dx, wantGrads.da, wantGrads.db]) t?.destroy();
      layer.destroy();
      again.destroy();
      free();
    });
  }

  it("lorma-pi: the piPath option fixes a layer's path (tiles and FFT agree at d = 64), whatever the context says", async () => {
    const [T, n, m, r] = [9, 13, 64, 3];
    const { ctx, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], g: [[T, m]] });
    const a = rand(r * m, 0.5);
    const run = async (piPath: LormaPiChoice) => {
      const seen: string[] = [];
      const stop = ctx.onAllocate((rec) => seen.push(rec.label));
      const layer = lormaPi.createLayer(ctx, { w0: dev.w0, r, alpha: 3, options: { piPath }, seed: 2, name: `pi-${piPath}` });
      ctx.write(layer.trainables[0].param, a);
      const y = ctx.tensor([T, m]);
      const dx = ctx.tensor([T, n]);
      // The context's setting changes after the layer exists: the layer keeps its own.
      setLormaTuning(ctx, { pi: piPath === 'fft' ? 'tiles' : 'fft' });
      try {
        await ctx.encode(undefined, async (enc) => {
          await layer.forward(enc, dev.x, y);
          await layer.backward(enc, dev.x, dev.g, dx);
        });
      } finally {
        setLormaTuning(ctx, { pi: 'auto' });
        stop();
      }
      const out = {
        y: await ctx.read(y),
        dx: await ctx.read(dx),
        da: await ctx.read(layer.trainables[0].grad),
        db: await ctx.read(layer.trainables[1].grad),
      };
      y.destroy();
      dx.destroy();
      layer.destroy();
      return { out, keptC: seen.includes(`pi-${piPath}.lorma-pi.c`) };
    };
    const tiles = await run('tiles');
    const fft = await run('fft');
    expect(tiles.keptC, 'the tile path keeps no correlations').to.equal(false);
    expect(fft.keptC, 'the FFT path keeps the correlations for dB').to.equal(true);
    for (const key of ['y', 'dx', 'da', 'db'] as const) expectClose(fft.out[key], tiles.out[key], `${key} (fft vs tiles)`);
    free();
  });

  it('createLayer and checkModule reject what does not fit, naming the tensor or option', async () => {
    const ctx = await gpu();
    const w0 = ctx.tensor([6, 8]);
    expect(() => lormaPlus.createLayer(ctx, { w0, r: 2, alpha: 4, options: { piPath: 'fft' } })).to.throw(
      /lorma-plus\.createLayer: unknown option 'piPath' \(this call takes order\)/,
    );
    expect(() => lormaPi.createLayer(ctx, { w0, r: 2, alpha: 4, options: { order: 'mid' } })).to.throw(
      /lorma-pi\.createLayer: 'order' must be 'pre' or 'post', got "mid"/,
    );
    expect(() => lormaPi.createLayer(ctx, { w0, r: 7, alpha: 4 })).to.throw(
      /lorma-pi\.createLayer: rank r = 7 is above d = 6 \(d = m for pre-multiplication\)/,
    );
    expect(() => lormaPi.createLayer(ctx, { w0, r: 2, alpha: 4, from: { lora_A: { shape: [2, 8], data: new Float32Array(16) } } })).to.throw(
      /createLayer: 'lora_A' must be 12 f32 values \(shape \[2, 6\]\), got 16/,
    );
    w0.destroy();
    const label = (name: string) => `h1.${name}.weight`;
    const t = (a: number[], b: number[]) => ({
      lora_A: { shape: a, data: new Float32Array(a[0] * a[1]) },
      lora_B: { shape: b, data: new Float32Array(b[0] * b[1]) },
    });
    for (const m of [lormaPlus, lormaPi]) {
      m.checkModule(t([2, 6], [6, 2]), 2, { order: 'pre' }, { n: 8, m: 6 }, label, 'adapter');
      m.checkModule(t([2, 8], [8, 2]), 2, { order: 'post' }, { n: 8, m: 6 }, label, 'adapter');
      expect(() => m.checkModule(t([3, 6], [6, 2]), 2, {}, undefined, label, 'adapter')).to.throw(
        /adapter: 'h1\.lora_A\.weight' has shape \[3, 6\], expected \[r, d\] with r = 2/,
      );
      expect(() => m.checkModule(t([2, 6], [6, 3]), 2, {}, undefined, label, 'adapter')).to.throw(
        /adapter: 'h1\.lora_B\.weight' has shape \[6, 3\], expected \[d, r\] with r = 2/,
      );
      expect(() => m.checkModule(t([2, 7], [6, 2]), 2, {}, undefined, label, 'adapter')).to.throw(
        /LoRMA's 'h1\.lora_A\.weight' \[r, d\] and 'h1\.lora_B\.weight' \[d, r\] disagree on d \(7 vs 6\)/,
      );
      expect(() => m.checkModule(t([2, 6], [6, 2]), 2, { order: 'post' }, { n: 8, m: 6 }, label, 'adapter')).to.throw(
        /adapter: 'h1\.lora_B\.weight' has d = 6, but LoRMA-post on module 'h1' needs d = n = 8/,
      );
    }
  });
});
