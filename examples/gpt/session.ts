// Fine-tuning the pretrained GPT with one method, shared by the Node script (finetune.ts), the
// browser demo (demo/gpt.ts) and the test: the target text (superhero names, one a line), the
// adapters on the chosen projections of every layer, the training loop, and the results
// (validation loss, sampled names, ΔW ranks, PEFT-layout adapter). Browser-safe: no Node APIs.

import { adapterConfig, type Adapter, type AdapterMethod } from '../../src/adapters.js';
import { methodById } from '../../src/methods/registry.js';
import type { AdapterLayer, MethodOptions } from '../../src/methods/types.js';
import { AdamW, type TrainableParam } from '../../src/optim.js';
import { numericalRank } from '../../src/rank.js';
import { rng } from '../../src/random.js';
import type { Tensor } from '../../src/tensor.js';
import { fixedWindows, Vocab, WindowSampler } from './data.js';
import { moduleName, PROJECTIONS, type GPT, type Projection } from './model.js';
import { sampleText } from './sample.js';
import { encodeTrainingStep, finalTrainLoss, type FinetuneResult } from '../common.js';

/**
 * Per-method learning rates: the best validation loss of {3e-3, 1e-2, 3e-2} for each method (seed 1,
 * 100 steps × 8 windows, rank 4, s = 2, all six projections; docs/finetuning.md, GPT section).
 * MELoRA's mini-LoRAs and LoRMA₊ did best at 3e-2; every other method at 1e-2.
 */
export const GPT_LR: Record<AdapterMethod, number> = {
  lora: 1e-2,
  bora: 1e-2,
  melora: 3e-2,
  'sbora-fa': 1e-2,
  'sbora-fb': 1e-2,
  'lorma-plus': 3e-2,
  'lorma-pi': 1e-2,
};

export const DEFAULT_TARGETS: readonly Projection[] = PROJECTIONS;

/** Parses a PEFT-style target list ('q_proj,v_proj'); every name must be one of the model's projections. */
export function parseTargets(list: string | readonly string[]): Projection[] {
  const names = (typeof list === 'string' ? list.split(',') : [...list]).map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new Error(`target modules: none given; choose from ${PROJECTIONS.join(', ')}`);
  for (const n of names)
    if (!(PROJECTIONS as readonly string[]).includes(n)) throw new Error(`target modules: '${n}' is not one of ${PROJECTIONS.join(', ')}`);
  return PROJECTIONS.filter((p) => names.includes(p));
}

/** The vocabulary stored in the weights' metadata, in id order. */
export function vocabOf(metadata: Record<string, string>): Vocab {
  if (!metadata.vocab) throw new Error("gpt weights: metadata has no 'vocab'");
  return new Vocab(JSON.parse(metadata.vocab) as string[]);
}

export interface TargetData {
  /** Names kept (typographic apostrophe made plain; names with a character outside the vocabulary dropped). */
  names: string[];
  dropped: string[];
  trainNames: Set<string>;
  validationNames: string[];
  /** The training names, shuffled, one a line, after a leading newline. */
  train: Uint32Array;
  validation: { ids: Uint32Array; targets: Uint32Array; count: number };
  T: number;
}

/**
 * Names → a seeded 90 / 10 split by name → one text per side, a name a line. The package lists
 * names alphabetically; they are shuffled so a window's neighbours do not give away its initial.
 */
export function targetData(raw: readonly string[], vocab: Vocab, T: number, seed = 1): TargetData {
  const known = new Set(vocab.chars);
  const names: string[] = [];
  const dropped: string[] = [];
  const seen = new Set<string>();
  for (const r of raw) {
    const n = r.replace(/\u2019/g, "'").trim();
    if (!n || seen.has(n)) continue;
    seen.add(n);
    // By UTF-16 unit, as Vocab.encode reads a text.
    let ok = true;
    for (let i = 0; i < n.length && ok; i++) ok = known.has(n[i]);
    if (ok) names.push(n);
    else dropped.push(r);
  }
  const next = rng(seed);
  const order = names.slice();
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const nVal = Math.round(order.length * 0.1);
  const validationNames = order.slice(0, nVal);
  const trainNames = order.slice(nVal);
  const text = (ns: string[]) => vocab.encode(`\n${ns.join('\n')}\n`);
  return {
    names,
    dropped,
    trainNames: new Set(trainNames),
    validationNames,
    train: text(trainNames),
    validation: fixedWindows(text(validationNames), T),
    T,
  };
}

export interface GptAdapterSpec {
  method: AdapterMethod;
  /** LoRA-equivalent rank; each method's own rank is `rankFor(rank)` (SBoRA: 2r). */
  rank: number;
  /** s = α / r, shared by every method. */
  scale: number;
  blocks: number;
  targets: readonly Projection[];
  seed: number;
}

export interface InstalledAdapters {
  r: number;
  alpha: number;
  options: MethodOptions;
  modules: string[];
  layers: AdapterLayer[];
  trainable: number;
}

/** Installs fresh adapters of `spec` on the target projections of every layer (seeded per module). */
export function installAdapters(model: GPT, spec: GptAdapterSpec): InstalledAdapters {
  const desc = methodById(spec.method);
  const r = desc.rankFor(spec.rank, { n: model.config.dim, m: model.config.dim });
  const alpha = spec.scale * r;
  const options: MethodOptions = desc.config.some((f) => f.option === 'blocks') ? { blocks: spec.blocks } : {};
  const modules: string[] = [];
  const layers: AdapterLayer[] = [];
  try {
    for (let l = 0; l < model.config.layers; l++) {
      for (const p of spec.targets) {
        const mod = moduleName(l, p);
        const layer = desc.createLayer(model.ctx, {
          w0: model.baseWeight(mod),
          r,
          alpha,
          options,
          seed: spec.seed * 1000 + 17 * modules.length + 1,
          name: mod,
        });
        model.adapters[mod] = layer;
        modules.push(mod);
        layers.push(layer);
      }
    }
  } catch (e) {
    removeAdapters(model, { modules, layers });
    throw e;
  }
  const trainable = layers.reduce((a, ad) => a + ad.trainables.reduce((s, t) => s + t.param.size, 0), 0);
  return { r, alpha, options, modules, layers, trainable };
}

export function removeAdapters(model: GPT, a: { modules: string[]; layers: AdapterLayer[] }): void {
  for (const mod of a.modules) delete model.adapters[mod];
  for (const l of a.layers) l.destroy();
}

export interface GptTrainConfig {
  steps: number;
  /** Windows of T characters per step. */
  batch: number;
  lr: number;
  warmup?: number;
  minRatio?: number;
  clip?: number;
  seed?: number;
  /** Read the loss history back every this many steps (and at the end). */
  logEvery?: number;
  /**
   * Awaited after every step (the demo: wait for the device and yield to the event loop, so one
   * step is in flight at a time and the page stays responsive).
   */
  pace?: () => Promise<void>;
}

export interface GptProgress {
  step: number;
  losses: [number, number][];
  /** Mean ms per step after the first (which compiles the pipelines). */
  msPerStep: number;
  tokensPerSecond: number;
}

/** AdamW on `params` over seeded windows of the training text; the loss of every step is kept on the device. */
export async function trainGpt(
  model: GPT,
  params: TrainableParam[],
  text: Uint32Array,
  T: number,
  cfg: GptTrainConfig,
  onProgress?: (p: GptProgress) => void | Promise<void>,
  shouldStop?: () => boolean,
): Promise<{ losses: [number, number][]; msPerStep: number; tokensPerSecond: number }> {
  const { ctx } = model;
  const B = cfg.batch;
  const opt = new AdamW(ctx, params, {
    lr: cfg.lr,
    weightDecay: 0,
    maxGradNorm: cfg.clip,
    schedule: { warmup: Math.min(cfg.warmup ?? 0, cfg.steps), total: cfg.steps, decay: 'cosine', minRatio: cfg.minRatio ?? 0.1 },
  });
  const sampler = new WindowSampler(text, T, cfg.seed ?? 1);
  const b = model.batch(B, T);
  const ids = new Uint32Array(B * T);
  const targets = new Uint32Array(B * T);
  const logEvery = cfg.logEvery ?? 10;
  const history: Tensor = ctx.zeros([cfg.steps], 'f32', 'loss history');
  const losses: [number, number][] = [];
  let read = 0;
  let t0 = 0;
  const timing = (done: number) => {
    const ms = done > 1 ? (performance.now() - t0) / (done - 1) : 0;
    return { msPerStep: ms, tokensPerSecond: ms > 0 ? (B * T * 1000) / ms : 0 };
  };
  const readBack = async (upTo: number) => {
    const all = await ctx.readF32(history);
    for (; read < upTo; read++) losses.push([read + 1, all[read]]);
  };
  try {
    let step = 0;
    for (; step < cfg.steps; step++) {
      if (shouldStop?.()) break;
      sampler.fill(ids, targets);
      model.setBatch(b, ids, targets);
      await encodeTrainingStep(ctx, model, b, opt, history, step);
      if (step === 0) {
        await ctx.sync();
        t0 = performance.now();
      }
      await cfg.pace?.();
      if ((step + 1) % logEvery === 0 || step + 1 === cfg.steps) {
        await readBack(step + 1);
        await onProgress?.({ step: step + 1, losses, ...timing(step + 1) });
      }
    }
    await ctx.sync();
    const t = timing(step);
    if (read < step) await readBack(step);
    return { losses, ...t };
  } finally {
    opt.destroy();
    history.destroy();
  }
}

/** Names sampled after a newline (each sequence's last, unfinished line is dropped). */
export async function sampleNames(
  model: GPT,
  vocab: Vocab,
  opts: { count?: number; length?: number; seed?: number; temperature?: number } = {},
): Promise<string[]> {
  const texts = await sampleText(model, vocab, {
    prompt: '\n',
    count: opts.count ?? 4,
    length: opts.length ?? 48,
    seed: opts.seed ?? 7,
    temperature: opts.temperature ?? 0.8,
  });
  // A model that writes no newline (the base model, trained on long paragraphs) still shows its text, cut with '…'.
  return texts.flatMap((t) => {
    const lines = t.split('\n').slice(1);
    const done = lines.slice(0, -1).filter((s) => s.length > 0);
    return done.length > 0 ? done : [`${lines[0]}…`];
  });
}

export interface GptFinetuneSettings extends Omit<GptTrainConfig, 'seed'>, GptAdapterSpec {
  /** Measure the rank of each ΔW through the method's merge kernel (default true). */
  measureRank?: boolean;
  temperature?: number;
  onStage?: (stage: string) => void;
}

/** A run of the GPT: a FinetuneResult with its throughput in tokens per second. */
export interface GptFinetuneResult extends FinetuneResult {
  tokensPerSecond: number;
}

export async function finetuneGpt(
  model: GPT,
  vocab: Vocab,
  data: TargetData,
  s: GptFinetuneSettings,
  onProgress?: (p: GptProgress) => void | Promise<void>,
  shouldStop?: () => boolean,
): Promise<GptFinetuneResult> {
  const desc = methodById(s.method);
  const installed = installAdapters(model, s);
  try {
    const params = installed.layers.flatMap((a) => a.trainables.map((t) => ({ ...t, decay: false })));
    const run = await trainGpt(model, params, data.train, data.T, s, onProgress, shouldStop);
    s.onStage?.('validating');
    const validationLoss = await model.evaluate(data.validation.ids, data.validation.targets, data.T);
    s.onStage?.('sampling');
    const samples = await sampleNames(model, vocab, { seed: 7, temperature: s.temperature ?? 0.8 });
    if (s.measureRank !== false) s.onStage?.('merging');
    const modules: Adapter['modules'] = {};
    const deltaRank: Record<string, number> = {};
    for (const [i, mod] of installed.modules.entries()) {
      const layer = installed.layers[i];
      modules[mod] = await layer.tensors();
      if (s.measureRank !== false) {
        const t = await layer.merge({ deltaOnly: true });
        try {
          const { n, m } = model.moduleShapes[mod];
          deltaRank[mod] = numericalRank(await model.ctx.readF32(t), m, n, 1e-4);
        } finally {
          t.destroy();
        }
      }
    }
    const config = adapterConfig(s.method, {
      r: installed.r,
      lora_alpha: installed.alpha,
      target_modules: [...s.targets],
      ...installed.options,
      base_model_name_or_path: 'peft-wgsl/gpt',
      task_type: 'CAUSAL_LM',
    });
    return {
      method: s.method,
      label: desc.label,
      r: installed.r,
      trainable: installed.trainable,
      msPerStep: run.msPerStep,
      tokensPerSecond: run.tokensPerSecond,
      steps: run.losses.length,
      losses: run.losses,
      trainLoss: finalTrainLoss(run.losses),
      validationLoss,
      samples,
      adapter: { config, modules },
      deltaRank,
    };
  } finally {
    removeAdapters(model, installed);
  }
}
