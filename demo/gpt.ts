/// <reference types="vite/client" />
// The GPT half of the demo: loads the pretrained GPT (examples/gpt/weights) on demand, fine-tunes
// it on superhero names with the chosen method on the chosen projections, draws the loss and the
// sampled names as it trains, and offers the adapter for download. The training code is
// examples/gpt/session.ts, the same as `npm run finetune -- --model gpt`.
//
// Responsiveness: the loop waits for the device after every step and yields to the event loop
// (session.ts `pace`), so one step is in flight at a time and input, drawing and Stop are served
// between steps. URL parameters: gpt=1 loads the model at once; gptautostart=1 also starts a run
// with gptmethod, gpttargets (q_proj,v_proj), gptsteps, gptbatch, gptlr. window.__gpt reports
// progress (test/e2e).

import superheroes from 'superheroes';
import gptWeightsUrl from '../examples/gpt/weights/gpt.safetensors?url';
import type { Context } from '../src/runtime.js';
import { encodeAdapter, type AdapterMethod } from '../src/adapters.js';
import { METHODS, methodById } from '../src/methods/registry.js';
import { lossChartSvg, PALETTE } from '../examples/charlm/chart.js';
import { GPT, PROJECTIONS, type Projection } from '../examples/gpt/model.js';
import type { Vocab } from '../examples/gpt/data.js';
import { finetuneGpt, GPT_LR, sampleNames, targetData, vocabOf, type GptFinetuneResult, type TargetData } from '../examples/gpt/session.js';

interface GptRun {
  label: string;
  method: AdapterMethod;
  losses: [number, number][];
  tokensPerSecond: number;
  validationLoss?: number;
  samples: string[];
  result?: GptFinetuneResult;
}

interface GptState {
  status: 'idle' | 'loading' | 'ready' | 'running' | 'done' | 'failed' | 'error';
  message: string;
  baseValidationLoss?: number;
  runs: GptRun[];
}

const state: GptState = { status: 'idle', message: '', runs: [] };
(window as unknown as { __gpt: GptState }).__gpt = state;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (string | Node)[]
): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

function field(label: string, input: HTMLElement, title?: string): HTMLDivElement {
  const l = el('label', { htmlFor: input.id, textContent: label });
  if (title) l.title = title;
  return el('div', { className: 'field' }, l, input);
}

function download(name: string, data: Uint8Array | string, type: string): void {
  const a = el('a', { href: URL.createObjectURL(new Blob([data as BlobPart], { type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** The page's field labels are blocks; a checkbox and its name sit on one line. */
function inline<T extends HTMLElement>(e: T): T {
  e.style.display = 'inline-block';
  e.style.marginRight = '0.8em';
  e.style.whiteSpace = 'nowrap';
  return e;
}

/** Builds the GPT panel in `root`; the model loads when asked (button, or `gpt=1` in the URL). */
export function mountGpt(ctx: Context, root: HTMLElement): void {
  const params = new URLSearchParams(location.search);
  const method = el('select', { id: 'gpt-method' });
  for (const m of METHODS) method.add(new Option(`${m.label}${m.id.startsWith('sbora') ? ' (rank 2r)' : ''}`, m.id));
  const rank = el('select', { id: 'gpt-rank' });
  for (const r of [1, 2, 4, 8]) rank.add(new Option(String(r), String(r), r === 4, r === 4));
  const steps = el('input', { id: 'gpt-steps', type: 'number', value: params.get('gptsteps') ?? '150', min: '1', max: '5000' });
  const batch = el('input', { id: 'gpt-batch', type: 'number', value: params.get('gptbatch') ?? '8', min: '1', max: '256' });
  const lr = el('input', { id: 'gpt-lr', type: 'number', step: 'any', value: String(GPT_LR.lora) });
  let lrEdited = params.has('gptlr');
  if (params.get('gptmethod')) method.value = params.get('gptmethod')!;
  const setLr = () => {
    if (!lrEdited && method.value in GPT_LR) lr.value = String(GPT_LR[method.value as AdapterMethod]);
  };
  setLr();
  if (params.get('gptlr')) lr.value = params.get('gptlr')!;
  method.addEventListener('change', setLr);
  lr.addEventListener('input', () => (lrEdited = true));
  const wanted = new Set((params.get('gpttargets') ?? PROJECTIONS.join(',')).split(','));
  const boxes = PROJECTIONS.map((p) => el('input', { type: 'checkbox', id: `gpt-target-${p}`, value: p, checked: wanted.has(p) }));
  const targetsField = el(
    'fieldset',
    { className: 'targets' },
    el('legend', { textContent: 'Target modules (every layer)' }),
    ...PROJECTIONS.flatMap((p, i) => [inline(el('label', { htmlFor: boxes[i].id }, boxes[i], ` ${p}`)), ' ']),
  );
  targetsField.style.cssText = 'font-size: 0.85rem; max-width: 560px';
  const load = el('button', { id: 'gpt-load', type: 'button', textContent: 'Load the GPT' });
  const start = el('button', { id: 'gpt-start', type: 'button', textContent: 'Fine-tune the GPT', disabled: true });
  const stop = el('button', { id: 'gpt-stop', type: 'button', textContent: 'Stop', disabled: true });
  const status = el('span', { id: 'gpt-status', textContent: 'Not loaded: press "Load the GPT" (436 kB of weights).' });
  const chart = el('section', { className: 'chart', id: 'gpt-chart' });
  const tbody = el('tbody');
  const table = el(
    'table',
    { id: 'gpt-runs' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        ...['method', 'r', 'targets', 'trainable', 'rank ΔW (max)', 'ms/step', 'tokens/s', 'train loss', 'validation loss', 'adapter'].map((h) =>
          el('th', { textContent: h }),
        ),
      ),
    ),
    tbody,
  );
  const samples = el('ul', { id: 'gpt-samples' });
  root.append(
    el('h2', { textContent: 'A small GPT (108k parameters) on superhero names' }),
    el(
      'p',
      {},
      'A character-level transformer (d = 64, 2 layers, 4 heads, context 64) pretrained on the Brown Corpus, frozen; ',
      'adapters on the chosen attention and MLP projections of both layers are fine-tuned on superhero names (npm ',
      el('code', { textContent: 'superheroes' }),
      '). One step is submitted at a time, so the page stays responsive.',
    ),
    el(
      'form',
      { className: 'controls', id: 'gpt-settings', onsubmit: (e: Event) => e.preventDefault() },
      el(
        'div',
        { className: 'fields' },
        field('Method', method),
        field('Rank r', rank, 'LoRA-equivalent rank: SBoRA gets 2r; BoRA and MELoRA use 8 blocks'),
        field('Steps', steps),
        field('Batch (windows of 64)', batch),
        field('Learning rate', lr),
        targetsField,
      ),
      el('div', { className: 'actions' }, load, start, stop),
    ),
    el('section', { className: 'status', ariaLive: 'polite' }, status),
    chart,
    el(
      'section',
      { className: 'results' },
      el('h3', { textContent: 'GPT runs' }),
      table,
      el('h3', { textContent: 'Sampled superhero names' }),
      samples,
    ),
  );

  const setStatus = (s: GptState['status'], message: string) => {
    state.status = s;
    state.message = message;
    status.textContent = message;
  };
  const draw = () => {
    chart.innerHTML = lossChartSvg(
      state.runs.map((r, i) => ({
        name: r.label,
        color: PALETTE[i % PALETTE.length],
        points: r.losses.map(([x], k): [number, number] => {
          const w = r.losses.slice(Math.max(0, k - 9), k + 1);
          return [x, w.reduce((a, [, y]) => a + y, 0) / w.length];
        }),
      })),
      {
        title: 'GPT training loss (10-step mean)',
        xLabel: 'step',
        yLabel: 'cross-entropy (nats)',
        height: 300,
        empty: 'Each GPT run draws its training loss here.',
      },
    );
  };
  const sampleRow = (label: string, names: string[], live = false): HTMLLIElement => {
    const li = el('li', { className: live ? 'sample-row live' : 'sample-row' }, `${label}: `);
    names.forEach((n, i) => li.append(el('span', { className: 'name', textContent: n }), i < names.length - 1 ? ' · ' : ''));
    return li;
  };
  draw();

  let model: GPT | undefined;
  let vocab: Vocab | undefined;
  let data: TargetData | undefined;
  let running = false;
  let stopping = false;
  stop.onclick = () => (stopping = true);

  async function loadModel(): Promise<void> {
    if (model || state.status === 'loading') return;
    load.disabled = true;
    setStatus('loading', 'Loading the GPT…');
    try {
      const bytes = new Uint8Array(await (await fetch(gptWeightsUrl)).arrayBuffer());
      const loaded = GPT.fromSafetensors(ctx, bytes);
      vocab = vocabOf(loaded.metadata);
      data = targetData(superheroes, vocab, loaded.model.config.context, 1);
      const base = await loaded.model.evaluate(data.validation.ids, data.validation.targets, data.T);
      state.baseValidationLoss = base;
      samples.append(sampleRow('base model', await sampleNames(loaded.model, vocab, { count: 2, length: 40 })));
      model = loaded.model;
      load.textContent = 'GPT loaded';
      start.disabled = false;
      setStatus('ready', `GPT ready. Base validation loss on superhero names: ${base.toFixed(4)} (${data.trainNames.size} training names).`);
    } catch (e) {
      load.disabled = false;
      setStatus('error', `The GPT did not load: ${(e as Error).message}`);
    }
  }

  async function run(): Promise<void> {
    if (!model || !vocab || !data || running) return;
    const targets = PROJECTIONS.filter((_, i) => boxes[i].checked) as Projection[];
    const s = { steps: Number(steps.value), batch: Number(batch.value), lr: Number(lr.value), rank: Number(rank.value) };
    const bad = Object.entries(s).find(([k, v]) => !Number.isFinite(v) || v <= 0 || (k !== 'lr' && !Number.isInteger(v)));
    if (targets.length === 0 || bad || s.lr > 1 || s.steps > 5000 || s.batch > 256) {
      setStatus(
        'failed',
        targets.length === 0 ? 'Choose at least one target module.' : `Check the settings: ${bad ? bad[0] : 'a value'} is out of range.`,
      );
      return;
    }
    const m = method.value as AdapterMethod;
    const desc = methodById(m);
    const label = `${desc.label} r${desc.rankFor(s.rank, { n: 64, m: 64 })} ${targets.map((t) => t.replace('_proj', '')).join('')} (run ${state.runs.length + 1})`;
    const view: GptRun = { label, method: m, losses: [], tokensPerSecond: 0, samples: [] };
    state.runs.push(view);
    running = true;
    stopping = false;
    start.disabled = true;
    stop.disabled = false;
    setStatus('running', `${label}: compiling kernels…`);
    let live = sampleRow(`${label}, training`, [], true);
    samples.append(live);
    const showSamples = (row: HTMLLIElement) => {
      live.replaceWith(row);
      live = row;
    };
    try {
      const result = await finetuneGpt(
        model,
        vocab,
        data,
        {
          method: m,
          rank: s.rank,
          scale: 2,
          blocks: 8,
          targets,
          seed: 1,
          steps: s.steps,
          batch: s.batch,
          lr: s.lr,
          warmup: Math.round(s.steps / 10),
          minRatio: 0.1,
          clip: 1,
          logEvery: 5,
          onStage: (stage) => setStatus('running', `${label}: ${stage}…`),
          pace: async () => {
            await ctx.sync();
            await new Promise((ok) => setTimeout(ok, 0));
          },
        },
        async (p) => {
          view.losses = p.losses.slice();
          view.tokensPerSecond = p.tokensPerSecond;
          const tail = p.losses.slice(-10);
          const loss = tail.reduce((a, [, l]) => a + l, 0) / tail.length;
          setStatus('running', `${label}: step ${p.step}/${s.steps}, loss ${loss.toFixed(4)}, ${p.tokensPerSecond.toFixed(0)} tokens/s`);
          draw();
          // The samples follow the training: a short draw every 50 steps.
          if (p.step % 50 === 0 && p.step < s.steps) {
            const names = await sampleNames(model!, vocab!, { count: 2, length: 32, seed: p.step });
            showSamples(sampleRow(`${label}, step ${p.step}`, names, true));
          }
        },
        () => stopping,
      );
      view.result = result;
      view.losses = result.losses;
      view.validationLoss = result.validationLoss;
      view.samples = result.samples;
      view.tokensPerSecond = result.tokensPerSecond;
      showSamples(sampleRow(label, result.samples));
      addRow(view, result, targets);
      draw();
      setStatus(
        'done',
        `${label}: done, ${result.steps} steps, ${result.tokensPerSecond.toFixed(0)} tokens/s; validation loss ${result.validationLoss.toFixed(4)} (base ${state.baseValidationLoss!.toFixed(4)}).`,
      );
    } catch (e) {
      state.runs.splice(state.runs.indexOf(view), 1);
      live.remove();
      draw();
      setStatus('failed', `${label} failed: ${(e as Error).message}`);
    } finally {
      running = false;
      start.disabled = false;
      stop.disabled = true;
    }
  }

  function addRow(view: GptRun, r: GptFinetuneResult, targets: Projection[]): void {
    const shapes = model!.moduleShapes;
    const files = encodeAdapter(r.adapter, shapes);
    const cells = [
      view.label,
      String(r.r),
      targets.join(', '),
      String(r.trainable),
      String(Math.max(...Object.values(r.deltaRank))),
      r.steps > 1 ? r.msPerStep.toFixed(0) : '—',
      r.steps > 1 ? r.tokensPerSecond.toFixed(0) : '—',
      r.trainLoss.toFixed(4),
      r.validationLoss.toFixed(4),
    ];
    const w = el('button', { type: 'button', textContent: 'weights', title: 'adapter_model.safetensors' });
    w.onclick = () => download('adapter_model.safetensors', files.safetensors, 'application/octet-stream');
    const c = el('button', { type: 'button', textContent: 'config', title: 'adapter_config.json' });
    c.onclick = () => download('adapter_config.json', files.config, 'application/json');
    tbody.append(el('tr', {}, ...cells.map((t) => el('td', { textContent: t })), el('td', {}, w, ' ', c)));
  }

  load.onclick = () => void loadModel();
  start.onclick = () => void run();
  if (params.get('gpt') === '1' || params.get('gptautostart') === '1') {
    void loadModel().then(() => (params.get('gptautostart') === '1' ? run() : undefined));
  }
}
