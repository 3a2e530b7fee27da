// The runtime's promises, part by part (src/runtime/): compilation messages name the shader and
// line (pipelines), GPU validation errors and device loss come back as thrown Errors and a new
// context replaces a lost one (dispatcher, device), allocations are tracked and reads are typed by
// dtype (buffers), uniforms are cached by content, and a host without WebGPU is told what to do in
// its own terms, with no Node module reachable from the browser entry.

import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Context, setGpuProvider } from '../src/runtime.js';
import { DeviceHealth, findGpu, hostKind, noWebGpuMessage } from '../src/runtime/device.js';
import { PipelineCache } from '../src/runtime/pipelines.js';
import { UniformCache } from '../src/runtime/uniforms.js';
import type { Tensor } from '../src/tensor.js';
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

  it('turns a GPU validation error into a rejection of the call that caused it', async () => {
    const ctx = await gpu();
    ctx.addShader(
      'writer',
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1) fn main() { out[0] = 1.0; }\n',
    );
    await ctx.prepare([{ shader: 'writer' }]);
    // A uniform-only buffer where a storage buffer is required: invalid bind group.
    const wrong = ctx.device.createBuffer({ size: 16, usage: 0x40 });
    await expectThrows(
      () => ctx.encode(undefined, (enc) => ctx.dispatch(enc, { shader: 'writer', bindings: [wrong], workgroups: 1 })),
      /GPU validation error/,
    );
    wrong.destroy();
    await ctx.sync(); // the error was consumed; the context keeps working
  });

  it("runs a caller's kernel through the dispatcher with packed params", async () => {
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

  it("tracks live and peak bytes of the package's allocations", async () => {
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

  it('hands out one scratch tensor per name, dtype and shape, and frees them all on request', async () => {
    const ctx = await gpu();
    const before = ctx.allocations.liveBytes;
    const s = ctx.scratch('runtime-test', [5, 3]);
    expect(ctx.scratch('runtime-test', [5, 3])).to.equal(s);
    expect(ctx.scratch('runtime-test', [5, 3], 'u32')).not.to.equal(s);
    expect(ctx.scratch('runtime-test', [3, 5])).not.to.equal(s);
    expect(ctx.allocations.liveBytes - before).to.be.at.least(3 * 60);
    ctx.releaseScratch();
    expect(ctx.allocations.liveBytes).to.be.at.most(before);
  });

  it('reads each dtype back as its own typed array', async () => {
    const ctx = await gpu();
    const f = ctx.upload([1.5, -2], [2]);
    const u = ctx.upload([7, 4000000000], [2], 'u32');
    const i = ctx.upload([-3, 9], [2], 'i32');
    // The declared types are the point: no cast from the union is needed.
    const fh: Float32Array = await ctx.read(f);
    const uh: Uint32Array = await ctx.read(u);
    const ih: Int32Array = await ctx.read(i);
    expect(fh).to.be.instanceOf(Float32Array);
    expect(Array.from(fh)).to.deep.equal([1.5, -2]);
    expect(uh).to.be.instanceOf(Uint32Array);
    expect(Array.from(uh)).to.deep.equal([7, 4000000000]);
    expect(ih).to.be.instanceOf(Int32Array);
    expect(Array.from(ih)).to.deep.equal([-3, 9]);
    // A plain Tensor and a Tensor<'f32'> pass for each other (as before dtypes were typed); known,
    // different dtypes do not (checked by the type-check that precedes the tests).
    const plain: Tensor[] = [f];
    const held = [f];
    held.push(plain[0]);
    // @ts-expect-error a u32 tensor where an f32 one is wanted
    const wrong: Tensor<'f32'> = u;
    expect(wrong).to.equal(u);
    for (const t of [f, u, i]) t.destroy();
  });

  it('splits a workgroup count past the per-dimension limit over y and z, and rejects bad counts', async () => {
    const ctx = await gpu();
    const max = ctx.limits.maxComputeWorkgroupsPerDimension;
    expect(ctx.workgroupGrid(7)).to.deep.equal([7, 1, 1]);
    const [x, y, z] = ctx.workgroupGrid(max + 5);
    expect([y, z]).to.deep.equal([2, 1]);
    expect(x * y).to.be.at.least(max + 5);
    expect(ctx.workgroupGrid([3, 2])).to.deep.equal([3, 2, 1]);
    expect(() => ctx.workgroupGrid(1.5)).to.throw(/workgroup count 1\.5 is not a non-negative integer/);
    expect(() => ctx.workgroupGrid([1, max + 1])).to.throw(/in dimension y is not an integer/);
  });

  it('keeps one uniform buffer per distinct content', async () => {
    const ctx = await gpu();
    const code = 'struct Q { n: u32, s: f32 }\n@group(0) @binding(0) var<uniform> q: Q;\n@compute @workgroup_size(1) fn main() { _ = q.n; }\n';
    const health = new DeviceHealth(ctx.device);
    const pipelines = new PipelineCache(ctx.device, health);
    pipelines.addShader('uniform-cache', code);
    const uniforms = new UniformCache(ctx.device, pipelines);
    const a = uniforms.buffer('uniform-cache', 'main', { n: 3, s: 0.5 });
    expect(uniforms.buffer('uniform-cache', 'main', { s: 0.5, n: 3 })).to.equal(a);
    expect(uniforms.buffer('uniform-cache', 'main', { n: 3, s: 0.25 })).not.to.equal(a);
    expect(a.size).to.equal(16);
    expect(() => uniforms.buffer('uniform-cache', 'main', { n: 3 })).to.throw(/Q\.s is missing/);
    uniforms.destroy();
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
    expect(ctx.tuning).to.deep.equal({ matmul: 'direct-scalar' });
    ctx.destroy();
    await expectThrows(
      () => Context.create({ device: owner.device, tuning: { matmul: 'fast' as 'tiled' } }),
      /options\.tuning\.matmul is 'fast', expected 'tiled', 'tiled4', 'direct' or 'direct-scalar'/,
    );
    // Per-method settings moved to their methods; an old key is an error, not silently ignored.
    await expectThrows(
      () => Context.create({ device: owner.device, tuning: { lormaPi: 'fft' } as never }),
      /options\.tuning\.lormaPi is not a setting \(options\.tuning takes matmul\)/,
    );
  });
});

describe('runtime: hosts without WebGPU', () => {
  const firefox = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';

  it('tells a browser without navigator.gpu which browsers and flags have WebGPU, not to npm install', async () => {
    const browser = { navigator: { userAgent: firefox }, isSecureContext: true };
    expect(hostKind(browser)).to.deep.equal({ node: false, secureContext: true, userAgent: firefox });
    const err = await expectThrows(
      () => findGpu({}, browser),
      /this browser has no navigator\.gpu/,
      /Firefox\/128/,
      /Chrome/,
      /Safari/,
      /enable-unsafe-webgpu/,
      /dom\.webgpu\.enabled/,
    );
    expect(err.name).to.equal('PeftError');
    expect(err.message).not.to.match(/npm/);
  });

  it('tells a page outside a secure context that WebGPU needs https or localhost', async () => {
    await expectThrows(() => findGpu({}, { navigator: { userAgent: firefox }, isSecureContext: false }), /secure contexts/, /https/, /localhost/);
  });

  it('keeps the npm hint for Node without the webgpu package', () => {
    const msg = noWebGpuMessage(hostKind({ process: { versions: { node: '22.0.0' } } }), "Cannot find package 'webgpu'");
    expect(msg).to.match(/'webgpu' package \(Dawn for Node\) could not be loaded \(Cannot find package 'webgpu'\)/);
    expect(msg).to.match(/npm install webgpu/);
  });

  it('uses the given GPU, then navigator.gpu, then the registered provider', async () => {
    const given = { tag: 'given' } as unknown as GPU;
    const nav = { tag: 'navigator' } as unknown as GPU;
    const provided = { tag: 'provider' } as unknown as GPU;
    setGpuProvider(async () => ({ gpu: provided, root: 'root' }));
    try {
      expect((await findGpu({ gpu: given }, { navigator: { gpu: nav } })).gpu).to.equal(given);
      expect((await findGpu({}, { navigator: { gpu: nav } })).gpu).to.equal(nav);
      expect(await findGpu({}, { navigator: { userAgent: firefox } })).to.deep.equal({ gpu: provided, root: 'root' });
    } finally {
      setGpuProvider(undefined);
    }
  });

  it('reaches no Node module and not Dawn from the browser entry (src/index.ts), statically', () => {
    const src = resolve(dirname(fileURLToPath(import.meta.url)), '../src');
    const seen = new Set<string>();
    const bad: string[] = [];
    const visit = (file: string) => {
      if (seen.has(file) || !existsSync(file)) return;
      seen.add(file);
      const code = readFileSync(file, 'utf8');
      // Static value imports and re-exports; `import type` is erased, `import(...)` is dynamic.
      for (const m of code.matchAll(/^(import|export)(?!\s+type\b)[^;'"]*?\bfrom\s*'([^']+)'|^import\s*'([^']+)'/gm)) {
        const spec = m[2] ?? m[3];
        if (spec.startsWith('node:') || spec === 'webgpu') bad.push(`${file.slice(src.length + 1)} imports '${spec}'`);
        else if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      }
    };
    visit(resolve(src, 'index.ts'));
    expect(seen.has(resolve(src, 'runtime/device.ts'))).to.equal(true);
    expect(seen.has(resolve(src, 'runtime/dawn.ts'))).to.equal(false);
    expect(bad).to.deep.equal([]);
  });
});
