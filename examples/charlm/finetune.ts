// `npm run finetune`: fine-tunes the pretrained character model on Pokémon names with every method
// of the package on both hidden layers, at a matched budget of trainable values, and reports
// trainable parameters, step time, train / validation loss, a loss chart and sampled names.
//
//   npx tsx examples/charlm/finetune.ts [--long] [--steps N] [--batch B] [--lr X] [--rank R]
//       [--blocks b] [--methods lora,bora,...] [--weights FILE] [--out DIR] [--seed S] [--seeds K]
//       [--base f32|f16|nf4] [--block-size N]
//
// The default run (300 steps of 128 windows per method) takes about two minutes on two CPU cores;
// --long runs 3000 steps; --seeds K repeats each method with seeds S..S+K-1 (mean ± sd).
// --base f16 or nf4 holds the frozen h1 and h2 weights in that format (made on the device from the
// f32 weights, which are then freed; NF4 in blocks of --block-size values, default 64).
// Writes DIR/results.json, results.md, loss.svg and one adapter folder per method
// (DIR/adapters/<method>/adapter_model.safetensors + adapter_config.json); DIR defaults to
// examples/charlm/out (examples/charlm/out/<base> for an f16 or NF4 base).

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import pokemon from 'pokemon/data/en.json' with { type: 'json' };
import { Context } from '../../src/runtime.js';
import type { BaseFormat } from '../../src/base.js';
import { saveAdapter, writeFileAtomic, type AdapterMethod } from '../../src/adapters.js';
import { normaliseNames, splitWords } from './data.js';
import { METHODS, methodInfo } from './methods.js';
import { CharLM, HIDDEN_MODULES } from './model.js';
import { sampleNames } from './sample.js';
import { finetune, finetuneData, type FinetuneResult } from './session.js';
import { lossChartSvg } from './chart.js';
import { flagIn, helpFromHeader } from '../cli.js';
import { lossSeries, mean, meanLoss, meanSd } from '../common.js';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name: string) => flagIn(argv, name);
helpFromHeader(argv, import.meta.url);
const long = argv.includes('--long');
const steps = Number(flag('steps') ?? (long ? 3000 : 300));
const batch = Number(flag('batch') ?? 128);
const lr = Number(flag('lr') ?? 1e-2);
const rank = Number(flag('rank') ?? 4);
const blocks = Number(flag('blocks') ?? 8);
const seed = Number(flag('seed') ?? 1);
const seeds = Number(flag('seeds') ?? 1);
const weightsPath = flag('weights') ?? join(here, 'weights', 'charlm.safetensors');
const baseFormat = (flag('base') ?? 'f32') as BaseFormat;
if (!['f32', 'f16', 'nf4'].includes(baseFormat)) throw new Error(`--base must be f32, f16 or nf4, got ${baseFormat}`);
if (flag('block-size') !== undefined && baseFormat !== 'nf4') throw new Error('--block-size applies to --base nf4 only');
const blockSize = Number(flag('block-size') ?? 64);
if (!Number.isInteger(blockSize) || blockSize < 32 || blockSize > 4096 || (blockSize & (blockSize - 1)) !== 0)
  throw new Error(`--block-size must be a power of two from 32 to 4096, got ${flag('block-size')}`);
const outDir = flag('out') ?? (baseFormat === 'f32' ? join(here, 'out') : join(here, 'out', baseFormat));
const methods = (flag('methods')?.split(',') ?? METHODS.map((m) => m.method)).map((m) => methodInfo(m).method);
for (const [name, v] of Object.entries({ steps, batch, lr, rank, blocks, seed, seeds })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
}

const ctx = await Context.create();
const device = ctx.adapterInfo.description || ctx.adapterInfo.device || ctx.adapterInfo.vendor || 'unknown';
const weights = readFileSync(weightsPath);
const model = CharLM.fromSafetensors(ctx, new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength));
const names = normaliseNames(pokemon as string[]);
const split = splitWords(names, 0.1, seed);
const data = finetuneData(split.train, split.validation, model.config.context);
const f32Bytes = model.baseBytes;
const f32BaseLoss = await model.evaluate(data.validation.ids, data.validation.targets);
if (baseFormat !== 'f32') await model.setBase({ format: baseFormat, blockSize: baseFormat === 'nf4' ? blockSize : undefined, dropF32: true });
const baseBytes = model.baseBytes;
const baseName = baseFormat === 'nf4' ? `NF4/${blockSize}` : baseFormat;
console.log(`device: ${device}`);
console.log(
  `Pokémon names: ${names.length} after normalisation; ${split.train.length} train (${data.train.count} windows), ${split.validation.length} validation (${data.validation.count} windows)`,
);
console.log(
  `base model: ${model.parameterCount} parameters (frozen); adapters on ${HIDDEN_MODULES.join(', ')} (${model.config.hidden}×${model.config.hidden} each)`,
);
console.log(`frozen base h1 + h2: ${baseName}, ${baseBytes} bytes on the device (f32: ${f32Bytes} bytes, ${(baseBytes / f32Bytes).toFixed(3)}×)`);
console.log(
  `settings: ${steps} steps × ${batch} windows, AdamW lr ${lr} (cosine, 10% warm-up), LoRA-equivalent rank ${rank}, blocks ${blocks}, s = 2\n`,
);

const baseLoss = await model.evaluate(data.validation.ids, data.validation.targets);
const baseSamples = await sampleNames(model, { count: 12, seed: 7, temperature: 0.8 });

const bar = new cliProgress.SingleBar(
  { format: '{method} [{bar}] {value}/{total} steps | loss {loss} | {ms} ms/step', hideCursor: true, clearOnComplete: false },
  cliProgress.Presets.shades_classic,
);
// One list of runs per method (one run per seed); the adapter of the first seed is saved.
const runs = new Map<AdapterMethod, FinetuneResult[]>();
for (const method of methods as AdapterMethod[]) {
  for (let k = 0; k < seeds; k++) {
    const label = `${methodInfo(method).label}${seeds > 1 ? ` s${seed + k}` : ''}`.padEnd(12);
    bar.start(steps, 0, { method: label, loss: '—', ms: '—' });
    const r = await finetune(
      model,
      data,
      { method, rank, scale: 2, blocks, steps, batch, lr, warmup: Math.round(steps / 10), minRatio: 0.1, clip: 1, seed: seed + k, logEvery: 10 },
      (p) => {
        const tail = p.losses.slice(-10);
        bar.update(p.step, { loss: (tail.reduce((a, [, l]) => a + l, 0) / tail.length).toFixed(3), ms: p.msPerStep.toFixed(1) });
      },
    );
    bar.stop();
    // cli-progress draws nothing without a terminal (CI logs): say where the run is instead.
    if (!process.stdout.isTTY)
      console.log(
        `${label.trim()}: ${r.steps} steps, final train loss ${r.trainLoss.toFixed(4)}, validation ${r.validationLoss.toFixed(4)}, ${r.msPerStep.toFixed(1)} ms/step`,
      );
    if (!runs.has(method)) runs.set(method, []);
    runs.get(method)!.push(r);
    if (k === 0) await saveAdapter(join(outDir, 'adapters', method), r.adapter, model.moduleShapes);
  }
}
ctx.destroy();

// ------------------------------------------------------------------ report
const rows = [...runs.values()].map((rs) => ({
  method: rs[0].label,
  r: rs[0].r,
  trainable: rs[0].trainable,
  rank: HIDDEN_MODULES.map((m) => rs[0].deltaRank[m]).join(' / '),
  ms: mean(rs.map((r) => r.msPerStep)).toFixed(1),
  auc: meanSd(rs.map(meanLoss)),
  train: meanSd(rs.map((r) => r.trainLoss)),
  validation: meanSd(rs.map((r) => r.validationLoss)),
}));
const header =
  '| method | base W0 (h1 + h2) | base bytes | r | trainable params | rank ΔW (h1 / h2) | ms / step | mean train loss (AUC / steps) | final train loss | validation loss |';
const baseCells = `${baseName} | ${baseBytes}`;
const table = [
  header,
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...(baseFormat === 'f32' ? [] : [`| base model (no adapter) | f32 | ${f32Bytes} | — | 0 | — | — | — | — | ${f32BaseLoss.toFixed(4)} |`]),
  `| base model (no adapter) | ${baseCells} | — | 0 | — | — | — | — | ${baseLoss.toFixed(4)} |`,
  ...rows.map((x) => `| ${x.method} | ${baseCells} | ${x.r} | ${x.trainable} | ${x.rank} | ${x.ms} | ${x.auc} | ${x.train} | ${x.validation} |`),
].join('\n');
const results = [...runs.values()].map((rs) => rs[0]);
const samples = [
  `- base model: ${baseSamples.join(', ')}`,
  ...results.map((r) => `- ${r.label}: ${r.samples.map((s) => (data.trainNames.has(s) ? `**${s}**` : s)).join(', ')}`),
].join('\n');

const smoothK = Math.max(10, Math.round(steps / 30));
const svg = lossChartSvg(lossSeries(runs.values(), smoothK), {
  title: `Fine-tuning on Pokémon names: training loss (${smoothK}-step mean${seeds > 1 ? `, ${seeds} seeds` : ''}), ${steps} steps${baseFormat === 'f32' ? '' : `, ${baseName} base`}`,
  xLabel: 'step',
  yLabel: 'cross-entropy (nats)',
});
mkdirSync(outDir, { recursive: true });
await writeFileAtomic(join(outDir, 'loss.svg'), svg);
const date = new Date().toISOString();
await writeFileAtomic(
  join(outDir, 'results.json'),
  JSON.stringify(
    {
      date,
      device,
      steps,
      batch,
      lr,
      rank,
      blocks,
      seed,
      seeds,
      baseFormat,
      blockSize: baseFormat === 'nf4' ? blockSize : null,
      baseBytes,
      f32BaseBytes: f32Bytes,
      f32BaseValidationLoss: f32BaseLoss,
      baseValidationLoss: baseLoss,
      baseSamples,
      runs: [...runs.values()].flatMap((rs) => rs.map(({ adapter: _a, ...r }, k) => ({ ...r, seed: seed + k }))),
    },
    null,
    1,
  ),
);
const md = `# Fine-tuning results\n\n${date}, ${device}; frozen base ${baseName} (h1 + h2: ${baseBytes} bytes on the device); ${steps} steps × ${batch} windows per method${seeds > 1 ? `, mean ± sd over ${seeds} seeds` : ''}.\n\n${table}\n\nSampled names (temperature 0.8; **bold** = a training name):\n\n${samples}\n`;
await writeFileAtomic(join(outDir, 'results.md'), md);
console.log(`\n${table}\n\nSampled names (bold = in the training set):\n${samples}\n`);
console.log(`wrote ${relative(process.cwd(), outDir)}/results.md, results.json, loss.svg and adapters/<method>/`);
