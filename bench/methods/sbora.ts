// SBoRA-FA and SBoRA-FB: one of LoRA's two adapter products becomes a gather (FA) or an
// index_add (FB), so the adapter path should cost about half of LoRA's at the same r.

import { createIndexSet } from '../../src/indices.js';
import { kaimingUniform, uniform } from '../../src/random.js';
import { sboraFaBackward, sboraFaForward, sboraFbBackward, sboraFbForward } from '../../src/sbora.js';
import type { BenchInstance, BenchMethod, BenchShape } from './types.js';
import type { Context } from '../../src/runtime.js';

async function setup(ctx: Context, variant: 'fa' | 'fb', { T, n, m, r }: BenchShape): Promise<BenchInstance> {
  const before = ctx.allocations.liveBytes;
  const x = ctx.upload(uniform(T * n, 1, 1), [T, n], 'f32', 'x');
  const w0 = ctx.upload(kaimingUniform(m * n, n, 2), [m, n], 'f32', 'w0');
  const g = ctx.upload(uniform(T * m, 1, 5), [T, m], 'f32', 'g');
  const y = ctx.tensor([T, m], 'f32', 'y');
  const dx = ctx.tensor([T, n], 'f32', 'dx');
  const idx = createIndexSet(ctx, { size: variant === 'fa' ? n : m, r, seed: 6 });
  // SBoRA initialises the trained factor to zero; small values keep the timing honest (no
  // shortcut for zeros exists in the kernels anyway).
  const factor = variant === 'fa'
    ? ctx.upload(uniform(m * r, 0.01, 4), [m, r], 'f32', 'b')
    : ctx.upload(uniform(r * n, 0.01, 3), [r, n], 'f32', 'a');
  const grad = variant === 'fa' ? ctx.tensor([m, r], 'f32', 'db') : ctx.tensor([r, n], 'f32', 'da');
  const s = 2;
  const fwd = (adapterOnly: boolean) => async (enc: GPUCommandEncoder) => {
    if (variant === 'fa') await sboraFaForward(ctx, { w0, b: factor, idx, scale: s, x, y }, { encoder: enc, adapterOnly });
    else await sboraFbForward(ctx, { w0, a: factor, idx, scale: s, x, y }, { encoder: enc, adapterOnly });
  };
  const bwd = (adapterOnly: boolean) => async (enc: GPUCommandEncoder) => {
    if (variant === 'fa') await sboraFaBackward(ctx, { w0, b: factor, idx, scale: s, x, g, dx, db: grad }, { encoder: enc, adapterOnly });
    else await sboraFbBackward(ctx, { w0, a: factor, idx, scale: s, x, g, dx, da: grad }, { encoder: enc, adapterOnly });
  };
  const forward = fwd(false);
  const backward = bwd(false);
  await ctx.encode(undefined, async (enc) => {
    await forward(enc);
    await backward(enc);
  });
  await ctx.sync();
  const base = 2 * m * n * T;
  // FA: the gather is free, s·X[:, idx] Bᵀ is 2mrT; backward G B (2mrT) and dB (2mrT).
  // FB: X Aᵀ is 2nrT and the index_add is free; backward G[:, idx] A (2nrT) and dA (2nrT).
  const width = variant === 'fa' ? m : n;
  const adapterFwd = 2 * width * r * T;
  const adapterBwd = 4 * width * r * T;
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
    flops: {
      forward: base + adapterFwd,
      backward: base + adapterBwd,
      step: 2 * base + adapterFwd + adapterBwd,
      adapterForward: adapterFwd,
      adapterBackward: adapterBwd,
    },
    params: variant === 'fa' ? m * r : r * n,
    bytes: ctx.allocations.liveBytes - before,
    destroy() {
      for (const t of [x, w0, g, y, dx, idx, factor, grad]) t.destroy();
    },
  };
}

const fits = ({ n, m, r }: BenchShape) => r <= n && r <= m;

export const sboraFa: BenchMethod = {
  method: 'sbora-fa',
  supports: fits,
  setup: (ctx, shape) => setup(ctx, 'fa', shape),
};

export const sboraFb: BenchMethod = {
  method: 'sbora-fb',
  supports: fits,
  setup: (ctx, shape) => setup(ctx, 'fb', shape),
};
