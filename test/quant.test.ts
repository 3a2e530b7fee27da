// Base-weight formats: the device quantizer and f16 conversion bit-exact against the reference
// (src/quant/reference.ts), the formats' bytes, loading from host data and safetensors, merges
// from and into f16/NF4 weights, and bad input.

import { expect } from 'chai';
import { BaseWeight, NF4_VALUES } from '../src/base.js';
import { Context } from '../src/runtime.js';
import type { Tensor } from '../src/tensor.js';
import {
  dequantize,
  f16Weight,
  f16WeightFromBf16,
  f16WeightFromBits,
  nf4Weight,
  nf4WeightFromNested,
  quantizeNf4,
  readWeight,
  toF16,
  weightFromSafetensors,
} from '../src/quant/index.js';
import * as q from '../src/quant/reference.js';
import { mergeInto } from '../src/methods/common.js';
import { matmul } from '../src/ops/matmul.js';
import { decodeSafetensors, encodeSafetensors } from '../src/adapters.js';
import { SHADERS } from '../src/generated/shaders.js';
import { expectClose, expectThrows, gpu, rand } from './helpers.js';

const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

async function quantizeOnDevice(ctx: Context, values: Float32Array, shape: [number, number], blockSize: number, viaF16 = false) {
  const src: Tensor | BaseWeight = viaF16 ? f16Weight(ctx, values, shape) : ctx.upload(values, shape);
  try {
    const w = await quantizeNf4(ctx, src, { blockSize });
    try {
      const host = await readWeight(ctx, w);
      if (host.format !== 'nf4') throw new Error('expected nf4');
      const deq = await dequantize(ctx, w);
      const dequant = await ctx.readF32(deq);
      deq.destroy();
      return { ...host, dequant, bytes: w.bytes };
    } finally {
      w.destroy();
    }
  } finally {
    src.destroy();
  }
}

async function expectQuantizerExact(ctx: Context, values: Float32Array, shape: [number, number], blockSize: number, what: string) {
  const want = q.quantizeNf4Ref(values, blockSize);
  const got = await quantizeOnDevice(ctx, values, shape, blockSize);
  expect(bitsOf(got.absmax), `${what}: absmax`).to.deep.equal(bitsOf(want.absmax));
  expect(Array.from(got.codes), `${what}: codes`).to.deep.equal(Array.from(want.codes));
  const deq = q.dequantizeNf4Ref(want.codes, want.absmax, blockSize, values.length);
  expect(bitsOf(got.dequant), `${what}: dequantized`).to.deep.equal(bitsOf(deq));
}

describe('quant', () => {
  it("the shader's NF4 levels and tie thresholds are the reference's", () => {
    const src = SHADERS.quant;
    const hex = (v: number) => `0x${q.f32Bits(v).toString(16).padStart(8, '0')}u`;
    const list = (name: string) =>
      src
        .match(new RegExp(`const ${name} = array<u32, \\d+>\\(([^)]*)\\)`))![1]
        .split(',')
        .map((s) => s.trim());
    expect(list('NF4_BITS')).to.deep.equal(Array.from(NF4_VALUES, hex));
    expect(list('NF4_LOWER')).to.deep.equal(Array.from(q.nf4Thresholds(), hex));
  });

  it('the reference quantizer: nearest level, ties to the lower, all-zero blocks code 7', () => {
    // value · (1/absmax) with absmax 1 is the value itself.
    for (let k = 0; k < 15; k++) {
      const mid = (NF4_VALUES[k] + NF4_VALUES[k + 1]) / 2;
      const t = q.nf4Thresholds()[k];
      expect(q.nearestNf4(t), `threshold ${k}`).to.equal(k);
      expect(q.nearestNf4(q.nextUp(t)), `above threshold ${k}`).to.equal(k + 1);
      if (Math.fround(mid) === mid) expect(q.nearestNf4(mid), `exact tie ${k}`).to.equal(k);
    }
    const z = q.quantizeNf4Ref(new Float32Array(40), 32);
    expect(Array.from(z.codes)).to.deep.equal(new Array(20).fill(0x77));
    expect(Array.from(z.absmax)).to.deep.equal([0, 0]);
  });

  it('quantizes bit-exactly against the reference: odd sizes, block sizes 32 to 4096, partial last blocks', async () => {
    const ctx = await gpu();
    const cases: [[number, number], number][] = [
      [[37, 29], 32], // 1073 values: a partial last block of 17, an odd count (a lone high nibble)
      [[29, 37], 64],
      [[33, 41], 128],
      [[45, 70], 256],
      [[61, 67], 4096], // one partial block
      [[97, 89], 4096], // 8633 values: two whole blocks and a partial one
      [[8, 64], 64],
    ];
    for (const [shape, blockSize] of cases) {
      const values = rand(shape[0] * shape[1], 2);
      await expectQuantizerExact(ctx, values, shape, blockSize, `[${shape.join(', ')}] block ${blockSize}`);
    }
  });

  it('an f16 input quantizes as its values do', async () => {
    const ctx = await gpu();
    const shape: [number, number] = [13, 31];
    const values = Float32Array.from(rand(13 * 31, 3), (v) => q.roundF16(v));
    const want = q.quantizeNf4Ref(values, 64);
    const got = await quantizeOnDevice(ctx, values, shape, 64, true);
    expect(Array.from(got.codes)).to.deep.equal(Array.from(want.codes));
    expect(bitsOf(got.absmax)).to.deep.equal(bitsOf(want.absmax));
  });

  it('ties, thresholds, an all-zero block, a one-value block and extreme scales', async () => {
    const ctx = await gpu();
    const block = 32;
    const v: number[] = [];
    // Block 0: absmax 1, every threshold and the f32 above it, and the exact ties.
    const t = q.nf4Thresholds();
    v.push(1, -1);
    for (let k = 0; k < 15; k++) v.push(t[k], q.nextUp(t[k]));
    // Blocks 1 and 2: exact midpoints under absmax 1 (ties go to the lower code), then zeros.
    const b1: number[] = [1];
    for (let k = 0; k < 15; k++) {
      const mid = (NF4_VALUES[k] + NF4_VALUES[k + 1]) / 2;
      if (Math.fround(mid) === mid) b1.push(mid, -mid);
    }
    while (b1.length < block) b1.push(0);
    v.push(...b1);
    v.push(...new Array(block).fill(0)); // all zero
    v.push(...new Array(block).fill(-0.3)); // one value: code 0 throughout (−absmax)
    v.push(...new Array(block).fill(2.5e-3)); // one value: code 15
    // Ties scaled by a power of two stay ties; an absmax that is not a power of two exercises 1/absmax.
    v.push(...b1.map((x) => x * 2 ** -20));
    v.push(...Array.from(rand(block, 1), (x, i) => (i === 5 ? 3.3 : x) * 1e30));
    v.push(...Array.from(rand(block, 1), (x) => x * 1e-30));
    const values = Float32Array.from(v);
    expect(values.length).to.equal(8 * block);
    await expectQuantizerExact(ctx, values, [8, 32], block, 'edge blocks');
    const want = q.quantizeNf4Ref(values, block);
    // The ties went to the lower code, and the all-zero block is code 7 with absmax 0.
    for (let i = 1; i < b1.length && b1[i] !== 0; i++) {
      // b1 holds each exact midpoint and its negation, which is a tie only where the levels are symmetric.
      const k = NF4_VALUES.findIndex((l, j) => j < 15 && (l + NF4_VALUES[j + 1]) / 2 === b1[i]);
      if (k >= 0) expect(q.nf4Code(want.codes, block + i), `tie ${b1[i]}`).to.equal(k);
    }
    expect(Array.from(want.codes.subarray(block, 1.5 * block))).to.deep.equal(new Array(16).fill(0x77));
    expect(want.absmax[2]).to.equal(0);
    expect(q.nf4Code(want.codes, 3 * block + 7)).to.equal(0);
    expect(q.nf4Code(want.codes, 4 * block + 7)).to.equal(15);
  });

  it('NaN and ±Inf input is an error naming the argument and the first element', async () => {
    const ctx = await gpu();
    for (const bad of [NaN, Infinity, -Infinity]) {
      const values = rand(7 * 19, 1);
      values[45] = bad;
      values[100] = bad;
      const w = ctx.upload(values, [7, 19]);
      const live = ctx.allocations.liveBytes;
      await expectThrows(() => quantizeNf4(ctx, w, { blockSize: 32 }), /quantizeNf4: 'w' has 2 non-finite values/, /\[2, 7\]/);
      expect(ctx.allocations.liveBytes, 'nothing left allocated').to.equal(live);
      w.destroy();
    }
    const tiny = ctx.upload(new Float32Array(64).fill(1e-38), [2, 32]);
    await expectThrows(() => quantizeNf4(ctx, tiny, { blockSize: 32 }), /'w' has 2 blocks \(the first: block 0, .*outside the quantizer's range/);
    tiny.destroy();
  });

  it('NF4 at blockSize 64 takes 0.5 + 4/64 bytes a value in ctx.allocations; f16 takes 2', async () => {
    const ctx = await gpu();
    const [m, n] = [64, 96];
    const w = ctx.upload(rand(m * n), [m, n]);
    const before = ctx.allocations.liveBytes;
    const nf4 = await quantizeNf4(ctx, w);
    expect(ctx.allocations.liveBytes - before).to.equal(m * n * (0.5 + 4 / 64));
    expect(nf4.bytes).to.equal(m * n * (0.5 + 4 / 64));
    const f16 = await toF16(ctx, w);
    expect(ctx.allocations.liveBytes - before - nf4.bytes).to.equal(m * n * 2);
    const labels = ctx.allocations.live.map((r) => r.label);
    expect(labels).to.include.members([`${w.label}.nf4.data`, `${w.label}.nf4.absmax`, `${w.label}.f16.data`]);
    nf4.destroy();
    f16.destroy();
    w.destroy();
    expect(ctx.allocations.liveBytes).to.equal(before - m * n * 4);
  });

  it('round trip: bitsandbytes codes and absmax → BaseWeight → dequantize equals the reference', async () => {
    const ctx = await gpu();
    for (const [shape, blockSize] of [
      [[5, 13], 32],
      [[33, 47], 64],
      [[17, 301], 4096],
    ] as [[number, number], number][]) {
      const size = shape[0] * shape[1];
      const codes = Uint8Array.from({ length: Math.ceil(size / 2) }, (_, j) => (j * 37 + 11) & 0xff);
      if (size % 2) codes[codes.length - 1] &= 0xf0;
      const absmax = Float32Array.from(rand(Math.ceil(size / blockSize), 3), Math.abs);
      const w = nf4Weight(ctx, { codes, absmax, blockSize }, shape);
      const back = await readWeight(ctx, w);
      expect(back.format === 'nf4' && Array.from(back.codes)).to.deep.equal(Array.from(codes));
      const deq = await dequantize(ctx, w);
      expect(bitsOf(await ctx.readF32(deq))).to.deep.equal(bitsOf(q.dequantizeNf4Ref(codes, absmax, blockSize, size)));
      deq.destroy();
      w.destroy();
    }
  });

  it('double-quantized absmax (QLoRA) is dequantized once on load', async () => {
    const ctx = await gpu();
    const shape: [number, number] = [16, 40]; // 640 values, block 32: 20 absmax codes, 2 nested blocks of 16
    const codes = Uint8Array.from({ length: 320 }, (_, j) => (j * 13) & 0xff);
    const absmaxCodes = Uint8Array.from({ length: 20 }, (_, b) => (b * 29) & 0xff);
    const nestedCode = Float32Array.from({ length: 256 }, (_, i) => (i - 128) / 128);
    const nestedAbsmax = Float32Array.of(0.5, 0.25);
    const w = nf4WeightFromNested(ctx, { codes, blockSize: 32, absmaxCodes, nestedAbsmax, nestedCode, offset: 0.75, nestedBlockSize: 16 }, shape);
    const absmax = Float32Array.from({ length: 20 }, (_, b) =>
      Math.fround(Math.fround(nestedCode[absmaxCodes[b]] * nestedAbsmax[b >> 4]) + Math.fround(0.75)),
    );
    const deq = await dequantize(ctx, w);
    expect(bitsOf(await ctx.readF32(deq))).to.deep.equal(bitsOf(q.dequantizeNf4Ref(codes, absmax, 32, 640)));
    deq.destroy();
    w.destroy();
  });

  it('toF16 rounds to nearest even, bit-exact, subnormals included', async () => {
    const ctx = await gpu();
    const special = [
      0,
      -0,
      1,
      -1,
      65504,
      -65504,
      65503.99,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      2 ** -25 * 1.0000001,
      3 * 2 ** -26,
      2 ** -26,
      1e-30,
      -1e-40,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      1 + 2 ** -11 + 2 ** -20,
      2049,
      2051,
      6e-5,
      6.1e-5,
      0.1,
      1 / 3,
      2 ** -14 - 2 ** -25,
      2 ** -15 + 2 ** -25,
    ];
    const values = new Float32Array(3 * 29);
    values.set(special);
    values.set(rand(values.length - special.length, 1), special.length);
    // Random values across f16's whole range (2^-24 … 2^15), subnormals included.
    for (let i = special.length; i < values.length; i++) values[i] *= 2 ** (((i * 7) % 40) - 24);
    const w = ctx.upload(values, [3, 29]);
    const h = await toF16(ctx, w);
    const got = await readWeight(ctx, h);
    const want = q.toF16Bits(values, (i) => {
      throw new Error(`reference: ${i}`);
    });
    expect(got.format === 'f16' && Array.from(got.bits)).to.deep.equal(Array.from(want));
    const deq = await dequantize(ctx, h);
    expect(bitsOf(await ctx.readF32(deq))).to.deep.equal(bitsOf(q.dequantizeF16Ref(want)));
    // The host path rounds the same way.
    const host = f16Weight(ctx, values, [3, 29]);
    const hostBits = await readWeight(ctx, host);
    expect(hostBits.format === 'f16' && Array.from(hostBits.bits)).to.deep.equal(Array.from(want));
    expect(h.bytes).to.equal(Math.ceil((3 * 29) / 2) * 4);
    for (const t of [w, h, deq, host]) t.destroy();
  });

  it('values past 65504, NaN or ±Inf are an error for toF16 and the host loaders', async () => {
    const ctx = await gpu();
    for (const bad of [65504.01, -70000, Infinity, NaN]) {
      const values = new Float32Array(10);
      values[7] = bad;
      const w = ctx.upload(values, [2, 5]);
      await expectThrows(() => toF16(ctx, w), /toF16: 1 value of 'w' f16 cannot hold/, /\[1, 2\]/);
      w.destroy();
      await expectThrows(() => f16Weight(ctx, values, [2, 5]), /f16Weight: 'values'\[7\] \(row 1, column 2\)/);
    }
    const bf = new Uint16Array(4);
    bf[2] = 0x4780; // 65536
    await expectThrows(() => f16WeightFromBf16(ctx, bf, [2, 2]), /f16WeightFromBf16: 'bits'\[2\]/);
    await expectThrows(() => f16WeightFromBits(ctx, Uint16Array.of(0, 0x7c00), [1, 2]), /'bits'\[1\]/);
  });

  it('loads F16, BF16 and F32 safetensors entries in any format', async () => {
    const ctx = await gpu();
    const shape = [9, 23];
    const values = Float32Array.from(rand(9 * 23, 4), (v) => q.roundF16(v));
    const bits = q.toF16Bits(values, () => {
      throw new Error('range');
    });
    const f32 = decodeSafetensors(encodeSafetensors({ w: { shape, data: values } })).tensors.w;
    // F16 and BF16 entries as decodeSafetensors returns them (widened to f32).
    const f16Entry = { dtype: 'F16', shape, data: q.dequantizeF16Ref(bits) };
    const bf16Bits = Uint16Array.from(bitsOf(values), (b) => b >>> 16);
    const bf16Entry = { dtype: 'BF16', shape, data: Float32Array.from(bf16Bits, (b) => q.f32FromBits(b << 16)) };
    const a = await weightFromSafetensors(ctx, f16Entry);
    expect(BaseWeight.isBaseWeight(a) && a.format).to.equal('f16');
    const aBits = await readWeight(ctx, a as BaseWeight);
    expect(aBits.format === 'f16' && Array.from(aBits.bits)).to.deep.equal(Array.from(bits));
    const b = await weightFromSafetensors(ctx, bf16Entry);
    const bBits = await readWeight(ctx, b as BaseWeight);
    const fromBf = f16WeightFromBf16(ctx, bf16Bits, [9, 23]);
    const want = await readWeight(ctx, fromBf);
    expect(bBits).to.deep.equal(want);
    const c = await weightFromSafetensors(ctx, f32);
    expect(BaseWeight.isBaseWeight(c)).to.equal(false);
    const d = await weightFromSafetensors(ctx, f32, { format: 'f16' });
    expect(await readWeight(ctx, d as BaseWeight)).to.deep.equal(aBits);
    const e = await weightFromSafetensors(ctx, f32, { format: 'nf4', blockSize: 32 });
    const f = await weightFromSafetensors(ctx, f16Entry, { format: 'nf4', blockSize: 32 });
    const ref = q.quantizeNf4Ref(values, 32);
    for (const w of [e, f]) {
      const got = await readWeight(ctx, w as BaseWeight);
      expect(got.format === 'nf4' && Array.from(got.codes)).to.deep.equal(Array.from(ref.codes));
    }
    for (const w of [a, b, c, d, e, f, fromBf]) w.destroy();
  });

  it('bad input: block sizes, lengths, absmax, foreign contexts', async () => {
    const ctx = await gpu();
    const w = ctx.upload(rand(64), [8, 8]);
    await expectThrows(() => quantizeNf4(ctx, w, { blockSize: 48 }), /quantizeNf4: 'blockSize' must be a power of two from 32 to 4096, got .*48/);
    await expectThrows(() => quantizeNf4(ctx, w, { blockSize: 8192 }), /'blockSize'/);
    await expectThrows(() => quantizeNf4(ctx, w, { block: 64 } as never), /unknown option 'block'/);
    const absmax = new Float32Array(2);
    await expectThrows(
      () => nf4Weight(ctx, { codes: new Uint8Array(31), absmax, blockSize: 32 }, [8, 8]),
      /nf4Weight: 'codes' has 31 values, expected 32/,
    );
    await expectThrows(
      () => nf4Weight(ctx, { codes: new Uint8Array(32), absmax: new Float32Array(3), blockSize: 32 }, [8, 8]),
      /'absmax' has 3 values, expected 2/,
    );
    await expectThrows(
      () => nf4Weight(ctx, { codes: new Uint8Array(32), absmax: Float32Array.of(1, -1), blockSize: 32 }, [8, 8]),
      /'absmax'\[1\] is -1/,
    );
    await expectThrows(
      () => nf4Weight(ctx, { codes: new Uint8Array(32), absmax: Float32Array.of(1, NaN), blockSize: 32 }, [8, 8]),
      /'absmax'\[1\] is NaN/,
    );
    await expectThrows(() => nf4Weight(ctx, { codes: new Uint8Array(32), absmax, blockSize: 48 }, [8, 8]), /'blockSize'/);
    await expectThrows(() => f16Weight(ctx, new Float32Array(5), [2, 3]), /'values' has 5 values, expected 6/);
    const other = await Context.create();
    try {
      const foreign = ctx.upload(rand(64), [8, 8]);
      await expectThrows(() => quantizeNf4(other, foreign), /quantizeNf4: 'w' belongs to another context/);
      await expectThrows(() => toF16(other, foreign), /toF16: 'w' belongs to another context/);
      const nf4 = await quantizeNf4(ctx, foreign, { blockSize: 32 });
      await expectThrows(() => dequantize(other, nf4), /dequantize: 'w' belongs to another context/);
      const nf4Tensor = nf4.data;
      await expectThrows(() => quantizeNf4(ctx, nf4), /'w' is an nf4 BaseWeight; expected an f32 Tensor or an f16 BaseWeight/);
      await expectThrows(() => dequantize(ctx, nf4Tensor as never), /dequantize: 'w' must be a BaseWeight/);
      nf4.destroy();
      foreign.destroy();
    } finally {
      other.destroy();
    }
    w.destroy();
  });

  describe('merges', () => {
    const [m, n, r, s] = [29, 37, 3, 1.5];

    // W' = deq(W0) + sign·s·B A through the one merge path, as loraMerge calls it.
    async function merge(ctx: Context, w0: Tensor | BaseWeight, a: Tensor, b: Tensor, opts: Record<string, unknown>, out?: Tensor | BaseWeight) {
      return mergeInto(ctx, 'test.merge', w0, out, opts, { a, b }, (enc, target, sign) =>
        matmul(ctx, { a: b, b: a, c: target, M: m, N: n, K: r, alpha: sign * s, beta: 1 }, enc),
      );
    }

    function refMerge(w0: Float32Array, a: Float32Array, b: Float32Array, sign = 1): Float64Array {
      const out = Float64Array.from(w0);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let k = 0; k < r; k++) out[i * n + j] += sign * s * b[i * r + k] * a[k * n + j];
      return out;
    }

    it('from f16 and NF4 W0 to an f32 output, never widening W0 into a second f32 tensor', async () => {
      const ctx = await gpu();
      const [ha, hb] = [rand(r * n), rand(m * r)];
      const a = ctx.upload(ha, [r, n]);
      const b = ctx.upload(hb, [m, r]);
      const values = rand(m * n);
      const f16 = f16Weight(ctx, values, [m, n]);
      const src = ctx.upload(values, [m, n]);
      const nf4 = await quantizeNf4(ctx, src, { blockSize: 32 });
      src.destroy();
      for (const w0 of [f16, nf4]) {
        const deq = await dequantize(ctx, w0);
        const base = await ctx.readF32(deq);
        deq.destroy();
        const seen: number[] = [];
        const off = ctx.onAllocate((rec) => seen.push(rec.bytes));
        const merged = (await merge(ctx, w0, a, b, {})) as Tensor;
        off();
        // One f32 [m, n] tensor: the result.
        expect(
          seen.filter((x) => x >= m * n * 4),
          `${w0.format}: f32 [m, n] allocations`,
        ).to.have.length(1);
        expectClose(await ctx.readF32(merged), refMerge(base, ha, hb), `${w0.format} merge`);
        const delta = (await merge(ctx, w0, a, b, { deltaOnly: true })) as Tensor;
        expectClose(await ctx.readF32(delta), refMerge(new Float32Array(m * n), ha, hb), `${w0.format} delta`);
        const un = (await merge(ctx, w0, a, b, { unmerge: true })) as Tensor;
        expectClose(await ctx.readF32(un), refMerge(base, ha, hb, -1), `${w0.format} unmerge`);
        for (const t of [merged, delta, un]) t.destroy();
      }
      for (const t of [a, b, f16, nf4]) t.destroy();
    });

    it('to an f16 output and in place into an f16 W0 (rounded as toF16 rounds)', async () => {
      const ctx = await gpu();
      const [ha, hb] = [rand(r * n), rand(m * r)];
      const a = ctx.upload(ha, [r, n]);
      const b = ctx.upload(hb, [m, r]);
      const values = rand(m * n);
      const w0 = ctx.upload(values, [m, n]);
      const out = f16Weight(ctx, new Float32Array(m * n), [m, n], 'out');
      const exact = refMerge(values, ha, hb);
      const res = await merge(ctx, w0, a, b, {}, out);
      expect(res).to.equal(out);
      // The GPU's f32 result rounds to f16 as the reference does, except where the f32 sum sits
      // within an f32 ulp of an f16 midpoint: compare the values to f16 precision.
      const got = await dequantize(ctx, out);
      expectClose(await ctx.readF32(got), exact, 'f16 out', 2 ** -11);
      got.destroy();
      // In place: W0 (f16) += ΔW, then unmerged back: within f16 rounding of the start.
      const w16 = f16Weight(ctx, values, [m, n]);
      const start = q.dequantizeF16Ref(
        q.toF16Bits(values, () => {
          throw new Error('range');
        }),
      );
      await merge(ctx, w16, a, b, { inPlace: true });
      const mid = await dequantize(ctx, w16);
      expectClose(await ctx.readF32(mid), refMerge(start, ha, hb), 'f16 in place', 2 ** -11);
      mid.destroy();
      await merge(ctx, w16, a, b, { inPlace: true, unmerge: true });
      const back = await dequantize(ctx, w16);
      // Two f16 roundings, each within 2^-11 of a value whose scale is up to max |W'|.
      expectClose(await ctx.readF32(back), start, 'f16 merge then unmerge', 2 ** -9);
      back.destroy();
      // A result f16 cannot hold is an error, and the f16 out is unchanged.
      const big = ctx.upload(new Float32Array(m * n).fill(1e5), [m, n]);
      const before = await readWeight(ctx, out);
      await expectThrows(() => merge(ctx, big, a, b, {}, out), /test.merge: .* of 'the merged out' f16 cannot hold/, /'out' is unchanged/);
      expect(await readWeight(ctx, out)).to.deep.equal(before);
      for (const t of [a, b, w0, out, w16, big]) t.destroy();
    });

    it('into NF4 only with requantize, which reports the error it introduced', async () => {
      const ctx = await gpu();
      const [ha, hb] = [rand(r * n), rand(m * r)];
      const a = ctx.upload(ha, [r, n]);
      const b = ctx.upload(hb, [m, r]);
      const values = rand(m * n);
      const src = ctx.upload(values, [m, n]);
      const w0 = await quantizeNf4(ctx, src, { blockSize: 64 });
      src.destroy();
      await expectThrows(() => merge(ctx, w0, a, b, { inPlace: true }), /'w0' is NF4, .*requantizes it.*requantize: true/);
      await expectThrows(() => merge(ctx, w0, a, b, { requantize: true }), /'requantize' applies to an NF4 destination only/);
      const before = await readWeight(ctx, w0);
      if (before.format !== 'nf4') throw new Error('nf4');
      const start = q.dequantizeNf4Ref(before.codes, before.absmax, 64, m * n);
      const res = await merge(ctx, w0, a, b, { inPlace: true, requantize: true });
      expect(res).to.equal(w0);
      const exact = Float32Array.from(refMerge(start, ha, hb));
      const want = q.quantizeNf4Ref(exact, 64);
      const after = await readWeight(ctx, w0);
      if (after.format !== 'nf4') throw new Error('nf4');
      const deq = q.dequantizeNf4Ref(after.codes, after.absmax, 64, m * n);
      let maxAbs = 0;
      let scale = 0;
      for (let i = 0; i < m * n; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(deq[i] - exact[i]));
        scale = Math.max(scale, Math.abs(exact[i]));
      }
      // The device's W' is f32 and may differ from the float64 one in its last bits, so a code or
      // two may differ where a value sits on a level boundary; the error report is the device's own.
      const differ = want.codes.reduce((c, x, j) => c + (x === after.codes[j] ? 0 : 1), 0);
      expect(differ, 'codes that differ from requantizing the reference').to.be.lessThan(3);
      expect(w0.quantError).to.not.equal(null);
      expect(w0.quantError!.maxAbs).to.be.closeTo(maxAbs, 1e-6 * scale);
      expect(w0.quantError!.relative).to.be.closeTo(maxAbs / scale, 1e-6);
      expect(w0.quantError!.relative).to.be.greaterThan(0).and.lessThan(0.2);
      // To an NF4 out with its own block size.
      const out = nf4Weight(
        ctx,
        { codes: new Uint8Array(Math.ceil((m * n) / 2)), absmax: new Float32Array(Math.ceil((m * n) / 32)), blockSize: 32 },
        [m, n],
        'out',
      );
      await expectThrows(() => merge(ctx, w0, a, b, {}, out), /'out' is NF4/);
      await merge(ctx, w0, a, b, { requantize: true }, out);
      expect(out.quantError!.relative).to.be.greaterThan(0).and.lessThan(0.2);
      for (const t of [a, b, w0, out]) t.destroy();
    });
  });
});
