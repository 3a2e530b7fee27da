// LoRA: GPU kernels against the float64 reference, the reference's gradients against central
// finite differences, the merge against the forward, and bad input.

import { expect } from 'chai';
import { lora, loraBackward, loraForward, loraInit, loraMerge } from '../src/methods/lora/index.js';
import * as ref from '../src/methods/lora/reference.js';
import { dot, matmul as refMatmul, toF64 } from '../src/reference/linalg.js';
import type { HostValues } from '../src/methods/types.js';
import { expectClose, expectGradients, expectThrows, gpu, rand, uploads } from './helpers.js';

// [T, n, m, r]: T = 1, sizes that are no multiple of any tile, ranks 1 to 16.
const SHAPES: [number, number, number, number][] = [
  [1, 37, 29, 1],
  [3, 8, 6, 2],
  [7, 37, 29, 5],
  [33, 29, 37, 8],
  [65, 70, 45, 16],
];

async function setup(T: number, n: number, m: number, r: number) {
  const { ctx, host, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], a: [[r, n], 0.5], b: [[m, r], 0.5], g: [[T, m]] });
  const refArgs = { T, n, m, r, scale: 2, x: host.x, w0: host.w0, a: host.a, b: host.b };
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
    expectClose(
      await ctx.read(grads.dx),
      full.dx.map((v, i) => v - base[i]),
      'adapter dx',
    );
    free();
  });

  it("encodes into the caller's command encoder and writes into the caller's tensors", async () => {
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

  it("merged weights reproduce the forward: X W'ᵀ = Y, and unmerge restores W0", async () => {
    const { ctx, dev, host, refArgs, free } = await setup(11, 37, 29, 6);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    const { y } = await loraForward(ctx, { ...p, x: dev.x });
    const merged = await ctx.read(await loraMerge(ctx, p));
    expectClose(refMatmul(host.x, merged, 11, 37, 29, false, true), await ctx.read(y), "X W'ᵀ vs forward", 2e-5);
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
      const x = toF64(rand(T * n)),
        w0 = toF64(rand(m * n)),
        a = toF64(rand(r * n)),
        b = toF64(rand(m * r)),
        g = toF64(rand(T * m));
      const args = { T, n, m, r, scale: 1.5, x, w0, a, b };
      const loss = () => dot(ref.loraForward(args), g);
      const grads = ref.loraBackward({ ...args, g });
      expectGradients(
        loss,
        [
          ['x', x, grads.dx],
          ['a', a, grads.da],
          ['b', b, grads.db],
        ],
        1e-7,
      );
    });
  }
});

describe('lora bad input', () => {
  it('rejects mismatched shapes, naming the argument and what was expected', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    await expectThrows(
      () => loraForward(ctx, { ...p, x: ctx.tensor([4, 9]) }),
      /lora\.forward: 'x' has shape \[4, 9\], expected \[T, n\] = \[4, 8\]/,
    );
    await expectThrows(() => loraForward(ctx, { ...p, b: ctx.tensor([6, 3]), x: dev.x }), /'b' has shape \[6, 3\], expected \[m, r\] = \[6, 2\]/);
    await expectThrows(() => loraForward(ctx, { ...p, a: ctx.tensor([2, 7]), x: dev.x }), /'a' has shape \[2, 7\], expected \[r, n\] = \[2, 8\]/);
    await expectThrows(
      () => loraBackward(ctx, { ...p, x: dev.x, g: ctx.tensor([4, 5]) }),
      /lora\.backward: 'g' has shape \[4, 5\], expected \[T, m\] = \[4, 6\]/,
    );
    await expectThrows(() => loraForward(ctx, { ...p, x: dev.x, y: ctx.tensor([4, 5]) }), /'y' has shape \[4, 5\], expected \[T, m\] = \[4, 6\]/);
    await expectThrows(
      () => loraMerge(ctx, { ...p, out: ctx.tensor([6, 7]) }),
      /lora\.merge: 'out' has shape \[6, 7\], expected \[m, n\] = \[6, 8\]/,
    );
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
    await expectThrows(
      () => loraBackward(ctx, { ...p, x: dev.x, g: ctx.tensor([4, 6]), da: dev.a }),
      /'da' and .* are the same buffer|'a' and 'da' are the same buffer/,
    );
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

  it('rejects a buffer too small for the declared shape and a tensor past the largest buffer', async () => {
    const ctx = await gpu();
    const { Tensor } = await import('../src/tensor.js');
    const small = ctx.device.createBuffer({ size: 16, usage: 0x80 | 0x08 });
    expect(() => Tensor.wrap(ctx, small, [2, 3], 'f32', 'w0')).to.throw(/'w0': buffer has 16 bytes, shape \[2, 3\] of f32 needs 24/);
    // Past the binding limit is allowed (products split across bindings: test/scale.test.ts);
    // past the largest buffer the device can make is not.
    const huge = Math.floor(ctx.limits.maxBufferSize / 4) + 1024;
    expect(() => ctx.tensor([huge], 'f32', 'big')).to.throw(/'big' needs \d+ bytes, past this device's maxBufferSize/);
    small.destroy();
  });
});

describe('lora options', () => {
  it('rejects an unknown option, naming it and the call', async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    const typo = { adaptorOnly: true } as never;
    await expectThrows(() => loraForward(ctx, { ...p, x: dev.x }, typo), /lora\.forward: unknown option 'adaptorOnly'/);
    await expectThrows(() => loraBackward(ctx, { ...p, x: dev.x, g: dev.g }, typo), /lora\.backward: unknown option 'adaptorOnly'/);
    await expectThrows(() => loraMerge(ctx, p, { inplace: true } as never), /lora\.merge: unknown option 'inplace'/);
    await expectThrows(() => loraMerge(ctx, p, { unmerge: true, save: true } as never), /lora\.unmerge: unknown option 'save'/);
    expect(() => loraInit({ n: 8, m: 6, r: 2, seed: 1, blocks: 2 } as never)).to.throw(/lora\.init: unknown option 'blocks'/);
    free();
  });

  it("merge options: 'inPlace' excludes 'deltaOnly' and 'out'", async () => {
    const { ctx, dev, free } = await setup(4, 8, 6, 2);
    const p = { w0: dev.w0, a: dev.a, b: dev.b, scale: 2 };
    await expectThrows(() => loraMerge(ctx, p, { inPlace: true, deltaOnly: true }), /lora\.merge: 'inPlace' and 'deltaOnly' exclude each other/);
    await expectThrows(() => loraMerge(ctx, { ...p, out: ctx.tensor([6, 8]) }, { inPlace: true }), /lora\.merge: 'out' is not used with 'inPlace'/);
    free();
  });

  it('init: A Kaiming-uniform from the seed, B zero; bad sizes named', () => {
    const { a, b } = loraInit({ n: 37, m: 29, r: 5, seed: 7 });
    expect(a.length).to.equal(5 * 37);
    expect(b.length).to.equal(29 * 5);
    expect(b.every((v) => v === 0)).to.equal(true);
    const bound = 1 / Math.sqrt(37);
    expect(a.every((v) => Math.abs(v) <= bound)).to.equal(true);
    expect(a.some((v) => v !== 0)).to.equal(true);
    expect(Array.from(loraInit({ n: 37, m: 29, r: 5, seed: 7 }).a)).to.deep.equal(Array.from(a));
    expect(() => loraInit({ n: 37, m: 0, r: 5, seed: 7 })).to.throw(/lora\.init: 'm' must be a positive integer, got 0/);
    expect(() => loraInit({ n: 4, m: 29, r: 5, seed: 7 })).to.throw(/rank r = 5 is above min\(n, m\)/);
  });
});

describe('lora descriptor', () => {
  const [T, n, m, r] = [7, 37, 29, 5];
  const alpha = 10; // scale s = alpha / r = 2

  it('createLayer from a seed: its forward is loraForward on its own tensors, its backward fills the gradients', async () => {
    const { ctx, host, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], g: [[T, m]] });
    const layer = lora.createLayer(ctx, { w0: dev.w0, r, alpha, seed: 3, name: 'h1' });
    expect(layer.dims).to.deep.equal({ n, m, r });
    expect(layer.trainables.map((t) => t.name)).to.deep.equal(['h1.lora_A', 'h1.lora_B']);
    const values = await layer.tensors();
    expect(Object.keys(values)).to.deep.equal(['lora_A', 'lora_B']);
    expect(Array.from(values.lora_A.data)).to.deep.equal(Array.from(loraInit({ n, m, r, seed: 3 }).a));
    const y = ctx.tensor([T, m]);
    const dx = ctx.tensor([T, n]);
    await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y));
    const [a, b] = layer.trainables.map((t) => t.param);
    const direct = await loraForward(ctx, { w0: dev.w0, a, b, scale: 2, x: dev.x });
    expect(Array.from(await ctx.read(y))).to.deep.equal(Array.from(await ctx.read(direct.y)));
    await ctx.encode(undefined, (enc) => layer.backward(enc, dev.x, dev.g, dx));
    const expected = ref.loraBackward({ T, n, m, r, scale: 2, x: host.x, w0: host.w0, a: values.lora_A.data, b: values.lora_B.data, g: host.g });
    expectClose(await ctx.read(dx), expected.dx, 'dx');
    expectClose(await ctx.read(layer.trainables[0].grad), expected.da, 'da');
    expectClose(await ctx.read(layer.trainables[1].grad), expected.db, 'db');
    for (const t of [y, dx, direct.y, direct.z]) t.destroy();
    layer.destroy();
    free();
  });

  it('createLayer from tensors: backward against the reference, forward(x) = x·merge()ᵀ, adapterOnly = x·ΔWᵀ, and tensors() round-trips to an identical forward', async () => {
    const { ctx, host, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], g: [[T, m]] });
    const from: Record<string, HostValues> = { lora_A: { shape: [r, n], data: rand(r * n, 0.5) }, lora_B: { shape: [m, r], data: rand(m * r, 0.5) } };
    const layer = lora.createLayer(ctx, { w0: dev.w0, r, alpha, from });
    const y = ctx.tensor([T, m]);
    await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y));
    const yHost = await ctx.read(y);
    const merged = await layer.merge();
    const mergedHost = await ctx.read(merged);
    expectClose(mergedHost, ref.loraMerge({ n, m, r, scale: 2, w0: host.w0, a: from.lora_A.data, b: from.lora_B.data }), 'merged');
    expectClose(yHost, refMatmul(host.x, mergedHost, T, n, m, false, true), 'x·merge()ᵀ vs forward', 2e-5);
    const dx = ctx.tensor([T, n]);
    await ctx.encode(undefined, (enc) => layer.backward(enc, dev.x, dev.g, dx));
    const expected = ref.loraBackward({ T, n, m, r, scale: 2, x: host.x, w0: host.w0, a: from.lora_A.data, b: from.lora_B.data, g: host.g });
    expectClose(await ctx.read(dx), expected.dx, 'dx');
    expectClose(await ctx.read(layer.trainables[0].grad), expected.da, 'da');
    expectClose(await ctx.read(layer.trainables[1].grad), expected.db, 'db');
    const delta = await layer.merge({ deltaOnly: true });
    await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y, { adapterOnly: true }));
    expectClose(await ctx.read(y), refMatmul(host.x, await ctx.read(delta), T, n, m, false, true), 'x·ΔWᵀ vs adapterOnly forward', 2e-5);

    const again = lora.createLayer(ctx, { w0: dev.w0, r, alpha, from: await layer.tensors() });
    const y2 = ctx.tensor([T, m]);
    await ctx.encode(undefined, (enc) => again.forward(enc, dev.x, y2));
    expect(Array.from(await ctx.read(y2))).to.deep.equal(Array.from(yHost));
    for (const t of [y, y2, dx, merged, delta]) t.destroy();
    layer.destroy();
    again.destroy();
    free();
  });

  it('createLayer rejects options LoRA does not take, a rank above min(n, m) and wrong starting values', async () => {
    const ctx = await gpu();
    const w0 = ctx.tensor([6, 8]);
    expect(() => lora.createLayer(ctx, { w0, r: 2, alpha: 2, options: { blocks: 2 } })).to.throw(/lora\.createLayer: unknown option 'blocks'/);
    expect(() => lora.createLayer(ctx, { w0, r: 7, alpha: 2 })).to.throw(/lora\.createLayer: rank r = 7 is above min\(n, m\)/);
    expect(() => lora.createLayer(ctx, { w0, r: 2, alpha: 2, from: { lora_A: { shape: [2, 7], data: new Float32Array(14) } } })).to.throw(
      /'lora_A' must be 16 f32 values/,
    );
    const layer = lora.createLayer(ctx, { w0, r: 2, alpha: 2 });
    await expectThrows(() => layer.merge({ inPlace: true } as never), /lora\.layer\.merge: unknown option 'inPlace'/);
    layer.destroy();
    w0.destroy();
  });

  it('checkModule rejects a wrong shape naming the tensor, and the base shape naming the module', () => {
    const label = (name: string) => `h1.${name}.weight`;
    const t = (a: number[], b: number[]): Record<string, HostValues> => ({
      lora_A: { shape: a, data: new Float32Array(a[0] * a[1]) },
      lora_B: { shape: b, data: new Float32Array(b[0] * b[1]) },
    });
    expect(() => lora.checkModule(t([2, 8], [6, 2]), 2, {}, { n: 8, m: 6 }, label, 'adapter')).not.to.throw();
    expect(() => lora.checkModule(t([3, 8], [6, 2]), 2, {}, undefined, label, 'adapter')).to.throw(
      /adapter: 'h1\.lora_A\.weight' has shape \[3, 8\], expected \[r, n\] with r = 2/,
    );
    expect(() => lora.checkModule(t([2, 8], [6, 3]), 2, {}, undefined, label, 'adapter')).to.throw(
      /'h1\.lora_B\.weight' has shape \[6, 3\], expected \[m, r\] with r = 2/,
    );
    expect(() => lora.checkModule(t([2, 8], [6, 2]), 2, {}, { n: 10, m: 6 }, label, 'adapter')).to.throw(
      /'h1\.lora_A\.weight' has n = 8, but module 'h1' has 10 in-features/,
    );
    expect(() => lora.checkModule(t([2, 8], [6, 2]), 2, {}, { n: 8, m: 9 }, label, 'adapter')).to.throw(
      /'h1\.lora_B\.weight' has m = 6, but module 'h1' has 9 out-features/,
    );
  });

  it('counts, FLOPs and what it does not support', () => {
    expect(lora.id).to.equal('lora');
    expect(lora.peftType).to.equal('LORA');
    expect(lora.tensors.map((s) => s.key)).to.deep.equal(['lora_A.weight', 'lora_B.weight']);
    expect(lora.rankFor(8, { n: 64, m: 64 })).to.equal(8);
    expect(lora.paramCount({ n: 64, m: 48, r: 8 }, {})).to.equal(8 * (64 + 48));
    const f = lora.flops(4, { n: 64, m: 48, r: 8 }, {});
    expect(f.adapterForward).to.equal(2 * 112 * 8 * 4);
    expect(f.forward).to.equal(2 * 64 * 48 * 4 + f.adapterForward);
    expect(f.backward - f.adapterBackward).to.equal(2 * 64 * 48 * 4);
    expect(lora.unsupported({ n: 64, m: 48, r: 8 }, {})).to.equal(null);
    expect(lora.unsupported({ n: 64, m: 4, r: 8 }, {})).to.match(/rank r = 8 is above min\(n, m\)/);
    expect(lora.vectors?.method).to.equal('lora');
    // Every base format runs (f16 and NF4 are decoded by the products): no case is turned away.
    expect(lora.vectors && 'accepts' in lora.vectors).to.equal(false);
  });
});
