// End to end: builds the demo with Vite, serves it on localhost, and drives Debian's Chromium
// (headless, WebGPU on its bundled SwiftShader) through a short fine-tune with playwright-core.
// Asserts that the loss falls, that sampled names appear, that the downloaded adapter files
// decode and that the legend fits; that bad settings are refused beside their fields without
// starting a run; that a failed run leaves the page usable for the next; that the learning rate
// follows the method; and checks the no-WebGPU message. Saves screenshots (demo.png after a run,
// demo-empty.png, demo-field-error.png) to test/e2e/artifacts/, or $E2E_ARTIFACTS. A run on an NF4
// base checks the base select, its bytes and the run's base column.
//
// Needs /usr/bin/chromium (or $CHROMIUM_PATH): `apt-get install chromium` on Debian. Without it
// the test fails and says so: CI installs it.

import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { build } from 'vite';
import { decodeAdapter } from '../../src/adapters.js';
import { launchChromium, serveDir } from './browser.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ARTIFACTS = process.env.E2E_ARTIFACTS ?? join(repo, 'test', 'e2e', 'artifacts');

interface DemoState {
  status: string;
  message: string;
  fieldErrors: Record<string, string>;
  failNextRun?: string;
  device?: string;
  baseValidationLoss?: number;
  baseFormat?: string;
  baseBytes?: number;
  runs: { label: string; losses: [number, number][]; validationLoss?: number; samples: string[] }[];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('e2e: in-browser fine-tuning demo in headless Chromium', function () {
  this.timeout(600_000);
  let out: string;
  let server: Server | undefined;
  let url: string;
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let browser: BrowserContext | undefined;

  before(async () => {
    chromium = await launchChromium({ viewport: { width: 1100, height: 1300 } });
    browser = chromium.browser;
    out = mkdtempSync(join(tmpdir(), 'peft-wgsl-demo-'));
    await build({ configFile: join(repo, 'demo', 'vite.config.ts'), logLevel: 'error', build: { outDir: out, emptyOutDir: true } });
    ({ server, url } = await serveDir(out));
  });

  after(async () => {
    await chromium?.close();
    server?.close();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  async function open(query: string, noGpu = false): Promise<{ page: Page; errors: string[] }> {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // A string, not a function: tsx's transpiled functions may call helpers the page lacks.
    if (noGpu) await page.addInitScript({ content: "Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });" });
    await page.goto(`${url}?${query}`);
    return { page, errors };
  }

  /** Waits until the model has loaded (or the page has given up) and returns the state. */
  async function ready(page: Page): Promise<DemoState> {
    await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.status !== 'loading', undefined, {
      timeout: 120_000,
      polling: 200,
    });
    return page.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);
  }

  const demoState = (page: Page) => page.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);

  it('fine-tunes with LoRA on WebGPU: the loss falls and sampled names appear', async () => {
    const steps = 60;
    const { page, errors } = await open(`method=lora&steps=${steps}&batch=64&lr=0.02&autostart=1`);
    await page.waitForFunction(
      () => ['done', 'failed', 'error', 'no-webgpu'].includes((window as unknown as { __demo: DemoState }).__demo.status),
      undefined,
      { timeout: 480_000, polling: 500 },
    );
    const state = await page.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });
    expect(state.status, `demo ended with: ${state.message} ${errors.join('; ')}`).to.equal('done');
    expect(errors).to.deep.equal([]);
    const run = state.runs[0];
    expect(run.losses.length).to.equal(steps);
    const losses = run.losses.map(([, l]) => l);
    expect(losses.every(Number.isFinite), 'every loss finite').to.equal(true);
    const first = mean(losses.slice(0, 10));
    const last = mean(losses.slice(-10));
    expect(last, `training loss should fall: first 10 steps ${first.toFixed(4)}, last 10 ${last.toFixed(4)}`).to.be.below(first);
    expect(run.validationLoss, "validation loss below the base model's").to.be.a('number').and.below(state.baseValidationLoss!);
    // The page shows the run's row, its download buttons, and its sampled names.
    expect(await page.locator('#runs tbody tr').count()).to.equal(1);
    const names = await page.locator('#samples li').last().locator('.name').allTextContents();
    expect(names.length).to.equal(12);
    expect(names.filter((n) => /^[a-z]+$/.test(n)).length, `sampled names: ${names.join(', ')}`).to.be.at.least(10);
    expect(await page.locator('#chart svg path').count()).to.be.at.least(1);
    // The download buttons hand over a valid adapter: both files decode and validate together.
    const fetchDownload = async (button: string) => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator(`#runs tbody tr button:has-text("${button}")`).click()]);
      return { name: download.suggestedFilename(), bytes: readFileSync((await download.path())!) };
    };
    const weights = await fetchDownload('weights');
    const config = await fetchDownload('config');
    expect([weights.name, config.name]).to.deep.equal(['adapter_model.safetensors', 'adapter_config.json']);
    const adapter = decodeAdapter(
      { safetensors: new Uint8Array(weights.bytes), config: config.bytes.toString('utf8') },
      { h1: { n: 128, m: 128 }, h2: { n: 128, m: 128 } },
    );
    expect(adapter.config.method).to.equal('lora');
    expect(adapter.modules.h2.lora_B!.shape).to.deep.equal([128, 4]);
    expect(
      adapter.modules.h2.lora_B!.data.some((v) => v !== 0),
      'B has been trained away from 0',
    ).to.equal(true);
    expect(await page.locator('#runs tbody tr').first().locator('td').nth(3).textContent()).to.equal('4 / 4');

    // A second run in the same page, with BoRA: its merge kernel is a second pipeline of a shader
    // module already compiled, which hung in Chromium while the runtime asked the module for its
    // compilation messages twice. The rank of ΔW (b·r = 32 for r = 4, b = 8) comes from that merge.
    await page.selectOption('#method', 'bora');
    await page.fill('#steps', '8');
    await page.click('#start');
    await page.waitForFunction(
      () => {
        const d = (window as unknown as { __demo: DemoState }).__demo;
        return d.runs.length === 2 && ['done', 'failed', 'error'].includes(d.status);
      },
      undefined,
      { timeout: 480_000, polling: 500 },
    );
    const after = await page.evaluate(() => (window as unknown as { __demo: DemoState }).__demo);
    expect(after.status, `BoRA run ended with: ${after.message} ${errors.join('; ')}`).to.equal('done');
    expect(after.runs[1].losses.length).to.equal(8);
    expect(await page.locator('#runs tbody tr').nth(1).locator('td').nth(3).textContent()).to.equal('32 / 32');
    // Every legend label lies inside the chart: none is cut at the right edge.
    const legend = await page.evaluate(() => {
      const svg = document.querySelector('#chart svg') as SVGSVGElement;
      const width = svg.viewBox.baseVal.width;
      return [...svg.querySelectorAll('text.legend')].map((t) => {
        const box = (t as SVGTextElement).getBBox();
        return { text: t.textContent, right: box.x + box.width, width };
      });
    });
    expect(legend.map((l) => l.text)).to.deep.equal(after.runs.map((r) => r.label));
    for (const l of legend) expect(l.right, `legend '${l.text}' ends at ${l.right} of ${l.width}`).to.be.at.most(l.width);
    await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });
    await page.close();
  });

  it('shows an empty state, refuses bad settings beside their fields without starting a run, and sets the learning rate per method', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const { page, errors } = await open('');
    const first = await ready(page);
    expect(first.status, first.message).to.equal('ready');
    expect(first.fieldErrors).to.deep.equal({});
    // Before any run the chart says what it will show and how to start, rather than empty axes.
    expect(await page.locator('#chart svg text.empty').textContent()).to.match(/training loss of each run.*press Fine-tune/);
    expect(await page.locator('#chart svg path').count()).to.equal(0);
    await page.screenshot({ path: join(ARTIFACTS, 'demo-empty.png'), fullPage: true });

    // The learning rate follows the method until the user types one.
    expect(await page.inputValue('#lr')).to.equal('0.01');
    await page.selectOption('#method', 'lorma-pi');
    expect(await page.inputValue('#lr')).to.equal('0.003');
    expect(await page.locator('#lr-note').textContent()).to.match(/0\.003 is LoRMA_π's default.*smaller rate/);
    expect(await page.locator('#blocks').isDisabled(), 'blocks only apply to BoRA and MELoRA').to.equal(true);
    await page.selectOption('#method', 'lora');
    expect(await page.inputValue('#lr')).to.equal('0.01');
    await page.fill('#lr', '0.02');
    await page.selectOption('#method', 'lorma-plus');
    expect(await page.inputValue('#lr'), 'an edited rate is kept').to.equal('0.02');
    expect(await page.locator('#lr-note').getAttribute('class')).to.match(/warn/);
    await page.click('#use-tuned-lr');
    expect(await page.inputValue('#lr')).to.equal('0.003');
    await page.selectOption('#method', 'bora');
    expect(await page.inputValue('#lr'), 'after "use", the rate follows the method again').to.equal('0.01');

    // Bad values: an error beside the field, no run, the buttons as they were.
    const refused = async (field: string, value: string, pattern: RegExp) => {
      await page.fill(`#${field}`, value);
      await page.click('#start');
      const s = await demoState(page);
      expect(s.fieldErrors[field], `${field} = '${value}'`).to.match(pattern);
      expect(s.runs.length, `no run starts with ${field} = '${value}'`).to.equal(0);
      expect(s.status).to.equal('ready');
      expect(await page.locator(`#${field}-error`).isVisible()).to.equal(true);
      expect(await page.locator(`#${field}-error`).textContent()).to.equal(s.fieldErrors[field]);
      expect(await page.locator(`#${field}`).getAttribute('aria-invalid')).to.equal('true');
      expect(await page.locator('#start').isEnabled()).to.equal(true);
      expect(await page.locator('#nogpu').isVisible()).to.equal(false);
    };
    await refused('lr', '', /^Enter a learning rate, e\.g\. 0\.01/);
    await refused('lr', '0', /^Must be above 0 and at most 1; got 0/);
    await refused('steps', '0', /^Must be a whole number from 1 to 5000; got 0/);
    await refused('steps', '2.5', /whole number.*got 2\.5/);
    await refused('batch', '', /^Enter a whole number from 1 to 1024/);
    await refused('temperature', '9', /^Must be from 0\.1 to 2; got 9/);
    await page.screenshot({ path: join(ARTIFACTS, 'demo-field-error.png'), fullPage: true });
    // Fixing a field clears its error as it is typed.
    await page.fill('#steps', '20');
    expect(await page.locator('#steps-error').isVisible()).to.equal(false);
    expect((await demoState(page)).fieldErrors.steps).to.equal(undefined);
    expect(await page.locator('#chart svg text.empty').count(), 'still the empty state').to.equal(1);
    expect(errors).to.deep.equal([]);
    await page.close();

    // A bad URL preset with autostart: shown beside its field, and no run starts.
    const bad = await open('method=lora&steps=0&autostart=1');
    const s = await ready(bad.page);
    expect(s.status, s.message).to.equal('ready');
    expect(s.runs.length).to.equal(0);
    expect(s.fieldErrors.steps).to.match(/whole number from 1 to 5000; got 0/);
    expect(await bad.page.locator('#steps-error').isVisible()).to.equal(true);
    await bad.page.close();
  });

  it('a failed run leaves the page usable, and the next run completes', async () => {
    const steps = 10;
    const { page, errors } = await open(`method=lora&steps=${steps}&batch=32&lr=0.02`);
    expect((await ready(page)).status).to.equal('ready');
    // The page refuses every setting the library would reject, so the failure is injected: the
    // run throws at its first progress report, after its adapters and kernels exist.
    await page.evaluate(() => {
      (window as unknown as { __demo: DemoState }).__demo.failNextRun = 'injected failure for the test';
    });
    await page.click('#start');
    await page.waitForFunction(() => ['done', 'failed', 'error'].includes((window as unknown as { __demo: DemoState }).__demo.status), undefined, {
      timeout: 300_000,
      polling: 250,
    });
    const failed = await demoState(page);
    expect(failed.status, failed.message).to.equal('failed');
    expect(failed.message).to.match(/LoRA r4 \(run 1\) failed: injected failure for the test/);
    expect(failed.runs.length, 'the failed run is taken out').to.equal(0);
    expect(await page.locator('#status-box').getAttribute('class')).to.match(/failed/);
    expect(await page.locator('#nogpu').isVisible(), 'not a page-wide failure').to.equal(false);
    expect(await page.locator('#start').isEnabled()).to.equal(true);
    expect(await page.locator('#stop').isDisabled()).to.equal(true);
    expect(await page.locator('#runs tbody tr').count()).to.equal(0);

    await page.click('#start');
    await page.waitForFunction(() => ['done', 'failed', 'error'].includes((window as unknown as { __demo: DemoState }).__demo.status), undefined, {
      timeout: 300_000,
      polling: 250,
    });
    const good = await demoState(page);
    expect(good.status, `${good.message} ${errors.join('; ')}`).to.equal('done');
    expect(good.runs.length).to.equal(1);
    expect(good.runs[0].label).to.equal('LoRA r4 (run 1)');
    expect(good.runs[0].losses.length).to.equal(steps);
    expect(
      good.runs[0].losses.every(([, l]) => Number.isFinite(l)),
      'every loss finite',
    ).to.equal(true);
    expect(good.runs[0].validationLoss).to.be.a('number').and.below(good.baseValidationLoss!);
    expect(await page.locator('#status-box').getAttribute('class')).to.not.match(/failed/);
    expect(await page.locator('#runs tbody tr').count()).to.equal(1);
    expect(await page.locator('#start').isEnabled()).to.equal(true);
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it('fine-tunes on an NF4 base, made on the GPU, and shows its bytes', async () => {
    const steps = 10;
    const { page, errors } = await open(`method=lora&base=nf4&steps=${steps}&batch=32&lr=0.02`);
    const first = await ready(page);
    expect(first.status, first.message).to.equal('ready');
    expect(first.baseFormat).to.equal('f32');
    // h1 + h2: 2 × 128 × 128 values; NF4 in blocks of 64 is 4 bits a value and an f32 absmax a block.
    expect(await page.locator('#base-bytes').textContent()).to.equal('18,432 B (0.14× f32)');
    await page.selectOption('#base', 'f16');
    expect(await page.locator('#base-bytes').textContent()).to.equal('65,536 B (0.50× f32)');
    await page.selectOption('#base', 'nf4');
    await page.click('#start');
    await page.waitForFunction(() => ['done', 'failed', 'error'].includes((window as unknown as { __demo: DemoState }).__demo.status), undefined, {
      timeout: 300_000,
      polling: 250,
    });
    const s = await demoState(page);
    expect(s.status, `${s.message} ${errors.join('; ')}`).to.equal('done');
    expect(s.baseFormat).to.equal('nf4');
    expect(s.baseBytes).to.equal(18_432);
    expect(s.runs[0].label).to.equal('LoRA r4 NF4/64 (run 1)');
    expect(s.runs[0].losses.length).to.equal(steps);
    expect(s.baseValidationLoss, 'the NF4 base model is measured on its own').to.not.equal(first.baseValidationLoss);
    expect(s.runs[0].validationLoss).to.be.a('number').and.below(s.baseValidationLoss!);
    expect(await page.locator('#runs tbody tr').first().locator('td').nth(7).textContent()).to.equal('NF4/64, 18,432 B');
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it('fine-tunes the GPT with LoRA and then BoRA on q_proj and v_proj: the loss falls and the adapter downloads', async () => {
    interface GptState {
      status: string;
      message: string;
      baseValidationLoss?: number;
      runs: { label: string; losses: [number, number][]; tokensPerSecond: number; validationLoss?: number; samples: string[] }[];
    }
    const gptState = (page: Page) => page.evaluate(() => (window as unknown as { __gpt: GptState }).__gpt);
    const waitRuns = (page: Page, n: number) =>
      page.waitForFunction(
        (k) => {
          const g = (window as unknown as { __gpt: GptState }).__gpt;
          return (g.runs.length === k && ['done', 'failed', 'error'].includes(g.status)) || g.status === 'error';
        },
        n,
        { timeout: 480_000, polling: 500 },
      );
    const steps = 12;
    const { page, errors } = await open(`gpt=1&gptautostart=1&gptmethod=lora&gpttargets=q_proj,v_proj&gptsteps=${steps}&gptbatch=4&gptlr=0.03`);
    await waitRuns(page, 1);
    const s = await gptState(page);
    expect(s.status, `${s.message} ${errors.join('; ')}`).to.equal('done');
    const losses = s.runs[0].losses.map(([, l]) => l);
    expect(losses.length).to.equal(steps);
    expect(mean(losses.slice(-4)), `GPT loss should fall: ${losses.map((l) => l.toFixed(3)).join(' ')}`).to.be.below(mean(losses.slice(0, 4)));
    expect(s.runs[0].validationLoss).to.be.a('number').and.below(s.baseValidationLoss!);
    expect(s.runs[0].tokensPerSecond).to.be.above(0);
    expect(await page.locator('#gpt-status').textContent()).to.match(/tokens\/s/);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#gpt-runs tbody tr button:has-text("weights")').first().click(),
    ]);
    const [configDownload] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#gpt-runs tbody tr button:has-text("config")').first().click(),
    ]);
    const adapter = decodeAdapter({
      safetensors: new Uint8Array(readFileSync((await download.path())!)),
      config: readFileSync((await configDownload.path())!).toString('utf8'),
    });
    expect(adapter.config.method).to.equal('lora');
    expect(adapter.config.target_modules).to.deep.equal(['q_proj', 'v_proj']);
    expect(Object.keys(adapter.modules).sort()).to.deep.equal(
      ['layers.0.self_attn.q_proj', 'layers.0.self_attn.v_proj', 'layers.1.self_attn.q_proj', 'layers.1.self_attn.v_proj'].sort(),
    );
    expect(Object.values(adapter.modules).some((m) => m.lora_B!.data.some((v) => v !== 0))).to.equal(true);

    // A second method in the same page.
    await page.selectOption('#gpt-method', 'bora');
    await page.click('#gpt-start');
    await waitRuns(page, 2);
    const t = await gptState(page);
    expect(t.status, `${t.message} ${errors.join('; ')}`).to.equal('done');
    const bora = t.runs[1].losses.map(([, l]) => l);
    expect(mean(bora.slice(-4)), `BoRA loss should fall: ${bora.map((l) => l.toFixed(3)).join(' ')}`).to.be.below(mean(bora.slice(0, 4)));
    expect(await page.locator('#gpt-runs tbody tr').count()).to.equal(2);
    expect(await page.locator('#gpt-chart svg path').count()).to.be.at.least(2);
    expect(errors).to.deep.equal([]);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'demo-gpt.png'), fullPage: true });
    await page.close();
  });

  it('says clearly when the browser has no WebGPU', async () => {
    const { page } = await open('autostart=1', true);
    await page.waitForFunction(() => (window as unknown as { __demo: DemoState }).__demo.status === 'no-webgpu', undefined, { timeout: 30_000 });
    const box = page.locator('#nogpu');
    expect(await box.isVisible()).to.equal(true);
    const text = (await box.textContent()) ?? '';
    expect(text).to.match(/no WebGPU/);
    // Advice for a browser user: which browsers ship it, the flag that enables it, the secure context.
    expect(text).to.match(/Chrome and Edge 113/);
    expect(text).to.match(/Safari/);
    expect(text).to.include('chrome://flags/#enable-unsafe-webgpu');
    expect(text).to.match(/secure context.*https.*localhost/);
    expect(text, 'no Node or Linux set-up advice in a browser').to.not.match(/apt-get|npm|mesa|lavapipe/i);
    expect(await page.locator('#start').isDisabled()).to.equal(true);
    expect(await page.locator('#chart svg text.empty').textContent()).to.match(/cannot train here/);
    await page.close();
  });
});
