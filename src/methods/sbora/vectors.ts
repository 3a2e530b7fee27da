// `peft-wgsl vectors` runners for 'sbora-fa' and 'sbora-fb': the case's `index` goes through
// the same validation as any caller's set, so a malformed file gets the same clear error.

import { onDevice } from '../../host.js';
import { asW0, caseWeight } from '../../vectors/base.js';
import type { Weight } from '../../base.js';
import { input, output, type VectorCase, type VectorRunner } from '../../vectors/types.js';
import { createIndexSet, type IndexSet } from './indices.js';
import { sboraBackward, sboraForward, sboraMerge, type SboraArgs, type SboraVariant } from './kernels.js';

function indexOf(c: VectorCase, r: number): number[] {
  const t = c.inputs.index;
  if (!t) throw new Error(`case '${c.name}': input 'index' is missing`);
  if (t.shape.length !== 1 || t.shape[0] !== r) throw new Error(`case '${c.name}': input 'index' has shape [${t.shape.join(', ')}], expected [${r}]`);
  return t.data;
}

/**
 * One runner per variant. FA trains B [m, r] and its indices pick r of the n input columns; FB
 * trains A [r, n] and its indices pick r of the m output rows.
 */
function sboraRunner(variant: SboraVariant): VectorRunner {
  return async (ctx, c, info) => {
    const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
    const values = indexOf(c, r);
    const fa = variant === 'fa';
    const factor = fa ? { name: 'b', shape: [m, r], grad: 'db' } : { name: 'a', shape: [r, n], grad: 'da' };
    const host = {
      x: { data: input(c, 'x', [T, n]), shape: [T, n] },
      f: { data: input(c, factor.name, factor.shape), shape: factor.shape },
      g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
    };
    let idx: IndexSet | undefined;
    let w0: Weight | undefined;
    try {
      w0 = caseWeight(ctx, c, m, n, info);
      const base = w0;
      idx = createIndexSet(ctx, { size: fa ? n : m, values, r }, 'index');
      const set = idx;
      const out = await onDevice(ctx, host, async (t) => {
        const p: SboraArgs = fa
          ? { variant: 'fa', w0: asW0(base), b: t.f, idx: set, scale }
          : { variant: 'fb', w0: asW0(base), a: t.f, idx: set, scale };
        const { y } = await sboraForward(ctx, { ...p, x: t.x });
        const grads = await sboraBackward(ctx, { ...p, x: t.x, g: t.g });
        const delta_w = await sboraMerge(ctx, p, { deltaOnly: true });
        const merged = await sboraMerge(ctx, p);
        return { y, dx: grads.dx, grad: 'db' in grads ? grads.db : grads.da, delta_w, merged };
      });
      return {
        y: output(out.y, [T, m]),
        dx: output(out.dx, [T, n]),
        [factor.grad]: output(out.grad, factor.shape),
        delta_w: output(out.delta_w, [m, n]),
        merged: output(out.merged, [m, n]),
      };
    } finally {
      idx?.destroy();
      w0?.destroy();
    }
  };
}

export const runSboraFa = sboraRunner('fa');
export const runSboraFb = sboraRunner('fb');
