// The registry of benchmarked methods. LoRA is imported directly (it is the baseline every ratio
// is taken against); the other modules are loaded with a dynamic import so the runner works
// before and after they exist, and a missing one is reported as "not available".

import { lora } from './lora.js';
import type { BenchMethod } from './types.js';

/** Every method the suite knows, in report order: [method id, module, export]. */
export const METHOD_TABLE: readonly [string, string, string][] = [
  ['base', './lorma.js', 'base'],
  ['lora', './lora.js', 'lora'],
  ['bora', './bora.js', 'bora'],
  ['melora', './bora.js', 'melora'],
  ['sbora-fa', './sbora.js', 'sboraFa'],
  ['sbora-fb', './sbora.js', 'sboraFb'],
  ['lorma-plus', './lorma.js', 'lormaPlus'],
  ['lorma-pi', './lorma.js', 'lormaPi'],
  ['lorma-pi-tiles', './lorma.js', 'lormaPiTiles'],
];

export interface Unavailable {
  method: string;
  reason: string;
}

export async function loadMethods(only?: string[]): Promise<{ methods: BenchMethod[]; unavailable: Unavailable[] }> {
  const methods: BenchMethod[] = [];
  const unavailable: Unavailable[] = [];
  const modules = new Map<string, Promise<Record<string, unknown>>>();
  for (const [id, spec, name] of METHOD_TABLE) {
    if (only && !only.includes(id)) continue;
    if (id === 'lora') {
      methods.push(lora);
      continue;
    }
    if (!modules.has(spec)) modules.set(spec, import(/* @vite-ignore */ spec) as Promise<Record<string, unknown>>);
    try {
      const mod = await modules.get(spec)!;
      const m = mod[name] as BenchMethod | undefined;
      if (!m || typeof m.setup !== 'function') {
        unavailable.push({ method: id, reason: `bench/methods/${spec.slice(2, -3)}.ts has no export '${name}'` });
        continue;
      }
      methods.push({ ...m, method: m.method ?? id });
    } catch (e) {
      const msg = (e as Error).message ?? String(e);
      const missing = /Cannot find module|ERR_MODULE_NOT_FOUND/.test(msg);
      unavailable.push({
        method: id,
        reason: missing ? `bench/methods/${spec.slice(2, -3)}.ts does not exist yet` : `bench/methods/${spec.slice(2, -3)}.ts failed to load: ${msg.split('\n')[0]}`,
      });
    }
  }
  return { methods, unavailable };
}
