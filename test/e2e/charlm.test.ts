// End to end in Node: the committed pretrained character model, every fine-tuning method on its
// hidden layers through the package's kernels, AdamW, and the adapter files. Checks that each
// method starts as the base model, that a short fine-tune lowers the loss, and that an adapter
// saved to disk and loaded back reproduces the fine-tuned model exactly; and that adapters trained
// on an NF4 base (QLoRA-style) load and merge onto the f32 weights the base was quantized from.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pokemon from 'pokemon/data/en.json' with { type: 'json' };
import { configOptions, loadAdapter, saveAdapter, tensorsOf, type SigmaTransform } from '../../src/adapters.js';
import { makeWindows, normaliseName, normaliseNames, splitWords, VOCAB } from '../../examples/charlm/data.js';
import { createAdapter, installAdapter, METHODS, methodInfo, optionsFor } from '../../examples/charlm/methods.js';
import { CharLM, HIDDEN_MODULES } from '../../examples/charlm/model.js';
import { finetune, finetuneData } from '../../examples/charlm/session.js';
import type { Tensor } from '../../src/tensor.js';
import * as loraRef from '../../src/methods/lora/reference.js';
import * as boraRef from '../../src/methods/bora/reference.js';
import { expectClose, gpu } from '../helpers.js';

const WEIGHTS = new URL('../../examples/charlm/weights/charlm.safetensors', import.meta.url);

describe('e2e: character model data', () => {
  it('normalises Pokémon names onto a–z as documented', () => {
    const cases: [string, string][] = [
      ['Nidoran♀', 'nidoranf'],
      ['Nidoran♂', 'nidoranm'],
      ['Flabébé', 'flabebe'],
      ['Mr. Mime', 'mrmime'],
      ["Farfetch'd", 'farfetchd'],
      ['Porygon-Z', 'porygonz'],
      ['Porygon2', 'porygon'],
      ['Type: Null', 'typenull'],
      ['Pikachu', 'pikachu'],
    ];
    for (const [raw, want] of cases) expect(normaliseName(raw), raw).to.equal(want);
    const names = normaliseNames(pokemon as string[]);
    expect(names.every((n) => /^[a-z]+$/.test(n))).to.equal(true);
    expect(new Set(names).size).to.equal(names.length);
    expect(names.length).to.equal((pokemon as string[]).length - 1); // Porygon2 folds into Porygon
  });

  it('makes boundary-padded windows', () => {
    const w = makeWindows(['ab'], 3);
    expect(w.count).to.equal(3);
    // '...' → a, '..a' → b, '.ab' → '.'
    expect(Array.from(w.ids)).to.deep.equal([0, 0, 0, 0, 0, 1, 0, 1, 2]);
    expect(Array.from(w.targets)).to.deep.equal([1, 2, 0]);
    expect(VOCAB.length).to.equal(27);
  });
});

describe('e2e: fine-tuning the pretrained character model with every method', function () {
  this.timeout(300_000);
  let model: CharLM;
  const names = normaliseNames(pokemon as string[]);
  // A small slice keeps the test quick on CPU WebGPU.
  const split = splitWords(names, 0.1, 1);
  const data = finetuneData(split.train.slice(0, 200), split.validation.slice(0, 40), 8);
  const probe = data.validation.ids.slice(0, 16 * 8);

  before(async () => {
    const ctx = await gpu();
    const bytes = readFileSync(WEIGHTS);
    model = CharLM.fromSafetensors(ctx, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
  after(() => model?.destroy());

  it('loads the committed weights, which model English-like text', async () => {
    expect(model.parameterCount).to.equal(27 * 16 + (128 * 128 + 128) * 2 + 27 * 128 + 27);
    const english = makeWindows(['water', 'house', 'running', 'quickly'], 8);
    const loss = await model.evaluate(english.ids, english.targets);
    // Uniform guessing over 27 tokens scores ln 27 = 3.30.
    expect(loss).to.be.below(2.8);
  });

  for (const { method } of METHODS) {
    const rankFor = (r: number) => methodInfo(method).rankFor(r, model.moduleShapes.h1);
    it(`${method}: starts as the base model, learns, and survives a save/load round trip`, async () => {
      const base = await model.logits(probe);
      const spec = { method, r: rankFor(2), alpha: 2 * rankFor(2), options: optionsFor(method, { blocks: 4 }), seed: 3 };
      for (const mod of HIDDEN_MODULES) model.adapters[mod] = createAdapter(model, mod, spec);
      try {
        const start = await model.logits(probe);
        let err = 0;
        for (let i = 0; i < base.length; i++) err = Math.max(err, Math.abs(start[i] - base[i]));
        expect(err, 'adapter at init changes the model').to.be.below(1e-4);
      } finally {
        for (const mod of HIDDEN_MODULES) {
          model.adapters[mod]!.destroy();
          delete model.adapters[mod];
        }
      }
      const baseVal = await model.evaluate(data.validation.ids, data.validation.targets);
      const result = await finetune(model, data, {
        method,
        rank: 2,
        scale: 2,
        blocks: 4,
        steps: 40,
        batch: 64,
        lr: 0.005,
        warmup: 4,
        clip: 1,
        seed: 1,
        logEvery: 40,
        samples: 4,
      });
      expect(result.losses.length).to.equal(40);
      expect(result.losses.every(([, l]) => Number.isFinite(l))).to.equal(true);
      expect(result.validationLoss, `validation loss ${result.validationLoss} vs base ${baseVal}`).to.be.below(baseVal);
      expect(result.samples).to.have.length(4);
      expect(result.trainable).to.equal(HIDDEN_MODULES.length * (2 * 2 * 128 + (method === 'bora' ? 4 * 4 * 2 : 0)));
      expect(Object.keys(result.adapter.modules.h1).sort()).to.deep.equal(tensorsOf(method).slice().sort());
      // The rank of the trained ΔW, through the method's merge kernel: r for LoRA and LoRMA₊,
      // b·r for BoRA and MELoRA, the index count for SBoRA, nearly full for LoRMA_π.
      const r = rankFor(2);
      const want: Record<string, number> = { lora: r, bora: 4 * r, melora: 4 * r, 'sbora-fa': r, 'sbora-fb': r, 'lorma-plus': r };
      for (const mod of HIDDEN_MODULES) {
        if (method === 'lorma-pi') expect(result.deltaRank[mod], `${mod} ΔW rank`).to.be.above(100);
        else expect(result.deltaRank[mod], `${mod} ΔW rank`).to.equal(want[method]);
      }

      const dir = mkdtempSync(join(tmpdir(), `charlm-${method}-`));
      try {
        await saveAdapter(dir, result.adapter, model.moduleShapes);
        const loaded = await loadAdapter(dir, model.moduleShapes);
        const installed = installAdapter(model, loaded);
        try {
          const again = await model.evaluate(data.validation.ids, data.validation.targets);
          expect(Math.abs(again - result.validationLoss), `reloaded ${again} vs trained ${result.validationLoss}`).to.be.below(1e-5);
        } finally {
          for (const a of installed) a.destroy();
          for (const mod of HIDDEN_MODULES) delete model.adapters[mod];
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('e2e: fine-tuning on an NF4 base, merging onto the f32 weights', function () {
  this.timeout(300_000);
  let model: CharLM;
  const split = splitWords(normaliseNames(pokemon as string[]), 0.1, 1);
  const data = finetuneData(split.train.slice(0, 200), split.validation.slice(0, 40), 8);

  before(async () => {
    const ctx = await gpu();
    const bytes = readFileSync(WEIGHTS);
    model = CharLM.fromSafetensors(ctx, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
  after(() => model?.destroy());

  // LoRA and BoRA: the methods the NF4 goal of docs/finetuning.md names. ΔW is checked on its own
  // (deltaOnly) as well as in W', since after a few steps it is small against W0.
  for (const method of ['lora', 'bora']) {
    it(`${method}: trained on NF4/64, saved, loaded and merged onto the f32 W0 gives W0 + ΔW of the loaded factors`, async () => {
      const ctx = model.ctx;
      await model.setBase({ format: 'nf4', blockSize: 64 });
      expect(model.base).to.deep.equal({ format: 'nf4', blockSize: 64 });
      // 128 × 128 values: 8192 bytes of codes and 256 f32 absmax per layer.
      expect(model.baseBytes).to.equal(2 * (8192 + 256 * 4));
      const nf4Val = await model.evaluate(data.validation.ids, data.validation.targets);
      const result = await finetune(model, data, {
        method,
        rank: 2,
        scale: 2,
        blocks: 4,
        steps: 12,
        batch: 64,
        lr: 0.01,
        warmup: 2,
        clip: 1,
        seed: 2,
        logEvery: 12,
        samples: 2,
        measureRank: false,
      });
      expect(result.validationLoss, `validation on NF4 ${result.validationLoss} vs the NF4 base ${nf4Val}`).to.be.below(nf4Val);

      const dir = mkdtempSync(join(tmpdir(), `charlm-nf4-${method}-`));
      try {
        await saveAdapter(dir, result.adapter, model.moduleShapes);
        const loaded = await loadAdapter(dir, model.moduleShapes);
        await model.setBase({ format: 'f32' });
        expect(model.base.format).to.equal('f32');
        const installed = installAdapter(model, loaded);
        try {
          const c = loaded.config;
          const options = configOptions(c);
          for (const [i, mod] of HIDDEN_MODULES.entries()) {
            const { n, m } = model.moduleShapes[mod];
            const w0Tensor = model.baseWeight(mod) as Tensor;
            expect(w0Tensor.dtype, `${mod} W0`).to.equal('f32');
            const w0 = await ctx.read(w0Tensor);
            const t = loaded.modules[mod];
            const args = { n, m, r: c.r, scale: c.lora_alpha / c.r, a: t.lora_A!.data, b: t.lora_B!.data };
            const delta =
              method === 'lora'
                ? loraRef.loraDelta(args)
                : boraRef.boraDelta({
                    ...args,
                    blocks: options.blocks as number,
                    sigma: t.sigma!.data,
                    sigmaTransform: options.sigmaTransform as SigmaTransform,
                  });
            expect(
              delta.some((v) => v !== 0),
              `${mod}: the loaded ΔW is not zero`,
            ).to.equal(true);
            const merged = await installed[i].merge();
            const deltaOnly = await installed[i].merge({ deltaOnly: true });
            try {
              expect(merged.shape).to.deep.equal([m, n]);
              expect(merged.dtype).to.equal('f32');
              expectClose(await ctx.read(deltaOnly), delta, `${mod} ΔW`);
              expectClose(
                await ctx.read(merged),
                delta.map((v, k) => v + w0[k]),
                `${mod} W0 + ΔW`,
              );
            } finally {
              merged.destroy();
              deltaOnly.destroy();
            }
          }
        } finally {
          for (const a of installed) a.destroy();
          for (const mod of HIDDEN_MODULES) delete model.adapters[mod];
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
        await model.setBase({ format: 'f32' });
      }
    });
  }
});
