// SBoRA-FA and SBoRA-FB against the float64 reference (both matmul tunings, odd shapes, ranks 1
// to 16), the reference against finite differences and against LoRA with a one-hot factor,
// regional merges that leave every other byte of W0 alone, Multi-SBoRA, accounting, index sets,
// options, per-context tuning, the two method descriptors and bad input.

import { expect } from 'chai';
import {
  IndexAllocator,
  IndexSet,
  checkIndices,
  createIndexSet,
  sampleIndices,
  sboraAccounting,
  sboraBackward,
  sboraFa,
  sboraFb,
  sboraForward,
  sboraMerge,
  sboraMultiMerge,
  sboraTuning,
  setSboraTuning,
  type SboraAdapter,
  type SboraArgs,
} from '../src/methods/sbora/index.js';
import * as ref from '../src/methods/sbora/reference.js';
import { loraForward, loraBackward } from '../src/methods/lora/reference.js';
import { dot, finiteDifference, matmul as refMatmul, relativeError, toF64 } from '../src/reference/linalg.js';
import type { Tuning } from '../src/runtime.js';
import type { Tensor } from '../src/tensor.js';
import { expectClose, expectThrows, gpu, rand, uploads, useMatmulVariant } from './helpers.js';

// [T, n, m, r]: none a multiple of the kernels' blocks (8 rows, 32 columns, 32-row groups), plus T = 1, r = 1.
// The gather kernel (FA forward, FB backward dX) has a 16-byte-store entry for row lengths that
// are multiples of 4 (m for FA, n for FB) and a scalar one otherwise, holds 16 ranks per pass
// (r = 17, 33 take 2 and 3), and covers 32 rows (8 under 'tiled') by 32 columns (256).
const SHAPES: [number, number, number, number][] = [
  [1, 37, 29, 1],
  [7, 37, 29, 5],
  [3, 8, 6, 2],
  [19, 29, 37, 16],
  [33, 70, 45, 9],
  [1, 12, 36, 3],
  [5, 23, 30, 8],
  [36, 44, 64, 16],
  [40, 24, 52, 17],
  [9, 41, 37, 33],
];

function release(...ts: (Tensor | IndexSet | undefined)[]): void {
  for (const t of ts) t?.destroy();
}

describe('sbora index sets', () => {
  it('samples r distinct in-range indices, repeatably from a seed, not sorted', () => {
    const a = sampleIndices(100, 40, 12345);
    expect(a.length).to.equal(40);
    expect(new Set(a).size).to.equal(40);
    for (const v of a) expect(v).to.be.within(0, 99);
    expect(Array.from(sampleIndices(100, 40, 12345))).to.deep.equal(Array.from(a));
    expect(Array.from(sampleIndices(100, 40, 54321))).to.not.deep.equal(Array.from(a));
    const sorted = [...a].sort((x, y) => x - y);
    expect(Array.from(a)).to.not.deep.equal(sorted);
    // r = size is a permutation.
    expect([...sampleIndices(9, 9, 1)].sort((x, y) => x - y)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('draws every index about equally often', () => {
    const counts = new Array(10).fill(0);
    for (let seed = 0; seed < 2000; seed++) for (const v of sampleIndices(10, 3, seed)) counts[v]++;
    // 600 expected each; 5 standard deviations is about ±100.
    for (const c of counts) expect(c).to.be.within(500, 700);
  });

  it("keeps the caller's order", () => {
    expect(Array.from(checkIndices('t', 'idx', [5, 0, 3], 6, 3))).to.deep.equal([5, 0, 3]);
  });

  it('rejects duplicates, out-of-range, wrong length, non-integers, bad sizes and seeds', async () => {
    const ctx = await gpu();
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [1, 4, 1] }), /'values'/, /repeats index 1/, /positions 0 and 2/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [1, 8] }), /'values'\[1\] = 8/, /out of range \[0, 8\)/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [-1, 2] }), /'values'\[0\] = -1/, /out of range/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [1, 2, 3], r: 2 }), /'values' has 3 indices, expected r = 2/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [1, 2.5] }), /'values'\[1\] is 2.5/, /integer/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [1, NaN] }), /'values'\[1\] is NaN/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [1, '2' as unknown as number] }), /'values'\[1\] is 2, expected an integer/);
    await expectThrows(() => createIndexSet(ctx, { size: 8, values: [] }), /'values' is empty/);
    await expectThrows(() => createIndexSet(ctx, { size: 0, values: [0] }), /'size' must be a positive integer, got 0/);
    await expectThrows(() => createIndexSet(ctx, { size: 3.5, r: 1, seed: 1 }), /'size' must be a positive integer, got 3.5/);
    await expectThrows(() => createIndexSet(ctx, { size: 4, r: 5, seed: 1 }), /cannot draw r = 5 distinct indices from \[0, 4\)/);
    await expectThrows(() => createIndexSet(ctx, { size: 4, r: 0, seed: 1 }), /'r' must be a positive integer, got 0/);
    await expectThrows(() => createIndexSet(ctx, { size: 4, r: 2, seed: -1 }), /'seed' must be an integer in \[0, 2\^32\), got -1/);
    await expectThrows(() => createIndexSet(ctx, { size: 4 } as never), /give either 'values'/);
  });

  it('uploads u32 indices equal to the host copy', async () => {
    const ctx = await gpu();
    const s = createIndexSet(ctx, { size: 50, r: 7, seed: 3 });
    expect(s.tensor.dtype).to.equal('u32');
    expect(s.tensor.shape).to.deep.equal([7]);
    expect(s.deviceBytes).to.equal(28);
    expect(Array.from(await ctx.read(s.tensor))).to.deep.equal(Array.from(s.values));
    s.destroy();
  });
});

describe('Multi-SBoRA allocator', () => {
  it('hands out sets that never overlap until the pool is empty, then fails clearly', async () => {
    const alloc = new IndexAllocator(37, 99);
    const seen = new Set<number>();
    for (const r of [5, 11, 1, 16]) {
      const s = alloc.allocate(r);
      expect(s.length).to.equal(r);
      for (const v of s) {
        expect(v).to.be.within(0, 36);
        expect(seen.has(v), `index ${v} handed out twice`).to.equal(false);
        seen.add(v);
        expect(alloc.isTaken(v)).to.equal(true);
      }
    }
    expect(alloc.remaining).to.equal(4);
    await expectThrows(() => alloc.allocate(5), /asked for r = 5 indices but only 4 of \[0, 37\) remain unallocated/);
    const last = alloc.allocate(4);
    for (const v of last) expect(seen.has(v)).to.equal(false);
    expect(alloc.remaining).to.equal(0);
    await expectThrows(() => alloc.allocate(1), /only 0 of \[0, 37\) remain/);
  });

  it('is repeatable from its seed, claims caller sets and takes sets back', async () => {
    const a = new IndexAllocator(20, 5);
    const b = new IndexAllocator(20, 5);
    expect(Array.from(a.allocate(6))).to.deep.equal(Array.from(b.allocate(6)));
    const c = new IndexAllocator(10, 1);
    c.claim([0, 1, 2]);
    await expectThrows(() => c.claim([2, 3]), /index 2 is already allocated/);
    await expectThrows(() => c.claim([3, 3]), /repeats index 3/);
    const got = c.allocate(7);
    expect([...got].sort((x, y) => x - y)).to.deep.equal([3, 4, 5, 6, 7, 8, 9]);
    c.release([1, 2]);
    expect(c.remaining).to.equal(2);
    expect([...c.allocate(2)].sort((x, y) => x - y)).to.deep.equal([1, 2]);
    await expectThrows(() => c.release([1, 1]), /repeats index 1/);
    c.release([1]);
    await expectThrows(() => c.release([1]), /index 1 is not allocated/);
    await expectThrows(() => new IndexAllocator(0, 1), /'size' must be a positive integer/);
    await expectThrows(() => new IndexAllocator(5, 1.5), /'seed' must be an integer/);
  });
});

describe('sbora reference', () => {
  it('equals LoRA with the one-hot factor the indices stand for', () => {
    const [T, n, m, r, s] = [5, 11, 7, 3, 1.75];
    const x = rand(T * n),
      w0 = rand(m * n),
      b = rand(m * r),
      a = rand(r * n),
      g = rand(T * m);
    const idxA = sampleIndices(n, r, 4);
    const idxB = sampleIndices(m, r, 5);
    const fa = { T, n, m, r, scale: s, x, w0, b, idx: idxA, g };
    const loraFa = { T, n, m, r, scale: s, x, w0, a: ref.oneHot('fa', idxA, n), b, g };
    expectClose(ref.faForward(fa), loraForward(loraFa), 'FA y', 1e-12);
    const fab = ref.faBackward(fa);
    const lfa = loraBackward(loraFa);
    expectClose(fab.dx, lfa.dx, 'FA dx', 1e-12);
    expectClose(fab.db, lfa.db, 'FA db', 1e-12);
    const fb = { T, n, m, r, scale: s, x, w0, a, idx: idxB, g };
    const loraFb = { T, n, m, r, scale: s, x, w0, a, b: ref.oneHot('fb', idxB, m), g };
    expectClose(ref.fbForward(fb), loraForward(loraFb), 'FB y', 1e-12);
    const fbb = ref.fbBackward(fb);
    const lfb = loraBackward(loraFb);
    expectClose(fbb.dx, lfb.dx, 'FB dx', 1e-12);
    expectClose(fbb.da, lfb.da, 'FB da', 1e-12);
    // The merge is the dense LoRA update restricted to the region.
    expectClose(
      ref.faDelta(fa),
      refMatmul(b, ref.oneHot('fa', idxA, n), m, r, n).map((v) => v * s),
      'FA delta',
      1e-12,
    );
    expectClose(
      ref.fbDelta(fb),
      refMatmul(ref.oneHot('fb', idxB, m), a, m, r, n).map((v) => v * s),
      'FB delta',
      1e-12,
    );
  });

  for (const variant of ['fa', 'fb'] as const) {
    it(`${variant.toUpperCase()} gradients match central finite differences`, () => {
      const [T, n, m, r, s] = [4, 9, 6, 3, 1.3];
      const x = toF64(rand(T * n)),
        w0 = toF64(rand(m * n)),
        g = toF64(rand(T * m));
      const idx = sampleIndices(variant === 'fa' ? n : m, r, 11);
      const factor = toF64(rand(variant === 'fa' ? m * r : r * n));
      const args = { T, n, m, r, scale: s, x, w0, idx, b: factor, a: factor, g };
      const loss = () => dot(variant === 'fa' ? ref.faForward(args) : ref.fbForward(args), g);
      const grads = variant === 'fa' ? ref.faBackward(args) : ref.fbBackward(args);
      const dFactor = variant === 'fa' ? (grads as { db: Float64Array }).db : (grads as { da: Float64Array }).da;
      expect(relativeError(dFactor, finiteDifference(loss, factor))).to.be.below(1e-6);
      expect(relativeError(grads.dx, finiteDifference(loss, x))).to.be.below(1e-6);
      // The adapter-only parts are the derivatives of the adapter-only output.
      const adLoss = () => dot(variant === 'fa' ? ref.faForward(args, true) : ref.fbForward(args, true), g);
      const adGrads = variant === 'fa' ? ref.faBackward(args, true) : ref.fbBackward(args, true);
      expect(relativeError(adGrads.dx, finiteDifference(adLoss, x))).to.be.below(1e-6);
    });
  }
});

// The frozen products run on matmul.wgsl under each of its kernels; the adapter kernels are the same.
for (const tuning of ['direct', 'direct-scalar', 'tiled'] as Tuning['matmul'][]) {
  describe(`sbora kernels (matmul tuning '${tuning}')`, () => {
    useMatmulVariant(tuning);

    for (const [T, n, m, r] of SHAPES) {
      for (const variant of ['fa', 'fb'] as const) {
        it(`SBoRA-${variant.toUpperCase()} forward and backward, T=${T} n=${n} m=${m} r=${r}`, async () => {
          const ctx = await gpu();
          // FA trains B [m, r] and picks r input columns; FB trains A [r, n] and picks r output rows.
          const fa = variant === 'fa';
          const s = 2 / r + (fa ? 0.5 : 0.25);
          const fShape = fa ? [m, r] : [r, n];
          const x = rand(T * n),
            w0 = rand(m * n),
            f = rand(fShape[0] * fShape[1]),
            g = rand(T * m);
          const [X, W0, F, G] = [ctx.upload(x, [T, n]), ctx.upload(w0, [m, n]), ctx.upload(f, fShape), ctx.upload(g, [T, m])];
          const idx = createIndexSet(ctx, { size: fa ? n : m, r, seed: T * (fa ? 31 : 17) + r });
          const args = { T, n, m, r, scale: s, x, w0, b: f, a: f, g, idx: idx.values };
          const p: SboraArgs = fa ? { variant: 'fa', w0: W0, b: F, idx, scale: s } : { variant: 'fb', w0: W0, a: F, idx, scale: s };
          for (const adapterOnly of [false, true]) {
            const { y } = await sboraForward(ctx, { ...p, x: X }, { adapterOnly });
            expectClose(
              await ctx.read(y),
              fa ? ref.faForward(args, adapterOnly) : ref.fbForward(args, adapterOnly),
              `y (adapterOnly ${adapterOnly})`,
            );
            const grads = await sboraBackward(ctx, { ...p, x: X, g: G }, { adapterOnly });
            const want = fa ? ref.faBackward(args, adapterOnly) : ref.fbBackward(args, adapterOnly);
            const dF = 'db' in grads ? grads.db : grads.da;
            expectClose(await ctx.read(grads.dx), want.dx, `dx (adapterOnly ${adapterOnly})`);
            expectClose(await ctx.read(dF), 'db' in want ? want.db : want.da, fa ? 'db' : 'da');
            release(y, grads.dx, dF);
          }
          release(X, W0, F, G, idx);
        });
      }
    }
  });
}

describe('sbora kernels: outputs, encoders and memory', () => {
  it("writes into caller tensors inside the caller's encoder, with no scratch allocated", async () => {
    const ctx = await gpu();
    const [T, n, m, r, s] = [6, 21, 13, 4, 2];
    const x = rand(T * n),
      w0 = rand(m * n),
      b = rand(m * r),
      a = rand(r * n),
      g = rand(T * m);
    const [X, W0, B, A, G] = [ctx.upload(x, [T, n]), ctx.upload(w0, [m, n]), ctx.upload(b, [m, r]), ctx.upload(a, [r, n]), ctx.upload(g, [T, m])];
    const ia = createIndexSet(ctx, { size: n, r, seed: 1 });
    const ib = createIndexSet(ctx, { size: m, r, seed: 2 });
    const [Ya, Yb, DXa, DXb, DB, DA] = [
      ctx.tensor([T, m]),
      ctx.tensor([T, m]),
      ctx.tensor([T, n]),
      ctx.tensor([T, n]),
      ctx.tensor([m, r]),
      ctx.tensor([r, n]),
    ];
    // Warm the pipeline cache, then count allocations while encoding and running.
    await sboraForward(ctx, { variant: 'fa', w0: W0, b: B, idx: ia, scale: s, x: X, y: Ya });
    await sboraBackward(ctx, { variant: 'fb', w0: W0, a: A, idx: ib, scale: s, x: X, g: G, dx: DXb, da: DA });
    const made: string[] = [];
    const stop = ctx.onAllocate((rec) => made.push(rec.label));
    const enc = ctx.device.createCommandEncoder();
    const fa = { variant: 'fa' as const, w0: W0, b: B, idx: ia, scale: s };
    const fb = { variant: 'fb' as const, w0: W0, a: A, idx: ib, scale: s };
    expect((await sboraForward(ctx, { ...fa, x: X, y: Ya }, { encoder: enc })).y).to.equal(Ya);
    const gfa = await sboraBackward(ctx, { ...fa, x: X, g: G, dx: DXa, db: DB }, { encoder: enc });
    expect(gfa.dx).to.equal(DXa);
    expect(gfa.db).to.equal(DB);
    await sboraForward(ctx, { ...fb, x: X, y: Yb }, { encoder: enc });
    await sboraBackward(ctx, { ...fb, x: X, g: G, dx: DXb, da: DA }, { encoder: enc });
    ctx.submit(enc);
    await ctx.sync();
    stop();
    expect(made, 'allocations during forward/backward').to.deep.equal([]);
    const argsA = { T, n, m, r, scale: s, x, w0, b, g, idx: ia.values };
    const argsB = { T, n, m, r, scale: s, x, w0, a, g, idx: ib.values };
    expectClose(await ctx.read(Ya), ref.faForward(argsA), 'FA y');
    expectClose(await ctx.read(DXa), ref.faBackward(argsA).dx, 'FA dx');
    expectClose(await ctx.read(DB), ref.faBackward(argsA).db, 'FA db');
    expectClose(await ctx.read(Yb), ref.fbForward(argsB), 'FB y');
    expectClose(await ctx.read(DXb), ref.fbBackward(argsB).dx, 'FB dx');
    expectClose(await ctx.read(DA), ref.fbBackward(argsB).da, 'FB da');
    release(X, W0, B, A, G, ia, ib, Ya, Yb, DXa, DXb, DB, DA);
  });

  it('accounts for parameters, indices, gradients and device bytes as allocated', async () => {
    const ctx = await gpu();
    const [T, n, m, r] = [8, 40, 24, 6];
    const fa = sboraAccounting('fa', { n, m, r, T });
    expect(fa.trainableParams).to.equal(m * r);
    expect(fa.storedIndices).to.equal(r);
    expect(fa.indexBytes).to.equal(4 * r);
    expect(fa.gradientBytes).to.equal(4 * m * r);
    expect(fa.savedActivationBytes).to.equal(0);
    const fb = sboraAccounting('fb', { n, m, r, T });
    expect(fb.trainableParams).to.equal(r * n);
    expect(fb.gradientBytes).to.equal(4 * r * n);
    expect(fb.loraTrainableParams).to.equal(r * (n + m));
    // deviceBytes is what the adapter really adds on the device: factor, gradient, indices.
    for (const variant of ['fa', 'fb'] as const) {
      const acct = sboraAccounting(variant, { n, m, r, T });
      const [X, W0, G] = [ctx.upload(rand(T * n), [T, n]), ctx.upload(rand(m * n), [m, n]), ctx.upload(rand(T * m), [T, m])];
      const before = ctx.allocations.liveBytes;
      const idx = createIndexSet(ctx, { size: variant === 'fa' ? n : m, r, seed: 1 });
      const factor = variant === 'fa' ? ctx.upload(rand(m * r), [m, r]) : ctx.upload(rand(r * n), [r, n]);
      const y = ctx.tensor([T, m]);
      const dx = ctx.tensor([T, n]);
      const layerIO = y.byteLength + dx.byteLength;
      let grad: Tensor;
      if (variant === 'fa') {
        await sboraForward(ctx, { variant: 'fa', w0: W0, b: factor, idx, scale: 2, x: X, y });
        grad = (await sboraBackward(ctx, { variant: 'fa', w0: W0, b: factor, idx, scale: 2, x: X, g: G, dx })).db;
      } else {
        await sboraForward(ctx, { variant: 'fb', w0: W0, a: factor, idx, scale: 2, x: X, y });
        grad = (await sboraBackward(ctx, { variant: 'fb', w0: W0, a: factor, idx, scale: 2, x: X, g: G, dx })).da;
      }
      expect(ctx.allocations.liveBytes - before - layerIO, `${variant} device bytes`).to.equal(acct.deviceBytes);
      release(X, W0, G, idx, factor, y, dx, grad);
    }
    await expectThrows(() => sboraAccounting('fc' as never, { n, m, r }), /'variant' must be 'fa' or 'fb'/);
    await expectThrows(() => sboraAccounting('fa', { n: 4, m, r: 5 }), /r = 5 indices cannot be distinct in \[0, n\)/);
    await expectThrows(() => sboraAccounting('fb', { n, m: 0, r }), /'m' must be a positive integer, got 0/);
    await expectThrows(() => sboraAccounting('fb', { n, m, r, T: 1.5 }), /'T' must be a positive integer, got 1.5/);
  });
});

// Bit patterns an arithmetic pass would disturb: −0 (−0 + 0 = +0), a NaN payload, denormals.
const SPECIAL = [0x80000000, 0x7fc12345, 0x00000001, 0x807fffff];

/** Random weights with special bit patterns sprinkled outside the region (inside, finite values). */
function withSpecials(count: number, inRegion: (e: number) => boolean): Float32Array {
  const w = rand(count);
  const bits = new Uint32Array(w.buffer);
  for (let e = 0; e < count; e += 3) if (!inRegion(e)) bits[e] = SPECIAL[e % SPECIAL.length];
  return w;
}

function expectRegion(got: ArrayLike<number>, w0: Float32Array, inRegion: (e: number) => boolean, what: string): void {
  const a = new Uint32Array(Float32Array.from(got).buffer);
  const b = new Uint32Array(w0.buffer, w0.byteOffset, w0.length);
  let changed = 0;
  let regionChanged = 0;
  for (let e = 0; e < b.length; e++) {
    if (inRegion(e)) regionChanged += a[e] !== b[e] ? 1 : 0;
    else if (a[e] !== b[e]) changed++;
  }
  expect(changed, `${what}: words changed outside the region`).to.equal(0);
  expect(regionChanged, `${what}: the region was written`).to.be.greaterThan(0);
}

function pick(a: ArrayLike<number>, inRegion: (e: number) => boolean): Float64Array {
  return Float64Array.from(Array.from(a).filter((_, e) => inRegion(e)));
}

describe('sbora regional merge', () => {
  for (const [n, m, r] of [
    [37, 29, 5],
    [8, 6, 2],
    [64, 33, 16],
  ] as [number, number, number][]) {
    for (const variant of ['fa', 'fb'] as const) {
      const what = variant === 'fa' ? 'columns' : 'rows';
      it(`${variant.toUpperCase()} merges only the r ${what}, n=${n} m=${m} r=${r}; every other byte unchanged`, async () => {
        const ctx = await gpu();
        const s = variant === 'fa' ? 1.5 : 0.75;
        const idx = createIndexSet(ctx, { size: variant === 'fa' ? n : m, r, seed: n + m });
        const inRegion = variant === 'fa' ? (e: number) => idx.values.includes(e % n) : (e: number) => idx.values.includes(Math.floor(e / n));
        const w0 = withSpecials(m * n, inRegion);
        const f = rand(variant === 'fa' ? m * r : r * n);
        const W0 = ctx.upload(w0, [m, n]);
        const F = ctx.upload(f, variant === 'fa' ? [m, r] : [r, n]);
        const merge = (extra: object, opts: object) =>
          variant === 'fa'
            ? sboraMerge(ctx, { variant: 'fa', w0: W0, b: F, idx, scale: s, ...extra }, opts)
            : sboraMerge(ctx, { variant: 'fb', w0: W0, a: F, idx, scale: s, ...extra }, opts);
        const args = { n, m, r, scale: s, w0, b: f, a: f, idx: idx.values };
        const delta = await merge({}, { deltaOnly: true });
        expectClose(await ctx.read(delta), variant === 'fa' ? ref.faDelta(args) : ref.fbDelta(args), 'delta');
        const merged = await merge({}, {});
        const outOfPlace = Float32Array.from(await ctx.read(merged));
        expectRegion(outOfPlace, w0, inRegion, 'out-of-place merge');
        const want = variant === 'fa' ? ref.faMerge(args) : ref.fbMerge(args);
        expectClose(pick(outOfPlace, inRegion), pick(want, inRegion), 'merged region');
        await merge({}, { inPlace: true });
        const inPlace = Float32Array.from(await ctx.read(W0));
        expectRegion(inPlace, w0, inRegion, 'in-place merge');
        expect(Array.from(new Uint32Array(inPlace.buffer))).to.deep.equal(Array.from(new Uint32Array(outOfPlace.buffer)));
        await merge({}, { inPlace: true, unmerge: true });
        const back = await ctx.read(W0);
        const a = new Uint32Array(Float32Array.from(back).buffer);
        const b = new Uint32Array(w0.buffer);
        expect(
          a.every((v, e) => inRegion(e) || v === b[e]),
          'unmerge: bytes outside the region',
        ).to.equal(true);
        expectClose(pick(back, inRegion), pick(w0, inRegion), 'unmerge restores the region', 1e-6);
        release(W0, F, idx, delta, merged);
      });
    }
  }

  it('a merged FA/FB layer computes what the adapter forward computes', async () => {
    const ctx = await gpu();
    const [T, n, m, r, s] = [5, 23, 17, 4, 2];
    const x = rand(T * n);
    const [X, W0, B, A] = [ctx.upload(x, [T, n]), ctx.upload(rand(m * n), [m, n]), ctx.upload(rand(m * r), [m, r]), ctx.upload(rand(r * n), [r, n])];
    const ia = createIndexSet(ctx, { size: n, r, seed: 3 });
    const ib = createIndexSet(ctx, { size: m, r, seed: 4 });
    const wa = await sboraMerge(ctx, { variant: 'fa', w0: W0, b: B, idx: ia, scale: s });
    const wb = await sboraMerge(ctx, { variant: 'fb', w0: W0, a: A, idx: ib, scale: s });
    const ya = await ctx.read((await sboraForward(ctx, { variant: 'fa', w0: W0, b: B, idx: ia, scale: s, x: X })).y);
    const yb = await ctx.read((await sboraForward(ctx, { variant: 'fb', w0: W0, a: A, idx: ib, scale: s, x: X })).y);
    expectClose(refMatmul(x, await ctx.read(wa), T, n, m, false, true), ya, "X W'ᵀ (FA)", 1e-5);
    expectClose(refMatmul(x, await ctx.read(wb), T, n, m, false, true), yb, "X W'ᵀ (FB)", 1e-5);
    release(X, W0, B, A, ia, ib, wa, wb);
  });
});

describe('Multi-SBoRA', () => {
  it('trains adapters independently on disjoint sets and merges them all at once, as one after another', async () => {
    const ctx = await gpu();
    const [T, n, m, s, lr] = [6, 30, 20, 1.5, 0.1];
    const x = rand(T * n),
      w0 = rand(m * n),
      g = rand(T * m);
    const [X, W0, G] = [ctx.upload(x, [T, n]), ctx.upload(w0, [m, n]), ctx.upload(g, [T, m])];
    const cols = new IndexAllocator(n, 7);
    const rows = new IndexAllocator(m, 8);
    const adapters: SboraAdapter[] = [];
    // Three FA tasks on disjoint columns, two FB tasks on disjoint rows; each takes two SGD steps
    // on its own layer (W0 + that adapter alone), its factor starting at zero as SBoRA initialises.
    for (const [variant, r] of [
      ['fa', 3],
      ['fa', 5],
      ['fb', 4],
      ['fa', 2],
      ['fb', 6],
    ] as ['fa' | 'fb', number][]) {
      const idx = createIndexSet(ctx, { size: variant === 'fa' ? n : m, values: (variant === 'fa' ? cols : rows).allocate(r) });
      let factor = new Float32Array(variant === 'fa' ? m * r : r * n);
      for (let step = 0; step < 2; step++) {
        const F = ctx.upload(factor, variant === 'fa' ? [m, r] : [r, n]);
        const grad =
          variant === 'fa'
            ? (await sboraBackward(ctx, { variant: 'fa', w0: W0, b: F, idx, scale: s, x: X, g: G })).db
            : (await sboraBackward(ctx, { variant: 'fb', w0: W0, a: F, idx, scale: s, x: X, g: G })).da;
        const dF = await ctx.read(grad);
        // The first gradient is the same whatever the factor, the second too (it is linear in W):
        // both are checked against the reference so the training step is a real one.
        const args = { T, n, m, r, scale: s, x, w0, g, idx: idx.values, b: factor, a: factor };
        expectClose(dF, variant === 'fa' ? ref.faBackward(args).db : ref.fbBackward(args).da, 'gradient');
        factor = factor.map((v, i) => v - lr * dF[i]);
        release(F, grad);
      }
      const F = ctx.upload(factor, variant === 'fa' ? [m, r] : [r, n]);
      adapters.push(variant === 'fa' ? { variant, idx, b: F, scale: s } : { variant, idx, a: F, scale: s });
    }
    const all = await ctx.read(await sboraMultiMerge(ctx, { w0: W0, adapters }));
    // One after another, in place on a copy of W0.
    const W = ctx.upload(w0, [m, n]);
    for (const ad of adapters) await sboraMerge(ctx, { ...ad, w0: W }, { inPlace: true });
    const seq = await ctx.read(W);
    expect(Array.from(new Uint32Array(Float32Array.from(all).buffer))).to.deep.equal(Array.from(new Uint32Array(Float32Array.from(seq).buffer)));
    // And against the reference: W0 plus every adapter's regional delta.
    let want: Float64Array = toF64(w0);
    for (const ad of adapters) {
      const f = await ctx.read(ad.variant === 'fa' ? ad.b : ad.a);
      const args = { n, m, r: ad.idx.r, scale: ad.scale, idx: ad.idx.values, b: f, a: f };
      const d = ad.variant === 'fa' ? ref.faDelta(args) : ref.fbDelta(args);
      want = want.map((v, i) => v + d[i]);
    }
    expectClose(all, want, 'multi-merge');
    // Unmerging every adapter at once restores W0 up to rounding.
    await sboraMultiMerge(ctx, { w0: W, adapters }, { inPlace: true, unmerge: true });
    expectClose(await ctx.read(W), w0, 'multi-unmerge', 1e-6);
    release(X, W0, G, W, ...adapters.map((a) => a.idx), ...adapters.map((a) => (a.variant === 'fa' ? a.b : a.a)));
  });

  it('rejects overlapping sets and malformed adapter lists', async () => {
    const ctx = await gpu();
    const [n, m, r] = [10, 8, 3];
    const W0 = ctx.upload(rand(m * n), [m, n]);
    const B = ctx.upload(rand(m * r), [m, r]);
    const i1 = createIndexSet(ctx, { size: n, values: [1, 2, 3] });
    const i2 = createIndexSet(ctx, { size: n, values: [4, 3, 9] });
    await expectThrows(
      () =>
        sboraMultiMerge(ctx, {
          w0: W0,
          adapters: [
            { variant: 'fa', idx: i1, b: B, scale: 1 },
            { variant: 'fa', idx: i2, b: B, scale: 1 },
          ],
        }),
      /index 3 is in both set 0 and set 1/,
      /disjoint/,
    );
    await expectThrows(() => sboraMultiMerge(ctx, { w0: W0, adapters: [] }), /'adapters' must be a non-empty array/);
    await expectThrows(
      () => sboraMultiMerge(ctx, { w0: W0, adapters: [{ variant: 'fc', idx: i1, b: B, scale: 1 } as never] }),
      /'adapters\[0\].variant' must be 'fa' or 'fb'/,
    );
    const ib = createIndexSet(ctx, { size: m, values: [0, 1, 2] });
    await expectThrows(
      () => sboraMultiMerge(ctx, { w0: W0, adapters: [{ variant: 'fb', idx: ib, a: B, scale: 1 }] }),
      /adapters\[0\]/,
      /'a' has shape \[8, 3\], expected \[r, n\] = \[3, 10\]/,
    );
    release(W0, B, i1, i2, ib);
  });
});

describe('sbora bad input', () => {
  it('names the argument and what was expected', async () => {
    const ctx = await gpu();
    const [T, n, m, r] = [3, 8, 6, 2];
    const [X, W0, B, A, G] = [
      ctx.upload(rand(T * n), [T, n]),
      ctx.upload(rand(m * n), [m, n]),
      ctx.upload(rand(m * r), [m, r]),
      ctx.upload(rand(r * n), [r, n]),
      ctx.upload(rand(T * m), [T, m]),
    ];
    const ia = createIndexSet(ctx, { size: n, values: [4, 2] });
    const ib = createIndexSet(ctx, { size: m, values: [0, 5] });
    const fa = { variant: 'fa' as const, w0: W0, b: B, idx: ia, scale: 2 };
    const fb = { variant: 'fb' as const, w0: W0, a: A, idx: ib, scale: 2 };
    // Index sets: missing, unvalidated, for the wrong dimension, of the wrong rank.
    await expectThrows(() => sboraForward(ctx, { ...fa, idx: undefined as never, x: X }), /sbora.fa.forward: 'idx' must be an IndexSet/);
    const raw = ctx.upload([4, 2], [2], 'u32');
    await expectThrows(() => sboraForward(ctx, { ...fa, idx: raw as never, x: X }), /'idx' must be an IndexSet \(from createIndexSet: validated/);
    await expectThrows(() => sboraForward(ctx, { ...fa, idx: ib, x: X }), /'idx' indexes \[0, 6\), expected \[0, n\) = \[0, 8\)/);
    await expectThrows(() => sboraForward(ctx, { ...fb, idx: ia, x: X }), /sbora.fb.forward: 'idx' indexes \[0, 8\), expected \[0, m\) = \[0, 6\)/);
    const i3 = createIndexSet(ctx, { size: n, values: [1, 2, 3] });
    await expectThrows(() => sboraForward(ctx, { ...fa, idx: i3, x: X }), /'b' has shape \[6, 2\], expected \[m, r\] = \[6, 3\]/);
    // Shapes, dtypes, scale, aliasing.
    await expectThrows(() => sboraForward(ctx, { ...fa, x: G }), /'x' has shape \[3, 6\], expected \[T, n\] = \[3, 8\]/);
    await expectThrows(() => sboraForward(ctx, { ...fb, a: B, x: X }), /'a' has shape \[6, 2\], expected \[r, n\] = \[2, 8\]/);
    await expectThrows(() => sboraForward(ctx, { ...fa, w0: X, x: X }), /'idx' indexes \[0, 8\)|'b' has shape/);
    await expectThrows(() => sboraForward(ctx, { ...fa, scale: NaN, x: X }), /'scale' must be a finite number, got NaN/);
    await expectThrows(() => sboraForward(ctx, { ...fa, x: X, y: ctx.tensor([T, n]) }), /'y' has shape \[3, 8\], expected \[T, m\] = \[3, 6\]/);
    await expectThrows(() => sboraBackward(ctx, { ...fa, x: X, g: X }), /sbora.fa.backward: 'g' has shape \[3, 8\], expected \[T, m\] = \[3, 6\]/);
    await expectThrows(
      () => sboraBackward(ctx, { ...fa, x: X, g: G, db: ctx.tensor([r, m]) }),
      /'db' has shape \[2, 6\], expected \[m, r\] = \[6, 2\]/,
    );
    await expectThrows(
      () => sboraBackward(ctx, { ...fb, x: X, g: G, da: ctx.tensor([n, r]) }),
      /sbora.fb.backward: 'da' has shape \[8, 2\], expected \[r, n\] = \[2, 8\]/,
    );
    await expectThrows(() => sboraBackward(ctx, { ...fb, x: X, g: G, dx: X }), /'dx' and 'x' are the same buffer|'x' and 'dx' are the same buffer/);
    await expectThrows(() => sboraForward(ctx, { ...fa, x: ctx.upload([1, 2, 3, 4, 5, 6, 7, 8], [8], 'f32') }), /'x' must be a 2-D Tensor \[T, n\]/);
    await expectThrows(
      () => sboraForward(ctx, { ...fa, b: ctx.upload([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [m, r], 'i32'), x: X }),
      /'b' is i32, expected f32/,
    );
    await expectThrows(() => sboraForward(ctx, { ...fb, w0: ctx.upload(rand(n), [n]), x: X }), /'w0' must be a 2-D Tensor \[m, n\]/);
    // Merge options.
    await expectThrows(() => sboraMerge(ctx, fa, { inPlace: true, deltaOnly: true }), /sbora.fa.merge: 'inPlace' and 'deltaOnly' exclude each other/);
    await expectThrows(() => sboraMerge(ctx, { ...fb, out: W0 }, {}), /'out' and 'w0' are the same buffer|'w0' and 'out' are the same buffer/);
    await expectThrows(
      () => sboraMerge(ctx, { ...fb, out: ctx.tensor([n, m]) }, { unmerge: true }),
      /sbora.fb.unmerge: 'out' has shape \[8, 6\], expected \[m, n\] = \[6, 8\]/,
    );
    await expectThrows(() => sboraMerge(ctx, { ...fa, out: ctx.tensor([m, n]) }, { inPlace: true }), /'out' is not used with 'inPlace'/);
    release(X, W0, B, A, G, ia, ib, raw, i3);
  });
});

// A known-answer case of the vectors format, computed by the float64 reference.
function referenceCase(variant: 'fa' | 'fb', [T, n, m, r]: number[], scale: number) {
  const fa = variant === 'fa';
  const x = rand(T * n),
    w0 = rand(m * n),
    g = rand(T * m),
    factor = rand(fa ? m * r : r * n);
  const idx = Array.from(sampleIndices(fa ? n : m, r, T + n));
  const args = { T, n, m, r, scale, x, w0, g, idx, b: factor, a: factor };
  const { dx, dFactor } = ref.backward(fa ? { ...args, variant: 'fa' } : { ...args, variant: 'fb' });
  const delta = ref.delta(fa ? { ...args, variant: 'fa' } : { ...args, variant: 'fb' });
  const t = (shape: number[], data: ArrayLike<number>) => ({ shape, data: Array.from(data) });
  return {
    name: `sbora-${variant} reference`,
    params: { method: `sbora-${variant}`, T, inFeatures: n, outFeatures: m, rank: r, scale },
    inputs: { x: t([T, n], x), w0: t([m, n], w0), [fa ? 'b' : 'a']: t(fa ? [m, r] : [r, n], factor), dy: t([T, m], g), index: t([r], idx) },
    outputs: {
      y: t([T, m], ref.forward(fa ? { ...args, variant: 'fa' } : { ...args, variant: 'fb' })),
      dx: t([T, n], dx),
      [fa ? 'db' : 'da']: t(fa ? [m, r] : [r, n], dFactor),
      delta_w: t([m, n], delta),
      merged: t(
        [m, n],
        delta.map((v, e) => v + w0[e]),
      ),
    },
  };
}

describe('sbora vectors', () => {
  it('passes known-answer sbora-fa and sbora-fb cases from the reference and rejects a malformed index', async () => {
    const ctx = await gpu();
    const { runVectors } = await import('../src/vectors/index.js');
    const cases = [referenceCase('fa', [5, 13, 11, 3], 1.5), referenceCase('fb', [4, 9, 14, 5], 0.75)];
    const report = await runVectors(ctx, { cases }, { check: true });
    expect(report.failed, report.lines.join('\n')).to.equal(false);
    for (const c of report.result.cases) expect(c.status).to.equal('ok');
    const bad = structuredClone(cases[0]);
    bad.inputs.index.data = [bad.inputs.index.data[0], bad.inputs.index.data[0], bad.inputs.index.data[1]];
    const badReport = await runVectors(ctx, { cases: [bad] });
    expect(badReport.failed).to.equal(true);
    expect(badReport.result.cases[0].message).to.match(/'values' repeats index/);
  });

  it('is wired through each descriptor', () => {
    expect(sboraFa.vectors?.method).to.equal('sbora-fa');
    expect(sboraFb.vectors?.method).to.equal('sbora-fb');
  });
});

describe('sbora options, variants and tuning', () => {
  it('rejects an unknown option or variant, naming it', async () => {
    const { ctx, dev, free } = await uploads({ x: [[3, 8]], w0: [[6, 8]], b: [[6, 2]], g: [[3, 6]] });
    const idx = createIndexSet(ctx, { size: 8, values: [4, 2] });
    const p = { variant: 'fa' as const, w0: dev.w0, b: dev.b, idx, scale: 2 };
    await expectThrows(
      () => sboraForward(ctx, { ...p, x: dev.x }, { adapterOnly: true, inPlace: true } as never),
      /sbora.fa.forward: unknown option 'inPlace'/,
    );
    await expectThrows(
      () => sboraBackward(ctx, { ...p, x: dev.x, g: dev.g }, { encoder: undefined, save: true } as never),
      /sbora.fa.backward: unknown option 'save'/,
    );
    await expectThrows(() => sboraMerge(ctx, p, { adapterOnly: true } as never), /sbora.fa.merge: unknown option 'adapterOnly'/);
    await expectThrows(
      () => sboraMultiMerge(ctx, { w0: dev.w0, adapters: [p] }, { unmerge: true, deltaonly: true } as never),
      /sbora.multi.unmerge: unknown option 'deltaonly'/,
    );
    await expectThrows(
      () => sboraForward(ctx, { ...p, variant: 'fc' as never, x: dev.x }),
      /sbora.forward: 'variant' must be 'fa' or 'fb', got "fc"/,
    );
    await expectThrows(() => sboraMerge(ctx, { ...p, variant: undefined as never }), /sbora.merge: 'variant' must be 'fa' or 'fb'/);
    idx.destroy();
    free();
  });

  it('keeps its knobs per context, validated, and computes the same under other knobs', async () => {
    const ctx = await gpu();
    const saved = sboraTuning(ctx);
    await expectThrows(() => setSboraTuning(ctx, { lanes: 0 }), /setSboraTuning: 'lanes' must be an integer in \[1, \d+\], got 0/);
    await expectThrows(() => setSboraTuning(ctx, { gatherRows: 2.5 }), /'gatherRows' must be an integer/);
    await expectThrows(() => setSboraTuning(ctx, { rows: 4 } as never), /setSboraTuning: unknown option 'rows'/);
    expect(sboraTuning(ctx)).to.deep.equal(saved);
    const [T, n, m, r, s] = [11, 21, 30, 6, 1.25];
    const { dev, host, free } = await uploads({ x: [[T, n]], w0: [[m, n]], b: [[m, r]], a: [[r, n]], g: [[T, m]] });
    const ia = createIndexSet(ctx, { size: n, r, seed: 8 });
    const ib = createIndexSet(ctx, { size: m, r, seed: 9 });
    try {
      expect(setSboraTuning(ctx, { lanes: 16, gatherRows: 5 })).to.deep.equal({ lanes: 16, gatherRows: 5 });
      for (const [variant, idx] of [
        ['fa', ia],
        ['fb', ib],
      ] as const) {
        const p = variant === 'fa' ? { variant, w0: dev.w0, b: dev.b, idx, scale: s } : { variant, w0: dev.w0, a: dev.a, idx, scale: s };
        const args = { T, n, m, r, scale: s, ...host, idx: idx.values, variant };
        const { y } = await sboraForward(ctx, { ...p, x: dev.x });
        expectClose(await ctx.read(y), ref.forward(args), `${variant} y (lanes 16, gatherRows 5)`);
        const grads = await sboraBackward(ctx, { ...p, x: dev.x, g: dev.g });
        const want = ref.backward(args);
        expectClose(await ctx.read(grads.dx), want.dx, `${variant} dx`);
        expectClose(await ctx.read('db' in grads ? grads.db : grads.da), want.dFactor, `${variant} factor gradient`);
        release(y, grads.dx, 'db' in grads ? grads.db : grads.da);
      }
    } finally {
      expect(setSboraTuning(ctx, { lanes: undefined, gatherRows: undefined })).to.deep.equal(saved);
      release(ia, ib);
      free();
    }
  });
});

describe('sbora descriptors', () => {
  it('describe both methods: ids, tensors, ranks, parameters, FLOPs and unsuitable layers', () => {
    expect([sboraFa.id, sboraFa.label, sboraFa.peftType, sboraFa.family]).to.deep.equal(['sbora-fa', 'SBoRA-FA', 'SBORA', 'sbora']);
    expect([sboraFb.id, sboraFb.label, sboraFb.peftType, sboraFb.family]).to.deep.equal(['sbora-fb', 'SBoRA-FB', 'SBORA', 'sbora']);
    expect(sboraFa.tensors.map((t) => [t.name, t.key, t.dtype, t.trainable])).to.deep.equal([
      ['lora_B', 'lora_B.weight', 'f32', true],
      ['indices', 'indices', 'u32', false],
    ]);
    expect(sboraFb.tensors.map((t) => [t.name, t.key, t.dtype, t.trainable])).to.deep.equal([
      ['lora_A', 'lora_A.weight', 'f32', true],
      ['indices', 'indices', 'u32', false],
    ]);
    expect(sboraFa.rankFor(8, { n: 64, m: 64 })).to.equal(16);
    const d = { n: 40, m: 24, r: 6 };
    expect(sboraFa.paramCount(d, {})).to.equal(sboraAccounting('fa', d).trainableParams);
    expect(sboraFb.paramCount(d, {})).to.equal(sboraAccounting('fb', d).trainableParams);
    expect(sboraFa.flops(10, d, {})).to.deep.equal({
      forward: 2 * 24 * 40 * 10 + 2 * 24 * 6 * 10,
      backward: 2 * 24 * 40 * 10 + 4 * 24 * 6 * 10,
      adapterForward: 2 * 24 * 6 * 10,
      adapterBackward: 4 * 24 * 6 * 10,
    });
    expect(sboraFb.flops(10, d, {}).adapterForward).to.equal(2 * 40 * 6 * 10);
    expect(sboraFa.unsupported({ n: 4, m: 30, r: 5 }, {})).to.match(/r = 5 distinct indices cannot be drawn from \[0, n\) = \[0, 4\)/);
    expect(sboraFb.unsupported({ n: 4, m: 30, r: 5 }, {})).to.equal(null);
  });

  it('checkModule rejects a wrong shape or index set, naming the tensor', async () => {
    const [n, m, r] = [12, 8, 2];
    const label = (name: string) => `h1.${name === 'indices' ? 'indices' : `${name}.weight`}`;
    const fa = () => ({ lora_B: { shape: [m, r], data: rand(m * r) }, indices: { shape: [r], data: Uint32Array.from([3, 11]) } });
    const fb = () => ({ lora_A: { shape: [r, n], data: rand(r * n) }, indices: { shape: [r], data: Uint32Array.from([7, 0]) } });
    sboraFa.checkModule(fa(), r, {}, { n, m }, label, 'adapter');
    sboraFb.checkModule(fb(), r, {}, { n, m }, label, 'adapter');
    await expectThrows(
      () => sboraFa.checkModule({ ...fa(), lora_B: { shape: [m, r + 1], data: rand(m * (r + 1)) } }, r, {}, undefined, label, 'adapter'),
      /adapter: 'h1.lora_B.weight' has shape \[8, 3\], expected \[m, r\] with r = 2/,
    );
    await expectThrows(
      () => sboraFb.checkModule({ ...fb(), lora_A: { shape: [r + 1, n], data: rand((r + 1) * n) } }, r, {}, undefined, label, 'adapter'),
      /'h1.lora_A.weight' has shape \[3, 12\], expected \[r, n\] with r = 2/,
    );
    await expectThrows(
      () => sboraFa.checkModule(fa(), r, {}, { n, m: 9 }, label, 'adapter'),
      /'h1.lora_B.weight' has m = 8, but module 'h1' has 9 out-features/,
    );
    await expectThrows(
      () => sboraFb.checkModule(fb(), r, {}, { n: 10, m }, label, 'adapter'),
      /'h1.lora_A.weight' has n = 12, but module 'h1' has 10 in-features/,
    );
    await expectThrows(
      () => sboraFa.checkModule({ ...fa(), indices: { shape: [3], data: Uint32Array.from([1, 2, 3]) } }, r, {}, undefined, label, 'adapter'),
      /'h1.indices' has shape \[3\], expected \[r\] = \[2\]/,
    );
    await expectThrows(
      () => sboraFa.checkModule({ ...fa(), indices: { shape: [r], data: Uint32Array.from([3, 3]) } }, r, {}, undefined, label, 'adapter'),
      /'h1.indices' holds 3 twice; indices must be distinct/,
    );
    await expectThrows(
      () => sboraFa.checkModule({ ...fa(), indices: { shape: [r], data: Uint32Array.from([1, 12]) } }, r, {}, { n, m }, label, 'adapter'),
      /'h1.indices' holds 12, out of range \[0, 12\)/,
    );
    await expectThrows(
      () => sboraFb.checkModule({ ...fb(), indices: { shape: [r], data: Uint32Array.from([1, 8]) } }, r, {}, { n, m }, label, 'adapter'),
      /'h1.indices' holds 8, out of range \[0, 8\)/,
    );
  });

  for (const desc of [sboraFa, sboraFb]) {
    const fa = desc === sboraFa;
    it(`${desc.id}: createLayer runs the family's kernels, merges to what it computes and round-trips its tensors`, async () => {
      const [T, n, m, r, alpha] = [7, 21, 18, 5, 7.5];
      const scale = alpha / r;
      const { ctx, host, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n]], g: [[T, m]] });
      const size = fa ? n : m;
      const factorName = fa ? 'lora_B' : 'lora_A';
      const shape = fa ? [m, r] : [r, n];
      const y = ctx.tensor([T, m]);
      const dx = ctx.tensor([T, n]);
      const run = async (layer: ReturnType<typeof desc.createLayer>, opts?: { adapterOnly?: boolean }) => {
        await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y, opts));
        return Float32Array.from(await ctx.read(y));
      };
      // Fresh: indices sampled from the seed, the factor at zero; the forward is the family's.
      const fresh = desc.createLayer(ctx, { w0: dev.w0, r, alpha, seed: 11, name: 'h1' });
      expect(fresh.dims).to.deep.equal({ n, m, r });
      expect(fresh.trainables.map((t) => t.name)).to.deep.equal([`h1.${factorName}`]);
      const freshTensors = await fresh.tensors();
      expect(Object.keys(freshTensors).sort()).to.deep.equal([factorName, 'indices'].sort());
      expect(Array.from(freshTensors.indices.data)).to.deep.equal(Array.from(sampleIndices(size, r, 11)));
      expect(freshTensors.indices.data).to.be.instanceOf(Uint32Array);
      expect(Array.from(freshTensors[factorName].data).every((v) => v === 0)).to.equal(true);
      const idx = createIndexSet(ctx, { size, values: freshTensors.indices.data });
      const F = fresh.trainables[0].param;
      const p = fa ? { variant: 'fa' as const, w0: dev.w0, b: F, idx, scale } : { variant: 'fb' as const, w0: dev.w0, a: F, idx, scale };
      const family = await ctx.read((await sboraForward(ctx, { ...p, x: dev.x })).y);
      expect(Array.from(await run(fresh))).to.deep.equal(Array.from(family));
      // From a file's values: forward, backward and merge against the reference.
      const factor = rand(shape[0] * shape[1]);
      const from = { [factorName]: { shape, data: factor }, indices: { shape: [r], data: Uint32Array.from(freshTensors.indices.data) } };
      const layer = desc.createLayer(ctx, { w0: dev.w0, r, alpha, from, name: 'h1' });
      const args = { T, n, m, r, scale, ...host, idx: from.indices.data, b: factor, a: factor, variant: fa ? ('fa' as const) : ('fb' as const) };
      const got = await run(layer);
      expectClose(got, ref.forward(args), 'layer y');
      expectClose(await run(layer, { adapterOnly: true }), ref.forward(args, true), 'layer y (adapterOnly)');
      await ctx.encode(undefined, (enc) => layer.backward(enc, dev.x, dev.g, dx));
      expectClose(await ctx.read(dx), ref.backward(args).dx, 'layer dx');
      expectClose(await ctx.read(layer.trainables[0].grad), ref.backward(args).dFactor, 'layer factor gradient');
      // forward(x) = x · merge()ᵀ, and deltaOnly is ΔW alone.
      const merged = await layer.merge();
      expectClose(refMatmul(host.x, await ctx.read(merged), T, n, m, false, true), got, "X W'ᵀ", 1e-5);
      const delta = await layer.merge({ deltaOnly: true });
      expectClose(await ctx.read(delta), ref.delta(args), 'ΔW');
      // tensors() through spec.from: an identical layer.
      const again = desc.createLayer(ctx, { w0: dev.w0, r, alpha, from: await layer.tensors(), name: 'h1' });
      expect(Array.from(await run(again))).to.deep.equal(Array.from(got));
      await expectThrows(
        () => ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y, { save: true } as never)),
        new RegExp(`${desc.id}.forward: unknown option 'save'`),
      );
      await expectThrows(() => layer.merge({ inPlace: true } as never), new RegExp(`${desc.id}.merge: unknown option 'inPlace'`));
      expect(() => desc.createLayer(ctx, { w0: dev.w0, r: size + 1, alpha })).to.throw(
        new RegExp(`${desc.id}.createLayer: r = ${size + 1} distinct indices cannot be drawn`),
      );
      expect(() => desc.createLayer(ctx, { w0: dev.w0, r, alpha, options: { blocks: 2 } })).to.throw(/unknown option 'blocks'/);
      expect(() =>
        desc.createLayer(ctx, { w0: dev.w0, r, alpha, from: { ...from, indices: { shape: [r], data: Uint32Array.from([1, 1, 2, 3, 4]) } } }),
      ).to.throw(/repeats index 1/);
      for (const l of [fresh, layer, again]) l.destroy();
      release(y, dx, idx, merged, delta);
      free();
    });
  }
});

describe('sbora adapter dropout', () => {
  it("the reference equals LoRA's (one-hot factor, same mask) and its gradients match finite differences", () => {
    const [T, n, m, r, s] = [5, 11, 7, 3, 1.5];
    const dropout = { p: 0.4, seed: 77 };
    const x = toF64(rand(T * n)),
      w0 = rand(m * n),
      b = rand(m * r),
      a = toF64(rand(r * n)),
      g = rand(T * m);
    const idxA = sampleIndices(n, r, 4);
    const idxB = sampleIndices(m, r, 5);
    const fa = { T, n, m, r, scale: s, x, w0, b, idx: idxA, g, dropout };
    const lfa = { T, n, m, r, scale: s, x, w0, a: ref.oneHot('fa', idxA, n), b, g, dropout };
    expectClose(ref.faForward(fa), loraForward(lfa), 'FA y', 1e-12);
    expectClose(ref.faBackward(fa).dx, loraBackward(lfa).dx, 'FA dx', 1e-12);
    expectClose(ref.faBackward(fa).db, loraBackward(lfa).db, 'FA db', 1e-12);
    const fb = { T, n, m, r, scale: s, x, w0, a, idx: idxB, g, dropout };
    const lfb = { T, n, m, r, scale: s, x, w0, a, b: ref.oneHot('fb', idxB, m), g, dropout };
    expectClose(ref.fbForward(fb), loraForward(lfb), 'FB y', 1e-12);
    expectClose(ref.fbBackward(fb).dx, loraBackward(lfb).dx, 'FB dx', 1e-12);
    expectClose(ref.fbBackward(fb).da, loraBackward(lfb).da, 'FB da', 1e-12);
    // Some elements are dropped, so the mask matters.
    expect(relativeError(ref.faForward(fa), ref.faForward({ ...fa, dropout: undefined }))).to.be.above(1e-3);
    expect(
      relativeError(
        finiteDifference(() => dot(ref.fbForward(fb), g), x),
        ref.fbBackward(fb).dx,
      ),
    ).to.be.below(1e-6);
    expect(
      relativeError(
        finiteDifference(() => dot(ref.fbForward(fb), g), a),
        ref.fbBackward(fb).da,
      ),
    ).to.be.below(1e-6);
    expect(
      relativeError(
        finiteDifference(() => dot(ref.faForward(fa), g), x),
        ref.faBackward(fa).dx,
      ),
    ).to.be.below(1e-6);
  });

  // The second shape reaches the gather kernel's 16-byte-store entry and its second rank pass.
  for (const [tuning, [T, n, m, r]] of [
    ['direct', [9, 37, 29, 6]],
    ['tiled', [9, 37, 29, 6]],
    ['direct', [34, 40, 36, 18]],
    ['tiled', [10, 40, 36, 18]],
  ] as [Tuning['matmul'], number[]][]) {
    it(`the kernels apply the mask in place of a masked copy of X (tuning '${tuning}', T=${T} n=${n} m=${m} r=${r})`, async () => {
      const ctx = await gpu();
      const saved = ctx.tuning.matmul;
      ctx.tuning.matmul = tuning;
      try {
        const s = 1.25;
        const dropout = { p: 0.3, seed: 1234 };
        const x = rand(T * n),
          w0 = rand(m * n),
          b = rand(m * r),
          a = rand(r * n),
          g = rand(T * m);
        const [X, W0, B, A, G] = [ctx.upload(x, [T, n]), ctx.upload(w0, [m, n]), ctx.upload(b, [m, r]), ctx.upload(a, [r, n]), ctx.upload(g, [T, m])];
        const ia = createIndexSet(ctx, { size: n, r, seed: 21 });
        const ib = createIndexSet(ctx, { size: m, r, seed: 22 });
        const argsA = { T, n, m, r, scale: s, x, w0, b, g, idx: ia.values, dropout };
        const argsB = { T, n, m, r, scale: s, x, w0, a, g, idx: ib.values, dropout };
        const made: string[] = [];
        const stop = ctx.onAllocate((rec) => made.push(rec.label));
        for (const adapterOnly of [false, true]) {
          const fa = { variant: 'fa' as const, w0: W0, b: B, idx: ia, scale: s, x: X, dropout };
          const fb = { variant: 'fb' as const, w0: W0, a: A, idx: ib, scale: s, x: X, dropout };
          const ya = (await sboraForward(ctx, fa, { adapterOnly })).y;
          expectClose(await ctx.read(ya), ref.faForward(argsA, adapterOnly), `FA y (adapterOnly ${adapterOnly})`);
          const ga = await sboraBackward(ctx, { ...fa, g: G }, { adapterOnly });
          expectClose(await ctx.read(ga.dx), ref.faBackward(argsA, adapterOnly).dx, 'FA dx');
          expectClose(await ctx.read(ga.db), ref.faBackward(argsA).db, 'FA db');
          const yb = (await sboraForward(ctx, fb, { adapterOnly })).y;
          expectClose(await ctx.read(yb), ref.fbForward(argsB, adapterOnly), `FB y (adapterOnly ${adapterOnly})`);
          const gb = await sboraBackward(ctx, { ...fb, g: G }, { adapterOnly });
          expectClose(await ctx.read(gb.dx), ref.fbBackward(argsB, adapterOnly).dx, 'FB dx');
          expectClose(await ctx.read(gb.da), ref.fbBackward(argsB).da, 'FB da');
          release(ya, ga.dx, ga.db, yb, gb.dx, gb.da);
        }
        stop();
        // Only the outputs were allocated: no [T, n] masked copy of X, no mask.
        expect(
          made.every((l) => /^sbora\.(fa|fb)\.(y|dx|db|da)$/.test(l)),
          made.join(', '),
        ).to.equal(true);
        await expectThrows(
          () => sboraForward(ctx, { variant: 'fa', w0: W0, b: B, idx: ia, scale: s, x: X, dropout: { p: 1, seed: 1 } }),
          /'dropout.p' must be in \[0, 1\), got 1/,
        );
        await expectThrows(
          () => sboraBackward(ctx, { variant: 'fb', w0: W0, a: A, idx: ib, scale: s, x: X, g: G, dropout: { p: 0.1, seed: -2 } }),
          /'dropout.seed' must be a u32 integer/,
        );
        release(X, W0, B, A, G, ia, ib);
      } finally {
        ctx.tuning.matmul = saved;
      }
    });
  }
});
