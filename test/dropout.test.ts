// Adapter dropout: the device mask matches the reference hash bit for bit, drops about p of the
// elements, and LoRA with dropout matches the reference forward and backward (whose gradients are
// checked by finite differences with the mask held fixed by its seed).

import { expect } from 'chai';
import { loraBackward, loraForward } from '../src/methods/lora/index.js';
import { dropoutApply } from '../src/ops/dropout.js';
import { dropoutMask } from '../src/reference/dropout.js';
import * as ref from '../src/methods/lora/reference.js';
import { dot, toF64 } from '../src/reference/linalg.js';
import { expectClose, expectGradients, expectThrows, gpu, rand } from './helpers.js';

describe('dropout', () => {
  it('the device mask equals the reference mask and drops about p of 20011 elements', async () => {
    const ctx = await gpu();
    const count = 20011;
    for (const [p, seed] of [
      [0.05, 1],
      [0.5, 0xdeadbeef],
    ]) {
      const ones = ctx.upload(new Float32Array(count).fill(1), [count]);
      const out = ctx.tensor([count]);
      await ctx.encode(undefined, (enc) => dropoutApply(ctx, ones, out, { p, seed }, enc));
      const got = await ctx.read(out);
      const mask = dropoutMask(count, p, seed);
      expectClose(got, mask, `mask p=${p}`, 1e-7);
      const dropped = mask.filter((v) => v === 0).length / count;
      // Binomial standard deviation is at most 0.0036 here; 5 of them.
      expect(Math.abs(dropped - p), `dropped fraction ${dropped}`).to.be.below(0.018);
      ones.destroy();
      out.destroy();
    }
  });

  it('different seeds give different masks', () => {
    const a = dropoutMask(1000, 0.3, 1);
    const b = dropoutMask(1000, 0.3, 2);
    expect(a.some((v, i) => v !== b[i])).to.equal(true);
  });

  for (const [T, n, m, r] of [
    [1, 37, 29, 3],
    [13, 29, 37, 8],
  ]) {
    it(`LoRA with dropout p=0.3 matches the reference at T=${T} n=${n} m=${m} r=${r}`, async () => {
      const ctx = await gpu();
      const x = rand(T * n),
        w0 = rand(m * n),
        a = rand(r * n),
        b = rand(m * r),
        g = rand(T * m);
      const dropout = { p: 0.3, seed: 1234 };
      const args = { T, n, m, r, scale: 2, x, w0, a, b, dropout };
      const t = {
        x: ctx.upload(x, [T, n]),
        w0: ctx.upload(w0, [m, n]),
        a: ctx.upload(a, [r, n]),
        b: ctx.upload(b, [m, r]),
        g: ctx.upload(g, [T, m]),
      };
      const p = { w0: t.w0, a: t.a, b: t.b, scale: 2, dropout };
      const { y, z } = await loraForward(ctx, { ...p, x: t.x });
      expectClose(await ctx.read(y), ref.loraForward(args), 'y');
      const expected = ref.loraBackward({ ...args, g });
      for (const [label, zArg] of [
        ['z given', z],
        ['z recomputed', undefined],
      ] as const) {
        const grads = await loraBackward(ctx, { ...p, x: t.x, g: t.g, z: zArg });
        expectClose(await ctx.read(grads.dx), expected.dx, `dx (${label})`);
        expectClose(await ctx.read(grads.da), expected.da, `da (${label})`);
        expectClose(await ctx.read(grads.db), expected.db, `db (${label})`);
      }
      const adapter = await loraBackward(ctx, { ...p, x: t.x, g: t.g, z }, { adapterOnly: true });
      // The adapter-only dX is the full dX minus G W0 (the reference with a zero adapter).
      const gw0 = ref.loraBackward({ ...args, g, a: new Float32Array(r * n), b: new Float32Array(m * r), dropout: undefined }).dx;
      expectClose(
        await ctx.read(adapter.dx),
        expected.dx.map((v, i) => v - gw0[i]),
        'adapter-only dx',
      );
    });
  }

  it('reference gradients with dropout match central finite differences', () => {
    const [T, n, m, r] = [3, 6, 5, 2];
    const x = toF64(rand(T * n)),
      w0 = toF64(rand(m * n)),
      a = toF64(rand(r * n)),
      b = toF64(rand(m * r)),
      g = toF64(rand(T * m));
    const args = { T, n, m, r, scale: 1.5, x, w0, a, b, dropout: { p: 0.4, seed: 77 } };
    const grads = ref.loraBackward({ ...args, g });
    const loss = () => dot(ref.loraForward(args), g);
    expectGradients(
      loss,
      [
        ['x', x, grads.dx],
        ['a', a, grads.da],
        ['b', b, grads.db],
      ],
      1e-7,
    );
  });

  it('rejects p outside [0, 1) and a seed that is not a u32', async () => {
    const ctx = await gpu();
    const [x, w0, a, b] = [ctx.tensor([2, 4]), ctx.tensor([3, 4]), ctx.tensor([1, 4]), ctx.tensor([3, 1])];
    await expectThrows(() => loraForward(ctx, { x, w0, a, b, scale: 1, dropout: { p: 1, seed: 0 } }), /'dropout\.p' must be in \[0, 1\), got 1/);
    await expectThrows(
      () => loraForward(ctx, { x, w0, a, b, scale: 1, dropout: { p: 0.1, seed: -3 } }),
      /'dropout\.seed' must be a u32 integer, got -3/,
    );
  });
});
