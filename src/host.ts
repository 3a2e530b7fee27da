// The convenience layer: typed arrays in, typed arrays out, for scripts and tests. Uploads the
// inputs, runs a kernel on device tensors, reads every output back and frees what it made.

import type { Context } from './runtime.js';
import type { DType, HostArray, Tensor } from './tensor.js';

export interface HostTensor {
  data: HostArray;
  shape: readonly number[];
  dtype?: DType;
}

export async function onDevice<K extends string>(
  ctx: Context,
  inputs: Record<string, HostTensor>,
  fn: (t: Record<string, Tensor>) => Promise<Record<K, Tensor>>,
): Promise<Record<K, Float32Array>> {
  const uploaded: Record<string, Tensor> = {};
  try {
    for (const [name, h] of Object.entries(inputs)) uploaded[name] = ctx.upload(h.data, h.shape, h.dtype ?? 'f32', name);
    const outputs = await fn(uploaded);
    const result = {} as Record<K, Float32Array>;
    const inputBuffers = new Set(Object.values(uploaded).map((t) => t.buffer));
    try {
      for (const [name, t] of Object.entries(outputs) as [K, Tensor][]) result[name] = (await ctx.read(t)) as Float32Array;
    } finally {
      for (const t of Object.values(outputs) as Tensor[]) if (!inputBuffers.has(t.buffer)) t.destroy();
    }
    return result;
  } finally {
    for (const t of Object.values(uploaded)) t.destroy();
  }
}
