// `quantize-nf4` cases of the vectors command: the device quantizer on input w0 [outFeatures,
// inFeatures] with params.blockSize; outputs w0_codes (bitsandbytes' bytes), w0_absmax and
// w0_dequant, which --check compares exactly.

import type { Tensor } from '../tensor.js';
import { input, output, type VectorRunner } from '../vectors/types.js';
import { dequantize, quantizeNf4, readWeight } from './index.js';

export const runQuantizeNf4: VectorRunner = async (ctx, c, info) => {
  const m = c.params.outFeatures;
  const n = c.params.inFeatures;
  const w = ctx.upload(input(c, 'w0', [m, n]), [m, n], 'f32', 'w0');
  let deq: Tensor | undefined;
  try {
    const q = await quantizeNf4(ctx, w, { blockSize: c.params.blockSize as number });
    try {
      if (info) info.w0Bytes = q.bytes;
      const host = await readWeight(ctx, q);
      if (host.format !== 'nf4') throw new Error('quantizeNf4 returned no NF4 weight');
      deq = await dequantize(ctx, q);
      return {
        w0_codes: output(host.codes, [host.codes.length]),
        w0_absmax: output(host.absmax, [host.absmax.length]),
        w0_dequant: output(await ctx.readF32(deq), [m, n]),
      };
    } finally {
      q.destroy();
    }
  } finally {
    w.destroy();
    deq?.destroy();
  }
};
