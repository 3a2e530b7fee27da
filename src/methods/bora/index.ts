// BoRA and MELoRA as methods of the package: the two descriptors every registry reads (adapter
// files, the `vectors` command, the benchmark, the examples), and the family's public functions.
// Both are one kernel family (shaders/bora.wgsl, ./kernels.ts) with variant 'bora' (a learned
// Σ = f(σ) mixes every pair of blocks) or 'melora' (the block identity: b mini-LoRAs).

import type { Context } from '../../runtime.js';
import type { Tensor } from '../../tensor.js';
import { PeftError, checkDim, checkWeight, checkRank, checkScale } from '../../validate.js';
import type { AdapterLayer, ConfigField, HostValues, LayerSpec, MethodDescriptor, MethodOptions, TensorSpec } from '../types.js';
import {
  moduleOf,
  SavedTensors,
  checkOptions,
  expectShape,
  initial,
  trainable,
  trainableValues,
  type EncodeOptions,
  layerLabel,
  destroyTrainables,
} from '../common.js';
import {
  blocksMismatch,
  boraBackward,
  boraFlops,
  boraForward,
  boraInit,
  boraMerge,
  boraParamCount,
  boraSigma,
  checkBlocks,
  checkSigmaHost,
  type BoraParams,
  type BoraSigma,
  type BoraVariant,
} from './kernels.js';
import { DEFAULT_SIGMA_TRANSFORM, SIGMA_TRANSFORMS, checkSigmaTransform, type SigmaTransform } from './sigma.js';
import { runBora } from './vectors.js';

export * from './kernels.js';
export * from './sigma.js';
export { runBora } from './vectors.js';
export type { EncodeOptions, ForwardOptions, BackwardOptions, MergeOptions } from '../common.js';

/** A and B under HF PEFT's own keys; BoRA adds σ under a plain key. */
const A_SPEC = { name: 'lora_A', key: 'lora_A.weight', dtype: 'f32', trainable: true, shape: (d) => [d.r, d.n] } as const satisfies TensorSpec;
const B_SPEC = { name: 'lora_B', key: 'lora_B.weight', dtype: 'f32', trainable: true, shape: (d) => [d.m, d.r] } as const satisfies TensorSpec;
const SIGMA_SPEC = {
  name: 'sigma',
  key: 'sigma',
  dtype: 'f32',
  trainable: true,
  shape: (d, o) => [o.blocks as number, o.blocks as number, d.r],
} as const satisfies TensorSpec;

const BLOCKS_FIELD: ConfigField = {
  key: 'blocks',
  option: 'blocks',
  check(value, where) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0)
      throw new PeftError(`${where}: 'blocks' must be a positive integer, got ${JSON.stringify(value)}`);
    return value;
  },
};

const SIGMA_TRANSFORM_FIELD: ConfigField = {
  key: 'sigma_transform',
  option: 'sigmaTransform',
  default: DEFAULT_SIGMA_TRANSFORM,
  check(value, where) {
    if (!SIGMA_TRANSFORMS.includes(value as SigmaTransform)) {
      throw new PeftError(`${where}: 'sigma_transform' must be one of ${SIGMA_TRANSFORMS.join(', ')}, got ${JSON.stringify(value)}`);
    }
    return value;
  },
};

/** The option names each variant takes. */
const OPTIONS: Record<BoraVariant, readonly string[]> = { bora: ['blocks', 'sigmaTransform'], melora: ['blocks'] };

function describe(variant: BoraVariant): MethodDescriptor {
  const id = variant;
  const known = OPTIONS[variant];

  const descriptor: MethodDescriptor = {
    id,
    label: variant === 'bora' ? 'BoRA' : 'MELoRA',
    aliases: [],
    family: 'bora',
    peftType: variant === 'bora' ? 'BORA' : 'MELORA',
    docs: 'docs/bora.md',
    tensors: variant === 'bora' ? [A_SPEC, B_SPEC, SIGMA_SPEC] : [A_SPEC, B_SPEC],
    config: variant === 'bora' ? [BLOCKS_FIELD, SIGMA_TRANSFORM_FIELD] : [BLOCKS_FIELD],

    // A rank-r layer trains LoRA's r(n + m) values (BoRA adds b²r for σ, a small share).
    rankFor: (r) => r,

    unsupported(d, options) {
      const unknown = Object.keys(options ?? {}).filter((k) => !known.includes(k));
      if (unknown.length > 0) return `${descriptor.label} takes ${known.join(', ')} (got ${unknown.join(', ')})`;
      const blocks = options?.blocks;
      if (typeof blocks !== 'number' || !Number.isInteger(blocks) || blocks < 1)
        return `${descriptor.label} needs blocks b, an integer ≥ 1 (got ${String(blocks)})`;
      if (variant === 'bora' && options.sigmaTransform !== undefined && !SIGMA_TRANSFORMS.includes(options.sigmaTransform as SigmaTransform)) {
        return `sigmaTransform must be one of ${SIGMA_TRANSFORMS.join(', ')} (got ${JSON.stringify(options.sigmaTransform)})`;
      }
      const why = blocksMismatch(blocks, d.n, d.m);
      if (why) return why;
      return d.r > Math.min(d.n, d.m) ? `rank r = ${d.r} is above min(n, m) = min(${d.n}, ${d.m}) = ${Math.min(d.n, d.m)}` : null;
    },

    paramCount: (d, options) => boraParamCount({ ...d, blocks: options.blocks as number, variant }),

    flops: (T, d, options) => boraFlops(T, { ...d, blocks: options.blocks as number, variant }),

    checkModule(t, r, options, base, label, where) {
      checkOptions(where, options, known);
      const a = t.lora_A;
      const b = t.lora_B;
      if (!a || a.shape.length !== 2 || a.shape[0] !== r) {
        throw new PeftError(`${where}: '${label('lora_A')}' has shape [${a?.shape.join(', ') ?? ''}], expected [r, n] with r = ${r}`);
      }
      if (!b || b.shape.length !== 2 || b.shape[1] !== r) {
        throw new PeftError(`${where}: '${label('lora_B')}' has shape [${b?.shape.join(', ') ?? ''}], expected [m, r] with r = ${r}`);
      }
      const mod = moduleOf(label, A_SPEC);
      if (base) {
        if (a.shape[1] !== base.n)
          throw new PeftError(`${where}: '${label('lora_A')}' has n = ${a.shape[1]}, but module '${mod}' has ${base.n} in-features`);
        if (b.shape[0] !== base.m)
          throw new PeftError(`${where}: '${label('lora_B')}' has m = ${b.shape[0]}, but module '${mod}' has ${base.m} out-features`);
      }
      const n = base?.n ?? a.shape[1];
      const m = base?.m ?? b.shape[0];
      const blocks = checkBlocks(where, options.blocks);
      if (n % blocks !== 0) throw new PeftError(`${where}: blocks = ${blocks} does not divide n = ${n} of module '${mod}'`);
      if (m % blocks !== 0) throw new PeftError(`${where}: blocks = ${blocks} does not divide m = ${m} of module '${mod}'`);
      if (variant === 'bora') expectShape(where, label('sigma'), t.sigma, [blocks, blocks, r], '[b, b, r]');
    },

    createLayer(ctx: Context, spec: LayerSpec): AdapterLayer {
      const where = `${id}.createLayer`;
      const options: MethodOptions = spec.options ?? {};
      checkOptions(where, options, known);
      const [m, n] = checkWeight(where, 'w0', spec.w0, '[m, n]', ctx);
      const r = checkDim(where, 'r', spec.r);
      checkRank(where, r, n, m);
      const scale = checkScale(where, 'alpha', spec.alpha) / r;
      const blocks = checkBlocks(where, options.blocks);
      const mismatch = blocksMismatch(blocks, n, m);
      if (mismatch) throw new PeftError(`${where}: ${mismatch}`);
      const sigmaTransform = variant === 'bora' ? checkSigmaTransform(where, options.sigmaTransform) : undefined;
      const prefix = spec.name ?? '';
      const named = (t: string) => layerLabel(spec, t);
      let fresh: ReturnType<typeof boraInit> | undefined;
      const init = () => (fresh ??= boraInit({ n, m, r, blocks, seed: spec.seed ?? 0, variant }));
      // Every starting value is checked before anything is allocated on the device.
      const aValues = initial(spec, 'lora_A', [r, n], () => init().a);
      const bValues = initial(spec, 'lora_B', [m, r], () => init().b);
      const sigmaValues = variant === 'bora' ? initial(spec, 'sigma', [blocks, blocks, r], () => init().sigma!) : undefined;
      if (sigmaValues) checkSigmaHost(where, sigmaValues, blocks, r, sigmaTransform);
      const a = trainable(ctx, named('lora_A'), aValues, [r, n]);
      const b = trainable(ctx, named('lora_B'), bValues, [m, r]);
      const trainables = [a, b];
      let p: BoraParams;
      // Σ of the current σ, made by the forward and reused by the backward of the same step.
      let stepSigma: BoraSigma | undefined;
      let sigma: (typeof trainables)[number] | undefined;
      if (sigmaValues) {
        sigma = trainable(ctx, named('sigma'), sigmaValues, [blocks, blocks, r]);
        trainables.push(sigma);
        stepSigma = { eff: ctx.tensor([blocks, blocks, r], 'f32', named('bora.sigmaEff')), mu: ctx.tensor([1], 'f32', named('bora.mu')) };
        p = { variant: 'bora', w0: spec.w0, a: a.param, b: b.param, blocks, scale, sigma: sigma.param, sigmaTransform };
      } else {
        p = { variant: 'melora', w0: spec.w0, a: a.param, b: b.param, blocks, scale };
      }
      const br = blocks * r;
      // Z and S from the forward, reused by the backward of the same batch.
      const saved = new SavedTensors(ctx, named(id));
      const kept = (x: Tensor) => ({ z: saved.get('z', [x.shape[0], br]), s: saved.get('s', [x.shape[0], br]) });
      return {
        method: descriptor,
        dims: { n, m, r },
        trainables,
        async forward(enc, x, y, opts = {}) {
          checkOptions(`${id}.layer.forward`, opts, ['adapterOnly']);
          const o = { encoder: enc, adapterOnly: opts.adapterOnly };
          if (p.variant === 'melora') {
            await boraForward(ctx, { ...p, x, y, ...kept(x) }, o);
            return;
          }
          await boraSigma(ctx, { sigma: p.sigma, sigmaTransform, out: stepSigma }, { encoder: enc });
          await boraForward(ctx, { ...p, sigmaEff: stepSigma, x, y, ...kept(x) }, o);
        },
        async backward(enc, x, g, dx, opts = {}) {
          checkOptions(`${id}.layer.backward`, opts, ['adapterOnly']);
          const o = { encoder: enc, adapterOnly: opts.adapterOnly };
          const common = { x, g, dx, da: a.grad, db: b.grad, ...kept(x) };
          if (p.variant === 'melora') await boraBackward(ctx, { ...p, ...common }, o);
          else await boraBackward(ctx, { ...p, ...common, sigmaEff: stepSigma, dsigma: sigma!.grad }, o);
        },
        merge(opts: EncodeOptions & { deltaOnly?: boolean } = {}) {
          checkOptions(`${id}.layer.merge`, opts, ['encoder', 'deltaOnly']);
          // Neither inPlace nor out: always a new f32 tensor, whatever W0's format.
          return boraMerge(ctx, p, { encoder: opts.encoder, deltaOnly: opts.deltaOnly }) as Promise<Tensor>;
        },
        tensors(): Promise<Record<string, HostValues>> {
          return trainableValues(ctx, prefix, trainables);
        },
        destroy() {
          destroyTrainables(trainables);
          stepSigma?.eff.destroy();
          stepSigma?.mu.destroy();
          saved.destroy();
        },
      };
    },

    benchOptions: (shape) => ({ blocks: shape.b }),
  };
  if (variant === 'bora') descriptor.vectors = { method: 'bora', run: runBora };
  return descriptor;
}

/** BoRA: b×b blocks of A and B mixed by a learned diagonal Σ[j, k] = f(σ[j, k]). */
export const bora: MethodDescriptor = describe('bora');

/** MELoRA: BoRA's blocks with the fixed block identity (b independent mini-LoRAs). */
export const melora: MethodDescriptor = describe('melora');

/** The registry id of each variant. */
export const BORA_METHOD: Record<BoraVariant, MethodDescriptor> = { bora, melora };
