// Hostile but fair arguments, table-driven: for every public function of every family, a null,
// missing, wrong-type, typed-array, other-context or aliased argument gets a PeftError whose
// message names the call and the argument, never a TypeError; a bad call allocates nothing that
// outlives it; legal sharing of read-only inputs is accepted.

import { expect } from 'chai';
import { Context } from '../src/runtime.js';
import { Tensor } from '../src/tensor.js';
import { PeftError } from '../src/validate.js';
import { AdamW } from '../src/optim.js';
import * as nn from '../src/nn.js';
import { loraBackward, loraForward, loraMerge } from '../src/methods/lora/kernels.js';
import { boraBackward, boraForward, boraMerge, boraSigma } from '../src/methods/bora/kernels.js';
import { sboraBackward, sboraForward, sboraMerge, sboraMultiMerge } from '../src/methods/sbora/kernels.js';
import { createIndexSet } from '../src/methods/sbora/indices.js';
import { lormaBackward, lormaForward, lormaMerge } from '../src/methods/lorma/kernels.js';
import { expectThrows, gpu, rand } from './helpers.js';

// n = m, so that every output has an input of its shape to alias.
const [T, n, m, r] = [4, 8, 8, 2];

type Args = Record<string, unknown>;
type Call = (ctx: Context, p: unknown, opts?: unknown) => Promise<unknown>;

interface Case {
  /** The name the call's errors start with. */
  where: string;
  call: Call;
  /** A valid argument object on `ctx`. */
  args: (ctx: Context) => Args;
  /** Tensor fields to corrupt, read-only inputs first. */
  inputs: string[];
  /** An output field and the input it may not alias (left out where the call has none). */
  alias?: [string, string];
}

function tensors(ctx: Context) {
  const up = (shape: number[], label: string) => ctx.upload(rand(shape.reduce((a, b) => a * b, 1)), shape, 'f32', label);
  return {
    x: up([T, n], 'x'),
    w0: up([m, n], 'w0'),
    a: up([r, n], 'a'),
    b: up([m, r], 'b'),
    g: up([T, m], 'g'),
    sigma: up([2, 2, r], 'sigma'),
    sq: up([m, m], 'sq'),
    la: up([r, m], 'la'),
    lb: up([m, r], 'lb'),
    xm: up([T, m], 'xm'),
    idx: createIndexSet(ctx, { size: n, values: [1, 6] }),
  };
}

const cache = new WeakMap<Context, ReturnType<typeof tensors>>();
const t = (ctx: Context) => {
  let v = cache.get(ctx);
  if (!v) cache.set(ctx, (v = tensors(ctx)));
  return v;
};

const lora = (ctx: Context) => ({ w0: t(ctx).w0, a: t(ctx).a, b: t(ctx).b, scale: 2 });
const bora = (ctx: Context) => ({ ...lora(ctx), blocks: 2, sigma: t(ctx).sigma });
const fa = (ctx: Context) => ({ variant: 'fa', w0: t(ctx).w0, b: t(ctx).b, idx: t(ctx).idx, scale: 1 });
const lorma = (ctx: Context) => ({ variant: 'plus', w0: t(ctx).sq, a: t(ctx).la, b: t(ctx).lb, scale: 1 });

const CASES: Case[] = [
  { where: 'lora.forward', call: loraForward as Call, args: (c) => ({ ...lora(c), x: t(c).x }), inputs: ['x', 'w0', 'a', 'b'], alias: ['y', 'x'] },
  {
    where: 'lora.backward',
    call: loraBackward as Call,
    args: (c) => ({ ...lora(c), x: t(c).x, g: t(c).g }),
    inputs: ['x', 'g', 'w0', 'a', 'b'],
    alias: ['dx', 'x'],
  },
  { where: 'lora.merge', call: loraMerge as Call, args: lora, inputs: ['w0', 'a', 'b'], alias: ['out', 'w0'] },
  {
    where: 'bora.forward',
    call: boraForward as Call,
    args: (c) => ({ ...bora(c), x: t(c).x }),
    inputs: ['x', 'w0', 'a', 'b', 'sigma'],
    alias: ['y', 'x'],
  },
  {
    where: 'bora.backward',
    call: boraBackward as Call,
    args: (c) => ({ ...bora(c), x: t(c).x, g: t(c).g }),
    inputs: ['x', 'g', 'w0', 'a', 'b', 'sigma'],
    alias: ['dx', 'x'],
  },
  { where: 'bora.merge', call: boraMerge as Call, args: bora, inputs: ['w0', 'a', 'b', 'sigma'], alias: ['out', 'w0'] },
  { where: 'bora.sigma', call: boraSigma as Call, args: (c) => ({ sigma: t(c).sigma }), inputs: ['sigma'] },
  { where: 'sbora.fa.forward', call: sboraForward as Call, args: (c) => ({ ...fa(c), x: t(c).x }), inputs: ['x', 'w0', 'b'], alias: ['y', 'x'] },
  {
    where: 'sbora.fa.backward',
    call: sboraBackward as Call,
    args: (c) => ({ ...fa(c), x: t(c).x, g: t(c).g }),
    inputs: ['x', 'g', 'w0', 'b'],
    alias: ['dx', 'x'],
  },
  { where: 'sbora.fa.merge', call: sboraMerge as Call, args: fa, inputs: ['w0', 'b'], alias: ['out', 'w0'] },
  {
    where: 'sbora.multi.merge',
    call: sboraMultiMerge as Call,
    args: (c) => {
      const { w0, ...ad } = fa(c);
      return { w0, adapters: [ad] };
    },
    inputs: ['w0'],
    alias: ['out', 'w0'],
  },
  {
    where: 'lorma.forward',
    call: lormaForward as Call,
    args: (c) => ({ ...lorma(c), x: t(c).xm }),
    inputs: ['x', 'w0', 'a', 'b'],
    alias: ['y', 'x'],
  },
  {
    where: 'lorma.backward',
    call: lormaBackward as Call,
    args: (c) => ({ ...lorma(c), x: t(c).xm, g: t(c).g }),
    inputs: ['x', 'g', 'w0', 'a', 'b'],
    alias: ['dx', 'g'],
  },
  { where: 'lorma.merge', call: lormaMerge as Call, args: lorma, inputs: ['w0', 'a', 'b'], alias: ['out', 'w0'] },
  { where: 'nn.linear', call: nn.linearForward as Call, args: (c) => ({ x: t(c).x, w: t(c).w0 }), inputs: ['x', 'w'], alias: ['y', 'x'] },
  {
    where: 'nn.linearBackward',
    call: nn.linearBackward as Call,
    args: (c) => ({ x: t(c).x, w: t(c).w0, g: t(c).g }),
    inputs: ['x', 'w', 'g'],
    alias: ['dx', 'x'],
  },
  { where: 'nn.activation', call: nn.activationForward as Call, args: (c) => ({ x: t(c).x }), inputs: ['x'], alias: ['y', 'x'] },
];

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Expects a PeftError starting with the call's name and mentioning each pattern; no allocation survives. */
async function refused(ctx: Context, where: string, fn: () => unknown, ...patterns: RegExp[]): Promise<void> {
  const before = ctx.allocations.liveBytes;
  const e = await expectThrows(fn, new RegExp(`^${escape(where)}`), ...patterns);
  expect(e, e.message).to.be.instanceOf(PeftError);
  expect(ctx.allocations.liveBytes, `${where}: bytes left allocated by a refused call`).to.equal(before);
}

describe('arguments: every public call refuses bad arguments by name', function () {
  this.timeout(120_000);
  let other: Context;

  before(async () => {
    other = await Context.create();
  });

  after(() => other.destroy());

  for (const c of CASES) {
    it(`${c.where}: null, missing, typed-array, other-context and aliased arguments`, async () => {
      const ctx = await gpu();
      c.args(ctx); // the shared inputs, made before any allocation is counted
      // SBoRA's name carries the variant, which a missing argument object does not have.
      const bare = c.where.replace(/^sbora\.fa\.(forward|backward|merge)$/, 'sbora.$1');
      await refused(ctx, bare, () => c.call(ctx, null), /argument object/, /null/);
      await refused(ctx, bare, () => c.call(ctx, undefined), /argument object/);
      await refused(ctx, c.where, () => c.call(ctx, c.args(ctx), null), /options/, /null/);
      await expectThrows(() => c.call(null as never, c.args(ctx)), new RegExp(`^${escape(c.where)}: the first argument must be a Context`));
      for (const name of c.inputs) {
        const args = c.args(ctx);
        const given = args[name] as Tensor;
        const quoted = new RegExp(`'${name}'`);
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [name]: null }), quoted, /null/);
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [name]: undefined }), quoted, /nothing/);
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [name]: new Float32Array(given.size) }), quoted, /Float32Array/);
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [name]: 3 }), quoted, /number 3/);
        const foreign = other.upload(new Float32Array(given.size), given.shape, 'f32', 'foreign');
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [name]: foreign }), quoted, /belongs to another context/);
        foreign.destroy();
      }
      if (c.alias) {
        const [out, input] = c.alias;
        const args = c.args(ctx);
        const src = args[input] as Tensor;
        const same = new RegExp(`('${out}' and '${input}'|'${input}' and '${out}') are the same buffer`);
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [out]: src }), same);
        // The same buffer through Tensor.wrap is the same aliasing.
        const wrapped = Tensor.wrap(ctx, src.buffer, src.shape, 'f32', 'wrapped');
        await refused(ctx, c.where, () => c.call(ctx, { ...args, [out]: wrapped }), same);
      }
    });
  }

  it('scale 1e39, finite in float64 but not in f32, is refused by every method', async () => {
    const ctx = await gpu();
    for (const c of CASES.filter((k) => 'scale' in k.args(ctx))) {
      await refused(ctx, c.where, () => c.call(ctx, { ...c.args(ctx), scale: 1e39 }), /'scale'/, /float32/);
    }
  });

  it('dropout: null and a bad dropout are refused by name before anything is allocated', async () => {
    const ctx = await gpu();
    await refused(ctx, 'lora.forward', () => loraForward(ctx, { ...lora(ctx), x: t(ctx).x, dropout: null as never }), /'dropout' must be an object/);
    await refused(ctx, 'lora.forward', () => loraForward(ctx, { ...lora(ctx), x: t(ctx).x, dropout: { p: 2, seed: 1 } }), /'dropout\.p'/);
    await refused(
      ctx,
      'sbora.fa.forward',
      () => sboraForward(ctx, { ...fa(ctx), x: t(ctx).x, dropout: { p: -1, seed: 1 } } as never),
      /'dropout\.p'/,
    );
    await refused(
      ctx,
      'lora.backward',
      () => loraBackward(ctx, { ...lora(ctx), x: t(ctx).x, g: t(ctx).g, da: t(ctx).a }),
      /'da' and 'a' are the same buffer/,
    );
  });

  it('BoRA outputs may not alias the caller’s sigmaEff', async () => {
    const ctx = await gpu();
    const sigmaEff = await boraSigma(ctx, { sigma: t(ctx).sigma });
    const args = { ...bora(ctx), x: t(ctx).x, g: t(ctx).g, sigmaEff };
    await refused(
      ctx,
      'bora.backward',
      () => boraBackward(ctx, { ...args, dsigma: sigmaEff.eff }),
      /'dsigma' and 'sigmaEff\.eff' are the same buffer/,
    );
    await refused(ctx, 'bora.merge', () => boraMerge(ctx, { ...bora(ctx), sigmaEff, out: sigmaEff.eff } as never), /'out'/);
    sigmaEff.eff.destroy();
    sigmaEff.mu.destroy();
  });

  it('two read-only inputs sharing a tensor are legal (a: w0 in a square merge)', async () => {
    const ctx = await gpu();
    const sq = ctx.upload(rand(n * n), [n, n], 'f32', 'sq');
    const b = ctx.upload(rand(n * n), [n, n], 'f32', 'b');
    const out = await loraMerge(ctx, { w0: sq, a: sq, b, scale: 1 });
    expect((await ctx.read(out)).every(Number.isFinite)).to.equal(true);
    // In place, W0 is written: a wrapped view of it as 'a' is aliasing.
    const view = Tensor.wrap(ctx, sq.buffer, [n, n], 'f32', 'view');
    await refused(ctx, 'lora.merge', () => loraMerge(ctx, { w0: sq, a: view, b, scale: 1 }, { inPlace: true }), /'w0' and 'a' are the same buffer/);
    for (const x of [out, sq, b]) x.destroy();
  });

  it('Tensor.wrap refuses shapes that are not positive integers and buffers smaller than the shape', async () => {
    const ctx = await gpu();
    const buffer = ctx.device.createBuffer({ size: 64, usage: 0x80 | 0x08 | 0x04 });
    for (const shape of [[-1, 4], [0, 4], [2.5, 4], [NaN, 4], [], null, 'x']) {
      expect(() => Tensor.wrap(ctx, buffer, shape as never, 'f32', 'w'), JSON.stringify(shape)).to.throw(
        PeftError,
        /^Tensor\.wrap 'w': 'shape' must be a non-empty array of positive integers/,
      );
    }
    expect(() => Tensor.wrap(ctx, buffer, [5, 4], 'f32', 'w')).to.throw(PeftError, /buffer has 64 bytes, shape \[5, 4\] of f32 needs 80/);
    expect(() => Tensor.wrap(ctx, new Float32Array(16) as never, [4, 4], 'f32', 'w')).to.throw(
      PeftError,
      /'buffer' must be a GPUBuffer, got a Float32Array/,
    );
    expect(() => Tensor.wrap(null as never, buffer, [4, 4])).to.throw(PeftError, /'ctx' must be a Context, got null/);
    buffer.destroy();
  });

  it('AdamW refuses typed arrays, nulls and other contexts’ tensors by name', async () => {
    const ctx = await gpu();
    const p = ctx.upload(rand(4), [4], 'f32', 'p');
    const g = ctx.upload(rand(4), [4], 'f32', 'g');
    expect(() => new AdamW(ctx, [{ param: new Float32Array(4) as never, grad: g }], { lr: 1 })).to.throw(
      PeftError,
      /^AdamW: 'params\[0\]\.param' must be a Tensor, got a Float32Array/,
    );
    expect(() => new AdamW(ctx, [null as never], { lr: 1 })).to.throw(PeftError, /^AdamW: 'params\[0\]' must be \{ param, grad \}, got null/);
    const foreign = other.upload(rand(4), [4], 'f32', 'foreign');
    expect(() => new AdamW(ctx, [{ param: p, grad: foreign }], { lr: 1 })).to.throw(PeftError, /'params\[0\]\.grad' belongs to another context/);
    expect(() => new AdamW(null as never, [{ param: p, grad: g }], { lr: 1 })).to.throw(PeftError, /^AdamW: the first argument must be a Context/);
    for (const x of [p, g, foreign]) x.destroy();
  });

  it('a mismatched shape never reads as a contradiction', async () => {
    const ctx = await gpu();
    const x = ctx.upload(rand(3 * 12), [3, 12], 'f32', 'x');
    const e = await expectThrows(
      () => loraForward(ctx, { ...lora(ctx), x }),
      /^lora\.forward: 'x' has shape \[3, 12\], expected \[T, n\] = \[3, 8\]/,
    );
    expect(e).to.be.instanceOf(PeftError);
    x.destroy();
  });
});
