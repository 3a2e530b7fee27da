// Test-vector format (docs/vectors.md): cases computed by an independent implementation (the
// repository's own come from scripts/gen-vectors.py), run here through the GPU kernels.

import type { Context } from '../runtime.js';
import { PeftError } from '../validate.js';

export interface VectorTensor {
  shape: number[];
  data: number[];
}

export interface VectorCase {
  name: string;
  params: { method: string; T: number; inFeatures: number; outFeatures: number; rank: number; scale: number; [k: string]: unknown };
  inputs: Record<string, VectorTensor>;
  outputs?: Record<string, VectorTensor>;
}

export interface VectorFile {
  generator?: string;
  cases: VectorCase[];
}

/** What a runner reports about a case besides its outputs. */
export interface RunInfo {
  /** Device bytes of the base weight (packed values and absmax), for a case with a base format. */
  w0Bytes?: number;
}

/** Runs one case on the GPU and returns every output the format names for its method. */
export type VectorRunner = (ctx: Context, c: VectorCase, info?: RunInfo) => Promise<Record<string, VectorTensor>>;

/** The params a kind of case must carry: positive integers `dims`, and a finite `scale` when `scale`. */
export interface CaseParams {
  dims: readonly string[];
  scale: boolean;
}

/** An adapter case's params (the format's table): T, inFeatures, outFeatures, rank and scale. */
export const ADAPTER_PARAMS: CaseParams = { dims: ['T', 'inFeatures', 'outFeatures', 'rank'], scale: true };

/** The input `name`, checked against the expected shape, so a malformed file gets a clear error. */
export function input(c: VectorCase, name: string, shape: number[]): Float32Array {
  const t = Object.hasOwn(c.inputs, name) ? c.inputs[name] : undefined;
  if (!t) throw new PeftError(`case '${c.name}': input '${name}' is missing`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new PeftError(`case '${c.name}': input '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) throw new PeftError(`case '${c.name}': input '${name}' has ${t.data.length} values, expected ${count}`);
  return Float32Array.from(t.data);
}

export function output(data: ArrayLike<number>, shape: number[]): VectorTensor {
  return { shape, data: Array.from(data) };
}

// ------------------------------------------------------------------ reading a file

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** The file's top level: an object with a `cases` array. */
export function checkVectorFile(raw: unknown): { cases: unknown[] } {
  if (!isRecord(raw) || !Array.isArray(raw.cases)) {
    throw new PeftError(`vectors: the file must be a JSON object with a 'cases' array, got ${describe(isRecord(raw) ? raw.cases : raw)}`);
  }
  return { cases: raw.cases };
}

/**
 * What a case says about itself before it is run: its name (its place in the file, `cases[i]`,
 * when it has none) and its params with a `method` string. Throws a PeftError naming the case
 * and the field (a CaseError, whose `caseName` labels the report's line).
 */
export function caseHeader(raw: unknown, index: number): { name: string; params: Record<string, unknown> } {
  const place = `cases[${index}]`;
  if (!isRecord(raw)) throw new CaseError(place, `${place} must be an object with name, params, inputs and outputs, got ${describe(raw)}`);
  if (raw.name !== undefined && (typeof raw.name !== 'string' || raw.name === '')) {
    throw new CaseError(place, `${place}: 'name' must be a non-empty string, got ${describe(raw.name)}`);
  }
  const name = (raw.name as string | undefined) ?? place;
  if (!isRecord(raw.params)) throw new CaseError(name, `case '${name}': 'params' must be an object, got ${describe(raw.params)}`);
  if (typeof raw.params.method !== 'string') {
    throw new CaseError(name, `case '${name}': params.method must be a string, got ${describe(raw.params.method)}`);
  }
  return { name, params: raw.params };
}

/** A case's own problem: the message, and the name the report's line carries. */
export class CaseError extends PeftError {
  constructor(
    readonly caseName: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Checks every field the runners read, so a malformed case fails with its name and the field
 * instead of a TypeError or a silent coercion (`"3"` for 3, null for 0), and returns a copy whose
 * inputs and outputs are null-prototype records (their names come from the file). With
 * `needOutputs`, a case with no expected outputs is an error: it would check nothing.
 */
export function checkCase(raw: unknown, index: number, needOutputs = false, kind: CaseParams = ADAPTER_PARAMS): VectorCase {
  const { name, params } = caseHeader(raw, index);
  const r = raw as Record<string, unknown>;
  const where = `case '${name}'`;
  for (const k of kind.dims) {
    const v = params[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new CaseError(name, `${where}: params.${k} must be a positive integer, got ${describe(v)}`);
    }
  }
  if (kind.scale && (typeof params.scale !== 'number' || !Number.isFinite(params.scale))) {
    throw new CaseError(name, `${where}: params.scale must be a finite number, got ${describe(params.scale)}`);
  }
  const inputs = tensors(name, 'inputs', r.inputs);
  let outputs: Record<string, VectorTensor> | undefined;
  if (r.outputs !== undefined) outputs = tensors(name, 'outputs', r.outputs);
  if (needOutputs && (!outputs || Object.keys(outputs).length === 0)) {
    throw new CaseError(name, `${where}: no expected 'outputs', so --check would compare nothing`);
  }
  return { name, params: params as VectorCase['params'], inputs, ...(outputs ? { outputs } : {}) };
}

function tensors(name: string, field: 'inputs' | 'outputs', v: unknown): Record<string, VectorTensor> {
  const where = `case '${name}'`;
  if (!isRecord(v)) {
    throw new CaseError(name, `${where}: '${field}' must be an object of { shape, data } tensors, got ${describe(v)}`);
  }
  const out = Object.create(null) as Record<string, VectorTensor>;
  const kind = field === 'inputs' ? 'input' : 'output';
  for (const [key, t] of Object.entries(v)) out[key] = tensor(`${where}: ${kind} '${key}'`, name, t, field === 'outputs');
  return out;
}

function tensor(where: string, name: string, t: unknown, countChecked: boolean): VectorTensor {
  if (!isRecord(t)) throw new CaseError(name, `${where} must be { shape, data }, got ${describe(t)}`);
  const { shape, data } = t;
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw new CaseError(name, `${where}: 'shape' must be an array of non-negative integers, got ${describe(shape)}`);
  }
  if (!Array.isArray(data)) throw new CaseError(name, `${where}: 'data' must be an array of numbers, got ${describe(data)}`);
  for (let i = 0; i < data.length; i++) {
    if (typeof data[i] !== 'number') throw new CaseError(name, `${where}: data[${i}] is ${describe(data[i])}, expected a number`);
  }
  // An input's shape is compared with the params first (by `input`, which names the shape the
  // case needs); an output's is compared with its data here. Both sides are exact below 2^53.
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  if (countChecked && count !== data.length) {
    throw new CaseError(name, `${where}: shape [${shape.join(', ')}] holds ${count} values but 'data' has ${data.length}`);
  }
  return { shape: [...(shape as number[])], data: data as number[] };
}
