// The contract between the benchmark runner (bench/run.ts) and each method's benchmark module
// (bench/methods/<method>.ts). A module allocates one layer of its method on the device and
// encodes each phase into an encoder the runner times with timestamp queries.

import type { Context } from '../../src/runtime.js';

export interface BenchShape {
  T: number;
  n: number;
  m: number;
  r: number;
  /** BoRA blocks (ignored by methods without blocks). */
  b?: number;
  /** The frozen weight's format (f32 when absent): f16 or NF4 are made on the device from the same f32 values. */
  base?: 'f32' | 'f16' | 'nf4';
  /** NF4 block size (64, bitsandbytes' default, when absent). */
  blockSize?: number;
}

export type Phase = 'forward' | 'backward' | 'step' | 'adapterForward' | 'adapterBackward';

export interface BenchInstance {
  /** Encodes the phase into `enc` (nothing is submitted by the module). */
  encode: Partial<Record<Phase, (enc: GPUCommandEncoder) => Promise<void>>>;
  /** Analytic FLOPs of each phase (the descriptors' formulas, docs/math.md; a multiply-add counts 2). */
  flops: Partial<Record<Phase, number>>;
  /** Trainable parameters. */
  params: number;
  /** Device bytes the layer and its scratch hold (ctx.allocations after one step). */
  bytes: number;
  /** Device bytes of the frozen weight W0 in its format (codes and absmax together for NF4). */
  w0Bytes?: number;
  destroy(): void;
}

export interface BenchMethod {
  /** The `method` field of the JSON rows: lora, bora, melora, sbora-fa, sbora-fb, lorma-plus, lorma-pi. */
  method: string;
  /** False when the shape does not suit the method (e.g. b does not divide n); the runner skips it. */
  supports?(shape: BenchShape): boolean;
  setup(ctx: Context, shape: BenchShape): Promise<BenchInstance>;
}
