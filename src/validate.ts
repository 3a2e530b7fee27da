// Argument checks shared by every kernel. Each error names the call, the argument and what was
// expected, so a wrong shape never turns into a silently wrong answer.

import type { Tensor } from './tensor.js';

export class PeftError extends Error {
  override name = 'PeftError';
}

/** A dimension: a positive integer. */
export function checkDim(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new PeftError(`${where}: '${name}' must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export function checkScale(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new PeftError(`${where}: '${name}' must be a finite number, got ${String(value)}`);
  }
  return value;
}

export function checkRank(where: string, r: number, n: number, m: number): void {
  if (r > Math.min(n, m)) {
    throw new PeftError(`${where}: rank r = ${r} is above min(n, m) = min(${n}, ${m}) = ${Math.min(n, m)}`);
  }
}

/** A device tensor of exactly this shape (named dims in the message) and dtype. */
export function checkTensor(where: string, name: string, t: Tensor | undefined, shape: readonly number[], dims: string, dtype = 'f32'): Tensor {
  if (!t || typeof t !== 'object' || !('buffer' in t)) {
    throw new PeftError(
      `${where}: '${name}' must be a Tensor of shape ${dims} = [${shape.join(', ')}], got ${t === undefined ? 'nothing' : typeof t}`,
    );
  }
  const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!same) {
    throw new PeftError(`${where}: '${name}' has shape [${t.shape.join(', ')}], expected ${dims} = [${shape.join(', ')}]`);
  }
  if (t.dtype !== dtype) throw new PeftError(`${where}: '${name}' is ${t.dtype}, expected ${dtype}`);
  const need = shape.reduce((a, b) => a * b, 1) * 4;
  if (t.buffer.size < need) throw new PeftError(`${where}: '${name}' buffer has ${t.buffer.size} bytes, needs ${need}`);
  return t;
}

/** A host array of exactly `length` finite numbers. */
export function checkHost(where: string, name: string, data: ArrayLike<number> | undefined, shape: readonly number[], dims: string): void {
  const length = shape.reduce((a, b) => a * b, 1);
  if (!data || typeof data !== 'object' || typeof (data as ArrayLike<number>).length !== 'number') {
    throw new PeftError(
      `${where}: '${name}' must be an array of ${length} numbers (${dims} = [${shape.join(', ')}]), got ${data === undefined ? 'nothing' : typeof data}`,
    );
  }
  if (data.length !== length) {
    throw new PeftError(`${where}: '${name}' has ${data.length} values, expected ${dims} = [${shape.join(', ')}] = ${length}`);
  }
}

/** Rejects aliasing of an output with an input: WebGPU forbids it and the result would be wrong. */
export function checkDistinct(where: string, tensors: Record<string, Tensor | undefined>): void {
  const seen = new Map<GPUBuffer, string>();
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    const other = seen.get(t.buffer);
    if (other) throw new PeftError(`${where}: '${name}' and '${other}' are the same buffer; outputs must not alias inputs`);
    seen.set(t.buffer, name);
  }
}
