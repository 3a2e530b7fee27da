// bench/profile.ts (npm run bench:profile): every compute pass of a phase gets a timestamp pair and
// the passes are summed by label. Run as the user runs it, on a small shape; the counts of passes
// per kernel are fixed by the code, so they are asserted exactly.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Row {
  kernel: string;
  passesPerRun: number;
  msPerRun: number;
  share: number;
}

describe('bench:profile', () => {
  it('splits a step into its kernels: the base layer into its two matmuls, LoRMA_π (FFT path) into transforms and products', function () {
    this.timeout(120_000);
    const dir = mkdtempSync(join(tmpdir(), 'profile-test-'));
    try {
      const json = join(dir, 'p.json');
      const r = spawnSync(
        process.execPath,
        [
          '--import',
          'tsx',
          'bench/profile.ts',
          '--methods',
          'base,lorma-pi',
          '--phase',
          'step',
          '--T',
          '8',
          '--n',
          '128',
          '--r',
          '2',
          '--runs',
          '2',
          '--json',
          json,
        ],
        { encoding: 'utf8', env: { ...process.env } },
      );
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.include('## base').and.to.include('## lorma-pi');
      const out = JSON.parse(readFileSync(json, 'utf8')) as { profiles: { method: string; spanMs: number; sumMs: number; kernels: Row[] }[] };
      const [base, pi] = out.profiles;
      // Y = X W0ᵀ and dX = G W0, both 8 × 128 × 128.
      expect(base.kernels.map((k) => [k.kernel, k.passesPerRun])).to.deep.equal([['matmul 8x128x128', 2]]);
      // d = 128 takes the FFT on a CPU adapter, in two token chunks of 4 (T = 8, r = 2: one pair of
      // rows of A per transform): the same two matmuls, then per chunk the products and the partial
      // inverse twice (the forward's, and again for dB) and the backward's kernels once.
      const passes = Object.fromEntries(pi.kernels.map((k) => [k.kernel, k.passesPerRun]));
      expect(passes['matmul 8x128x128']).to.equal(2);
      for (const k of ['lorma.pi.fft_corr_spec', 'fft inverse partial 128x4']) expect(passes[k], k).to.equal(4);
      for (const k of ['lorma.pi.fft_mix_out', 'lorma.pi.fft_pack_h', 'lorma.pi.fft_db', 'lorma.pi.fft_du_spec', 'fft partial 128x4'])
        expect(passes[k], k).to.equal(2);
      for (const p of [base, pi]) {
        expect(p.kernels.reduce((s, k) => s + k.share, 0)).to.be.closeTo(1, 1e-9);
        expect(p.sumMs).to.be.at.most(p.spanMs * 1.000001);
        for (const k of p.kernels) expect(k.msPerRun).to.be.at.least(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an unknown phase, matmul kernel, method or option, naming it', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'bench/profile.ts', ...args], { encoding: 'utf8' });
    const cases: [string[], RegExp][] = [
      [['--phase', 'sideways'], /profile: --phase takes forward, backward, step, adapterForward, adapterBackward; got sideways/],
      [['--matmul', 'fastest'], /profile: --matmul takes .*direct.*; got fastest/],
      [['--methods', 'nora'], /nora: no such method \(known: base, lora/],
      [['--T', '0'], /profile: --T must be a positive integer, got 0/],
      [['--colour', 'red'], /profile: unknown option --colour/],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.status, args.join(' ')).to.equal(1);
      expect(r.stderr).to.match(message);
    }
  });
});
