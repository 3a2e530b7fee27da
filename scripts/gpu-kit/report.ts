// The GPU run kit's last step: gathers what run.sh's steps wrote into OUTDIR/REPORT.md (to read, and
// to paste from into docs/benchmarks/) and OUTDIR/summary.json. Reads files only; no GPU.
//
//   node app/report.mjs OUTDIR KITDIR QUICK(0|1)
//
// Exit status 0 once the report is written (run.sh counts the steps' failures itself), 2 if not.

import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchResult, BenchRow } from '../../bench/report.js';

interface Step {
  name: string;
  exit: number;
  seconds: number;
}

interface CheckResult {
  matmul: string;
  tol: number;
  passed: number;
  failed: number;
  suites: { suite: string; cases: number; passed: number; failed: number; failures: { name: string; message: string }[] }[];
}

interface VectorsResult {
  cases: { name: string; status: string; message?: string; errors?: Record<string, number> }[];
}

interface AdapterInfo {
  adapter: { vendor: string; architecture: string; device: string; description: string; isCpu: boolean };
  defaultTuning: { matmul: string };
  features: string[];
  limits: Record<string, number>;
}

function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

const fmt = (v: number | null | undefined, d = 2) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
const pct = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : `${(v * 100).toFixed(0)} %`);

function main(argv: string[]): number {
  const [out, kit, quickArg] = argv;
  if (!out || !kit) throw new Error('usage: report.mjs OUTDIR KITDIR [QUICK]');
  const quick = quickArg === '1';
  const L: string[] = [];
  const manifest = readJson<{ built: string; commit: string; node: string; webgpu: string; vulkanLoader: string }>(join(kit, 'MANIFEST.json'));
  const adapter = readJson<AdapterInfo>(join(out, 'adapter.json'));
  const steps: Step[] = existsSync(join(out, 'steps.tsv'))
    ? readFileSync(join(out, 'steps.tsv'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [name, exit, seconds] = line.split('\t');
          return { name, exit: Number(exit), seconds: Number(seconds) };
        })
    : [];
  const failedSteps = steps.filter((s) => s.exit !== 0);

  L.push('# peft-wgsl GPU run kit report', '');
  const a = adapter?.adapter;
  L.push(
    `- Adapter: **${a ? a.description || `${a.vendor} ${a.architecture}`.trim() || 'unknown' : 'none found'}**` +
      (a
        ? ` (vendor ${a.vendor || '?'}, architecture ${a.architecture || '?'}; ${a.isCpu ? 'a CPU adapter' : 'a GPU'}; default matmul \`${adapter!.defaultTuning.matmul}\`)`
        : ''),
  );
  if (adapter) {
    L.push(`- Features: ${adapter.features.join(', ') || 'none'}`);
    const lim = adapter.limits;
    L.push(
      `- Limits: maxStorageBufferBindingSize ${lim.maxStorageBufferBindingSize}, maxBufferSize ${lim.maxBufferSize}, maxComputeWorkgroupStorageSize ${lim.maxComputeWorkgroupStorageSize}, maxComputeInvocationsPerWorkgroup ${lim.maxComputeInvocationsPerWorkgroup}, maxComputeWorkgroupSizeX ${lim.maxComputeWorkgroupSizeX}`,
    );
  }
  if (manifest)
    L.push(`- Kit: built ${manifest.built} from ${manifest.commit}; Node ${manifest.node}, webgpu ${manifest.webgpu}, ${manifest.vulkanLoader}`);
  L.push(
    `- Run: ${quick ? '`--quick` (a tiny subset: sizes below are not the issue figures)' : 'full'}; ${steps.length} steps, ${failedSteps.length} failed, ${steps.reduce((s, x) => s + x.seconds, 0)} s`,
    '',
  );

  L.push('## Steps', '', '| step | result | seconds |', '| --- | --- | --- |');
  for (const s of steps)
    L.push(`| ${s.name} | ${s.exit === 0 ? 'ok' : s.exit === 124 ? 'FAILED (timed out)' : `FAILED (exit ${s.exit})`} | ${s.seconds} |`);
  L.push('', 'The whole output is in `run.log`.', '');

  L.push('## Correctness', '');
  const vectorFiles = readdirSync(out).filter((f) => /^vectors-.*\.json$/.test(f));
  const vectorsSummary: Record<string, { cases: number; failed: number; worst: number | null }> = {};
  for (const f of vectorFiles) {
    const v = readJson<VectorsResult>(join(out, f));
    if (!v) continue;
    const errs = v.cases.flatMap((c) => Object.values(c.errors ?? {}));
    const worst = errs.length ? Math.max(...errs) : null;
    const failed = v.cases.filter((c) => c.status !== 'ok' || Object.values(c.errors ?? {}).some((e) => !(e <= 1e-5))).length;
    vectorsSummary[f] = { cases: v.cases.length, failed, worst };
    L.push(
      `- \`vectors --check\` (${f}): ${v.cases.length} cases, ${failed} failed; worst error ${worst === null ? '—' : worst.toExponential(2)} (tolerance 1e-5)`,
    );
  }
  const checks: Record<string, CheckResult> = {};
  for (const f of readdirSync(out).filter((x) => /^check-.*\.json$/.test(x))) {
    const c = readJson<CheckResult>(join(out, f));
    if (!c) continue;
    checks[c.matmul] = c;
    L.push(
      `- correctness suite, matmul \`${c.matmul}\`: ${c.passed} passed, ${c.failed} failed (` +
        c.suites.map((s) => `${s.suite}: ${s.passed}/${s.cases}`).join('; ') +
        ')',
    );
    for (const s of c.suites) for (const x of s.failures) L.push(`  - FAILED ${x.name}: ${x.message}`);
  }
  if (!vectorFiles.length && !Object.keys(checks).length) L.push('Nothing was checked: see the steps above.');
  L.push('');

  const benches: Record<string, BenchResult> = {};
  for (const f of readdirSync(out).filter((x) => /^bench-.*\.json$/.test(x))) {
    const b = readJson<BenchResult>(join(out, f));
    if (b) benches[f.slice('bench-'.length, -'.json'.length)] = b;
  }
  const ceil = Object.values(benches).find((b) => b.ceilings)?.ceilings;
  if (ceil) {
    L.push('## Device ceilings', '');
    L.push(
      `f32 FMA ${fmt(ceil.peakGflops)} GFLOP/s${ceil.computeF16 ? `, f16 FMA ${fmt(ceil.computeF16.best)} GFLOP/s` : ''}; streaming ${fmt(ceil.bandwidthGBs)} GB/s (read ${fmt(ceil.read.best)}, copy ${fmt(ceil.copy.best)}); ridge ${fmt(ceil.ridge)} FLOP/B.`,
      '',
    );
  }

  const variants = Object.keys(benches);
  if (variants.length) {
    L.push('## Bench', '');
    for (const v of variants) {
      const b = benches[v];
      L.push(`- \`${v}\`: ${b.mode} run, ${b.rows.length} rows, ${b.failures.length} failures; [bench-${v}/${b.mode}.md](bench-${v}/${b.mode}.md)`);
    }
    L.push('');
    const source = benches.tiled ?? benches[variants[0]];
    const mm = source.rows.filter((r) => r.phase === 'matmul' && r.impl === 'peft-wgsl');
    if (mm.length) {
      L.push(`### The base product X W0ᵀ in each matmul kernel (${shapeOf(mm[0])})`, '');
      L.push('| kernel | median ms | GFLOP/s | % of roof (bound) |', '| --- | --- | --- | --- |');
      for (const r of mm)
        L.push(`| ${r.variant ?? r.method} | ${fmt(r.medianMs, 3)} | ${fmt(r.gflops)} | ${pct(r.roofShare)} ${r.bound ? `(${r.bound})` : ''} |`);
      L.push('');
    }
    const ours = (b: BenchResult | undefined) => (b ? b.rows.filter((r) => r.impl === 'peft-wgsl' && r.phase !== 'matmul') : []);
    const tiled = ours(benches.tiled);
    const direct = ours(benches.direct);
    if (tiled.length && direct.length) {
      L.push(`### Every method on \`tiled\` against \`direct\` (${shapeOf(tiled[0])})`, '');
      L.push(
        '| method | phase | tiled ms | direct ms | tiled / direct | tiled GFLOP/s | tiled % of roof | ×LoRA (tiled) |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
      );
      for (const r of tiled) {
        const d = direct.find((x) => x.method === r.method && x.phase === r.phase && x.r === r.r && x.b === r.b);
        L.push(
          `| ${r.method} | ${r.phase} | ${fmt(r.medianMs, 3)} | ${fmt(d?.medianMs, 3)} | ${fmt(d ? r.medianMs / d.medianMs : null)} | ${fmt(r.gflops)} | ${pct(r.roofShare)} | ${fmt(r.vsLora)} |`,
        );
      }
      L.push('');
    }
    const peers = (benches.tiled ?? benches[variants[0]]).rows.filter((r) => r.impl !== 'peft-wgsl');
    if (peers.length) {
      L.push('### Peers on the same device', '');
      L.push(
        '| peer | method | phase | peer ms | ours ms (paired) | ours × faster | rel. error vs ours |',
        '| --- | --- | --- | --- | --- | --- | --- |',
      );
      for (const r of peers)
        L.push(
          `| ${r.impl} | ${r.method} | ${r.phase} | ${fmt(r.medianMs, 3)} | ${fmt(r.pairedOursMs, 3)} | ${fmt(r.oursSpeedup)} | ${r.relErr == null ? '—' : r.relErr.toExponential(1)} |`,
        );
      L.push('');
    }
  }

  const compares = readdirSync(out).filter((f) => /^compare-.*\.md$/.test(f));
  if (compares.length) {
    L.push('## bench:compare (interleaved rounds; ratios against the first method, LoRA)', '');
    // compare prints its settings as a '# ' title line; here it is a paragraph under the variant's heading.
    for (const f of compares)
      L.push(`### ${f.slice('compare-'.length, -'.md'.length)}`, '', readFileSync(join(out, f), 'utf8').trim().replace(/^# /gm, ''), '');
  }

  if (existsSync(join(out, 'profile.md'))) {
    L.push(
      "## Kernel profile of each method's step (bench:profile)",
      '',
      readFileSync(join(out, 'profile.md'), 'utf8').trim().replace(/^# /gm, '').replace(/^## /gm, '### '),
      '',
    );
  }

  L.push(
    '## Files',
    '',
    ...readdirSync(out)
      .sort()
      .map((f) => `- ${f}`),
    '',
  );
  writeFileSync(join(out, 'REPORT.md'), L.join('\n'));
  const summary = {
    adapter: adapter?.adapter ?? null,
    kit: manifest,
    quick,
    steps,
    vectors: vectorsSummary,
    check: Object.fromEntries(Object.entries(checks).map(([k, c]) => [k, { passed: c.passed, failed: c.failed }])),
    ceilings: ceil ? { peakGflops: ceil.peakGflops, bandwidthGBs: ceil.bandwidthGBs, ridge: ceil.ridge } : null,
  };
  writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2));
  console.log(`report: ${join(out, 'REPORT.md')} (${steps.length} steps, ${failedSteps.length} failed)`);
  return 0;
}

function shapeOf(r: BenchRow): string {
  return `T=${r.T} n=${r.n} m=${r.m}${r.r === null ? '' : ` r=${r.r}`}${r.b === null ? '' : ` b=${r.b}`}`;
}

try {
  process.exit(main(process.argv.slice(2)));
} catch (e) {
  console.error(`report: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}
