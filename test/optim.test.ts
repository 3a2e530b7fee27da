// AdamW (src/optim.ts): the schedule against hand-computed values, GPU steps against the float64
// reference over several steps (with and without clipping, with a decay mask), a small model that
// learns, and bad input.

import { expect } from 'chai';
import { AdamW, learningRate } from '../src/optim.js';
import * as ref from '../src/reference/optim.js';
import * as nn from '../src/nn.js';
import { rng } from '../src/random.js';
import { expectClose, expectThrows, gpu, rand } from './helpers.js';

describe('learning-rate schedule', () => {
  it('warms up linearly, then decays by cosine or linearly to the floor', () => {
    const s = { warmup: 10, total: 110 };
    const close = (a: number, b: number) => expect(a).to.be.closeTo(b, 1e-12);
    for (const lr of [learningRate, ref.learningRate]) {
      close(lr(0, 2, s), 0.2);
      close(lr(4, 2, s), 1.0);
      close(lr(9, 2, s), 2);
      close(lr(10, 2, s), 2);
      close(lr(35, 2, s), 1 + Math.SQRT1_2); // a quarter of the way: (1 + cos(π/4))/2 · 2
      close(lr(60, 2, s), 1);
      close(lr(110, 2, s), 0);
      close(lr(500, 2, s), 0);
      close(lr(60, 2, { ...s, minRatio: 0.1 }), 0.2 + 1.8 * 0.5);
      close(lr(35, 2, { ...s, decay: 'linear' }), 1.5);
      close(lr(60, 2, { ...s, decay: 'constant' }), 2);
      close(lr(0, 2, { warmup: 0, total: 0 }), 0);
      close(lr(7, 2), 2);
    }
  });
});

describe('AdamW on the GPU against the float64 reference', () => {
  // Sizes: 1 element, odd sizes, and buffers spanning several norm chunks (4096 elements each).
  const SHAPES = [[1], [37], [29, 7], [65, 70], [3, 5000]];

  async function run(opts: { maxGradNorm?: number; trackNorm?: boolean; weightDecay?: number; fused?: boolean }, steps: number, oneEncoder = false) {
    const ctx = await gpu();
    const host = SHAPES.map((s) => rand(s.reduce((a, b) => a * b, 1)));
    const params = SHAPES.map((s, k) => ctx.upload(host[k], s, 'f32', `p${k}`));
    const grads = SHAPES.map((s) => ctx.tensor(s, 'f32', 'g'));
    const decay = SHAPES.map((_, k) => k !== 1);
    const schedule = { warmup: 2, total: steps, decay: 'cosine' as const, minRatio: 0.1 };
    const opt = new AdamW(
      ctx,
      params.map((p, k) => ({ param: p, grad: grads[k], decay: decay[k], name: `p${k}` })),
      { lr: 0.05, schedule, ...opts },
    );
    const want = host.map((h) => Float64Array.from(h));
    const state = ref.adamwInit(want.map((w) => w.length));
    const enc = oneEncoder ? ctx.device.createCommandEncoder() : undefined;
    const norms: [number, number][] = [];
    for (let t = 0; t < steps; t++) {
      // Alternate large and small gradients, so clipping is active on some steps only.
      const g = SHAPES.map((_, k) => Float32Array.from(rand(host[k].length), (v) => v * (t % 2 === 0 ? 5 : 0.01)));
      if (oneEncoder) {
        // Each step needs its own gradient buffers when nothing is submitted in between.
        const gt = SHAPES.map((s, k) => ctx.upload(g[k], s));
        gt.forEach((x, k) => ctx.copy(x, grads[k], enc));
      } else {
        g.forEach((x, k) => ctx.write(grads[k], x));
      }
      const lr = ref.learningRate(t, 0.05, schedule);
      const { norm } = ref.adamwStep(want, g, state, { lr, decay, ...opts });
      expect(opt.currentLr).to.be.closeTo(lr, 1e-15);
      await opt.step({ encoder: enc });
      if (!oneEncoder && opt.trackNorm) norms.push([await opt.gradNorm(), norm]);
    }
    if (enc) ctx.submit(enc);
    return { ctx, opt, params, want, state, norms };
  }

  for (const fused of [true, false]) {
    it(`6 steps with warm-up, cosine decay, clipping on alternate steps and a decay mask (${fused ? 'fused arena' : 'per buffer'})`, async () => {
      const { ctx, opt, params, want, state, norms } = await run({ maxGradNorm: 10, fused }, 6);
      expect(opt.fused).to.equal(fused);
      for (let k = 0; k < params.length; k++) {
        const { m, v } = await opt.moments(k);
        expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
        expectClose(m, state.m[k], `m ${k}`);
        expectClose(v, state.v[k], `v ${k}`);
      }
      expect(norms.length).to.equal(6);
      for (const [got, exp] of norms) expect(Math.abs(got - exp) / exp).to.be.below(2e-6);
      // Both regimes were exercised.
      expect(norms.some(([, n]) => n > 10) && norms.some(([, n]) => n < 10)).to.equal(true);
      expect(opt.stepCount).to.equal(6);
      opt.destroy();
    });
  }

  it('without clipping, with the norm tracked, and with zero weight decay', async () => {
    const { ctx, opt, params, want, norms } = await run({ trackNorm: true, weightDecay: 0 }, 4);
    for (let k = 0; k < params.length; k++) expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
    for (const [got, exp] of norms) expect(Math.abs(got - exp) / exp).to.be.below(2e-6);
    opt.destroy();
  });

  it('without any norm computation (update kernels only), per buffer', async () => {
    const { ctx, opt, params, want } = await run({ fused: false }, 3);
    for (let k = 0; k < params.length; k++) expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
    await expectThrows(() => opt.gradNorm(), /AdamW\.gradNorm: the norm is only computed with 'maxGradNorm' or 'trackNorm'/);
    opt.destroy();
  });

  it('several steps encoded into one command encoder', async () => {
    const { ctx, opt, params, want } = await run({ maxGradNorm: 10 }, 4, true);
    for (let k = 0; k < params.length; k++) expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
    opt.destroy();
  });

  it('reset() starts the moments and the schedule over', async () => {
    const ctx = await gpu();
    const p = ctx.upload([1, 2, 3], [3]);
    const g = ctx.upload([0.5, -1, 2], [3]);
    const opt = new AdamW(ctx, [{ param: p, grad: g }], { lr: 0.1, weightDecay: 0, schedule: { warmup: 2, total: 10 } });
    await opt.step();
    await opt.step();
    opt.reset();
    expect(opt.stepCount).to.equal(0);
    ctx.write(p, [1, 2, 3]);
    await opt.step();
    // First step after reset: warm-up lr 0.05, and m̂/√v̂ = sign(g).
    expectClose(await ctx.read(p), [1 - 0.05, 2 + 0.05, 3 - 0.05], 'first step after reset', 1e-6);
    opt.destroy();
  });
});

describe('AdamW trains a small model built from the nn layers', () => {
  it('the loss of an embedding → linear → GELU → layer norm → linear → softmax CE model falls', async () => {
    const ctx = await gpu();
    const [B, C, V, D, H] = [32, 3, 7, 6, 20];
    // A learnable rule: the next token is (sum of the context) mod V.
    const next = rng(11);
    const tok = Uint32Array.from({ length: B * C }, () => Math.floor(next() * V));
    const tgt = Uint32Array.from({ length: B }, (_, b) => (tok[b * C] + tok[b * C + 1] + tok[b * C + 2]) % V);
    const idsT = nn.uploadIds(ctx, tok, [B, C], V),
      tgtT = nn.uploadIds(ctx, tgt, [B], V);
    const P = {
      table: ctx.upload(rand(V * D), [V, D]),
      w1: ctx.upload(rand(H * C * D, 0.3), [H, C * D]),
      b1: ctx.zeros([H]),
      gamma: ctx.upload(new Float32Array(H).fill(1), [H]),
      beta: ctx.zeros([H]),
      w2: ctx.upload(rand(V * H, 0.3), [V, H]),
      b2: ctx.zeros([V]),
    };
    const G = Object.fromEntries(Object.entries(P).map(([k, t]) => [k, ctx.tensor(t.shape, 'f32', `d${k}`)])) as typeof P;
    const opt = new AdamW(
      ctx,
      Object.keys(P).map((k) => ({
        param: P[k as keyof typeof P],
        grad: G[k as keyof typeof P],
        name: k,
        decay: !['b1', 'b2', 'gamma', 'beta'].includes(k),
      })),
      { lr: 0.02, maxGradNorm: 1, schedule: { warmup: 5, total: 150 } },
    );
    const x0 = ctx.tensor([B, C * D]),
      h = ctx.tensor([B, H]),
      a = ctx.tensor([B, H]),
      logits = ctx.tensor([B, V]);
    const ln = { y: ctx.tensor([B, H]), mean: ctx.tensor([B]), rstd: ctx.tensor([B]) };
    const loss = ctx.tensor([1]),
      dlogits = ctx.tensor([B, V]),
      dy = ctx.tensor([B, H]),
      dln = ctx.tensor([B, H]),
      da = ctx.tensor([B, H]),
      dx0 = ctx.tensor([B, C * D]);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      const enc = ctx.device.createCommandEncoder();
      const e = { encoder: enc };
      await nn.embeddingForward(ctx, { table: P.table, ids: idsT, out: x0 }, e);
      await nn.linearForward(ctx, { x: x0, w: P.w1, y: h }, e);
      await nn.activationForward(ctx, { x: h, b: P.b1, y: a }, e);
      await nn.layerNormForward(ctx, { x: a, gamma: P.gamma, beta: P.beta, ...ln }, e);
      await nn.linearForward(ctx, { x: ln.y, w: P.w2, b: P.b2, y: logits }, e);
      await nn.softmaxCrossEntropy(ctx, { logits, targets: tgtT, loss, dlogits }, e);
      await nn.linearBackward(ctx, { x: ln.y, w: P.w2, g: dlogits, dx: dy, dw: G.w2, db: G.b2 }, e);
      await nn.layerNormBackward(ctx, { x: a, gamma: P.gamma, g: dy, mean: ln.mean, rstd: ln.rstd, dx: dln, dgamma: G.gamma, dbeta: G.beta }, e);
      await nn.activationBackward(ctx, { x: h, g: dln, dx: da, db: G.b1 }, e);
      await nn.linearBackward(ctx, { x: x0, w: P.w1, g: da, dx: dx0, dw: G.w1 }, { ...e, db: false });
      await nn.embeddingBackward(ctx, { ids: idsT, g: dx0, vocab: V, dtable: G.table }, e);
      await opt.step(e);
      ctx.submit(enc);
      if (step % 30 === 0 || step === 149) losses.push((await ctx.read(loss))[0]);
    }
    // Chance is ln 7 ≈ 1.95; memorising 32 examples should get far below it.
    expect(losses[0]).to.be.above(1.5);
    expect(losses[losses.length - 1], `losses ${losses.map((l) => l.toFixed(3)).join(' → ')}`).to.be.below(0.3);
    opt.destroy();
  });
});

describe('AdamW bad input', () => {
  it('rejects mismatched, aliased or missing buffers and bad hyper-parameters, naming them', async () => {
    const ctx = await gpu();
    const p = ctx.tensor([4, 3]);
    const g = ctx.tensor([4, 3]);
    expect(() => new AdamW(ctx, [], { lr: 1 })).to.throw(/AdamW: 'params' must be a non-empty array/);
    expect(() => new AdamW(ctx, [{ param: p, grad: ctx.tensor([3, 4]), name: 'w1' }], { lr: 1 })).to.throw(
      /AdamW: 'w1\.grad' has shape \[3, 4\], expected the shape of w1\.param = \[4, 3\]/,
    );
    expect(() => new AdamW(ctx, [{ param: p, grad: ctx.tensor([4, 3], 'u32') }], { lr: 1 })).to.throw(/'params\[0\]\.grad' is u32, expected f32/);
    expect(() => new AdamW(ctx, [{ param: p, grad: p }], { lr: 1 })).to.throw(/'params\[0\]\.grad' and 'params\[0\]\.param' are the same buffer/);
    expect(
      () =>
        new AdamW(
          ctx,
          [
            { param: p, grad: g },
            { param: p, grad: ctx.tensor([4, 3]) },
          ],
          { lr: 1 },
        ),
    ).to.throw(/are the same buffer/);
    expect(() => new AdamW(ctx, [{ param: undefined as never, grad: g }], { lr: 1 })).to.throw(/'params\[0\]\.param' must be a Tensor/);
    const ok = [{ param: p, grad: g }];
    expect(() => new AdamW(ctx, ok, { lr: 0 })).to.throw(/'lr' must be a positive finite number, got 0/);
    expect(() => new AdamW(ctx, ok, { lr: NaN })).to.throw(/'lr' must be a positive finite number, got NaN/);
    expect(() => new AdamW(ctx, ok, { lr: 1, betas: [0.9, 1] })).to.throw(/'betas' must be two numbers in \[0, 1\)/);
    expect(() => new AdamW(ctx, ok, { lr: 1, eps: -1 })).to.throw(/'eps' must be a positive finite number, got -1/);
    expect(() => new AdamW(ctx, ok, { lr: 1, weightDecay: -0.1 })).to.throw(/'weightDecay' must be a non-negative finite number/);
    expect(() => new AdamW(ctx, ok, { lr: 1, maxGradNorm: 0 })).to.throw(/'maxGradNorm' must be a positive finite number, got 0/);
    expect(() => new AdamW(ctx, ok, { lr: 1, schedule: { warmup: -1, total: 5 } })).to.throw(
      /'schedule\.warmup' must be a non-negative integer, got -1/,
    );
    expect(() => new AdamW(ctx, ok, { lr: 1, schedule: { warmup: 10, total: 5 } })).to.throw(
      /'schedule\.total' must be an integer ≥ warmup \(10\), got 5/,
    );
    expect(() => new AdamW(ctx, ok, { lr: 1, schedule: { warmup: 1, total: 5, decay: 'exp' as never } })).to.throw(
      /'schedule\.decay' must be 'cosine', 'linear' or 'constant', got exp/,
    );
    expect(() => new AdamW(ctx, ok, { lr: 1, schedule: { warmup: 1, total: 5, minRatio: 2 } })).to.throw(
      /'schedule\.minRatio' must be a number in \[0, 1\], got 2/,
    );
    const opt = new AdamW(ctx, ok, { lr: 1 });
    await expectThrows(() => opt.moments(1), /AdamW\.moments: 'k' must be an index in \[0, 1\), got 1/);
    opt.destroy();
  });
});

describe('AdamW with non-finite and huge gradients', () => {
  // Two buffers, the second spanning several norm chunks (4096 elements each).
  const SHAPES = [[37], [3, 5000]];
  const sizes = SHAPES.map((s) => s.reduce((a, b) => a * b, 1));

  async function setup(opts: { maxGradNorm?: number; trackNorm?: boolean; skipNonFinite?: boolean; fused: boolean }) {
    const ctx = await gpu();
    const host = sizes.map((n) => rand(n));
    const params = SHAPES.map((s, k) => ctx.upload(host[k], s, 'f32', `p${k}`));
    const grads = SHAPES.map((s) => ctx.tensor(s, 'f32', 'g'));
    const opt = new AdamW(
      ctx,
      params.map((p, k) => ({ param: p, grad: grads[k], name: `p${k}` })),
      { lr: 0.05, ...opts },
    );
    expect(opt.fused).to.equal(opts.fused);
    const want = host.map((h) => Float64Array.from(h));
    const state = ref.adamwInit(sizes);
    const free = () => {
      opt.destroy();
      for (const t of [...params, ...grads]) t.destroy();
    };
    return { ctx, opt, params, grads, want, state, free };
  }

  /** Same non-finite positions as the reference, and within F32_TOL of it elsewhere. */
  function expectLike(actual: Float32Array, expected: Float64Array, what: string): void {
    for (let i = 0; i < expected.length; i++) {
      expect(Number.isNaN(actual[i]), `${what}[${i}] = ${actual[i]}, reference ${expected[i]}`).to.equal(Number.isNaN(expected[i]));
    }
    const keep = (a: ArrayLike<number>) => Float64Array.from(a).filter((_, i) => !Number.isNaN(expected[i]));
    expectClose(keep(actual), keep(expected), what);
  }

  for (const fused of [true, false]) {
    const how = fused ? 'fused arena' : 'per buffer';

    it(`a NaN gradient with maxGradNorm makes every update NaN, as PyTorch and the reference do, never an unclipped one (${how})`, async () => {
      const { ctx, opt, params, grads, want, state, free } = await setup({ maxGradNorm: 1, fused });
      const g = sizes.map((n) => rand(n));
      g[1][4321] = NaN;
      g.forEach((x, k) => ctx.write(grads[k], x));
      ref.adamwStep(want, g, state, { lr: 0.05, maxGradNorm: 1 });
      await opt.step();
      expect(Number.isNaN(await opt.gradNorm())).to.equal(true);
      for (let k = 0; k < params.length; k++) {
        expect(want[k].every(Number.isNaN)).to.equal(true);
        expectLike(await ctx.read(params[k]), want[k], `param ${k}`);
      }
      free();
    });

    it(`a NaN gradient without clipping reaches its own parameter only (${how})`, async () => {
      const { ctx, opt, params, grads, want, state, free } = await setup({ trackNorm: true, fused });
      const g = sizes.map((n) => rand(n));
      g[0][5] = NaN;
      g.forEach((x, k) => ctx.write(grads[k], x));
      ref.adamwStep(want, g, state, { lr: 0.05 });
      await opt.step();
      expect(Number.isNaN(await opt.gradNorm())).to.equal(true);
      for (let k = 0; k < params.length; k++) expectLike(await ctx.read(params[k]), want[k], `param ${k}`);
      expect(want[0].filter(Number.isNaN).length).to.equal(1);
      free();
    });

    it(`a finite gradient of 1e20 is clipped by its true norm (the f32 sum of squares would overflow) (${how})`, async () => {
      // maxGradNorm 1e16 keeps the other clipped gradients (~1e-4) and their v clear of f32's subnormals.
      const { ctx, opt, params, grads, want, state, free } = await setup({ maxGradNorm: 1e16, fused });
      for (let step = 0; step < 2; step++) {
        const g = sizes.map((n) => rand(n));
        g[1][9000] = step === 0 ? 1e20 : -3e19;
        g.forEach((x, k) => ctx.write(grads[k], x));
        const { norm } = ref.adamwStep(want, g, state, { lr: 0.05, maxGradNorm: 1e16 });
        await opt.step();
        expect(Math.abs((await opt.gradNorm()) - norm) / norm).to.be.below(2e-6);
      }
      for (let k = 0; k < params.length; k++) {
        const { m, v } = await opt.moments(k);
        expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
        expectClose(m, state.m[k], `m ${k}`);
        expectClose(v, state.v[k], `v ${k}`);
      }
      free();
    });

    it(`gradients near the f32 maximum: a norm past f32 reads as Infinity and still clips to maxGradNorm (${how})`, async () => {
      const { ctx, opt, params, grads, want, state, free } = await setup({ maxGradNorm: 10, fused });
      const g = sizes.map((n) => rand(n, 1e-3));
      g[0][3] = 3e38;
      g[1][12000] = -3e38;
      g.forEach((x, k) => ctx.write(grads[k], x));
      const { norm } = ref.adamwStep(want, g, state, { lr: 0.05, maxGradNorm: 10 });
      expect(norm).to.be.above(3.5e38);
      await opt.step();
      expect(await opt.gradNorm()).to.equal(Infinity);
      for (let k = 0; k < params.length; k++) expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
      free();
    });

    it(`skipNonFinite: a step with an Inf gradient changes nothing and is reported; the run then continues as the reference without it (${how})`, async () => {
      const { ctx, opt, params, grads, want, state, free } = await setup({ maxGradNorm: 5, skipNonFinite: true, fused });
      expect(opt.trackNorm).to.equal(true);
      expect(await opt.skippedSteps()).to.equal(0);
      for (let step = 0; step < 4; step++) {
        const g = sizes.map((n) => rand(n));
        const poisoned = step === 1 || step === 2;
        if (step === 1) g[1][77] = -Infinity;
        if (step === 2) g[0][0] = NaN;
        g.forEach((x, k) => ctx.write(grads[k], x));
        const before = await Promise.all(params.map((p, k) => Promise.all([ctx.read(p), opt.moments(k)])));
        if (poisoned)
          state.t += 1; // the skipped step still counts for the bias correction
        else ref.adamwStep(want, g, state, { lr: 0.05, maxGradNorm: 5 });
        await opt.step();
        expect(await opt.lastStepSkipped(), `step ${step}`).to.equal(poisoned);
        if (poisoned) {
          for (let k = 0; k < params.length; k++) {
            const { m, v } = await opt.moments(k);
            expect(Array.from(await ctx.read(params[k]))).to.deep.equal(Array.from(before[k][0]));
            expect(Array.from(m)).to.deep.equal(Array.from(before[k][1].m));
            expect(Array.from(v)).to.deep.equal(Array.from(before[k][1].v));
          }
        }
      }
      expect(await opt.skippedSteps()).to.equal(2);
      for (let k = 0; k < params.length; k++) expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
      opt.reset();
      expect(await opt.skippedSteps()).to.equal(0);
      expect(await opt.lastStepSkipped()).to.equal(false);
      free();
    });
  }

  it('skipNonFinite without clipping or trackNorm still checks every step (one encoder for several steps)', async () => {
    const { ctx, opt, params, grads, want, state, free } = await setup({ skipNonFinite: true, fused: true });
    const enc = ctx.device.createCommandEncoder();
    for (let step = 0; step < 3; step++) {
      const g = sizes.map((n) => rand(n));
      if (step === 1) g[1][14999] = Infinity;
      g.forEach((x, k) => ctx.copy(ctx.upload(x, SHAPES[k]), grads[k], enc));
      if (step === 1) state.t += 1;
      else ref.adamwStep(want, g, state, { lr: 0.05 });
      await opt.step({ encoder: enc });
    }
    ctx.submit(enc);
    expect(await opt.skippedSteps()).to.equal(1);
    expect(await opt.lastStepSkipped()).to.equal(false);
    for (let k = 0; k < params.length; k++) expectClose(await ctx.read(params[k]), want[k], `param ${k}`);
    free();
  });

  it('the guard is opt-in: its readers need skipNonFinite, which must be a boolean', async () => {
    const ctx = await gpu();
    const ok = [{ param: ctx.tensor([3]), grad: ctx.tensor([3]) }];
    const opt = new AdamW(ctx, ok, { lr: 1 });
    await expectThrows(
      () => opt.lastStepSkipped(),
      /AdamW\.lastStepSkipped: steps are only checked for non-finite gradients with 'skipNonFinite' set/,
    );
    await expectThrows(() => opt.skippedSteps(), /AdamW\.skippedSteps: .*'skipNonFinite'/);
    expect(() => new AdamW(ctx, ok, { lr: 1, skipNonFinite: 1 as never })).to.throw(/AdamW: 'skipNonFinite' must be a boolean, got number/);
    opt.destroy();
  });
});
