// `lorma` cases: params.inflation (pi, plus, none) and params.order (pre, post); A is [r, d] and
// B [d, r] with d = outFeatures for pre and inFeatures for post.

import { onDevice } from '../host.js';
import { INFLATIONS, ORDERS, lormaBackward, lormaForward, lormaMerge, type Inflation, type Order } from '../lorma.js';
import { input, output, type VectorRunner } from './types.js';

export const runLorma: VectorRunner = async (ctx, c) => {
  const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
  const inflation = c.params.inflation as Inflation;
  const order = (c.params.order ?? 'pre') as Order;
  if (!INFLATIONS.includes(inflation)) throw new Error(`case '${c.name}': params.inflation must be one of ${INFLATIONS.join(', ')}, got ${JSON.stringify(c.params.inflation)}`);
  if (!ORDERS.includes(order)) throw new Error(`case '${c.name}': params.order must be pre or post, got ${JSON.stringify(c.params.order)}`);
  const d = order === 'pre' ? m : n;
  const host = {
    x: { data: input(c, 'x', [T, n]), shape: [T, n] },
    w0: { data: input(c, 'w0', [m, n]), shape: [m, n] },
    a: { data: input(c, 'a', [r, d]), shape: [r, d] },
    b: { data: input(c, 'b', [d, r]), shape: [d, r] },
    g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
  };
  const out = await onDevice(ctx, host, async (t) => {
    const p = { w0: t.w0, a: t.a, b: t.b, scale, inflation, order };
    const { y, u, z } = await lormaForward(ctx, { ...p, x: t.x });
    const { dx, da, db } = await lormaBackward(ctx, { ...p, x: t.x, g: t.g, u, z });
    const delta_w = await lormaMerge(ctx, p, { deltaOnly: true });
    const merged = await lormaMerge(ctx, p);
    u?.destroy();
    z?.destroy();
    return { y, dx, da, db, delta_w, merged };
  });
  return {
    y: output(out.y, [T, m]),
    dx: output(out.dx, [T, n]),
    da: output(out.da, [r, d]),
    db: output(out.db, [d, r]),
    delta_w: output(out.delta_w, [m, n]),
    merged: output(out.merged, [m, n]),
  };
};
