// LoRA as a method of the package: the descriptor every registry reads (adapter files, the
// `vectors` command, the benchmark, the examples), and the family's public functions.

import type { Tensor } from '../../tensor.js';
import type { Context } from '../../runtime.js';
import { PeftError, checkDim, checkWeight, checkRank, checkScale } from '../../validate.js';
import type { AdapterLayer, HostValues, LayerDims, LayerSpec, MethodDescriptor } from '../types.js';
import {
  moduleOf,
  SavedTensors,
  checkOptions,
  trainableValues,
  type EncodeOptions,
  layerLabel,
  layerTrainable,
  destroyTrainables,
} from '../common.js';
import { loraBackward, loraForward, loraInit, loraMerge } from './kernels.js';
import { runLora } from './vectors.js';

export * from './kernels.js';
export { runLora } from './vectors.js';
export type { EncodeOptions, ForwardOptions, BackwardOptions, MergeOptions } from '../common.js';

/** What LoRA stores per module: HF PEFT's own keys, so PEFT reads the file. */
const TENSORS = [
  { name: 'lora_A', key: 'lora_A.weight', dtype: 'f32', trainable: true, shape: (d: LayerDims) => [d.r, d.n] },
  { name: 'lora_B', key: 'lora_B.weight', dtype: 'f32', trainable: true, shape: (d: LayerDims) => [d.m, d.r] },
] as const;

function tooHighRank(d: LayerDims): string | null {
  return d.r > Math.min(d.n, d.m) ? `rank r = ${d.r} is above min(n, m) = min(${d.n}, ${d.m}) = ${Math.min(d.n, d.m)}` : null;
}

export const lora: MethodDescriptor = {
  id: 'lora',
  label: 'LoRA',
  aliases: [],
  family: 'lora',
  peftType: 'LORA',
  docs: 'docs/math.md',
  tensors: TENSORS,
  config: [],

  rankFor: (r) => r,

  unsupported(d, options) {
    const unknown = Object.keys(options ?? {});
    if (unknown.length > 0) return `LoRA takes no options (got ${unknown.join(', ')})`;
    return tooHighRank(d);
  },

  paramCount: (d) => d.r * (d.n + d.m),

  flops(T, d) {
    const base = 2 * d.m * d.n * T;
    const adapterForward = 2 * (d.n + d.m) * d.r * T;
    // Backward: dX base (2mnT) + H = G B (2mrT) + H A (2nrT) + dB (2mrT) + dA (2nrT).
    const adapterBackward = 4 * (d.n + d.m) * d.r * T;
    return { forward: base + adapterForward, backward: base + adapterBackward, adapterForward, adapterBackward };
  },

  checkModule(t, r, options, base, label, where) {
    checkOptions(where, options, []);
    const a = t.lora_A;
    const b = t.lora_B;
    if (!a || a.shape.length !== 2 || a.shape[0] !== r) {
      throw new PeftError(`${where}: '${label('lora_A')}' has shape [${a?.shape.join(', ') ?? ''}], expected [r, n] with r = ${r}`);
    }
    if (!b || b.shape.length !== 2 || b.shape[1] !== r) {
      throw new PeftError(`${where}: '${label('lora_B')}' has shape [${b?.shape.join(', ') ?? ''}], expected [m, r] with r = ${r}`);
    }
    if (base) {
      const mod = moduleOf(label, TENSORS[0]);
      if (a.shape[1] !== base.n)
        throw new PeftError(`${where}: '${label('lora_A')}' has n = ${a.shape[1]}, but module '${mod}' has ${base.n} in-features`);
      if (b.shape[0] !== base.m)
        throw new PeftError(`${where}: '${label('lora_B')}' has m = ${b.shape[0]}, but module '${mod}' has ${base.m} out-features`);
    }
  },

  createLayer(ctx: Context, spec: LayerSpec): AdapterLayer {
    const where = 'lora.createLayer';
    checkOptions(where, spec.options, []);
    const [m, n] = checkWeight(where, 'w0', spec.w0, '[m, n]', ctx);
    const r = checkDim(where, 'r', spec.r);
    checkRank(where, r, n, m);
    const scale = checkScale(where, 'alpha', spec.alpha) / r;
    const prefix = spec.name ?? '';
    const named = (t: string) => layerLabel(spec, t);
    let fresh: { a: Float32Array; b: Float32Array } | undefined;
    const init = () => (fresh ??= loraInit({ n, m, r, seed: spec.seed ?? 0 }));
    const a = layerTrainable(ctx, spec, 'lora_A', [r, n], () => init().a);
    const b = layerTrainable(ctx, spec, 'lora_B', [m, r], () => init().b);
    const trainables = [a, b];
    const p = { w0: spec.w0, a: a.param, b: b.param, scale };
    // Z = X Aᵀ from the forward, reused by the backward of the same batch.
    const saved = new SavedTensors(ctx, named('lora'));
    return {
      method: lora,
      dims: { n, m, r },
      trainables,
      async forward(enc, x, y, opts = {}) {
        checkOptions('lora.layer.forward', opts, ['adapterOnly']);
        await loraForward(ctx, { ...p, x, y, z: saved.get('z', [x.shape[0], r]) }, { encoder: enc, adapterOnly: opts.adapterOnly });
      },
      async backward(enc, x, g, dx, opts = {}) {
        checkOptions('lora.layer.backward', opts, ['adapterOnly']);
        await loraBackward(
          ctx,
          { ...p, x, g, z: saved.get('z', [x.shape[0], r]), dx, da: a.grad, db: b.grad },
          { encoder: enc, adapterOnly: opts.adapterOnly },
        );
      },
      async merge(opts: EncodeOptions & { deltaOnly?: boolean } = {}) {
        checkOptions('lora.layer.merge', opts, ['encoder', 'deltaOnly']);
        // Neither inPlace nor out: always a new f32 tensor, whatever W0's format.
        return loraMerge(ctx, p, { encoder: opts.encoder, deltaOnly: opts.deltaOnly }) as Promise<Tensor>;
      },
      tensors(): Promise<Record<string, HostValues>> {
        return trainableValues(ctx, prefix, trainables);
      },
      destroy() {
        destroyTrainables(trainables);
        saved.destroy();
      },
    };
  },

  vectors: {
    method: 'lora',
    run: runLora,
  },
};
