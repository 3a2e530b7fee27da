// End to end: the GPU matmul variants ('tiled-vec4', 'tiled-vec4-128', 'subgroup', and 'tiled'
// beside them) in headless Chromium, whose WebGPU runs on its bundled SwiftShader. The page is
// the package's runtime and matmul bundled with esbuild, served from 127.0.0.1 (a secure context,
// so navigator.gpu exists); it computes each product on the GPU and in float64 in the page and
// reports the error. Where the adapter offers `subgroups` the 'subgroup' cases must run the
// `subgroup` entry; where it does not, `main` (the fallback), and the test says which it saw.
//
// Needs /usr/bin/chromium (or $CHROMIUM_PATH), as test/e2e/demo.test.ts does.

import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { F32_TOL } from '../helpers.js';
import { launchChromium, listen } from './browser.js';

const here = dirname(fileURLToPath(import.meta.url));

// The page's script: bundled from this text, its imports resolved from this folder.
const PAGE_SCRIPT = `
import { Context } from '../../src/runtime.js';
import { matmul, matmulEntry } from '../../src/ops/matmul.js';
import { add, matmul as refMatmul, scale } from '../../src/reference/linalg.js';
import { relativeError } from '../../src/numeric.js';
import { uniform } from '../../src/random.js';

(window as any).__matmul = async (variants: string[], shapes: [number, number, number][]) => {
  const ctx = await Context.create();
  const results: { variant: string; case: string; entry: string; err: number }[] = [];
  let seed = 1;
  try {
    for (const variant of variants) {
      ctx.tuning.matmul = variant as any;
      for (const [M, N, K] of shapes) {
        for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
          const K2 = 3;
          const h = { a: uniform(M * K, 1, seed++), b: uniform(K * N, 1, seed++), a2: uniform(M * K2, 1, seed++), b2: uniform(K2 * N, 1, seed++), c: uniform(M * N, 1, seed++) };
          const a = ctx.upload(h.a, transA ? [K, M] : [M, K]);
          const b = ctx.upload(h.b, transB ? [N, K] : [K, N]);
          const a2 = ctx.upload(h.a2, transA ? [K2, M] : [M, K2]);
          const b2 = ctx.upload(h.b2, transB ? [N, K2] : [K2, N]);
          const c = ctx.upload(h.c, [M, N]);
          await matmul(ctx, { a, b, c, M, N, K, transA, transB, alpha: 0.75, beta: 0.5, second: { a: a2, b: b2, K: K2, alpha: -2 } });
          const want = add(add(scale(refMatmul(h.a, h.b, M, K, N, transA, transB), 0.75), scale(refMatmul(h.a2, h.b2, M, K2, N, transA, transB), -2)), scale(h.c, 0.5));
          results.push({ variant, case: M + 'x' + N + 'x' + K + ' transA=' + transA + ' transB=' + transB, entry: matmulEntry(ctx, M, N, K, transA, transB), err: relativeError(await ctx.read(c), want) });
          for (const t of [a, b, a2, b2, c]) t.destroy();
        }
      }
    }
    return { adapter: ctx.adapterInfo.description || ctx.adapterInfo.vendor, subgroups: ctx.device.features.has('subgroups'), results };
  } finally {
    ctx.destroy();
  }
};
`;

const PAGE_HTML = '<!doctype html><meta charset="utf-8"><title>matmul variants</title><script src="/page.js"></script>';

interface PageResult {
  adapter: string;
  subgroups: boolean;
  results: { variant: string; case: string; entry: string; err: number }[];
}

describe('e2e: GPU matmul variants in headless Chromium (SwiftShader)', function () {
  this.timeout(180_000);
  let server: Server | undefined;
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let url = '';

  before(async () => {
    chromium = await launchChromium();
    const bundle = await build({
      stdin: { contents: PAGE_SCRIPT, resolveDir: here, loader: 'ts', sourcefile: 'matmul-page.ts' },
      bundle: true,
      format: 'iife',
      platform: 'browser',
      write: false,
      logLevel: 'silent',
    });
    const js = bundle.outputFiles[0].text;
    ({ server, url } = await listen(
      createServer((req, res) => {
        if (req.url === '/page.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
        else if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE_HTML);
        else res.writeHead(404).end();
      }),
    ));
  });

  after(async () => {
    await chromium?.close();
    server?.close();
  });

  it('every variant × transpose × alpha/beta/second matches the float64 reference in the page', async () => {
    const page = await chromium!.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => typeof (window as unknown as { __matmul?: unknown }).__matmul === 'function');
    // 37×45×13 is unaligned (every variant is `main` there); 132×68×100 and 4×260×36 are aligned
    // with ragged tiles. A string, not a function: tsx's transpiled functions may call helpers the page lacks.
    const out = (await page.evaluate(
      "window.__matmul(['tiled', 'tiled-vec4', 'tiled-vec4-128', 'subgroup'], [[37, 45, 13], [132, 68, 100], [4, 260, 36]])",
    )) as PageResult;
    expect(errors).to.deep.equal([]);
    console.log(`      ${out.adapter}: subgroups ${out.subgroups ? 'offered, the subgroup entry ran' : 'not offered, subgroup fell back to main'}`);
    expect(out.results.length).to.equal(4 * 3 * 4);
    const own: Record<string, string> = {
      tiled: 'main',
      'tiled-vec4': 'tiled_vec4',
      'tiled-vec4-128': 'tiled_vec4',
      subgroup: out.subgroups ? 'subgroup' : 'main',
    };
    for (const r of out.results) {
      const alignedCase = !r.case.startsWith('37x45x13');
      expect(r.entry, `${r.variant} ${r.case}`).to.equal(alignedCase ? own[r.variant] : 'main');
      expect(r.err, `${r.variant} ${r.case} (${r.entry}): relative error ${r.err.toExponential(2)}`).to.be.at.most(F32_TOL);
    }
  });
});
