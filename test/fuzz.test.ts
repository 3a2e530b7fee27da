// The bounded fuzz run inside `npm test`: a few hundred random valid problems of every family
// against the float64 reference and random bad input, from a fixed seed, plus every (call,
// breakage) pair of the bad-input fuzzer once. Longer campaigns: `npm run fuzz` (test/fuzz/run.ts,
// docs/reliability.md). A failure prints the shrunk case and the command that replays it.

import { expect } from 'chai';
import { gpu } from './helpers.js';
import { report, runTarget } from './fuzz/campaign.js';
import { allBadCases, closeInvalid, invalidTarget } from './fuzz/invalid.js';
import { targets } from './fuzz/targets.js';

const SEED = 20261204;

// Cases per family: BoRA and SBoRA fewer, as their new specialisations cost a pipeline compile
// each (the bounded profile keeps them to ones the family tests compiled on the shared context).
const RUNS: Record<string, number> = { matmul: 40, dropout: 20, lora: 40, bora: 8, sbora: 12, lorma: 40, nn: 40, adamw: 15, 'bad-input': 80 };

describe('fuzzing against the float64 reference (bounded run, fixed seed)', () => {
  after(() => closeInvalid());

  for (const t of targets('bounded')) {
    it(`${t.name}: ${RUNS[t.name]} random cases, seed ${SEED}`, async () => {
      const r = await runTarget(await gpu(), t, { seed: SEED, numRuns: RUNS[t.name] });
      expect(r.failed, r.failure && report(r.failure)).to.equal(false);
      expect(r.numRuns).to.equal(RUNS[t.name]);
    });
  }

  it('bad input: every (call, breakage) pair once gives a PeftError naming the call and an argument', async () => {
    const ctx = await gpu();
    const failures: string[] = [];
    const cases = allBadCases();
    for (const c of cases) {
      try {
        await invalidTarget.run(ctx, c);
      } catch (e) {
        failures.push(`${c.call} / ${c.broken.kind} ${c.broken.arg}: ${(e as Error).message}`);
      }
    }
    expect(cases.length).to.be.above(500);
    expect(failures, failures.join('\n')).to.deep.equal([]);
  });
});
