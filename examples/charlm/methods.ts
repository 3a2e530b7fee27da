// Every fine-tuning method of the package on one hidden layer of the model, through the
// registry (src/methods/registry.ts): each method's descriptor makes the layer (its own
// forward/backward kernels, trainable tensors and gradients, adapter-file tensors), so this file
// knows no method by name.
//
// Budgets are matched per layer (n = m = H): each descriptor's rankFor(r) is the rank that trains
// as many values as a rank-r LoRA (SBoRA trains one factor only, so it gets rank 2r).

import { configOptions, validateAdapter, type Adapter, type AdapterMethod, type ModuleTensors } from '../../src/adapters.js';
import { METHODS as REGISTRY, methodById } from '../../src/methods/registry.js';
import type { AdapterLayer, MethodOptions } from '../../src/methods/types.js';
import type { HiddenModule } from './model.js';
import type { CharLM } from './model.js';

export interface MethodInfo {
  method: AdapterMethod;
  /** Shown in tables and charts. */
  label: string;
  /** Rank at the budget of a rank-`r` LoRA on a layer of these sizes. */
  rankFor(r: number, layer: { n: number; m: number }): number;
}

/** The registry's methods, as the examples and the demo list them. */
export const METHODS: MethodInfo[] = REGISTRY.map((d) => ({
  method: d.id,
  label: d.label,
  rankFor: (r: number, layer: { n: number; m: number }) => d.rankFor(r, layer),
}));

export function methodInfo(method: string): MethodInfo {
  const d = methodById(method);
  return { method: d.id, label: d.label, rankFor: (r: number, layer: { n: number; m: number }) => d.rankFor(r, layer) };
}

/** The options the example's settings give `method`: blocks where the method has blocks. */
export function optionsFor(method: string, settings: { blocks: number }): MethodOptions {
  return methodById(method).config.some((f) => f.option === 'blocks') ? { blocks: settings.blocks } : {};
}

export interface AdapterSpec {
  method: AdapterMethod;
  /** The method's own rank (already adjusted for budget). */
  r: number;
  alpha: number;
  /** The method's options (BoRA / MELoRA: { blocks }; blocks must divide n and m). */
  options?: MethodOptions;
  seed: number;
}

export interface MethodAdapter extends AdapterLayer {
  readonly spec: AdapterSpec;
  /** Values a file stores for this layer (σ and indices included). */
  toModuleTensors(): Promise<ModuleTensors>;
  /** ΔW = W' − W0 [m, n] of the layer, through the method's own merge kernel. */
  deltaW(): Promise<Float32Array>;
}

/** Makes the adapter of `spec` on module `mod`: fresh (seeded init) or from a file's tensors. */
export function createAdapter(model: CharLM, mod: HiddenModule, spec: AdapterSpec, from?: ModuleTensors): MethodAdapter {
  const ctx = model.ctx;
  const layer = methodById(spec.method).createLayer(ctx, {
    w0: model.baseWeight(mod),
    r: spec.r,
    alpha: spec.alpha,
    options: spec.options,
    seed: spec.seed,
    from,
    name: mod,
  });
  return Object.assign(layer, {
    spec,
    toModuleTensors: () => layer.tensors(),
    async deltaW() {
      const t = await layer.merge({ deltaOnly: true });
      try {
        return (await ctx.read(t)) as Float32Array;
      } finally {
        t.destroy();
      }
    },
  });
}

/** Trainable values of an adapter set (what the optimizer updates). */
export function countTrainable(adapters: AdapterLayer[]): number {
  return adapters.reduce((a, ad) => a + ad.trainables.reduce((s, t) => s + t.param.size, 0), 0);
}

/**
 * Installs a saved adapter (from `loadAdapter` / `decodeAdapter`) on the model's hidden layers,
 * replacing any adapters already there; returns them (destroy them, or the model, when done).
 */
export function installAdapter(model: CharLM, adapter: Adapter): MethodAdapter[] {
  validateAdapter(adapter, model.moduleShapes);
  const c = adapter.config;
  const options = configOptions(c);
  if (options.order === 'post')
    throw new Error("installAdapter: this model's LoRMA layers use pre-multiplication (order 'pre'); the file says 'post'");
  const out: MethodAdapter[] = [];
  for (const mod of Object.keys(adapter.modules) as HiddenModule[]) {
    model.adapters[mod]?.destroy();
    const ad = createAdapter(model, mod, { method: c.method, r: c.r, alpha: c.lora_alpha, options, seed: 0 }, adapter.modules[mod]);
    model.adapters[mod] = ad;
    out.push(ad);
  }
  return out;
}
