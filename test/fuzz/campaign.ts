// Runs fuzz targets with fast-check: a fixed seed per run, a per-case timeout, and on failure the
// shrunk counterexample printed as JSON with the seed, path and command that replay it.

import fc from 'fast-check';
import type { Context } from '../../src/runtime.js';
import type { FuzzTarget } from './valid.js';

export interface TargetRun {
  seed: number;
  /** Cases to run (ignored when `path` replays one). */
  numRuns: number;
  /** fast-check's counterexample path: replays that case (and shrinks on from it). */
  path?: string;
  /** A case taking longer fails as a hang. */
  timeoutMs?: number;
  /** Called after each passing case with the count so far (progress of long campaigns). */
  onCase?: (done: number) => void;
}

export interface TargetResult {
  target: string;
  failed: boolean;
  numRuns: number;
  numSkips: number;
  seconds: number;
  /** The shrunk failure, as `report` prints it. */
  failure?: FailureReport;
}

export interface FailureReport {
  target: string;
  seed: number;
  path: string;
  counterexample: unknown;
  error: string;
  shrinks: number;
  replay: string;
}

// FUZZ_VERBOSE=1 prints every case and its time (to see which problems are slow).
const VERBOSE = !!process.env.FUZZ_VERBOSE;

/**
 * The per-case timeout: a case's first use of a BoRA specialisation compiles pipelines that take
 * lavapipe tens of seconds each on loaded cores; a hang runs until the timeout.
 */
export const CASE_TIMEOUT_MS = 300_000;

/**
 * Runs one target. An unhandled rejection while it runs fails the case that was running: the
 * public API must reject, never throw asynchronously elsewhere.
 */
export async function runTarget(ctx: Context, t: FuzzTarget, o: TargetRun): Promise<TargetResult> {
  const started = performance.now();
  const stray: unknown[] = [];
  let done = 0;
  const onStray = (e: unknown) => stray.push(e);
  process.on('unhandledRejection', onStray);
  try {
    const property = fc.asyncProperty(t.arbitrary, async (p) => {
      const before = stray.length;
      const t0 = performance.now();
      await t.run(ctx, p);
      if (VERBOSE) console.log(`  ${t.name} ${(performance.now() - t0).toFixed(0)} ms ${JSON.stringify(p)}`);
      // Let rejections of promises the call dropped surface before judging the case.
      await new Promise((resolve) => setImmediate(resolve));
      if (stray.length > before) throw new Error(`unhandled rejection during the case: ${describe(stray[before])}`);
      o.onCase?.(++done);
    });
    const details = await fc.check(property, {
      seed: o.seed,
      numRuns: o.path ? 1 : o.numRuns,
      path: o.path,
      timeout: o.timeoutMs ?? CASE_TIMEOUT_MS,
      // Generators filter (ranks against sizes): allow that many discarded draws per case.
      maxSkipsPerRun: 100,
    });
    const result: TargetResult = {
      target: t.name,
      failed: details.failed,
      numRuns: details.numRuns,
      numSkips: details.numSkips,
      seconds: (performance.now() - started) / 1000,
    };
    if (details.failed) {
      const path = details.counterexamplePath ?? '';
      result.failure = {
        target: t.name,
        seed: details.seed,
        path,
        counterexample: details.counterexample?.[0],
        error: describe(details.errorInstance),
        shrinks: details.numShrinks,
        replay: `npm run fuzz -- --family ${t.name} --seed ${details.seed} --path ${path}`,
      };
    }
    return result;
  } finally {
    process.off('unhandledRejection', onStray);
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** The failure as the JSON block the runner and the test print. */
export function report(f: FailureReport): string {
  return `fuzz failure (shrunk ${f.shrinks} times); replay with: ${f.replay}\n${JSON.stringify(f, null, 2)}`;
}
