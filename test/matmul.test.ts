// The matrix multiply against the float64 reference, for every kernel variant, every transpose,
// the fused second product and beta accumulation, on shapes that are no tile multiple and on
// multiples of 4, where 'direct' switches to its 16-byte-load entry (direct4; both entries are
// one `//#each` block of shaders/matmul.wgsl) and 'tiled4' to its 16-byte-staging entry (tiled4;
// `main` on the other shapes).

import { expect } from 'chai';
import { matmul, matmulEntry } from '../src/ops/matmul.js';
import { matmul as refMatmul } from '../src/reference/linalg.js';
import type { Tuning } from '../src/runtime.js';
import { expectClose, expectMatmul, expectThrows, gpu, rand, TRANSPOSES, useMatmulVariant } from './helpers.js';

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 29, 37],
  [7, 5, 3],
  [37, 29, 65],
  [70, 130, 33],
  // Multiples of 4 in some or all of M, N, K: direct4 where vec4Fits allows, scalar elsewhere.
  [4, 4, 4],
  [8, 12, 16],
  [36, 44, 20],
  [12, 10, 8],
  [64, 64, 64],
];

// tiled4's 64×64 tile and 32-deep slices: several tiles, a ragged last tile and slice, all vec4.
const TILED4_SHAPES: [number, number, number][] = [
  [100, 132, 68],
  [132, 68, 100],
];

for (const variant of ['direct', 'direct-scalar', 'tiled', 'tiled4'] as Tuning['matmul'][]) {
  describe(`matmul (${variant})`, () => {
    useMatmulVariant(variant);

    for (const [M, N, K] of variant === 'tiled4' ? [...SHAPES, ...TILED4_SHAPES] : SHAPES) {
      for (const [transA, transB] of TRANSPOSES) {
        it(`C[${M}x${N}] = op(A) op(B), K=${K}, transA=${transA}, transB=${transB}`, async () => {
          await expectMatmul(await gpu(), { M, N, K, transA, transB, alpha: 0.75 });
        });
      }
    }

    // K = 20 takes direct4 under 'direct', so the fused product is checked on both entries.
    for (const K of [19, 20]) {
      it(`fuses a second product and accumulates with beta (K=${K})`, async () => {
        await expectMatmul(await gpu(), { M: 45, N: 23, K, transB: true, alpha: 1.5, beta: -0.5, second: { K: 5, alpha: 2 } });
      });
    }

    it('with beta = 0 ignores whatever C held, NaN included', async () => {
      const ctx = await gpu();
      const [M, N, K] = [9, 11, 13];
      const a = rand(M * K),
        b = rand(K * N);
      const C = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N]);
      await matmul(ctx, { a: ctx.upload(a, [M, K]), b: ctx.upload(b, [K, N]), c: C, M, N, K });
      expectClose(await ctx.read(C), refMatmul(a, b, M, K, N), 'C');
    });
  });
}

describe('matmul arguments', () => {
  it('rejects sizes that are zero, negative or fractional', async () => {
    const ctx = await gpu();
    const t = ctx.tensor([4, 4]);
    await expectThrows(() => matmul(ctx, { a: t, b: t, c: ctx.tensor([4, 4]), M: 0, N: 4, K: 4 }), /'M' must be a positive integer, got 0/);
    await expectThrows(() => matmul(ctx, { a: t, b: t, c: ctx.tensor([4, 4]), M: 4, N: -1, K: 4 }), /'N' must be a positive integer, got -1/);
    await expectThrows(() => matmul(ctx, { a: t, b: t, c: ctx.tensor([4, 4]), M: 4, N: 4, K: 2.5 }), /'K' must be a positive integer, got 2.5/);
  });

  it('rejects operands too small for the shape', async () => {
    const ctx = await gpu();
    await expectThrows(
      () => matmul(ctx, { a: ctx.tensor([3, 4]), b: ctx.tensor([4, 4]), c: ctx.tensor([4, 4]), M: 4, N: 4, K: 4 }),
      /'a' has 12 elements, needs at least 16/,
    );
  });

  it('splits a workgroup count past the per-dimension limit over y and z', async () => {
    const ctx = await gpu();
    const max = ctx.limits.maxComputeWorkgroupsPerDimension;
    const [x, y, z] = ctx.workgroupGrid(max * 3 + 1);
    expect(x * y * z).to.be.at.least(max * 3 + 1);
    expect(x).to.be.at.most(max);
    expect(y).to.equal(4);
    expect(ctx.workgroupGrid(17)).to.deep.equal([17, 1, 1]);
    expect(() => ctx.workgroupGrid([max + 1, 1, 1])).to.throw(/not an integer in \[0, \d+\]/);
  });
});

describe('matmul kernel choice', () => {
  it("'direct' takes 16-byte loads exactly when the contiguous dimensions are multiples of 4", async () => {
    const ctx = await gpu();
    const saved = ctx.tuning.matmul;
    try {
      ctx.tuning.matmul = 'direct';
      expect(matmulEntry(ctx, 36, 44, 20)).to.equal('direct4');
      expect(matmulEntry(ctx, 12, 10, 8)).to.equal('direct');
      expect(matmulEntry(ctx, 12, 10, 8, false, true)).to.equal('direct4');
      expect(matmulEntry(ctx, 36, 44, 20, true, false)).to.equal('direct4');
      expect(matmulEntry(ctx, 36, 44, 20, true, true)).to.equal('direct');
      expect(matmulEntry(ctx, 37, 29, 65, false, true)).to.equal('direct');
      ctx.tuning.matmul = 'direct-scalar';
      expect(matmulEntry(ctx, 64, 64, 64)).to.equal('direct');
      ctx.tuning.matmul = 'tiled';
      expect(matmulEntry(ctx, 64, 64, 64)).to.equal('main');
      // tiled4 serves every transpose combination: only each operand's contiguous dimension counts.
      ctx.tuning.matmul = 'tiled4';
      expect(matmulEntry(ctx, 37, 29, 64)).to.equal('main');
      expect(matmulEntry(ctx, 37, 28, 64)).to.equal('tiled4');
      expect(matmulEntry(ctx, 37, 29, 64, false, true)).to.equal('tiled4');
      expect(matmulEntry(ctx, 36, 28, 65, true, false)).to.equal('tiled4');
      expect(matmulEntry(ctx, 37, 28, 64, true, false)).to.equal('main');
      expect(matmulEntry(ctx, 36, 29, 64, true, true)).to.equal('tiled4');
      expect(matmulEntry(ctx, 36, 29, 65, true, true)).to.equal('main');
    } finally {
      ctx.tuning.matmul = saved;
    }
  });
});

describe('matmul (tiled4) on operand blocks at offsets within larger matrices', () => {
  useMatmulVariant('tiled4');

  // A 4 KiB binding limit cuts every operand into blocks of rows bound at aligned ranges, so each
  // block's offsets and row strides reach the kernel as nonzero multiples of 4 (the vec4 view).
  for (const [transA, transB] of TRANSPOSES) {
    it(`blocks of C[72x136] += op(A) op(B) + op(A2) op(B2), K=40, transA=${transA}, transB=${transB}`, async () => {
      const second = { K: 5, alpha: -1.5 };
      await expectMatmul(await gpu(), { M: 72, N: 136, K: 40, transA, transB, alpha: 0.75, beta: 0.5, bindingLimit: 4096, second });
    });
  }
});
