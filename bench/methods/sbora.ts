// SBoRA-FA and SBoRA-FB: one of LoRA's two adapter products becomes a gather (FA) or an
// index_add (FB), so the adapter path should cost about half of LoRA's at the same r.

import { kaimingUniform, uniform } from '../../src/random.js';
import { createIndexSet, sboraBackward, sboraFa as faMethod, sboraFb as fbMethod, sboraForward, type SboraArgs } from '../../src/methods/sbora/index.js';
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
  const p: SboraArgs = variant === 'fa' ? { variant, w0, b: factor, idx, scale: s } : { variant, w0, a: factor, idx, scale: s };
  const fwd = (adapterOnly: boolean) => async (enc: GPUCommandEncoder) => {
    await sboraForward(ctx, { ...p, x, y }, { encoder: enc, adapterOnly });
  };
  const bwd = (adapterOnly: boolean) => async (enc: GPUCommandEncoder) => {
    const args = p.variant === 'fa' ? { ...p, x, g, dx, db: grad } : { ...p, x, g, dx, da: grad };
    await sboraBackward(ctx, args, { encoder: enc, adapterOnly });
  };
  const forward = fwd(false);
  const backward = bwd(false);
  await ctx.encode(undefined, async (enc) => {
    await forward(enc);
    await backward(enc);
  });
  await ctx.sync();
  const method = variant === 'fa' ? faMethod : fbMethod;
  const flops = method.flops(T, { n, m, r }, {});
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
    flops: { ...flops, step: flops.forward + flops.backward },
    params: method.paramCount({ n, m, r }, {}),
    bytes: ctx.allocations.liveBytes - before,
    destroy() {
      for (const t of [x, w0, g, y, dx, idx, factor, grad]) t.destroy();
    },
  };
}

export const sboraFa: BenchMethod = {
  method: 'sbora-fa',
  supports: ({ n, m, r }) => faMethod.unsupported({ n, m, r }, {}) === null,
  setup: (ctx, shape) => setup(ctx, 'fa', shape),
};

export const sboraFb: BenchMethod = {
  method: 'sbora-fb',
  supports: ({ n, m, r }) => fbMethod.unsupported({ n, m, r }, {}) === null,
  setup: (ctx, shape) => setup(ctx, 'fb', shape),
};
