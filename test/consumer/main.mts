// A consumer of the published package: test/e2e/package.test.ts installs the packed tarball into
// an empty folder, copies this file and the tsconfig.*.json beside it there, and type-checks it
// with the repository's tsc in each set-up a user may have. It is never run.
//
// The package's .d.ts files name the WebGPU globals (GPUBuffer, GPUDevice, ...) and reference no
// package for them, so they resolve against whichever declarations the consumer has: TypeScript's
// DOM lib (6.0 and later declare WebGPU) or @webgpu/types without the DOM lib. A reference to
// @webgpu/types in the package would clash with lib.dom's own declarations.
//
// Under skipLibCheck an unresolved name in a .d.ts raises no error, accepts any value, and makes
// every type-level test over it (IsAny, Same below) accept any answer too. So the proof that the
// package's WebGPU types came through is the `@ts-expect-error` lines: each compiles only while
// its type is real.

import { createContext, loraForward, PeftError, Tensor, type Context } from 'peft-wgsl';
import { createContext as createNodeContext } from 'peft-wgsl/node';
import { relativeError } from 'peft-wgsl/reference';

type IsAny<T> = 0 extends 1 & T ? true : false;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export async function run(device?: GPUDevice): Promise<number> {
  const ctx: Context = device ? await createContext({ device }) : await createNodeContext();
  const [T, n, m, r] = [3, 5, 7, 2];
  const x = ctx.upload(new Float32Array(T * n).fill(0.5), [T, n]);
  const w0 = ctx.upload(new Float32Array(m * n).fill(0.25), [m, n]);
  const a = ctx.upload(new Float32Array(r * n).fill(0.125), [r, n]);
  const b = ctx.zeros([m, r]);
  const encoder: GPUCommandEncoder = ctx.device.createCommandEncoder();
  const { y, z } = await loraForward(ctx, { x, w0, a, b, scale: 2 }, { encoder });
  ctx.device.queue.submit([encoder.finish()]);
  const ys = await ctx.read(y);
  const xs = await ctx.read(x);
  const ids = await ctx.read(ctx.upload(new Uint32Array([3, 1]), [2], 'u32'));
  const buffer: GPUBuffer = z.buffer;
  const wrapped = Tensor.wrap(ctx, buffer, [T, r]);
  // @ts-expect-error a Tensor is not a GPUBuffer (passes only while both types are real)
  const notABuffer: GPUBuffer = y;

  // Each assignment below must be refused; an unresolved GPU type would accept it.
  // @ts-expect-error a number is not a GPUBuffer
  const bufferIsReal: Tensor['buffer'] = 0;
  // @ts-expect-error a number is not a GPUDevice
  const deviceIsReal: Context['device'] = 0;
  // @ts-expect-error a number is not a GPUBuffer
  const wrapTakesBuffer: Parameters<typeof Tensor.wrap>[1] = 0;
  // @ts-expect-error a number is not a GPUCommandEncoder
  const encoderIsReal: NonNullable<Parameters<typeof loraForward>[2]>['encoder'] = 0;

  const resolved: [
    IsAny<GPUBuffer>,
    IsAny<typeof ys>,
    Same<Tensor['buffer'], GPUBuffer>,
    Same<Context['device'], GPUDevice>,
    Same<typeof xs, Float32Array>,
    Same<typeof ids, Uint32Array>,
    Same<typeof wrapped.shape, readonly number[]>,
    Same<ReturnType<typeof relativeError>, number>,
  ] = [false, false, true, true, true, true, true, true];
  const refused = [bufferIsReal, deviceIsReal, wrapTakesBuffer, encoderIsReal];

  const error: Error = new PeftError('never thrown');
  ctx.destroy();
  return ys[0] + xs[0] + ids[1] + buffer.size + resolved.length + refused.length + error.message.length + (notABuffer ? 0 : 1);
}
