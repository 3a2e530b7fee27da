// `npm run finetune -- --model gpt`: fine-tunes the pretrained GPT (examples/gpt/weights) on
// superhero names (npm `superheroes`, one a line) with every method of the package on the chosen
// projections of both layers, at a matched budget of trainable values, and reports validation
// loss (mean ± sd over seeds), trainable parameters, rank of ΔW per projection, ms per step,
// tokens per second, names sampled before and after, a loss chart and PEFT-layout adapters.
//
//   npx tsx examples/gpt/finetune.ts [--target-modules q_proj,k_proj,v_proj,o_proj,fc1,fc2]
//       [--methods lora,bora,...] [--seeds K] [--seed S] [--steps N] [--batch B] [--T n]
//       [--lr X (one rate for every method; default: each method's own)] [--rank R] [--blocks b]
//       [--base f32|f16|nf4] [--block-size N] [--weights FILE] [--out DIR] [--no-rank]
//
// Defaults: every method, 3 seeds, 100 steps × 8 windows of 64 characters, rank 4, blocks 8,
// s = 2, each method's learning rate from session.ts (GPT_LR). --base f16 or nf4 holds the
// projections' frozen weights in that format (QLoRA-style; made on the device). Writes
// DIR/results.json, results.md, loss.svg and DIR/adapters/<method>/ (adapter_model.safetensors +
// adapter_config.json, first seed); DIR defaults to examples/gpt/out (out/<base> when packed).

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import superheroes from 'superheroes';
import { Context } from '../../src/runtime.js';
import type { BaseFormat } from '../../src/base.js';
import { saveAdapter, writeFileAtomic, type AdapterMethod } from '../../src/adapters.js';
import { METHODS, methodById } from '../../src/methods/registry.js';
import { lossChartSvg } from '../charlm/chart.js';
import { GPT, moduleName } from './model.js';
import { DEFAULT_TARGETS, finetuneGpt, GPT_LR, parseTargets, sampleNames, targetData, vocabOf, type GptFinetuneResult } from './session.js';
import { flagIn, helpFromHeader } from '../cli.js';
import { lossSeries, mean, meanLoss, meanSd } from '../common.js';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name: string) => flagIn(argv, name);
helpFromHeader(argv, import.meta.url);
const steps = Number(flag('steps') ?? 100);
const batch = Number(flag('batch') ?? 8);
const rank = Number(flag('rank') ?? 4);
const blocks = Number(flag('blocks') ?? 8);
const seed = Number(flag('seed') ?? 1);
const seeds = Number(flag('seeds') ?? 3);
const lrFlag = flag('lr');
for (const [name, v] of Object.entries({ steps, batch, rank, blocks, seed, seeds, ...(lrFlag ? { lr: Number(lrFlag) } : {}) })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
}
const targets = parseTargets(flag('target-modules') ?? DEFAULT_TARGETS.join(','));
const methods = (flag('methods')?.split(',') ?? METHODS.map((m) => m.id)).map((m) => methodById(m.trim()).id);
const baseFormat = (flag('base') ?? 'f32') as BaseFormat;
if (!['f32', 'f16', 'nf4'].includes(baseFormat)) throw new Error(`--base must be f32, f16 or nf4, got ${baseFormat}`);
if (flag('block-size') !== undefined && baseFormat !== 'nf4') throw new Error('--block-size applies to --base nf4 only');
const blockSize = Number(flag('block-size') ?? 64);
const weightsPath = flag('weights') ?? join(here, 'weights', 'gpt.safetensors');
const outDir = flag('out') ?? (baseFormat === 'f32' ? join(here, 'out') : join(here, 'out', baseFormat));
const measureRank = !argv.includes('--no-rank');
const lrOf = (m: AdapterMethod) => (lrFlag ? Number(lrFlag) : GPT_LR[m]);

const ctx = await Context.create();
const device = ctx.adapterInfo.description || ctx.adapterInfo.device || ctx.adapterInfo.vendor || 'unknown';
const bytes = readFileSync(weightsPath);
const { model, metadata } = GPT.fromSafetensors(ctx, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
const vocab = vocabOf(metadata);
const T = Number(flag('T') ?? model.config.context);
const data = targetData(superheroes, vocab, T, 1);
const f32Bytes = model.baseBytes;
const f32BaseLoss = await model.evaluate(data.validation.ids, data.validation.targets, T);
if (baseFormat !== 'f32') await model.setBase(baseFormat, blockSize);
const baseName = baseFormat === 'nf4' ? `NF4/${blockSize}` : baseFormat;
const baseBytes = model.baseBytes;
const baseLoss = await model.evaluate(data.validation.ids, data.validation.targets, T);
const baseSamples = await sampleNames(model, vocab, { seed: 7 });
const c = model.config;
console.log(`device: ${device}`);
console.log(
  `superhero names: ${data.names.length} kept (${data.dropped.length} dropped: ${data.dropped.join(', ')}); ${data.trainNames.size} train (${data.train.length} characters), ${data.validationNames.length} validation (${data.validation.count} windows of ${T})`,
);
console.log(
  `base GPT: ${model.parameterCount} parameters (d ${c.dim}, ${c.layers} layers, ${c.heads} heads, context ${c.context}), frozen; projections ${baseName}, ${baseBytes} bytes on the device (f32 ${f32Bytes})`,
);
console.log(
  `adapters on ${targets.join(', ')} of every layer; ${steps} steps × ${batch} windows × ${T}; LoRA-equivalent rank ${rank}, blocks ${blocks}, s = 2; lr ${lrFlag ?? 'per method'}; seeds ${seed}..${seed + seeds - 1}\n`,
);
console.log(`base model: validation loss ${baseLoss.toFixed(4)}; samples: ${baseSamples.join(' | ')}\n`);

const runs = new Map<AdapterMethod, GptFinetuneResult[]>();
const started = performance.now();
for (const method of methods) {
  for (let k = 0; k < seeds; k++) {
    const label = `${methodById(method).label}${seeds > 1 ? ` s${seed + k}` : ''}`;
    const r = await finetuneGpt(
      model,
      vocab,
      data,
      {
        method,
        rank,
        scale: 2,
        blocks,
        targets,
        seed: seed + k,
        steps,
        batch,
        lr: lrOf(method),
        warmup: Math.round(steps / 10),
        minRatio: 0.1,
        clip: 1,
        logEvery: 25,
        measureRank,
      },
      (p) => {
        const tail = p.losses.slice(-25);
        const loss = tail.reduce((a, [, l]) => a + l, 0) / tail.length;
        console.log(
          `  ${label}: step ${p.step}/${steps}, loss ${loss.toFixed(4)}, ${p.msPerStep.toFixed(0)} ms/step, ${p.tokensPerSecond.toFixed(0)} tokens/s`,
        );
      },
    );
    console.log(
      `${label}: validation ${r.validationLoss.toFixed(4)}, final train ${r.trainLoss.toFixed(4)}, ${r.msPerStep.toFixed(0)} ms/step (${((performance.now() - started) / 60000).toFixed(1)} min so far)`,
    );
    if (!runs.has(method)) runs.set(method, []);
    runs.get(method)!.push(r);
    if (k === 0) await saveAdapter(join(outDir, 'adapters', method), r.adapter, model.moduleShapes);
  }
}
ctx.destroy();

// ------------------------------------------------------------------ report
// Rank of ΔW per projection: the same projection of each layer, "layer 0 / layer 1".
const rankCell = (r: GptFinetuneResult) =>
  measureRank ? targets.map((p) => `${p} ${Array.from({ length: c.layers }, (_, l) => r.deltaRank[moduleName(l, p)]).join('/')}`).join(', ') : '—';
const header =
  '| method | base | lr | r | trainable params | rank ΔW per projection (layer 0/1) | ms / step | tokens / s | mean train loss (AUC / steps) | validation loss |';
const table = [
  header,
  '| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |',
  ...(baseFormat === 'f32' ? [] : [`| base model (no adapter) | f32 | — | — | 0 | — | — | — | — | ${f32BaseLoss.toFixed(4)} |`]),
  `| base model (no adapter) | ${baseName} | — | — | 0 | — | — | — | — | ${baseLoss.toFixed(4)} |`,
  ...[...runs.values()].map(
    (rs) =>
      `| ${rs[0].label} | ${baseName} | ${lrOf(rs[0].method)} | ${rs[0].r} | ${rs[0].trainable} | ${rankCell(rs[0])} | ${mean(rs.map((r) => r.msPerStep)).toFixed(0)} | ${mean(rs.map((r) => r.tokensPerSecond)).toFixed(0)} | ${meanSd(rs.map(meanLoss))} | ${meanSd(rs.map((r) => r.validationLoss))} |`,
  ),
].join('\n');
const bold = (s: string) => (data.trainNames.has(s) ? `**${s}**` : s);
const samples = [
  `- base model: ${baseSamples.map(bold).join(' · ')}`,
  ...[...runs.values()].map((rs) => `- ${rs[0].label}: ${rs[0].samples.map(bold).join(' · ')}`),
].join('\n');

const smoothK = Math.max(5, Math.round(steps / 20));
const svg = lossChartSvg(lossSeries(runs.values(), smoothK), {
  title: `GPT on superhero names: training loss (${smoothK}-step mean${seeds > 1 ? `, ${seeds} seeds` : ''}), ${targets.join('+')}${baseFormat === 'f32' ? '' : `, ${baseName} base`}`,
  xLabel: 'step',
  yLabel: 'cross-entropy (nats / character)',
});
mkdirSync(outDir, { recursive: true });
await writeFileAtomic(join(outDir, 'loss.svg'), svg);
const date = new Date().toISOString();
const minutes = (performance.now() - started) / 60000;
await writeFileAtomic(
  join(outDir, 'results.json'),
  JSON.stringify(
    {
      date,
      device,
      minutes,
      steps,
      batch,
      T,
      rank,
      blocks,
      targets,
      seed,
      seeds,
      baseFormat,
      blockSize: baseFormat === 'nf4' ? blockSize : null,
      baseBytes,
      f32BaseBytes: f32Bytes,
      f32BaseValidationLoss: f32BaseLoss,
      baseValidationLoss: baseLoss,
      baseSamples,
      runs: [...runs.values()].flatMap((rs) => rs.map(({ adapter: _a, ...r }, k) => ({ ...r, lr: lrOf(r.method), seed: seed + k }))),
    },
    null,
    1,
  ),
);
const md = `# GPT fine-tuning results\n\n${date}, ${device}; ${minutes.toFixed(1)} minutes; projections ${baseName} (${baseBytes} bytes on the device); adapters on ${targets.join(', ')}; ${steps} steps × ${batch} windows × ${T} characters per method${seeds > 1 ? `, mean ± sd over ${seeds} seeds` : ''}.\n\n${table}\n\nSampled names (temperature 0.8, seed 7, first seed's adapter; **bold** = a training name):\n\n${samples}\n`;
await writeFileAtomic(join(outDir, 'results.md'), md);
console.log(`\n${table}\n\nSampled names (bold = in the training set):\n${samples}\n`);
console.log(`${minutes.toFixed(1)} minutes; wrote ${relative(process.cwd(), outDir)}/results.md, results.json, loss.svg and adapters/<method>/`);
