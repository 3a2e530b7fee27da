// The `attention` case of the vectors command (docs/vectors.md): params batch, T, heads, headDim,
// causal, scale; inputs q, k, v, dy [batch·T, heads·headDim]; outputs y, dq, dk, dv, the
// gradients of sum(y ⊙ dy).

import type { Context } from '../runtime.js';
import { attentionBackward, attentionForward } from '../attention.js';
import { PeftError } from '../validate.js';
import { input, output, type VectorCase, type VectorTensor } from './types.js';

export async function runAttention(ctx: Context, c: VectorCase): Promise<Record<string, VectorTensor>> {
  const p = c.params as Record<string, unknown>;
  const [batch, T, heads, headDim] = [p.batch, p.T, p.heads, p.headDim] as number[];
  const causal = p.causal ?? true;
  if (typeof causal !== 'boolean') throw new PeftError(`case '${c.name}': params.causal must be a boolean, got ${JSON.stringify(causal)}`);
  const shape = [batch * T, heads * headDim];
  const tensors = (['q', 'k', 'v', 'dy'] as const).map((n) => ctx.upload(input(c, n, shape), shape, 'f32', `vectors.${n}`));
  const made: { destroy(): void }[] = [...tensors];
  try {
    const [q, k, v, dy] = tensors;
    const s = { batch, T, heads, headDim, causal, scale: p.scale as number };
    const { y, lse } = await attentionForward(ctx, { ...s, q, k, v });
    made.push(y, lse);
    const g = await attentionBackward(ctx, { ...s, q, k, v, y, lse, dy });
    made.push(g.dq, g.dk, g.dv);
    return {
      y: output(await ctx.read(y), shape),
      dq: output(await ctx.read(g.dq), shape),
      dk: output(await ctx.read(g.dk), shape),
      dv: output(await ctx.read(g.dv), shape),
    };
  } finally {
    for (const t of made) t.destroy();
  }
}
