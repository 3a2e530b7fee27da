// Fused attention (src/attention.ts): forward and all three gradients against the float64
// reference on shapes that are no tile multiple, the reference's gradients against central finite
// differences, causal masking, memory (no T×T buffer) and bad input.

import { expect } from 'chai';
import { attentionBackward, attentionForward, type AttentionShape } from '../src/attention.js';
import * as ref from '../src/reference/attention.js';
import { toF64 } from '../src/reference/linalg.js';
import type { Tensor } from '../src/tensor.js';
import { expectClose, expectGradients, expectThrows, gpu, rand } from './helpers.js';

const name = (s: AttentionShape) =>
  `batch ${s.batch}, T ${s.T}, heads ${s.heads}, headDim ${s.headDim}, ${s.causal === false ? 'full' : 'causal'}` +
  (s.scale !== undefined ? `, scale ${s.scale}` : '');

describe('attention against the float64 reference', () => {
  const shapes: AttentionShape[] = [
    { batch: 1, T: 1, heads: 1, headDim: 16 },
    { batch: 1, T: 1, heads: 2, headDim: 24, causal: false },
    { batch: 1, T: 37, heads: 3, headDim: 17 }, // heads·headDim = 51
    { batch: 2, T: 37, heads: 3, headDim: 17, causal: false, scale: 0.3 },
    { batch: 2, T: 37, heads: 2, headDim: 24 },
    { batch: 1, T: 200, heads: 2, headDim: 64 },
    { batch: 1, T: 200, heads: 1, headDim: 16, causal: false },
    { batch: 2, T: 45, heads: 1, headDim: 128, causal: false },
    { batch: 1, T: 70, heads: 1, headDim: 128, scale: 0.05 },
    { batch: 1, T: 21, heads: 5, headDim: 33, causal: true, scale: -0.4 }, // 165 columns; a negative scale flips the order
  ];
  for (const s of shapes) {
    it(`forward, dq, dk, dv: ${name(s)}`, async () => {
      const ctx = await gpu();
      const n = s.batch * s.T * s.heads * s.headDim;
      const shape = [s.batch * s.T, s.heads * s.headDim];
      // q and k at ±2: scores of a few units, so the softmax is neither flat nor one-hot.
      const host = { q: rand(n, 2), k: rand(n, 2), v: rand(n), dy: rand(n) };
      const [q, k, v, dy] = [host.q, host.k, host.v, host.dy].map((a) => ctx.upload(a, shape));
      const { y, lse } = await attentionForward(ctx, { ...s, q, k, v });
      const want = ref.attentionForward({ ...s, ...host });
      expectClose(await ctx.read(y), want.y, 'y');
      expectClose(await ctx.read(lse), want.lse, 'lse');
      const { dq, dk, dv } = await attentionBackward(ctx, { ...s, q, k, v, y, lse, dy });
      const grads = ref.attentionBackward({ ...s, ...host });
      expectClose(await ctx.read(dq), grads.dq, 'dq');
      expectClose(await ctx.read(dk), grads.dk, 'dk');
      expectClose(await ctx.read(dv), grads.dv, 'dv');
      for (const t of [q, k, v, dy, y, lse, dq, dk, dv]) t.destroy();
    });
  }

  it('writes into the caller’s outputs, and two calls in one encoder give the same as two submits', async () => {
    const ctx = await gpu();
    const s = { batch: 1, T: 29, heads: 2, headDim: 20 };
    const shape = [29, 40];
    const host = { q: rand(29 * 40, 2), k: rand(29 * 40, 2), v: rand(29 * 40), dy: rand(29 * 40) };
    const [q, k, v, dy] = [host.q, host.k, host.v, host.dy].map((a) => ctx.upload(a, shape));
    const outs = { y: ctx.tensor(shape), lse: ctx.tensor([58]), dq: ctx.tensor(shape), dk: ctx.tensor(shape), dv: ctx.tensor(shape) };
    const enc = ctx.device.createCommandEncoder();
    const f = await attentionForward(ctx, { ...s, q, k, v, y: outs.y, lse: outs.lse }, { encoder: enc });
    const b = await attentionBackward(ctx, { ...s, q, k, v, y: outs.y, lse: outs.lse, dy, dq: outs.dq, dk: outs.dk, dv: outs.dv }, { encoder: enc });
    ctx.submit(enc);
    expect(f.y).to.equal(outs.y);
    expect(b.dk).to.equal(outs.dk);
    const want = ref.attentionBackward({ ...s, ...host });
    expectClose(await ctx.read(outs.y), ref.attentionForward({ ...s, ...host }).y, 'y');
    expectClose(await ctx.read(outs.dq), want.dq, 'dq');
    expectClose(await ctx.read(outs.dk), want.dk, 'dk');
    expectClose(await ctx.read(outs.dv), want.dv, 'dv');
    for (const t of [q, k, v, dy, ...Object.values(outs)]) t.destroy();
  });

  it('causal: changing a future token’s k and v changes no earlier output row, in y or in dq', async () => {
    const ctx = await gpu();
    const s = { batch: 2, T: 40, heads: 2, headDim: 19 };
    const cols = 38;
    const shape = [80, cols];
    const host = { q: rand(80 * cols, 2), k: rand(80 * cols, 2), v: rand(80 * cols), dy: rand(80 * cols) };
    const run = async (k: Float32Array, v: Float32Array) => {
      const [tq, tk, tv, tdy] = [host.q, k, v, host.dy].map((a) => ctx.upload(a, shape));
      const { y, lse } = await attentionForward(ctx, { ...s, q: tq, k: tk, v: tv });
      const { dq } = await attentionBackward(ctx, { ...s, q: tq, k: tk, v: tv, y, lse, dy: tdy });
      const out = { y: await ctx.read(y), dq: await ctx.read(dq) };
      for (const t of [tq, tk, tv, tdy, y, lse, dq]) t.destroy();
      return out;
    };
    const before = await run(host.k, host.v);
    const t0 = 23;
    const k2 = host.k.slice();
    const v2 = host.v.slice();
    for (const b of [0, 1]) {
      for (let c = 0; c < cols; c++) {
        k2[(b * 40 + t0) * cols + c] += 5;
        v2[(b * 40 + t0) * cols + c] -= 3;
      }
    }
    const after = await run(k2, v2);
    for (const b of [0, 1]) {
      const early = [b * 40 * cols, (b * 40 + t0) * cols] as const;
      expect(Array.from(after.y.subarray(...early)), `y rows before ${t0}`).to.deep.equal(Array.from(before.y.subarray(...early)));
      expect(Array.from(after.dq.subarray(...early)), `dq rows before ${t0}`).to.deep.equal(Array.from(before.dq.subarray(...early)));
      // The token itself does see its own key: its row changes.
      const own = [(b * 40 + t0) * cols, (b * 40 + t0 + 1) * cols] as const;
      expect(Array.from(after.y.subarray(...own))).to.not.deep.equal(Array.from(before.y.subarray(...own)));
    }
  });

  it('allocates no T×T buffer at T = 1024: only the outputs, lse and the backward’s row sums', async () => {
    const ctx = await gpu();
    const s = { batch: 1, T: 1024, heads: 2, headDim: 16 };
    const shape = [1024, 32];
    const [q, k, v, dy] = [0, 1, 2, 3].map(() => ctx.upload(rand(1024 * 32), shape));
    ctx.releaseScratch();
    const seen: number[] = [];
    const stop = ctx.onAllocate((r) => seen.push(r.bytes));
    const { y, lse } = await attentionForward(ctx, { ...s, q, k, v });
    const { dq, dk, dv } = await attentionBackward(ctx, { ...s, q, k, v, y, lse, dy });
    await ctx.sync();
    stop();
    // The rows are 1024·32 floats (128 KiB); T×T floats would be 4 MiB per head.
    expect(Math.max(...seen)).to.be.at.most(1024 * 32 * 4);
    const total = seen.reduce((a, b) => a + b, 0);
    // y, dq, dk, dv, lse, D (and small uniforms): O(T·heads·headDim).
    expect(total).to.be.below(4 * 1024 * 32 * 4 + 2 * 1024 * 2 * 4 + 64 * 1024);
    for (const t of [q, k, v, dy, y, lse, dq, dk, dv] as Tensor[]) t.destroy();
  });
});

describe('attention reference gradients', () => {
  for (const s of [
    { batch: 2, T: 5, heads: 2, headDim: 3 },
    { batch: 1, T: 6, heads: 1, headDim: 4, causal: false, scale: 0.7 },
    { batch: 1, T: 1, heads: 2, headDim: 2 },
  ] as AttentionShape[]) {
    it(`dq, dk, dv against central differences: ${name(s)}`, () => {
      const n = s.batch * s.T * s.heads * s.headDim;
      const q = toF64(rand(n, 2));
      const k = toF64(rand(n, 2));
      const v = toF64(rand(n));
      const w = toF64(rand(n));
      // L = Σ w ⊙ y, so ∂L/∂y = w.
      const loss = () => {
        const { y } = ref.attentionForward({ ...s, q, k, v });
        let sum = 0;
        for (let i = 0; i < n; i++) sum += w[i] * y[i];
        return sum;
      };
      const g = ref.attentionBackward({ ...s, q, k, v, dy: w });
      expectGradients(
        loss,
        [
          ['q', q, g.dq],
          ['k', k, g.dk],
          ['v', v, g.dv],
        ],
        1e-6,
      );
    });
  }

  it('lse is the log of the softmax denominator', () => {
    const s = { batch: 1, T: 4, heads: 1, headDim: 2, scale: 1 };
    const q = [1, 0, 0, 1, 1, 1, 2, 0];
    const k = [0, 1, 1, 0, 1, 1, 0, 0];
    const { lse } = ref.attentionForward({ ...s, q, k, v: new Array(8).fill(0) });
    // Row 2 (q = [1, 1]) sees keys 0 … 2: scores 1, 1, 2.
    expect(lse[2]).to.be.closeTo(Math.log(2 * Math.E + Math.E ** 2), 1e-12);
  });
});

describe('attention bad input', () => {
  const s = { batch: 2, T: 5, heads: 2, headDim: 16 };
  const shape = [10, 32];
  it('refuses mismatched q, k, v shapes, naming the tensor', async () => {
    const ctx = await gpu();
    const q = ctx.zeros(shape);
    const k = ctx.zeros([10, 33]);
    const v = ctx.zeros(shape);
    await expectThrows(() => attentionForward(ctx, { ...s, q, k, v }), /attention\.forward/, /'k' has shape \[10, 33\]/, /heads·headDim/);
    const k2 = ctx.zeros([9, 32]);
    await expectThrows(() => attentionForward(ctx, { ...s, q, k: k2, v }), /'k' has shape \[9, 32\]/, /batch·T/);
    // q is checked first; its 10 rows are not batch·T = 2·4.
    await expectThrows(() => attentionForward(ctx, { ...s, T: 4, q, k: k2, v }), /'q'.*\[10, 32\]/, /\[8, 32\]/);
    const lse = ctx.zeros([19]);
    const [k3, y, dy] = [0, 1, 2].map(() => ctx.zeros(shape));
    await expectThrows(() => attentionBackward(ctx, { ...s, q, k: k3, v, y, lse, dy }), /attention\.backward/, /'lse'/, /\[20\]/);
    for (const t of [q, k, v, k2, k3, lse, y, dy]) t.destroy();
  });

  it('refuses headDim past 128, a bad scale, a non-boolean causal, and T past the device’s binding limit', async () => {
    const ctx = await gpu();
    const big = [0, 1, 2].map(() => ctx.zeros([2, 256]));
    await expectThrows(
      () => attentionForward(ctx, { batch: 1, T: 2, heads: 1, headDim: 256, q: big[0], k: big[1], v: big[2] }),
      /'headDim' is 256/,
      /128/,
    );
    const q = ctx.zeros(shape);
    const k = ctx.zeros(shape);
    const v = ctx.zeros(shape);
    await expectThrows(() => attentionForward(ctx, { ...s, scale: Number.NaN, q, k, v }), /'scale'/);
    await expectThrows(() => attentionForward(ctx, { ...s, causal: 'yes' as unknown as boolean, q, k, v }), /'causal'/);
    await expectThrows(() => attentionForward(ctx, { ...s, T: 0, q, k, v }), /'T' must be a positive integer/);
    const T = Math.ceil(ctx.limits.maxStorageBufferBindingSize / (32 * 4)) + 1;
    await expectThrows(() => attentionForward(ctx, { ...s, batch: 1, T, q, k, v }), /'T' = \d+/, /maxStorageBufferBindingSize/);
    await expectThrows(() => attentionForward(ctx, { ...s, q, k: q, v }), /attention\.forward/, /'q'.*'k'|'k'.*'q'/);
    await expectThrows(() => attentionForward(ctx, { ...s, q, k, v }, { bogus: 1 } as object), /unknown option 'bogus'/);
    for (const t of [...big, q, k, v]) t.destroy();
  });
});
