// Every fine-tuning method of the package as a LayerAdapter on one hidden layer of the model:
// the method's own forward/backward kernels, its trainable tensors and gradients, and the
// conversion to and from the adapter-file tensors (src/adapters.ts).
//
// Budgets are matched per layer (n = m = H): LoRA, BoRA, MELoRA, LoRMA₊ and LoRMA_π at rank r
// train r(n + m) values (BoRA adds b²r for σ); SBoRA trains one factor only, so it gets rank 2r
// to train the same 2rH.

import type { Context } from '../../src/runtime.js';
import type { Tensor } from '../../src/tensor.js';
import { validateAdapter, type Adapter, type AdapterMethod, type ModuleTensors } from '../../src/adapters.js';
import { kaimingUniform } from '../../src/random.js';
import { loraBackward, loraForward, loraMerge } from '../../src/lora.js';
import { boraBackward, boraForward, boraInit, boraMerge, type SigmaTransform } from '../../src/bora.js';
import { createIndexSet, type IndexSet } from '../../src/indices.js';
import { sboraFaBackward, sboraFaForward, sboraFaMerge, sboraFbBackward, sboraFbForward, sboraFbMerge } from '../../src/sbora.js';
import { lormaBackward, lormaForward, lormaInit, lormaMerge } from '../../src/lorma.js';
import type { HiddenModule, LayerAdapter, Trainable } from './model.js';
import type { CharLM } from './model.js';

export interface MethodInfo {
  method: AdapterMethod;
  /** Shown in tables and charts. */
  label: string;
  /** Rank at the budget of a rank-`r` LoRA. */
  rankFor(r: number): number;
}

export const METHODS: MethodInfo[] = [
  { method: 'lora', label: 'LoRA', rankFor: (r) => r },
  { method: 'bora', label: 'BoRA', rankFor: (r) => r },
  { method: 'melora', label: 'MELoRA', rankFor: (r) => r },
  { method: 'sbora-fa', label: 'SBoRA-FA', rankFor: (r) => 2 * r },
  { method: 'sbora-fb', label: 'SBoRA-FB', rankFor: (r) => 2 * r },
  { method: 'lorma-plus', label: 'LoRMA₊', rankFor: (r) => r },
  { method: 'lorma-pi', label: 'LoRMA_π', rankFor: (r) => r },
];

export function methodInfo(method: string): MethodInfo {
  const m = METHODS.find((x) => x.method === method);
  if (!m) throw new Error(`unknown method '${method}': expected one of ${METHODS.map((x) => x.method).join(', ')}`);
  return m;
}

export interface AdapterSpec {
  method: AdapterMethod;
  /** The method's own rank (already adjusted for budget). */
  r: number;
  alpha: number;
  /** BoRA / MELoRA blocks (must divide n and m). */
  blocks: number;
  /** BoRA's Σ = f(σ) (default exp-mav, the paper's). */
  transform?: SigmaTransform;
  seed: number;
}

/** Per-batch-size tensors a method keeps from its forward for its backward. */
class Saved {
  #map = new Map<string, Tensor>();
  constructor(private ctx: Context) {}
  get(name: string, shape: number[]): Tensor {
    const key = `${name}:${shape.join('x')}`;
    let t = this.#map.get(key);
    if (!t) {
      t = this.ctx.tensor(shape, 'f32', name);
      this.#map.set(key, t);
    }
    return t;
  }
  destroy(): void {
    for (const t of this.#map.values()) t.destroy();
    this.#map.clear();
  }
}

export interface MethodAdapter extends LayerAdapter {
  readonly spec: AdapterSpec;
  /** Values a file stores for this layer (σ and indices included). */
  toModuleTensors(): Promise<ModuleTensors>;
  /** ΔW = W' − W0 [m, n] of the layer, through the method's own merge kernel. */
  deltaW(): Promise<Float32Array>;
}

function trainable(ctx: Context, name: string, data: Float32Array, shape: number[]): Trainable {
  return { name, param: ctx.upload(data, shape, 'f32', name), grad: ctx.tensor(shape, 'f32', `d${name}`) };
}

async function host(ctx: Context, t: Trainable): Promise<{ shape: number[]; data: Float32Array }> {
  return { shape: [...t.param.shape], data: await ctx.readF32(t.param) };
}

/**
 * Makes the adapter of `spec` on module `mod`: fresh (seeded init) or from a file's tensors.
 */
export function createAdapter(model: CharLM, mod: HiddenModule, spec: AdapterSpec, from?: ModuleTensors): MethodAdapter {
  const ctx = model.ctx;
  const w0 = model.baseWeight(mod);
  const { n, m } = model.moduleShapes[mod];
  const { r, seed } = spec;
  const scale = spec.alpha / r;
  const saved = new Saved(ctx);
  const name = (t: string) => `${mod}.${t}`;
  const pick = (k: keyof ModuleTensors, fallback: Float32Array) => (from?.[k]?.data as Float32Array | undefined) ?? fallback;
  let trainables: Trainable[];
  let forward: MethodAdapter['forward'];
  let backward: MethodAdapter['backward'];
  let delta: () => Promise<Tensor>;
  let extra: Partial<ModuleTensors> = {};
  let frozen: { destroy(): void }[] = [];

  switch (spec.method) {
    case 'lora': {
      const a = trainable(ctx, name('lora_A'), pick('lora_A', kaimingUniform(r * n, n, seed)), [r, n]);
      const b = trainable(ctx, name('lora_B'), pick('lora_B', new Float32Array(m * r)), [m, r]);
      trainables = [a, b];
      const p = { w0, a: a.param, b: b.param, scale };
      forward = async (enc, x, y) => {
        await loraForward(ctx, { ...p, x, y, z: saved.get('z', [x.shape[0], r]) }, { encoder: enc });
      };
      backward = async (enc, x, g, dx) => {
        await loraBackward(ctx, { ...p, x, g, z: saved.get('z', [x.shape[0], r]), dx, da: a.grad, db: b.grad }, { encoder: enc });
      };
      delta = () => loraMerge(ctx, p, { deltaOnly: true });
      break;
    }
    case 'bora':
    case 'melora': {
      const mode = spec.method;
      const init = boraInit(n, m, r, spec.blocks, seed, mode);
      const a = trainable(ctx, name('lora_A'), pick('lora_A', init.a), [r, n]);
      const b = trainable(ctx, name('lora_B'), pick('lora_B', init.b), [m, r]);
      trainables = [a, b];
      let sigma: Trainable | undefined;
      if (mode === 'bora') {
        sigma = trainable(ctx, name('sigma'), pick('sigma', init.sigma!), [spec.blocks, spec.blocks, r]);
        trainables.push(sigma);
      }
      const p = { w0, a: a.param, b: b.param, blocks: spec.blocks, scale, mode, sigma: sigma?.param, transform: spec.transform ?? 'exp-mav' };
      const br = spec.blocks * r;
      forward = async (enc, x, y) => {
        const T = x.shape[0];
        await boraForward(ctx, { ...p, x, y, z: saved.get('z', [T, br]), s: saved.get('s', [T, br]) }, { encoder: enc });
      };
      backward = async (enc, x, g, dx) => {
        const T = x.shape[0];
        await boraBackward(
          ctx,
          { ...p, x, g, z: saved.get('z', [T, br]), s: saved.get('s', [T, br]), dx, da: a.grad, db: b.grad, dsigma: sigma?.grad },
          { encoder: enc },
        );
      };
      delta = () => boraMerge(ctx, p, { deltaOnly: true });
      break;
    }
    case 'sbora-fa':
    case 'sbora-fb': {
      const fa = spec.method === 'sbora-fa';
      const size = fa ? n : m;
      const idx: IndexSet = from?.indices
        ? createIndexSet(ctx, { size, values: from.indices.data, r }, name('indices'))
        : createIndexSet(ctx, { size, r, seed }, name('indices'));
      frozen = [idx];
      extra = { indices: { shape: [r], data: idx.values } };
      if (fa) {
        const b = trainable(ctx, name('lora_B'), pick('lora_B', new Float32Array(m * r)), [m, r]);
        trainables = [b];
        const p = { w0, b: b.param, idx, scale };
        forward = async (enc, x, y) => {
          await sboraFaForward(ctx, { ...p, x, y }, { encoder: enc });
        };
        backward = async (enc, x, g, dx) => {
          await sboraFaBackward(ctx, { ...p, x, g, dx, db: b.grad }, { encoder: enc });
        };
        delta = () => sboraFaMerge(ctx, p, { deltaOnly: true });
      } else {
        const a = trainable(ctx, name('lora_A'), pick('lora_A', new Float32Array(r * n)), [r, n]);
        trainables = [a];
        const p = { w0, a: a.param, idx, scale };
        forward = async (enc, x, y) => {
          await sboraFbForward(ctx, { ...p, x, y }, { encoder: enc });
        };
        backward = async (enc, x, g, dx) => {
          await sboraFbBackward(ctx, { ...p, x, g, dx, da: a.grad }, { encoder: enc });
        };
        delta = () => sboraFbMerge(ctx, p, { deltaOnly: true });
      }
      break;
    }
    case 'lorma-plus':
    case 'lorma-pi': {
      const inflation = spec.method === 'lorma-plus' ? ('plus' as const) : ('pi' as const);
      const d = m; // pre-multiplication, the paper's default
      const init = lormaInit({ d, r, scale, inflation, seed });
      const a = trainable(ctx, name('lora_A'), pick('lora_A', init.a), [r, d]);
      const b = trainable(ctx, name('lora_B'), pick('lora_B', init.b), [d, r]);
      trainables = [a, b];
      const p = { w0, a: a.param, b: b.param, scale, inflation, order: 'pre' as const };
      // What the forward keeps for the backward: U = X W0ᵀ for π, Z = X A'ᵀ for plus.
      const keep = (T: number) => (inflation === 'plus' ? { z: saved.get('z', [T, r]) } : { u: saved.get('u', [T, m]) });
      forward = async (enc, x, y) => {
        await lormaForward(ctx, { ...p, x, y, ...keep(x.shape[0]) }, { encoder: enc });
      };
      backward = async (enc, x, g, dx) => {
        await lormaBackward(ctx, { ...p, x, g, ...keep(x.shape[0]), dx, da: a.grad, db: b.grad }, { encoder: enc });
      };
      delta = () => lormaMerge(ctx, p, { deltaOnly: true });
      break;
    }
  }

  return {
    spec,
    trainables,
    forward,
    backward,
    async deltaW() {
      const t = await delta();
      try {
        return await ctx.readF32(t);
      } finally {
        t.destroy();
      }
    },
    async toModuleTensors() {
      const out: ModuleTensors = { ...extra };
      for (const t of trainables) {
        const key = t.name.slice(mod.length + 1) as keyof ModuleTensors;
        out[key] = await host(ctx, t);
      }
      return out;
    },
    destroy() {
      for (const t of trainables) {
        t.param.destroy();
        t.grad.destroy();
      }
      for (const f of frozen) f.destroy();
      saved.destroy();
    },
  };
}

/** Trainable values of an adapter set (what the optimizer updates). */
export function countTrainable(adapters: LayerAdapter[]): number {
  return adapters.reduce((a, ad) => a + ad.trainables.reduce((s, t) => s + t.param.size, 0), 0);
}

/**
 * Installs a saved adapter (from `loadAdapter` / `decodeAdapter`) on the model's hidden layers,
 * replacing any adapters already there; returns them (destroy them, or the model, when done).
 */
export function installAdapter(model: CharLM, adapter: Adapter): MethodAdapter[] {
  validateAdapter(adapter, model.moduleShapes);
  const c = adapter.config;
  if (c.order === 'post') throw new Error("installAdapter: this model's LoRMA layers use pre-multiplication (order 'pre'); the file says 'post'");
  const out: MethodAdapter[] = [];
  for (const mod of c.target_modules as HiddenModule[]) {
    model.adapters[mod]?.destroy();
    const spec: AdapterSpec = { method: c.method, r: c.r, alpha: c.lora_alpha, blocks: c.blocks ?? 1, transform: c.sigma_transform, seed: 0 };
    const ad = createAdapter(model, mod, spec, adapter.modules[mod]);
    model.adapters[mod] = ad;
    out.push(ad);
  }
  return out;
}
