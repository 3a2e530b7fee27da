// BoRA and MELoRA: LoRA's two adapter products become block-wise ones with a b²r mix between them
// (none for MELoRA), so a step should cost about LoRA's. `compareWithLora` takes the ratios from
// interleaved runs in one process (the machine is shared; see docs/bora.md for the figures).

import { boraBackward, boraFlops, boraForward, boraParamCount, boraSigma, type BoraParams, type BoraVariant } from '../../src/methods/bora/index.js';
import { kaimingUniform, uniform } from '../../src/random.js';
import type { Context } from '../../src/runtime.js';
import { timeEncoded } from '../timing.js';
import { lora } from './lora.js';
import type { BenchInstance, BenchMethod, BenchShape, Phase } from './types.js';

export interface BoraBenchOptions {
  /** Keep Z and S from the forward (default) or let the backward recompute them. */
  saveZS?: boolean;
}

export async function setupBora(ctx: Context, variant: BoraVariant, shape: BenchShape, opts: BoraBenchOptions = {}): Promise<BenchInstance> {
  const { T, n, m, r } = shape;
  const blocks = shape.b ?? 1;
  const saveZS = opts.saveZS ?? true;
  const before = ctx.allocations.liveBytes;
  const x = ctx.upload(uniform(T * n, 1, 1), [T, n], 'f32', 'x');
  const w0 = ctx.upload(kaimingUniform(m * n, n, 2), [m, n], 'f32', 'w0');
  const a = ctx.upload(kaimingUniform(r * n, n, 3), [r, n], 'f32', 'a');
  const b = ctx.upload(uniform(m * r, 0.01, 4), [m, r], 'f32', 'b');
  const g = ctx.upload(uniform(T * m, 1, 5), [T, m], 'f32', 'g');
  const sigma = variant === 'bora' ? ctx.upload(kaimingUniform(blocks * blocks * r, n, 6), [blocks, blocks, r], 'f32', 'sigma') : undefined;
  const sig = sigma ? await boraSigma(ctx, { sigma }) : undefined;
  const y = ctx.tensor([T, m], 'f32', 'y');
  const z = saveZS ? ctx.tensor([T, blocks * r], 'f32', 'z') : undefined;
  const s = saveZS ? ctx.tensor([T, blocks * r], 'f32', 's') : undefined;
  const dx = ctx.tensor([T, n], 'f32', 'dx');
  const da = ctx.tensor([r, n], 'f32', 'da');
  const db = ctx.tensor([m, r], 'f32', 'db');
  const dsigma = sigma ? ctx.tensor([blocks, blocks, r], 'f32', 'dsigma') : undefined;
  const p: BoraParams = sigma && sig ? { w0, a, b, blocks, scale: 2, sigma, sigmaEff: sig } : { variant: 'melora', w0, a, b, blocks, scale: 2 };
  // Σ is computed once per step, at the start of the forward; the backward reuses it.
  const fwd = (adapterOnly: boolean) => async (enc: GPUCommandEncoder) => {
    if (sigma && sig) await boraSigma(ctx, { sigma, out: sig }, { encoder: enc });
    await boraForward(ctx, { ...p, x, y, z, s }, { encoder: enc, adapterOnly });
  };
  const bwd = (adapterOnly: boolean) => async (enc: GPUCommandEncoder) => {
    const grads = { x, g, z, s, dx, da, db };
    if (p.variant === 'melora') await boraBackward(ctx, { ...p, ...grads }, { encoder: enc, adapterOnly });
    else await boraBackward(ctx, { ...p, ...grads, dsigma }, { encoder: enc, adapterOnly });
  };
  const forward = fwd(false);
  const backward = bwd(false);
  await ctx.encode(undefined, async (enc) => {
    await forward(enc);
    await backward(enc);
  });
  await ctx.sync();
  const f = boraFlops(T, { n, m, r, blocks, variant });
  return {
    encode: {
      forward,
      backward,
      step: async (enc) => {
        await forward(enc);
        await backward(enc);
      },
      adapterForward: fwd(true),
      adapterBackward: bwd(true),
    },
    // A training step is one forward and one backward.
    flops: { ...f, step: f.forward + f.backward },
    params: boraParamCount({ n, m, r, blocks, variant }),
    bytes: ctx.allocations.liveBytes - before,
    destroy() {
      for (const t of [x, w0, a, b, g, sigma, sig?.eff, sig?.mu, y, z, s, dx, da, db, dsigma]) t?.destroy();
    },
  };
}

const supports = ({ n, m, b }: BenchShape) => b !== undefined && b >= 1 && n % b === 0 && m % b === 0;

export const bora: BenchMethod = { method: 'bora', supports, setup: (ctx, shape) => setupBora(ctx, 'bora', shape) };
export const melora: BenchMethod = { method: 'melora', supports, setup: (ctx, shape) => setupBora(ctx, 'melora', shape) };

export interface Comparison {
  phase: Phase | 'adapterStep';
  /** Median over rounds of each method's median time (ms). */
  loraMs: number;
  otherMs: number;
  /** Median over rounds of the per-round ratio other / LoRA. */
  ratio: number;
  ratios: number[];
}

/**
 * Times LoRA (rank r) and BoRA/MELoRA on the same shape, alternating them round by round so that
 * load from other processes falls on both alike; returns per-phase ratios. `adapterStep` is
 * adapterForward + adapterBackward in one submission.
 */
export async function compareWithLora(
  ctx: Context,
  shape: BenchShape,
  opts: { variant?: BoraVariant; rounds?: number; reps?: number; saveZS?: boolean; phases?: (Phase | 'adapterStep')[] } = {},
): Promise<Comparison[]> {
  const rounds = opts.rounds ?? 5;
  const reps = opts.reps ?? 3;
  const phases = opts.phases ?? ['step', 'adapterStep', 'forward', 'backward', 'adapterForward', 'adapterBackward'];
  const base = await lora.setup(ctx, shape);
  const other = await setupBora(ctx, opts.variant ?? 'bora', shape, { saveZS: opts.saveZS });
  const encoder = (inst: BenchInstance, phase: Phase | 'adapterStep') =>
    phase === 'adapterStep'
      ? async (enc: GPUCommandEncoder) => {
          await inst.encode.adapterForward!(enc);
          await inst.encode.adapterBackward!(enc);
        }
      : inst.encode[phase]!;
  const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
  const out: Comparison[] = [];
  try {
    for (const phase of phases) {
      const l: number[] = [];
      const o: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // Alternate which goes first, so neither always follows the other's cache state.
        const pair = i % 2 === 0 ? [base, other] : [other, base];
        const times = [];
        for (const inst of pair) times.push((await timeEncoded(ctx, encoder(inst, phase), { warmup: 1, reps })).medianMs);
        l.push(i % 2 === 0 ? times[0] : times[1]);
        o.push(i % 2 === 0 ? times[1] : times[0]);
      }
      const ratios = o.map((v, i) => v / l[i]);
      out.push({ phase, loraMs: med(l), otherMs: med(o), ratio: med(ratios), ratios });
    }
  } finally {
    base.destroy();
    other.destroy();
  }
  return out;
}
