// Sampling names from the model: start from an all-boundary context, draw each next character
// from softmax(logits / temperature) with a seeded generator, stop at the boundary token.

import { rng } from '../../src/random.js';
import { decodeId } from './data.js';
import type { CharLM } from './model.js';
import { sampleIndex } from '../common.js';

export interface SampleOptions {
  count?: number;
  seed?: number;
  temperature?: number;
  maxLength?: number;
}

export async function sampleNames(model: CharLM, opts: SampleOptions = {}): Promise<string[]> {
  const count = opts.count ?? 10;
  const temperature = opts.temperature ?? 1;
  const maxLength = opts.maxLength ?? 20;
  const next = rng(opts.seed ?? 1234);
  const { context: C, vocab: V } = model.config;
  const ctxIds = new Uint32Array(count * C);
  const out: number[][] = Array.from({ length: count }, () => []);
  const done = new Array<boolean>(count).fill(false);
  for (let step = 0; step < maxLength && done.includes(false); step++) {
    const logits = await model.logits(ctxIds);
    for (let s = 0; s < count; s++) {
      if (done[s]) continue;
      const row = logits.subarray(s * V, (s + 1) * V);
      const id = sampleIndex(row, temperature, next());
      if (id === 0) {
        done[s] = true;
        continue;
      }
      out[s].push(id);
      // Slide the context left by one and append the new character.
      ctxIds.copyWithin(s * C, s * C + 1, (s + 1) * C);
      ctxIds[(s + 1) * C - 1] = id;
    }
  }
  return out.map((ids) => ids.map(decodeId).join(''));
}
