// Float64 reference of the whole GPT (examples/gpt/model.ts), composed from the package's
// references of each layer: the GPU model's loss, logits and every weight's gradient are checked
// against it (test/gpt.test.ts).

import * as nn from '../../src/reference/nn.js';
import { attentionBackward, attentionForward } from '../../src/reference/attention.js';
import { matmul, type F64 } from '../../src/reference/linalg.js';
import { moduleName, type GPTConfig } from './model.js';

const add = (a: ArrayLike<number>, b: ArrayLike<number>): F64 => Float64Array.from(a as ArrayLike<number>, (v, i) => v + b[i]);

/** y = x Wᵀ for x [N, n], W [m, n]. */
const lin = (x: ArrayLike<number>, w: ArrayLike<number>, N: number, n: number, m: number) => matmul(x, w, N, n, m, false, true);

export function referenceForwardBackward(
  c: GPTConfig,
  w: Map<string, ArrayLike<number>>,
  ids: ArrayLike<number>,
  targets: ArrayLike<number>,
  B: number,
  T: number,
): { loss: number; logits: F64; grads: Map<string, F64> } {
  const { dim: D, mlp: F, vocab: V, heads } = c;
  const N = B * T;
  const W = (name: string) => w.get(name)!;
  const shape = { batch: B, T, heads, headDim: D / heads, causal: true };
  const x0 = nn.addPositions({ N, D, T, x: nn.embeddingForward({ V, D, table: W('tok_emb.weight'), ids }), pos: W('pos_emb.weight') });
  const xs: F64[] = [x0];
  const saved: { a1: F64; q: F64; k: F64; v: F64; att: F64; a2: F64; u: F64; z: F64 }[] = [];
  for (let l = 0; l < c.layers; l++) {
    const x = xs[xs.length - 1];
    const a1 = nn.layerNormForward({ T: N, n: D, x, gamma: W(`layers.${l}.ln1.weight`), beta: W(`layers.${l}.ln1.bias`) }).y;
    const q = lin(a1, W(`${moduleName(l, 'q_proj')}.weight`), N, D, D);
    const k = lin(a1, W(`${moduleName(l, 'k_proj')}.weight`), N, D, D);
    const v = lin(a1, W(`${moduleName(l, 'v_proj')}.weight`), N, D, D);
    const att = attentionForward({ ...shape, q, k, v }).y;
    const x1 = add(x, lin(att, W(`${moduleName(l, 'o_proj')}.weight`), N, D, D));
    const a2 = nn.layerNormForward({ T: N, n: D, x: x1, gamma: W(`layers.${l}.ln2.weight`), beta: W(`layers.${l}.ln2.bias`) }).y;
    const u = lin(a2, W(`${moduleName(l, 'fc1')}.weight`), N, D, F);
    const z = nn.activationForward({ n: F, x: u, fn: 'gelu' });
    const x2 = add(x1, lin(z, W(`${moduleName(l, 'fc2')}.weight`), N, F, D));
    xs.push(x1, x2);
    saved.push({ a1, q, k, v, att, a2, u, z });
  }
  const last = xs[xs.length - 1];
  const hf = nn.layerNormForward({ T: N, n: D, x: last, gamma: W('ln_f.weight'), beta: W('ln_f.bias') }).y;
  const logits = nn.tiedOutputForward({ T: N, V, D, h: hf, table: W('tok_emb.weight') });
  const { loss, dlogits } = nn.softmaxCrossEntropy({ T: N, V, logits, targets });

  const grads = new Map<string, F64>();
  const out = nn.tiedOutputBackward({ T: N, V, D, h: hf, table: W('tok_emb.weight'), g: dlogits });
  const lnBack = (x: F64, prefix: string, g: ArrayLike<number>) => {
    const r = nn.layerNormBackward({ T: N, n: D, x, gamma: W(`${prefix}.weight`), g });
    grads.set(`${prefix}.weight`, r.dgamma);
    grads.set(`${prefix}.bias`, r.dbeta);
    return r.dx;
  };
  const linBack = (x: F64, name: string, g: F64, n: number, m: number) => {
    const r = nn.linearBackward({ T: N, n, m, x, w: W(`${name}.weight`), g });
    grads.set(`${name}.weight`, r.dw);
    return r.dx;
  };
  let g = lnBack(last, 'ln_f', out.dh);
  for (let l = c.layers - 1; l >= 0; l--) {
    const s = saved[l];
    const dz = linBack(s.z, moduleName(l, 'fc2'), g, F, D);
    const du = nn.activationBackward({ n: F, x: s.u, g: dz, fn: 'gelu' }).dx;
    const da2 = linBack(s.a2, moduleName(l, 'fc1'), du, D, F);
    const g1 = add(g, lnBack(xs[2 * l + 1], `layers.${l}.ln2`, da2));
    const datt = linBack(s.att, moduleName(l, 'o_proj'), g1, D, D);
    const d = attentionBackward({ ...shape, q: s.q, k: s.k, v: s.v, dy: datt });
    const da1 = add(
      add(linBack(s.a1, moduleName(l, 'q_proj'), d.dq, D, D), linBack(s.a1, moduleName(l, 'k_proj'), d.dk, D, D)),
      linBack(s.a1, moduleName(l, 'v_proj'), d.dv, D, D),
    );
    g = add(g1, lnBack(xs[2 * l], `layers.${l}.ln1`, da1));
  }
  grads.set('pos_emb.weight', nn.positionGrad({ N, D, T, P: c.context, g }));
  grads.set('tok_emb.weight', nn.tiedOutputBackward({ T: N, V, D, h: hf, table: W('tok_emb.weight'), g: dlogits, ids, dx: g }).dtable);
  return { loss, logits, grads };
}
