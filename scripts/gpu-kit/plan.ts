// What the GPU run kit holds and where each piece comes from, kept apart from the build so that
// `--dry-run` and the test can list it without compressing 100 MB or asking apt for anything.
// docs/benchmarks/gpu-kit.md describes the kit; scripts/gpu-kit/build.ts makes it.

import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const KIT_DIR = join(REPO, 'scripts/gpu-kit');
/** The ceiling on the whole folder (issue 17). */
export const MAX_KIT_BYTES = 60 * 2 ** 20;
export const DEFAULT_OUT = join(REPO, 'build/gpu-kit');

/** A program bundled into app/<name>.mjs. */
export interface Entry {
  name: string;
  /** The wrapper under scripts/gpu-kit/entries/ that esbuild starts from. */
  source: string;
  /** The repository program it runs, for the listing. */
  runs: string;
}

/** A file copied into the kit, gzip-compressed when `gzip`. */
export interface Packed {
  /** Path inside the kit. */
  kitPath: string;
  source: string;
  gzip: boolean;
  why: string;
  /** Packed when the build machine has it (a licence file outside the repository). */
  optional?: boolean;
}

export interface Plan {
  entries: Entry[];
  files: Packed[];
  /** Fetched at build time with `apt-get download` (or taken from --deb). */
  debPackage: string;
  missing: string[];
}

/** Dawn's addon for linux-x64, found the way the `webgpu` package finds it (dist/<platform>-<arch>/dawn.node). */
export function dawnAddon(): { packageDir: string; addon: string; version: string } {
  const require = createRequire(join(REPO, 'package.json'));
  const packageJson = require.resolve('webgpu/package.json');
  const packageDir = dirname(packageJson);
  const version = (require(packageJson) as { version: string }).version;
  return { packageDir, addon: join(packageDir, 'dist', 'linux-x64', 'dawn.node'), version };
}

/** The C++ runtime the node binary and dawn.node link against; used by run.sh only when the machine lacks one. */
export function cxxRuntime(): string[] {
  const dirs = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/lib64'];
  const out: string[] = [];
  for (const lib of ['libstdc++.so.6', 'libgcc_s.so.1']) {
    const found = dirs.map((d) => join(d, lib)).find((p) => existsSync(p));
    if (found) out.push(found);
  }
  return out;
}

export function plan(): Plan {
  const entry = (name: string, runs: string): Entry => ({ name, source: join(KIT_DIR, 'entries', `${name}.ts`), runs: join(REPO, runs) });
  const entries = [
    entry('adapter', 'scripts/gpu-kit/entries/adapter.ts'),
    entry('vectors', 'src/cli.ts'),
    entry('check', 'scripts/gpu-kit/check.ts'),
    entry('bench', 'bench/run.ts'),
    // The device ceilings (bench/ceilings.ts) come with the bench: `--ceilings-only`, and in every run.
    entry('compare', 'bench/compare.ts'),
    entry('profile', 'bench/profile.ts'),
    entry('report', 'scripts/gpu-kit/report.ts'),
  ];
  const dawn = dawnAddon();
  const files: Packed[] = [
    { kitPath: 'run.sh', source: join(KIT_DIR, 'run.sh'), gzip: false, why: 'the entry point' },
    { kitPath: 'README.txt', source: join(KIT_DIR, 'README.txt'), gzip: false, why: 'what the kit is, how to run it' },
    { kitPath: 'bin/node.gz', source: process.execPath, gzip: true, why: `Node ${process.version}, this machine's binary` },
    { kitPath: 'lib/dawn.node.gz', source: dawn.addon, gzip: true, why: `Dawn (webgpu ${dawn.version}), linux-x64 only` },
    { kitPath: 'vectors/cases.json', source: join(REPO, 'test/vectors/cases.json'), gzip: false, why: "the repository's own test vectors" },
    ...cxxRuntime().map((p) => ({
      kitPath: `lib/fallback/${p.split('/').pop()!}.gz`,
      source: p,
      gzip: true,
      why: 'C++ runtime, used only where the machine has none',
    })),
    { kitPath: 'licenses/webgpu-LICENSE.md', source: join(dawn.packageDir, 'LICENSE.md'), gzip: false, why: "Dawn's bindings' licence" },
    { kitPath: 'licenses/node-LICENSE', source: '/usr/share/doc/nodejs/LICENSE', gzip: false, why: "Node's licence", optional: true },
    { kitPath: 'licenses/peft-wgsl-LICENSE', source: join(REPO, 'LICENSE'), gzip: false, why: 'this package' },
  ];
  const missing = [...entries.map((e) => e.source), ...entries.map((e) => e.runs), ...files.filter((f) => !f.optional).map((f) => f.source)].filter(
    (p) => !existsSync(p),
  );
  return { entries, files: files.filter((f) => !f.optional || existsSync(f.source)), debPackage: 'libvulkan1', missing };
}

export function sizeOf(path: string): number {
  return existsSync(path) ? statSync(path).size : 0;
}
