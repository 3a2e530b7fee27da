// BoRA and MELoRA: every kernel against the float64 reference, the reference's gradients (dσ
// through all four transforms) against central finite differences, the LoRA and MELoRA special
// cases, merge against forward, the rank of ΔW, init and sizes, the two descriptors, and bad
// input.

import { expect } from 'chai';
import {
  bora,
  boraBackward,
  boraCheckSigma,
  boraFlops,
  boraForward,
  boraInit,
  boraMerge,
  boraParamCount,
  boraRank,
  boraSigma,
  checkSigmaHost,
  melora,
  recommendedBlocks,
  type BoraMixParams,
  type BoraParams,
  type BoraVariant,
  type SigmaTransform,
} from '../src/methods/bora/index.js';
import * as ref from '../src/methods/bora/reference.js';
import * as loraRef from '../src/methods/lora/reference.js';
import type { HostValues } from '../src/methods/types.js';
import { dot, matmul as refMatmul, toF64 } from '../src/reference/linalg.js';
import { relativeError } from '../src/numeric.js';
import { numericalRank, rankReport } from '../src/rank.js';
import { PeftError } from '../src/validate.js';
import { expectClose, expectGradients, expectThrows, F32_TOL, gpu, rand, uploads } from './helpers.js';

// [T, n, m, r, b]: b = 1, b = n, m ≠ n, T = 1 and T not a multiple of the 8-token tile, r past
// the 8-rank register chunk of the weight-gradient kernel.
const SHAPES: [number, number, number, number, number][] = [
  [1, 37, 29, 1, 1],
  [3, 8, 6, 2, 2],
  [7, 36, 24, 3, 4],
  [9, 6, 12, 2, 6],
  [17, 64, 48, 8, 16],
  [33, 40, 30, 5, 5],
  [10, 40, 20, 12, 4],
  [1, 48, 32, 4, 4], // the vec4 forward (fused4: n, m, n / b, m / b, r multiples of 4) at T = 1
  [19, 64, 96, 8, 8], // fused4 past one 8-token tile, T no multiple of it
  [13, 12, 18, 4, 6], // mix_grad4 (r % 4 = 0) with b = 6: the last chunk of 4 blocks k is partial
];

// `mix` is the layer as BoRA (σ given); `p` is the layer as `variant` has it (MELoRA: no σ).
async function setup(
  T: number,
  n: number,
  m: number,
  r: number,
  blocks: number,
  sigmaTransform: SigmaTransform = 'exp-mav',
  variant: BoraVariant = 'bora',
) {
  const { ctx, host, dev, free } = await uploads({
    x: [[T, n]],
    w0: [[m, n], 0.5],
    a: [[r, n], 0.5],
    b: [[m, r], 0.5],
    g: [[T, m]],
    sigma: [[blocks, blocks, r], sigmaTransform === 'exp' ? 1 : 0.5],
  });
  const mix: BoraMixParams = { w0: dev.w0, a: dev.a, b: dev.b, blocks, scale: 2, sigmaTransform, sigma: dev.sigma };
  const p: BoraParams = variant === 'bora' ? mix : { variant, w0: dev.w0, a: dev.a, b: dev.b, blocks, scale: 2 };
  const bora = variant === 'bora';
  const refArgs: ref.BoraRefArgs = {
    T,
    n,
    m,
    r,
    blocks,
    scale: 2,
    x: host.x,
    w0: host.w0,
    a: host.a,
    b: host.b,
    ...(bora ? { sigma: host.sigma, sigmaTransform } : { variant }),
  };
  return { ctx, host, dev, p, mix, refArgs, free };
}

// dσ is a difference of two terms of size |dΣ·Σ|/μ (exp-mav), so its rounding error scales with
// that term, not with dσ itself: at b = r = 1 the two cancel exactly and dσ is pure noise.
function expectDsigma(actual: ArrayLike<number>, expected: ReturnType<typeof ref.boraBackward>, sigma: Float32Array, what: string): void {
  const { eff, mu } = ref.sigmaEffective(sigma, 'exp-mav');
  let scale = 0;
  for (let l = 0; l < eff.length; l++) {
    scale = Math.max(scale, Math.abs(expected.dsigma![l]), Math.abs((expected.dsigmaEff[l] * eff[l]) / mu));
  }
  expect(actual.length, `${what}: length`).to.equal(expected.dsigma!.length);
  let err = 0;
  for (let l = 0; l < actual.length; l++) err = Math.max(err, Math.abs(actual[l] - expected.dsigma![l]));
  expect(err / scale, `${what}: error ${(err / scale).toExponential(2)} of |dΣ·Σ|/μ`).to.be.at.most(F32_TOL);
}

// Forward (training and inference), backward (Z and S saved and recomputed), merge and ΔW of one
// shape and variant against the float64 reference.
async function checkShape(T: number, n: number, m: number, r: number, b: number, variant: BoraVariant = 'bora') {
  const { ctx, dev, host, p, refArgs, free } = await setup(T, n, m, r, b, 'exp-mav', variant);
  const inter = ref.boraIntermediates(refArgs);
  const yRef = ref.boraForward(refArgs);
  const { y, z, s } = await boraForward(ctx, { ...p, x: dev.x }, { save: true });
  expectClose(await ctx.read(y), yRef, 'y (training)');
  expectClose(await ctx.read(z!), inter.z, 'z');
  expectClose(await ctx.read(s!), inter.s, 's');
  const inference = await boraForward(ctx, { ...p, x: dev.x });
  expect(inference.z).to.equal(undefined);
  expectClose(await ctx.read(inference.y), yRef, 'y (inference)');

  const expected = ref.boraBackward({ ...refArgs, g: host.g });
  for (const saved of [true, false]) {
    const grads = await boraBackward(ctx, { ...p, x: dev.x, g: dev.g, z: saved ? z : undefined, s: saved ? s : undefined });
    const what = saved ? 'Z, S saved' : 'Z, S recomputed';
    expectClose(await ctx.read(grads.dx), expected.dx, `dx (${what})`);
    expectClose(await ctx.read(grads.da), expected.da, `da (${what})`);
    expectClose(await ctx.read(grads.db), expected.db, `db (${what})`);
    if (variant === 'bora') expectDsigma(await ctx.read(grads.dsigma!), expected, host.sigma, `dsigma (${what})`);
    else expect(grads.dsigma).to.equal(undefined);
    for (const t of Object.values(grads)) t?.destroy();
  }

  const merged = await boraMerge(ctx, p);
  expectClose(await ctx.read(merged), ref.boraMerge(refArgs), 'merged');
  const delta = await boraMerge(ctx, p, { deltaOnly: true });
  expectClose(await ctx.read(delta), ref.boraDelta(refArgs), 'delta');
  for (const t of [y, z!, s!, inference.y, merged, delta]) t.destroy();
  free();
}

describe('bora kernels against the float64 reference', () => {
  for (const [T, n, m, r, b] of SHAPES) {
    it(`forward, backward, merge at T=${T} n=${n} m=${m} r=${r} b=${b}`, () => checkShape(T, n, m, r, b));
  }
  it('MELoRA on the 16-byte kernel (fused4, no mixing phase) at T=19 n=64 m=96 r=8 b=8', () => checkShape(19, 64, 96, 8, 8, 'melora'));

  for (const transform of ref.SIGMA_TRANSFORMS) {
    it(`Σ, dΣ and dσ through the '${transform}' transform`, async () => {
      const { ctx, dev, host, mix: p, refArgs, free } = await setup(11, 24, 18, 3, 3, transform);
      const sig = await boraSigma(ctx, { sigma: dev.sigma, sigmaTransform: transform });
      const effRef = ref.sigmaEffective(host.sigma, transform);
      expectClose(await ctx.read(sig.eff), effRef.eff, 'Σ');
      expectClose(await ctx.read(sig.mu), [effRef.mu], 'μ');
      const dEff = ctx.tensor([3, 3, 3]);
      const expected = ref.boraBackward({ ...refArgs, g: host.g });
      // Σ computed once for the step and shared by forward and backward.
      const { y, z, s } = await boraForward(ctx, { ...p, sigmaEff: sig, x: dev.x }, { save: true });
      expectClose(await ctx.read(y), ref.boraForward(refArgs), 'y');
      const grads = await boraBackward(ctx, { ...p, sigmaEff: sig, x: dev.x, g: dev.g, z, s, dsigmaEff: dEff });
      expectClose(await ctx.read(dEff), expected.dsigmaEff, 'dΣ');
      expectClose(await ctx.read(grads.dsigma!), expected.dsigma!, 'dσ');
      expectClose(await ctx.read(grads.dx), expected.dx, 'dx');
      for (const t of [sig.eff, sig.mu, dEff, y, z!, s!, ...Object.values(grads)]) t.destroy();
      free();
    });
  }

  it('adapter path alone drops the base terms', async () => {
    const { ctx, dev, host, mix: p, refArgs, free } = await setup(9, 20, 12, 3, 4);
    const { y, z, s } = await boraForward(ctx, { ...p, x: dev.x }, { adapterOnly: true, save: true });
    expectClose(await ctx.read(y), ref.boraForward(refArgs, true), 'adapter y');
    const grads = await boraBackward(ctx, { ...p, x: dev.x, g: dev.g, z, s }, { adapterOnly: true });
    const expected = ref.boraBackward({ ...refArgs, g: host.g }, true);
    expectClose(await ctx.read(grads.dx), expected.dx, 'adapter dx');
    expectClose(await ctx.read(grads.da), expected.da, 'adapter da');
    expectClose(await ctx.read(grads.dsigma!), expected.dsigma!, 'adapter dsigma');
    free();
  });

  it("encodes into the caller's command encoder and writes into the caller's tensors", async () => {
    const { ctx, dev, p, refArgs, free } = await setup(5, 12, 8, 2, 4);
    const y = ctx.tensor([5, 8]);
    const enc = ctx.device.createCommandEncoder();
    const out = await boraForward(ctx, { ...p, x: dev.x, y }, { encoder: enc });
    expect(out.y).to.equal(y);
    ctx.submit(enc);
    expectClose(await ctx.read(y), ref.boraForward(refArgs), 'y');
    free();
  });

  // The adapter term is stored first and the base product adds onto it (beta = 1), so whatever
  // the caller's Y and dX held before must never reach the result.
  it("overwrites the caller's y and dx (NaN before the call), with and without the base terms", async () => {
    for (const [T, n, m, r, b] of [
      [9, 20, 12, 3, 4],
      [10, 32, 16, 4, 4], // fused4
    ]) {
      const { ctx, dev, host, mix: p, refArgs, free } = await setup(T, n, m, r, b);
      for (const adapterOnly of [false, true]) {
        const y = ctx.upload(new Float32Array(T * m).fill(NaN), [T, m]);
        const dx = ctx.upload(new Float32Array(T * n).fill(NaN), [T, n]);
        const { z, s } = await boraForward(ctx, { ...p, x: dev.x, y }, { adapterOnly, save: true });
        expectClose(await ctx.read(y), ref.boraForward(refArgs, adapterOnly), `y (T=${T} n=${n}, adapterOnly ${adapterOnly})`);
        const grads = await boraBackward(ctx, { ...p, x: dev.x, g: dev.g, z, s, dx }, { adapterOnly });
        expect(grads.dx).to.equal(dx);
        expectClose(
          await ctx.read(dx),
          ref.boraBackward({ ...refArgs, g: host.g }, adapterOnly).dx,
          `dx (T=${T} n=${n}, adapterOnly ${adapterOnly})`,
        );
        for (const t of [y, dx, z!, s!, grads.da, grads.db, grads.dsigma!]) t.destroy();
      }
      free();
    }
  });

  it("merged weights reproduce the forward: X W'ᵀ = Y, and unmerge restores W0", async () => {
    for (const mode of ['bora', 'melora'] as const) {
      const { ctx, dev, host, p, refArgs, free } = await setup(11, 36, 28, 4, 4, 'exp-mav', mode);
      const { y } = await boraForward(ctx, { ...p, x: dev.x });
      const merged = await ctx.read(await boraMerge(ctx, p));
      expectClose(refMatmul(host.x, merged, 11, 36, 28, false, true), await ctx.read(y), `${mode}: X W'ᵀ vs forward`);
      await boraMerge(ctx, p, { inPlace: true });
      expectClose(await ctx.read(dev.w0), ref.boraMerge(refArgs), `${mode}: merged in place`);
      await boraMerge(ctx, p, { inPlace: true, unmerge: true });
      expectClose(await ctx.read(dev.w0), host.w0, `${mode}: unmerged`, 1e-6);
      free();
    }
  });
});

describe('bora special cases', () => {
  it("Σ ≡ 1 (raw) is exactly LoRA: forward, backward and merge against LoRA's reference", async () => {
    const [T, n, m, r, b] = [13, 30, 20, 4, 5];
    const { ctx, dev, host, mix, free } = await setup(T, n, m, r, b, 'raw');
    const ones = ctx.upload(new Float32Array(b * b * r).fill(1), [b, b, r], 'f32', 'ones');
    const q = { ...mix, sigma: ones };
    const lora = { T, n, m, r, scale: 2, x: host.x, w0: host.w0, a: host.a, b: host.b };
    const { y, z, s } = await boraForward(ctx, { ...q, x: dev.x }, { save: true });
    expectClose(await ctx.read(y), loraRef.loraForward(lora), 'y vs LoRA');
    const grads = await boraBackward(ctx, { ...q, x: dev.x, g: dev.g, z, s });
    const lg = loraRef.loraBackward({ ...lora, g: host.g });
    expectClose(await ctx.read(grads.dx), lg.dx, 'dx vs LoRA');
    expectClose(await ctx.read(grads.da), lg.da, 'da vs LoRA');
    expectClose(await ctx.read(grads.db), lg.db, 'db vs LoRA');
    expectClose(await ctx.read(await boraMerge(ctx, q, { deltaOnly: true })), loraRef.loraDelta(lora), 'ΔW vs LoRA');
    ones.destroy();
    free();
  });

  it('MELoRA mode equals b independent mini-LoRAs on the diagonal blocks, and raw block-identity BoRA', async () => {
    const [T, n, m, r, b] = [7, 24, 16, 3, 4];
    const { ctx, dev, host, p, mix, refArgs, free } = await setup(T, n, m, r, b, 'exp-mav', 'melora');
    const nb = n / b,
      mb = m / b;
    // Mini-LoRA j: x_j = X[:, j-th segment], A_j = A[:, segment], B_j = B[j-th row block].
    const expectY = refMatmul(host.x, host.w0, T, n, m, false, true);
    const expectDx = refMatmul(host.g, host.w0, T, m, n);
    const expectDa = new Float64Array(r * n);
    const expectDb = new Float64Array(m * r);
    for (let j = 0; j < b; j++) {
      const xs = new Float64Array(T * nb),
        as = new Float64Array(r * nb),
        bs = new Float64Array(mb * r),
        gs = new Float64Array(T * mb);
      for (let t = 0; t < T; t++) for (let c = 0; c < nb; c++) xs[t * nb + c] = host.x[t * n + j * nb + c];
      for (let q = 0; q < r; q++) for (let c = 0; c < nb; c++) as[q * nb + c] = host.a[q * n + j * nb + c];
      for (let i = 0; i < mb; i++) for (let q = 0; q < r; q++) bs[i * r + q] = host.b[(j * mb + i) * r + q];
      for (let t = 0; t < T; t++) for (let i = 0; i < mb; i++) gs[t * mb + i] = host.g[t * m + j * mb + i];
      const mini = { T, n: nb, m: mb, r, scale: 2, x: xs, w0: new Float64Array(mb * nb), a: as, b: bs };
      const yj = loraRef.loraForward(mini, true);
      const gj = loraRef.loraBackward({ ...mini, g: gs });
      for (let t = 0; t < T; t++) for (let i = 0; i < mb; i++) expectY[t * m + j * mb + i] += yj[t * mb + i];
      for (let t = 0; t < T; t++) for (let c = 0; c < nb; c++) expectDx[t * n + j * nb + c] += gj.dx[t * nb + c];
      for (let q = 0; q < r; q++) for (let c = 0; c < nb; c++) expectDa[q * n + j * nb + c] = gj.da[q * nb + c];
      for (let i = 0; i < mb; i++) for (let q = 0; q < r; q++) expectDb[(j * mb + i) * r + q] = gj.db[i * r + q];
    }
    const { y, z, s } = await boraForward(ctx, { ...p, x: dev.x }, { save: true });
    expectClose(await ctx.read(y), expectY, 'MELoRA y vs mini-LoRAs');
    expectClose(await ctx.read(y), ref.boraForward(refArgs), 'MELoRA y vs reference');
    const grads = await boraBackward(ctx, { ...p, x: dev.x, g: dev.g, z, s });
    expect(grads.dsigma).to.equal(undefined);
    expectClose(await ctx.read(grads.dx), expectDx, 'MELoRA dx');
    expectClose(await ctx.read(grads.da), expectDa, 'MELoRA da');
    expectClose(await ctx.read(grads.db), expectDb, 'MELoRA db');
    // The same layer as BoRA with a raw block-identity Σ.
    const ident = new Float32Array(b * b * r);
    for (let j = 0; j < b; j++) for (let q = 0; q < r; q++) ident[(j * b + j) * r + q] = 1;
    const sig = ctx.upload(ident, [b, b, r], 'f32', 'identity');
    const raw = await boraForward(ctx, { ...mix, sigmaTransform: 'raw', sigma: sig, x: dev.x });
    expectClose(await ctx.read(raw.y), expectY, 'raw block-identity BoRA y');
    expectClose(await ctx.read(await boraMerge(ctx, p, { deltaOnly: true })), ref.boraDelta(refArgs), 'MELoRA ΔW');
    sig.destroy();
    free();
  });
});

describe('bora reference gradients against central finite differences', () => {
  for (const transform of ref.SIGMA_TRANSFORMS) {
    it(`dX, dA, dB, dσ of sum(Y ⊙ G) with the '${transform}' transform`, () => {
      const [T, n, m, r, b] = [3, 6, 4, 2, 2];
      const x = toF64(rand(T * n)),
        w0 = toF64(rand(m * n)),
        a = toF64(rand(r * n)),
        bm = toF64(rand(m * r)),
        g = toF64(rand(T * m));
      const sigma = toF64(rand(b * b * r));
      const args: ref.BoraRefArgs = { T, n, m, r, blocks: b, scale: 1.5, x, w0, a, b: bm, sigma, sigmaTransform: transform };
      const loss = () => dot(ref.boraForward(args), g);
      const grads = ref.boraBackward({ ...args, g });
      expectGradients(
        loss,
        [
          ['x', x, grads.dx],
          ['a', a, grads.da],
          ['b', bm, grads.db],
          ['sigma', sigma, grads.dsigma!],
        ],
        1e-6,
      );
    });
  }

  it('dX, dA, dB of MELoRA', () => {
    const [T, n, m, r, b] = [2, 6, 9, 2, 3];
    const x = toF64(rand(T * n)),
      w0 = toF64(rand(m * n)),
      a = toF64(rand(r * n)),
      bm = toF64(rand(m * r)),
      g = toF64(rand(T * m));
    const args: ref.BoraRefArgs = { T, n, m, r, blocks: b, scale: 2, x, w0, a, b: bm, variant: 'melora' };
    const loss = () => dot(ref.boraForward(args), g);
    const grads = ref.boraBackward({ ...args, g });
    expectGradients(
      loss,
      [
        ['x', x, grads.dx],
        ['a', a, grads.da],
        ['b', bm, grads.db],
      ],
      1e-6,
    );
  });
});

describe('bora rank of ΔW', () => {
  it('random A, B, σ give rank min(m, n, b·r) where LoRA gives r', async () => {
    const ctx = await gpu();
    for (const [n, m, r, b] of [
      [24, 24, 2, 4],
      [24, 36, 2, 6],
      [24, 36, 4, 12],
      [30, 20, 3, 5],
    ] as const) {
      const a = rand(r * n),
        bm = rand(m * r),
        sigma = rand(b * b * r);
      const args = { n, m, r, blocks: b, scale: 2, a, b: bm, sigma };
      expect(numericalRank(ref.boraDelta(args), m, n), `BoRA n=${n} m=${m} r=${r} b=${b}`).to.equal(Math.min(m, n, b * r));
      expect(numericalRank(loraRef.loraDelta({ n, m, r, scale: 2, a, b: bm }), m, n), 'LoRA').to.equal(r);
      const dev = { a: ctx.upload(a, [r, n]), b: ctx.upload(bm, [m, r]), sigma: ctx.upload(sigma, [b, b, r]), w0: ctx.zeros([m, n]) };
      const report = await boraRank(ctx, { ...dev, blocks: b, scale: 2 }, 1e-4);
      expect(report.rank, 'rank of the device ΔW').to.equal(Math.min(m, n, b * r));
      const delta = ref.boraDelta(args);
      expect(report.sumSquares).to.be.closeTo(
        delta.reduce((s, v) => s + v * v, 0),
        1e-4 * report.sumSquares,
      );
      Object.values(dev).forEach((t) => t.destroy());
    }
  });

  it("reports the paper's Figure 4 quantities: singular values above 0.005 and their sum of squares", () => {
    // diag(3, 0.01, 0.001) embedded in a 4×3 matrix: two values pass 0.005.
    const rep = rankReport([3, 0, 0, 0, 0.01, 0, 0, 0, 0.001, 0, 0, 0], 4, 3);
    expect(rep.rank).to.equal(2);
    expect(rep.sumSquares).to.be.closeTo(9 + 1e-4 + 1e-6, 1e-12);
  });
});

describe('bora init and sizes', () => {
  it('init: A and σ within U(-1/√n, 1/√n) and not constant, B = 0; MELoRA has no σ', () => {
    const { a, b, sigma } = boraInit({ n: 64, m: 32, r: 4, blocks: 8, seed: 7 });
    const bound = 1 / Math.sqrt(64);
    expect(a.length).to.equal(4 * 64);
    expect(sigma!.length).to.equal(8 * 8 * 4);
    for (const v of [...a, ...sigma!]) expect(Math.abs(v)).to.be.at.most(bound);
    expect(Math.max(...a.map(Math.abs))).to.be.above(0.9 * bound);
    expect(Math.max(...sigma!.map(Math.abs))).to.be.above(0.8 * bound);
    expect(relativeError(a.slice(0, 64), sigma!.slice(0, 64))).to.be.above(0.1);
    expect(b.every((v) => v === 0)).to.equal(true);
    expect(boraInit({ n: 64, m: 32, r: 4, blocks: 8, seed: 7, variant: 'melora' }).sigma).to.equal(undefined);
    expect(() => boraInit({ n: 64, m: 32, r: 4, blocks: 8, seed: 7, mode: 'melora' } as never)).to.throw(
      PeftError,
      /bora\.init: unknown argument 'mode'/,
    );
  });

  it("parameter and FLOP counts are LoRA's plus b²r", () => {
    const d = { n: 1024, m: 1024, r: 8, blocks: 16 };
    expect(boraParamCount(d)).to.equal(8 * 2048 + 16 * 16 * 8);
    expect(boraParamCount({ ...d, variant: 'melora' })).to.equal(8 * 2048);
    const f = boraFlops(512, d);
    const lora = 2 * 1024 * 1024 * 512 + 2 * 2048 * 8 * 512;
    expect(f.forward - lora).to.equal(2 * 16 * 16 * 8 * 512);
    expect(boraFlops(512, { ...d, variant: 'melora' }).forward).to.equal(lora);
    // The descriptors count the same.
    expect(bora.paramCount({ n: 1024, m: 1024, r: 8 }, { blocks: 16 })).to.equal(boraParamCount(d));
    expect(melora.paramCount({ n: 1024, m: 1024, r: 8 }, { blocks: 16 })).to.equal(8 * 2048);
    expect(bora.flops(512, { n: 1024, m: 1024, r: 8 }, { blocks: 16 })).to.deep.equal(f);
  });

  it('recommendedBlocks is the common divisor nearest ⌊√n⌋', () => {
    expect(recommendedBlocks(1024, 1024)).to.equal(32);
    expect(recommendedBlocks(768, 3072)).to.equal(24); // ⌊√768⌋ = 27: 24 is nearer than 32
    expect(recommendedBlocks(4096, 11008)).to.equal(64);
    expect(recommendedBlocks(37, 29)).to.equal(1);
    expect(recommendedBlocks(36, 24)).to.equal(6);
  });
});

describe('bora bad input', () => {
  it('rejects b < 1 and b that does not divide n or m', async () => {
    const { ctx, dev, p, free } = await setup(4, 8, 6, 2, 2);
    for (const blocks of [0, -1, 1.5]) {
      await expectThrows(() => boraForward(ctx, { ...p, blocks, x: dev.x }), /bora\.forward: 'blocks' must be an integer ≥ 1/);
    }
    await expectThrows(() => boraForward(ctx, { ...p, blocks: 4, x: dev.x }), /blocks b = 4 must divide m = 6 \(m mod b = 2\)/);
    await expectThrows(() => boraMerge(ctx, { ...p, blocks: 3 }), /bora\.merge: blocks b = 3 must divide n = 8 \(n mod b = 2\)/);
    expect(() => boraInit({ n: 8, m: 6, r: 2, blocks: 4, seed: 1 })).to.throw(PeftError, /blocks b = 4 must divide m = 6/);
    expect(() => boraInit({ n: 8, m: 6, r: 2, blocks: 0, seed: 1 })).to.throw(PeftError, /'blocks' must be an integer ≥ 1, got 0/);
    free();
  });

  it('rejects σ of the wrong shape, a missing σ, σ with MELoRA, an unknown variant and an unknown transform', async () => {
    const { ctx, dev, mix: p, free } = await setup(4, 8, 6, 2, 2);
    const bad = ctx.tensor([2, 2, 3]);
    await expectThrows(() => boraForward(ctx, { ...p, sigma: bad, x: dev.x }), /'sigma' has shape \[2, 2, 3\], expected \[b, b, r\] = \[2, 2, 2\]/);
    await expectThrows(
      () => boraBackward(ctx, { ...p, sigma: undefined as never, x: dev.x, g: dev.g }),
      /bora\.backward: 'sigma' must be a Tensor of shape \[b, b, r\]/,
    );
    await expectThrows(
      () => boraSigma(ctx, { sigma: ctx.tensor([2, 3, 2]) }),
      /bora\.sigma: 'sigma' must be a Tensor of shape \[b, b, r\], got \[2, 3, 2\]/,
    );
    await expectThrows(
      () => boraForward(ctx, { ...p, variant: 'melora', x: dev.x } as never),
      /bora\.forward: variant 'melora' has a fixed block-identity Σ/,
    );
    const plain = { w0: p.w0, a: p.a, b: p.b, blocks: p.blocks, scale: p.scale };
    await expectThrows(
      () => boraBackward(ctx, { ...plain, variant: 'melora', x: dev.x, g: dev.g, dsigma: bad } as never),
      /variant 'melora' has no σ; do not pass 'dsigma'/,
    );
    await expectThrows(() => boraMerge(ctx, { ...plain, variant: 'lora' } as never), /bora\.merge: 'variant' must be 'bora' or 'melora', got lora/);
    await expectThrows(
      () => boraForward(ctx, { ...p, sigmaTransform: 'log' as never, x: dev.x }),
      /'sigmaTransform' must be one of exp-mav, exp, mav, raw, got log/,
    );
    expect(() => checkSigmaHost('vectors', [1, 2, 3], 2, 1)).to.throw(PeftError, /'sigma' must have b·b·r = 2·2·1 = 4 values, got 3/);
    await expectThrows(() => boraForward(ctx, { ...p, x: ctx.tensor([4, 9]) }), /'x' has shape \[4, 9\], expected \[T, n\] = \[4, 8\]/);
    await expectThrows(() => boraBackward(ctx, { ...p, x: dev.x, g: dev.g, z: ctx.tensor([4, 4]) }), /pass both 'z' and 's'/);
    bad.destroy();
    free();
  });

  it('rejects options and arguments a call does not take, naming them', async () => {
    const { ctx, dev, mix: p, free } = await setup(4, 8, 6, 2, 2);
    await expectThrows(() => boraForward(ctx, { ...p, x: dev.x }, { save: true, inPlace: true } as never), /bora\.forward: unknown option 'inPlace'/);
    await expectThrows(() => boraBackward(ctx, { ...p, x: dev.x, g: dev.g }, { save: true } as never), /bora\.backward: unknown option 'save'/);
    await expectThrows(() => boraMerge(ctx, p, { adapterOnly: true } as never), /bora\.merge: unknown option 'adapterOnly'/);
    await expectThrows(
      () => boraMerge(ctx, p, { unmerge: true, deltaOnly: true, encoder: undefined, bogus: 1 } as never),
      /bora\.unmerge: unknown option 'bogus'/,
    );
    await expectThrows(() => boraSigma(ctx, { sigma: dev.sigma }, { deltaOnly: true } as never), /bora\.sigma: unknown option 'deltaOnly'/);
    // The fields of the old API are rejected, not ignored.
    await expectThrows(() => boraForward(ctx, { ...p, x: dev.x, mode: 'melora' } as never), /bora\.forward: unknown argument 'mode'/);
    await expectThrows(() => boraSigma(ctx, { sigma: dev.sigma, transform: 'exp' } as never), /bora\.sigma: unknown argument 'transform'/);
    free();
  });

  it('μ = 0: the host check and the reference throw; on the device Σ turns NaN and boraCheckSigma throws', async () => {
    const ctx = await gpu();
    const zeros = new Float32Array(2 * 2 * 3);
    for (const t of ['exp-mav', 'mav'] as const) {
      expect(() => checkSigmaHost('bora', zeros, 2, 3, t)).to.throw(PeftError, /μ = mean\|σ\| is 0/);
      expect(() => ref.sigmaEffective(zeros, t)).to.throw(PeftError, /μ = mean\|σ\| is 0/);
      const sigma = ctx.upload(zeros, [2, 2, 3]);
      const s = await boraSigma(ctx, { sigma, sigmaTransform: t });
      expect([...(await ctx.read(s.eff))].every(Number.isNaN), 'Σ is NaN').to.equal(true);
      await expectThrows(() => boraCheckSigma(ctx, s, t), /μ = mean\|σ\| is 0/);
      sigma.destroy();
    }
    // exp and raw do not divide by μ: σ = 0 is legal there (Σ = 1 and Σ = 0).
    expect(() => checkSigmaHost('bora', zeros, 2, 3, 'exp')).not.to.throw();
    const sigma = ctx.upload(zeros, [2, 2, 3]);
    const s = await boraSigma(ctx, { sigma, sigmaTransform: 'exp' });
    await boraCheckSigma(ctx, s, 'exp');
    expectClose(await ctx.read(s.eff), new Float64Array(12).fill(1), 'exp(0)');
  });
});

describe('bora test vectors', () => {
  it("the repository's bora cases pass, and a raw case reads sigma_raw and has no dsigma", async () => {
    const ctx = await gpu();
    const { readFileSync } = await import('node:fs');
    const { runVectors } = await import('../src/vectors/index.js');
    const file = JSON.parse(readFileSync(new URL('./vectors/cases.json', import.meta.url), 'utf8'));
    const cases = file.cases.filter((c: { params: { method: string } }) => c.params.method === 'bora');
    expect(cases.length).to.be.above(0);
    const [T, n, m, r, b] = [3, 8, 6, 2, 2];
    const h = { x: rand(T * n), w0: rand(m * n), a: rand(r * n), b: rand(m * r), dy: rand(T * m), sigma_raw: rand(b * b * r) };
    const args: ref.BoraRefArgs = { T, n, m, r, blocks: b, scale: 2, x: h.x, w0: h.w0, a: h.a, b: h.b, sigma: h.sigma_raw, sigmaTransform: 'raw' };
    const g = ref.boraBackward({ ...args, g: h.dy });
    const t = (data: ArrayLike<number>, shape: number[]) => ({ shape, data: Array.from(data) });
    cases.push({
      name: 'bora-raw',
      params: { method: 'bora', T, inFeatures: n, outFeatures: m, rank: r, blocks: b, scale: 2, sigmaTransform: 'raw' },
      inputs: {
        x: t(h.x, [T, n]),
        w0: t(h.w0, [m, n]),
        a: t(h.a, [r, n]),
        b: t(h.b, [m, r]),
        dy: t(h.dy, [T, m]),
        sigma_raw: t(h.sigma_raw, [b, b, r]),
      },
      outputs: {
        y: t(ref.boraForward(args), [T, m]),
        dx: t(g.dx, [T, n]),
        da: t(g.da, [r, n]),
        db: t(g.db, [m, r]),
        sigma_eff: t(h.sigma_raw, [b, b, r]),
        delta_w: t(ref.boraDelta(args), [m, n]),
        merged: t(ref.boraMerge(args), [m, n]),
      },
    });
    const report = await runVectors(ctx, { cases }, { check: true });
    expect(report.failed, report.lines.join('\n')).to.equal(false);
    const raw = report.result.cases.find((c) => c.name === 'bora-raw')!;
    expect(raw.status).to.equal('ok');
    expect(raw.outputs).to.not.have.property('dsigma');
    expect(Object.keys(raw.errors!)).to.have.members(['y', 'dx', 'da', 'db', 'sigma_eff', 'delta_w', 'merged']);
  });
});

describe('bora descriptors (bora, melora)', () => {
  const [T, n, m, r, b] = [9, 20, 12, 3, 4];
  const alpha = 6; // scale s = alpha / r = 2

  for (const desc of [bora, melora]) {
    const variant = desc.id as BoraVariant;
    const options = variant === 'bora' ? { blocks: b, sigmaTransform: 'exp-mav' } : { blocks: b };
    const names = variant === 'bora' ? ['lora_A', 'lora_B', 'sigma'] : ['lora_A', 'lora_B'];

    it(`${desc.id}: createLayer from a seed: its forward and backward are the family's on its own tensors`, async () => {
      const { ctx, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], g: [[T, m]] });
      const layer = desc.createLayer(ctx, { w0: dev.w0, r, alpha, options, seed: 5, name: 'h1' });
      expect(layer.dims).to.deep.equal({ n, m, r });
      expect(layer.trainables.map((t) => t.name)).to.deep.equal(names.map((k) => `h1.${k}`));
      const values = await layer.tensors();
      expect(Object.keys(values)).to.deep.equal(names);
      const init = boraInit({ n, m, r, blocks: b, seed: 5, variant });
      expect(Array.from(values.lora_A.data)).to.deep.equal(Array.from(init.a));
      if (init.sigma) expect(Array.from(values.sigma.data)).to.deep.equal(Array.from(init.sigma));
      const [a, bt, sigma] = layer.trainables.map((t) => t.param);
      const p: BoraParams = sigma
        ? { w0: dev.w0, a, b: bt, blocks: b, scale: 2, sigma }
        : { variant: 'melora', w0: dev.w0, a, b: bt, blocks: b, scale: 2 };
      const y = ctx.tensor([T, m]);
      const dx = ctx.tensor([T, n]);
      await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y));
      const direct = await boraForward(ctx, { ...p, x: dev.x });
      expect(Array.from(await ctx.read(y))).to.deep.equal(Array.from(await ctx.read(direct.y)));
      await ctx.encode(undefined, (enc) => layer.backward(enc, dev.x, dev.g, dx));
      const grads = await boraBackward(ctx, { ...p, x: dev.x, g: dev.g } as never);
      expect(Array.from(await ctx.read(dx)), 'dx').to.deep.equal(Array.from(await ctx.read(grads.dx)));
      const expected = [grads.da, grads.db, ...(grads.dsigma ? [grads.dsigma] : [])];
      for (let i = 0; i < expected.length; i++) {
        expectClose(await ctx.read(layer.trainables[i].grad), await ctx.read(expected[i]), `${layer.trainables[i].name} gradient`);
      }
      for (const t of [y, dx, direct.y, ...Object.values(grads)]) t?.destroy();
      layer.destroy();
      free();
    });

    it(`${desc.id}: createLayer from tensors: backward against the reference, forward(x) = x·merge()ᵀ, adapterOnly = x·ΔWᵀ, tensors() round-trips`, async () => {
      const { ctx, host, dev, free } = await uploads({ x: [[T, n]], w0: [[m, n], 0.5], g: [[T, m]] });
      const from: Record<string, HostValues> = {
        lora_A: { shape: [r, n], data: rand(r * n, 0.5) },
        lora_B: { shape: [m, r], data: rand(m * r, 0.5) },
      };
      if (variant === 'bora') from.sigma = { shape: [b, b, r], data: rand(b * b * r, 0.5) };
      const layer = desc.createLayer(ctx, { w0: dev.w0, r, alpha, options, from });
      const refArgs: ref.BoraRefArgs = {
        T,
        n,
        m,
        r,
        blocks: b,
        scale: 2,
        x: host.x,
        w0: host.w0,
        a: from.lora_A.data,
        b: from.lora_B.data,
        ...(variant === 'bora' ? { sigma: from.sigma.data } : { variant }),
      };
      const y = ctx.tensor([T, m]);
      await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y));
      const yHost = await ctx.read(y);
      expectClose(yHost, ref.boraForward(refArgs), 'forward');
      const merged = await layer.merge();
      const mergedHost = await ctx.read(merged);
      expectClose(mergedHost, ref.boraMerge(refArgs), 'merged');
      expectClose(yHost, refMatmul(host.x, mergedHost, T, n, m, false, true), 'x·merge()ᵀ vs forward');
      const dx = ctx.tensor([T, n]);
      await ctx.encode(undefined, (enc) => layer.backward(enc, dev.x, dev.g, dx));
      const expected = ref.boraBackward({ ...refArgs, g: host.g });
      expectClose(await ctx.read(dx), expected.dx, 'dx');
      expectClose(await ctx.read(layer.trainables[0].grad), expected.da, 'da');
      expectClose(await ctx.read(layer.trainables[1].grad), expected.db, 'db');
      if (variant === 'bora') expectDsigma(await ctx.read(layer.trainables[2].grad), expected, from.sigma.data as Float32Array, 'dsigma');
      const delta = await layer.merge({ deltaOnly: true });
      expectClose(await ctx.read(delta), ref.boraDelta(refArgs), 'ΔW');
      await ctx.encode(undefined, (enc) => layer.forward(enc, dev.x, y, { adapterOnly: true }));
      expectClose(await ctx.read(y), refMatmul(host.x, await ctx.read(delta), T, n, m, false, true), 'x·ΔWᵀ vs adapterOnly forward');

      const again = desc.createLayer(ctx, { w0: dev.w0, r, alpha, options, from: await layer.tensors() });
      const y2 = ctx.tensor([T, m]);
      await ctx.encode(undefined, (enc) => again.forward(enc, dev.x, y2));
      expect(Array.from(await ctx.read(y2))).to.deep.equal(Array.from(yHost));
      for (const t of [y, y2, dx, merged, delta]) t.destroy();
      layer.destroy();
      again.destroy();
      free();
    });

    it(`${desc.id}: createLayer rejects options it does not take, blocks that do not divide, and wrong starting values`, async () => {
      const ctx = await gpu();
      const w0 = ctx.tensor([m, n]);
      expect(() => desc.createLayer(ctx, { w0, r, alpha, options: { ...options, order: 'pre' } })).to.throw(
        PeftError,
        new RegExp(`${desc.id}\\.createLayer: unknown option 'order'`),
      );
      expect(() => desc.createLayer(ctx, { w0, r, alpha, options: { blocks: 3 } })).to.throw(
        PeftError,
        /blocks b = 3 must divide n = 20 \(n mod b = 2\)/,
      );
      expect(() => desc.createLayer(ctx, { w0, r, alpha, options: {} })).to.throw(PeftError, /'blocks' must be an integer ≥ 1, got undefined/);
      expect(() => desc.createLayer(ctx, { w0, r, alpha, options, from: { lora_A: { shape: [r, 7], data: new Float32Array(r * 7) } } })).to.throw(
        PeftError,
        /'lora_A' must be 60 f32 values/,
      );
      if (variant === 'bora') {
        const zero = { shape: [b, b, r], data: new Float32Array(b * b * r) };
        expect(() => desc.createLayer(ctx, { w0, r, alpha, options, from: { sigma: zero } })).to.throw(
          PeftError,
          /bora\.createLayer: μ = mean\|σ\| is 0/,
        );
        expect(() => desc.createLayer(ctx, { w0, r, alpha, options: { blocks: b, sigmaTransform: 'tanh' } })).to.throw(
          PeftError,
          /'sigmaTransform' must be one of exp-mav, exp, mav, raw, got tanh/,
        );
      } else {
        expect(() => desc.createLayer(ctx, { w0, r, alpha, options: { blocks: b, sigmaTransform: 'exp' } })).to.throw(
          PeftError,
          /melora\.createLayer: unknown option 'sigmaTransform'/,
        );
      }
      const layer = desc.createLayer(ctx, { w0, r, alpha, options });
      await expectThrows(() => layer.merge({ inPlace: true } as never), new RegExp(`${desc.id}\\.layer\\.merge: unknown option 'inPlace'`));
      const x = ctx.tensor([2, n]);
      const y = ctx.tensor([2, m]);
      await expectThrows(
        () => ctx.encode(undefined, (enc) => layer.forward(enc, x, y, { save: true } as never)),
        new RegExp(`${desc.id}\\.layer\\.forward: unknown option 'save'`),
      );
      for (const t of [x, y, w0]) t.destroy();
      layer.destroy();
    });

    it(`${desc.id}: checkModule rejects a wrong shape naming the tensor, the base shape naming the module, and blocks that do not divide`, () => {
      const label = (name: string) => `h1.${desc.tensors.find((s) => s.name === name)?.key ?? name}`;
      const t = (a: number[], bm: number[], sigma: number[] = [b, b, r]): Record<string, HostValues> => {
        const v = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((x, y) => x * y, 1)) });
        return variant === 'bora' ? { lora_A: v(a), lora_B: v(bm), sigma: v(sigma) } : { lora_A: v(a), lora_B: v(bm) };
      };
      const ok = t([r, n], [m, r]);
      expect(() => desc.checkModule(ok, r, options, { n, m }, label, 'adapter')).not.to.throw();
      expect(() => desc.checkModule(t([r + 1, n], [m, r]), r, options, undefined, label, 'adapter')).to.throw(
        PeftError,
        /adapter: 'h1\.lora_A\.weight' has shape \[4, 20\], expected \[r, n\] with r = 3/,
      );
      expect(() => desc.checkModule(t([r, n], [m, r + 1]), r, options, undefined, label, 'adapter')).to.throw(
        PeftError,
        /'h1\.lora_B\.weight' has shape \[12, 4\], expected \[m, r\] with r = 3/,
      );
      expect(() => desc.checkModule(ok, r, options, { n: 24, m }, label, 'adapter')).to.throw(
        PeftError,
        /'h1\.lora_A\.weight' has n = 20, but module 'h1' has 24 in-features/,
      );
      expect(() => desc.checkModule(t([r, 10], [m, r]), r, options, undefined, label, 'adapter')).to.throw(
        PeftError,
        /adapter: blocks = 4 does not divide n = 10 of module 'h1'/,
      );
      expect(() => desc.checkModule(ok, r, { ...options, order: 'pre' }, undefined, label, 'adapter')).to.throw(PeftError, /unknown option 'order'/);
      if (variant === 'bora') {
        expect(() => desc.checkModule(t([r, n], [m, r], [b, r]), r, options, { n, m }, label, 'adapter')).to.throw(
          PeftError,
          /'h1\.sigma' has shape \[4, 3\], expected \[b, b, r\] = \[4, 4, 3\]/,
        );
      }
    });
  }

  it('ids, labels, adapter-file fields and what each does not support', () => {
    expect([bora.id, bora.label, bora.peftType, bora.family, bora.docs]).to.deep.equal(['bora', 'BoRA', 'BORA', 'bora', 'docs/bora.md']);
    expect([melora.id, melora.label, melora.peftType, melora.family]).to.deep.equal(['melora', 'MELoRA', 'MELORA', 'bora']);
    expect(bora.tensors.map((s) => s.key)).to.deep.equal(['lora_A.weight', 'lora_B.weight', 'sigma']);
    expect(melora.tensors.map((s) => s.key)).to.deep.equal(['lora_A.weight', 'lora_B.weight']);
    expect(bora.config.map((f) => [f.key, f.option, f.default])).to.deep.equal([
      ['blocks', 'blocks', undefined],
      ['sigma_transform', 'sigmaTransform', 'exp-mav'],
    ]);
    expect(melora.config.map((f) => f.key)).to.deep.equal(['blocks']);
    expect(() => bora.config[0].check(2.5, 'cfg')).to.throw(PeftError, /cfg: 'blocks' must be a positive integer, got 2\.5/);
    expect(() => bora.config[1].check('tanh', 'cfg')).to.throw(PeftError, /cfg: 'sigma_transform' must be one of exp-mav, exp, mav, raw, got "tanh"/);
    expect(bora.rankFor(8, { n: 64, m: 64 })).to.equal(8);
    expect(bora.benchOptions!({ b: 16 })).to.deep.equal({ blocks: 16 });
    expect(bora.vectors?.method).to.equal('bora');
    expect(melora.vectors).to.equal(undefined);
    const d = { n: 768, m: 768, r: 8 };
    expect(bora.unsupported(d, { blocks: 16 })).to.equal(null);
    expect(melora.unsupported(d, { blocks: 7 })).to.match(/blocks b = 7 must divide n = 768/);
    expect(bora.unsupported({ n: 6, m: 6, r: 8 }, { blocks: 2 })).to.match(/rank r = 8 is above min\(n, m\)/);
    expect(bora.unsupported(d, {})).to.match(/needs blocks b/);
    expect(melora.unsupported(d, { blocks: 4, sigmaTransform: 'exp' })).to.match(/MELoRA takes blocks \(got sigmaTransform\)/);
  });
});
