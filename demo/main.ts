/// <reference types="vite/client" />
// The in-browser fine-tuning demo: loads the pretrained character model, fine-tunes it on Pokémon
// names with the chosen method on WebGPU, draws the loss live, samples names and offers the
// adapter files for download. The training code is examples/charlm/, the same as the Node script.
//
// URL parameters preset the form (method, base, rank, blocks, steps, batch, lr, temperature) and
// `autostart=1` starts a run at once; window.__demo reports progress (used by test/e2e). The base
// select holds the frozen h1 and h2 weights in f32, f16 or NF4 (made on the GPU from the f32
// weights, which the page keeps so that the next run can pick another format).
//
// Every form value is checked before a run and a bad one is shown beside its field; a run that
// fails anyway is reported in the status line and leaves the page ready for the next one. Only a
// missing WebGPU, a lost device or a model that does not load disable the page.

import pokemon from 'pokemon/data/en.json';
import weightsUrl from '../examples/charlm/weights/charlm.safetensors?url';
import { Context } from '../src/runtime.js';
import { encodeAdapter, type AdapterMethod } from '../src/adapters.js';
import { normaliseNames, splitWords } from '../examples/charlm/data.js';
import { METHODS, methodInfo } from '../examples/charlm/methods.js';
import { methodById } from '../src/methods/registry.js';
import { CharLM } from '../examples/charlm/model.js';
import type { BaseFormat } from '../src/base.js';
import { lossChartSvg, PALETTE } from '../examples/charlm/chart.js';
import { finetune, finetuneData, type FinetuneResult } from '../examples/charlm/session.js';
import { sampleNames } from '../examples/charlm/sample.js';
import { mountGpt } from './gpt.js';

interface RunView {
  label: string;
  method: AdapterMethod;
  base: BaseFormat;
  /** Device bytes of the frozen h1 and h2 weights during the run. */
  baseBytes: number;
  losses: [number, number][];
  validationLoss?: number;
  samples: string[];
  result?: FinetuneResult;
}

const form = {
  method: $<HTMLSelectElement>('method'),
  base: $<HTMLSelectElement>('base'),
  rank: $<HTMLSelectElement>('rank'),
  blocks: $<HTMLSelectElement>('blocks'),
  steps: $<HTMLInputElement>('steps'),
  batch: $<HTMLInputElement>('batch'),
  lr: $<HTMLInputElement>('lr'),
  temperature: $<HTMLInputElement>('temperature'),
};
type FieldId = keyof typeof form;

interface DemoState {
  /**
   * 'failed': the last run threw; the page stays usable. 'error' and 'no-webgpu' are final: the
   * page cannot train (no device, device lost, or the model did not load).
   */
  status: 'loading' | 'ready' | 'running' | 'done' | 'failed' | 'error' | 'no-webgpu';
  message: string;
  /** Completed runs and the one in progress; a failed run is taken out again. */
  runs: RunView[];
  /** The form's errors from its last check, by field id. */
  fieldErrors: Partial<Record<FieldId, string>>;
  device?: string;
  /** Validation loss of the base model without an adapter, on the base format of the last run (f32 at first). */
  baseValidationLoss?: number;
  /** The base format of the model now, and the device bytes of its frozen h1 and h2 weights. */
  baseFormat?: BaseFormat;
  baseBytes?: number;
  /**
   * Test hook (test/e2e): the next run throws this message at its first progress report, after
   * its kernels and adapters exist, so the recovery from a mid-run failure can be checked. Every
   * form value that could make the library throw is refused by the form, so no setting can.
   */
  failNextRun?: string;
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

const state: DemoState = { status: 'loading', message: '', runs: [], fieldErrors: {} };
(window as unknown as { __demo: DemoState }).__demo = state;

const settingsForm = $<HTMLFormElement>('settings');
const startBtn = $<HTMLButtonElement>('start');
const stopBtn = $<HTMLButtonElement>('stop');
const statusEl = $('status');
const statusBox = $('status-box');
const lrNote = $('lr-note');
const baseBytesEl = $('base-bytes');

/** NF4 block size of the demo: bitsandbytes' default. */
const NF4_BLOCK = 64;
const BASE_NAMES: Record<BaseFormat, string> = { f32: 'f32', f16: 'f16', nf4: `NF4/${NF4_BLOCK}` };

/** Device bytes of W0 [m, n] in `format`, packed as src/base.ts lays it out (NF4: codes and f32 absmax). */
function baseBytesOf(format: BaseFormat, shapes: CharLM['moduleShapes']): number {
  return Object.values(shapes).reduce((a, { n, m }) => {
    const size = n * m;
    if (format === 'f32') return a + 4 * size;
    if (format === 'f16') return a + 4 * Math.ceil(size / 2);
    return a + 4 * Math.ceil(size / 8) + 4 * Math.ceil(size / NF4_BLOCK);
  }, 0);
}

/** What the chosen base takes on the device, beside the select. */
function updateBaseNote(shapes: CharLM['moduleShapes'] | undefined): void {
  const format = form.base.value as BaseFormat;
  if (!shapes || !(format in BASE_NAMES)) {
    baseBytesEl.textContent = '';
    return;
  }
  const bytes = baseBytesOf(format, shapes);
  const ratio = bytes / baseBytesOf('f32', shapes);
  baseBytesEl.textContent = `${bytes.toLocaleString('en-US')} B${format === 'f32' ? '' : ` (${ratio.toFixed(2)}× f32)`}`;
  baseBytesEl.title = `h1 + h2 weights on the GPU as ${BASE_NAMES[format]}: ${bytes} bytes`;
}

// Learning rates from docs/finetuning.md: 1e-2 is the rate of its results table and LoRA's best
// of the sweep (3e-3, 1e-2, 3e-2). LoRMA₊ and LoRMA_π are best at 3e-3 and unstable at 1e-2:
// with W' = M·W0 a step in A or B moves every column of W' at once, so they take smaller steps.
const BASE_LR = 0.01;
const TUNED_LR: Partial<Record<string, number>> = { 'lorma-plus': 0.003, 'lorma-pi': 0.003 };
const tunedLr = (method: string) => TUNED_LR[method] ?? BASE_LR;

interface NumberRule {
  integer: boolean;
  min: number;
  max: number;
  /** min itself is refused (a learning rate of 0 trains nothing). */
  aboveMin?: boolean;
  /** The message for an empty field. */
  enter: string;
  /** The message for a bad value, before "; got …". */
  must: string;
}

// Messages are short enough to wrap within the field they stand under.
const NUMBER_RULES: Record<'steps' | 'batch' | 'lr' | 'temperature', NumberRule> = {
  steps: { integer: true, min: 1, max: 5000, enter: 'Enter a whole number from 1 to 5000.', must: 'Must be a whole number from 1 to 5000' },
  batch: { integer: true, min: 1, max: 1024, enter: 'Enter a whole number from 1 to 1024.', must: 'Must be a whole number from 1 to 1024' },
  lr: { integer: false, min: 0, max: 1, aboveMin: true, enter: 'Enter a learning rate, e.g. 0.01.', must: 'Must be above 0 and at most 1' },
  temperature: { integer: false, min: 0.1, max: 2, enter: 'Enter a temperature from 0.1 to 2.', must: 'Must be from 0.1 to 2' },
};

// The inputs carry the same bounds, for the browser's spinner and keyboard steps.
for (const [id, rule] of Object.entries(NUMBER_RULES) as [keyof typeof NUMBER_RULES, NumberRule][]) {
  form[id].min = String(rule.aboveMin ? 0 : rule.min);
  form[id].max = String(rule.max);
}

for (const m of METHODS) form.method.add(new Option(`${m.label}${m.method.startsWith('sbora') ? ' (rank 2r)' : ''}`, m.method));
const params = new URLSearchParams(location.search);
for (const [key, el] of Object.entries(form)) {
  const v = params.get(key);
  if (v !== null) el.value = v;
}
/** Whether the learning rate is the user's (typed, or preset by the URL) rather than the method's default. */
let lrEdited = params.has('lr');

const usesBlocks = (method: string) => methodById(method).config.some((f) => f.option === 'blocks');
const known = (method: string) => METHODS.some((m) => m.method === method);

function checkNumber(id: keyof typeof NUMBER_RULES): string | undefined {
  const el = form[id];
  const rule = NUMBER_RULES[id];
  // A number input reports text it cannot parse as '' with validity.badInput set.
  if (el.validity.badInput) return `Not a number. ${rule.enter}`;
  const raw = el.value.trim();
  if (raw === '') return rule.enter;
  const v = Number(raw);
  const ok = Number.isFinite(v) && (!rule.integer || Number.isInteger(v)) && (rule.aboveMin ? v > rule.min : v >= rule.min) && v <= rule.max;
  return ok ? undefined : `${rule.must}; got ${raw}.`;
}

function checkSelect(el: HTMLSelectElement, what: string): string | undefined {
  // A URL value that is no option leaves the select with nothing chosen.
  if (el.value !== '') return undefined;
  return `Choose ${what}: ${[...el.options].map((o) => o.text).join(', ')}.`;
}

function checkField(id: FieldId): string | undefined {
  switch (id) {
    case 'method':
      return known(form.method.value) ? undefined : (checkSelect(form.method, 'a method') ?? `Choose a method.`);
    case 'base':
      return checkSelect(form.base, 'a base format');
    case 'rank':
      return checkSelect(form.rank, 'a rank');
    case 'blocks':
      return known(form.method.value) && usesBlocks(form.method.value) ? checkSelect(form.blocks, 'a block count') : undefined;
    default:
      return checkNumber(id);
  }
}

interface Settings {
  method: AdapterMethod;
  base: BaseFormat;
  rank: number;
  blocks: number;
  steps: number;
  batch: number;
  lr: number;
  temperature: number;
}

/**
 * Every field's own check, then whether the method takes this rank and block count on the
 * model's layers (the descriptor's own rule), so that no setting reaches the library to fail
 * there.
 */
function checkForm(shapes: CharLM['moduleShapes'] | undefined): { settings?: Settings; errors: Partial<Record<FieldId, string>> } {
  const errors: Partial<Record<FieldId, string>> = {};
  for (const id of Object.keys(form) as FieldId[]) {
    const e = checkField(id);
    if (e) errors[id] = e;
  }
  if (Object.keys(errors).length > 0) return { errors };
  const method = form.method.value as AdapterMethod;
  const settings: Settings = {
    method,
    base: form.base.value as BaseFormat,
    rank: Number(form.rank.value),
    blocks: Number(form.blocks.value),
    steps: Number(form.steps.value),
    batch: Number(form.batch.value),
    lr: Number(form.lr.value),
    temperature: Number(form.temperature.value),
  };
  const desc = methodById(method);
  const options = usesBlocks(method) ? { blocks: settings.blocks } : {};
  for (const { n, m } of Object.values(shapes ?? {})) {
    const why = desc.unsupported({ n, m, r: desc.rankFor(settings.rank, { n, m }) }, options);
    if (why) {
      errors[usesBlocks(method) ? 'blocks' : 'rank'] = `${why}.`;
      return { errors };
    }
  }
  return { settings, errors };
}

function showFieldError(id: FieldId, message: string | undefined): void {
  const el = form[id];
  const box = $(`${id}-error`);
  box.textContent = message ?? '';
  box.hidden = !message;
  if (message) {
    el.setAttribute('aria-invalid', 'true');
    state.fieldErrors[id] = message;
  } else {
    el.removeAttribute('aria-invalid');
    delete state.fieldErrors[id];
  }
}

function showErrors(errors: Partial<Record<FieldId, string>>): void {
  for (const id of Object.keys(form) as FieldId[]) showFieldError(id, errors[id]);
}

function updateLrNote(): void {
  const method = form.method.value;
  lrNote.replaceChildren();
  lrNote.classList.remove('warn');
  if (!known(method)) return;
  const label = methodInfo(method).label;
  const tuned = tunedLr(method);
  const why =
    TUNED_LR[method] !== undefined
      ? `multiplicative LoRMA wants a smaller rate than LoRA's ${BASE_LR}; at ${BASE_LR} it can end worse than the base model (docs/finetuning.md)`
      : 'the rate of the results in docs/finetuning.md';
  const raw = form.lr.value.trim();
  if (raw !== '' && Number(raw) === tuned) {
    lrNote.append(`Learning rate ${tuned} is ${label}'s default: ${why}.`);
    return;
  }
  lrNote.append(`${label}'s default learning rate is ${tuned}: ${why}.`);
  if (TUNED_LR[method] !== undefined && !(Number(raw) <= tuned)) lrNote.classList.add('warn');
  const use = document.createElement('button');
  use.type = 'button';
  use.id = 'use-tuned-lr';
  use.textContent = `use ${tuned}`;
  use.onclick = () => {
    form.lr.value = String(tuned);
    lrEdited = false;
    showFieldError('lr', undefined);
    updateLrNote();
  };
  lrNote.append(use);
}

function methodChanged(): void {
  const method = form.method.value;
  if (known(method)) {
    if (!lrEdited) {
      form.lr.value = String(tunedLr(method));
      showFieldError('lr', undefined);
    }
    form.blocks.disabled = !usesBlocks(method);
    showFieldError('blocks', undefined);
  }
  showFieldError('method', checkField('method'));
  updateLrNote();
}

form.method.addEventListener('change', methodChanged);
form.lr.addEventListener('input', () => {
  lrEdited = true;
  updateLrNote();
});
for (const id of Object.keys(form) as FieldId[]) {
  // Errors appear when a field is left (not at each keystroke) and clear as soon as it is fixed.
  form[id].addEventListener('change', () => showFieldError(id, checkField(id)));
  form[id].addEventListener('input', () => {
    if (state.fieldErrors[id] && !checkField(id)) showFieldError(id, undefined);
  });
}
methodChanged();

function setStatus(s: DemoState['status'], message: string): void {
  state.status = s;
  state.message = message;
  statusEl.textContent = message;
  statusBox.classList.toggle('failed', s === 'failed');
}

/**
 * The page cannot go on (no device, device lost, model not loaded): says so in the box above the
 * form (with `details` when given) and in the status line, and disables training.
 */
function fail(message: string, status: 'error' | 'no-webgpu' = 'error', details?: Node[]): void {
  setStatus(status, message);
  const box = $('nogpu');
  if (details) box.replaceChildren(...details);
  else box.textContent = message;
  box.hidden = false;
  startBtn.textContent = 'Fine-tune';
  startBtn.disabled = true;
  stopBtn.disabled = true;
  drawChart();
}

function emptyChartText(): string {
  switch (state.status) {
    case 'running':
      return 'Compiling the kernels and running the first steps; the loss curve appears after 5 steps.';
    case 'error':
    case 'no-webgpu':
      return 'Nothing to draw: this page cannot train here (see the message above).';
    case 'loading':
      return 'The training loss of each run will be drawn here, one line per run, once the model has loaded.';
    default:
      return 'The training loss of each run will be drawn here, one line per run. Choose a method and settings above, then press Fine-tune.';
  }
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
  $('chart').innerHTML = lossChartSvg(series, {
    title: 'Training loss (10-step mean)',
    xLabel: 'step',
    yLabel: 'cross-entropy (nats)',
    height: 340,
    empty: emptyChartText(),
  });
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
  // The first step compiles the pipelines and is left out of the timing, so one step has none.
  const ms = r.steps > 1 ? r.msPerStep.toFixed(1) : '—';
  const base = `${BASE_NAMES[run.base]}, ${run.baseBytes.toLocaleString('en-US')} B`;
  const cells = [run.label, String(r.r), String(r.trainable), rank, ms, r.trainLoss.toFixed(4), r.validationLoss.toFixed(4), base];
  for (const [i, c] of cells.entries()) {
    const td = document.createElement('td');
    td.textContent = c;
    if (i === cells.length - 1) td.className = 'base';
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

function paragraph(...parts: (string | Node)[]): HTMLParagraphElement {
  const p = document.createElement('p');
  p.append(...parts);
  return p;
}

function code(text: string): HTMLElement {
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

/** What a browser user can do without WebGPU: which browsers have it, the flag, the secure context. */
const NO_WEBGPU = 'This browser has no WebGPU (navigator.gpu is missing), so the demo cannot train here.';

function noWebGpuMessage(): Node[] {
  const out: Node[] = [paragraph(NO_WEBGPU)];
  if (!window.isSecureContext) {
    out.push(
      paragraph(
        `This page is not a secure context (it was opened over plain ${location.protocol.replace(':', '')} from ${location.host || 'a file'}), and browsers hide WebGPU outside one. `,
        'Open it over https, or from localhost or 127.0.0.1 on your own machine.',
      ),
    );
  }
  const list = document.createElement('ul');
  const item = (...parts: (string | Node)[]) => {
    const li = document.createElement('li');
    li.append(...parts);
    list.append(li);
  };
  item(
    'WebGPU ships, on by default, in Chrome and Edge 113 or newer on Windows, macOS and ChromeOS (121 or newer on Android), in Safari 26 on macOS, iOS and iPadOS, and in Firefox 141 or newer on Windows.',
  );
  item(
    'Elsewhere (Chrome or Edge on Linux, older versions) switch it on: open ',
    code('chrome://flags/#enable-unsafe-webgpu'),
    ' (in Edge ',
    code('edge://flags/#enable-unsafe-webgpu'),
    '), set it to Enabled and relaunch; on Linux also enable ',
    code('chrome://flags/#enable-vulkan'),
    '. ',
    code('chrome://gpu'),
    ' then lists WebGPU as enabled.',
  );
  item('Firefox on other systems: set ', code('dom.webgpu.enabled'), ' to true in ', code('about:config'), ' (Nightly), then reload.');
  item('WebGPU needs a secure context: serve the page over https, or open it on localhost.');
  out.push(list);
  return out;
}

interface Loaded {
  model: CharLM;
  data: ReturnType<typeof finetuneData>;
  /** Validation loss of the model without an adapter, per base format (measured on first use). */
  baseLosses: Partial<Record<BaseFormat, number>>;
}

let loaded: Loaded | undefined;
let running = false;
let stop = false;
let deviceLost = false;

// The form is a real <form> so Enter starts a run; it must never submit as a page load, even
// before the model is ready.
settingsForm.addEventListener('submit', (e) => {
  e.preventDefault();
  void startRun();
});
stopBtn.onclick = () => {
  stop = true;
};
drawChart();

async function startRun(): Promise<void> {
  if (!loaded || running || deviceLost) return;
  const { model, data, baseLosses } = loaded;
  const { settings, errors } = checkForm(model.moduleShapes);
  showErrors(errors);
  if (!settings) {
    const first = (Object.keys(form) as FieldId[]).find((id) => errors[id]);
    if (first) form[first].focus();
    return;
  }
  const { method, base: baseFormat, rank, blocks, steps, batch, lr, temperature } = settings;
  const info = methodInfo(method);
  const baseTag = baseFormat === 'f32' ? '' : ` ${BASE_NAMES[baseFormat]}`;
  const label = `${info.label} r${info.rankFor(rank, model.moduleShapes.h1)}${usesBlocks(method) ? ` b${blocks}` : ''}${baseTag} (run ${state.runs.length + 1})`;
  const run: RunView = { label, method, base: baseFormat, baseBytes: baseBytesOf(baseFormat, model.moduleShapes), losses: [], samples: [] };
  state.runs.push(run);
  running = true;
  stop = false;
  startBtn.disabled = true;
  stopBtn.disabled = false;
  setStatus('running', `${label}: compiling kernels…`);
  drawChart();
  try {
    if (model.base.format !== baseFormat) {
      setStatus('running', `${label}: making the ${BASE_NAMES[baseFormat]} base on the GPU…`);
      await model.setBase({ format: baseFormat, blockSize: baseFormat === 'nf4' ? NF4_BLOCK : undefined });
    }
    state.baseFormat = model.base.format;
    state.baseBytes = run.baseBytes = model.baseBytes;
    const base = (baseLosses[baseFormat] ??= await model.evaluate(data.validation.ids, data.validation.targets));
    state.baseValidationLoss = base;
    const result = await finetune(
      model,
      data,
      {
        method,
        rank,
        scale: 2,
        blocks,
        steps,
        batch,
        lr,
        warmup: Math.round(steps / 10),
        minRatio: 0.1,
        clip: 1,
        seed: 1,
        logEvery: 5,
        temperature,
        onStage: (stage) => setStatus('running', `${label}: ${stage}…`),
      },
      (p) => {
        if (state.failNextRun !== undefined) {
          const message = state.failNextRun;
          state.failNextRun = undefined;
          throw new Error(message);
        }
        run.losses = p.losses.slice();
        const tail = p.losses.slice(-10);
        const loss = tail.reduce((a, [, l]) => a + l, 0) / tail.length;
        const timing = p.step > 1 ? `, ${p.msPerStep.toFixed(1)} ms/step` : '';
        setStatus('running', `${label}: step ${p.step}/${steps}, loss ${loss.toFixed(4)}${timing}`);
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
    setStatus(
      'done',
      `${label}: done, ${result.steps} steps; validation loss ${result.validationLoss.toFixed(4)} (base model${baseTag} ${base.toFixed(4)}).`,
    );
  } catch (e) {
    // finetune() has removed and destroyed the run's adapters, so the model is the base model
    // again; the run leaves the chart and the list, and the page takes the next run as usual.
    state.runs.splice(state.runs.indexOf(run), 1);
    if (!deviceLost) {
      setStatus('failed', `${label} failed: ${(e as Error).message}. Nothing was kept from this run; change the settings or start again.`);
      drawChart();
    }
  } finally {
    running = false;
    stopBtn.disabled = true;
    startBtn.disabled = deviceLost;
  }
}

async function main(): Promise<void> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    fail(`${NO_WEBGPU} See above for the browsers that have it.`, 'no-webgpu', noWebGpuMessage());
    return;
  }
  let ctx: Context;
  try {
    ctx = await Context.create({ gpu });
  } catch (e) {
    fail(
      `WebGPU is present but no GPU device could be opened: ${(e as Error).message}. ` +
        'The browser may block WebGPU on this GPU or driver; chrome://gpu (or edge://gpu) says why.',
      'no-webgpu',
    );
    return;
  }
  const info = ctx.adapterInfo;
  state.device = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  $('device').textContent = `Device: ${state.device}`;
  // The GPT panel (demo/gpt.ts) shares the device; its model loads only when asked.
  mountGpt(ctx, $('gpt-demo'));
  void ctx.lost.then((l) => {
    deviceLost = true;
    fail(`The GPU device was lost (${l.reason}: ${l.message}). Reload the page.`);
  });

  const bytes = new Uint8Array(await (await fetch(weightsUrl)).arrayBuffer());
  const model = CharLM.fromSafetensors(ctx, bytes);
  const names = normaliseNames(pokemon as string[]);
  const split = splitWords(names, 0.1, 1);
  const data = finetuneData(split.train, split.validation, model.config.context);
  const base = await model.evaluate(data.validation.ids, data.validation.targets);
  state.baseValidationLoss = base;
  const temperature = checkField('temperature') ? 0.8 : Number(form.temperature.value);
  addSamples('base model', await sampleNames(model, { count: 12, seed: 7, temperature }), data.trainNames);
  loaded = { model, data, baseLosses: { f32: base } };
  state.baseFormat = 'f32';
  state.baseBytes = model.baseBytes;
  form.base.addEventListener('change', () => updateBaseNote(model.moduleShapes));
  updateBaseNote(model.moduleShapes);
  setStatus(
    'ready',
    `Ready. Base model validation loss on Pokémon names: ${base.toFixed(4)} (${names.length} names, ${split.train.length} for training).`,
  );
  drawChart();
  startBtn.textContent = 'Fine-tune';
  startBtn.disabled = false;
  if (params.get('autostart') === '1') await startRun();
  else {
    // URL presets are checked at once, so a bad one shows beside its field before anyone presses Start.
    const { errors } = checkForm(model.moduleShapes);
    showErrors(errors);
  }
}

main().catch((e) => fail(`The demo failed to start: ${(e as Error).message}`));
