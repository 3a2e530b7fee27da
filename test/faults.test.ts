// Faults: a destroyed context or a lost device must never end the process. Every call rejects
// with a PeftError that names the call and what was lost, at every point a loss can come (before
// a call, between encode and read, in a training loop, during the first pipeline compile, during
// an un-awaited call), and nothing is left as an unhandled rejection. Each test makes its own
// context: a lost one cannot be shared.

import { expect } from 'chai';
import { Context } from '../src/runtime.js';
import { Tensor } from '../src/tensor.js';
import { PeftError } from '../src/validate.js';
import { AdamW } from '../src/optim.js';
import { matmul } from '../src/ops/matmul.js';
import { loraBackward, loraForward, loraMerge } from '../src/methods/lora/kernels.js';
import { boraForward, boraMerge } from '../src/methods/bora/kernels.js';
import { sboraForward, sboraMerge } from '../src/methods/sbora/kernels.js';
import { createIndexSet } from '../src/methods/sbora/indices.js';
import { lormaForward, lormaMerge } from '../src/methods/lorma/kernels.js';
import { expectThrows, rand } from './helpers.js';

const [T, n, m, r] = [4, 8, 6, 2];
const DESTROYED = /this context was destroyed/;
const LOST = /the GPU device was lost \(destroyed: .*\); create a new context/;

interface Layer {
  ctx: Context;
  x: Tensor;
  w0: Tensor;
  a: Tensor;
  b: Tensor;
  g: Tensor;
  y: Tensor;
  z: Tensor;
}

async function layer(): Promise<Layer> {
  const ctx = await Context.create();
  const up = (shape: number[], label: string) => ctx.upload(rand(shape[0] * shape[1]), shape, 'f32', label);
  return {
    ctx,
    x: up([T, n], 'x'),
    w0: up([m, n], 'w0'),
    a: up([r, n], 'a'),
    b: up([m, r], 'b'),
    g: up([T, m], 'g'),
    y: ctx.tensor([T, m], 'f32', 'y'),
    z: ctx.tensor([T, r], 'f32', 'z'),
  };
}

/** Every family's calls on `l`, with the caller's outputs given, so none allocates first. */
function calls(l: Layer): [string, () => Promise<unknown>][] {
  const { ctx, x, w0, a, b, g, y, z } = l;
  const p = { w0, a, b, scale: 2 };
  const sigma = ctx.upload(rand(r), [1, 1, r], 'f32', 'sigma');
  const idx = createIndexSet(ctx, { size: n, values: [1, 5] });
  const square = ctx.upload(rand(m * m), [m, m], 'f32', 'square');
  const lb = ctx.upload(rand(m * r), [m, r], 'f32', 'lb');
  const la = ctx.upload(rand(r * m), [r, m], 'f32', 'la');
  const out = ctx.tensor([m, n], 'f32', 'out');
  const [dx, da, db] = [ctx.tensor([T, n]), ctx.tensor([r, n]), ctx.tensor([m, r])];
  const [lx, ly] = [ctx.tensor([T, m]), ctx.tensor([T, m])];
  return [
    ['lora.forward', () => loraForward(ctx, { ...p, x, y, z })],
    ['lora.backward', () => loraBackward(ctx, { ...p, x, g, z, dx, da, db })],
    ['lora.merge', () => loraMerge(ctx, { ...p, out })],
    ['bora.forward', () => boraForward(ctx, { ...p, blocks: 1, sigma, x, y })],
    ['bora.merge', () => boraMerge(ctx, { ...p, blocks: 1, sigma, out })],
    ['sbora.fa.forward', () => sboraForward(ctx, { variant: 'fa', w0, b, idx, scale: 1, x, y })],
    ['sbora.fa.merge', () => sboraMerge(ctx, { variant: 'fa', w0, b, idx, scale: 1, out })],
    ['lorma.forward', () => lormaForward(ctx, { variant: 'pi', w0: square, a: la, b: lb, scale: 1, x: lx, y: ly })],
    ['lorma.merge', () => lormaMerge(ctx, { variant: 'plus', w0, a: la, b: lb, scale: 1, out })],
    ['matmul', () => matmul(ctx, { a: x, b: w0, c: y, M: T, N: m, K: n, transB: true })],
  ];
}

let unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);

/** Lets Dawn report the loss (it arrives a task after device.destroy()). */
const tick = (ms = 20) => new Promise((resolve) => setTimeout(resolve, ms));

describe('faults: destroyed contexts and lost devices', function () {
  this.timeout(120_000);

  beforeEach(() => {
    unhandled = [];
    process.on('unhandledRejection', onUnhandled);
  });

  afterEach(async () => {
    await tick(50);
    process.off('unhandledRejection', onUnhandled);
    expect(
      unhandled.map((e) => (e as Error)?.message ?? String(e)),
      'unhandled rejections',
    ).to.deep.equal([]);
  });

  for (const kill of ['ctx.destroy()', 'ctx.device.destroy()'] as const) {
    it(`every call rejects by name after ${kill}, before it starts`, async () => {
      const l = await layer();
      const list = calls(l);
      if (kill === 'ctx.destroy()') l.ctx.destroy();
      else {
        l.ctx.device.destroy();
        await tick();
      }
      expect(l.ctx.isLost || l.ctx.isDestroyed).to.equal(true);
      for (const [name, call] of list) {
        const e = await expectThrows(call, kill === 'ctx.destroy()' ? DESTROYED : LOST);
        expect(e, name).to.be.instanceOf(PeftError);
        // The exported matmul (src/ops/matmul.ts) names its pipeline compile, not itself.
        if (name !== 'matmul') expect(e.message, name).to.match(new RegExp(`^${name.replace(/\./g, '\\.')}`));
      }
      await expectThrows(() => l.ctx.read(l.y), /read/, kill === 'ctx.destroy()' ? DESTROYED : LOST);
      await expectThrows(() => l.ctx.sync(), kill === 'ctx.destroy()' ? DESTROYED : LOST);
      expect(() => l.ctx.write(l.x, new Float32Array(T * n))).to.throw(PeftError, kill === 'ctx.destroy()' ? DESTROYED : LOST);
      l.ctx.destroy();
    });

    it(`a read between encode and read rejects by name after ${kill}`, async () => {
      const l = await layer();
      await loraForward(l.ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: l.x, y: l.y, z: l.z });
      if (kill === 'ctx.destroy()') l.ctx.destroy();
      else l.ctx.device.destroy();
      const e = await expectThrows(() => l.ctx.read(l.y), /^read 'y'/, kill === 'ctx.destroy()' ? DESTROYED : LOST);
      expect(e).to.be.instanceOf(PeftError);
      l.ctx.destroy();
    });

    it(`an un-awaited call gets the rejection of ${kill} in its own promise`, async () => {
      const l = await layer();
      // Started before the loss and awaited after it: the pipelines compile, then encoding meets the loss.
      const pending = calls(l).map(([name, call]) => [name, call()] as const);
      if (kill === 'ctx.destroy()') l.ctx.destroy();
      else l.ctx.device.destroy();
      const settled = await Promise.allSettled(pending.map(([, p]) => p));
      for (const [k, [name]] of pending.entries()) {
        const e = await expectThrows(
          () => (settled[k].status === 'rejected' ? Promise.reject(settled[k].reason) : undefined),
          kill === 'ctx.destroy()' ? DESTROYED : LOST,
        );
        expect(e, name).to.be.instanceOf(PeftError);
        expect(e.message, name).to.match(new RegExp(`^${name.replace(/\./g, '\\.')}`));
      }
      l.ctx.destroy();
    });
  }

  it('a loss during the first pipeline compile rejects the call that was compiling', async () => {
    const l = await layer();
    const p = loraForward(l.ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: l.x, y: l.y, z: l.z });
    l.ctx.device.destroy();
    await expectThrows(() => p, /^lora\.forward: the GPU device was lost/);
    l.ctx.destroy();
  });

  it('a loss in the middle of a training loop rejects the step it hits, and onLost and ctx.lost report it', async () => {
    const l = await layer();
    const { ctx, x, w0, a, b, g, y, z } = l;
    const da = ctx.tensor([r, n]);
    const db = ctx.tensor([m, r]);
    const dx = ctx.tensor([T, n]);
    const opt = new AdamW(
      ctx,
      [
        { name: 'a', param: a, grad: da },
        { name: 'b', param: b, grad: db },
      ],
      { lr: 1e-3 },
    );
    const reasons: string[] = [];
    ctx.onLost((info) => reasons.push(info.reason));
    let failed: unknown;
    let steps = 0;
    try {
      for (let step = 0; step < 40; step++) {
        if (step === 5) ctx.device.destroy();
        await loraForward(ctx, { w0, a, b, scale: 2, x, y, z });
        await loraBackward(ctx, { w0, a, b, scale: 2, x, g, z, dx, da, db });
        await opt.step();
        steps++;
      }
    } catch (e) {
      failed = e;
    }
    expect(failed).to.be.instanceOf(PeftError);
    expect((failed as Error).message).to.match(LOST);
    expect(steps).to.be.within(5, 6);
    const info = await ctx.lost;
    expect(info.reason).to.equal('destroyed');
    await tick();
    expect(reasons).to.deep.equal(['destroyed']);
    expect(ctx.isLost).to.equal(true);
    ctx.destroy();
  });

  it('a new context works after a loss, and refuses the old one’s tensors by name', async () => {
    const old = await layer();
    old.ctx.device.destroy();
    await tick();
    const l = await layer();
    const { y } = await loraForward(l.ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: l.x });
    expect((await l.ctx.read(y)).every(Number.isFinite)).to.equal(true);
    await expectThrows(
      () => loraForward(l.ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: old.x }),
      /^lora\.forward: 'x' belongs to another context \(whose GPU device was lost\)/,
    );
    const dead = await layer();
    dead.ctx.destroy();
    await expectThrows(
      () => loraMerge(l.ctx, { w0: l.w0, a: dead.a, b: l.b, scale: 2 }),
      /^lora\.merge: 'a' belongs to another context \(which was destroyed\)/,
    );
    await expectThrows(() => l.ctx.read(old.y), /^read 'y': 't' belongs to another context/);
    expect(() => l.ctx.write(old.x, new Float32Array(T * n))).to.throw(PeftError, /^write 'x': 't' belongs to another context/);
    old.ctx.destroy();
    l.ctx.destroy();
  });

  it('a validation error of a call’s own submission rejects that call, not the next read', async () => {
    const l = await layer();
    const { ctx } = l;
    // A tensor destroyed behind the package's back passes every argument check; only the
    // submission's error scope sees it.
    const y = ctx.tensor([T, m], 'f32', 'gone');
    y.buffer.destroy();
    const e = await expectThrows(() => loraForward(ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: l.x, y, z: l.z }), /GPU validation error/, /gone/);
    expect(e).to.be.instanceOf(PeftError);
    expect(e.message).to.match(/^lora\.forward/);
    // Reported once, to its call: the next read is clean.
    const { y: fresh } = await loraForward(ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: l.x });
    expect((await ctx.read(fresh)).length).to.equal(T * m);
    ctx.destroy();
  });

  it('a read after an un-awaited call reads that call’s result', async () => {
    const l = await layer();
    const { ctx } = l;
    const y = ctx.zeros([T, m], 'f32', 'y0');
    const pending = loraForward(ctx, { w0: l.w0, a: l.a, b: l.b, scale: 2, x: l.x, y, z: l.z });
    const early = await ctx.read(y);
    await pending;
    expect(Array.from(early)).to.deep.equal(Array.from(await ctx.read(y)));
    expect(early.some((v) => v !== 0)).to.equal(true);
    ctx.destroy();
  });
});
