// The GPU matmul variants ('tiled-vec4', 'tiled-vec4-128', 'subgroup') against the float64
// reference: every transpose, alpha alone and alpha + beta + the fused second product, on shapes
// that are no tile multiple. Aligned shapes (contiguous dimensions multiples of 4) run the variant's
// own entry, which each case asserts through matmulEntry; unaligned ones its fallback, `main`.
// lavapipe offers `subgroups` (8 lanes), so 'subgroup' runs its own kernel here; a context created
// without the feature shows the fallback.

import { expect } from 'chai';
import { matmulEntry } from '../src/ops/matmul.js';
import { Context, type Tuning } from '../src/runtime.js';
import { expectMatmul, gpu, F32_TOL, TRANSPOSES, useMatmulVariant } from './helpers.js';

// The brief's shapes (1×1×1, 37×45×13, 130×67×129 are unaligned: the fallback) and aligned ones
// that still leave ragged tiles, slices and subgroup rounds: 132×68×100 (two 64-row tiles and a
// 4-row one, a 4-column last tile), 4×260×36 (one row block, 256 + 4 columns), 200×300×516 (K past
// four rounds of a 32-lane subgroup, with a 4-deep tail), 68×132×70 (aligned only for Aᵀ B, where
// K needs no multiple of 4: a round that ends inside a lane's four values of k).
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [37, 45, 13],
  [130, 67, 129],
  [256, 256, 256],
  [132, 68, 100],
  [4, 260, 36],
  [200, 300, 516],
  [68, 132, 70],
];

const ENTRY: Record<string, string> = { 'tiled-vec4': 'tiled_vec4', 'tiled-vec4-128': 'tiled_vec4', subgroup: 'subgroup' };

function aligned(M: number, N: number, K: number, transA: boolean, transB: boolean): boolean {
  return (transA ? M : K) % 4 === 0 && (transB ? K : N) % 4 === 0;
}

// F32_TOL holds for the depths here (K ≤ 516, uniform inputs): the error of a K-term f32 sum
// grows like √K·ε against an output scale that grows like √K, so no scaling by K is needed.
const TOL = F32_TOL;

for (const variant of ['tiled-vec4', 'tiled-vec4-128', 'subgroup'] as Tuning['matmul'][]) {
  describe(`matmul variant ${variant}`, () => {
    useMatmulVariant(variant);

    for (const [M, N, K] of SHAPES) {
      for (const [transA, transB] of TRANSPOSES) {
        const own = aligned(M, N, K, transA, transB);
        const tag = `${M}x${N}x${K} transA=${transA} transB=${transB} (${own ? ENTRY[variant] : 'main'})`;

        it(`alpha·op(A) op(B), ${tag}`, async () => {
          const ctx = await gpu();
          expect(matmulEntry(ctx, M, N, K, transA, transB)).to.equal(own ? ENTRY[variant] : 'main');
          await expectMatmul(ctx, { M, N, K, transA, transB, alpha: 0.75 }, TOL);
        });

        it(`alpha·op(A) op(B) + alpha2·op(A2) op(B2) + beta·C, ${tag}`, async () => {
          await expectMatmul(await gpu(), { M, N, K, transA, transB, alpha: -1.5, beta: 0.5, second: { K: 7, alpha: 2 } }, TOL);
        });
      }
    }

    // Split into row blocks bound as buffer ranges: the operands start at offsets inside their
    // bindings, which the variant must honour (an offset that is no multiple of 4 gives `main`).
    for (const [transA, transB] of TRANSPOSES) {
      it(`row blocks of bound ranges (bindingLimit), transA=${transA} transB=${transB}`, async () => {
        await expectMatmul(await gpu(), { M: 300, N: 136, K: 260, transA, transB, beta: 1, bindingLimit: 64 * 1024 }, TOL);
      });
    }
  });
}

describe('matmul variant subgroup without the subgroups feature', () => {
  let ctx: Context;
  before(async () => {
    ctx = await Context.create({ features: ['timestamp-query'], tuning: { matmul: 'subgroup' } });
  });
  after(() => ctx.destroy());

  it('falls back to main and computes the same product', async () => {
    expect(ctx.device.features.has('subgroups')).to.equal(false);
    const [M, N, K] = [132, 68, 100];
    expect(matmulEntry(ctx, M, N, K, false, true)).to.equal('main');
    await expectMatmul(ctx, { M, N, K, transB: true }, TOL);
  });
});
