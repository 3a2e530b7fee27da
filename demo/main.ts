/// <reference types="vite/client" />
// The in-browser fine-tuning demo: loads the pretrained character model, fine-tunes it on Pokémon
// names with the chosen method on WebGPU, draws the loss live, samples names and offers the
// adapter files for download. The training code is examples/charlm/, the same as the Node script.
//
// URL parameters preset the form (method, rank, blocks, steps, batch, lr, temperature) and
// `autostart=1` starts a run at once; window.__demo reports progress (used by test/e2e).

import pokemon from 'pokemon/data/en.json';
import weightsUrl from '../examples/charlm/weights/charlm.safetensors?url';
import { Context } from '../src/runtime.js';
import { encodeAdapter, type AdapterMethod } from '../src/adapters.js';
import { normaliseNames, splitWords } from '../examples/charlm/data.js';
import { METHODS, methodInfo } from '../examples/charlm/methods.js';
import { CharLM } from '../examples/charlm/model.js';
import { lossChartSvg, PALETTE } from '../examples/charlm/chart.js';
import { finetune, finetuneData, type FinetuneResult } from '../examples/charlm/session.js';
import { sampleNames } from '../examples/charlm/sample.js';

interface RunView {
  label: string;
  method: AdapterMethod;
  losses: [number, number][];
  validationLoss?: number;
  samples: string[];
  result?: FinetuneResult;
}

interface DemoState {
  status: 'loading' | 'ready' | 'running' | 'done' | 'error' | 'no-webgpu';
  message: string;
  runs: RunView[];
  device?: string;
  baseValidationLoss?: number;
}

const state: DemoState = { status: 'loading', message: '', runs: [] };
(window as unknown as { __demo: DemoState }).__demo = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = {
  method: $<HTMLSelectElement>('method'),
  rank: $<HTMLSelectElement>('rank'),
  blocks: $<HTMLSelectElement>('blocks'),
  steps: $<HTMLInputElement>('steps'),
  batch: $<HTMLInputElement>('batch'),
  lr: $<HTMLInputElement>('lr'),
  temperature: $<HTMLInputElement>('temperature'),
};
const startBtn = $<HTMLButtonElement>('start');
const stopBtn = $<HTMLButtonElement>('stop');
const statusEl = $('status');

for (const m of METHODS) form.method.add(new Option(`${m.label}${m.method.startsWith('sbora') ? ' (rank 2r)' : ''}`, m.method));
const params = new URLSearchParams(location.search);
for (const [key, el] of Object.entries(form)) {
  const v = params.get(key);
  if (v !== null) el.value = v;
}

function setStatus(s: DemoState['status'], message: string): void {
  state.status = s;
  state.message = message;
  statusEl.textContent = message;
}

function fail(message: string): void {
  setStatus('error', message);
  const box = $('nogpu');
  box.textContent = message;
  box.hidden = false;
  startBtn.disabled = true;
  stopBtn.disabled = true;
}

function drawChart(): void {
  const series = state.runs.map((r, i) => ({
    name: r.label,
    color: PALETTE[i % PALETTE.length],
    points: r.losses.map(([x], k): [number, number] => {
      const w = r.losses.slice(Math.max(0, k - 9), k + 1);
      return [x, w.reduce((a, [, y]) => a + y, 0) / w.length];
    }),
  }));
  $('chart').innerHTML = lossChartSvg(series, { title: 'Training loss (10-step mean)', xLabel: 'step', yLabel: 'cross-entropy (nats)', height: 340 });
}

function download(name: string, data: Uint8Array | string, type: string): void {
  const blob = new Blob([data as BlobPart], { type });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function addRunRow(run: RunView, trainNames: Set<string>, shapes: CharLM['moduleShapes']): void {
  const r = run.result!;
  const tr = document.createElement('tr');
  const rank = Object.values(r.deltaRank).join(' / ');
  const cells = [run.label, String(r.r), String(r.trainable), rank, r.msPerStep.toFixed(1), r.trainLoss.toFixed(4), r.validationLoss.toFixed(4)];
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.append(td);
  }
  const td = document.createElement('td');
  const files = encodeAdapter(r.adapter, shapes);
  const b1 = document.createElement('button');
  b1.textContent = 'weights';
  b1.title = 'adapter_model.safetensors';
  b1.onclick = () => download('adapter_model.safetensors', files.safetensors, 'application/octet-stream');
  const b2 = document.createElement('button');
  b2.textContent = 'config';
  b2.title = 'adapter_config.json';
  b2.onclick = () => download('adapter_config.json', files.config, 'application/json');
  td.append(b1, ' ', b2);
  tr.append(td);
  $('runs').querySelector('tbody')!.append(tr);
  addSamples(run.label, run.samples, trainNames);
}

function addSamples(label: string, names: string[], trainNames: Set<string>): void {
  const li = document.createElement('li');
  li.className = 'sample-row';
  li.append(`${label}: `);
  names.forEach((n, i) => {
    const el = document.createElement(trainNames.has(n) ? 'b' : 'span');
    el.textContent = n;
    el.className = 'name';
    if (trainNames.has(n)) el.title = 'a training name';
    li.append(el, i < names.length - 1 ? ', ' : '');
  });
  $('samples').append(li);
}

async function main(): Promise<void> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    state.status = 'no-webgpu';
    fail(
      'This browser has no WebGPU (navigator.gpu is missing), so the demo cannot run here. ' +
        'Use a browser with WebGPU enabled, such as a recent Chrome or Edge, over https or localhost.',
    );
    state.status = 'no-webgpu';
    return;
  }
  let ctx: Context;
  try {
    ctx = await Context.create({ gpu });
  } catch (e) {
    fail(`WebGPU is present but no GPU device could be opened: ${(e as Error).message}`);
    state.status = 'no-webgpu';
    return;
  }
  const info = ctx.adapterInfo;
  state.device = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  $('device').textContent = `Device: ${state.device}`;
  void ctx.lost.then((l) => fail(`The GPU device was lost (${l.reason}: ${l.message}). Reload the page.`));

  const bytes = new Uint8Array(await (await fetch(weightsUrl)).arrayBuffer());
  const model = CharLM.fromSafetensors(ctx, bytes);
  const names = normaliseNames(pokemon as string[]);
  const split = splitWords(names, 0.1, 1);
  const data = finetuneData(split.train, split.validation, model.config.context);
  const base = await model.evaluate(data.validation.ids, data.validation.targets);
  state.baseValidationLoss = base;
  addSamples('base model', await sampleNames(model, { count: 12, seed: 7, temperature: Number(form.temperature.value) || 0.8 }), data.trainNames);
  setStatus('ready', `Ready. Base model validation loss on Pokémon names: ${base.toFixed(4)} (${names.length} names, ${split.train.length} for training).`);
  drawChart();

  let stop = false;
  startBtn.textContent = 'Fine-tune';
  startBtn.disabled = false;
  stopBtn.onclick = () => {
    stop = true;
  };
  startBtn.onclick = async () => {
    const method = form.method.value as AdapterMethod;
    const steps = Math.max(1, Math.floor(Number(form.steps.value)));
    const batch = Math.max(1, Math.floor(Number(form.batch.value)));
    const lr = Number(form.lr.value);
    const rank = Number(form.rank.value);
    const blocks = Number(form.blocks.value);
    const temperature = Number(form.temperature.value) || 0.8;
    const label = `${methodInfo(method).label} r${methodInfo(method).rankFor(rank)}${method === 'bora' || method === 'melora' ? ` b${blocks}` : ''} (run ${state.runs.length + 1})`;
    const run: RunView = { label, method, losses: [], samples: [] };
    state.runs.push(run);
    stop = false;
    startBtn.disabled = true;
    stopBtn.disabled = false;
    setStatus('running', `${label}: compiling kernels…`);
    try {
      const result = await finetune(
        model,
        data,
        {
          method, rank, scale: 2, blocks, steps, batch, lr, warmup: Math.round(steps / 10), minRatio: 0.1, clip: 1, seed: 1, logEvery: 5, temperature,
          onStage: (stage) => setStatus('running', `${label}: ${stage}…`),
        },
        (p) => {
          run.losses = p.losses.slice();
          const tail = p.losses.slice(-10);
          const loss = tail.reduce((a, [, l]) => a + l, 0) / tail.length;
          setStatus('running', `${label}: step ${p.step}/${steps}, loss ${loss.toFixed(4)}, ${p.msPerStep.toFixed(1)} ms/step`);
          drawChart();
        },
        () => stop,
      );
      run.result = result;
      run.losses = result.losses;
      run.validationLoss = result.validationLoss;
      run.samples = result.samples;
      drawChart();
      addRunRow(run, data.trainNames, model.moduleShapes);
      setStatus('done', `${label}: done, ${result.steps} steps; validation loss ${result.validationLoss.toFixed(4)} (base ${base.toFixed(4)}).`);
    } catch (e) {
      fail(`Fine-tuning failed: ${(e as Error).message}`);
      return;
    } finally {
      stopBtn.disabled = true;
    }
    startBtn.disabled = false;
  };
  if (params.get('autostart') === '1') startBtn.click();
}

main().catch((e) => fail(`The demo failed to start: ${(e as Error).message}`));
