// The GPU run kit's correctness suite: every family's forward, backward and merge on a few shapes
// that are no tile multiple (and one of powers of two, where LoRMA_π takes its FFT path), on the
// device the kit runs on, against the float64 reference. mocha is not in the kit, and the unit
// tests are too many for a short run on a borrowed GPU; these cases are the tests' own check (the
// reference, F32_TOL of max |expected|) in the shape of test vectors, so the `vectors` command's
// runners and comparison do the GPU side and every family is reached through the registry.
//
//   node app/check.mjs [--matmul tiled|tiled4|tiled-vec4|tiled-vec4-128|subgroup|direct] [--quick] [--json FILE] [--vectors FILE]...
//
// --vectors re-runs a vector file under the same matmul kernels (the `vectors` command itself
// always takes the adapter's default). Exit status 1 when any output passes the tolerance.
//
// An output of the reference suite that misses F32_TOL of its own largest value still passes when
// its error is within one f32 rounding unit of its terms' magnitude (the float64 reference run on
// the inputs' absolute values): there its own scale is set by cancellation, not by the kernels.
// The single-token rank-1 shape needs it: its dB = s·g·(u·a) is one dot product times g, and with
// this suite's inputs LoRMA₊ pre's u·a is 1/869 of Σ|u_c a_c|, so f32's rounding of U alone is
// 2.8e-5 of max |dB| (no FMA: 3.5e-5, lavapipe; FMA: 4.4e-5, the H200), 0.12–0.15 ε of its terms.
// A wrong index or a missing term errs by a whole term, far past either bound.

import { readFileSync, writeFileSync } from 'node:fs';
import { Context, type Tuning } from '../../src/runtime.js';
import { MATMUL_VARIANTS } from '../../src/runtime/device.js';
import { runVectors, type CaseResult } from '../../src/vectors/index.js';
import type { VectorCase, VectorFile, VectorTensor } from '../../src/vectors/types.js';
import * as loraRef from '../../src/methods/lora/reference.js';
import * as boraRef from '../../src/methods/bora/reference.js';
import * as sboraRef from '../../src/methods/sbora/reference.js';
import * as lormaRef from '../../src/methods/lorma/reference.js';
import { F32_TOL, rand } from '../../test/helpers.js';
import { matmul, matmulEntry } from '../../src/ops/matmul.js';
import { add, matmul as refMatmul, relativeError, scale } from '../../src/reference/linalg.js';

interface Shape {
  T: number;
  n: number;
  m: number;
  r: number;
  /** BoRA's blocks: divides n and m. */
  b: number;
}

const SHAPES: readonly { shape: Shape; why: string }[] = [
  { shape: { T: 19, n: 135, m: 99, r: 5, b: 3 }, why: 'no size a multiple of a tile or of 4' },
  { shape: { T: 70, n: 256, m: 128, r: 8, b: 4 }, why: 'powers of two: LoRMA_π on its FFT path (d = 128 pre, 256 post)' },
  { shape: { T: 1, n: 33, m: 65, r: 1, b: 1 }, why: 'one token, rank 1, one block' },
];

const tensor = (shape: number[], data: ArrayLike<number>): VectorTensor => ({ shape, data: Array.from(data) });

/** f32's unit roundoff. */
const F32_EPS = 2 ** -24;

/**
 * Each reference case's outputs evaluated by the float64 reference on the absolute values of the
 * inputs (every output here is a sum of products of inputs and positive constants, so this is the
 * sum of its terms' magnitudes), by case name. Cases whose outputs go through a nonlinearity (BoRA's
 * σ transform) have none and are judged on their own scale alone.
 */
const TERMS = new Map<string, Record<string, ArrayLike<number>>>();

/** The same arguments with every array of values replaced by its absolute values (dims, scale and indices kept). */
function absolute<P extends object>(p: P): P {
  const out: Record<string, unknown> = { ...(p as Record<string, unknown>) };
  for (const [k, v] of Object.entries(p)) if (v instanceof Float32Array) out[k] = v.map(Math.abs);
  return out as P;
}

/** r distinct indices spread over [0, size), deterministic. */
function spread(r: number, size: number): number[] {
  const out: number[] = [];
  for (let q = 0; q < r; q++) out.push(Math.floor(((q + 0.5) * size) / r + q * 7) % size);
  return [...new Set(out)].length === r ? out : Array.from({ length: r }, (_, q) => q);
}

function params(method: string, s: Shape, scale: number, extra: Record<string, unknown> = {}): VectorCase['params'] {
  return { method, T: s.T, inFeatures: s.n, outFeatures: s.m, rank: s.r, scale, ...extra };
}

function loraCase(s: Shape, tag: string): VectorCase {
  const { T, n, m, r } = s;
  const p = { T, n, m, r, scale: 1.5, x: rand(T * n), w0: rand(m * n, 1 / Math.sqrt(n)), a: rand(r * n, 1 / Math.sqrt(n)), b: rand(m * r) };
  const g = rand(T * m);
  const back = loraRef.loraBackward({ ...p, g });
  const abs = absolute({ ...p, g });
  const absBack = loraRef.loraBackward(abs);
  TERMS.set(`lora ${tag}`, {
    y: loraRef.loraForward(abs),
    dx: absBack.dx,
    da: absBack.da,
    db: absBack.db,
    delta_w: loraRef.loraDelta(abs),
    merged: loraRef.loraMerge(abs),
  });
  return {
    name: `lora ${tag}`,
    params: params('lora', s, p.scale),
    inputs: { x: tensor([T, n], p.x), w0: tensor([m, n], p.w0), a: tensor([r, n], p.a), b: tensor([m, r], p.b), dy: tensor([T, m], g) },
    outputs: {
      y: tensor([T, m], loraRef.loraForward(p)),
      dx: tensor([T, n], back.dx),
      da: tensor([r, n], back.da),
      db: tensor([m, r], back.db),
      delta_w: tensor([m, n], loraRef.loraDelta(p)),
      merged: tensor([m, n], loraRef.loraMerge(p)),
    },
  };
}

/** BoRA with the default σ transform, and MELoRA's math as BoRA with a raw block-identity Σ. */
function boraCases(s: Shape, tag: string): VectorCase[] {
  const { T, n, m, r, b: blocks } = s;
  return (['exp-mav', 'raw'] as const).map((sigmaTransform) => {
    const raw = sigmaTransform === 'raw';
    const sigma = raw ? Float32Array.from(boraRef.sigmaFor({ blocks, r, variant: 'melora' })) : rand(blocks * blocks * r);
    const p = {
      T,
      n,
      m,
      r,
      blocks,
      scale: 2,
      sigmaTransform,
      sigma,
      x: rand(T * n),
      w0: rand(m * n, 1 / Math.sqrt(n)),
      a: rand(r * n, 1 / Math.sqrt(n)),
      b: rand(m * r),
    };
    const g = rand(T * m);
    const back = boraRef.boraBackward({ ...p, g });
    const outputs: Record<string, VectorTensor> = {
      y: tensor([T, m], boraRef.boraForward(p)),
      dx: tensor([T, n], back.dx),
      da: tensor([r, n], back.da),
      db: tensor([m, r], back.db),
      sigma_eff: tensor([blocks, blocks, r], boraRef.sigmaFor(p)),
      delta_w: tensor([m, n], boraRef.boraDelta(p)),
      merged: tensor([m, n], boraRef.boraMerge(p)),
    };
    if (!raw) outputs.dsigma = tensor([blocks, blocks, r], back.dsigma!);
    const name = `bora ${raw ? 'raw block-identity Σ (MELoRA)' : sigmaTransform} ${tag}`;
    if (raw) {
      // Σ enters raw here, so every output is multilinear; the σ transform of the other case is not.
      const abs = absolute({ ...p, g });
      const absBack = boraRef.boraBackward(abs);
      TERMS.set(name, {
        y: boraRef.boraForward(abs),
        dx: absBack.dx,
        da: absBack.da,
        db: absBack.db,
        sigma_eff: boraRef.sigmaFor(abs),
        delta_w: boraRef.boraDelta(abs),
        merged: boraRef.boraMerge(abs),
      });
    }
    return {
      name,
      params: params('bora', s, p.scale, { blocks, sigmaTransform }),
      inputs: {
        x: tensor([T, n], p.x),
        w0: tensor([m, n], p.w0),
        a: tensor([r, n], p.a),
        b: tensor([m, r], p.b),
        dy: tensor([T, m], g),
        [raw ? 'sigma_raw' : 'sigma']: tensor([blocks, blocks, r], sigma),
      },
      outputs,
    };
  });
}

function sboraCases(s: Shape, tag: string): VectorCase[] {
  const { T, n, m, r } = s;
  const scale = 1.5;
  const x = rand(T * n);
  const w0 = rand(m * n, 1 / Math.sqrt(n));
  const g = rand(T * m);
  const common = { x: tensor([T, n], x), w0: tensor([m, n], w0), dy: tensor([T, m], g) };
  const faIdx = spread(r, n);
  const fa = { T, n, m, r, scale, x, w0, idx: faIdx, b: rand(m * r) };
  const faBack = sboraRef.faBackward({ ...fa, g });
  const fbIdx = spread(r, m);
  const fb = { T, n, m, r, scale, x, w0, idx: fbIdx, a: rand(r * n, 1 / Math.sqrt(n)) };
  const fbBack = sboraRef.fbBackward({ ...fb, g });
  const absFa = absolute({ ...fa, g });
  const absFaBack = sboraRef.faBackward(absFa);
  TERMS.set(`sbora-fa ${tag}`, {
    y: sboraRef.faForward(absFa),
    dx: absFaBack.dx,
    db: absFaBack.db,
    delta_w: sboraRef.faDelta(absFa),
    merged: sboraRef.faMerge(absFa),
  });
  const absFb = absolute({ ...fb, g });
  const absFbBack = sboraRef.fbBackward(absFb);
  TERMS.set(`sbora-fb ${tag}`, {
    y: sboraRef.fbForward(absFb),
    dx: absFbBack.dx,
    da: absFbBack.da,
    delta_w: sboraRef.fbDelta(absFb),
    merged: sboraRef.fbMerge(absFb),
  });
  return [
    {
      name: `sbora-fa ${tag}`,
      params: params('sbora-fa', s, scale),
      inputs: { ...common, b: tensor([m, r], fa.b), index: tensor([r], faIdx) },
      outputs: {
        y: tensor([T, m], sboraRef.faForward(fa)),
        dx: tensor([T, n], faBack.dx),
        db: tensor([m, r], faBack.db),
        delta_w: tensor([m, n], sboraRef.faDelta(fa)),
        merged: tensor([m, n], sboraRef.faMerge(fa)),
      },
    },
    {
      name: `sbora-fb ${tag}`,
      params: params('sbora-fb', s, scale),
      inputs: { ...common, a: tensor([r, n], fb.a), index: tensor([r], fbIdx) },
      outputs: {
        y: tensor([T, m], sboraRef.fbForward(fb)),
        dx: tensor([T, n], fbBack.dx),
        da: tensor([r, n], fbBack.da),
        delta_w: tensor([m, n], sboraRef.fbDelta(fb)),
        merged: tensor([m, n], sboraRef.fbMerge(fb)),
      },
    },
  ];
}

function lormaCases(s: Shape, tag: string): VectorCase[] {
  const { T, n, m, r } = s;
  const out: VectorCase[] = [];
  for (const variant of ['plus', 'pi', 'none'] as const) {
    for (const order of ['pre', 'post'] as const) {
      const d = order === 'pre' ? m : n;
      const p = {
        T,
        n,
        m,
        r,
        scale: 1.5,
        variant,
        order,
        x: rand(T * n),
        w0: rand(m * n, 1 / Math.sqrt(n)),
        a: rand(r * d, 1 / Math.sqrt(d)),
        b: rand(d * r),
      };
      const g = rand(T * m);
      const back = lormaRef.lormaBackward({ ...p, g });
      const name = `lorma ${variant} ${order} (d = ${d}) ${tag}`;
      // M = s·B A (+ I) with s > 0: on absolute inputs every term, the identity's included, adds.
      // ΔW = (M − I) W0 subtracts, so it has no entry (it is judged on max |W'| already).
      const abs = absolute({ ...p, g });
      const absBack = lormaRef.lormaBackward(abs);
      TERMS.set(name, {
        y: lormaRef.lormaForward(abs),
        dx: absBack.dx,
        da: absBack.da,
        db: absBack.db,
        merged: lormaRef.lormaMerge(abs),
      });
      out.push({
        name,
        params: params('lorma', s, p.scale, { inflation: variant, order }),
        inputs: { x: tensor([T, n], p.x), w0: tensor([m, n], p.w0), a: tensor([r, d], p.a), b: tensor([d, r], p.b), dy: tensor([T, m], g) },
        outputs: {
          y: tensor([T, m], lormaRef.lormaForward(p)),
          dx: tensor([T, n], back.dx),
          da: tensor([r, d], back.da),
          db: tensor([d, r], back.db),
          delta_w: tensor([m, n], lormaRef.lormaDelta(p)),
          merged: tensor([m, n], lormaRef.lormaMerge(p)),
        },
      });
    }
  }
  return out;
}

function suiteCases(quick: boolean): VectorCase[] {
  // --quick keeps the odd shape and the FFT one: the single-token case adds little on a slow adapter.
  const shapes = quick ? SHAPES.slice(0, 2) : SHAPES;
  return shapes.flatMap(({ shape: s }) => {
    const tag = `T=${s.T} n=${s.n} m=${s.m} r=${s.r}`;
    return [loraCase(s, tag), ...boraCases(s, `${tag} b=${s.b}`), ...sboraCases(s, tag), ...lormaCases(s, tag)];
  });
}

interface Options {
  matmul?: Tuning['matmul'];
  quick: boolean;
  json?: string;
  vectors: string[];
}

function parse(argv: string[]): Options {
  const o: Options = { quick: false, vectors: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`check: ${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--json') o.json = value();
    else if (a === '--vectors') o.vectors.push(value());
    else if (a === '--matmul') {
      const v = value();
      if (!(MATMUL_VARIANTS as readonly string[]).includes(v)) throw new Error(`check: --matmul takes ${MATMUL_VARIANTS.join(', ')}; got '${v}'`);
      o.matmul = v as Tuning['matmul'];
    } else throw new Error(`check: unknown option '${a}' (options: --matmul ${MATMUL_VARIANTS.join('|')}, --quick, --json FILE, --vectors FILE)`);
  }
  return o;
}

interface Summary {
  suite: string;
  cases: number;
  passed: number;
  failed: number;
  /** The worst error of each case, by case name. */
  worst: Record<string, number | null>;
  failures: { name: string; message: string }[];
}

/**
 * Per output of a reference case: max |got − expected| in units of ε·max |terms| (TERMS), for the
 * outputs that have terms. The expected values are the case's, the got ones the run's.
 */
function roundingUnits(c: CaseResult, expected: VectorCase | undefined): Record<string, number> {
  const terms = TERMS.get(c.name);
  const out: Record<string, number> = {};
  if (!terms || !expected?.outputs || c.status !== 'ok') return out;
  for (const [name, want] of Object.entries(expected.outputs)) {
    const got = c.outputs?.[name];
    const bound = Object.hasOwn(terms, name) ? terms[name] : undefined;
    if (!got || !bound || got.data.length !== want.data.length) continue;
    let err = 0;
    for (let i = 0; i < want.data.length; i++) {
      const d = Math.abs(got.data[i] - want.data[i]);
      if (!(d <= err)) err = Number.isNaN(d) ? Infinity : d;
    }
    let magnitude = 0;
    for (let i = 0; i < bound.length; i++) magnitude = Math.max(magnitude, Math.abs(bound[i]));
    out[name] = magnitude > 0 ? err / (F32_EPS * magnitude) : err === 0 ? 0 : Infinity;
  }
  return out;
}

/** Pass/fail per case: every output within tol of its own scale, or within one rounding unit of its terms. */
function summarize(suite: string, cases: CaseResult[], tol: number, expected?: ReadonlyMap<string, VectorCase>): Summary {
  const s: Summary = { suite, cases: cases.length, passed: 0, failed: 0, worst: {}, failures: [] };
  for (const c of cases) {
    const units = roundingUnits(c, expected?.get(c.name));
    const within = (name: string, err: number) => err <= tol || (Object.hasOwn(units, name) && units[name] <= 1);
    for (const [name, err] of Object.entries(c.errors ?? {})) {
      if (err > tol && within(name, err)) {
        console.log(
          `  ${c.name} ${name}: ${err.toExponential(2)} of its own scale, ${units[name].toFixed(2)} ε of its terms' magnitude: ok (cancellation)`,
        );
      }
    }
    const errs = Object.values(c.errors ?? {});
    const worst = errs.length ? Math.max(...errs) : null;
    s.worst[c.name] = worst;
    const allWithin = Object.entries(c.errors ?? {}).every(([name, err]) => within(name, err));
    const ok = c.status === 'ok' && worst !== null && allWithin && errs.length === Object.keys(c.outputs ?? {}).length;
    if (ok) s.passed++;
    else {
      s.failed++;
      s.failures.push({
        name: c.name,
        message: c.status === 'ok' ? `worst error ${worst?.toExponential(2) ?? 'none computed'} (tol ${tol})` : (c.message ?? c.status),
      });
    }
  }
  return s;
}

// The matrix product alone, on the variant's own entry where the shape is aligned: every
// transpose, alpha + beta + the fused second product, ragged tiles, and K past several subgroup
// rounds (a GPU's subgroup size is seen here first: lavapipe's is 8).
const MATMUL_SHAPES: readonly [number, number, number][] = [
  [132, 68, 100],
  [200, 300, 516],
  [37, 45, 13],
  [68, 132, 70],
  [512, 1024, 1024],
];

async function matmulSuite(ctx: Context, quick: boolean): Promise<Summary> {
  const s: Summary = { suite: 'matmul', cases: 0, passed: 0, failed: 0, worst: {}, failures: [] };
  for (const [M, N, K] of quick ? MATMUL_SHAPES.slice(0, 2) : MATMUL_SHAPES) {
    for (const [transA, transB] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ] as const) {
      const K2 = 5;
      const name = `${M}x${N}x${K} transA=${transA} transB=${transB} (${matmulEntry(ctx, M, N, K, transA, transB)})`;
      s.cases++;
      const host = { a: rand(M * K), b: rand(K * N), a2: rand(M * K2), b2: rand(K2 * N), c: rand(M * N) };
      const t = {
        a: ctx.upload(host.a, transA ? [K, M] : [M, K]),
        b: ctx.upload(host.b, transB ? [N, K] : [K, N]),
        a2: ctx.upload(host.a2, transA ? [K2, M] : [M, K2]),
        b2: ctx.upload(host.b2, transB ? [N, K2] : [K2, N]),
        c: ctx.upload(host.c, [M, N]),
      };
      try {
        await matmul(ctx, {
          a: t.a,
          b: t.b,
          c: t.c,
          M,
          N,
          K,
          transA,
          transB,
          alpha: 0.75,
          beta: -0.5,
          second: { a: t.a2, b: t.b2, K: K2, alpha: 2 },
        });
        const want = add(
          add(scale(refMatmul(host.a, host.b, M, K, N, transA, transB), 0.75), scale(refMatmul(host.a2, host.b2, M, K2, N, transA, transB), 2)),
          scale(host.c, -0.5),
        );
        const err = relativeError(await ctx.read(t.c), want);
        s.worst[name] = err;
        if (err <= F32_TOL) s.passed++;
        else {
          s.failed++;
          s.failures.push({ name, message: `relative error ${err.toExponential(2)} (tol ${F32_TOL})` });
        }
      } catch (e) {
        s.failed++;
        s.worst[name] = null;
        s.failures.push({ name, message: e instanceof Error ? e.message : String(e) });
      } finally {
        for (const x of Object.values(t)) x.destroy();
      }
    }
  }
  console.log(`matmul: ${s.cases} cases, ${s.passed} passed, ${s.failed} failed`);
  for (const f of s.failures) console.log(`  FAILED ${f.name}: ${f.message}`);
  return s;
}

async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const ctx = await Context.create(o.matmul ? { tuning: { matmul: o.matmul } } : {});
  const started = Date.now();
  try {
    const variant = ctx.tuning.matmul;
    const adapter = ctx.adapterInfo.description || ctx.adapterInfo.vendor || 'unknown adapter';
    console.log(`check: ${adapter}, matmul ${variant}, tolerance ${F32_TOL} of max |expected|`);
    const suites: Summary[] = [];
    const run = async (suite: string, file: VectorFile, tol: number, expected?: ReadonlyMap<string, VectorCase>) => {
      const report = await runVectors(ctx, file, { check: true, tol });
      for (const line of report.lines) console.log(`  ${line}`);
      const s = summarize(suite, report.result.cases, tol, expected);
      console.log(`${suite}: ${s.cases} cases, ${s.passed} passed, ${s.failed} failed`);
      suites.push(s);
    };
    suites.push(await matmulSuite(ctx, o.quick));
    const reference = suiteCases(o.quick);
    await run('reference', { cases: reference }, F32_TOL, new Map(reference.map((c) => [c.name, c])));
    // A vector file is judged at the vectors command's own default tolerance, as `vectors --check` does.
    for (const file of o.vectors) await run(`vectors ${file}`, JSON.parse(readFileSync(file, 'utf8')) as VectorFile, 1e-5);
    const failed = suites.reduce((a, s) => a + s.failed, 0);
    const passed = suites.reduce((a, s) => a + s.passed, 0);
    console.log(`check (matmul ${variant}): ${passed} passed, ${failed} failed, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (o.json) {
      const result = {
        adapter: ctx.adapterInfo,
        matmul: variant,
        tol: F32_TOL,
        shapes: o.quick ? SHAPES.slice(0, 2) : SHAPES,
        passed,
        failed,
        suites,
      };
      writeFileSync(o.json, JSON.stringify(result, null, 2));
    }
    return failed ? 1 : 0;
  } finally {
    ctx.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`check: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(2);
  },
);
