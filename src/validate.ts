// Argument checks shared by every kernel. Each error names the call, the argument and what was
// expected, so a wrong shape never turns into a silently wrong answer, and a JavaScript caller's
// null, typed array or foreign tensor gets a PeftError rather than a TypeError from deep inside.

import { Tensor } from './tensor.js';
import type { Context } from './runtime.js';
import { BaseWeight } from './base.js';

export class PeftError extends Error {
  override name = 'PeftError';
}

/** The largest finite float32: a scale past it is Infinity on the device. */
export const F32_MAX = 3.4028234663852886e38;

/** How a value reads in an error message: 'nothing', 'null', 'a Float32Array', 'the number 3'. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v !== 'object') return typeof v;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/** Whether `shape` is a non-empty array of positive safe integers. */
export function isValidShape(shape: unknown): shape is readonly number[] {
  return Array.isArray(shape) && shape.length > 0 && shape.every((d) => Number.isSafeInteger(d) && d > 0);
}

/** A dimension: a positive integer. */
export function checkDim(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new PeftError(`${where}: '${name}' must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** A scale the kernels multiply by: finite in float32, where it is used (1e39 is Infinity there). */
export function checkScale(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new PeftError(`${where}: '${name}' must be a finite number, got ${typeof value === 'number' ? String(value) : describeValue(value)}`);
  }
  if (Math.abs(value) > F32_MAX) {
    throw new PeftError(`${where}: '${name}' is ${value}, past float32's largest finite value ${F32_MAX} (the kernels compute in f32)`);
  }
  return value;
}

export function checkRank(where: string, r: number, n: number, m: number): void {
  if (r > Math.min(n, m)) {
    throw new PeftError(`${where}: rank r = ${r} is above min(n, m) = min(${n}, ${m}) = ${Math.min(n, m)}`);
  }
}

/** The call's argument object: a non-null object (`expected` says what it holds). */
export function checkArgObject(where: string, p: unknown, expected: string): void {
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    throw new PeftError(`${where}: expected an argument object${expected ? ` ${expected}` : ''}, got ${describeValue(p)}`);
  }
}

/**
 * The call's context: a live Context. Every public function checks it first, so a destroyed
 * context or a lost device is reported by name before anything is allocated.
 */
export function checkContext(where: string, ctx: unknown): Context {
  const c = ctx as Context | null | undefined;
  if (!c || typeof c !== 'object' || typeof c.assertAlive !== 'function' || !('device' in c)) {
    throw new PeftError(`${where}: the first argument must be a Context (from createContext), got ${describeValue(ctx)}`);
  }
  c.assertAlive(where);
  return c;
}

/** `t` as a Tensor, or a PeftError naming `name` and what it is instead. */
export function asTensor(where: string, name: string, t: unknown, expected = 'a Tensor'): Tensor {
  if (!Tensor.isTensor(t)) throw new PeftError(`${where}: '${name}' must be ${expected}, got ${describeValue(t)}`);
  if (!isValidShape(t.shape)) throw new PeftError(`${where}: '${name}' has an invalid shape [${String(t.shape)}]`);
  return t;
}

/** A 2-D Tensor; returns its shape, from which the call reads its sizes. */
export function checkMatrix(where: string, name: string, t: unknown, dims: string, dtype = 'f32'): [number, number] {
  const m = asTensor(where, name, t, `a 2-D Tensor ${dims}`);
  if (m.shape.length !== 2) throw new PeftError(`${where}: '${name}' must be a 2-D Tensor ${dims}, got shape [${m.shape.join(', ')}]`);
  if (m.dtype !== dtype) throw new PeftError(`${where}: '${name}' is ${m.dtype}, expected ${dtype}`);
  return [m.shape[0], m.shape[1]];
}

/** A device tensor of exactly this shape (named dims in the message) and dtype. */
export function checkTensor(where: string, name: string, t: unknown, shape: readonly number[], dims: string, dtype = 'f32'): Tensor {
  const tensor = asTensor(where, name, t, `a Tensor of shape ${dims} = [${shape.join(', ')}]`);
  const same = tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
  if (!same) {
    throw new PeftError(`${where}: '${name}' has shape [${tensor.shape.join(', ')}], expected ${dims} = [${shape.join(', ')}]`);
  }
  if (tensor.dtype !== dtype) throw new PeftError(`${where}: '${name}' is ${tensor.dtype}, expected ${dtype}`);
  const need = shape.reduce((a, b) => a * b, 1) * 4;
  if (tensor.buffer.size < need) throw new PeftError(`${where}: '${name}' buffer has ${tensor.buffer.size} bytes, needs ${need}`);
  return tensor;
}

/** A host array of exactly `length` finite numbers. */
export function checkHost(where: string, name: string, data: ArrayLike<number> | undefined, shape: readonly number[], dims: string): void {
  const length = shape.reduce((a, b) => a * b, 1);
  if (!data || typeof data !== 'object' || typeof (data as ArrayLike<number>).length !== 'number') {
    throw new PeftError(`${where}: '${name}' must be an array of ${length} numbers (${dims} = [${shape.join(', ')}]), got ${describeValue(data)}`);
  }
  if (data.length !== length) {
    throw new PeftError(`${where}: '${name}' has ${data.length} values, expected ${dims} = [${shape.join(', ')}] = ${length}`);
  }
}

/** Why a tensor of another context cannot be used here (its context's state included). */
function foreignMessage(where: string, name: string, t: Tensor): string {
  const other = t.ctx as Context | undefined;
  const state = !other ? '' : other.isDestroyed ? ' (which was destroyed)' : other.isLost ? ' (whose GPU device was lost)' : '';
  return `${where}: '${name}' belongs to another context${state}; upload its values to this one`;
}

/** Throws when `t` was made on a context other than `ctx`. */
export function checkOwner(where: string, name: string, ctx: Context, t: Tensor): void {
  if (t.ctx !== ctx) throw new PeftError(foreignMessage(where, name, t));
}

/**
 * Every tensor of a call: each given one a Tensor of `ctx`, and no output sharing a GPUBuffer with
 * another output or any input (WebGPU forbids a writable binding that aliases another binding,
 * and the result would be wrong). Inputs may share a buffer: two read-only bindings may alias.
 * Called before anything is allocated, with the caller's outputs (undefined when not given).
 */
export function checkIo(where: string, ctx: Context, outputs: Record<string, unknown>, inputs: Record<string, unknown>): void {
  const owners = new Map<GPUBuffer, string>();
  for (const [name, t] of Object.entries(inputs)) {
    if (t === undefined) continue;
    const tensor = asTensor(where, name, t);
    checkOwner(where, name, ctx, tensor);
    if (!owners.has(tensor.buffer)) owners.set(tensor.buffer, name);
  }
  const written = new Map<GPUBuffer, string>();
  for (const [name, t] of Object.entries(outputs)) {
    if (t === undefined) continue;
    const tensor = asTensor(where, name, t);
    checkOwner(where, name, ctx, tensor);
    const other = written.get(tensor.buffer) ?? owners.get(tensor.buffer);
    if (other !== undefined) {
      throw new PeftError(`${where}: '${name}' and '${other}' are the same buffer; an output must not alias another argument`);
    }
    written.set(tensor.buffer, name);
  }
}

/**
 * The caller's tensors in an argument object (its Tensor-valued fields): each one of `ctx`'s, and
 * no two on one buffer. Called before anything is allocated, so a foreign tensor cannot leak the
 * call's new outputs; outputs the call makes are checked after (checkDistinct).
 */
export function checkGivenTensors(where: string, ctx: Context, p: object): void {
  const given: Record<string, Tensor> = {};
  for (const [name, v] of Object.entries(p)) {
    if (!Tensor.isTensor(v)) continue;
    checkOwner(where, name, ctx, v);
    given[name] = v;
  }
  checkDistinct(where, given);
}

/** Rejects aliasing between any two of `tensors` (every one treated as written). */
export function checkDistinct(where: string, tensors: Record<string, Tensor | undefined>): void {
  const seen = new Map<GPUBuffer, string>();
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    const other = seen.get(t.buffer);
    if (other) throw new PeftError(`${where}: '${name}' and '${other}' are the same buffer; outputs must not alias inputs`);
    seen.set(t.buffer, name);
  }
}

/** u32 words a BaseWeight's packed values need (src/base.ts: padded to whole words). */
export function packedWords(format: 'f16' | 'nf4', size: number): number {
  return format === 'f16' ? Math.ceil(size / 2) : Math.ceil(size / 8);
}

/**
 * A frozen weight in any base format: an f32 2-D Tensor, or a BaseWeight (f16 or NF4) whose packed
 * data and absmax are device tensors large enough for its shape. Returns its [rows, cols]. With
 * `ctx`, its tensors must belong to that context; with `shape`, it must have exactly that shape.
 */
export function checkWeight(
  where: string,
  name: string,
  w: unknown,
  dims: string,
  ctx?: Context,
  shape?: readonly [number, number],
): [number, number] {
  let rows: number;
  let cols: number;
  if (!BaseWeight.isBaseWeight(w)) {
    const t = asTensor(where, name, w, `a 2-D Tensor ${dims} or a BaseWeight (f16 or nf4)`);
    [rows, cols] = checkMatrix(where, name, t, dims);
    if (t.buffer.size < rows * cols * 4) throw new PeftError(`${where}: '${name}' buffer has ${t.buffer.size} bytes, needs ${rows * cols * 4}`);
    if (ctx) checkOwner(where, name, ctx, t);
  } else {
    const what = `${name}' (a ${String(w.format)} BaseWeight`;
    if (w.format !== 'f16' && w.format !== 'nf4')
      throw new PeftError(`${where}: '${name}' is a BaseWeight of format ${describeValue(w.format)}, expected 'f16' or 'nf4'`);
    if (!isValidShape(w.shape) || w.shape.length !== 2)
      throw new PeftError(`${where}: '${what}) has an invalid shape [${String(w.shape)}], expected ${dims}`);
    [rows, cols] = w.shape;
    const data = asTensor(where, `${name}.data`, w.data, 'a u32 Tensor of packed values');
    const words = packedWords(w.format, rows * cols);
    if (data.dtype !== 'u32' || data.buffer.size < words * 4) {
      throw new PeftError(
        `${where}: '${what}) has data of ${data.dtype} with ${data.buffer.size} bytes, expected u32 with at least ${words * 4} bytes`,
      );
    }
    if (ctx) checkOwner(where, name, ctx, data);
    if (w.format === 'nf4') {
      const bs = w.blockSize;
      if (!Number.isInteger(bs) || bs < 32 || bs > 4096 || (bs & (bs - 1)) !== 0) {
        throw new PeftError(`${where}: '${what}) has blockSize ${String(bs)}, expected a power of two from 32 to 4096`);
      }
      const blocks = Math.ceil((rows * cols) / bs);
      const absmax = asTensor(where, `${name}.absmax`, w.absmax, `an f32 Tensor of ${blocks} absmax values`);
      if (absmax.dtype !== 'f32' || absmax.size < blocks) {
        throw new PeftError(
          `${where}: '${what}) has an absmax of ${absmax.size} ${absmax.dtype} values, expected ${blocks} f32 (one per block of ${bs})`,
        );
      }
      if (ctx) checkOwner(where, `${name}.absmax`, ctx, absmax);
    }
  }
  if (shape && (rows !== shape[0] || cols !== shape[1])) {
    throw new PeftError(`${where}: '${name}' has shape [${rows}, ${cols}], expected ${dims} = [${shape.join(', ')}]`);
  }
  return [rows, cols];
}

/**
 * The device tensors behind a weight, by name, for checkIo's ownership and aliasing checks
 * (a BaseWeight is its packed data and, for NF4, its absmax).
 */
export function weightTensors(name: string, w: Tensor | BaseWeight): Record<string, Tensor | undefined> {
  if (!BaseWeight.isBaseWeight(w)) return { [name]: w };
  return { [name]: w.data, [`${name}.absmax`]: w.absmax ?? undefined };
}
