// LoRMA₊ and LoRMA_π (pre-multiplication, d = m), and the plain base layer (Y = X W0ᵀ,
// dX = G W0) that LoRMA_π's ratio is taken against. LoRMA₊'s is taken against LoRA.

import { matmul } from '../../src/ops/matmul.js';
import { lormaBackward, lormaForward, lormaInit, type Inflation } from '../../src/lorma.js';
import { kaimingUniform, uniform } from '../../src/random.js';
import type { Context } from '../../src/runtime.js';
import type { BenchInstance, BenchMethod, BenchShape } from './types.js';

/** Largest single buffer a setup allocated, for the "no d×d buffer" check beside the timings. */
export interface LormaBenchInstance extends BenchInstance {
  largestAllocation: { label: string; bytes: number; shape?: readonly number[] };
}

async function setup(ctx: Context, inflation: Inflation, { T, n, m, r }: BenchShape): Promise<LormaBenchInstance> {
  const before = ctx.allocations.liveBytes;
  const d = m;
  const scale = 2;
  const x = ctx.upload(uniform(T * n, 1, 1), [T, n], 'f32', 'x');
  const w0 = ctx.upload(kaimingUniform(m * n, n, 2), [m, n], 'f32', 'w0');
  const g = ctx.upload(uniform(T * m, 1, 5), [T, m], 'f32', 'g');
  // Trained-looking factors: the init with a small perturbation (B = 0 would not change the work).
  const init = lormaInit({ d, r, scale, inflation, seed: 3 });
  const noise = uniform(r * d, 0.01, 4);
  const a = ctx.upload(init.a.map((v, i) => v + noise[i]), [r, d], 'f32', 'a');
  const b = ctx.upload(init.b.map((v, i) => v + noise[i]), [d, r], 'f32', 'b');
  const y = ctx.tensor([T, m], 'f32', 'y');
  const u = inflation === 'pi' ? ctx.tensor([T, m], 'f32', 'u') : undefined;
  const z = inflation === 'pi' ? undefined : ctx.tensor([T, r], 'f32', 'z');
  const dx = ctx.tensor([T, n], 'f32', 'dx');
  const da = ctx.tensor([r, d], 'f32', 'da');
  const db = ctx.tensor([d, r], 'f32', 'db');
  const p = { w0, a, b, scale, inflation, order: 'pre' as const };
  let largest = { label: '', bytes: 0 } as LormaBenchInstance['largestAllocation'];
  const stop = ctx.onAllocate((rec) => {
    if (rec.bytes > largest.bytes) largest = rec;
  });
  const forward = async (enc: GPUCommandEncoder) => void (await lormaForward(ctx, { ...p, x, y, u, z }, { encoder: enc }));
  const backward = async (enc: GPUCommandEncoder) => void (await lormaBackward(ctx, { ...p, x, g, u, z, dx, da, db }, { encoder: enc }));
  try {
    // Run once so scratch buffers exist before counting bytes.
    await ctx.encode(undefined, async (enc) => {
      await forward(enc);
      await backward(enc);
    });
    await ctx.sync();
  } finally {
    stop();
  }
  const base = 2 * m * n * T;
  // KERNELS.md: plus adds 4mrT forward (X A'ᵀ, Z Bᵀ) and 2mnr for A' = A W0; backward G B, H A',
  // dB, dA' (8mrT) and 4mnr for A' again and dA = dA' W0ᵀ.
  // pi: the d×d mixing is 2d²T plus generating π(BA) tiles, 2d²r per BM = 64 tokens; backward
  // does it twice (dU through π(BA)ᵀ, and dP) plus the dP contractions 4d²r.
  const tilesT = Math.ceil(T / 64);
  const adapterFwd = inflation === 'pi' ? 2 * d * d * T + 2 * d * d * r * tilesT : 4 * d * r * T + 2 * m * n * r;
  const adapterBwd = inflation === 'pi' ? 4 * d * d * T + 2 * d * d * r * tilesT + 4 * d * d * r : 8 * d * r * T + 4 * m * n * r;
  return {
    encode: {
      forward,
      backward,
      step: async (enc) => {
        await forward(enc);
        await backward(enc);
      },
    },
    flops: { forward: base + adapterFwd, backward: base + adapterBwd, step: 2 * base + adapterFwd + adapterBwd },
    params: 2 * d * r,
    bytes: ctx.allocations.liveBytes - before,
    largestAllocation: largest,
    destroy() {
      for (const t of [x, w0, g, a, b, y, u, z, dx, da, db]) t?.destroy();
    },
  };
}

export const lormaPlus: BenchMethod = {
  method: 'lorma-plus',
  setup: (ctx, shape) => setup(ctx, 'plus', shape),
};

export const lormaPi: BenchMethod = {
  method: 'lorma-pi',
  setup: (ctx, shape) => setup(ctx, 'pi', shape),
};

/** The frozen layer alone: Y = X W0ᵀ forward, dX = G W0 backward (W0 gets no gradient). */
export const base: BenchMethod = {
  method: 'base',
  async setup(ctx, { T, n, m }) {
    const before = ctx.allocations.liveBytes;
    const x = ctx.upload(uniform(T * n, 1, 1), [T, n], 'f32', 'x');
    const w0 = ctx.upload(kaimingUniform(m * n, n, 2), [m, n], 'f32', 'w0');
    const g = ctx.upload(uniform(T * m, 1, 5), [T, m], 'f32', 'g');
    const y = ctx.tensor([T, m], 'f32', 'y');
    const dx = ctx.tensor([T, n], 'f32', 'dx');
    const forward = (enc: GPUCommandEncoder) => matmul(ctx, { a: x, b: w0, c: y, M: T, N: m, K: n, transB: true }, enc);
    const backward = (enc: GPUCommandEncoder) => matmul(ctx, { a: g, b: w0, c: dx, M: T, N: n, K: m }, enc);
    await ctx.encode(undefined, async (enc) => {
      await forward(enc);
      await backward(enc);
    });
    await ctx.sync();
    const flops = 2 * m * n * T;
    return {
      encode: {
        forward,
        backward,
        step: async (enc) => {
          await forward(enc);
          await backward(enc);
        },
      },
      flops: { forward: flops, backward: flops, step: 2 * flops },
      params: 0,
      bytes: ctx.allocations.liveBytes - before,
      destroy() {
        for (const t of [x, w0, g, y, dx]) t.destroy();
      },
    };
  },
};
