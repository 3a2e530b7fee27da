// `peft-wgsl vectors`: runs every case of a test-vector file on the GPU, writes what it computed
// and, with check, compares it with the file's own outputs.

import type { Context } from '../runtime.js';
import { relativeError } from '../numeric.js';
import { METHODS } from '../methods/registry.js';
import type { VectorCase, VectorFile, VectorRunner, VectorTensor } from './types.js';

/**
 * The runner for a case: the registry's method whose `vectors.method` is the case's
 * `params.method` and that accepts its params (LoRMA's two descriptors split the format's
 * `lorma` cases by inflation). Undefined: the case is reported 'unsupported'.
 */
export function vectorRunner(params: Record<string, unknown> | undefined): VectorRunner | undefined {
  const method = params?.method;
  if (typeof method !== 'string') return undefined;
  return METHODS.find((m) => m.vectors?.method === method && (m.vectors.accepts?.(params!) ?? true))?.vectors?.run;
}

export interface CaseResult extends VectorCase {
  status: 'ok' | 'unsupported' | 'error';
  message?: string;
  /** Per output: max |got − expected| / max |expected| (only with check). */
  errors?: Record<string, number>;
}

export interface RunReport {
  result: Omit<VectorFile, 'cases'> & { cases: CaseResult[] };
  failed: boolean;
  lines: string[];
}

export async function runVectors(ctx: Context, file: VectorFile, opts: { check?: boolean; tol?: number } = {}): Promise<RunReport> {
  if (!file || !Array.isArray(file.cases)) throw new Error("vectors: the file must be a JSON object with a 'cases' array");
  const tol = opts.tol ?? 1e-5;
  const lines: string[] = [];
  let failed = false;
  const cases: CaseResult[] = [];
  for (const c of file.cases) {
    const method = c?.params?.method;
    const runner = vectorRunner(c?.params);
    const base = { name: c.name, params: c.params, inputs: c.inputs };
    if (!runner) {
      cases.push({ ...base, outputs: {}, status: 'unsupported', message: `method '${method}' is not supported by this version` });
      lines.push(`${c.name}: unsupported (method '${method}')`);
      continue;
    }
    let outputs: Record<string, VectorTensor>;
    try {
      outputs = await runner(ctx, c);
    } catch (e) {
      failed = true;
      cases.push({ ...base, outputs: {}, status: 'error', message: (e as Error).message });
      lines.push(`${c.name}: error: ${(e as Error).message}`);
      continue;
    }
    const res: CaseResult = { ...base, outputs, status: 'ok' };
    if (opts.check) {
      res.errors = {};
      for (const [name, expected] of Object.entries(c.outputs ?? {})) {
        const got = outputs[name];
        if (!got) {
          failed = true;
          lines.push(`${c.name} ${name}: FAIL (not computed)`);
          continue;
        }
        const merged = c.outputs?.merged;
        const byMerged = name === 'delta_w' && merged !== undefined;
        const err = byMerged ? errorAgainst(got.data, expected.data, merged.data) : relativeError(got.data, expected.data);
        res.errors[name] = err;
        const ok = err <= tol;
        if (!ok) failed = true;
        lines.push(`${c.name} ${name}: ${err.toExponential(2)}${byMerged ? ' (of max |merged|)' : ''} ${ok ? 'ok' : `FAIL (tol ${tol})`}`);
      }
    } else {
      lines.push(`${c.name}: ok`);
    }
    cases.push(res);
  }
  return { result: { generator: `peft-wgsl on ${ctx.adapterInfo.description || ctx.adapterInfo.vendor}`, cases }, failed, lines };
}

/**
 * ΔW is judged on the scale of the weight it updates (max of |ΔW| and |W'|), not on its own: an
 * update that is zero in exact arithmetic (LoRMA at init) has float64 noise as its expected values,
 * and its float32 inputs alone move it by ε·|W0|, so its own scale says nothing about accuracy.
 */
function errorAgainst(actual: ArrayLike<number>, expected: ArrayLike<number>, merged: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
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
