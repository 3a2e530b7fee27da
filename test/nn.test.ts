// Layers (src/nn.ts): GPU kernels against the float64 reference on odd shapes, the reference's
// gradients against central finite differences, and bad input.

import { expect } from 'chai';
import * as nn from '../src/nn.js';
import * as ref from '../src/reference/nn.js';
import { dot, finiteDifference, relativeError, toF64 } from '../src/reference/linalg.js';
import { rng } from '../src/random.js';
import { expectClose, expectThrows, gpu, rand } from './helpers.js';

function ids(count: number, V: number, seed: number): Uint32Array {
  const next = rng(seed);
  return Uint32Array.from({ length: count }, () => Math.floor(next() * V));
}

describe('nn kernels against the float64 reference', () => {
  for (const [B, C, V, D] of [
    [1, 1, 1, 1],
    [5, 3, 29, 7],
    [64, 8, 30, 24],
    [7, 37, 5, 3],
  ] as const) {
    it(`embedding forward and backward, ids [${B}, ${C}], table [${V}, ${D}]`, async () => {
      const ctx = await gpu();
      const table = rand(V * D);
      const tok = ids(B * C, V, B * 1000 + C);
      const g = rand(B * C * D);
      const tTable = ctx.upload(table, [V, D]);
      const tIds = nn.uploadIds(ctx, tok, [B, C], V);
      const out = await nn.embeddingForward(ctx, { table: tTable, ids: tIds });
      expect(out.shape).to.deep.equal([B, C * D]);
      expectClose(await ctx.read(out), ref.embeddingForward({ V, D, table, ids: tok }), 'embedded');
      const tG = ctx.upload(g, [B, C * D]);
      const dtable = await nn.embeddingBackward(ctx, { ids: tIds, g: tG, vocab: V });
      expectClose(await ctx.read(dtable), ref.embeddingBackward({ V, D, ids: tok, g }), 'dtable');
      // Same ids as a flat [N] tensor: output [N, D].
      const flat = nn.uploadIds(ctx, tok, [B * C], V);
      const out2 = await nn.embeddingForward(ctx, { table: tTable, ids: flat });
      expect(out2.shape).to.deep.equal([B * C, D]);
      expectClose(await ctx.read(out2), ref.embeddingForward({ V, D, table, ids: tok }), 'embedded [N, D]');
      for (const t of [tTable, tIds, out, tG, dtable, flat, out2]) t.destroy();
    });
  }

  it('embedding backward is deterministic (bit-identical across runs) with many repeated ids', async () => {
    const ctx = await gpu();
    const tok = ids(512, 3, 7);
    const tIds = nn.uploadIds(ctx, tok, [64, 8], 3);
    const tG = ctx.upload(rand(512 * 24), [64, 192]);
    const a = await ctx.read(await nn.embeddingBackward(ctx, { ids: tIds, g: tG, vocab: 3 }));
    const b = await ctx.read(await nn.embeddingBackward(ctx, { ids: tIds, g: tG, vocab: 3 }));
    expect(Array.from(a)).to.deep.equal(Array.from(b));
  });

  for (const [T, n, m] of [
    [1, 1, 1],
    [1, 37, 29],
    [7, 37, 29],
    [64, 192, 30],
    [65, 29, 70],
  ] as const) {
    it(`linear forward and backward with bias, T=${T} n=${n} m=${m}`, async () => {
      const ctx = await gpu();
      const x = rand(T * n),
        w = rand(m * n, 0.5),
        b = rand(m),
        g = rand(T * m);
      const dev = { x: ctx.upload(x, [T, n]), w: ctx.upload(w, [m, n]), b: ctx.upload(b, [m]), g: ctx.upload(g, [T, m]) };
      const y = await nn.linearForward(ctx, dev);
      expectClose(await ctx.read(y), ref.linearForward({ T, n, m, x, w, b }), 'y');
      const noBias = await nn.linearForward(ctx, { x: dev.x, w: dev.w });
      expectClose(await ctx.read(noBias), ref.linearForward({ T, n, m, x, w }), 'y without bias');
      const grads = await nn.linearBackward(ctx, dev);
      const want = ref.linearBackward({ T, n, m, x, w, g });
      expectClose(await ctx.read(grads.dx!), want.dx, 'dx');
      expectClose(await ctx.read(grads.dw!), want.dw, 'dw');
      expectClose(await ctx.read(grads.db!), want.db, 'db');
      const frozen = await nn.linearBackward(ctx, dev, { dw: false, db: false });
      expect(frozen.dw).to.equal(undefined);
      expect(frozen.db).to.equal(undefined);
      expectClose(await ctx.read(frozen.dx!), want.dx, 'dx (frozen)');
      const db = await nn.biasGrad(ctx, { g: dev.g });
      expectClose(await ctx.read(db), want.db, 'biasGrad');
      for (const t of [...Object.values(dev), y, noBias, grads.dx!, grads.dw!, grads.db!, frozen.dx!, db]) t.destroy();
    });
  }

  for (const fn of ['gelu', 'tanh'] as const) {
    for (const [T, n] of [
      [1, 1],
      [7, 37],
      [64, 192],
    ] as const) {
      it(`${fn} forward (with and without bias) and backward, T=${T} n=${n}`, async () => {
        const ctx = await gpu();
        // Wide inputs, past the tanh clamp, to cover both tails.
        const x = rand(T * n, 6),
          b = rand(n),
          g = rand(T * n);
        const tx = ctx.upload(x, [T, n]);
        const y = await nn.activationForward(ctx, { x: tx, fn });
        expectClose(await ctx.read(y), ref.activationForward({ n, x, fn }), `${fn}(x)`);
        const { dx } = await nn.activationBackward(ctx, { x: tx, g: ctx.upload(g, [T, n]), fn });
        const want = ref.activationBackward({ n, x, g, fn });
        expectClose(await ctx.read(dx), want.dx, `${fn} dx`);

        const tb = ctx.upload(b, [n]);
        const y2 = await nn.activationForward(ctx, { x: tx, b: tb, fn });
        expectClose(await ctx.read(y2), ref.activationForward({ n, x, b, fn }), `${fn}(x + b)`);
        const pre = Float64Array.from(x, (v, i) => v + b[i % n]);
        expectClose(await ctx.read(tx), pre, 'x + b written in place', 1e-6);
        const gb = await nn.activationBackward(ctx, { x: tx, g: ctx.upload(g, [T, n]), fn }, { bias: true });
        const wantB = ref.activationBackward({ n, x: Float32Array.from(pre), g, fn });
        expectClose(await ctx.read(gb.dx), wantB.dx, `${fn} dx (bias pass)`);
        expectClose(await ctx.read(gb.db!), wantB.db, `${fn} db`);
      });
    }
  }

  // n = 2 is left out: there x̂ = ±√(σ²/(σ² + eps)) whatever x is, so dx is O(eps) noise.
  for (const [T, n] of [
    [1, 3],
    [7, 37],
    [64, 192],
    [3, 1],
  ] as const) {
    it(`layer norm forward and backward, T=${T} n=${n}`, async () => {
      const ctx = await gpu();
      // An offset mean checks the two-pass variance.
      const x = Float32Array.from(rand(T * n, 2), (v) => v + 3),
        gamma = rand(n),
        beta = rand(n),
        g = rand(T * n);
      const dev = { x: ctx.upload(x, [T, n]), gamma: ctx.upload(gamma, [n]), beta: ctx.upload(beta, [n]), g: ctx.upload(g, [T, n]) };
      const out = await nn.layerNormForward(ctx, { ...dev, eps: 1e-5 });
      const want = ref.layerNormForward({ T, n, x, gamma, beta, eps: 1e-5 });
      expectClose(await ctx.read(out.y), want.y, 'y');
      expectClose(await ctx.read(out.mean), want.mean, 'mean');
      expectClose(await ctx.read(out.rstd), want.rstd, 'rstd');
      const grads = await nn.layerNormBackward(ctx, { ...dev, mean: out.mean, rstd: out.rstd });
      const wantG = ref.layerNormBackward({ T, n, x, gamma, g, eps: 1e-5 });
      // n = 1 makes dx exactly 0 (the output is β whatever x is): compare on g's scale instead.
      expectClose(await ctx.read(grads.dx), wantG.dx, 'dx', n === 1 ? 1e-3 : undefined);
      expectClose(await ctx.read(grads.dgamma!), wantG.dgamma, 'dgamma');
      expectClose(await ctx.read(grads.dbeta!), wantG.dbeta, 'dbeta');
      const only = await nn.layerNormBackward(ctx, { ...dev, mean: out.mean, rstd: out.rstd }, { params: false });
      expect(only.dgamma).to.equal(undefined);
      expectClose(await ctx.read(only.dx), wantG.dx, 'dx alone', n === 1 ? 1e-3 : undefined);
    });
  }

  for (const [T, V] of [
    [1, 1],
    [1, 30],
    [7, 29],
    [64, 30],
    [100, 3],
  ] as const) {
    it(`softmax cross-entropy, T=${T} V=${V}`, async () => {
      const ctx = await gpu();
      // Large logits: without the max subtraction exp overflows f32.
      const logits = Float32Array.from(rand(T * V, 4), (v, i) => v + (i % 3 === 0 ? 100 : 0));
      const targets = ids(T, V, T * 31 + V);
      const tl = ctx.upload(logits, [T, V]);
      const tt = nn.uploadIds(ctx, targets, [T], V);
      const { loss, dlogits } = await nn.softmaxCrossEntropy(ctx, { logits: tl, targets: tt });
      const want = ref.softmaxCrossEntropy({ T, V, logits, targets });
      const [got] = await ctx.read(loss);
      expect(Number.isFinite(got)).to.equal(true);
      expect(Math.abs(got - want.loss), `loss ${got} vs ${want.loss}`).to.be.at.most(2e-5 * Math.max(1, Math.abs(want.loss)));
      expectClose(await ctx.read(dlogits), want.dlogits, 'dlogits');
    });
  }

  it('a target outside the vocabulary on the device makes the loss NaN', async () => {
    const ctx = await gpu();
    const tl = ctx.upload(rand(6), [2, 3]);
    const tt = ctx.upload([1, 7], [2], 'u32');
    const { loss } = await nn.softmaxCrossEntropy(ctx, { logits: tl, targets: tt });
    expect(Number.isNaN((await ctx.read(loss))[0])).to.equal(true);
  });

  it('encodes a whole forward and backward of a small MLP into one command encoder', async () => {
    const ctx = await gpu();
    const [B, C, V, D, H] = [9, 4, 11, 5, 13];
    const host = { table: rand(V * D), w1: rand(H * C * D, 0.3), b1: rand(H), gamma: rand(H), beta: rand(H), w2: rand(V * H, 0.3), b2: rand(V) };
    const tok = ids(B * C, V, 3),
      tgt = ids(B, V, 4);
    const d = {
      table: ctx.upload(host.table, [V, D]),
      w1: ctx.upload(host.w1, [H, C * D]),
      b1: ctx.upload(host.b1, [H]),
      gamma: ctx.upload(host.gamma, [H]),
      beta: ctx.upload(host.beta, [H]),
      w2: ctx.upload(host.w2, [V, H]),
      b2: ctx.upload(host.b2, [V]),
    };
    const idsT = nn.uploadIds(ctx, tok, [B, C], V),
      tgtT = nn.uploadIds(ctx, tgt, [B], V);
    const enc = ctx.device.createCommandEncoder();
    const e = { encoder: enc };
    const x0 = await nn.embeddingForward(ctx, { table: d.table, ids: idsT }, e);
    const h = await nn.linearForward(ctx, { x: x0, w: d.w1 }, e);
    const a = await nn.activationForward(ctx, { x: h, b: d.b1 }, e);
    const ln = await nn.layerNormForward(ctx, { x: a, gamma: d.gamma, beta: d.beta }, e);
    const logits = await nn.linearForward(ctx, { x: ln.y, w: d.w2, b: d.b2 }, e);
    const ce = await nn.softmaxCrossEntropy(ctx, { logits, targets: tgtT }, e);
    const g2 = await nn.linearBackward(ctx, { x: ln.y, w: d.w2, g: ce.dlogits }, e);
    const gl = await nn.layerNormBackward(ctx, { x: a, gamma: d.gamma, g: g2.dx!, mean: ln.mean, rstd: ln.rstd }, e);
    const ga = await nn.activationBackward(ctx, { x: h, g: gl.dx }, { ...e, bias: true });
    const g1 = await nn.linearBackward(ctx, { x: x0, w: d.w1, g: ga.dx }, { ...e, db: false });
    const gt = await nn.embeddingBackward(ctx, { ids: idsT, g: g1.dx!, vocab: V }, e);
    ctx.submit(enc);

    // The same model in float64, its loss differentiated by finite differences for two tensors.
    const forward = (table: ArrayLike<number>, b1: ArrayLike<number>) => {
      const r0 = ref.embeddingForward({ V, D, table, ids: tok });
      const rh = ref.activationForward({ n: H, x: ref.linearForward({ T: B, n: C * D, m: H, x: r0, w: host.w1 }), b: b1 });
      const rl = ref.layerNormForward({ T: B, n: H, x: rh, gamma: host.gamma, beta: host.beta });
      return ref.softmaxCrossEntropy({ T: B, V, logits: ref.linearForward({ T: B, n: H, m: V, x: rl.y, w: host.w2, b: host.b2 }), targets: tgt })
        .loss;
    };
    const table64 = toF64(host.table),
      b164 = toF64(host.b1);
    const lossFn = () => forward(table64, b164);
    expect(Math.abs((await ctx.read(ce.loss))[0] - lossFn())).to.be.below(1e-5);
    expectClose(await ctx.read(gt), finiteDifference(lossFn, table64), 'dtable through the model', 1e-4);
    expectClose(await ctx.read(ga.db!), finiteDifference(lossFn, b164), 'db1 through the model', 1e-4);
    expect(g1.db).to.equal(undefined);
  });
});

describe('nn reference gradients against central finite differences', () => {
  it('embedding', () => {
    const [V, D] = [4, 3];
    const tok = [1, 3, 1, 0, 1];
    const table = toF64(rand(V * D)),
      g = toF64(rand(tok.length * D));
    const fd = finiteDifference(() => dot(ref.embeddingForward({ V, D, table, ids: tok }), g), table);
    expect(relativeError(ref.embeddingBackward({ V, D, ids: tok, g }), fd)).to.be.below(1e-7);
  });

  it('linear with bias', () => {
    const [T, n, m] = [3, 5, 4];
    const x = toF64(rand(T * n)),
      w = toF64(rand(m * n)),
      b = toF64(rand(m)),
      g = toF64(rand(T * m));
    const loss = () => dot(ref.linearForward({ T, n, m, x, w, b }), g);
    const got = ref.linearBackward({ T, n, m, x, w, g });
    for (const [name, param, grad] of [
      ['x', x, got.dx],
      ['w', w, got.dw],
      ['b', b, got.db],
    ] as const) {
      expect(relativeError(grad, finiteDifference(loss, param)), `d${name}`).to.be.below(1e-7);
    }
  });

  for (const fn of ['gelu', 'tanh'] as const) {
    it(`${fn} with bias`, () => {
      const n = 4;
      const x = toF64(rand(12, 3)),
        b = toF64(rand(n)),
        g = toF64(rand(12));
      const loss = () => dot(ref.activationForward({ n, x, b, fn }), g);
      const pre = Float64Array.from(x, (v, i) => v + b[i % n]);
      const got = ref.activationBackward({ n, x: pre, g, fn });
      expect(relativeError(got.dx, finiteDifference(loss, x)), 'dx').to.be.below(1e-7);
      expect(relativeError(got.db, finiteDifference(loss, b)), 'db').to.be.below(1e-7);
    });
  }

  it('layer norm', () => {
    const [T, n] = [3, 6];
    const x = toF64(rand(T * n)),
      gamma = toF64(rand(n)),
      beta = toF64(rand(n)),
      g = toF64(rand(T * n));
    const loss = () => dot(ref.layerNormForward({ T, n, x, gamma, beta, eps: 1e-5 }).y, g);
    const got = ref.layerNormBackward({ T, n, x, gamma, g, eps: 1e-5 });
    for (const [name, param, grad] of [
      ['x', x, got.dx],
      ['gamma', gamma, got.dgamma],
      ['beta', beta, got.dbeta],
    ] as const) {
      expect(relativeError(grad, finiteDifference(loss, param)), `d${name}`).to.be.below(1e-6);
    }
  });

  it('softmax cross-entropy', () => {
    const [T, V] = [4, 5];
    const logits = toF64(rand(T * V, 3));
    const targets = [0, 4, 2, 2];
    const fd = finiteDifference(() => ref.softmaxCrossEntropy({ T, V, logits, targets }).loss, logits);
    expect(relativeError(ref.softmaxCrossEntropy({ T, V, logits, targets }).dlogits, fd)).to.be.below(1e-7);
  });
});

describe('nn bad input', () => {
  it('rejects token ids outside the vocabulary on the host, naming the position', async () => {
    const ctx = await gpu();
    expect(() => nn.uploadIds(ctx, [0, 2, 30, 1], [2, 2], 30)).to.throw(
      /nn\.uploadIds: 'ids'\[2\] = 30 is not a token id: expected an integer in \[0, 30\)/,
    );
    expect(() => nn.uploadIds(ctx, [0, -1], [2], 30)).to.throw(/'ids'\[1\] = -1/);
    expect(() => nn.uploadIds(ctx, [0, 1.5], [2], 30)).to.throw(/'ids'\[1\] = 1.5/);
    expect(() => nn.uploadIds(ctx, [0, 1, 2], [2], 30)).to.throw(/'ids' has 3 values, expected \[2\] = 2/);
    expect(() => nn.uploadIds(ctx, [0, 1], [2], 30, ctx.tensor([2], 'f32'))).to.throw(/'into' is f32, expected u32/);
  });

  it('rejects wrong shapes and dtypes, naming the call and argument', async () => {
    const ctx = await gpu();
    const table = ctx.tensor([10, 4]);
    const idsT = nn.uploadIds(ctx, [1, 2, 3, 4, 5, 6], [2, 3], 10);
    await expectThrows(() => nn.embeddingForward(ctx, { table, ids: ctx.tensor([2, 3]) }), /nn\.embedding: 'ids' is f32, expected u32/);
    await expectThrows(
      () => nn.embeddingForward(ctx, { table, ids: idsT, out: ctx.tensor([2, 11]) }),
      /nn\.embedding: 'out' has shape \[2, 11\], expected \[B, C·D\] = \[2, 12\]/,
    );
    await expectThrows(
      () => nn.embeddingBackward(ctx, { ids: idsT, g: ctx.tensor([2, 13]), vocab: 10 }),
      /'g' has 26 elements, not a multiple of the 6 ids/,
    );
    await expectThrows(() => nn.embeddingBackward(ctx, { ids: idsT, g: ctx.tensor([2, 12]), vocab: 0 }), /'vocab' must be a positive integer, got 0/);
    await expectThrows(
      () => nn.linearForward(ctx, { x: ctx.tensor([3, 5]), w: ctx.tensor([4, 6]) }),
      /nn\.linear: 'x' has shape \[3, 5\], expected \[T, n\] = \[3, 6\]/,
    );
    await expectThrows(
      () => nn.linearForward(ctx, { x: ctx.tensor([3, 6]), w: ctx.tensor([4, 6]), b: ctx.tensor([5]) }),
      /nn\.linear: 'b' has shape \[5\], expected \[m\] = \[4\]/,
    );
    await expectThrows(
      () => nn.linearBackward(ctx, { x: ctx.tensor([3, 6]), w: ctx.tensor([4, 6]), g: ctx.tensor([3, 5]) }),
      /nn\.linearBackward: 'g' has shape \[3, 5\], expected \[T, m\] = \[3, 4\]/,
    );
    await expectThrows(
      () => nn.addBias(ctx, { y: ctx.tensor([3, 6]), b: ctx.tensor([3]) }),
      /nn\.addBias: 'b' has shape \[3\], expected \[n\] = \[6\]/,
    );
    await expectThrows(
      () => nn.activationForward(ctx, { x: ctx.tensor([3, 6]), fn: 'relu' as never }),
      /nn\.activation: 'fn' must be 'gelu' or 'tanh', got relu/,
    );
    await expectThrows(
      () => nn.activationForward(ctx, { x: ctx.tensor([18]) }),
      /nn\.activation: 'x' must be a 2-D Tensor \[T, n\], got shape \[18\]/,
    );
    await expectThrows(
      () => nn.layerNormForward(ctx, { x: ctx.tensor([3, 6]), gamma: ctx.tensor([6]), beta: ctx.tensor([5]) }),
      /nn\.layerNorm: 'beta' has shape \[5\], expected \[n\] = \[6\]/,
    );
    await expectThrows(
      () => nn.layerNormForward(ctx, { x: ctx.tensor([3, 6]), gamma: ctx.tensor([6]), beta: ctx.tensor([6]), eps: 0 }),
      /'eps' must be a positive finite number, got 0/,
    );
    await expectThrows(
      () =>
        nn.layerNormBackward(ctx, {
          x: ctx.tensor([3, 6]),
          gamma: ctx.tensor([6]),
          g: ctx.tensor([3, 6]),
          mean: ctx.tensor([3]),
          rstd: ctx.tensor([4]),
        }),
      /nn\.layerNormBackward: 'rstd' has shape \[4\], expected \[T\] = \[3\]/,
    );
    await expectThrows(
      () => nn.softmaxCrossEntropy(ctx, { logits: ctx.tensor([3, 5]), targets: ctx.tensor([3]) }),
      /nn\.softmaxCrossEntropy: 'targets' is f32, expected u32/,
    );
    await expectThrows(
      () => nn.softmaxCrossEntropy(ctx, { logits: ctx.tensor([3, 5]), targets: ctx.tensor([4], 'u32') }),
      /'targets' has shape \[4\], expected \[T\] = \[3\]/,
    );
    await expectThrows(
      () => nn.softmaxCrossEntropy(ctx, { logits: ctx.tensor([3, 5]), targets: ctx.tensor([3], 'u32'), loss: ctx.tensor([2]) }),
      /'loss' has shape \[2\], expected \[1\] = \[1\]/,
    );
    await expectThrows(
      () => nn.embeddingBackward(ctx, { ids: idsT, g: ctx.tensor([2, 12]), vocab: 10, dtable: ctx.tensor([9, 4]) }),
      /nn\.embeddingBackward: 'dtable' has shape \[9, 4\], expected \[V, D\] = \[10, 4\]/,
    );
    await expectThrows(
      () => nn.embeddingForward(ctx, { table: ctx.tensor([40]), ids: idsT }),
      /nn\.embedding: 'table' must be a 2-D Tensor \[V, D\], got shape \[40\]/,
    );
    await expectThrows(
      () => nn.biasGrad(ctx, { g: ctx.tensor([3, 6]), db: ctx.tensor([3]) }),
      /nn\.biasGrad: 'db' has shape \[3\], expected \[n\] = \[6\]/,
    );
    await expectThrows(
      () => nn.activationBackward(ctx, { x: ctx.tensor([3, 6]), g: ctx.tensor([3, 6]), db: ctx.tensor([3]) }),
      /nn\.activationBackward: 'db' has shape \[3\], expected \[n\] = \[6\]/,
    );
    await expectThrows(
      () => nn.activationBackward(ctx, { x: ctx.tensor([3, 6]), g: ctx.tensor([6, 3]) }),
      /nn\.activationBackward: 'g' has shape \[6, 3\], expected \[T, n\] = \[3, 6\]/,
    );
    await expectThrows(
      () =>
        nn.layerNormBackward(ctx, {
          x: ctx.tensor([3, 6]),
          gamma: ctx.tensor([6]),
          g: ctx.tensor([3, 6]),
          mean: ctx.tensor([3]),
          rstd: ctx.tensor([3]),
          dgamma: ctx.tensor([5]),
        }),
      /'dgamma' has shape \[5\], expected \[n\] = \[6\]/,
    );
    await expectThrows(
      () => nn.linearBackward(ctx, { x: ctx.tensor([3, 6]), w: ctx.tensor([4, 6]), g: ctx.tensor([3, 4]), dw: ctx.tensor([6, 4]) }),
      /'dw' has shape \[6, 4\], expected \[m, n\] = \[4, 6\]/,
    );
    expect(() => nn.uploadIds(ctx, [0], [1], 0)).to.throw(/nn\.uploadIds: 'vocab' must be a positive integer, got 0/);
  });

  it('rejects an output that aliases an input', async () => {
    const ctx = await gpu();
    const x = ctx.tensor([3, 6]);
    await expectThrows(() => nn.activationForward(ctx, { x, y: x }), /'x' and 'y' are the same buffer|'y' and 'x' are the same buffer/);
    const w = ctx.tensor([6, 6]);
    await expectThrows(() => nn.linearBackward(ctx, { x, w, g: ctx.tensor([3, 6]), dx: x }), /are the same buffer/);
  });
});

describe('transformer layers: residual add, learned positions, tied output projection', () => {
  for (const [T, n] of [
    [1, 1],
    [7, 37],
    [65, 130],
  ] as const) {
    it(`residual add, ${T}x${n}`, async () => {
      const ctx = await gpu();
      const y = rand(T * n),
        x = rand(T * n);
      const ty = ctx.upload(y, [T, n]);
      const tx = ctx.upload(x, [T, n]);
      await nn.residualAdd(ctx, { y: ty, x: tx });
      // One f32 add per element: exact up to the rounding of that add.
      expectClose(
        await ctx.read(ty),
        Float64Array.from(y, (v, i) => v + x[i]),
        'y + x',
        1e-7,
      );
      expectClose(await ctx.read(tx), x, 'x unchanged', 0);
      ty.destroy();
      tx.destroy();
    });
  }

  for (const [B, T, P, D] of [
    [1, 1, 1, 1],
    [3, 5, 8, 7],
    [4, 13, 13, 33],
  ] as const) {
    it(`positions forward and backward, batch ${B}, T=${T} of ${P} positions, D=${D}`, async () => {
      const ctx = await gpu();
      const N = B * T;
      const x = rand(N * D),
        pos = rand(P * D),
        g = rand(N * D);
      const tx = ctx.upload(x, [N, D]);
      const tpos = ctx.upload(pos, [P, D]);
      await nn.addPositions(ctx, { x: tx, pos: tpos, T });
      expectClose(await ctx.read(tx), ref.addPositions({ N, D, T, x, pos }), 'x + pos', 1e-7);
      const tg = ctx.upload(g, [N, D]);
      // A stale table gradient is overwritten, rows past T included.
      const dpos = ctx.upload(rand(P * D), [P, D]);
      await nn.positionGrad(ctx, { g: tg, T, positions: P, dpos });
      expectClose(await ctx.read(dpos), ref.positionGrad({ N, D, T, P, g }), 'dpos');
      for (const t of [tx, tpos, tg, dpos]) t.destroy();
    });
  }

  it('tied output projection: logits = h Eᵀ, dE from both ends (accumulating linear backward)', async () => {
    const ctx = await gpu();
    const [N, V, D] = [23, 29, 18];
    const table = rand(V * D),
      h = rand(N * D),
      g = rand(N * V),
      dxIn = rand(N * D);
    const tok = ids(N, V, 5);
    const tTable = ctx.upload(table, [V, D]);
    const tH = ctx.upload(h, [N, D]);
    const logits = await nn.linearForward(ctx, { x: tH, w: tTable });
    expectClose(await ctx.read(logits), ref.tiedOutputForward({ T: N, V, D, h, table }), 'logits');
    // The input end first (embedding backward overwrites), then the output end adds into it.
    const tIds = nn.uploadIds(ctx, tok, [N], V);
    const dtable = await nn.embeddingBackward(ctx, { ids: tIds, g: ctx.upload(dxIn, [N, D]), vocab: V });
    const tG = ctx.upload(g, [N, V]);
    const dh = ctx.upload(rand(N * D), [N, D]);
    const dhStart = Float64Array.from(await ctx.read(dh));
    await nn.linearBackward(ctx, { x: tH, w: tTable, g: tG, dx: dh, dw: dtable }, { db: false, accumulate: ['dx', 'dw'] });
    const want = ref.tiedOutputBackward({ T: N, V, D, h, table, g, ids: tok, dx: dxIn });
    expectClose(await ctx.read(dtable), want.dtable, 'dE (both ends)');
    expectClose(
      await ctx.read(dh),
      Float64Array.from(want.dh, (v, i) => v + dhStart[i]),
      'dh added into dx',
    );
    // Only dw accumulates: dx is overwritten.
    await nn.linearBackward(ctx, { x: tH, w: tTable, g: tG, dx: dh, dw: dtable }, { db: false, accumulate: ['dw'] });
    expectClose(await ctx.read(dh), want.dh, 'dh overwritten');
    const outEnd = ref.linearBackward({ T: N, n: D, m: V, x: h, w: table, g }).dw;
    expectClose(
      await ctx.read(dtable),
      Float64Array.from(want.dtable, (v, i) => v + outEnd[i]),
      'dE with the output end added twice',
    );
    await expectThrows(
      () => nn.linearBackward(ctx, { x: tH, w: tTable, g: tG }, { accumulate: ['dw'], db: false }),
      /nn\.linearBackward: 'accumulate' lists 'dw', so 'dw' must be computed and given/,
    );
    await expectThrows(
      () => nn.linearBackward(ctx, { x: tH, w: tTable, g: tG, dx: dh }, { accumulate: ['db'] as never }),
      /nn\.linearBackward: 'accumulate' must be a list of 'dx' and 'dw'/,
    );
    for (const t of [tTable, tH, logits, tIds, dtable, tG, dh]) t.destroy();
  });

  it('reference gradients against central finite differences: positions and the tied embedding', () => {
    const [B, T, P, D, V] = [2, 3, 5, 4, 6];
    const N = B * T;
    const x = toF64(rand(N * D)),
      pos = toF64(rand(P * D)),
      g = toF64(rand(N * D));
    const posLoss = () => dot(ref.addPositions({ N, D, T, x, pos }), g);
    expect(relativeError(ref.positionGrad({ N, D, T, P, g }), finiteDifference(posLoss, pos)), 'dpos').to.be.below(1e-7);
    // The whole tied path: e = E[ids] + pos, logits = tanh(e) Eᵀ, loss = cross-entropy.
    const table = toF64(rand(V * D));
    const tok = [1, 5, 0, 1, 3, 1];
    const targets = [2, 0, 5, 4, 1, 1];
    const forward = () => {
      const e = ref.addPositions({ N, D, T, x: ref.embeddingForward({ V, D, table, ids: tok }), pos });
      const hh = ref.activationForward({ n: D, x: e, fn: 'tanh' });
      return { e, hh, ...ref.softmaxCrossEntropy({ T: N, V, logits: ref.tiedOutputForward({ T: N, V, D, h: hh, table }), targets }) };
    };
    const f = forward();
    const back = ref.tiedOutputBackward({ T: N, V, D, h: f.hh, table, g: f.dlogits });
    const de = ref.activationBackward({ n: D, x: f.e, g: back.dh, fn: 'tanh' }).dx;
    const both = ref.tiedOutputBackward({ T: N, V, D, h: f.hh, table, g: f.dlogits, ids: tok, dx: de });
    expect(
      relativeError(
        both.dtable,
        finiteDifference(() => forward().loss, table),
      ),
      'dE',
    ).to.be.below(1e-7);
    expect(
      relativeError(
        ref.positionGrad({ N, D, T, P, g: de }),
        finiteDifference(() => forward().loss, pos),
      ),
      'dpos',
    ).to.be.below(1e-7);
  });

  it('rejects bad shapes and sequence lengths, naming the call and argument', async () => {
    const ctx = await gpu();
    const x = ctx.tensor([12, 4]);
    const pos = ctx.tensor([5, 4]);
    await expectThrows(() => nn.residualAdd(ctx, { y: x, x: ctx.tensor([12, 5]) }), /nn\.residualAdd: 'x' has shape \[12, 5\], expected \[12, 4\]/);
    await expectThrows(() => nn.residualAdd(ctx, { y: x, x }), /nn\.residualAdd: .*same buffer/);
    await expectThrows(() => nn.addPositions(ctx, { x, pos, T: 6 }), /nn\.addPositions: 'T' is 6, past the 5 rows of the position table/);
    await expectThrows(() => nn.addPositions(ctx, { x, pos, T: 5 }), /nn\.addPositions: the 12 rows are not a whole number of sequences of T = 5/);
    await expectThrows(
      () => nn.addPositions(ctx, { x, pos: ctx.tensor([5, 3]), T: 4 }),
      /nn\.addPositions: 'x' has shape \[12, 4\], expected \[batch·T, 3\]/,
    );
    await expectThrows(() => nn.positionGrad(ctx, { g: x, T: 0, positions: 5 }), /nn\.positionGrad: 'T' must be a positive integer, got 0/);
    await expectThrows(
      () => nn.positionGrad(ctx, { g: x, T: 4, positions: 5, dpos: ctx.tensor([4, 4]) }),
      /nn\.positionGrad: 'dpos' has shape \[4, 4\], expected \[positions, D\] = \[5, 4\]/,
    );
  });
});
