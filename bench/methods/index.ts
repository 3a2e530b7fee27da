// The benchmarked rows: the frozen base layer, then every method of the registry
// (src/methods/registry.ts) and its extra variants, each set up by bench/layer.ts from the
// method's descriptor. No method is named here.

import { METHODS } from '../../src/methods/registry.js';
import { base, benchMethodOf } from '../layer.js';
import type { BenchMethod } from './types.js';

/** Every row the suite knows, in report order. */
export const BENCH_METHODS: readonly BenchMethod[] = [
  base,
  ...METHODS.flatMap((d) => [benchMethodOf(d), ...(d.benchVariants ?? []).map((v) => benchMethodOf(d, v))]),
];

/** Report order of the rows' method ids. */
export const ORDER: readonly string[] = BENCH_METHODS.map((m) => m.method);

/** Methods whose layer has blocks (their rows carry the shape's b). */
export const BLOCK_METHODS: ReadonlySet<string> = new Set(METHODS.filter((d) => d.config.some((f) => f.option === 'blocks')).map((d) => d.id));

export interface Unavailable {
  method: string;
  reason: string;
}

export function loadMethods(only?: string[]): Promise<{ methods: BenchMethod[]; unavailable: Unavailable[] }> {
  const unknown = (only ?? []).filter((id) => !ORDER.includes(id));
  const methods = BENCH_METHODS.filter((m) => !only || only.includes(m.method));
  return Promise.resolve({ methods, unavailable: unknown.map((method) => ({ method, reason: `no such method (known: ${ORDER.join(', ')})` })) });
}
