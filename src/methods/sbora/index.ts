// The SBoRA family (docs/sbora.md): two methods, 'sbora-fa' and 'sbora-fb', on one shader and one
// host module. LoRA with one factor frozen to r standard-basis vectors (r distinct indices): FA
// trains B [m, r] on the input columns idx, FB trains A [r, n] on the output rows idx.
// Paper: "SBoRA: Low-Rank Adaptation with Regional Weight Updates", Lai-Man Po et al.

import type { Tensor } from '../../tensor.js';
import type { Context } from '../../runtime.js';
import { PeftError, checkDim, checkWeight, checkScale } from '../../validate.js';
import { checkOptions, initial, moduleOf, trainable, trainableValues, type EncodeOptions } from '../common.js';
import type { AdapterLayer, BaseShape, HostValues, LayerDims, LayerSpec, MethodDescriptor, MethodOptions, PhaseFlops, TensorSpec } from '../types.js';
import { createIndexSet } from './indices.js';
import { sboraBackward, sboraForward, sboraMerge, type SboraArgs, type SboraVariant } from './kernels.js';
import { runSboraFa, runSboraFb } from './vectors.js';

export * from './kernels.js';
export * from './indices.js';

/** The trained factor's tensor name in adapter files: FA trains B, FB trains A. */
/** SBoRA's frozen index list, stored with the trained factor. */
const INDICES_SPEC = { name: 'indices', key: 'indices', dtype: 'u32', trainable: false, shape: (d: LayerDims) => [d.r] } as const;

function factorName(variant: SboraVariant): 'lora_B' | 'lora_A' {
  return variant === 'fa' ? 'lora_B' : 'lora_A';
}

function checkModule(
  variant: SboraVariant,
  t: Record<string, HostValues>,
  r: number,
  base: BaseShape | undefined,
  label: (name: string) => string,
  where: string,
): void {
  const fa = variant === 'fa';
  const name = factorName(variant);
  const f = t[name];
  const mod = moduleOf(label, INDICES_SPEC);
  if (f) {
    if (fa && (f.shape.length !== 2 || f.shape[1] !== r))
      throw new PeftError(`${where}: '${label(name)}' has shape [${f.shape.join(', ')}], expected [m, r] with r = ${r}`);
    if (!fa && (f.shape.length !== 2 || f.shape[0] !== r))
      throw new PeftError(`${where}: '${label(name)}' has shape [${f.shape.join(', ')}], expected [r, n] with r = ${r}`);
    if (base && fa && f.shape[0] !== base.m)
      throw new PeftError(`${where}: '${label(name)}' has m = ${f.shape[0]}, but module '${mod}' has ${base.m} out-features`);
    if (base && !fa && f.shape[1] !== base.n)
      throw new PeftError(`${where}: '${label(name)}' has n = ${f.shape[1]}, but module '${mod}' has ${base.n} in-features`);
  }
  const idx = t.indices;
  if (!idx) return;
  const sameShape = idx.shape.length === 1 && idx.shape[0] === r;
  if (!sameShape) throw new PeftError(`${where}: '${label('indices')}' has shape [${idx.shape.join(', ')}], expected [r] = [${r}]`);
  // FA picks input columns (< n), FB output rows (< m); without the base shape only distinctness
  // can be checked (the trained factor does not carry that dimension).
  const bound = base && (fa ? base.n : base.m);
  const seen = new Set<number>();
  for (const v of idx.data) {
    if (seen.has(v)) throw new PeftError(`${where}: '${label('indices')}' holds ${v} twice; indices must be distinct`);
    seen.add(v);
    if (bound !== undefined && v >= bound) throw new PeftError(`${where}: '${label('indices')}' holds ${v}, out of range [0, ${bound})`);
  }
}

function createLayer(desc: MethodDescriptor, variant: SboraVariant, ctx: Context, spec: LayerSpec): AdapterLayer {
  const where = `${desc.id}.createLayer`;
  if (!spec || typeof spec !== 'object') throw new PeftError(`${where}: expected a LayerSpec { w0, r, alpha, ... }`);
  checkOptions(where, spec.options, []);
  const [m, n] = checkWeight(where, 'w0', spec.w0, '[m, n]', ctx);
  const r = checkDim(where, 'r', spec.r);
  const fa = variant === 'fa';
  const why = desc.unsupported({ n, m, r }, {});
  if (why) throw new PeftError(`${where}: ${why}`);
  const scale = checkScale(where, 'scale (alpha / r)', spec.alpha / r);
  const prefix = spec.name ?? desc.id;
  const given = spec.from?.indices;
  if (given && !(given.data instanceof Uint32Array))
    throw new PeftError(`${where}: 'indices' must be u32 values, got ${given.data.constructor.name}`);
  const size = fa ? n : m;
  const idx = given
    ? createIndexSet(ctx, { size, values: given.data, r }, `${prefix}.indices`)
    : createIndexSet(ctx, { size, r, seed: spec.seed ?? 0 }, `${prefix}.indices`);
  const name = factorName(variant);
  const shape = fa ? [m, r] : [r, n];
  // SBoRA starts its trained factor at zero: the layer begins as W0 exactly.
  const factor = trainable(
    ctx,
    `${prefix}.${name}`,
    initial(spec, name, shape, () => new Float32Array(shape[0] * shape[1])),
    shape,
  );
  const args: SboraArgs = fa ? { variant, w0: spec.w0, b: factor.param, idx, scale } : { variant: 'fb', w0: spec.w0, a: factor.param, idx, scale };
  return {
    method: desc,
    dims: { n, m, r },
    trainables: [factor],
    async forward(enc, x, y, opts = {}) {
      checkOptions(`${desc.id}.forward`, opts, ['adapterOnly']);
      await sboraForward(ctx, { ...args, x, y }, { encoder: enc, adapterOnly: opts.adapterOnly });
    },
    async backward(enc, x, g, dx, opts = {}) {
      checkOptions(`${desc.id}.backward`, opts, ['adapterOnly']);
      const p = args.variant === 'fa' ? { ...args, x, g, dx, db: factor.grad } : { ...args, x, g, dx, da: factor.grad };
      await sboraBackward(ctx, p, { encoder: enc, adapterOnly: opts.adapterOnly });
    },
    merge(opts: EncodeOptions & { deltaOnly?: boolean } = {}) {
      checkOptions(`${desc.id}.merge`, opts, ['encoder', 'deltaOnly']);
      // Neither inPlace nor out: always a new f32 tensor, whatever W0's format.
      return sboraMerge(ctx, args, { encoder: opts.encoder, deltaOnly: opts.deltaOnly }) as Promise<Tensor>;
    },
    async tensors() {
      const out = await trainableValues(ctx, prefix, [factor]);
      out.indices = { shape: [r], data: Uint32Array.from(idx.values) };
      return out;
    },
    destroy() {
      factor.param.destroy();
      factor.grad.destroy();
      idx.destroy();
    },
  };
}

function descriptor(variant: SboraVariant): MethodDescriptor {
  const fa = variant === 'fa';
  const name = factorName(variant);
  const factorShape = (d: LayerDims) => (fa ? [d.m, d.r] : [d.r, d.n]);
  const tensors: readonly TensorSpec[] = [{ name, key: `${name}.weight`, dtype: 'f32', trainable: true, shape: factorShape }, INDICES_SPEC];
  const desc: MethodDescriptor = {
    id: `sbora-${variant}`,
    label: fa ? 'SBoRA-FA' : 'SBoRA-FB',
    aliases: [],
    family: 'sbora',
    peftType: 'SBORA',
    docs: 'docs/sbora.md',
    tensors,
    config: [],
    // One factor is trained, so rank 2r trains the 2rH values of a rank-r LoRA on an n = m = H layer.
    // One factor only: rank 2r trains the r(n + m) values of a rank-r LoRA on a square layer.
    rankFor: (r) => 2 * r,
    unsupported({ n, m, r }: LayerDims, _options: MethodOptions): string | null {
      const size = fa ? n : m;
      if (r > size) return `r = ${r} distinct indices cannot be drawn from [0, ${fa ? 'n' : 'm'}) = [0, ${size})`;
      return null;
    },
    paramCount: ({ n, m, r }) => (fa ? m * r : r * n),
    flops(T: number, { n, m, r }: LayerDims): PhaseFlops {
      const base = 2 * m * n * T;
      // FA: the gather is free, s·X[:, idx] Bᵀ is 2mrT; backward G B (2mrT) and dB (2mrT).
      // FB: X Aᵀ is 2nrT and the index_add is free; backward G[:, idx] A (2nrT) and dA (2nrT).
      const width = fa ? m : n;
      const adapterForward = 2 * width * r * T;
      const adapterBackward = 4 * width * r * T;
      return { forward: base + adapterForward, backward: base + adapterBackward, adapterForward, adapterBackward };
    },
    checkModule: (t, r, _options, base, label, where) => checkModule(variant, t, r, base, label, where),
    createLayer: (ctx, spec) => createLayer(desc, variant, ctx, spec),
    vectors: { method: `sbora-${variant}`, run: fa ? runSboraFa : runSboraFb },
  };
  return desc;
}

/** SBoRA-FA: A frozen to r rows of I_n (input columns idx), B [m, r] trained. */
export const sboraFa: MethodDescriptor = descriptor('fa');
/** SBoRA-FB: B frozen to r columns of I_m (output rows idx), A [r, n] trained. */
export const sboraFb: MethodDescriptor = descriptor('fb');
