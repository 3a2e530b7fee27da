// Base weights in f16 and NF4 (src/base.ts) inside the products: matmul with a packed operand on
// every variant and transpose, split into row blocks, and every method's forward and backward with
// a packed W0, each against the float64 reference run on the dequantized weight. The weights are
// built here from random f16 bits / NF4 codes and absmax, packed by the layout src/base.ts
// documents, so the check does not depend on the quantizer it would otherwise share code with;
// the methods' oracle dequantizes the words read back off the device with src/quant/reference.ts.

import { expect } from 'chai';
import { BaseWeight, NF4_VALUES } from '../src/base.js';
import { matmul } from '../src/ops/matmul.js';
import { matmul as refMatmul, scale } from '../src/reference/linalg.js';
import type { Context, Tuning } from '../src/runtime.js';
import type { DispatchSpec } from '../src/runtime/dispatcher.js';
import { uniform } from '../src/random.js';
import type { Tensor } from '../src/tensor.js';
import type { AdapterLayer } from '../src/methods/types.js';
import * as loraRef from '../src/methods/lora/reference.js';
import * as boraRef from '../src/methods/bora/reference.js';
import * as sboraRef from '../src/methods/sbora/reference.js';
import * as lormaRef from '../src/methods/lorma/reference.js';
import { dequantizeF16Ref, dequantizeNf4Ref, unpackBytes, unpackHalves } from '../src/quant/reference.js';
import { expectClose, expectThrows, gpu, rand, TRANSPOSES, useMatmulVariant } from './helpers.js';

export type PackedFormat = 'f16' | 'nf4';

/** An f16 value from its bits (normal and subnormal; the tests make no Inf/NaN). */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  return sign * (exp === 0 ? frac * 2 ** -24 : (1 + frac / 1024) * 2 ** (exp - 15));
}

let seed = 0x5eed;

/**
 * A random [rows, cols] BaseWeight and its dequantized values. f16: random bits with exponents
 * giving |v| in [2^-4, 2) and a few subnormals; NF4: random codes (every one of the 16) and an
 * absmax in [0.25, 1.25) per block, so the last block may be partial.
 */
export function packedWeight(
  ctx: Context,
  format: PackedFormat,
  rows: number,
  cols: number,
  blockSize = 64,
): { w: BaseWeight; values: Float32Array } {
  const size = rows * cols;
  const r = uniform(size + Math.ceil(size / (blockSize || 64)), 1, seed++);
  const values = new Float32Array(size);
  if (format === 'f16') {
    const words = new Uint32Array(Math.ceil(size / 2));
    for (let i = 0; i < size; i++) {
      const u = Math.floor((r[i] + 1) * 2 ** 20);
      const exp = i % 97 === 3 ? 0 : 11 + (u % 5);
      const h = ((u >> 3) & 0x8000) | (exp << 10) | ((u >> 4) & 0x3ff);
      values[i] = f16Value(h);
      words[i >> 1] |= h << ((i & 1) * 16);
    }
    return { w: new BaseWeight('f16', [rows, cols], ctx.upload(words, [words.length], 'u32', 'w0.f16'), null, 0, 'w0'), values };
  }
  const blocks = Math.ceil(size / blockSize);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) absmax[b] = 0.75 + 0.5 * r[size + b];
  const bytes = new Uint8Array(Math.ceil(size / 8) * 4);
  for (let i = 0; i < size; i++) {
    const code = Math.floor((r[i] + 1) * 8) & 15;
    values[i] = Math.fround(NF4_VALUES[code] * absmax[Math.floor(i / blockSize)]);
    bytes[i >> 1] |= i % 2 === 0 ? code << 4 : code;
  }
  const words = new Uint32Array(bytes.buffer);
  const w = new BaseWeight(
    'nf4',
    [rows, cols],
    ctx.upload(words, [words.length], 'u32', 'w0.nf4'),
    ctx.upload(absmax, [blocks], 'f32', 'w0.absmax'),
    blockSize,
    'w0',
  );
  return { w, values };
}

/** W0 as the products should see it: the device's words read back and dequantized by the host reference. */
async function hostDequantized(ctx: Context, w: BaseWeight): Promise<Float32Array> {
  const words = await ctx.read(w.data as Tensor<'u32'>);
  if (w.format === 'f16') return dequantizeF16Ref(unpackHalves(words, w.size));
  const absmax = await ctx.read(w.absmax as Tensor<'f32'>);
  return dequantizeNf4Ref(unpackBytes(words, Math.ceil(w.size / 2)), absmax, w.blockSize, w.size);
}

interface ReferenceCase {
  T: number;
  n: number;
  m: number;
  r: number;
  scale: number;
  x: Float32Array;
  g: Float32Array;
  w0: Float32Array;
  options: Record<string, unknown>;
}

/**
 * Y, dX and each trainable's gradient (by trainable name) from the family's float64 reference,
 * with the layer's current values (its file tensors: factors, σ, SBoRA's indices).
 */
async function referenceOf(
  id: string,
  layer: AdapterLayer,
  c: ReferenceCase,
): Promise<{ y: ArrayLike<number>; dx: ArrayLike<number>; grads: Record<string, ArrayLike<number>> }> {
  const t = await layer.tensors();
  const base = { T: c.T, n: c.n, m: c.m, r: c.r, scale: c.scale, x: c.x, w0: c.w0 };
  switch (id) {
    case 'lora': {
      const args = { ...base, a: t.lora_A.data, b: t.lora_B.data };
      const { dx, da, db } = loraRef.loraBackward({ ...args, g: c.g });
      return { y: loraRef.loraForward(args), dx, grads: { lora_A: da, lora_B: db } };
    }
    case 'bora':
    case 'melora': {
      const args = { ...base, blocks: c.options.blocks as number, a: t.lora_A.data, b: t.lora_B.data, sigma: t.sigma?.data, variant: id };
      const want = boraRef.boraBackward({ ...args, g: c.g });
      const grads: Record<string, ArrayLike<number>> = { lora_A: want.da, lora_B: want.db };
      if (id === 'bora') grads.sigma = want.dsigma!;
      return { y: boraRef.boraForward(args), dx: want.dx, grads };
    }
    case 'sbora-fa': {
      const args = { ...base, idx: t.indices.data, b: t.lora_B.data };
      const { dx, db } = sboraRef.faBackward({ ...args, g: c.g });
      return { y: sboraRef.faForward(args), dx, grads: { lora_B: db } };
    }
    case 'sbora-fb': {
      const args = { ...base, idx: t.indices.data, a: t.lora_A.data };
      const { dx, da } = sboraRef.fbBackward({ ...args, g: c.g });
      return { y: sboraRef.fbForward(args), dx, grads: { lora_A: da } };
    }
    case 'lorma-plus':
    case 'lorma-pi': {
      const args = {
        ...base,
        variant: id === 'lorma-plus' ? ('plus' as const) : ('pi' as const),
        order: 'pre' as const,
        a: t.lora_A.data,
        b: t.lora_B.data,
      };
      const { dx, da, db } = lormaRef.lormaBackward({ ...args, g: c.g });
      return { y: lormaRef.lormaForward(args), dx, grads: { lora_A: da, lora_B: db } };
    }
    default:
      throw new Error(`no reference for method '${id}'`);
  }
}

export const FORMATS: { format: PackedFormat; blockSize: number; label: string }[] = [
  { format: 'f16', blockSize: 0, label: 'f16' },
  { format: 'nf4', blockSize: 32, label: 'nf4/32' },
  { format: 'nf4', blockSize: 64, label: 'nf4/64' },
];

/** Runs `fn` with every matmul dispatch's entry point recorded. */
async function entriesOf(ctx: Context, fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const original = ctx.dispatch.bind(ctx);
  ctx.dispatch = (enc: GPUCommandEncoder, spec: DispatchSpec) => {
    if (spec.shader.startsWith('matmul')) seen.push(spec.entry ?? 'main');
    original(enc, spec);
  };
  try {
    await fn();
  } finally {
    ctx.dispatch = original;
  }
  return seen;
}

// [M, N, K]: no tile multiple and an element count no multiple of 32; then sizes where the packed-B
// entries read whole words (NT needs K % 8, NN needs N and K % 4).
const SHAPES: [number, number, number][] = [
  [13, 37, 45],
  [12, 16, 40],
];

/** The entry 'direct' takes for a packed B of `format` (the packed-A products always read values one at a time). */
function directEntry(format: PackedFormat, operand: 'a' | 'b', N: number, K: number, transA: boolean, transB: boolean): string {
  if (operand === 'a' || transA) return `direct_q${operand}`;
  const whole = transB ? K % 8 === 0 : K % 4 === 0 && N % 4 === 0;
  return whole ? `direct_qb_${format}` : 'direct_qb';
}

for (const variant of ['direct', 'direct-scalar', 'tiled', 'tiled4'] as Tuning['matmul'][]) {
  describe(`matmul with a packed operand (${variant})`, () => {
    useMatmulVariant(variant);

    // The aligned shape changes the entry only under 'direct'; tiled4 falls back to tiled's `main_q*`
    // pipelines (the same ones), so one operand shows it.
    for (const { format, blockSize, label } of variant === 'direct' ? FORMATS : FORMATS.slice(0, 2)) {
      for (const operand of variant === 'tiled4' ? (['b'] as const) : (['a', 'b'] as const)) {
        for (const [M, N, K] of variant === 'direct' ? SHAPES : SHAPES.slice(0, 1)) {
          it(`${label} as '${operand}', C[${M}x${N}], K=${K}, all four transposes`, async () => {
            const ctx = await gpu();
            for (const [transA, transB] of TRANSPOSES) {
              const what = `transA=${transA}, transB=${transB}`;
              const aShape: [number, number] = transA ? [K, M] : [M, K];
              const bShape: [number, number] = transB ? [N, K] : [K, N];
              const packed = packedWeight(ctx, format, ...(operand === 'a' ? aShape : bShape), blockSize);
              const other = rand(M * K * N > 0 ? (operand === 'a' ? K * N : M * K) : 0);
              const otherT = ctx.upload(other, operand === 'a' ? bShape : aShape);
              const C = ctx.tensor([M, N]);
              const [a, b] = operand === 'a' ? [packed.values, other] : [other, packed.values];
              const entries = await entriesOf(ctx, () =>
                matmul(ctx, {
                  a: operand === 'a' ? packed.w : otherT,
                  b: operand === 'b' ? packed.w : otherT,
                  c: C,
                  M,
                  N,
                  K,
                  transA,
                  transB,
                  alpha: 0.75,
                }),
              );
              expectClose(await ctx.read(C), scale(refMatmul(a, b, M, K, N, transA, transB), 0.75), `C (${what})`);
              const expected =
                variant === 'direct'
                  ? directEntry(format, operand, N, K, transA, transB)
                  : variant === 'direct-scalar'
                    ? `direct_q${operand}`
                    : `main_q${operand}`;
              expect(entries, what).to.deep.equal([expected]);
              for (const t of [otherT, C]) t.destroy();
              packed.w.destroy();
            }
          });
        }
      }
    }

    it('fuses an f32 second product and accumulates with beta onto a packed base product', async () => {
      const ctx = await gpu();
      const [M, N, K, K2] = [21, 36, 48, 5];
      for (const { format, blockSize } of FORMATS.slice(0, 2)) {
        const packed = packedWeight(ctx, format, N, K, blockSize);
        const [x, a2, b2, c0] = [rand(M * K), rand(M * K2), rand(N * K2), rand(M * N)];
        const [X, A2, B2, C] = [ctx.upload(x, [M, K]), ctx.upload(a2, [M, K2]), ctx.upload(b2, [N, K2]), ctx.upload(c0, [M, N])];
        await matmul(ctx, { a: X, b: packed.w, c: C, M, N, K, transB: true, alpha: 1.5, beta: -0.5, second: { a: A2, b: B2, K: K2, alpha: 2 } });
        const base = refMatmul(x, packed.values, M, K, N, false, true);
        const adapter = refMatmul(a2, b2, M, K2, N, false, true);
        expectClose(
          await ctx.read(C),
          base.map((v, i) => 1.5 * v + 2 * adapter[i] - 0.5 * c0[i]),
          `C (${format})`,
        );
        for (const t of [X, A2, B2, C]) t.destroy();
        packed.w.destroy();
      }
    });
  });
}

describe('matmul with a packed operand split into row blocks (bindingLimit)', () => {
  // Each case binds W0 in several ranges: whole-word and mid-word starts, blocks along N (Bᵀ) and
  // along K (B, accumulated with beta = 1), an absmax bound whole.
  for (const { format, blockSize, label } of FORMATS) {
    for (const [transB, M, N, K] of [
      [true, 19, 300, 64],
      [false, 19, 36, 300],
      [true, 9, 150, 45],
      [false, 9, 45, 150],
    ] as [boolean, number, number, number][]) {
      it(`${label}: C[${M}x${N}] = X op(W0), K=${K}, transB=${transB}`, async () => {
        const ctx = await gpu();
        const packed = packedWeight(ctx, format, transB ? N : K, transB ? K : N, blockSize);
        const x = rand(M * K);
        const X = ctx.upload(x, [M, K]);
        const C = ctx.tensor([M, N]);
        const limit = Math.max(1024, Math.floor(packed.w.data.buffer.size / 3));
        const entries = await entriesOf(ctx, () => matmul(ctx, { a: X, b: packed.w, c: C, M, N, K, transB, bindingLimit: limit }));
        expect(entries.length, 'blocks').to.be.above(1);
        expectClose(await ctx.read(C), refMatmul(x, packed.values, M, K, N, false, transB), 'C');
        for (const t of [X, C]) t.destroy();
        packed.w.destroy();
      });
    }
  }
});

describe('matmul: packed operand arguments', () => {
  it('rejects a packed weight of the wrong shape, of another context, two packed operands, or one in the second product', async () => {
    const ctx = await gpu();
    const [M, N, K] = [5, 8, 12];
    const packed = packedWeight(ctx, 'nf4', N, K, 32);
    const X = ctx.upload(rand(M * K), [M, K]);
    const C = ctx.tensor([M, N]);
    await expectThrows(() => matmul(ctx, { a: X, b: packed.w, c: C, M, N, K }), /^matmul: 'b' has shape \[8, 12\], expected \[K, N\] = \[12, 8\]/);
    await expectThrows(() => matmul(ctx, { a: packed.w, b: packed.w, c: C, M: N, N: K, K: K, transB: true }), /both BaseWeights/);
    await expectThrows(
      () => matmul(ctx, { a: X, b: packed.w, c: C, M, N, K, transB: true, second: { a: X, b: packed.w as never, K } }),
      /'second.b' is a nf4 BaseWeight; the fused second product reads f32 Tensors only/,
    );
    const broken = new BaseWeight('nf4', [N, K], packed.w.data, packed.w.absmax, 48, 'w0');
    await expectThrows(() => matmul(ctx, { a: X, b: broken, c: C, M, N, K, transB: true }), /blockSize 48, expected a power of two/);
    const short = new BaseWeight('f16', [N, K], ctx.upload(new Uint32Array(10), [10], 'u32'), null, 0, 'w0');
    await expectThrows(() => matmul(ctx, { a: X, b: short, c: C, M, N, K, transB: true }), /expected u32 with at least 192 bytes/);
    const { Context } = await import('../src/runtime.js');
    const other = await Context.create();
    try {
      const foreign = packedWeight(other, 'f16', N, K);
      await expectThrows(() => matmul(ctx, { a: X, b: foreign.w, c: C, M, N, K, transB: true }), /'b' belongs to another context/);
    } finally {
      other.destroy();
    }
    for (const t of [X, C, short.data]) t.destroy();
    packed.w.destroy();
  });
});

describe('every method on a packed base weight', () => {
  // m = 39, n = 45: m·n = 1755 is no multiple of 32 or 64 (a partial last block), no size is a tile
  // multiple, and 3 divides both, so BoRA and MELoRA run with 3 × 3 blocks. Two oracles, both with
  // the trainables set to random values so every term counts: the family's float64 reference run
  // on W0 dequantized on the host (src/quant/reference.ts, from the words read back off the
  // device), and the same layer on an f32 W0 holding those values.
  const [T, m, n, r] = [13, 39, 45, 4];
  let methods: typeof import('../src/methods/registry.js').METHODS;
  before(async () => {
    methods = (await import('../src/methods/registry.js')).METHODS;
  });

  for (const id of ['lora', 'bora', 'melora', 'sbora-fa', 'sbora-fb', 'lorma-plus', 'lorma-pi']) {
    for (const { format, blockSize, label } of FORMATS) {
      it(`${id} on ${label}: forward Y, backward dX and every gradient against the float64 reference; no f32 buffer of W0's size`, async () => {
        const ctx = await gpu();
        const method = methods.find((d) => d.id === id)!;
        const options = id === 'bora' || id === 'melora' ? { blocks: 3 } : {};
        const packed = packedWeight(ctx, format, m, n, blockSize);
        const w0 = await hostDequantized(ctx, packed.w);
        expect(Array.from(w0), 'host dequantization of the device words').to.deep.equal(Array.from(packed.values));
        const w32 = ctx.upload(w0, [m, n], 'f32', 'w0.dequantized');
        const spec = { r, alpha: 2 * r, options, seed: 7 };
        const layers = [method.createLayer(ctx, { ...spec, w0: packed.w }), method.createLayer(ctx, { ...spec, w0: w32 })];
        for (let i = 0; i < layers[0].trainables.length; i++) {
          const values = rand(layers[0].trainables[i].param.size, 0.5);
          for (const layer of layers) ctx.write(layer.trainables[i].param, values);
        }
        const xs = rand(T * n);
        const gs = rand(T * m);
        const x = ctx.upload(xs, [T, n]);
        const g = ctx.upload(gs, [T, m]);
        const outs = layers.map(() => ({ y: ctx.tensor([T, m]), dx: ctx.tensor([T, n]) }));
        ctx.releaseScratch();
        const seen: { label: string; bytes: number }[] = [];
        for (const [k, layer] of layers.entries()) {
          const stop = k === 0 ? ctx.onAllocate((rec) => seen.push(rec)) : () => {};
          try {
            await ctx.encode(undefined, async (enc) => {
              await layer.forward(enc, x, outs[k].y);
              await layer.backward(enc, x, g, outs[k].dx);
            });
            await ctx.sync();
          } finally {
            stop();
          }
        }
        const big = seen.filter((rec) => rec.bytes >= m * n * 4);
        expect(
          big.map((b) => b.label),
          'f32 buffers of W0 size',
        ).to.deep.equal([]);

        const want = await referenceOf(id, layers[0], { T, n, m, r, scale: 2, x: xs, g: gs, w0, options });
        const y = await ctx.read(outs[0].y);
        const dx = await ctx.read(outs[0].dx);
        expectClose(y, want.y, 'y (float64 reference)');
        expectClose(dx, want.dx, 'dx (float64 reference)');
        // Some layers prefix their trainables' names with the method id ('sbora-fa.lora_B').
        const fileName = (name: string) => name.slice(name.lastIndexOf('.') + 1);
        expect(layers[0].trainables.map((t) => fileName(t.name)).sort(), 'trainables').to.deep.equal(Object.keys(want.grads).sort());
        for (const t of layers[0].trainables) expectClose(await ctx.read(t.grad), want.grads[fileName(t.name)], `d${t.name} (float64 reference)`);

        expectClose(y, await ctx.read(outs[1].y), 'y (f32 W0)');
        expectClose(dx, await ctx.read(outs[1].dx), 'dx (f32 W0)');
        for (let i = 0; i < layers[0].trainables.length; i++) {
          const name = layers[0].trainables[i].name;
          expectClose(await ctx.read(layers[0].trainables[i].grad), await ctx.read(layers[1].trainables[i].grad), `d${name} (f32 W0)`);
        }
        for (const layer of layers) layer.destroy();
        for (const t of [x, g, w32, ...outs.flatMap((o) => [o.y, o.dx])]) t.destroy();
        packed.w.destroy();
      });
    }
  }

  it('rejects a packed W0 of another context or a malformed one, naming the call', async () => {
    const ctx = await gpu();
    const { loraForward } = await import('../src/methods/lora/kernels.js');
    const packed = packedWeight(ctx, 'nf4', m, n, 64);
    const [x, a, b] = [ctx.upload(rand(T * n), [T, n]), ctx.upload(rand(r * n), [r, n]), ctx.upload(rand(m * r), [m, r])];
    const { Context } = await import('../src/runtime.js');
    const other = await Context.create();
    try {
      const foreign = packedWeight(other, 'f16', m, n);
      await expectThrows(() => loraForward(ctx, { x, w0: foreign.w, a, b, scale: 1 }), /^lora\.forward: 'w0' belongs to another context/);
    } finally {
      other.destroy();
    }
    const noAbsmax = new BaseWeight('nf4', [m, n], packed.w.data, null, 64, 'w0');
    await expectThrows(
      () => loraForward(ctx, { x, w0: noAbsmax, a, b, scale: 1 }),
      /^lora\.forward: 'w0\.absmax' must be an f32 Tensor of 28 absmax values/,
    );
    const wrong = new BaseWeight('nf4', [n, m], packed.w.data, packed.w.absmax, 64, 'w0');
    await expectThrows(
      () => loraForward(ctx, { x, w0: wrong, a, b, scale: 1 }),
      /^lora\.forward: 'a' has shape \[4, 45\], expected \[r, n\] = \[4, 39\]/,
    );
    for (const t of [x, a, b]) t.destroy();
    packed.w.destroy();
  });
});
