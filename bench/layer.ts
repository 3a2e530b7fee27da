// One benchmark set-up for every method: a layer made by the method's descriptor
// (src/methods/<family>/index.ts, createLayer), timed through the same forward and backward a
// training loop calls, with the descriptor's analytic FLOPs and parameter count. The frozen base
// layer alone ('base') is the one row that is not a method.

import { matmul } from '../src/ops/matmul.js';
import { kaimingUniform, uniform } from '../src/random.js';
import type { Context } from '../src/runtime.js';
import { BaseWeight, type Weight } from '../src/base.js';
import { quantizeNf4, toF16 } from '../src/quant/index.js';
import { PeftError } from '../src/validate.js';
import type { MethodDescriptor, MethodOptions } from '../src/methods/types.js';
import type { BenchInstance, BenchMethod, BenchShape, Phase } from './methods/types.js';

/** The largest single buffer a set-up allocated (LoRMA_π must never make a d×d one). */
export interface Largest {
  label: string;
  bytes: number;
  shape?: readonly number[];
}

/** x, W0 (in the shape's base format, made from the same f32 values) and the upstream gradient, with the same seeds for every method. */
async function inputs(ctx: Context, { T, n, m, base = 'f32', blockSize = 64 }: BenchShape) {
  const f32 = ctx.upload(kaimingUniform(m * n, n, 2), [m, n], 'f32', 'w0');
  let w0: Weight = f32;
  if (base !== 'f32') {
    w0 = base === 'f16' ? await toF16(ctx, f32, { label: 'w0' }) : await quantizeNf4(ctx, f32, { blockSize, label: 'w0' });
    f32.destroy();
  }
  const io = {
    x: ctx.upload(uniform(T * n, 1, 1), [T, n], 'f32', 'x'),
    w0,
    g: ctx.upload(uniform(T * m, 1, 5), [T, m], 'f32', 'g'),
    y: ctx.tensor([T, m], 'f32', 'y'),
    dx: ctx.tensor([T, n], 'f32', 'dx'),
  };
  return {
    ...io,
    w0Bytes: BaseWeight.isBaseWeight(w0) ? w0.bytes : m * n * 4,
    destroy() {
      for (const t of [io.x, io.w0, io.g, io.y, io.dx]) t.destroy();
    },
  };
}

/** Runs forward then backward once so that scratch and saved tensors exist before bytes are counted. */
async function warm(ctx: Context, forward: (e: GPUCommandEncoder) => Promise<void>, backward: (e: GPUCommandEncoder) => Promise<void>) {
  await ctx.encode(undefined, async (enc) => {
    await forward(enc);
    await backward(enc);
  });
  await ctx.sync();
}

/** A benchmark row source for `desc` (or one of its benchVariants). */
export function benchMethodOf(desc: MethodDescriptor, variant?: { id: string; options: MethodOptions }): BenchMethod {
  const options = (shape: BenchShape): MethodOptions => ({ ...desc.benchOptions?.(shape), ...variant?.options });
  return {
    method: variant?.id ?? desc.id,
    supports: (shape) => desc.unsupported({ n: shape.n, m: shape.m, r: shape.r }, options(shape)) === null,
    async setup(ctx, shape) {
      const { T, n, m, r } = shape;
      const opts = options(shape);
      const before = ctx.allocations.liveBytes;
      let largest: Largest = { label: '', bytes: 0 };
      const stop = ctx.onAllocate((rec) => {
        if (rec.bytes > largest.bytes) largest = rec;
      });
      const io = await inputs(ctx, shape);
      const dims = { n, m, r };
      let layer;
      const encode: Partial<Record<Phase, (enc: GPUCommandEncoder) => Promise<void>>> = {};
      try {
        layer = desc.createLayer(ctx, { w0: io.w0, r, alpha: 2 * r, options: opts, seed: 3, name: variant?.id ?? desc.id });
        const l = layer;
        encode.forward = (enc) => l.forward(enc, io.x, io.y);
        encode.backward = (enc) => l.backward(enc, io.x, io.g, io.dx);
        encode.step = async (enc) => {
          await l.forward(enc, io.x, io.y);
          await l.backward(enc, io.x, io.g, io.dx);
        };
        await warm(ctx, encode.forward, encode.backward);
        // The adapter term alone, where the method has one (LoRMA multiplies W0: it has none).
        try {
          const af = (enc: GPUCommandEncoder) => l.forward(enc, io.x, io.y, { adapterOnly: true });
          const ab = (enc: GPUCommandEncoder) => l.backward(enc, io.x, io.g, io.dx, { adapterOnly: true });
          await warm(ctx, af, ab);
          encode.adapterForward = af;
          encode.adapterBackward = ab;
        } catch (e) {
          if (!(e instanceof PeftError && /adapterOnly/.test(e.message))) throw e;
        }
      } catch (e) {
        stop();
        layer?.destroy();
        io.destroy();
        throw e;
      }
      stop();
      // The kernels this context runs (LoRMA_π's 'auto' takes the tiles on GPUs).
      const f = desc.flops(T, dims, desc.runOptions?.(ctx, dims, opts) ?? opts);
      const l = layer;
      const instance: BenchInstance & { largestAllocation: Largest } = {
        encode,
        flops: {
          forward: f.forward,
          backward: f.backward,
          step: f.forward + f.backward,
          ...(encode.adapterForward ? { adapterForward: f.adapterForward, adapterBackward: f.adapterBackward } : {}),
        },
        params: desc.paramCount(dims, opts),
        bytes: ctx.allocations.liveBytes - before,
        w0Bytes: io.w0Bytes,
        largestAllocation: largest,
        destroy() {
          l.destroy();
          io.destroy();
        },
      };
      return instance;
    },
  };
}

/** The frozen layer alone: Y = X W0ᵀ forward, dX = G W0 backward (W0 gets no gradient). */
export const base: BenchMethod = {
  method: 'base',
  async setup(ctx, shape) {
    const { T, n, m } = shape;
    const before = ctx.allocations.liveBytes;
    const io = await inputs(ctx, shape);
    const forward = (enc: GPUCommandEncoder) => matmul(ctx, { a: io.x, b: io.w0, c: io.y, M: T, N: m, K: n, transB: true }, enc);
    const backward = (enc: GPUCommandEncoder) => matmul(ctx, { a: io.g, b: io.w0, c: io.dx, M: T, N: n, K: m }, enc);
    await warm(ctx, forward, backward);
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
      w0Bytes: io.w0Bytes,
      destroy() {
        io.destroy();
      },
    };
  },
};
