// `peft-wgsl vectors`: runs every case of a test-vector file on the GPU, writes what it computed
// and, with check, compares it with the file's own outputs.
//
// The rule for check: every case must compare at least one output. A case that cannot (its
// method is unknown to this version, it has no expected outputs, it is malformed) fails the run
// with a line naming it, and a run that compared nothing at all fails with a line saying so, so
// that a passing check always means something was checked. Without check, a run in which no
// case ran fails the same way.

import type { Context } from '../runtime.js';
import { relativeError } from '../numeric.js';
import { METHODS } from '../methods/registry.js';
import { PeftError } from '../validate.js';
import { runQuantizeNf4 } from '../quant/vectors.js';
import { runAttention } from './attention.js';
import {
  ADAPTER_PARAMS,
  CaseError,
  caseHeader,
  checkCase,
  checkVectorFile,
  type CaseParams,
  type RunInfo,
  type VectorCase,
  type VectorFile,
  type VectorRunner,
  type VectorTensor,
} from './types.js';

/** A kind of case that is not an adapter method's: its runner, params, and outputs compared exactly. */
interface OtherKind extends CaseParams {
  method: string;
  run: VectorRunner;
  exact?: readonly string[];
}

// Cases of the format beside the registry's methods, one line each.
const OTHER_KINDS: readonly OtherKind[] = [
  {
    method: 'quantize-nf4',
    run: runQuantizeNf4,
    dims: ['outFeatures', 'inFeatures', 'blockSize'],
    scale: false,
    exact: ['w0_codes', 'w0_absmax', 'w0_dequant'],
  },
  { method: 'attention', run: runAttention, dims: ['batch', 'T', 'heads', 'headDim'], scale: true },
];

/**
 * How a case runs: the registry's method whose `vectors.method` is the case's `params.method` and
 * that accepts its params (LoRMA's two descriptors split the format's `lorma` cases by inflation),
 * else one of OTHER_KINDS. Undefined: the case is reported 'unsupported'.
 */
function caseKind(params: Record<string, unknown> | undefined): (CaseParams & { run: VectorRunner; exact?: readonly string[] }) | undefined {
  const method = params?.method;
  if (typeof method !== 'string') return undefined;
  const run = METHODS.find((m) => m.vectors?.method === method && (m.vectors.accepts?.(params!) ?? true))?.vectors?.run;
  if (run) return { ...ADAPTER_PARAMS, run };
  return OTHER_KINDS.find((k) => k.method === method);
}

/** The runner for a case (see caseKind); undefined when this version does not run its method. */
export function vectorRunner(params: Record<string, unknown> | undefined): VectorRunner | undefined {
  return caseKind(params)?.run;
}

export interface CaseResult extends VectorCase {
  status: 'ok' | 'unsupported' | 'error';
  message?: string;
  /** Per output: max |got − expected| / max |expected| (only with check). */
  errors?: Record<string, number>;
  /** For a case with a base format (or a quantize-nf4 case): the base weight's device bytes. */
  w0Bytes?: number;
}

export interface RunReport {
  result: Omit<VectorFile, 'cases'> & { cases: CaseResult[] };
  failed: boolean;
  lines: string[];
  /** How many outputs were compared with the file's (0 without check). */
  checked: number;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Runs a parsed vectors file; `file` is checked here, so it may be anything JSON.parse returned. */
export async function runVectors(ctx: Context, file: unknown, opts: { check?: boolean; tol?: number } = {}): Promise<RunReport> {
  const { cases: raws } = checkVectorFile(file);
  const tol = opts.tol ?? 1e-5;
  const check = opts.check === true;
  const lines: string[] = [];
  let failed = false;
  let ran = 0;
  let checked = 0;
  const cases: CaseResult[] = [];
  for (const [i, raw] of raws.entries()) {
    // What the result file echoes back for a case that did not run: its own fields, as given.
    const echo = (name: string): VectorCase => {
      const r = (raw && typeof raw === 'object' ? raw : {}) as Partial<VectorCase>;
      return { name, params: r.params as VectorCase['params'], inputs: r.inputs as VectorCase['inputs'] };
    };
    let c: VectorCase;
    let kind: ReturnType<typeof caseKind>;
    try {
      const { name, params } = caseHeader(raw, i);
      kind = caseKind(params);
      if (!kind) {
        const message = `method '${String(params.method)}' is not supported by this version`;
        cases.push({ ...echo(name), outputs: {}, status: 'unsupported', message });
        if (check) failed = true;
        lines.push(`${name}: unsupported (method '${String(params.method)}')${check ? ': nothing checked' : ''}`);
        continue;
      }
      c = checkCase(raw, i, check, kind);
    } catch (e) {
      if (!(e instanceof CaseError)) throw e;
      failed = true;
      cases.push({ ...echo(e.caseName), outputs: {}, status: 'error', message: e.message });
      lines.push(`${e.caseName}: error: ${e.message}`);
      continue;
    }
    let outputs: Record<string, VectorTensor>;
    const info: RunInfo = {};
    try {
      outputs = await kind.run(ctx, c, info);
    } catch (e) {
      failed = true;
      const message = e instanceof Error ? e.message : String(e);
      cases.push({ ...c, outputs: {}, status: 'error', message });
      lines.push(`${c.name}: error: ${message}`);
      continue;
    }
    ran++;
    if (info.w0Bytes !== undefined) {
      // A quantize-nf4 case has no baseFormat: its weight is the NF4 it made.
      const format = typeof c.params.baseFormat === 'string' ? c.params.baseFormat : 'nf4';
      lines.push(`${c.name}: w0 ${format}, ${info.w0Bytes} bytes on the device`);
    }
    const res: CaseResult = { ...c, outputs, status: 'ok', ...(info.w0Bytes !== undefined ? { w0Bytes: info.w0Bytes } : {}) };
    if (check) {
      const errors = Object.create(null) as Record<string, number>;
      res.errors = errors;
      const expectedOutputs = c.outputs!;
      for (const [name, expected] of Object.entries(expectedOutputs)) {
        const got = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
        if (!got) {
          failed = true;
          lines.push(`${c.name} ${name}: FAIL (not computed)`);
          continue;
        }
        if (!sameShape(got.shape, expected.shape)) {
          failed = true;
          lines.push(`${c.name} ${name}: FAIL (computed shape [${got.shape.join(', ')}], expected [${expected.shape.join(', ')}])`);
          continue;
        }
        const merged = Object.hasOwn(expectedOutputs, 'merged') ? expectedOutputs.merged : undefined;
        const byMerged = name === 'delta_w' && merged !== undefined && merged.data.length === expected.data.length;
        const exact = kind.exact?.includes(name) === true;
        const err = byMerged ? errorAgainst(got.data, expected.data, merged.data) : relativeError(got.data, expected.data);
        errors[name] = err;
        checked++;
        // Quantizer outputs are bit patterns of a defined rule: they match exactly or not at all.
        const ok = exact ? got.data.every((v, j) => v === expected.data[j]) : err <= tol;
        if (!ok) failed = true;
        const how = exact ? (ok ? 'exact ok' : 'FAIL (not exact)') : ok ? 'ok' : `FAIL (tol ${tol})`;
        lines.push(`${c.name} ${name}: ${err.toExponential(2)}${byMerged ? ' (of max |merged|)' : ''} ${how}`);
      }
    } else {
      lines.push(`${c.name}: ok`);
    }
    cases.push(res);
  }
  if (check) {
    if (checked === 0) {
      failed = true;
      lines.push(`FAIL: nothing was checked (${raws.length} case${raws.length === 1 ? '' : 's'}, no output compared)`);
    } else {
      lines.push(`checked ${checked} output${checked === 1 ? '' : 's'} in ${ran} of ${raws.length} cases${failed ? ': FAIL' : ''}`);
    }
  } else if (ran === 0) {
    failed = true;
    lines.push(`FAIL: nothing was run (${raws.length} case${raws.length === 1 ? '' : 's'}, none supported and well-formed)`);
  }
  return { result: { generator: `peft-wgsl on ${ctx.adapterInfo.description || ctx.adapterInfo.vendor}`, cases }, failed, lines, checked };
}

/**
 * ΔW is judged on the scale of the weight it updates (max of |ΔW| and |W'|), not on its own: an
 * update that is zero in exact arithmetic (LoRMA at init) has float64 noise as its expected values,
 * and its float32 inputs alone move it by ε·|W0|, so its own scale says nothing about accuracy.
 */
function errorAgainst(actual: ArrayLike<number>, expected: ArrayLike<number>, merged: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new PeftError(`length ${actual.length} != expected ${expected.length}`);
  let maxErr = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= maxErr)) maxErr = Number.isNaN(d) ? Infinity : d;
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  for (let i = 0; i < merged.length; i++) scale = Math.max(scale, Math.abs(merged[i]));
  return scale === 0 ? maxErr : maxErr / scale;
}
