// Random VALID problems for every kernel family and op, each run on the GPU and on the float64
// reference and compared at the tolerance the family's own tests use. A problem is plain JSON
// (sizes, options, value seeds), so a shrunk counterexample prints and replays as it is.

import fc from 'fast-check';
import type { Context } from '../../src/runtime.js';
import type { Tensor } from '../../src/tensor.js';
import { matmul } from '../../src/ops/matmul.js';
import { dropoutApply, dropoutMaskedAdd } from '../../src/ops/dropout.js';
import { add, matmul as refMatmul, scale as refScale } from '../../src/reference/linalg.js';
import * as refDropout from '../../src/reference/dropout.js';
import { loraBackward, loraForward, loraMerge } from '../../src/methods/lora/index.js';
import * as loraRef from '../../src/methods/lora/reference.js';
import { boraBackward, boraForward, boraMerge, boraSigma, type BoraParams } from '../../src/methods/bora/index.js';
import * as boraRef from '../../src/methods/bora/reference.js';
import type { SigmaTransform } from '../../src/methods/bora/sigma.js';
import { createIndexSet, sampleIndices, sboraBackward, sboraForward, sboraMerge, type SboraArgs } from '../../src/methods/sbora/index.js';
import * as sboraRef from '../../src/methods/sbora/reference.js';
import {
  lormaBackward,
  lormaCorrelationsShape,
  lormaForward,
  lormaMerge,
  lormaPiPath,
  type LormaParams,
  type LormaPiChoice,
} from '../../src/methods/lorma/index.js';
import * as lormaRef from '../../src/methods/lorma/reference.js';
import * as nn from '../../src/nn.js';
import * as nnRef from '../../src/reference/nn.js';
import { AdamW } from '../../src/optim.js';
import * as optimRef from '../../src/reference/optim.js';
import { rng } from '../../src/random.js';
import {
  F32_TOL,
  FuzzMismatch,
  RANKS,
  dropoutArb,
  encoderFor,
  near,
  nearOnScale,
  scaleArb,
  seed,
  size,
  submit,
  tokens,
  tuning,
  values,
  withCase,
  type Arena,
} from './check.js';

/** One fuzzed property: problems from `arbitrary`, each run by `run`, which throws on a mismatch. */
export interface FuzzTarget<P = unknown> {
  /** The name `--family` selects and failures print. */
  name: string;
  arbitrary: fc.Arbitrary<P>;
  run(ctx: Context, p: P): Promise<void>;
}

export function target<P>(name: string, arbitrary: fc.Arbitrary<P>, run: (ctx: Context, p: P) => Promise<void>): FuzzTarget {
  return { name, arbitrary, run } as FuzzTarget;
}

/** How a merge writes: a new tensor, the caller's `out`, into W0 itself, W0 − ΔW, or ΔW alone. */
type MergeMode = 'new' | 'out' | 'inPlace' | 'unmerge' | 'deltaOnly';
const mergeMode = () => fc.constantFrom<MergeMode>('new', 'out', 'inPlace', 'unmerge', 'deltaOnly');

/** Runs a family's merge in `mode` and returns what it wrote (W0 is a fresh copy, as inPlace changes it). */
async function runMerge(
  ctx: Context,
  arena: Arena,
  mode: MergeMode,
  w0Host: Float32Array,
  shape: [number, number],
  call: (w0: Tensor, out: Tensor | undefined, opts: { inPlace?: boolean; unmerge?: boolean; deltaOnly?: boolean }) => Promise<Tensor>,
): Promise<Float32Array> {
  const w0 = arena.upload(w0Host, shape, 'w0 (merge)');
  const out = mode === 'out' ? arena.keep(ctx.tensor(shape, 'f32', 'out')) : undefined;
  const opts = { inPlace: mode === 'inPlace' || undefined, unmerge: mode === 'unmerge' || undefined, deltaOnly: mode === 'deltaOnly' || undefined };
  const got = await call(w0, out, opts);
  if (mode === 'out' && got !== out) throw new FuzzMismatch("merge: did not write into the caller's 'out'");
  if (mode === 'inPlace' && got !== w0) throw new FuzzMismatch('merge: inPlace did not return W0');
  arena.keep(got);
  return ctx.readF32(got);
}

/** The reference of a merge in `mode` from W0 and ΔW. */
function mergeExpected(mode: MergeMode, w0: ArrayLike<number>, delta: Float64Array): Float64Array {
  if (mode === 'deltaOnly') return delta;
  return add(w0, delta, mode === 'unmerge' ? -1 : 1);
}

// ------------------------------------------------------------------------------------- matmul

const matmulArb = fc.record({
  M: size(),
  N: size(),
  K: size(),
  transA: fc.boolean(),
  transB: fc.boolean(),
  alpha: scaleArb(),
  beta: fc.constantFrom(0, 1, -0.75),
  second: fc.option(fc.record({ K: size(), alpha: scaleArb() }), { nil: undefined }),
  encoder: fc.boolean(),
  tuning: tuning(),
  seed: seed(),
});

const matmulTarget = target('matmul', matmulArb, (ctx, p) =>
  withCase(ctx, p.tuning, async (arena) => {
    const { M, N, K } = p;
    const a = values(p.seed, 0, M * K);
    const b = values(p.seed, 1, K * N);
    const c0 = values(p.seed, 2, M * N);
    const c = arena.upload(c0, [M, N], 'c');
    const second = p.second && { a: values(p.seed, 3, M * p.second.K), b: values(p.seed, 4, p.second.K * N) };
    const enc = encoderFor(ctx, p.encoder);
    await matmul(
      ctx,
      {
        a: arena.upload(a, p.transA ? [K, M] : [M, K], 'a'),
        b: arena.upload(b, p.transB ? [N, K] : [K, N], 'b'),
        c,
        M,
        N,
        K,
        transA: p.transA,
        transB: p.transB,
        alpha: p.alpha,
        beta: p.beta,
        second: second && {
          a: arena.upload(second.a, p.transA ? [p.second!.K, M] : [M, p.second!.K], 'a2'),
          b: arena.upload(second.b, p.transB ? [N, p.second!.K] : [p.second!.K, N], 'b2'),
          K: p.second!.K,
          alpha: p.second!.alpha,
        },
      },
      enc,
    );
    submit(ctx, enc);
    let want = add(refScale(refMatmul(a, b, M, K, N, p.transA, p.transB), p.alpha), c0, p.beta);
    if (second) want = add(want, refMatmul(second.a, second.b, M, p.second!.K, N, p.transA, p.transB), p.second!.alpha);
    near(await ctx.readF32(c), want, 'C');
  }),
);

// ------------------------------------------------------------------------------------ dropout

const dropoutTarget = target(
  'dropout',
  fc.record({
    count: fc.constantFrom(1, 2, 3, 7, 64, 1023, 1024, 1025, 4099),
    p: fc.constantFrom(0.1, 0.5, 0.9, 0.001, 0.999),
    maskSeed: fc.nat({ max: 0xffffffff }),
    alpha: scaleArb(),
    seed: seed(),
  }),
  (ctx, p) =>
    withCase(ctx, 'direct', async (arena) => {
      const d = { p: p.p, seed: p.maskSeed };
      const ones = arena.upload(new Float32Array(p.count).fill(1), [p.count], 'ones');
      const src = values(p.seed, 0, p.count);
      const dst0 = values(p.seed, 1, p.count);
      const mask = arena.keep(ctx.tensor([p.count], 'f32', 'mask'));
      const applied = arena.keep(ctx.tensor([p.count], 'f32', 'applied'));
      const acc = arena.upload(dst0, [p.count], 'acc');
      const srcT = arena.upload(src, [p.count], 'src');
      await ctx.encode(undefined, async (enc) => {
        await dropoutApply(ctx, ones, mask, d, enc);
        await dropoutApply(ctx, srcT, applied, d, enc);
        await dropoutMaskedAdd(ctx, srcT, acc, d, p.alpha, enc);
      });
      // The mask alone at the dropout test's own 1e-7: one rounding of 1 / (1 − p).
      const keep = refDropout.dropoutMask(p.count, p.p, p.maskSeed);
      near(await ctx.readF32(mask), keep, 'mask', 1e-7);
      near(await ctx.readF32(applied), refDropout.applyDropout(src, p.p, p.maskSeed), 'apply');
      near(
        await ctx.readF32(acc),
        Float64Array.from(dst0, (v, i) => v + p.alpha * keep[i] * src[i]),
        'masked add',
      );
    }),
);

// --------------------------------------------------------------------------------------- lora

// r ≤ min(n, m): the rank first (from the small set), then sizes at least that large.
const rankedDims = (ranks: readonly number[] = RANKS) =>
  fc
    .constantFrom(...ranks)
    .chain((r) => fc.record({ r: fc.constant(r), n: size().filter((v) => v >= r), m: size().filter((v) => v >= r), T: tokens() }));

const loraArb = fc.record({
  dims: rankedDims(),
  scale: scaleArb(),
  dropout: dropoutArb(),
  adapterOnlyForward: fc.boolean(),
  adapterOnlyBackward: fc.boolean(),
  reuseZ: fc.boolean(),
  merge: mergeMode(),
  encoder: fc.boolean(),
  tuning: tuning(),
  seed: seed(),
});

const loraTarget = target('lora', loraArb, (ctx, p) =>
  withCase(ctx, p.tuning, async (arena) => {
    const { T, n, m, r } = p.dims;
    const host = {
      x: values(p.seed, 0, T * n),
      w0: values(p.seed, 1, m * n, 0.5),
      a: values(p.seed, 2, r * n, 0.5),
      b: values(p.seed, 3, m * r, 0.5),
      g: values(p.seed, 4, T * m),
    };
    const dev = {
      x: arena.upload(host.x, [T, n], 'x'),
      w0: arena.upload(host.w0, [m, n], 'w0'),
      a: arena.upload(host.a, [r, n], 'a'),
      b: arena.upload(host.b, [m, r], 'b'),
      g: arena.upload(host.g, [T, m], 'g'),
    };
    const refArgs = { T, n, m, r, scale: p.scale, ...host, dropout: p.dropout };
    const layer = { w0: dev.w0, a: dev.a, b: dev.b, scale: p.scale };
    let enc = encoderFor(ctx, p.encoder);
    const fwd = await loraForward(ctx, { ...layer, x: dev.x, dropout: p.dropout }, { encoder: enc, adapterOnly: p.adapterOnlyForward || undefined });
    arena.keep(fwd.y);
    arena.keep(fwd.z);
    submit(ctx, enc);
    near(await ctx.readF32(fwd.y), loraRef.loraForward(refArgs, p.adapterOnlyForward), 'y');

    enc = encoderFor(ctx, p.encoder);
    const grads = await loraBackward(
      ctx,
      { ...layer, x: dev.x, g: dev.g, z: p.reuseZ ? fwd.z : undefined, dropout: p.dropout },
      { encoder: enc, adapterOnly: p.adapterOnlyBackward || undefined },
    );
    Object.values(grads).forEach((t) => arena.keep(t));
    submit(ctx, enc);
    const want = loraRef.loraBackward(refArgs);
    const dx = p.adapterOnlyBackward ? add(want.dx, refMatmul(host.g, host.w0, T, m, n), -1) : want.dx;
    near(await ctx.readF32(grads.dx), dx, 'dx');
    near(await ctx.readF32(grads.da), want.da, 'da');
    near(await ctx.readF32(grads.db), want.db, 'db');

    const got = await runMerge(ctx, arena, p.merge, host.w0, [m, n], (w0, out, opts) => loraMerge(ctx, { ...layer, w0, out }, opts));
    near(got, mergeExpected(p.merge, host.w0, loraRef.loraDelta(refArgs)), `merge (${p.merge})`);
  }),
);

// --------------------------------------------------------------------------------------- bora

const BLOCKS = [1, 2, 3, 4] as const;
// Per-block sizes: n = b·kn, m = b·km, so the blocks divide n and m by construction.
const PER_BLOCK = [1, 2, 3, 4, 5, 7, 8] as const;

/**
 * BoRA's fused kernels take R, BLOCKS, the token tile TT = min(8, T) and the pass's flags as
 * constants, and each such pipeline takes lavapipe tens of seconds to compile on loaded cores. The
 * campaign draws T from a set giving three tiles; the bounded run in `npm test` pins the
 * constants to those test/bora.test.ts already compiled on the shared context (b = r = 2, T = 3,
 * BoRA, the whole layer) and varies everything else.
 */
const boraArb = (profile: Profile) =>
  fc.record({
    variant: profile === 'bounded' ? fc.constant<'bora' | 'melora'>('bora') : fc.constantFrom<'bora' | 'melora'>('bora', 'melora'),
    sigmaTransform: fc.constantFrom<SigmaTransform>('exp-mav', 'exp', 'mav', 'raw'),
    shape: fc
      .record({
        blocks: profile === 'bounded' ? fc.constant(2) : fc.constantFrom(...BLOCKS),
        kn: fc.constantFrom(...PER_BLOCK),
        km: fc.constantFrom(...PER_BLOCK),
        T: profile === 'bounded' ? fc.constant(3) : fc.constantFrom(1, 3, 9, 17),
      })
      .chain((s) =>
        fc.record({
          blocks: fc.constant(s.blocks),
          n: fc.constant(s.blocks * s.kn),
          m: fc.constant(s.blocks * s.km),
          T: fc.constant(s.T),
          r: fc.constantFrom(...(profile === 'bounded' ? [2] : [1, 2, 3, 5, 8]).filter((r) => r <= s.blocks * Math.min(s.kn, s.km))),
        }),
      ),
    scale: scaleArb(),
    save: fc.boolean(),
    reuseSaved: fc.boolean(),
    sigmaOnce: fc.boolean(),
    adapterOnly: profile === 'bounded' ? fc.constant(false) : fc.boolean(),
    merge: mergeMode(),
    encoder: fc.boolean(),
    tuning: tuning(),
    seed: seed(),
  });

/**
 * dσ against the scale of the terms it is a difference of (the bora test's expectDsigma): under
 * the transforms that divide by μ, dσ_l = df_l/μ − sign(σ_l)·c/(N·μ²), and at b = r = 1 the two
 * cancel exactly, leaving rounding noise of size |df|/μ.
 */
function dsigmaScale(t: SigmaTransform, sigma: Float32Array, want: boraRef.BoraRefGrads): number {
  let s = 0;
  for (const v of want.dsigma!) s = Math.max(s, Math.abs(v));
  if (t !== 'exp-mav' && t !== 'mav') return s;
  const { eff, mu } = boraRef.sigmaEffective(sigma, t);
  for (let l = 0; l < eff.length; l++) s = Math.max(s, Math.abs((want.dsigmaEff[l] * (t === 'exp-mav' ? eff[l] : 1)) / mu));
  return s;
}

const boraTarget = (profile: Profile) =>
  target('bora', boraArb(profile), (ctx, p) =>
    withCase(ctx, p.tuning, async (arena) => {
      const { T, n, m, r, blocks } = p.shape;
      const bora = p.variant === 'bora';
      const host = {
        x: values(p.seed, 0, T * n),
        w0: values(p.seed, 1, m * n, 0.5),
        a: values(p.seed, 2, r * n, 0.5),
        b: values(p.seed, 3, m * r, 0.5),
        g: values(p.seed, 4, T * m),
        // The bora test's bounds: exp(σ) with |σ| < 1, the others 0.5.
        sigma: values(p.seed, 5, blocks * blocks * r, p.sigmaTransform === 'exp' ? 1 : 0.5),
      };
      const dev = {
        x: arena.upload(host.x, [T, n], 'x'),
        w0: arena.upload(host.w0, [m, n], 'w0'),
        a: arena.upload(host.a, [r, n], 'a'),
        b: arena.upload(host.b, [m, r], 'b'),
        g: arena.upload(host.g, [T, m], 'g'),
        sigma: arena.upload(host.sigma, [blocks, blocks, r], 'sigma'),
      };
      const base = { w0: dev.w0, a: dev.a, b: dev.b, blocks, scale: p.scale };
      let layer: BoraParams;
      if (bora) {
        const sigmaEff = p.sigmaOnce ? await boraSigma(ctx, { sigma: dev.sigma, sigmaTransform: p.sigmaTransform }) : undefined;
        if (sigmaEff) [sigmaEff.eff, sigmaEff.mu].forEach((t) => arena.keep(t));
        layer = { ...base, sigma: dev.sigma, sigmaTransform: p.sigmaTransform, sigmaEff };
      } else {
        layer = { ...base, variant: 'melora' };
      }
      const refArgs: boraRef.BoraRefArgs = {
        T,
        n,
        m,
        r,
        blocks,
        scale: p.scale,
        ...host,
        ...(bora ? { sigma: host.sigma, sigmaTransform: p.sigmaTransform } : { variant: 'melora' as const }),
      };
      const adapterOnly = p.adapterOnly || undefined;
      let enc = encoderFor(ctx, p.encoder);
      const fwd = await boraForward(ctx, { ...layer, x: dev.x }, { encoder: enc, save: p.save || undefined, adapterOnly });
      [fwd.y, fwd.z, fwd.s].forEach((t) => arena.keep(t));
      submit(ctx, enc);
      // Each output is a sum of products; where the products cancel (shrinking found b = r = 1,
      // n = 4 with x·aᵀ cancelling 3,888-fold) any f32 sum is off by ε of the products, not of the
      // result. So outputs are measured on the scale of the same sums over |values| (with |Σ|),
      // as dσ already is: never smaller than max |expected|, and equal to it without cancellation.
      const absArgs: boraRef.BoraRefArgs = {
        ...refArgs,
        x: host.x.map(Math.abs),
        w0: host.w0.map(Math.abs),
        a: host.a.map(Math.abs),
        b: host.b.map(Math.abs),
        ...(bora
          ? { sigma: Float32Array.from(boraRef.sigmaEffective(host.sigma, p.sigmaTransform).eff, Math.abs), sigmaTransform: 'raw' as const }
          : {}),
      };
      const scaleOf = (v: ArrayLike<number>) => Array.from(v).reduce((acc, e) => Math.max(acc, Math.abs(e)), 0);
      const absGrads = boraRef.boraBackward({ ...absArgs, g: host.g.map(Math.abs) }, p.adapterOnly);
      nearOnScale(await ctx.readF32(fwd.y), boraRef.boraForward(refArgs, p.adapterOnly), scaleOf(boraRef.boraForward(absArgs, p.adapterOnly)), 'y');
      if (p.save) {
        const inter = boraRef.boraIntermediates(refArgs);
        const absInter = boraRef.boraIntermediates(absArgs);
        nearOnScale(await ctx.readF32(fwd.z!), inter.z, scaleOf(absInter.z), 'z');
        nearOnScale(await ctx.readF32(fwd.s!), inter.s, scaleOf(absInter.s), 's');
      }

      enc = encoderFor(ctx, p.encoder);
      const reuse = p.save && p.reuseSaved;
      const grads = await boraBackward(ctx, { ...layer, x: dev.x, g: dev.g, z: reuse ? fwd.z : undefined, s: reuse ? fwd.s : undefined } as never, {
        encoder: enc,
        adapterOnly,
      });
      Object.values(grads).forEach((t) => arena.keep(t));
      submit(ctx, enc);
      const want = boraRef.boraBackward({ ...refArgs, g: host.g }, p.adapterOnly);
      nearOnScale(await ctx.readF32(grads.dx), want.dx, scaleOf(absGrads.dx), 'dx');
      nearOnScale(await ctx.readF32(grads.da), want.da, scaleOf(absGrads.da), 'da');
      nearOnScale(await ctx.readF32(grads.db), want.db, scaleOf(absGrads.db), 'db');
      if (bora) nearOnScale(await ctx.readF32(grads.dsigma!), want.dsigma!, dsigmaScale(p.sigmaTransform, host.sigma, want), 'dsigma');
      else if (grads.dsigma) throw new FuzzMismatch('MELoRA returned a dsigma');

      const got = await runMerge(ctx, arena, p.merge, host.w0, [m, n], (w0, out, opts) => boraMerge(ctx, { ...layer, w0, out }, opts));
      near(got, mergeExpected(p.merge, host.w0, boraRef.boraDelta(refArgs)), `merge (${p.merge})`);
    }),
  );

// -------------------------------------------------------------------------------------- sbora

// SBoRA's kernels take the rank, the lane layout (by tuning) and dropout as constants, a few
// seconds of compiling each on lavapipe: the bounded run keeps to two ranks.
const sboraArb = (profile: Profile) =>
  fc.record({
    variant: fc.constantFrom<'fa' | 'fb'>('fa', 'fb'),
    // FA draws r indices from [0, n), FB from [0, m): r ≤ that size; the other size is free.
    dims: fc
      .constantFrom(...(profile === 'bounded' ? [1, 2, 5] : RANKS))
      .chain((r) => fc.record({ r: fc.constant(r), n: size(), m: size(), T: tokens() })),
    idxSeed: fc.nat({ max: 0xffff }),
    scale: scaleArb(),
    dropout: dropoutArb(),
    adapterOnlyForward: fc.boolean(),
    adapterOnlyBackward: fc.boolean(),
    merge: mergeMode(),
    encoder: fc.boolean(),
    tuning: tuning(),
    seed: seed(),
  });

const sboraTarget = (profile: Profile) =>
  target(
    'sbora',
    sboraArb(profile).filter((p) => p.dims.r <= (p.variant === 'fa' ? p.dims.n : p.dims.m)),
    (ctx, p) =>
      withCase(ctx, p.tuning, async (arena) => {
        const { T, n, m, r } = p.dims;
        const fa = p.variant === 'fa';
        const idxValues = sampleIndices(fa ? n : m, r, p.idxSeed);
        const idx = arena.keep(createIndexSet(ctx, { size: fa ? n : m, values: idxValues }));
        const host = {
          x: values(p.seed, 0, T * n),
          w0: values(p.seed, 1, m * n, 0.5),
          factor: values(p.seed, 2, r * (fa ? m : n), 0.5),
          g: values(p.seed, 3, T * m),
        };
        const w0 = arena.upload(host.w0, [m, n], 'w0');
        const factor = arena.upload(host.factor, fa ? [m, r] : [r, n], fa ? 'b' : 'a');
        const layer = (w: Tensor): SboraArgs & { w0: Tensor } =>
          fa ? { variant: 'fa', w0: w, b: factor, idx, scale: p.scale } : { variant: 'fb', w0: w, a: factor, idx, scale: p.scale };
        const x = arena.upload(host.x, [T, n], 'x');
        const g = arena.upload(host.g, [T, m], 'g');
        const refArgs = {
          T,
          n,
          m,
          r,
          scale: p.scale,
          x: host.x,
          w0: host.w0,
          idx: idxValues,
          dropout: p.dropout,
          ...(fa ? { variant: 'fa' as const, b: host.factor } : { variant: 'fb' as const, a: host.factor }),
        } as sboraRef.VariantRefArgs;

        let enc = encoderFor(ctx, p.encoder);
        const { y } = await sboraForward(
          ctx,
          { ...layer(w0), x, dropout: p.dropout },
          { encoder: enc, adapterOnly: p.adapterOnlyForward || undefined },
        );
        arena.keep(y);
        submit(ctx, enc);
        near(await ctx.readF32(y), sboraRef.forward(refArgs, p.adapterOnlyForward), 'y');

        enc = encoderFor(ctx, p.encoder);
        const grads = (await sboraBackward(ctx, { ...layer(w0), x, g, dropout: p.dropout } as never, {
          encoder: enc,
          adapterOnly: p.adapterOnlyBackward || undefined,
        })) as { dx: Tensor; da?: Tensor; db?: Tensor };
        Object.values(grads).forEach((t) => arena.keep(t));
        submit(ctx, enc);
        const want = sboraRef.backward({ ...refArgs, g: host.g }, p.adapterOnlyBackward);
        near(await ctx.readF32(grads.dx), want.dx, 'dx');
        near(await ctx.readF32((fa ? grads.db : grads.da)!), want.dFactor, fa ? 'db' : 'da');

        const got = await runMerge(ctx, arena, p.merge, host.w0, [m, n], (w, out, opts) => sboraMerge(ctx, { ...layer(w), out }, opts));
        near(got, mergeExpected(p.merge, host.w0, sboraRef.delta(refArgs)), `merge (${p.merge})`);
      }),
  );

// -------------------------------------------------------------------------------------- lorma

const POW2 = [2, 4, 8, 16, 32] as const;

const lormaArb = fc
  .record({
    variant: fc.constantFrom<'plus' | 'pi' | 'none'>('plus', 'pi', 'none'),
    order: fc.constantFrom<'pre' | 'post'>('pre', 'post'),
    piPath: fc.constantFrom<LormaPiChoice>('fft', 'tiles', 'auto'),
    // d (m for pre, n for post) a power of two half the time, so π's FFT path runs.
    d: fc.oneof(fc.constantFrom(...POW2), size()),
    other: size(),
    r: fc.constantFrom(...RANKS),
    T: tokens(),
    scale: scaleArb(),
    reuse: fc.boolean(),
    merge: fc.constantFrom<'new' | 'out' | 'deltaOnly'>('new', 'out', 'deltaOnly'),
    encoder: fc.boolean(),
    tuning: tuning(),
    seed: seed(),
  })
  .filter((p) => p.r <= p.d);

const lormaTarget = target('lorma', lormaArb, (ctx, p) =>
  withCase(ctx, p.tuning, async (arena) => {
    const { T, r, d } = p;
    const [n, m] = p.order === 'pre' ? [p.other, d] : [d, p.other];
    const pi = p.variant === 'pi';
    const host = {
      x: values(p.seed, 0, T * n),
      w0: values(p.seed, 1, m * n, 0.5),
      a: values(p.seed, 2, r * d, 0.5),
      b: values(p.seed, 3, d * r, 0.5),
      g: values(p.seed, 4, T * m),
    };
    const x = arena.upload(host.x, [T, n], 'x');
    const g = arena.upload(host.g, [T, m], 'g');
    const w0 = arena.upload(host.w0, [m, n], 'w0');
    const common = { a: arena.upload(host.a, [r, d], 'a'), b: arena.upload(host.b, [d, r], 'b'), scale: p.scale, order: p.order };
    const layer = (w: Tensor): LormaParams & { w0: Tensor } =>
      pi ? { ...common, w0: w, variant: 'pi', piPath: p.piPath } : { ...common, w0: w, variant: p.variant as 'plus' | 'none' };
    const fft = pi && lormaPiPath(ctx, d, p.piPath) === 'fft';
    const refArgs = { T, n, m, r, scale: p.scale, variant: p.variant, order: p.order, ...host };

    let enc = encoderFor(ctx, p.encoder);
    // The FFT path keeps the forward's correlations only in a tensor the caller passes.
    const c = fft && p.reuse ? arena.keep(ctx.tensor(lormaCorrelationsShape(T, d, r), 'f32', 'c')) : undefined;
    const fwd = await lormaForward(ctx, { ...layer(w0), x, ...(c ? { c } : {}) } as never, { encoder: enc });
    [fwd.y, fwd.u, fwd.z].forEach((t) => arena.keep(t));
    submit(ctx, enc);
    near(await ctx.readF32(fwd.y), lormaRef.lormaForward(refArgs), `y (${fft ? 'fft' : 'tiles'})`);

    enc = encoderFor(ctx, p.encoder);
    const kept = p.reuse ? { u: fwd.u, z: fwd.z, c } : {};
    const grads = await lormaBackward(ctx, { ...layer(w0), x, g, ...kept } as never, { encoder: enc });
    Object.values(grads).forEach((t) => arena.keep(t));
    submit(ctx, enc);
    const want = lormaRef.lormaBackward({ ...refArgs, g: host.g });
    near(await ctx.readF32(grads.dx), want.dx, 'dx');
    near(await ctx.readF32(grads.da), want.da, 'da');
    near(await ctx.readF32(grads.db), want.db, 'db');

    const got = await runMerge(ctx, arena, p.merge, host.w0, [m, n], (w, out, opts) => lormaMerge(ctx, { ...layer(w), out }, opts));
    if (p.merge === 'deltaOnly') {
      // The lorma test's tolerance for ΔW alone: M·W0 − W0 is formed from the product, so its
      // rounding is on W0's scale, not ΔW's.
      near(got, lormaRef.lormaDelta(refArgs), 'merge (deltaOnly)', 5e-5);
    } else {
      near(got, lormaRef.lormaMerge(refArgs), `merge (${p.merge})`);
    }
  }),
);

// ----------------------------------------------------------------------------------------- nn

const nnArb = fc.oneof(
  fc.record({
    layer: fc.constant('embedding' as const),
    V: size(),
    D: size(),
    B: tokens(),
    C: fc.constantFrom(0, 1, 2, 3), // 0: ids [N]; otherwise ids [B, C]
    seed: seed(),
  }),
  fc.record({ layer: fc.constant('linear' as const), T: tokens(), n: size(), m: size(), bias: fc.boolean(), tuning: tuning(), seed: seed() }),
  fc.record({
    layer: fc.constant('activation' as const),
    T: tokens(),
    n: size(),
    fn: fc.constantFrom<'gelu' | 'tanh'>('gelu', 'tanh'),
    bias: fc.boolean(),
    seed: seed(),
  }),
  // n = 2 is left out, as in the nn test: there x̂ = ±√(σ²/(σ² + eps)) whatever x is, so dx is
  // O(eps) noise.
  fc.record({ layer: fc.constant('layernorm' as const), T: tokens(), n: size().filter((n) => n !== 2), seed: seed() }),
  fc.record({ layer: fc.constant('softmax' as const), T: tokens(), V: size(), seed: seed() }),
);

const nnTarget = target('nn', nnArb, (ctx, p) =>
  withCase(ctx, 'tuning' in p ? p.tuning : 'direct', async (arena) => {
    const ids = (count: number, V: number) => {
      const next = rng(p.seed + 7);
      return Uint32Array.from({ length: count }, () => Math.floor(next() * V));
    };
    if (p.layer === 'embedding') {
      const { V, D, B, C } = p;
      const N = C === 0 ? B : B * C;
      const table = values(p.seed, 0, V * D);
      const tok = ids(N, V);
      const idsT = arena.keep(nn.uploadIds(ctx, tok, C === 0 ? [B] : [B, C], V));
      const out = arena.keep(await nn.embeddingForward(ctx, { table: arena.upload(table, [V, D], 'table'), ids: idsT }));
      near(await ctx.readF32(out), nnRef.embeddingForward({ V, D, table, ids: tok }), 'embedded');
      const g = values(p.seed, 1, N * D);
      const dtable = arena.keep(await nn.embeddingBackward(ctx, { ids: idsT, g: arena.upload(g, out.shape, 'g'), vocab: V }));
      near(await ctx.readF32(dtable), nnRef.embeddingBackward({ V, D, ids: tok, g }), 'dtable');
    } else if (p.layer === 'linear') {
      const { T, n, m } = p;
      const x = values(p.seed, 0, T * n);
      const w = values(p.seed, 1, m * n);
      const b = p.bias ? values(p.seed, 2, m) : undefined;
      const g = values(p.seed, 3, T * m);
      const dev = { x: arena.upload(x, [T, n], 'x'), w: arena.upload(w, [m, n], 'w'), b: b && arena.upload(b, [m], 'b') };
      const y = arena.keep(await nn.linearForward(ctx, dev));
      near(await ctx.readF32(y), nnRef.linearForward({ T, n, m, x, w, b }), 'y');
      const grads = await nn.linearBackward(ctx, { x: dev.x, w: dev.w, g: arena.upload(g, [T, m], 'g') });
      Object.values(grads).forEach((t) => arena.keep(t));
      const want = nnRef.linearBackward({ T, n, m, x, w, g });
      near(await ctx.readF32(grads.dx!), want.dx, 'dx');
      near(await ctx.readF32(grads.dw!), want.dw, 'dw');
      near(await ctx.readF32(grads.db!), want.db, 'db');
    } else if (p.layer === 'activation') {
      const { T, n, fn } = p;
      // Wide inputs, as the nn test uses, past the tanh clamp to cover both tails.
      const x = values(p.seed, 0, T * n, 6);
      const b = p.bias ? values(p.seed, 1, n) : undefined;
      const g = values(p.seed, 2, T * n);
      const xT = arena.upload(x, [T, n], 'x');
      const y = arena.keep(await nn.activationForward(ctx, { x: xT, b: b && arena.upload(b, [n], 'b'), fn }));
      near(await ctx.readF32(y), nnRef.activationForward({ n, x, b, fn }), `${fn}(x)`);
      // With a bias the forward leaves x + b in x (f32), the pre-activation the backward reads.
      const pre = b ? Float32Array.from(x, (v, i) => v + b[i % n]) : x;
      const grads = await nn.activationBackward(ctx, { x: xT, g: arena.upload(g, [T, n], 'g'), fn }, { bias: p.bias });
      Object.values(grads).forEach((t) => arena.keep(t));
      const want = nnRef.activationBackward({ n, x: pre, g, fn });
      near(await ctx.readF32(grads.dx), want.dx, `${fn} dx`);
      if (p.bias) near(await ctx.readF32(grads.db!), want.db, `${fn} db`);
    } else if (p.layer === 'layernorm') {
      const { T, n } = p;
      // An offset mean, as the nn test uses, checks the two-pass variance.
      const x = Float32Array.from(values(p.seed, 0, T * n, 2), (v) => v + 3);
      const gamma = values(p.seed, 1, n);
      const beta = values(p.seed, 2, n);
      const g = values(p.seed, 3, T * n);
      const dev = { x: arena.upload(x, [T, n], 'x'), gamma: arena.upload(gamma, [n], 'gamma'), beta: arena.upload(beta, [n], 'beta') };
      const out = await nn.layerNormForward(ctx, { ...dev, eps: 1e-5 });
      Object.values(out).forEach((t) => arena.keep(t));
      const want = nnRef.layerNormForward({ T, n, x, gamma, beta, eps: 1e-5 });
      near(await ctx.readF32(out.y), want.y, 'y');
      near(await ctx.readF32(out.mean), want.mean, 'mean');
      near(await ctx.readF32(out.rstd), want.rstd, 'rstd');
      const grads = await nn.layerNormBackward(ctx, { x: dev.x, gamma: dev.gamma, g: arena.upload(g, [T, n], 'g'), mean: out.mean, rstd: out.rstd });
      Object.values(grads).forEach((t) => arena.keep(t));
      const wantG = nnRef.layerNormBackward({ T, n, x, gamma, g, eps: 1e-5 });
      // n = 1 makes dx exactly 0 (the output is β whatever x is): the nn test's 1e-3 on g's scale.
      near(await ctx.readF32(grads.dx), wantG.dx, 'dx', n === 1 ? 1e-3 : F32_TOL);
      near(await ctx.readF32(grads.dgamma!), wantG.dgamma, 'dgamma');
      near(await ctx.readF32(grads.dbeta!), wantG.dbeta, 'dbeta');
    } else {
      const { T, V } = p;
      // Large logits, as the nn test: without the max subtraction exp overflows f32.
      const logits = Float32Array.from(values(p.seed, 0, T * V, 4), (v, i) => v + (i % 3 === 0 ? 100 : 0));
      const targets = ids(T, V);
      const out = await nn.softmaxCrossEntropy(ctx, {
        logits: arena.upload(logits, [T, V], 'logits'),
        targets: arena.keep(nn.uploadIds(ctx, targets, [T], V)),
      });
      Object.values(out).forEach((t) => arena.keep(t));
      const want = nnRef.softmaxCrossEntropy({ T, V, logits, targets });
      const [loss] = await ctx.readF32(out.loss);
      if (!(Math.abs(loss - want.loss) <= 2e-5 * Math.max(1, Math.abs(want.loss)))) {
        throw new FuzzMismatch(`loss ${loss} vs ${want.loss}: past 2e-5·max(1, |loss|)`);
      }
      // dlogits = (softmax − onehot)/T: where the target's probability is 1 to within f32's
      // 2^-24, the expected values are below what f32 can resolve of that difference, so the
      // scale never drops under the one at which that rounding fits the tolerance.
      let top = 0;
      for (const v of want.dlogits) top = Math.max(top, Math.abs(v));
      nearOnScale(await ctx.readF32(out.dlogits), want.dlogits, Math.max(top, 2 ** -24 / (F32_TOL * T)), 'dlogits');
    }
  }),
);

// -------------------------------------------------------------------------------------- adamw

const adamwArb = fc.record({
  sizes: fc.array(fc.constantFrom(1, 2, 7, 37, 203, 4097), { minLength: 1, maxLength: 4 }),
  steps: fc.integer({ min: 1, max: 3 }),
  weightDecay: fc.constantFrom(0.01, 0, 0.3),
  maxGradNorm: fc.option(fc.constantFrom(0.5, 10), { nil: undefined }),
  trackNorm: fc.boolean(),
  fused: fc.option(fc.boolean(), { nil: undefined }),
  schedule: fc.option(fc.record({ warmup: fc.integer({ min: 0, max: 2 }), total: fc.integer({ min: 2, max: 5 }) }), { nil: undefined }),
  noDecay: fc.nat({ max: 15 }),
  gradScale: fc.constantFrom(1, 5, 0.01),
  seed: seed(),
});

const adamwTarget = target('adamw', adamwArb, (ctx, p) =>
  withCase(ctx, 'direct', async (arena) => {
    const host = p.sizes.map((s, k) => values(p.seed, k, s));
    const params = p.sizes.map((s, k) => arena.upload(host[k], [s], `p${k}`));
    const grads = p.sizes.map((s, k) => arena.keep(ctx.tensor([s], 'f32', `g${k}`)));
    const decay = p.sizes.map((_, k) => ((p.noDecay >> k) & 1) === 0);
    const opts = { lr: 0.05, weightDecay: p.weightDecay, maxGradNorm: p.maxGradNorm, trackNorm: p.trackNorm, fused: p.fused, schedule: p.schedule };
    const opt = new AdamW(
      ctx,
      params.map((param, k) => ({ param, grad: grads[k], decay: decay[k], name: `p${k}` })),
      opts,
    );
    arena.keep(opt);
    const want = host.map((h) => Float64Array.from(h));
    const state = optimRef.adamwInit(p.sizes);
    // A buffer of one or two elements can cancel: m after two steps is β1(1−β1)·c1·g1 +
    // (1−β1)·c2·g2, and a parameter its start minus the update. Such outputs are measured on the
    // scale of their terms (as the bora test measures dσ); larger buffers keep max |expected|.
    const paramScale = host.map((h) => h.reduce((a, v) => Math.max(a, Math.abs(v)), 0));
    const mScale = p.sizes.map(() => 0);
    for (let t = 0; t < p.steps; t++) {
      const g = p.sizes.map((s, k) => Float32Array.from(values(p.seed, 100 + 10 * t + k, s), (v) => v * p.gradScale));
      g.forEach((x, k) => ctx.write(grads[k], x));
      const lr = optimRef.learningRate(t, 0.05, p.schedule);
      const { norm, scale: clip } = optimRef.adamwStep(want, g, state, { lr, decay, weightDecay: p.weightDecay, maxGradNorm: p.maxGradNorm });
      g.forEach((x, k) => {
        for (const v of x) mScale[k] = Math.max(mScale[k], 0.1 * clip * Math.abs(v));
        paramScale[k] = Math.max(paramScale[k], lr);
      });
      await opt.step();
      if (opt.trackNorm) {
        const got = await opt.gradNorm();
        // The optim test's 2e-6 relative on the global norm.
        if (!(Math.abs(got - norm) <= 2e-6 * norm)) throw new FuzzMismatch(`step ${t}: gradNorm ${got} vs ${norm}`);
      }
    }
    for (let k = 0; k < params.length; k++) {
      const { m, v } = await opt.moments(k);
      if (p.sizes[k] > 2) {
        near(await ctx.readF32(params[k]), want[k], `param ${k}`);
        near(m, state.m[k], `m ${k}`);
      } else {
        nearOnScale(await ctx.readF32(params[k]), want[k], paramScale[k], `param ${k}`);
        nearOnScale(m, state.m[k], mScale[k], `m ${k}`);
      }
      near(v, state.v[k], `v ${k}`);
    }
  }),
);

/**
 * 'campaign': every generator at full range (`npm run fuzz`). 'bounded': the run inside `npm test`,
 * with the constants that cost a pipeline compile each narrowed (see boraArb).
 */
export type Profile = 'campaign' | 'bounded';

/** Every valid-input property, in the order the runner goes through them. */
export function validTargets(profile: Profile): FuzzTarget[] {
  return [matmulTarget, dropoutTarget, loraTarget, boraTarget(profile), sboraTarget(profile), lormaTarget, nnTarget, adamwTarget];
}
