// Test-vector format (docs/vectors.md): cases computed by an independent implementation (the
// repository's own come from scripts/gen-vectors.py), run here through the GPU kernels.

import type { Context } from '../runtime.js';

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

/** Runs one case on the GPU and returns every output the format names for its method. */
export type VectorRunner = (ctx: Context, c: VectorCase) => Promise<Record<string, VectorTensor>>;

/** The input `name`, checked against the expected shape, so a malformed file gets a clear error. */
export function input(c: VectorCase, name: string, shape: number[]): Float32Array {
  const t = c.inputs[name];
  if (!t) throw new Error(`case '${c.name}': input '${name}' is missing`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`case '${c.name}': input '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) throw new Error(`case '${c.name}': input '${name}' has ${t.data.length} values, expected ${count}`);
  return Float32Array.from(t.data);
}

export function output(data: ArrayLike<number>, shape: number[]): VectorTensor {
  return { shape, data: Array.from(data) };
}
