// `peft-wgsl vectors`: runs every case of a test-vector file on the GPU, writes what it computed
// and, with check, compares it with the file's own outputs.

import type { Context } from '../runtime.js';
import { relativeError } from '../reference/linalg.js';
import { runBora } from './bora.js';
import { runLora } from './lora.js';
import { runLorma } from './lorma.js';
import { runSboraFa, runSboraFb } from './sbora.js';
import type { VectorCase, VectorFile, VectorRunner, VectorTensor } from './types.js';

/** One runner per `params.method`; a method not listed here is reported 'unsupported'. */
export const RUNNERS: Record<string, VectorRunner> = {
  bora: runBora,
  lora: runLora,
  lorma: runLorma,
  'sbora-fa': runSboraFa,
  'sbora-fb': runSboraFb,
};

export interface CaseResult extends VectorCase {
  status: 'ok' | 'unsupported' | 'error';
  message?: string;
  /** Per output: max |got − expected| / max |expected| (only with check). */
  errors?: Record<string, number>;
}

export interface RunReport {
  result: VectorFile & { cases: CaseResult[] };
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
    const runner = method ? RUNNERS[method] : undefined;
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
        const err = relativeError(got.data, expected.data);
        res.errors[name] = err;
        const ok = err <= tol;
        if (!ok) failed = true;
        lines.push(`${c.name} ${name}: ${err.toExponential(2)} ${ok ? 'ok' : `FAIL (tol ${tol})`}`);
      }
    } else {
      lines.push(`${c.name}: ok`);
    }
    cases.push(res);
  }
  return { result: { generator: `peft-wgsl on ${ctx.adapterInfo.description || ctx.adapterInfo.vendor}`, cases }, failed, lines };
}
