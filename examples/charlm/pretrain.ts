// Pretrains the character model on the English words of `an-array-of-english-words` with the
// package's own kernels (Node, Dawn) and writes examples/charlm/weights/charlm.safetensors.
//
//   npx tsx examples/charlm/pretrain.ts [--steps N] [--batch B] [--lr X] [--out FILE]
//
// Defaults (10,000 steps of 256 windows) reproduce the committed weights: about ten minutes on
// two CPU cores on lavapipe. The run is seeded: the same flags give the same data order and
// initialisation (the GPU's float sums may still differ in the last bits between devices).

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import words from 'an-array-of-english-words' with { type: 'json' };
import { Context } from '../../src/runtime.js';
import { writeFileAtomic } from '../../src/adapters.js';
import { makeWindows, splitWords } from './data.js';
import { CharLM, DEFAULT_CONFIG } from './model.js';
import { sampleNames } from './sample.js';
import { train } from './train.js';
import { tailMean } from '../common.js';
import { flag } from '../cli.js';

const here = dirname(fileURLToPath(import.meta.url));

const steps = flag('steps', 10000);
const batch = flag('batch', 256);
const lr = flag('lr', 3e-3);
const out = flag('out', join(here, 'weights', 'charlm.safetensors'));
const seed = 1;

const ctx = await Context.create();
console.log(`device: ${ctx.adapterInfo.description || ctx.adapterInfo.device || ctx.adapterInfo.vendor}`);
const { train: trainWords, validation } = splitWords(words as string[], 0.02, seed);
const trainW = makeWindows(trainWords, DEFAULT_CONFIG.context);
const valW = makeWindows(validation, DEFAULT_CONFIG.context);
console.log(`words: ${trainWords.length} train (${trainW.count} windows), ${validation.length} validation (${valW.count} windows)`);

const model = CharLM.init(ctx, DEFAULT_CONFIG, seed);
console.log(`model: ${JSON.stringify(model.config)}, ${model.parameterCount} parameters`);
const params = model.trainAll().map((t) => ({ ...t, decay: t.name.endsWith('.weight') && t.name !== 'emb.weight' }));
const started = performance.now();
const result = await train(
  model,
  params,
  trainW,
  { steps, batch, lr, warmup: 200, minRatio: 0.05, weightDecay: 0.01, clip: 1, seed, logEvery: 250 },
  (p) => {
    const recent = tailMean(p.losses, 250);
    process.stdout.write(`step ${p.step}/${steps}  loss ${recent.toFixed(4)}  lr ${p.lr.toExponential(2)}  ${p.msPerStep.toFixed(1)} ms/step\n`);
  },
);
const minutes = (performance.now() - started) / 60000;
const trainLoss = tailMean(result.losses, 250);
const valLoss = await model.evaluate(valW.ids, valW.targets);
console.log(
  `done in ${minutes.toFixed(1)} min: train loss ${trainLoss.toFixed(4)} (mean of the last 250 steps), validation loss ${valLoss.toFixed(4)}`,
);
console.log(`samples: ${(await sampleNames(model, { count: 12, seed: 7 })).join(' ')}`);
mkdirSync(dirname(out), { recursive: true });
await writeFileAtomic(
  out,
  await model.toSafetensors({
    data: 'an-array-of-english-words@2 (98% train split, seed 1)',
    steps: String(steps),
    batch: String(batch),
    lr: String(lr),
    train_loss: trainLoss.toFixed(4),
    validation_loss: valLoss.toFixed(4),
    device: ctx.adapterInfo.description || ctx.adapterInfo.device || ctx.adapterInfo.vendor,
    date: new Date().toISOString(),
  }),
);
console.log(`wrote ${out}`);
ctx.destroy();
