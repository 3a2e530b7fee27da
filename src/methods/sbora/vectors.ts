// `peft-wgsl vectors` runners for 'sbora-fa' and 'sbora-fb': the case's `index` goes through
// the same validation as any caller's set, so a malformed file gets the same clear error.

import { onDevice } from '../../host.js';
import { asW0, caseWeight } from '../../vectors/base.js';
import type { Weight } from '../../base.js';
import { input, output, type VectorCase, type VectorRunner } from '../../vectors/types.js';
import { createIndexSet, type IndexSet } from './indices.js';
import { sboraBackward, sboraForward, sboraMerge } from './kernels.js';

function indexOf(c: VectorCase, r: number): number[] {
  const t = c.inputs.index;
  if (!t) throw new Error(`case '${c.name}': input 'index' is missing`);
  if (t.shape.length !== 1 || t.shape[0] !== r) throw new Error(`case '${c.name}': input 'index' has shape [${t.shape.join(', ')}], expected [${r}]`);
  return t.data;
}

export const runSboraFa: VectorRunner = async (ctx, c, info) => {
  const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
  const values = indexOf(c, r);
  const host = {
    x: { data: input(c, 'x', [T, n]), shape: [T, n] },
    b: { data: input(c, 'b', [m, r]), shape: [m, r] },
    g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
  };
  let idx: IndexSet | undefined;
  let w0: Weight | undefined;
  try {
    w0 = caseWeight(ctx, c, m, n, info);
    const base = w0;
    idx = createIndexSet(ctx, { size: n, values, r }, 'index');
    const set = idx;
    const out = await onDevice(ctx, host, async (t) => {
      const p = { variant: 'fa' as const, w0: asW0(base), b: t.b, idx: set, scale };
      const { y } = await sboraForward(ctx, { ...p, x: t.x });
      const { dx, db } = await sboraBackward(ctx, { ...p, x: t.x, g: t.g });
      const delta_w = await sboraMerge(ctx, p, { deltaOnly: true });
      const merged = await sboraMerge(ctx, p);
      return { y, dx, db, delta_w, merged };
    });
    return {
      y: output(out.y, [T, m]),
      dx: output(out.dx, [T, n]),
      db: output(out.db, [m, r]),
      delta_w: output(out.delta_w, [m, n]),
      merged: output(out.merged, [m, n]),
    };
  } finally {
    idx?.destroy();
    w0?.destroy();
  }
};

export const runSboraFb: VectorRunner = async (ctx, c, info) => {
  const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
  const values = indexOf(c, r);
  const host = {
    x: { data: input(c, 'x', [T, n]), shape: [T, n] },
    a: { data: input(c, 'a', [r, n]), shape: [r, n] },
    g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
  };
  let idx: IndexSet | undefined;
  let w0: Weight | undefined;
  try {
    w0 = caseWeight(ctx, c, m, n, info);
    const base = w0;
    idx = createIndexSet(ctx, { size: m, values, r }, 'index');
    const set = idx;
    const out = await onDevice(ctx, host, async (t) => {
      const p = { variant: 'fb' as const, w0: asW0(base), a: t.a, idx: set, scale };
      const { y } = await sboraForward(ctx, { ...p, x: t.x });
      const { dx, da } = await sboraBackward(ctx, { ...p, x: t.x, g: t.g });
      const delta_w = await sboraMerge(ctx, p, { deltaOnly: true });
      const merged = await sboraMerge(ctx, p);
      return { y, dx, da, delta_w, merged };
    });
    return {
      y: output(out.y, [T, m]),
      dx: output(out.dx, [T, n]),
      da: output(out.da, [r, n]),
      delta_w: output(out.delta_w, [m, n]),
      merged: output(out.merged, [m, n]),
    };
  } finally {
    idx?.destroy();
    w0?.destroy();
  }
};
