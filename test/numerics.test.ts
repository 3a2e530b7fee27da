// NaN and ±Inf (docs/reliability.md): safeMerge refuses a non-finite merged weight for every
// method before anything of the caller's is written, and LoRMA_π's FFT path puts a non-finite
// input into exactly the outputs the float64 reference has non-finite, no further (its transforms
// pair two rows, which used to carry a NaN in token 2 into token 3 as well).

import { expect } from 'chai';
import {
  boraMerge,
  createIndexSet,
  loraMerge,
  lormaBackward,
  lormaForward,
  lormaMerge,
  lormaPiPath,
  sboraMerge,
  sboraMultiMerge,
  type LormaOrder,
  type MergeOptions,
} from '../src/index.js';
import * as lormaRef from '../src/methods/lorma/reference.js';
import { uniform } from '../src/random.js';
import type { Context } from '../src/runtime.js';
import type { Tensor } from '../src/tensor.js';
import { F32_TOL, expectClose, expectThrows, gpu, rand } from './helpers.js';

const finite = (v: number) => Number.isFinite(v);

/**
 * `actual` is non-finite exactly where `expected` is (NaN and ±Inf alike: the FFT path writes NaN
 * where the reference may sum to an infinity), and within F32_TOL of it elsewhere, relative to the
 * largest finite expected value.
 */
function expectSamePattern(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, cols: number): void {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  const wrong: string[] = [];
  let scale = 0;
  for (let i = 0; i < expected.length; i++) if (finite(expected[i])) scale = Math.max(scale, Math.abs(expected[i]));
  let err = 0;
  for (let i = 0; i < expected.length; i++) {
    if (finite(actual[i]) !== finite(expected[i])) {
      if (wrong.length < 6) wrong.push(`[${Math.floor(i / cols)}, ${i % cols}] = ${actual[i]}, expected ${expected[i]}`);
      else wrong.push('…');
    } else if (finite(expected[i])) {
      err = Math.max(err, Math.abs(actual[i] - expected[i]));
    }
  }
  expect(wrong, `${what}: finite where the reference is not, or the reverse: ${wrong.slice(0, 7).join('; ')}`).to.deep.equal([]);
  expect(err / (scale || 1), `${what}: relative error of the finite values`).to.be.at.most(F32_TOL);
}

describe('safeMerge: a non-finite merged weight throws before anything is replaced', () => {
  const [m, n, r] = [12, 16, 4];

  interface Case {
    name: string;
    /** Runs the method's merge on these factors (B's entry [1, 2] may be poisoned). */
    merge: (ctx: Context, w0: Tensor, poison: boolean, opts: MergeOptions & { out?: Tensor }) => Promise<Tensor>;
    inPlace: boolean;
  }

  // Each call uploads its own factors (a poisoned one never outlives its call); freed per test.
  let made: Tensor[] = [];
  const factor = (ctx: Context, shape: number[], poison: boolean, at: number) => {
    // The same values on every call of a case (the seed is the shape), so merges can be compared.
    const v = uniform(
      shape.reduce((x, y) => x * y, 1),
      0.5,
      shape.reduce((x, y) => x * 31 + y, 7),
    );
    if (poison) v[at] = NaN;
    const t = ctx.upload(v, shape, 'f32', 'factor');
    made.push(t);
    return t;
  };
  const CASES: Case[] = [
    {
      name: 'lora',
      inPlace: true,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        loraMerge(ctx, { w0, a: factor(ctx, [r, n], false, 0), b: factor(ctx, [m, r], poison, r + 2), scale: 2, out }, opts),
    },
    {
      name: 'bora',
      inPlace: true,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        boraMerge(
          ctx,
          {
            w0,
            a: factor(ctx, [r, n], false, 0),
            b: factor(ctx, [m, r], poison, r + 2),
            sigma: factor(ctx, [2, 2, r], false, 0),
            blocks: 2,
            scale: 2,
            out,
          },
          opts,
        ),
    },
    {
      name: 'melora',
      inPlace: true,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        boraMerge(
          ctx,
          { variant: 'melora', w0, a: factor(ctx, [r, n], false, 0), b: factor(ctx, [m, r], poison, r + 2), blocks: 2, scale: 2, out },
          opts,
        ),
    },
    {
      name: 'sbora-fa',
      inPlace: true,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        sboraMerge(
          ctx,
          { variant: 'fa', w0, b: factor(ctx, [m, r], poison, r + 2), idx: createIndexSet(ctx, { size: n, values: [3, 0, 9, 15] }), scale: 2, out },
          opts,
        ),
    },
    {
      name: 'sbora-fb',
      inPlace: true,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        sboraMerge(
          ctx,
          { variant: 'fb', w0, a: factor(ctx, [r, n], poison, n + 2), idx: createIndexSet(ctx, { size: m, values: [1, 5, 7, 11] }), scale: 2, out },
          opts,
        ),
    },
    {
      name: 'sbora multi',
      inPlace: true,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        sboraMultiMerge(
          ctx,
          {
            w0,
            out,
            adapters: [
              { variant: 'fa', b: factor(ctx, [m, r], false, 0), idx: createIndexSet(ctx, { size: n, values: [3, 0, 9, 15] }), scale: 2 },
              { variant: 'fb', a: factor(ctx, [r, n], poison, n + 2), idx: createIndexSet(ctx, { size: m, values: [1, 5, 7, 11] }), scale: 1 },
            ],
          },
          opts,
        ),
    },
    {
      name: 'lorma-pi',
      inPlace: false,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        lormaMerge(ctx, { variant: 'pi', w0, a: factor(ctx, [r, m], false, 0), b: factor(ctx, [m, r], poison, r + 2), scale: 2, out }, opts),
    },
    {
      name: 'lorma-plus',
      inPlace: false,
      merge: (ctx, w0, poison, { out, ...opts }) =>
        lormaMerge(ctx, { variant: 'plus', w0, a: factor(ctx, [r, m], false, 0), b: factor(ctx, [m, r], poison, r + 2), scale: 2, out }, opts),
    },
  ];

  for (const c of CASES) {
    it(`${c.name}: the same result as an unchecked merge when finite; a NaN in the adapter throws and leaves W0 and 'out' as they were`, async () => {
      const ctx = await gpu();
      const w0Host = rand(m * n);
      const w0 = ctx.upload(w0Host, [m, n], 'f32', 'w0');
      const temporaries = () => ctx.allocations.live.filter((a) => /\.(safe|check)$/.test(a.label)).length;
      const before = temporaries();

      const readOnce = async (t: Tensor) => {
        const v = await ctx.read(t);
        t.destroy();
        return v;
      };
      // Finite: the checked merge returns what the unchecked one does, new, into `out`, in place.
      const plain = await readOnce(await c.merge(ctx, w0, false, {}));
      const fresh = await c.merge(ctx, w0, false, { safeMerge: true });
      expectClose(await ctx.read(fresh), plain, `${c.name} safeMerge (new tensor)`, 0);
      const out = ctx.zeros([m, n], 'f32', 'out');
      expect(await c.merge(ctx, w0, false, { safeMerge: true, out })).to.equal(out);
      expectClose(await ctx.read(out), plain, `${c.name} safeMerge (out)`, 0);
      const delta = await readOnce(await c.merge(ctx, w0, false, { deltaOnly: true }));
      expectClose(await readOnce(await c.merge(ctx, w0, false, { deltaOnly: true, safeMerge: true })), delta, `${c.name} safeMerge deltaOnly`, 0);

      // Poisoned: each target form throws, naming the call, the count and the first position.
      ctx.fill(out, 7);
      await expectThrows(
        () => c.merge(ctx, w0, true, { safeMerge: true }),
        /merge: safeMerge: the merged weight has \d+ non-finite values? \(NaN or ±Inf\), the first at \[\d+, \d+\]; no tensor was returned/,
      );
      await expectThrows(() => c.merge(ctx, w0, true, { safeMerge: true, out }), /safeMerge: .* non-finite .*; 'out' is unchanged/);
      expect(Array.from(await ctx.read(out)).every((v) => v === 7)).to.equal(true);
      if (c.inPlace) {
        await expectThrows(() => c.merge(ctx, w0, true, { safeMerge: true, inPlace: true }), /safeMerge: .* non-finite .*; 'w0' is unchanged/);
        expectClose(await ctx.read(w0), w0Host, `${c.name} w0 after a refused in-place merge`, 0);
        // Finite in place: W0 becomes the merged weight.
        await c.merge(ctx, w0, false, { safeMerge: true, inPlace: true });
        expect(Array.from(await ctx.read(w0)).every(finite)).to.equal(true);
      }
      // Without the check the poisoned merge goes through, which is what safeMerge is for.
      const unchecked = await c.merge(ctx, w0, true, {});
      expect(Array.from(await ctx.read(unchecked)).some((v) => !finite(v))).to.equal(true);
      unchecked.destroy();

      // Neither the passed nor the refused merges left a temporary or a check result behind.
      expect(temporaries(), 'temporaries left by safeMerge').to.equal(before);
      for (const t of [fresh, out, w0, ...made]) t.destroy();
      made = [];
    });
  }

  it('refuses a caller encoder (the check must be read back) and a non-boolean value', async () => {
    const ctx = await gpu();
    const w0 = ctx.upload(rand(m * n), [m, n]);
    const a = ctx.upload(rand(r * n), [r, n]);
    const b = ctx.upload(rand(m * r), [m, r]);
    const encoder = ctx.device.createCommandEncoder();
    await expectThrows(
      () => loraMerge(ctx, { w0, a, b, scale: 1 }, { safeMerge: true, encoder }),
      /lora\.merge: 'safeMerge' waits for the device/,
      /'encoder'/,
    );
    await expectThrows(
      () => loraMerge(ctx, { w0, a, b, scale: 1 }, { safeMerge: 'yes' as never }),
      /lora\.merge: 'safeMerge' must be a boolean, got string/,
    );
    await expectThrows(
      () => loraMerge(ctx, { w0, a, b, scale: 1 }, { safeMerge: true, inPlace: true, deltaOnly: true }),
      /'inPlace' and 'deltaOnly' exclude each other/,
    );
    ctx.submit(encoder);
    for (const t of [w0, a, b]) t.destroy();
  });

  it('an Inf already in W0 is found too (the whole merged weight is checked, not only ΔW)', async () => {
    const ctx = await gpu();
    const host = rand(m * n);
    host[5 * n + 7] = -Infinity;
    const w0 = ctx.upload(host, [m, n]);
    const a = ctx.upload(rand(r * n), [r, n]);
    const b = ctx.upload(rand(m * r), [m, r]);
    await expectThrows(
      () => loraMerge(ctx, { w0, a, b, scale: 1 }, { safeMerge: true, inPlace: true }),
      /1 non-finite value \(NaN or ±Inf\), the first at \[5, 7\]/,
    );
    // deltaOnly checks ΔW alone, which is finite.
    const d = await loraMerge(ctx, { w0, a, b, scale: 1 }, { safeMerge: true, deltaOnly: true });
    for (const t of [w0, a, b, d]) t.destroy();
  });
});

describe('LoRMA_π: NaN and ±Inf reach exactly the outputs the reference has them in', () => {
  // d = 64 on the FFT path (forced), T odd (one token has no partner in its transform), r odd.
  const [T, d, other, r, scale] = [7, 64, 10, 3, 1.25];

  type Site = 'x' | 'a' | 'b' | 'g';
  const INJECTIONS: [Site, number, number, number, string][] = [
    ['x', 2, 5, NaN, 'NaN in token 2 of x'],
    ['x', 6, 0, Infinity, 'Inf in the last (unpaired) token of x'],
    ['a', 0, 5, Infinity, 'Inf in A[0, 5]'],
    ['a', 2, 9, NaN, 'NaN in the last (unpaired) row of A'],
    ['b', 3, 1, NaN, 'NaN in B[3, 1]'],
    ['g', 4, 6, -Infinity, '−Inf in G[4, 6]'],
  ];

  for (const order of ['pre', 'post'] as LormaOrder[]) {
    for (const [site, row, col, value, what] of INJECTIONS) {
      for (const piPath of ['fft', 'tiles'] as const) {
        it(`${order}, ${piPath}: ${what}`, async () => {
          const ctx = await gpu();
          const [n, m] = order === 'pre' ? [other, d] : [d, other];
          const shapes: Record<Site, [number, number]> = { x: [T, n], a: [r, d], b: [d, r], g: [T, m] };
          const host = {
            x: rand(T * n),
            w0: rand(m * n, 0.5),
            a: rand(r * d, 0.3),
            b: rand(d * r, 0.3),
            g: rand(T * m),
          };
          host[site][row * shapes[site][1] + col] = value;
          const dev = Object.fromEntries(Object.entries(host).map(([k, v]) => [k, ctx.upload(v, k === 'w0' ? [m, n] : shapes[k as Site], 'f32', k)]));
          expect(lormaPiPath(ctx, d, piPath)).to.equal(piPath);
          const refArgs = { T, n, m, r, scale, variant: 'pi' as const, order, x: host.x, w0: host.w0, a: host.a, b: host.b };
          const p = { w0: dev.w0, a: dev.a, b: dev.b, scale, variant: 'pi' as const, order, piPath };
          const fwd = await lormaForward(ctx, { ...p, x: dev.x });
          expectSamePattern(await ctx.read(fwd.y), lormaRef.lormaForward(refArgs), 'y', m);
          const want = lormaRef.lormaBackward({ ...refArgs, g: host.g });
          const grads = await lormaBackward(ctx, { ...p, x: dev.x, g: dev.g, u: fwd.u });
          expectSamePattern(await ctx.read(grads.dx), want.dx, 'dx', n);
          expectSamePattern(await ctx.read(grads.da), want.da, 'da', d);
          expectSamePattern(await ctx.read(grads.db), want.db, 'db', r);
          for (const t of [fwd.y, fwd.u, grads.dx, grads.da, grads.db, ...Object.values(dev)]) t?.destroy();
        });
      }
    }
  }

  it('after a non-finite call, a finite call on the same scratch is finite again (the flags are cleared per call)', async () => {
    const ctx = await gpu();
    const [n, m] = [other, d];
    const x = rand(T * n);
    const bad = Float32Array.from(x);
    bad[3] = NaN;
    const w0 = ctx.upload(rand(m * n, 0.5), [m, n]);
    const a = ctx.upload(rand(r * d, 0.3), [r, d]);
    const b = ctx.upload(rand(d * r, 0.3), [d, r]);
    const p = { w0, a, b, scale, variant: 'pi' as const, piPath: 'fft' as const };
    const first = await lormaForward(ctx, { ...p, x: ctx.upload(bad, [T, n]) });
    expect(Array.from(await ctx.read(first.y)).some((v) => !finite(v))).to.equal(true);
    const second = await lormaForward(ctx, { ...p, x: ctx.upload(x, [T, n]) });
    expectClose(
      await ctx.read(second.y),
      lormaRef.lormaForward({
        T,
        n,
        m,
        r,
        scale,
        variant: 'pi',
        order: 'pre',
        x,
        w0: await ctx.read(w0),
        a: await ctx.read(a),
        b: await ctx.read(b),
      }),
      'y',
    );
  });
});
