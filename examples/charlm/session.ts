// One fine-tuning run of one method, shared by the Node script (finetune.ts) and the browser demo:
// adapters on both hidden layers of a frozen pretrained model, AdamW on the adapters only, then
// validation loss, sampled names and the adapter file contents.

import { adapterConfig, type Adapter, type AdapterMethod } from '../../src/adapters.js';
import { numericalRank } from '../../src/rank.js';
import { makeWindows, type Windows } from './data.js';
import { createAdapter, methodInfo, optionsFor, type AdapterSpec, type MethodAdapter } from './methods.js';
import { HIDDEN_MODULES, type CharLM } from './model.js';
import { sampleNames } from './sample.js';
import { train, type Progress, type TrainConfig } from './train.js';
import { finalTrainLoss, type FinetuneResult } from '../common.js';

export interface FinetuneData {
  train: Windows;
  validation: Windows;
  /** Normalised training names, to tell new samples from memorised ones. */
  trainNames: Set<string>;
}

export function finetuneData(trainNames: string[], validationNames: string[], context: number): FinetuneData {
  return { train: makeWindows(trainNames, context), validation: makeWindows(validationNames, context), trainNames: new Set(trainNames) };
}

export interface FinetuneSettings extends TrainConfig {
  method: AdapterMethod;
  /** LoRA-equivalent rank: each method gets the rank that trains the same number of values. */
  rank: number;
  /** s = alpha / r for every method (alpha scales with each method's own r, so s is shared). */
  scale: number;
  blocks: number;
  samples?: number;
  sampleSeed?: number;
  temperature?: number;
  /** Measure the rank of each ΔW through the method's merge kernel (default true). */
  measureRank?: boolean;
  /** Called as the run moves on after training: 'validating', 'sampling', 'merging'. */
  onStage?: (stage: string) => void;
}

export type { FinetuneResult } from '../common.js';

export async function finetune(
  model: CharLM,
  data: FinetuneData,
  s: FinetuneSettings,
  onProgress?: (p: Progress) => void | Promise<void>,
  shouldStop?: () => boolean,
): Promise<FinetuneResult> {
  const info = methodInfo(s.method);
  // Every hidden layer has the same shape, so one rank serves them all.
  const r = info.rankFor(s.rank, model.moduleShapes[HIDDEN_MODULES[0]]);
  const options = optionsFor(s.method, s);
  const spec: AdapterSpec = { method: s.method, r, alpha: s.scale * r, options, seed: s.seed ?? 1 };
  const adapters: MethodAdapter[] = [];
  try {
    for (const [i, mod] of HIDDEN_MODULES.entries()) {
      const ad = createAdapter(model, mod, { ...spec, seed: spec.seed + 101 * (i + 1) });
      adapters.push(ad);
      model.adapters[mod] = ad;
    }
    const params = adapters.flatMap((a) => a.trainables.map((t) => ({ ...t, decay: false })));
    const trainable = params.reduce((a, p) => a + p.param.size, 0);
    const result = await train(model, params, data.train, s, onProgress, shouldStop);
    result.optimizer.destroy();
    s.onStage?.('validating');
    const validationLoss = await model.evaluate(data.validation.ids, data.validation.targets);
    s.onStage?.('sampling');
    const samples = await sampleNames(model, { count: s.samples ?? 12, seed: s.sampleSeed ?? 7, temperature: s.temperature ?? 0.8 });
    const modules: Adapter['modules'] = {};
    const deltaRank: Record<string, number> = {};
    if (s.measureRank !== false) s.onStage?.('merging');
    for (const [i, mod] of HIDDEN_MODULES.entries()) {
      modules[mod] = await adapters[i].toModuleTensors();
      const { n, m } = model.moduleShapes[mod];
      if (s.measureRank !== false) deltaRank[mod] = numericalRank(await adapters[i].deltaW(), m, n, 1e-4);
    }
    const config = adapterConfig(s.method, {
      r,
      lora_alpha: spec.alpha,
      target_modules: [...HIDDEN_MODULES],
      ...options,
      base_model_name_or_path: 'peft-wgsl/charlm',
      task_type: 'CAUSAL_LM',
    });
    return {
      method: s.method,
      label: info.label,
      r,
      trainable,
      msPerStep: result.msPerStep,
      steps: result.losses.length,
      losses: result.losses,
      trainLoss: finalTrainLoss(result.losses),
      validationLoss,
      samples,
      adapter: { config, modules },
      deltaRank,
    };
  } finally {
    for (const mod of HIDDEN_MODULES) delete model.adapters[mod];
    for (const a of adapters) a.destroy();
  }
}
