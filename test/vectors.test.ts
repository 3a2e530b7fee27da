// `peft-wgsl vectors` against the repository's own PyTorch-computed cases (test/vectors/cases.json,
// written by scripts/gen-vectors.py), and the command's contract: the result file's format,
// --check's exit status, and its errors.

import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runVectors, vectorRunner, type CaseResult } from '../src/vectors/index.js';
import { METHODS } from '../src/methods/registry.js';
import type { VectorFile } from '../src/vectors/types.js';
import { gpu } from './helpers.js';

const CASES = join(import.meta.dirname, 'vectors', 'cases.json');
const run = promisify(execFile);
const cli = (args: string[]) =>
  run(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'src', 'cli.ts'), ...args]).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

function cases(): VectorFile {
  return JSON.parse(readFileSync(CASES, 'utf8')) as VectorFile;
}

describe('vectors', () => {
  it('the case file covers every method and variant the runners support', () => {
    const file = cases();
    expect(file.generator).to.match(/^scripts\/gen-vectors\.py, torch /);
    const variants = new Set(
      file.cases.map((c) => {
        const p = c.params;
        if (p.method === 'bora') return `bora ${String(p.sigmaTransform)}`;
        if (p.method === 'lorma') return `lorma ${String(p.inflation)} ${String(p.order)}`;
        return p.method;
      }),
    );
    const wanted = [
      ...[...new Set(METHODS.map((m) => m.vectors?.method))].filter((m): m is string => !!m && m !== 'bora' && m !== 'lorma'),
      ...['exp-mav', 'exp', 'mav', 'raw'].map((t) => `bora ${t}`),
      ...['plus', 'pi', 'none'].flatMap((i) => ['pre', 'post'].map((o) => `lorma ${i} ${o}`)),
    ];
    for (const v of wanted) expect(variants.has(v), `no case for ${v}`).to.equal(true);
    // Every family with an f16 and an NF4 base, NF4 at block sizes 32, 64 and 4096 with a partial
    // last block, and the quantizer alone.
    const formats = new Set(file.cases.map((c) => `${c.params.method} ${String(c.params.baseFormat)}`));
    for (const method of ['lora', 'bora', 'sbora-fa', 'sbora-fb', 'lorma']) {
      for (const f of ['f16', 'nf4']) expect(formats.has(`${method} ${f}`), `no ${f} case for ${method}`).to.equal(true);
    }
    const nf4 = file.cases.filter((c) => c.params.baseFormat === 'nf4' || c.params.method === 'quantize-nf4');
    for (const block of [32, 64, 4096])
      expect(
        nf4.some((c) => c.params.blockSize === block),
        `block ${block}`,
      ).to.equal(true);
    for (const c of nf4) {
      const size = c.params.outFeatures * c.params.inFeatures;
      expect(size % (c.params.blockSize as number), `${c.name}: a partial last block`).to.not.equal(0);
    }
    expect(file.cases.filter((c) => c.params.method === 'quantize-nf4')).to.have.length.at.least(4);
  });

  it('compares quantize-nf4 outputs exactly and reports w0Bytes', async () => {
    const ctx = await gpu();
    const file = cases();
    const quant = file.cases.filter((c) => c.params.method === 'quantize-nf4');
    const report = await runVectors(ctx, { cases: quant }, { check: true });
    expect(report.failed, report.lines.join('\n')).to.equal(false);
    for (const c of report.result.cases) {
      const size = c.params.outFeatures * c.params.inFeatures;
      expect(c.w0Bytes, c.name).to.equal(Math.ceil(size / 8) * 4 + Math.ceil(size / (c.params.blockSize as number)) * 4);
      for (const name of ['w0_codes', 'w0_absmax', 'w0_dequant']) expect(c.errors?.[name], `${c.name}.${name}`).to.equal(0);
    }
    // One absmax off by an f32 ulp (a relative error of 6e-8, far inside 1e-5) fails the check.
    const off = structuredClone(quant[1]);
    const amax = off.outputs!.w0_absmax.data;
    amax[0] = new Float32Array([amax[0] * (1 + 2 ** -23)])[0];
    const offReport = await runVectors(ctx, { cases: [off] }, { check: true });
    expect(offReport.failed).to.equal(true);
    expect(offReport.lines.join('\n')).to.match(/w0_absmax: \S+ FAIL \(not exact\)/);
    // An f16 case whose w0 f16 cannot hold exactly is refused, not rounded.
    const f16 = structuredClone(file.cases.find((c) => c.params.baseFormat === 'f16')!);
    f16.inputs.w0.data[3] += 2 ** -20;
    const bad = await runVectors(ctx, { cases: [f16] }, { check: true });
    expect(bad.result.cases[0].status).to.equal('error');
    expect(bad.result.cases[0].message).to.match(/input 'w0'\[3\] is .* which f16 does not hold exactly/);
  });

  it('computes every case within 1e-5, every method supported', async () => {
    const ctx = await gpu();
    const file = cases();
    const report = await runVectors(ctx, file, { check: true, tol: 1e-5 });
    expect(report.failed, report.lines.join('\n')).to.equal(false);
    expect(report.result.cases).to.have.length(file.cases.length);
    // The registry's methods answer the format's five method names, LoRMA's split by inflation.
    expect([...new Set(METHODS.map((m) => m.vectors?.method).filter(Boolean))].sort((a, b) => String(a).localeCompare(String(b)))).to.deep.equal([
      'bora',
      'lora',
      'lorma',
      'sbora-fa',
      'sbora-fb',
    ]);
    for (const inflation of ['plus', 'pi', 'none']) expect(vectorRunner({ method: 'lorma', inflation }), inflation).to.be.a('function');
    // Case kinds that are no adapter method have their own runners: attention and the quantizer.
    expect(vectorRunner({ method: 'attention' })).to.be.a('function');
    expect(vectorRunner({ method: 'no-such-method' })).to.equal(undefined);
    for (const [i, c] of report.result.cases.entries()) {
      const expected = file.cases[i];
      expect(c.status, `${c.name}: ${c.message}`).to.equal('ok');
      // Every output the file has was computed, with its shape, and checked.
      for (const [name, t] of Object.entries(expected.outputs ?? {})) {
        expect(c.outputs?.[name]?.shape, `${c.name}.${name}`).to.deep.equal(t.shape);
        expect(c.errors?.[name], `${c.name}.${name}`).to.be.a('number').and.at.most(1e-5);
      }
    }
    // An unknown method is reported, not guessed at.
    const odd = structuredClone(file.cases[0]);
    odd.name = 'dora-case';
    odd.params.method = 'dora';
    const unsupported = await runVectors(ctx, { cases: [odd] }, { check: true });
    expect(unsupported.result.cases[0].status).to.equal('unsupported');
    expect(unsupported.result.cases[0].message).to.match(/method 'dora' is not supported/);
  });

  it('fails --check when an output is off, and reports a malformed case as an error', async () => {
    const ctx = await gpu();
    const file = cases();
    const lora = file.cases.find((c) => c.name === 'lora')!;
    const off = structuredClone(lora);
    off.name = 'lora-off';
    off.outputs!.y.data[0] += 0.5;
    const bad = structuredClone(lora);
    bad.name = 'lora-bad';
    bad.inputs.x.shape = [2, 10];
    // ΔW is judged on the scale of W' (see errorAgainst): an error of 1e-4 of max |W'| still fails.
    const maxMerged = Math.max(...off.outputs!.merged.data.map(Math.abs));
    off.outputs!.delta_w.data[3] += 1e-4 * maxMerged;
    const report = await runVectors(ctx, { cases: [off, bad] }, { check: true });
    expect(report.failed).to.equal(true);
    expect(report.lines.join('\n')).to.match(/lora-off y: .* FAIL/);
    expect(report.lines.join('\n')).to.match(/lora-off delta_w: \S+ \(of max \|merged\|\) FAIL/);
    expect(report.lines.join('\n')).to.match(/lora-off dx: \S+ ok/);
    const badResult = report.result.cases.find((c) => c.name === 'lora-bad')!;
    expect(badResult.status).to.equal('error');
    expect(badResult.message).to.match(/input 'x' has shape \[2, 10\], expected \[3, 10\]/);
  });

  it('the command writes the result file and exits 0, 1 on a failed check, 2 on bad usage', async function () {
    this.timeout(180000);
    const dir = mkdtempSync(join(tmpdir(), 'peft-vectors-'));
    const ok = await cli(['vectors', CASES, '--out', join(dir, 'r.json'), '--check']);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/^lora y: \S+ ok$/m);
    const result = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as { cases: CaseResult[] };
    expect(result.cases.map((c) => c.status)).to.deep.equal(cases().cases.map(() => 'ok'));
    expect(result.cases.find((c) => c.name === 'lora')?.outputs?.y.shape).to.deep.equal([3, 7]);

    const file = cases();
    file.cases = file.cases.filter((c) => c.params.method === 'lora');
    file.cases.find((c) => c.name === 'lora')!.outputs!.db.data[1] *= 1.01;
    writeFileSync(join(dir, 'off.json'), JSON.stringify(file));
    const failed = await cli(['vectors', join(dir, 'off.json'), '--out', join(dir, 'r2.json'), '--check']);
    expect(failed.code).to.equal(1);
    expect(failed.stdout).to.match(/^lora db: \S+ FAIL/m);

    const usage = await cli(['vectors', CASES]);
    expect(usage.code).to.equal(2);
    expect(usage.stderr).to.match(/missing --out RESULT/);

    const help = await cli(['--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/docs\/vectors\.md/);
  });
});
