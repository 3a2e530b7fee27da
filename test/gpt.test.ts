// The GPT example (examples/gpt/model.ts) on a tiny config: the GPU forward loss, logits and the
// gradient of every weight against a float64 composition of the layer references, the reference
// against central finite differences, causality, and the adapter seam.

import { expect } from 'chai';
import { GPT, moduleName, weightShapes, type GPTConfig } from '../examples/gpt/model.js';
import { referenceForwardBackward } from '../examples/gpt/reference.js';
import { methodById } from '../src/methods/registry.js';
import { finiteDifference, relativeError, toF64 } from '../src/reference/linalg.js';
import { rng } from '../src/random.js';
import { finalTrainLoss, mean, meanSd, sampleIndex, sd, tailMean } from '../examples/common.js';
import { expectClose, gpu, rand } from './helpers.js';

// T = 8 of a 10-row position table (the rows past T must get a zero gradient); heads·headDim = 16.
const CONFIG: GPTConfig = { vocab: 11, context: 10, dim: 16, layers: 2, heads: 2, mlp: 40 };
const [B, T] = [3, 8];

/** Weights far from GPT-2's small init, so attention is not uniform and every path matters. */
function weights(): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of weightShapes(CONFIG)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const r = rand(size, name.includes('.ln') || name.startsWith('ln_f') ? 0.3 : 0.5);
    out.set(name, name.endsWith('ln1.weight') || name.endsWith('ln2.weight') || name === 'ln_f.weight' ? r.map((v) => 1 + v) : r);
  }
  return out;
}

function tokens(count: number, seed: number): Uint32Array {
  const next = rng(seed);
  return Uint32Array.from({ length: count }, () => Math.floor(next() * CONFIG.vocab));
}

describe('gpt example model', () => {
  const host = weights();
  const ids = tokens(B * T, 3);
  const targets = tokens(B * T, 4);

  it('GPU loss, logits and every weight gradient match the float64 reference', async () => {
    const ctx = await gpu();
    const model = GPT.fromHost(ctx, CONFIG, host);
    try {
      model.trainAll();
      const b = model.batch(B, T);
      model.setBatch(b, ids, targets);
      await ctx.encode(undefined, async (enc) => {
        await model.forward(enc, b);
        await model.backward(enc, b);
      });
      const want = referenceForwardBackward(CONFIG, host, ids, targets, B, T);
      const loss = (await ctx.readF32(b.loss))[0];
      expect(Math.abs(loss - want.loss) / want.loss, `loss ${loss} against ${want.loss}`).to.be.below(1e-6);
      expectClose(await ctx.readF32(b.logits), want.logits, 'logits');
      // Measured on lavapipe: every gradient within 9e-7 of its own scale, loss 1e-7, logits 3e-7.
      for (const name of weightShapes(CONFIG).keys()) {
        expectClose(await ctx.readF32(model.grads!.get(name)!), want.grads.get(name)!, `d${name}`);
      }
    } finally {
      model.destroy();
    }
  });

  it('the reference gradients match central finite differences of the reference loss', () => {
    const w64 = new Map([...host].map(([k, v]) => [k, toF64(v)]));
    const small = { B: 2, T: 5 };
    const id = ids.subarray(0, small.B * small.T);
    const tg = targets.subarray(0, small.B * small.T);
    const loss = () => referenceForwardBackward(CONFIG, w64, id, tg, small.B, small.T).loss;
    const grads = referenceForwardBackward(CONFIG, w64, id, tg, small.B, small.T).grads;
    for (const name of [
      'tok_emb.weight',
      'pos_emb.weight',
      `${moduleName(0, 'q_proj')}.weight`,
      `${moduleName(1, 'v_proj')}.weight`,
      `${moduleName(0, 'fc2')}.weight`,
      'layers.1.ln1.weight',
      'ln_f.bias',
    ]) {
      const err = relativeError(grads.get(name)!, finiteDifference(loss, w64.get(name)!));
      expect(err, `d${name}: relative error ${err.toExponential(2)}`).to.be.below(1e-6);
    }
  });

  it('is causal: changing a later token leaves every earlier logit unchanged', async () => {
    const ctx = await gpu();
    const model = GPT.fromHost(ctx, CONFIG, host);
    try {
      const V = CONFIG.vocab;
      const before = Float32Array.from(await model.logits(ids, T));
      const changed = ids.slice();
      const at = 5; // in the second sequence
      changed[T + at] = (changed[T + at] + 1) % V;
      const after = await model.logits(changed, T);
      for (let s = 0; s < B; s++) {
        for (let t = 0; t < T; t++) {
          const row = (s * T + t) * V;
          const same = before.subarray(row, row + V).every((v, j) => v === after[row + j]);
          const shouldChange = s === 1 && t >= at;
          expect(same, `sequence ${s} position ${t}: logits ${same ? 'unchanged' : 'changed'}`).to.equal(!shouldChange);
        }
      }
    } finally {
      model.destroy();
    }
  });

  it('round-trips through safetensors: the config and every weight, the same logits', async () => {
    const ctx = await gpu();
    const model = GPT.fromHost(ctx, CONFIG, host);
    try {
      const bytes = await model.toSafetensors({ note: 'test' });
      const { model: back, metadata } = GPT.fromSafetensors(ctx, bytes);
      try {
        expect(back.config).to.deep.equal(CONFIG);
        expect(metadata.note).to.equal('test');
        expectClose(await back.logits(ids, T), await model.logits(ids, T), 'logits after loading', 0);
      } finally {
        back.destroy();
      }
    } finally {
      model.destroy();
    }
  });

  it('an adapter from the registry on any projection: a fresh one leaves the logits unchanged, a trained one gets gradients', async () => {
    const ctx = await gpu();
    const model = GPT.fromHost(ctx, CONFIG, host);
    try {
      const base = Float32Array.from(await model.logits(ids, T));
      for (const proj of ['q_proj', 'fc1'] as const) {
        const mod = moduleName(1, proj);
        model.adapters[mod] = methodById('lora').createLayer(ctx, { w0: model.baseWeight(mod), r: 2, alpha: 4, seed: 5, name: mod });
      }
      expectClose(await model.logits(ids, T), base, 'logits with fresh LoRA adapters', 0);
      const b = model.batch(B, T);
      model.setBatch(b, ids, targets);
      await ctx.encode(undefined, async (enc) => {
        await model.forward(enc, b);
        await model.backward(enc, b);
      });
      const grad = await ctx.readF32(model.adapters[moduleName(1, 'q_proj')]!.trainables.find((t) => t.name.endsWith('lora_B'))!.grad);
      expect(grad.some((v) => v !== 0) && grad.every(Number.isFinite), 'lora_B gradient is finite and non-zero').to.equal(true);
    } finally {
      model.destroy();
    }
  });
});

describe('examples/common: sampling and report statistics', () => {
  it('sampleIndex draws from softmax(row / temperature) by the cumulative sum', () => {
    // p = (1, 3) / 4 at temperature 1: u below 1/4 picks 0, above picks 1.
    const row = [0, Math.log(3)];
    expect([0, 0.2, 0.26, 0.99].map((u) => sampleIndex(row, 1, u))).to.deep.equal([0, 0, 1, 1]);
    // Temperature 0.5 squares the odds: p = (1, 9) / 10.
    expect([0.09, 0.11].map((u) => sampleIndex(row, 0.5, u))).to.deep.equal([0, 1]);
    // Large logits do not overflow (the maximum is subtracted first).
    expect(sampleIndex([1000, 1000 + Math.log(3)], 1, 0.26)).to.equal(1);
  });

  it('mean, sd and meanSd', () => {
    expect(mean([1, 2, 6])).to.equal(3);
    expect(sd([1, 2, 6])).to.be.closeTo(Math.sqrt(7), 1e-12);
    expect(sd([5])).to.equal(0);
    expect(meanSd([1, 2, 6])).to.equal('3.0000 ± 2.6458');
    expect(meanSd([0.5])).to.equal('0.5000');
  });

  it('tailMean and finalTrainLoss smooth the end of a loss curve', () => {
    const curve: [number, number][] = Array.from({ length: 200 }, (_, i) => [i, i]);
    expect(tailMean(curve, 4)).to.equal((196 + 197 + 198 + 199) / 4);
    expect(tailMean(curve.slice(0, 2), 20)).to.equal(0.5);
    expect(tailMean([], 5)).to.equal(0);
    // The last twentieth (10 of 200 points), and at least 5 points of a short curve.
    expect(finalTrainLoss(curve)).to.equal(194.5);
    expect(finalTrainLoss(curve.slice(0, 40))).to.equal(37);
  });
});
