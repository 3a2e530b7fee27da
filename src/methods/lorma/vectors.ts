// `lorma` cases: params.inflation (pi, plus, none; the file format's name for the variant) and
// params.order (pre, post); A is [r, d] and B [d, r] with d = outFeatures for pre and inFeatures
// for post.

import { onDevice } from '../../host.js';
import { asW0, caseWeight } from '../../vectors/base.js';
import { input, output, type VectorRunner } from '../../vectors/types.js';
import {
  LORMA_ORDERS,
  LORMA_VARIANTS,
  lormaBackward,
  lormaForward,
  lormaMerge,
  type LormaBackwardArgs,
  type LormaOrder,
  type LormaParams,
  type LormaVariant,
} from './kernels.js';

export const runLorma: VectorRunner = async (ctx, c, info) => {
  const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
  const variant = c.params.inflation as LormaVariant;
  const order = (c.params.order ?? 'pre') as LormaOrder;
  if (!LORMA_VARIANTS.includes(variant))
    throw new Error(`case '${c.name}': params.inflation must be one of ${LORMA_VARIANTS.join(', ')}, got ${JSON.stringify(c.params.inflation)}`);
  if (!LORMA_ORDERS.includes(order)) throw new Error(`case '${c.name}': params.order must be pre or post, got ${JSON.stringify(c.params.order)}`);
  const d = order === 'pre' ? m : n;
  const host = {
    x: { data: input(c, 'x', [T, n]), shape: [T, n] },
    a: { data: input(c, 'a', [r, d]), shape: [r, d] },
    b: { data: input(c, 'b', [d, r]), shape: [d, r] },
    g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
  };
  const w0 = caseWeight(ctx, c, m, n, info);
  const out = await onDevice(ctx, host, async (t) => {
    const p = { w0: asW0(w0), a: t.a, b: t.b, scale, variant, order } as LormaParams;
    const { y, u, z } = await lormaForward(ctx, { ...p, x: t.x });
    // The forward returned u or z as the variant has it; the backward takes them back the same way.
    const back = { ...p, x: t.x, g: t.g, u, z };
    const { dx, da, db } = await lormaBackward(ctx, back as LormaBackwardArgs);
    const delta_w = await lormaMerge(ctx, p, { deltaOnly: true });
    const merged = await lormaMerge(ctx, p);
    u?.destroy();
    z?.destroy();
    return { y, dx, da, db, delta_w, merged };
  }).finally(() => w0.destroy());
  return {
    y: output(out.y, [T, m]),
    dx: output(out.dx, [T, n]),
    da: output(out.da, [r, d]),
    db: output(out.db, [d, r]),
    delta_w: output(out.delta_w, [m, n]),
    merged: output(out.merged, [m, n]),
  };
};
