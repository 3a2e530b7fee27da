// Sampling text from the GPT: each step runs the model on the whole prefix (no key/value cache:
// at this size the forward is cheap next to a training step), keeps the last position's logits
// and draws from softmax(logits / temperature) with a seeded generator. Past the context the
// prefix slides.

import { rng } from '../../src/random.js';
import type { Vocab } from './data.js';
import type { GPT } from './model.js';
import { sampleIndex } from '../common.js';

export interface SampleOptions {
  prompt?: string;
  count?: number;
  length?: number;
  seed?: number;
  temperature?: number;
}

export async function sampleText(model: GPT, vocab: Vocab, opts: SampleOptions = {}): Promise<string[]> {
  const count = opts.count ?? 4;
  const length = opts.length ?? 120;
  const temperature = opts.temperature ?? 0.8;
  const next = rng(opts.seed ?? 7);
  const { context: P, vocab: V } = model.config;
  const prompt = vocab.encode(opts.prompt ?? 'The ');
  const seqs = Array.from({ length: count }, () => Array.from(prompt));
  for (let step = 0; step < length; step++) {
    const T = Math.min(P, seqs[0].length);
    const ids = new Uint32Array(count * T);
    seqs.forEach((s, i) => ids.set(s.slice(s.length - T), i * T));
    const b = model.batch(count, T);
    model.setBatch(b, ids);
    await model.ctx.encode(undefined, (enc) => model.forward(enc, b, false));
    const logits = await model.ctx.readF32(b.logits);
    if (T < P) model.releaseBatch(b);
    for (let i = 0; i < count; i++) {
      const row = logits.subarray(((i + 1) * T - 1) * V, (i + 1) * T * V);
      seqs[i].push(sampleIndex(row, temperature, next()));
    }
  }
  return seqs.map((s) => vocab.decode(s));
}
