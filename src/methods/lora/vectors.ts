// The `peft-wgsl vectors` runner for LoRA cases: forward, backward (with the forward's Z), ΔW and
// the merged weight, each through the GPU kernels.

import { onDevice } from '../../host.js';
import { asW0, caseWeight } from '../../vectors/base.js';
import { input, output, type VectorRunner } from '../../vectors/types.js';
import { loraBackward, loraForward, loraMerge } from './kernels.js';

export const runLora: VectorRunner = async (ctx, c, info) => {
  const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
  const host = {
    x: { data: input(c, 'x', [T, n]), shape: [T, n] },
    a: { data: input(c, 'a', [r, n]), shape: [r, n] },
    b: { data: input(c, 'b', [m, r]), shape: [m, r] },
    g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
  };
  const w0 = caseWeight(ctx, c, m, n, info);
  const out = await onDevice(ctx, host, async (t) => {
    const p = { w0: asW0(w0), a: t.a, b: t.b, scale };
    const { y, z } = await loraForward(ctx, { ...p, x: t.x });
    const { dx, da, db } = await loraBackward(ctx, { ...p, x: t.x, g: t.g, z });
    const delta_w = await loraMerge(ctx, p, { deltaOnly: true });
    const merged = await loraMerge(ctx, p);
    z.destroy();
    return { y, dx, da, db, delta_w, merged };
  }).finally(() => w0.destroy());
  return {
    y: output(out.y, [T, m]),
    dx: output(out.dx, [T, n]),
    da: output(out.da, [r, n]),
    db: output(out.db, [m, r]),
    delta_w: output(out.delta_w, [m, n]),
    merged: output(out.merged, [m, n]),
  };
};
