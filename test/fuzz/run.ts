// Longer fuzz campaigns than the bounded run in `npm test`:
//
//   tsx test/fuzz/run.ts --cases N --seed S [--family F[,G...]]      (npm run fuzz -- ...)
//   tsx test/fuzz/run.ts --family F --seed S --path P               replays one shrunk failure
//   tsx test/fuzz/run.ts --list                                      the families
//
// N cases are shared evenly among the selected families (valid problems against the float64
// reference, and bad input that must be refused with a PeftError). Exit code 1 when any family
// failed; each failure prints as JSON with the seed and path that replay it.

import { parseArgs } from 'node:util';
import { gpu } from '../helpers.js';
import { report, runTarget, type TargetResult } from './campaign.js';
import { targets as allTargets } from './targets.js';

const TARGETS = allTargets('campaign');

async function main(): Promise<number> {
  const { values: args } = parseArgs({
    options: {
      cases: { type: 'string', default: '1000' },
      seed: { type: 'string' },
      family: { type: 'string' },
      path: { type: 'string' },
      timeout: { type: 'string' },
      list: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (args.list) {
    for (const t of TARGETS) console.log(t.name);
    return 0;
  }
  const wanted = args.family?.split(',').map((s) => s.trim());
  const targets = wanted ? TARGETS.filter((t) => wanted.includes(t.name)) : TARGETS;
  const unknown = wanted?.filter((w) => !TARGETS.some((t) => t.name === w)) ?? [];
  if (unknown.length || targets.length === 0) {
    console.error(`unknown family ${unknown.join(', ')}; one of: ${TARGETS.map((t) => t.name).join(', ')}`);
    return 2;
  }
  if (args.path !== undefined && targets.length !== 1) {
    console.error('--path replays one case of one family: give --family too');
    return 2;
  }
  const cases = Number(args.cases);
  const seed = args.seed === undefined ? Date.now() % 0x7fffffff : Number(args.seed);
  if (!Number.isInteger(cases) || cases < 1 || !Number.isInteger(seed)) {
    console.error(`--cases must be a positive integer and --seed an integer, got ${args.cases} and ${args.seed}`);
    return 2;
  }
  const timeoutMs = args.timeout === undefined ? undefined : Number(args.timeout);
  const ctx = await gpu();
  console.log(`fuzz: seed ${seed}, ${args.path ? `replaying path ${args.path}` : `${cases} cases`} over ${targets.map((t) => t.name).join(', ')}`);
  console.log(`device: ${ctx.adapterInfo.description || ctx.adapterInfo.vendor || 'unknown'}; started ${new Date().toISOString()}`);
  const started = performance.now();
  const results: TargetResult[] = [];
  for (const [i, t] of targets.entries()) {
    // Spread the remainder over the first families, so the total is exactly `cases`.
    const numRuns = Math.floor(cases / targets.length) + (i < cases % targets.length ? 1 : 0);
    if (numRuns === 0 && !args.path) continue;
    const t0 = performance.now();
    const onCase = (n: number) => {
      if (n % 250 === 0) console.log(`     ${t.name} ${n}/${numRuns} cases, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    };
    const r = await runTarget(ctx, t, { seed, numRuns, path: args.path, timeoutMs, onCase });
    results.push(r);
    console.log(`${r.failed ? 'FAIL' : 'ok  '} ${t.name.padEnd(12)} ${String(r.numRuns).padStart(6)} cases ${r.seconds.toFixed(1).padStart(8)} s`);
    if (r.failure) console.log(report(r.failure));
  }
  const total = results.reduce((a, r) => a + r.numRuns, 0);
  const failed = results.filter((r) => r.failed);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `fuzz: ${total} cases, ${failed.length} failing families (${failed.map((r) => r.target).join(', ') || 'none'}), ${seconds.toFixed(0)} s, seed ${seed}`,
  );
  ctx.destroy();
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(3);
  },
);
