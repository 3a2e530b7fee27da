// LoRA: GPU kernels against the float64 reference, the reference's gradients against central
// finite differences, the merge against the forward, and bad input.

import { expect } from 'chai';
import { loraBackward, loraForward, loraMerge } from '../src/lora.js';
import * as ref from '../src/reference/lora.js';
import { dot, finiteDifference, matmul as refMatmul, relativeError, toF64 } from '../src/reference/linalg.js';
import { expectClose, expectThrows, gpu, rand } from './helpers.js';

// [T, n, m, r]: T = 1, sizes that are no multiple of any tile, ranks 1 to 16.
const SHAPES: [number, number, number, number][] = [
  [1, 37, 29, 1],
  [3, 8, 6, 2],
  [7, 37, 29, 5],
  [33, 29, 37, 8],
  [65, 70, 45, 16],
];

async function setup(T: number, n: number, m: number, r: number) {
  const ctx = await gpu();
  const host = { x: rand(T * n), w0: rand(m * n, 0.5), a: rand(r * n, 0.5), b: rand(m * r, 0.5), g: rand(T * m) };
  const dev = {
    x: ctx.upload(host.x, [T, n], 'f32', 'x'),
    w0: ctx.upload(host.w0, [m, n], 'f32', 'w0'),
    a: ctx.upload(host.a, [r, n], 'f32', 'a'),
    b: ctx.upload(host.b, [m, r], 'f32', 'b'),
    g: ctx.upload(host.g, [T, m], 'f32', 'g'),
  };
  const refArgs = { T, n, m, r, scale: 2, x: host.x, w0: host.w0, a: host.a, b: host.b };
  const free = () => Object.values(dev).forEach((t) => t.destroy());
  return { ctx, host, dev, refArgs, free };
}

describe('lora kernels against the float64 reference', () => {
  for (const [T, n, m, r] of SHAPES) {
    it(`forward, backward, merge at T=${T} n=${n} m=${m} r=${r}`, async () => {
      const { ctx, dev, host, refArgs, free } = await setup(T, n, m, r);
      const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
      const { y, z } = await loraForward(ctx, { ...p, x: dev.x });
      expectClose(await ctx.read(y), ref.loraForward(refArgs), 'y');
      expectClose(await ctx.read(z), refMatmul(host.x, host.a, T, n, r, false, true), 'z');

      const expected = ref.loraBackward({ ...refArgs, g: host.g });
      for (const withZ of [true, false]) {
        const grads = await loraBackward(ctx, { ...p, x: dev.x, g: dev.g, z: withZ ? z : undefined });
        expectClose(await ctx.read(grads.dx), expected.dx, `dx (z ${withZ ? 'given' : 'recomputed'})`);
        expectClose(await ctx.read(grads.da), expected.da, 'da');
        expectClose(await ctx.read(grads.db), expected.db, 'db');
        Object.values(grads).forEach((t) => t.destroy());
      }

      const merged = await loraMerge(ctx, p);
      expectClose(await ctx.read(merged), ref.loraMerge(refArgs), 'merged');
      const delta = await loraMerge(ctx, p, { deltaOnly: true });
      expectClose(await ctx.read(delta), ref.loraDelta(refArgs), 'delta');
      for (const t of [y, z, merged, delta]) t.destroy();
      free();
    });
  }

  it('adapter path alone is s·(X Aᵀ)Bᵀ and its backward drops the base terms', async () => {
    const { ctx, dev, host, refArgs, free } = await setup(9, 21, 13, 3);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    const { y, z } = await loraForward(ctx, { ...p, x: dev.x }, { adapterOnly: true });
    expectClose(await ctx.read(y), ref.loraForward(refArgs, true), 'adapter y');
    const grads = await loraBackward(ctx, { ...p, x: dev.x, g: dev.g, z }, { adapterOnly: true });
    const full = ref.loraBackward({ ...refArgs, g: host.g });
    const base = refMatmul(host.g, host.w0, 9, 13, 21);
    expectClose(await ctx.read(grads.dx), full.dx.map((v, i) => v - base[i]), 'adapter dx');
    free();
  });

  it('encodes into the caller\'s command encoder and writes into the caller\'s tensors', async () => {
    const { ctx, dev, refArgs, free } = await setup(5, 12, 10, 4);
    const y = ctx.tensor([5, 10]);
    const z = ctx.tensor([5, 4]);
    const enc = ctx.device.createCommandEncoder();
    const out = await loraForward(ctx, { w0: dev.w0, a: dev.a, b: dev.b, scale: 2, x: dev.x, y, z }, { encoder: enc });
    expect(out.y).to.equal(y);
    ctx.submit(enc);
    expectClose(await ctx.read(y), ref.loraForward(refArgs), 'y');
    free();
  });

  it('merged weights reproduce the forward: X W\'ᵀ = Y, and unmerge restores W0', async () => {
    const { ctx, dev, host, refArgs, free } = await setup(11, 37, 29, 6);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    const { y } = await loraForward(ctx, { ...p, x: dev.x });
    const merged = await ctx.read(await loraMerge(ctx, p));
    expectClose(refMatmul(host.x, merged, 11, 37, 29, false, true), await ctx.read(y), 'X W\'ᵀ vs forward', 2e-5);
    await loraMerge(ctx, p, { inPlace: true });
    expectClose(await ctx.read(dev.w0), ref.loraMerge(refArgs), 'merged in place');
    await loraMerge(ctx, p, { inPlace: true, unmerge: true });
    expectClose(await ctx.read(dev.w0), host.w0, 'unmerged', 1e-6);
    free();
  });
});

describe('lora reference gradients against central finite differences', () => {
  for (const [T, n, m, r] of [
    [1, 5, 4, 1],
    [3, 7, 5, 3],
  ] as const) {
    it(`dX, dA, dB of sum(Y ⊙ G) at T=${T} n=${n} m=${m} r=${r}`, () => {
      const x = toF64(rand(T * n)), w0 = toF64(rand(m * n)), a = toF64(rand(r * n)), b = toF64(rand(m * r)), g = toF64(rand(T * m));
      const args = { T, n, m, r, scale: 1.5, x, w0, a, b };
      const loss = () => dot(ref.loraForward(args), g);
      const grads = ref.loraBackward({ ...args, g });
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
});

describe('lora bad input', () => {
  it('rejects mismatched shapes, naming the argument and what was expected', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    await expectThrows(() => loraForward(ctx, { ...p, x: ctx.tensor([4, 9]) }), /lora\.forward: 'x' has shape \[4, 9\], expected \[T, n\] = \[4, 8\]/);
    await expectThrows(() => loraForward(ctx, { ...p, b: ctx.tensor([6, 3]), x: dev.x }), /'b' has shape \[6, 3\], expected \[m, r\] = \[6, 2\]/);
    await expectThrows(() => loraForward(ctx, { ...p, a: ctx.tensor([2, 7]), x: dev.x }), /'a' has shape \[2, 7\], expected \[r, n\] = \[2, 8\]/);
    await expectThrows(() => loraBackward(ctx, { ...p, x: dev.x, g: ctx.tensor([4, 5]) }), /lora\.backward: 'g' has shape \[4, 5\], expected \[T, m\] = \[4, 6\]/);
    await expectThrows(() => loraForward(ctx, { ...p, x: dev.x, y: ctx.tensor([4, 5]) }), /'y' has shape \[4, 5\], expected \[T, m\] = \[4, 6\]/);
    await expectThrows(() => loraMerge(ctx, { ...p, out: ctx.tensor([6, 7]) }), /lora\.merge: 'out' has shape \[6, 7\], expected \[m, n\] = \[6, 8\]/);
    free();
  });

  it('rejects a rank above min(n, m)', async () => {
    const ctx = await gpu();
    await expectThrows(
      () => loraMerge(ctx, { w0: ctx.tensor([3, 8]), a: ctx.tensor([4, 8]), b: ctx.tensor([3, 4]), scale: 1 }),
      /rank r = 4 is above min\(n, m\) = min\(8, 3\) = 3/,
    );
  });

  it('rejects a non-finite scale, a missing tensor and an output aliasing an input', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    await expectThrows(() => loraForward(ctx, { ...p, scale: NaN, x: dev.x }), /'scale' must be a finite number, got NaN/);
    await expectThrows(() => loraForward(ctx, { ...p, b: undefined as never, x: dev.x }), /'b' must be a Tensor of shape \[m, r\]/);
    await expectThrows(() => loraBackward(ctx, { ...p, x: dev.x, g: ctx.tensor([4, 6]), da: dev.a }), /'da' and .* are the same buffer|'a' and 'da' are the same buffer/);
    free();
  });

  it('rejects zero, negative or fractional tensor sizes and wrong array lengths', async () => {
    const ctx = await gpu();
    expect(() => ctx.tensor([0, 4])).to.throw(/dimension 0 of shape \[0, 4\] is 0, expected a positive integer/);
    expect(() => ctx.tensor([3, -2])).to.throw(/dimension 1 of shape \[3, -2\] is -2/);
    expect(() => ctx.tensor([2.5])).to.throw(/dimension 0 of shape \[2.5\] is 2.5/);
    expect(() => ctx.upload(new Float32Array(5), [2, 3], 'f32', 'x')).to.throw(/'x' has 6 elements \(shape \[2, 3\]\), got 5 values/);
    expect(() => ctx.upload([1, -1], [2], 'u32', 'idx')).to.throw(/'idx': element 1 is -1, expected an unsigned 32-bit integer/);
  });

  it('rejects a buffer too small for the declared shape and a tensor past the binding limit', async () => {
    const ctx = await gpu();
    const { Tensor } = await import('../src/tensor.js');
    const small = ctx.device.createBuffer({ size: 16, usage: 0x80 | 0x08 });
    expect(() => Tensor.wrap(ctx, small, [2, 3], 'f32', 'w0')).to.throw(/'w0': buffer has 16 bytes, shape \[2, 3\] of f32 needs 24/);
    const huge = Math.floor(ctx.limits.maxStorageBufferBindingSize / 4) + 1024;
    expect(() => ctx.tensor([huge], 'f32', 'big')).to.throw(/'big' needs \d+ bytes, past this device's maxStorageBufferBindingSize/);
    small.destroy();
  });
});
