// Fine-tuning the pretrained GPT (examples/gpt/session.ts): fresh adapters of every method on all
// six projections of both layers leave the model's output as it was, on an f32 and an NF4 base,
// and a few LoRA steps on one fixed batch lower its loss.

import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import superheroes from 'superheroes';
import { GPT } from '../examples/gpt/model.js';
import { DEFAULT_TARGETS, installAdapters, removeAdapters, targetData, trainGpt, vocabOf } from '../examples/gpt/session.js';
import { METHODS } from '../src/methods/registry.js';
import { gpu } from './helpers.js';

const WEIGHTS = new URL('../examples/gpt/weights/gpt.safetensors', import.meta.url);
const T = 24;

/** Largest |a − b| over the largest |b|: the identity at init must hold to 1e-6 of the logits' scale. */
function relMaxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return d / s;
}

describe('gpt fine-tuning', function () {
  this.timeout(300_000);

  async function load() {
    const ctx = await gpu();
    const bytes = readFileSync(WEIGHTS);
    const { model, metadata } = GPT.fromSafetensors(ctx, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const vocab = vocabOf(metadata);
    const data = targetData(superheroes, vocab, T, 1);
    // Two validation windows (48 characters of names, newlines between them).
    const ids = data.validation.ids.slice(0, 2 * T);
    return { model, vocab, data, ids };
  }

  for (const format of ['f32', 'nf4'] as const) {
    it(`fresh adapters of every method on every projection keep the base model's logits (${format} base)`, async () => {
      const { model, ids } = await load();
      try {
        if (format !== 'f32') await model.setBase(format);
        const base = await model.logits(ids, T);
        for (const m of METHODS) {
          const a = installAdapters(model, { method: m.id, rank: 4, scale: 2, blocks: 8, targets: DEFAULT_TARGETS, seed: 3 });
          try {
            expect(a.modules).to.have.length(12);
            const out = await model.logits(ids, T);
            const diff = relMaxDiff(out, base);
            expect(diff, `${m.id}: max |Δlogit| / max |logit|`).to.be.at.most(1e-6);
          } finally {
            removeAdapters(model, a);
          }
        }
      } finally {
        model.destroy();
      }
    });
  }

  it('a few LoRA steps on q_proj and v_proj lower the loss on a fixed batch', async () => {
    const { model, data } = await load();
    try {
      // A text of exactly T + 1 characters: every window the sampler draws is this one.
      const text = data.train.slice(0, T + 1);
      const ids = text.slice(0, T);
      const targets = text.slice(1);
      const lossOf = () => model.evaluate(ids, targets, T);
      const before = await lossOf();
      const a = installAdapters(model, { method: 'lora', rank: 4, scale: 2, blocks: 8, targets: ['q_proj', 'v_proj'], seed: 1 });
      try {
        expect(await lossOf()).to.be.closeTo(before, 1e-6 * before);
        const params = a.layers.flatMap((l) => l.trainables.map((t) => ({ ...t, decay: false })));
        const run = await trainGpt(model, params, text, T, { steps: 8, batch: 2, lr: 1e-2, logEvery: 8 });
        expect(run.losses).to.have.length(8);
        expect(run.losses[0][1]).to.be.closeTo(before, 1e-5 * before);
        const after = await lossOf();
        expect(after, `loss ${before} → ${after}`).to.be.below(before - 0.05);
        expect(run.tokensPerSecond).to.be.above(0);
      } finally {
        removeAdapters(model, a);
      }
    } finally {
      model.destroy();
    }
  });
});
