// `npm run gpu-kit`: builds the portable GPU run kit, one folder that runs the vectors, the
// correctness suite, the bench and bench:compare on a bare x86-64 Linux machine that has a GPU
// driver and nothing else (no Node, no npm, no network). docs/benchmarks/gpu-kit.md says what is in
// it and how to use its results.
//
//   tsx scripts/gpu-kit/build.ts [--out DIR (default build/gpu-kit)] [--deb FILE] [--dry-run]
//
// --deb takes a libvulkan1 .deb instead of `apt-get download libvulkan1` (a machine without apt or
// network); --dry-run lists what would be packed and builds nothing.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve, sep } from 'node:path';
import { constants, gzipSync } from 'node:zlib';
import { build, type Plugin } from 'esbuild';
import { DEFAULT_OUT, MAX_KIT_BYTES, REPO, dawnAddon, plan, sizeOf, type Plan } from './plan.js';

interface Options {
  out: string;
  deb?: string;
  dryRun: boolean;
}

function parse(argv: string[]): Options {
  const o: Options = { out: DEFAULT_OUT, dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`gpu-kit: ${a} needs a value`);
      return v;
    };
    if (a === '--out') o.out = resolve(value());
    else if (a === '--deb') o.deb = resolve(value());
    else if (a === '--dry-run') o.dryRun = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm run gpu-kit -- [--out DIR (default build/gpu-kit)] [--deb libvulkan1_VERSION_amd64.deb] [--dry-run]');
      process.exit(0);
    } else throw new Error(`gpu-kit: unknown option '${a}'`);
  }
  return o;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function listPlan(p: Plan, o: Options): void {
  console.log(`gpu-kit: would build ${relative(process.cwd(), o.out) || '.'} (at most ${mib(MAX_KIT_BYTES)})`);
  for (const e of p.entries) console.log(`  app/${e.name}.mjs  <- ${relative(REPO, e.runs)} (esbuild, one file)`);
  for (const f of p.files) console.log(`  ${f.kitPath}  <- ${f.source} (${mib(sizeOf(f.source))}${f.gzip ? ', gzip' : ''}): ${f.why}`);
  console.log(`  lib/${p.debPackage}_*_amd64.deb  <- ${o.deb ?? `apt-get download ${p.debPackage}`}: the Vulkan loader, unpacked by run.sh`);
  console.log(`  lib/libvulkan.so.1.gz  <- the same loader, extracted here: for machines without dpkg-deb, or ar and xz`);
  console.log('  app/features, MANIFEST.json  <- written by the build');
  if (p.missing.length) console.log(`missing: ${p.missing.join(', ')}`);
}

/** `apt-get download` into a temporary folder; `apt-get update` once first if the lists are stale. */
function fetchDeb(pkg: string, given: string | undefined): string {
  if (given) {
    if (!existsSync(given)) throw new Error(`gpu-kit: --deb ${given} does not exist`);
    return given;
  }
  const dir = mkdtempSync(join(tmpdir(), 'gpu-kit-deb-'));
  const download = () => spawnSync('apt-get', ['download', `${pkg}:amd64`], { cwd: dir, encoding: 'utf8' });
  let r = download();
  if (r.status !== 0 && process.getuid?.() === 0) {
    console.log(`gpu-kit: apt-get download failed (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); running apt-get update`);
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    r = download();
  }
  const debs = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.deb')) : [];
  if (r.status !== 0 || debs.length !== 1) {
    throw new Error(
      `gpu-kit: 'apt-get download ${pkg}:amd64' failed (${(r.stderr || r.error?.message || 'no .deb written').trim()}). ` +
        `Download ${pkg} for amd64 by hand and pass it with --deb FILE.`,
    );
  }
  return join(dir, debs[0]);
}

/** The loader's shared object out of the .deb (dpkg-deb, or ar and tar), for run.sh's last resort. */
function extractLoader(deb: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gpu-kit-vulkan-'));
  const hasDpkg = spawnSync('dpkg-deb', ['--version']).status === 0;
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gpu-kit: ${cmd} ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
  };
  if (hasDpkg) run('dpkg-deb', ['-x', deb, dir]);
  else {
    run('ar', ['x', deb]);
    const data = readdirSync(dir).find((f) => f.startsWith('data.tar'));
    if (!data) throw new Error(`gpu-kit: ${deb} holds no data.tar.*`);
    run('tar', ['-xf', data]);
  }
  const libDir = join(dir, 'usr/lib/x86_64-linux-gnu');
  const so = existsSync(libDir) ? readdirSync(libDir).find((f) => f === 'libvulkan.so.1') : undefined;
  if (!so) throw new Error(`gpu-kit: ${deb} has no usr/lib/x86_64-linux-gnu/libvulkan.so.1`);
  return realpathSync(join(libDir, so));
}

/**
 * The `webgpu` package loads dawn.node from dist/<platform>-<arch>/ beside its index.js; in a bundle
 * that folder is gone, so its path becomes the one run.sh unpacked it to. The rest of index.js (its
 * patch that unmaps buffers on device.destroy()) is kept as it is.
 */
function dawnFromKit(packageDir: string): Plugin {
  const index = join(packageDir, 'index.js');
  return {
    name: 'dawn-from-kit',
    setup(b) {
      b.onLoad({ filter: /[\\/]webgpu[\\/]index\.js$/ }, (args) => {
        if (args.path !== index) return undefined;
        const source = readFileSync(args.path, 'utf8');
        const found = source.match(/const dawnNodePath = [^;]+;/g) ?? [];
        if (found.length !== 1)
          throw new Error(`gpu-kit: ${index} no longer sets 'const dawnNodePath = ...;' once; update dawnFromKit in scripts/gpu-kit/build.ts`);
        const replaced = source.replace(
          found[0],
          "const dawnNodePath = process.env.PEFT_KIT_DAWN_NODE || (() => { throw new Error('PEFT_KIT_DAWN_NODE is not set: start the kit through run.sh, which unpacks dawn.node'); })();",
        );
        return { contents: replaced, loader: 'js' };
      });
    },
  };
}

/**
 * bench/peers/gpujs.ts reaches a gpu.js module through createRequire (gpu.js's package does not
 * export it to `import`). esbuild does not follow such a require, and the kit has no node_modules,
 * so files of ours that import createRequire get one that answers their literal require('…')
 * specifiers from the bundle and everything else from Node.
 */
const bundledRequire: Plugin = {
  name: 'bundled-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?module$/ }, (args) => {
      if (args.namespace !== 'file' || args.importer.includes(`${sep}node_modules${sep}`) || !args.importer.startsWith(REPO)) return undefined;
      const ids = [...readFileSync(args.importer, 'utf8').matchAll(/\brequire\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]);
      if (!ids.length) return undefined;
      return { path: args.importer, namespace: 'bundled-require', pluginData: ids };
    });
    b.onLoad({ filter: /.*/, namespace: 'bundled-require' }, (args) => {
      const ids = args.pluginData as string[];
      const table = ids.map((id) => `  ${JSON.stringify(id)}: () => require(${JSON.stringify(id)}),`).join('\n');
      return {
        resolveDir: REPO,
        loader: 'js',
        contents: `import * as nodeModule from 'node:module';
export * from 'node:module';
const bundled = {
${table}
};
export function createRequire(from) {
  const real = nodeModule.createRequire(from);
  return Object.assign((id) => (Object.hasOwn(bundled, id) ? bundled[id]() : real(id)), real);
}
`,
      };
    });
  },
};

async function bundle(p: Plan, out: string, packageDir: string): Promise<void> {
  for (const e of p.entries) {
    await build({
      entryPoints: [e.source],
      outfile: join(out, 'app', `${e.name}.mjs`),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // CommonJS dependencies (TF.js, gpu.js) call require() for Node's own modules; an ES module
      // bundle has none unless it makes one.
      banner: { js: "import { createRequire as __kitCreateRequire } from 'node:module';\nconst require = __kitCreateRequire(import.meta.url);" },
      // gpu.js's optional headless-GL backend: required inside a try, absent here and in the kit.
      external: ['gl'],
      plugins: [dawnFromKit(packageDir), bundledRequire],
      // package.json's sideEffects names only dist/ files, which would make esbuild drop the entries'
      // bare imports of bench/run.ts and friends (they run on import).
      ignoreAnnotations: true,
      legalComments: 'eof',
      logLevel: 'warning',
    });
  }
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function walk(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name), base) : [relative(base, join(dir, d.name))],
  );
}

function gitCommit(): string {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: REPO, encoding: 'utf8' });
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO, encoding: 'utf8' });
  if (head.status !== 0) return 'unknown';
  return `${head.stdout.trim()}${dirty.stdout.trim() ? ' (with uncommitted changes)' : ''}`;
}

/** What this checkout's bench accepts, read off its source so run.sh never passes an unknown flag. */
function features(): string[] {
  const run = readFileSync(join(REPO, 'bench/run.ts'), 'utf8');
  const compare = readFileSync(join(REPO, 'bench/compare.ts'), 'utf8');
  const out: string[] = [];
  if (run.includes("'--matmul'") && compare.includes("'--matmul'")) out.push('matmul-flag');
  if (run.includes("'--ceilings-only'")) out.push('ceilings-only');
  if (run.includes("'--no-ceilings'") && compare.includes("'--no-ceilings'")) out.push('no-ceilings');
  if (compare.includes("'--base'")) out.push('base-flag');
  if (existsSync(join(REPO, 'bench/profile.ts'))) out.push('profile');
  return out;
}

async function main(argv: string[]): Promise<void> {
  const o = parse(argv);
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error(`gpu-kit: the kit is for linux-x64 and ships this machine's node; this is ${process.platform}-${process.arch}`);
  const p = plan();
  if (o.dryRun) {
    listPlan(p, o);
    process.exit(p.missing.length ? 1 : 0);
  }
  if (p.missing.length) throw new Error(`gpu-kit: missing ${p.missing.join(', ')}`);
  // Only a previous kit (or nothing) is replaced: --out pointed at the wrong folder must not empty it.
  if (existsSync(o.out) && readdirSync(o.out).length && !existsSync(join(o.out, 'MANIFEST.json')))
    throw new Error(`gpu-kit: ${o.out} exists and is not a kit (no MANIFEST.json); choose another --out or empty it`);
  rmSync(o.out, { recursive: true, force: true });
  const started = Date.now();
  const { packageDir, version: webgpuVersion } = dawnAddon();

  console.log('gpu-kit: bundling');
  await bundle(p, o.out, packageDir);
  writeFileSync(join(o.out, 'app', 'features'), features().join('\n') + '\n');

  console.log('gpu-kit: packing binaries');
  for (const f of p.files) {
    const dest = join(o.out, f.kitPath);
    mkdirSync(join(dest, '..'), { recursive: true });
    if (f.gzip) writeFileSync(dest, gzipSync(readFileSync(f.source), { level: constants.Z_BEST_COMPRESSION }));
    else copyFileSync(f.source, dest);
  }
  chmodSync(join(o.out, 'run.sh'), 0o755);

  console.log(`gpu-kit: fetching ${p.debPackage}`);
  const deb = fetchDeb(p.debPackage, o.deb);
  copyFileSync(deb, join(o.out, 'lib', basename(deb)));
  writeFileSync(join(o.out, 'lib', 'libvulkan.so.1.gz'), gzipSync(readFileSync(extractLoader(deb)), { level: constants.Z_BEST_COMPRESSION }));

  const files = walk(o.out)
    .sort()
    .map((path) => ({ path, bytes: statSync(join(o.out, path)).size, sha256: sha256(join(o.out, path)) }));
  const totalBytes = files.reduce((a, f) => a + f.bytes, 0);
  const manifest = {
    built: new Date().toISOString(),
    commit: gitCommit(),
    node: process.version,
    webgpu: webgpuVersion,
    vulkanLoader: basename(deb),
    entries: p.entries.map((e) => ({ app: `app/${e.name}.mjs`, runs: relative(REPO, e.runs) })),
    features: features(),
    totalBytes,
    files,
  };
  writeFileSync(join(o.out, 'MANIFEST.json'), JSON.stringify(manifest, null, 2) + '\n');
  const total = totalBytes + sizeOf(join(o.out, 'MANIFEST.json'));
  for (const f of files) console.log(`  ${f.path.padEnd(40)} ${mib(f.bytes).padStart(9)}`);
  console.log(`gpu-kit: ${o.out}: ${mib(total)} in ${files.length + 1} files (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  if (total > MAX_KIT_BYTES) throw new Error(`gpu-kit: the kit is ${mib(total)}, over the ${mib(MAX_KIT_BYTES)} it must fit in`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
