// LoRMA₊ and LoRMA_π (pre-multiplication, d = m), and the plain base layer (Y = X W0ᵀ,
// dX = G W0) that LoRMA_π's ratio is taken against. LoRMA₊'s is taken against LoRA.

import { matmul } from '../../src/ops/matmul.js';
import { lormaBackward, lormaCorrelationsShape, lormaForward, lormaInit, lormaPiPath, type Inflation } from '../../src/lorma.js';
import { kaimingUniform, uniform } from '../../src/random.js';
import type { Context, Tuning } from '../../src/runtime.js';
import type { BenchInstance, BenchMethod, BenchShape } from './types.js';

/** Largest single buffer a setup allocated, for the "no d×d buffer" check beside the timings. */
export interface LormaBenchInstance extends BenchInstance {
  largestAllocation: { label: string; bytes: number; shape?: readonly number[] };
}

/** With `piPath`, the LoRMA_π kernels are forced ('tiles' or 'fft') while this method encodes. */
async function setup(ctx: Context, inflation: Inflation, { T, n, m, r }: BenchShape, piPath?: Tuning['lormaPi']): Promise<LormaBenchInstance> {
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
  // The FFT path keeps the forward's correlations C for dB (lormaForward's `c`), as u is kept.
  const fft = inflation === 'pi' && (piPath === 'fft' || (piPath !== 'tiles' && lormaPiPath(ctx, d) === 'fft'));
  const c = fft ? ctx.tensor(lormaCorrelationsShape(T, d, r), 'f32', 'c') : undefined;
  let largest = { label: '', bytes: 0 } as LormaBenchInstance['largestAllocation'];
  const stop = ctx.onAllocate((rec) => {
    if (rec.bytes > largest.bytes) largest = rec;
  });
  const withPath = async (fn: () => Promise<unknown>) => {
    const saved = ctx.tuning.lormaPi;
    if (piPath) ctx.tuning.lormaPi = piPath;
    try {
      await fn();
    } finally {
      ctx.tuning.lormaPi = saved;
    }
  };
  const forward = (enc: GPUCommandEncoder) => withPath(() => lormaForward(ctx, { ...p, x, y, u, z, c }, { encoder: enc }));
  const backward = (enc: GPUCommandEncoder) => withPath(() => lormaBackward(ctx, { ...p, x, g, u, z, c, dx, da, db }, { encoder: enc }));
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
  // pi, tiles: the d×d mixing is 2d²T plus generating π(BA) tiles, 2d²r per BM = 128 tokens;
  // backward does it twice (dU through π(BA)ᵀ, and dP) plus the dP contractions 4d²r.
  // pi, fft: a complex FFT of length d is 5·d·log2 d flops; two real rows share one. Forward:
  // ⌈r/2⌉T + T/2 transforms (C_q, In's rows), 8drT pointwise; backward twice ⌈r/2⌉T (H_q, C_q)
  // + T (In's rows, dU) transforms, about 24drT pointwise (products, dA over tokens, dB); with
  // the forward's C kept (as here), ⌈r/2⌉T transforms fewer.
  const tilesT = Math.ceil(T / 128);
  const fftFlops = 5 * d * Math.log2(d);
  const np = Math.ceil(r / 2);
  const piFwd = fft ? (np * T + T / 2) * fftFlops + 8 * d * r * T : 2 * d * d * T + 2 * d * d * r * tilesT;
  const piBwd = fft ? (np * T + T) * fftFlops + 24 * d * r * T : 4 * d * d * T + 2 * d * d * r * tilesT + 4 * d * d * r;
  const adapterFwd = inflation === 'pi' ? piFwd : 4 * d * r * T + 2 * m * n * r;
  const adapterBwd = inflation === 'pi' ? piBwd : 8 * d * r * T + 4 * m * n * r;
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
      for (const t of [x, w0, g, a, b, y, u, z, c, dx, da, db]) t?.destroy();
    },
  };
}

export const lormaPlus: BenchMethod = {
  method: 'lorma-plus',
  setup: (ctx, shape) => setup(ctx, 'plus', shape),
};

/** LoRMA_π as the context chooses (ctx.tuning.lormaPi, 'auto': FFTs at d = 1024). */
export const lormaPi: BenchMethod = {
  method: 'lorma-pi',
  setup: (ctx, shape) => setup(ctx, 'pi', shape),
};

/** LoRMA_π with π(BA) generated tile by tile (the path for d not a power of two), to compare. */
export const lormaPiTiles: BenchMethod = {
  method: 'lorma-pi-tiles',
  setup: (ctx, shape) => setup(ctx, 'pi', shape, 'tiles'),
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
