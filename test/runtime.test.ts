// The runtime's promises: compilation messages name the shader and line, GPU validation errors
// and device loss come back as thrown Errors, a new context replaces a lost one, allocations are
// tracked.

import { expect } from 'chai';
import { Context } from '../src/runtime.js';
import { expectThrows, gpu } from './helpers.js';

describe('runtime', () => {
  it('reports a WGSL compilation error with the shader name and its own line number', async () => {
    const ctx = await gpu();
    ctx.addShader('broken', '// line 1\n@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = undefined_name;\n}\n');
    await expectThrows(() => ctx.pipeline('broken'), /WGSL compilation failed in broken\.wgsl/, /broken\.wgsl:4:\d+: .*undefined_name/);
  });

  it('names the known shaders when asked for an unknown one', async () => {
    const ctx = await gpu();
    await expectThrows(() => ctx.pipeline('nope'), /unknown shader 'nope': expected one of .*matmul/);
  });

  it('turns a GPU validation error into a thrown Error at the next sync', async () => {
    const ctx = await gpu();
    ctx.addShader('writer', '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1) fn main() { out[0] = 1.0; }\n');
    await ctx.prepare([{ shader: 'writer' }]);
    // A uniform-only buffer where a storage buffer is required: invalid bind group.
    const wrong = ctx.device.createBuffer({ size: 16, usage: 0x40 });
    await ctx.encode(undefined, (enc) => ctx.dispatch(enc, { shader: 'writer', bindings: [wrong], workgroups: 1 }));
    await expectThrows(() => ctx.sync(), /GPU validation error/);
    wrong.destroy();
    await ctx.sync(); // the error was consumed; the context keeps working
  });

  it('runs a caller\'s kernel through the dispatcher with packed params', async () => {
    const ctx = await gpu();
    ctx.addShader(
      'axpy',
      'struct P { n: u32, a: f32 }\n@group(0) @binding(0) var<uniform> p: P;\n@group(0) @binding(1) var<storage, read_write> y: array<f32>;\n' +
        '@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x < p.n) { y[g.x] = p.a * f32(g.x); } }\n',
    );
    await ctx.prepare([{ shader: 'axpy' }]);
    const y = ctx.tensor([100]);
    await ctx.encode(undefined, (enc) => ctx.dispatch(enc, { shader: 'axpy', params: { n: 100, a: 0.5 }, bindings: [y], workgroups: 2 }));
    const out = await ctx.read(y);
    expect(Array.from(out.slice(0, 4))).to.deep.equal([0, 0.5, 1, 1.5]);
    expect(out[99]).to.equal(49.5);
  });

  it('tracks live and peak bytes of the package\'s allocations', async () => {
    const ctx = await gpu();
    const seen: number[] = [];
    const off = ctx.onAllocate((r) => seen.push(r.bytes));
    const before = ctx.allocations.liveBytes;
    const t = ctx.tensor([10, 10]);
    expect(ctx.allocations.liveBytes - before).to.equal(400);
    expect(ctx.allocations.live.some((r) => r.shape?.join() === '10,10')).to.equal(true);
    t.destroy();
    expect(ctx.allocations.liveBytes).to.equal(before);
    expect(ctx.allocations.peakBytes).to.be.at.least(before + 400);
    off();
    expect(seen).to.deep.equal([400]);
  });

  it('throws a clear error after the device is lost, and a new context works', async () => {
    const ctx = await Context.create();
    const t = ctx.upload([1, 2, 3], [3]);
    ctx.device.destroy();
    const info = await ctx.lost;
    expect(info.reason).to.equal('destroyed');
    expect(ctx.isLost).to.equal(true);
    await expectThrows(() => ctx.read(t), /the GPU device was lost \(destroyed/, /create a new context/);
    expect(() => ctx.tensor([2])).to.throw(/device was lost/);
    const fresh = await Context.create();
    const u = fresh.upload([4, 5], [2]);
    expect(Array.from(await fresh.read(u))).to.deep.equal([4, 5]);
    fresh.destroy();
  });

  it('accepts a GPUDevice the caller already has and leaves it alive on destroy', async () => {
    const owner = await gpu();
    const ctx = await Context.create({ device: owner.device });
    const t = ctx.upload([7], [1]);
    expect(Array.from(await ctx.read(t))).to.deep.equal([7]);
    ctx.destroy();
    expect(owner.isLost).to.equal(false);
    await owner.sync();
  });

  it('takes a kernel variant from options.tuning, and names the option when it is unknown', async () => {
    const owner = await gpu();
    const ctx = await Context.create({ device: owner.device, tuning: { matmul: 'direct-scalar' } });
    expect(ctx.tuning.matmul).to.equal('direct-scalar');
    ctx.destroy();
    await expectThrows(
      () => Context.create({ device: owner.device, tuning: { matmul: 'fast' as 'tiled' } }),
      /options\.tuning\.matmul is 'fast', expected 'tiled', 'direct' or 'direct-scalar'/,
    );
  });
});
