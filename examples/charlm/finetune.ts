// `npm run finetune`: fine-tunes the pretrained character model on Pokémon names with every method
// of the package on both hidden layers, at a matched budget of trainable values, and reports
// trainable parameters, step time, train / validation loss, a loss chart and sampled names.
//
//   npx tsx examples/charlm/finetune.ts [--long] [--steps N] [--batch B] [--lr X] [--rank R]
//       [--blocks b] [--methods lora,bora,...] [--weights FILE] [--out DIR] [--seed S]
//
// The default run (300 steps of 128 windows per method) takes a few minutes on two CPU cores;
// --long runs 3000 steps. Writes DIR/results.json, DIR/results.md, DIR/loss.svg and one adapter
// folder per method (DIR/adapters/<method>/adapter_model.safetensors + adapter_config.json).

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import pokemon from 'pokemon/data/en.json' with { type: 'json' };
import { Context } from '../../src/runtime.js';
import { saveAdapter, writeFileAtomic, type AdapterMethod } from '../../src/adapters.js';
import { normaliseNames, splitWords } from './data.js';
import { METHODS, methodInfo } from './methods.js';
import { CharLM, HIDDEN_MODULES } from './model.js';
import { sampleNames } from './sample.js';
import { finetune, finetuneData, type FinetuneResult } from './session.js';
import { lossChartSvg } from './chart.js';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
function flag(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(0, 11).join('\n').replace(/^\/\/ ?/gm, ''));
  process.exit(0);
}
const long = argv.includes('--long');
const steps = Number(flag('steps') ?? (long ? 3000 : 300));
const batch = Number(flag('batch') ?? 128);
const lr = Number(flag('lr') ?? 1e-2);
const rank = Number(flag('rank') ?? 4);
const blocks = Number(flag('blocks') ?? 8);
const seed = Number(flag('seed') ?? 1);
const weightsPath = flag('weights') ?? join(here, 'weights', 'charlm.safetensors');
const outDir = flag('out') ?? join(here, 'out');
const methods = (flag('methods')?.split(',') ?? METHODS.map((m) => m.method)).map((m) => methodInfo(m).method);
for (const [name, v] of Object.entries({ steps, batch, lr, rank, blocks, seed })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
}

const ctx = await Context.create();
const device = ctx.adapterInfo.description || ctx.adapterInfo.device || ctx.adapterInfo.vendor || 'unknown';
const weights = readFileSync(weightsPath);
const model = CharLM.fromSafetensors(ctx, new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength));
const names = normaliseNames(pokemon as string[]);
const split = splitWords(names, 0.1, seed);
const data = finetuneData(split.train, split.validation, model.config.context);
console.log(`device: ${device}`);
console.log(`Pokémon names: ${names.length} after normalisation; ${split.train.length} train (${data.train.count} windows), ${split.validation.length} validation (${data.validation.count} windows)`);
console.log(`base model: ${model.parameterCount} parameters (frozen); adapters on ${HIDDEN_MODULES.join(', ')} (${model.config.hidden}×${model.config.hidden} each)`);
console.log(`settings: ${steps} steps × ${batch} windows, AdamW lr ${lr} (cosine, 10% warm-up), LoRA-equivalent rank ${rank}, blocks ${blocks}, s = 2\n`);

const baseLoss = await model.evaluate(data.validation.ids, data.validation.targets);
const baseSamples = await sampleNames(model, { count: 12, seed: 7, temperature: 0.8 });

const bar = new cliProgress.SingleBar(
  { format: '{method} [{bar}] {value}/{total} steps | loss {loss} | {ms} ms/step', hideCursor: true, clearOnComplete: false },
  cliProgress.Presets.shades_classic,
);
const results: FinetuneResult[] = [];
for (const method of methods as AdapterMethod[]) {
  const label = methodInfo(method).label.padEnd(9);
  bar.start(steps, 0, { method: label, loss: '—', ms: '—' });
  const r = await finetune(
    model,
    data,
    { method, rank, scale: 2, blocks, steps, batch, lr, warmup: Math.round(steps / 10), minRatio: 0.1, clip: 1, seed, logEvery: 10 },
    (p) => {
      const tail = p.losses.slice(-10);
      bar.update(p.step, { loss: (tail.reduce((a, [, l]) => a + l, 0) / tail.length).toFixed(3), ms: p.msPerStep.toFixed(1) });
    },
  );
  bar.stop();
  results.push(r);
  await saveAdapter(join(outDir, 'adapters', method), r.adapter, model.moduleShapes);
}
ctx.destroy();

// ------------------------------------------------------------------ report
const rows = results.map((r) => ({
  method: r.label,
  r: r.r,
  trainable: r.trainable,
  ms: r.msPerStep.toFixed(1),
  train: r.trainLoss.toFixed(4),
  validation: r.validationLoss.toFixed(4),
}));
const header = '| method | r | trainable params | ms / step | train loss | validation loss |';
const table = [
  header,
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  `| base model (no adapter) | — | 0 | — | — | ${baseLoss.toFixed(4)} |`,
  ...rows.map((x) => `| ${x.method} | ${x.r} | ${x.trainable} | ${x.ms} | ${x.train} | ${x.validation} |`),
].join('\n');
const samples = [`- base model: ${baseSamples.join(', ')}`, ...results.map((r) => `- ${r.label}: ${r.samples.map((s) => (data.trainNames.has(s) ? `**${s}**` : s)).join(', ')}`)].join('\n');

const smooth = (pts: [number, number][], k = 10): [number, number][] =>
  pts.map(([x], i) => {
    const w = pts.slice(Math.max(0, i - k + 1), i + 1);
    return [x, w.reduce((a, [, y]) => a + y, 0) / w.length];
  });
const svg = lossChartSvg(
  results.map((r) => ({ name: r.label, points: smooth(r.losses), dashed: r.method.startsWith('lorma') })),
  { title: `Fine-tuning on Pokémon names: training loss (10-step mean), ${steps} steps`, xLabel: 'step', yLabel: 'cross-entropy (nats)' },
);
mkdirSync(outDir, { recursive: true });
await writeFileAtomic(join(outDir, 'loss.svg'), svg);
const date = new Date().toISOString();
await writeFileAtomic(
  join(outDir, 'results.json'),
  JSON.stringify(
    { date, device, steps, batch, lr, rank, blocks, seed, baseValidationLoss: baseLoss, baseSamples, results: results.map(({ adapter: _a, ...r }) => r) },
    null,
    1,
  ),
);
const md = `# Fine-tuning results\n\n${date}, ${device}; ${steps} steps × ${batch} windows per method.\n\n${table}\n\nSampled names (temperature 0.8; **bold** = a training name):\n\n${samples}\n`;
await writeFileAtomic(join(outDir, 'results.md'), md);
console.log(`\n${table}\n\nSampled names (bold = in the training set):\n${samples}\n`);
console.log(`wrote ${relative(process.cwd(), outDir)}/results.md, results.json, loss.svg and adapters/<method>/`);
