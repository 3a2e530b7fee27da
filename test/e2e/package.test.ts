// End to end: the package as a user installs it. Packs the repository (`npm pack`, whose prepare
// script builds dist/), installs the tarball into empty folders and checks, there:
// - what the tarball holds: every export target, and source maps that carry their sources (src/
//   is not shipped);
// - a browser-only install (a plain `npm install <tarball>`) leaves out `webgpu`, an optional peer
//   of 132 MB of Dawn binaries;
// - that install, bundled with Vite (nothing in it may import `webgpu` or Node's modules), runs
//   loraForward through navigator.gpu in Debian's Chromium, as test/e2e/demo.test.ts drives it;
// - README.md's "In Node" example, run as written against an install with `webgpu`, prints the
//   values its math gives;
// - `require()` is refused (the package is ESM-only);
// - test/consumer/main.mts type-checks with this repository's tsc against the installed .d.ts,
//   with lib DOM alone and with lib ES2022 + @webgpu/types (and with both under skipLibCheck).
//
// npm installs with --prefer-offline: `webgpu` and `@webgpu/types` come from npm's cache, which
// the repository's own `npm ci` filled, at the versions installed here. PEFT_WGSL_TARBALL=FILE
// tests a tarball packed already instead of packing the working tree. Needs /usr/bin/chromium (or
// $CHROMIUM_PATH), like the demo's test.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, createLogger } from 'vite';
import { relativeError } from '../../src/numeric.js';
import { launchChromium, serveDir } from './browser.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const consumer = join(repo, 'test', 'consumer');
const TSC = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');

const installedVersion = (name: string) =>
  (JSON.parse(readFileSync(join(repo, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

// The outer `npm test` exports its own package and lifecycle settings; an install in another
// folder must not inherit them.
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_(package_|lifecycle_|config_(local_prefix|prefix|global|workspaces?|include_workspace_root)$)/i.test(k)) env[k] = v;
  }
  return env;
}

/** Runs a command to completion; throws with the end of its output when it fails. */
function sh(cmd: string, args: string[], cwd: string, timeoutMs = 180_000): { status: number | null; stdout: string; out: string } {
  const r = spawnSync(cmd, args, { cwd, env: childEnv(), encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.error) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}): ${r.error.message}\n${out.slice(-4000)}`);
  return { status: r.status, stdout: r.stdout ?? '', out };
}

/** Runs a command that must succeed; returns its standard output. */
function mustRun(cmd: string, args: string[], cwd: string, timeoutMs?: number): string {
  const { status, stdout, out } = sh(cmd, args, cwd, timeoutMs);
  if (status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited with ${status}:\n${out.slice(-4000)}`);
  return stdout;
}

function emptyProject(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '0.0.0', private: true, type: 'module' }, null, 2));
  return dir;
}

const NPM_INSTALL = ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];

/** The arrays util.inspect printed, as [declared length, shown values, count it elided]. */
function printedArrays(out: string): { length: number; values: number[]; more: number }[] {
  return [...out.matchAll(/Float32Array\((\d+)\) \[([^\]]*)\]/g)].map(([, length, body]) => {
    const more = /\.\.\. (\d+) more items?/.exec(body);
    const values = body
      .replace(/\.\.\. \d+ more items?/, '')
      .split(/[\s,]+/)
      .filter((v) => v !== '')
      .map(Number);
    return { length: Number(length), values, more: more ? Number(more[1]) : 0 };
  });
}

describe('e2e: the packed package, installed as a user installs it', function () {
  this.timeout(300_000);
  let work: string;
  let tarball: string;
  let browserApp: string;
  let nodeApp: string;

  before(function () {
    this.timeout(600_000);
    work = mkdtempSync(join(tmpdir(), 'peft-wgsl-package-'));
    if (process.env.PEFT_WGSL_TARBALL) {
      tarball = resolve(process.env.PEFT_WGSL_TARBALL);
    } else {
      mustRun('npm', ['pack', '--pack-destination', work, '--loglevel=error'], repo, 300_000);
      const packed = readdirSync(work).filter((f) => f.endsWith('.tgz'));
      expect(packed, `npm pack wrote ${packed.join(', ')}`).to.have.length(1);
      tarball = join(work, packed[0]);
    }
    browserApp = emptyProject(work, 'browser-app');
    mustRun('npm', [...NPM_INSTALL, tarball], browserApp);
    nodeApp = emptyProject(work, 'node-app');
    mustRun('npm', [...NPM_INSTALL, tarball, `webgpu@${installedVersion('webgpu')}`, `@webgpu/types@${installedVersion('@webgpu/types')}`], nodeApp);
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('ships every export target, no webgpu dependency, and source maps that carry their sources', () => {
    const pkgDir = join(browserApp, 'node_modules', 'peft-wgsl');
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string | Record<string, string>>>;
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
      peerDependenciesMeta?: Record<string, { optional?: boolean }>;
    };
    expect(Object.keys(pkg.exports)).to.have.members(['.', './node', './reference', './package.json']);
    const targets: string[] = [];
    const collect = (v: unknown, conditions: string[]) => {
      if (typeof v === 'string') return void targets.push(v);
      for (const [k, w] of Object.entries(v as Record<string, unknown>)) {
        expect(k, `an ESM-only package names no require condition (${conditions.join(' > ')})`).to.not.equal('require');
        collect(w, [...conditions, k]);
      }
    };
    collect(pkg.exports, []);
    for (const t of targets) expect(existsSync(join(pkgDir, t)), `export target ${t} is in the tarball`).to.equal(true);
    expect(pkg.dependencies ?? {}).to.not.have.property('webgpu');
    expect(pkg.peerDependencies?.webgpu).to.be.a('string');
    expect(pkg.peerDependenciesMeta?.webgpu?.optional).to.equal(true);
    expect(existsSync(join(pkgDir, 'src')), 'src/ is not shipped').to.equal(false);

    const maps: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith('.map')) maps.push(join(dir, e.name));
      }
    };
    walk(join(pkgDir, 'dist'));
    // tsc never deletes what an earlier build wrote, so a module moved or removed in src/ would
    // still ship (with a map from whatever settings built it) unless the build starts from scratch.
    const stale = maps
      .map((f) => f.slice(join(pkgDir, 'dist').length + 1).replace(/\.js\.map$/, '.ts'))
      .filter((f) => !existsSync(join(repo, 'src', f)));
    expect(stale, 'dist files whose source is gone from src/ (the build must empty dist/ first)').to.deep.equal([]);
    expect(maps.length, 'dist has source maps').to.be.greaterThan(10);
    for (const file of maps) {
      const map = JSON.parse(readFileSync(file, 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      expect(map.sourcesContent?.length, `${file}: sourcesContent for each source`).to.equal(map.sources.length);
      for (const c of map.sourcesContent!) expect(c, `${file}: a source's text`).to.be.a('string').and.not.equal('');
    }
  });

  it('a browser-only install does not download webgpu', () => {
    expect(existsSync(join(browserApp, 'node_modules', 'webgpu')), 'node_modules/webgpu').to.equal(false);
    const lock = JSON.parse(readFileSync(join(browserApp, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
    expect(Object.keys(lock.packages).filter((k) => /(^|\/)node_modules\/webgpu$/.test(k))).to.deep.equal([]);
    expect(existsSync(join(browserApp, 'node_modules', 'ml-matrix')), 'the real dependency is installed').to.equal(true);
  });

  it('bundles with Vite without webgpu installed, and runs loraForward through navigator.gpu in Chromium', async function () {
    const site = join(browserApp, 'site');
    mkdirSync(site);
    for (const f of ['index.html', 'main.js']) copyFileSync(join(consumer, 'browser', f), join(site, f));
    const warnings: string[] = [];
    const logger = createLogger('warn');
    logger.warn = (msg) => void warnings.push(msg);
    logger.warnOnce = (msg) => void warnings.push(msg);
    const out = join(browserApp, 'dist');
    await build({ root: site, configFile: false, logLevel: 'warn', customLogger: logger, build: { outDir: out, emptyOutDir: true } });
    expect(
      warnings.filter((w) => /externalized|webgpu|node:/i.test(w)),
      'Vite warnings about Node modules',
    ).to.deep.equal([]);
    const js = readdirSync(join(out, 'assets'))
      .filter((f) => f.endsWith('.js'))
      .map((f) => readFileSync(join(out, 'assets', f), 'utf8'))
      .join('\n');
    expect(js).to.not.match(/(from|import\s*\(?)\s*["'](webgpu|node:[a-z/]+)["']/, 'an import of webgpu or a Node module in the bundle');
    expect(js).to.not.include('peft-wgsl-xdg-', "the Dawn loader's code in the bundle");

    const { server, url } = await serveDir(out);
    let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
    try {
      chromium = await launchChromium();
      const page = await chromium.browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(url);
      type PageResult = { status: string; message?: string; adapter?: string; y?: number[]; expected?: number[] };
      await page.waitForFunction(() => (window as unknown as { __result?: PageResult }).__result?.status !== 'running', undefined, {
        timeout: 180_000,
        polling: 250,
      });
      const result = await page.evaluate(() => (window as unknown as { __result: PageResult }).__result);
      expect(result.status, `${result.message ?? ''} ${errors.join('; ')}`).to.equal('done');
      expect(errors).to.deep.equal([]);
      expect(result.y!.length).to.equal(5 * 29);
      expect(relativeError(result.y!, result.expected!), `Y on ${result.adapter}`).to.be.below(1e-5);
    } finally {
      await chromium?.close();
      server.close();
    }
  });

  it("runs README.md's Node example as written, and it prints what its math gives", () => {
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const example = /^## In Node\s*\n+```ts\n([\s\S]*?)^```/m.exec(readme);
    expect(example, 'README.md has an "In Node" section with a ```ts block').to.not.equal(null);
    const code = example![1];
    expect(code).to.include("from 'peft-wgsl'");
    writeFileSync(join(nodeApp, 'readme-example.mjs'), code);
    const out = mustRun(process.execPath, ['readme-example.mjs'], nodeApp, 120_000);
    // x = 0.1, W0 = 0.01, A = 0.02, B = 0, s = 2, dL/dY = 1, T = 4, n = 64, m = 48, r = 8:
    // Y = n·0.1·0.01 = 0.064 everywhere; Z = n·0.1·0.02 = 0.128; dB = s·T·Z = 1.024.
    const printed = printedArrays(out);
    expect(
      printed.map((p) => p.length),
      out,
    ).to.deep.equal([4 * 48, 48 * 8]);
    const [y, db] = printed;
    for (const [p, want] of [
      [y, 0.064],
      [db, 1.024],
    ] as const) {
      expect(p.values.length + p.more, out).to.equal(p.length);
      expect(p.values.length).to.be.greaterThan(0);
      for (const v of p.values) expect(Math.abs(v - want) / want, `${v} against ${want}`).to.be.below(1e-5);
    }
  });

  it('is ESM-only: require() is refused by the exports, import() works from CommonJS', () => {
    const refused = sh(process.execPath, ['-e', "require('peft-wgsl')"], nodeApp, 60_000);
    expect(refused.status).to.not.equal(0);
    expect(refused.out).to.include('ERR_PACKAGE_PATH_NOT_EXPORTED');
    const imported = mustRun(
      process.execPath,
      ['-e', "import('peft-wgsl').then((m) => console.log(typeof m.createContext, typeof m.loraForward))"],
      nodeApp,
      60_000,
    );
    expect(imported.trim()).to.equal('function function');
  });

  describe('a TypeScript consumer type-checks against the installed .d.ts', () => {
    before(() => {
      for (const f of ['main.mts', 'tsconfig.dom.json', 'tsconfig.webgpu-types.json']) copyFileSync(join(consumer, f), join(nodeApp, f));
    });

    const tsc = (args: string[]) => sh(process.execPath, [TSC, ...args], nodeApp, 120_000);

    it('with lib DOM alone (no @webgpu/types), checking the package .d.ts too (skipLibCheck false)', () => {
      const r = tsc(['-p', 'tsconfig.dom.json']);
      expect(r.out.trim()).to.equal('');
      expect(r.status).to.equal(0);
    });

    it('with lib ES2022 and types @webgpu/types', () => {
      const r = tsc(['-p', 'tsconfig.webgpu-types.json']);
      expect(r.out.trim()).to.equal('');
      expect(r.status).to.equal(0);
      // Checking every .d.ts: @webgpu/types itself needs DOM names (EventTarget, VideoFrame, ...)
      // that lib ES2022 lacks, but the package's declarations and the consumer are clean.
      const strict = tsc(['-p', 'tsconfig.webgpu-types.json', '--skipLibCheck', 'false']);
      const errors = strict.out.split('\n').filter((l) => /error TS\d+/.test(l));
      expect(errors.filter((l) => !l.includes('node_modules/@webgpu/types/'))).to.deep.equal([]);
    });

    it('with lib DOM and types @webgpu/types together (skipLibCheck, as their overlap requires)', () => {
      const r = tsc(['-p', 'tsconfig.dom.json', '--types', '@webgpu/types', '--skipLibCheck', 'true']);
      expect(r.out.trim()).to.equal('');
      expect(r.status).to.equal(0);
    });
  });
});
