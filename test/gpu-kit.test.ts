// The GPU run kit's plan (scripts/gpu-kit/): everything it packs exists in this checkout, run.sh
// parses and calls only programs the kit bundles, and --dry-run lists without building. Building
// the kit compresses 100 MB and bundles the bench, a minute or more, so `npm run gpu-kit` itself is
// not run here (docs/benchmarks/gpu-kit.md says how it was tested).

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KIT_DIR, REPO, plan } from '../scripts/gpu-kit/plan.js';

describe('gpu-kit', () => {
  it('finds every program and file it packs, and only the linux-x64 dawn.node', () => {
    const p = plan();
    expect(p.missing).to.deep.equal([]);
    expect(p.entries.map((e) => e.name)).to.have.members(['adapter', 'vectors', 'check', 'bench', 'compare', 'profile', 'report']);
    const packed = p.files.map((f) => f.kitPath);
    expect(packed).to.include.members(['run.sh', 'README.txt', 'bin/node.gz', 'lib/dawn.node.gz', 'vectors/cases.json']);
    const dawn = p.files.find((f) => f.kitPath === 'lib/dawn.node.gz')!;
    expect(dawn.source).to.match(/[\\/]dist[\\/]linux-x64[\\/]dawn\.node$/);
    expect(p.files.filter((f) => f.source.endsWith('dawn.node'))).to.have.length(1);
    expect(p.files.find((f) => f.kitPath === 'bin/node.gz')!.source).to.equal(process.execPath);
  });

  it('run.sh is valid bash and runs only the bundled programs', () => {
    const runSh = join(KIT_DIR, 'run.sh');
    const syntax = spawnSync('bash', ['-n', runSh], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).to.equal(0);
    const called = new Set([...readFileSync(runSh, 'utf8').matchAll(/\$APP\/([\w-]+)\.mjs/g)].map((m) => m[1]));
    expect([...called]).to.have.members(plan().entries.map((e) => e.name));
  });

  it('--dry-run lists what it would pack and writes nothing', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'gpu-kit-test-')), 'kit');
    try {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(KIT_DIR, 'build.ts'), '--dry-run', '--out', out], {
        cwd: REPO,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).to.equal(0);
      for (const line of ['bin/node.gz', 'lib/dawn.node.gz', 'app/bench.mjs  <- bench/run.ts', 'apt-get download libvulkan1', 'vectors/cases.json'])
        expect(r.stdout).to.include(line);
      expect(existsSync(out)).to.equal(false);
    } finally {
      rmSync(join(out, '..'), { recursive: true, force: true });
    }
  });
});
