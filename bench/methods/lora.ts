// LoRA, the baseline every ratio in the benchmark is taken against.

import { lora as loraMethod, loraBackward, loraForward } from '../../src/methods/lora/index.js';
import { kaimingUniform, uniform } from '../../src/random.js';
import type { BenchMethod } from './types.js';

export const lora: BenchMethod = {
  method: 'lora',
  async setup(ctx, { T, n, m, r }) {
    const before = ctx.allocations.liveBytes;
    const x = ctx.upload(uniform(T * n, 1, 1), [T, n], 'f32', 'x');
    const w0 = ctx.upload(kaimingUniform(m * n, n, 2), [m, n], 'f32', 'w0');
    const a = ctx.upload(kaimingUniform(r * n, n, 3), [r, n], 'f32', 'a');
    const b = ctx.upload(uniform(m * r, 0.01, 4), [m, r], 'f32', 'b');
    const g = ctx.upload(uniform(T * m, 1, 5), [T, m], 'f32', 'g');
    const y = ctx.tensor([T, m], 'f32', 'y');
    const z = ctx.tensor([T, r], 'f32', 'z');
    const dx = ctx.tensor([T, n], 'f32', 'dx');
    const da = ctx.tensor([r, n], 'f32', 'da');
    const db = ctx.tensor([m, r], 'f32', 'db');
    const p = { w0, a, b, scale: 2 };
    const forward = async (enc: GPUCommandEncoder) => void (await loraForward(ctx, { ...p, x, y, z }, { encoder: enc }));
    const backward = async (enc: GPUCommandEncoder) => void (await loraBackward(ctx, { ...p, x, g, z, dx, da, db }, { encoder: enc }));
    const adapterForward = async (enc: GPUCommandEncoder) =>
      void (await loraForward(ctx, { ...p, x, y, z }, { encoder: enc, adapterOnly: true }));
    const adapterBackward = async (enc: GPUCommandEncoder) =>
      void (await loraBackward(ctx, { ...p, x, g, z, dx, da, db }, { encoder: enc, adapterOnly: true }));
    // Run once so scratch buffers exist before counting bytes.
    await ctx.encode(undefined, async (enc) => {
      await forward(enc);
      await backward(enc);
    });
    await ctx.sync();
    const flops = loraMethod.flops(T, { n, m, r }, {});
    return {
      encode: {
        forward,
        backward,
        step: async (enc) => {
          await forward(enc);
          await backward(enc);
        },
        adapterForward,
        adapterBackward,
      },
      flops: { ...flops, step: flops.forward + flops.backward },
      params: loraMethod.paramCount({ n, m, r }, {}),
      bytes: ctx.allocations.liveBytes - before,
      destroy() {
        for (const t of [x, w0, a, b, g, y, z, dx, da, db]) t.destroy();
      },
    };
  },
};
