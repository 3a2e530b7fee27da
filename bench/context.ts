// The device and option handling every bench tool (run, compare, profile) shares.

import { Context, type Tuning } from '../src/runtime.js';
import { MATMUL_VARIANTS } from '../src/runtime/device.js';
import { ensureNavigatorGpu } from './peers/common.js';

/** The value of `--matmul`, checked against the runtime's kernel names; `tool` names the program in the error. */
export function matmulOption(tool: string, v: string): Tuning['matmul'] {
  if (!(MATMUL_VARIANTS as readonly string[]).includes(v)) throw new Error(`${tool}: --matmul takes ${MATMUL_VARIANTS.join(', ')}; got ${v}`);
  return v as Tuning['matmul'];
}

/** A context on the WebGPU device (Dawn in Node), with the matmul kernels given, else the adapter's default. */
export async function benchContext(matmul?: Tuning['matmul']): Promise<Context> {
  await ensureNavigatorGpu();
  return Context.create(matmul ? { tuning: { matmul } } : {});
}
