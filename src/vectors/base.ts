// A case's base weight in the format its params.baseFormat names (VECTORS.md, "Base formats"):
// f32 from input w0 (the default), f16 from input w0 (values f16 holds exactly), or NF4 from
// inputs w0_codes and w0_absmax with params.blockSize. The runner reports its device bytes.

import type { BaseWeight, Weight } from '../base.js';
import type { Context } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import { f16Weight, nf4Weight } from '../quant/index.js';
import { roundF16 } from '../quant/reference.js';
import { PeftError } from '../validate.js';
import { input, type RunInfo, type VectorCase } from './types.js';

/** The values of an integer input (NF4 codes): each an integer 0–255. */
function byteInput(c: VectorCase, name: string, count: number): Uint8Array {
  const values = input(c, name, [count]);
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new PeftError(`case '${c.name}': ${name}[${i}] is ${v}, expected an integer 0–255`);
    out[i] = v;
  }
  return out;
}

/**
 * W0 [m, n] of case `c` on the device, in its base format; `info.w0Bytes` gets its bytes when the
 * case names a format. The caller destroys it.
 */
export function caseWeight(ctx: Context, c: VectorCase, m: number, n: number, info?: RunInfo): Weight {
  const format = c.params.baseFormat ?? 'f32';
  if (format === 'f32') return ctx.upload(input(c, 'w0', [m, n]), [m, n], 'f32', 'w0');
  let w: BaseWeight;
  if (format === 'f16') {
    const values = input(c, 'w0', [m, n]);
    for (let i = 0; i < values.length; i++) {
      const h = roundF16(values[i]);
      if (h !== values[i]) {
        throw new PeftError(`case '${c.name}': input 'w0'[${i}] is ${values[i]}, which f16 does not hold exactly (baseFormat f16)`);
      }
    }
    w = f16Weight(ctx, values, [m, n]);
  } else if (format === 'nf4') {
    const blockSize = c.params.blockSize;
    if (typeof blockSize !== 'number')
      throw new PeftError(`case '${c.name}': baseFormat nf4 needs params.blockSize, got ${JSON.stringify(blockSize)}`);
    const size = m * n;
    const codes = byteInput(c, 'w0_codes', Math.ceil(size / 2));
    const absmax = input(c, 'w0_absmax', [Math.ceil(size / blockSize)]);
    w = nf4Weight(ctx, { codes, absmax, blockSize }, [m, n]);
  } else {
    throw new PeftError(`case '${c.name}': params.baseFormat must be 'f32', 'f16' or 'nf4', got ${JSON.stringify(format)}`);
  }
  if (info) info.w0Bytes = w.bytes;
  return w;
}

/**
 * W0 typed as a Tensor for the runners. The methods take any Weight; their merge overloads type
 * the result as a Tensor only for a Tensor W0, and the runners merge into new f32 tensors (never
 * in place), which are Tensors whatever W0's format.
 */
export function asW0(w: Weight): Tensor {
  return w as Tensor;
}
