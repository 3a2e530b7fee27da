// The runtime's WGSL pass: `//#each` variants, and named uniform parameters packed by the layout
// of the struct each entry point reads (checked here against what a real GPU reads back).

import { expect } from 'chai';
import { entryParams, expandShader, packParams, paramStructs } from '../src/runtime/wgsl.js';
import { SHADERS } from '../src/generated/shaders.js';
import { expectThrows, gpu } from './helpers.js';

describe('wgsl: variants', () => {
  it('emits a block once per variant, substituting every $NAME, and maps lines back', () => {
    const src = ['a', '//#each S=; T=f32 | S=4; T=vec4<f32>', 'fn f$S(x: $T) -> $T { return x; }', '//#end', 'b'].join('\n');
    const out = expandShader(src, 't');
    expect(out.code.split('\n')).to.deep.equal(['a', 'fn f(x: f32) -> f32 { return x; }', 'fn f4(x: vec4<f32>) -> vec4<f32> { return x; }', 'b']);
    expect(out.lineMap).to.deep.equal([1, 3, 3, 5]);
  });

  it('rejects malformed blocks with the file and line', () => {
    expect(() => expandShader('//#each S=1\nx', 't')).to.throw(/t\.wgsl:1: '\/\/#each' without '\/\/#end'/);
    expect(() => expandShader('x\n//#end', 't')).to.throw(/t\.wgsl:2: '\/\/#end' without/);
    expect(() => expandShader('//#each S=1 | T=2\n//#end', 't')).to.throw(/same names/);
    expect(() => expandShader('//#each S=1\n$U\n//#end', 't')).to.throw(/t\.wgsl:2: '\$U' is not assigned/);
    expect(() => expandShader('//#each S=1\n//#each S=2\n//#end', 't')).to.throw(/do not nest/);
  });

  it('expands every shader of the package', () => {
    for (const [name, code] of Object.entries(SHADERS)) expect(() => expandShader(code, name, (f) => SHADERS[f]), name).not.to.throw();
  });
});

describe('wgsl: includes', () => {
  const fragments: Record<string, string> = {
    _pair: 'fn two() -> u32 { return 2u; }\n//#include _one',
    _one: '//#each N=1u\nfn one() -> u32 { return $N; }\n//#end',
    _loop: '//#include _loop',
  };
  const resolve = (name: string) => fragments[name];

  it('replaces //#include lines by the fragment (nested), then expands variants, mapping every line to its file', () => {
    const out = expandShader(['a', '//#include _pair', 'b'].join('\n'), 't', resolve);
    expect(out.code.split('\n')).to.deep.equal(['a', 'fn two() -> u32 { return 2u; }', 'fn one() -> u32 { return 1u; }', 'b']);
    expect(out.lineMap).to.deep.equal([1, 1, 2, 3]);
    expect(out.fileMap).to.deep.equal(['t', '_pair', '_one', 't']);
  });

  it('rejects an unknown fragment, a name without the leading _, and a cycle, naming the file and line', () => {
    expect(() => expandShader('x\n//#include _none', 't', resolve)).to.throw(/t\.wgsl:2: '\/\/#include _none': no such fragment/);
    expect(() => expandShader('//#include _pair', 't')).to.throw(/t\.wgsl:1: '\/\/#include _pair': no such fragment/);
    expect(() => expandShader('//#include matmul', 't', resolve)).to.throw(/fragment names start with '_'/);
    expect(() => expandShader('//#include _loop', 't', resolve)).to.throw(
      /_loop\.wgsl:1: '\/\/#include _loop' includes itself \(t → _loop → _loop\)/,
    );
  });

  it('a compilation error inside a fragment names the fragment and its line', async () => {
    const ctx = await gpu();
    // _matmul-common reads TRANS_A and TRANS_B, which this shader does not declare.
    ctx.addShader('uses-fragment', '@compute @workgroup_size(1)\nfn main() {}\n//#include _matmul-common\n');
    await expectThrows(
      () => ctx.pipeline('uses-fragment'),
      /WGSL compilation failed in uses-fragment\.wgsl/,
      /_matmul-common\.wgsl:\d+:\d+: .*TRANS_A/,
    );
  });
});

describe('wgsl: uniform parameters', () => {
  const code = `
struct A { n: u32, s: f32, k: i32 }           // 3 words → 16 bytes
struct B { x: u32, v: vec2<f32>, w: vec4<u32>, y: f32 }
@group(0) @binding(0) var<uniform> PA: A;
@group(0) @binding(0) var<uniform> PB: B;
fn helper() -> u32 { return PB.x; }
@compute @workgroup_size(1) fn ea() { _ = PA.n; }
@compute @workgroup_size(1) fn eb() { _ = helper(); }
@compute @workgroup_size(1) fn none() { }
`;

  it('lays out scalars and vectors by the uniform alignment rules', () => {
    const s = paramStructs(code);
    expect(s.get('A')!.fields.map((f) => [f.name, f.offset])).to.deep.equal([
      ['n', 0],
      ['s', 1],
      ['k', 2],
    ]);
    expect(s.get('A')!.words).to.equal(4);
    // v: vec2 aligns to 8 bytes, w: vec4 to 16.
    expect(s.get('B')!.fields.map((f) => [f.name, f.offset])).to.deep.equal([
      ['x', 0],
      ['v', 2],
      ['w', 4],
      ['y', 8],
    ]);
    expect(s.get('B')!.words).to.equal(12);
  });

  it('finds the struct an entry point reads, through the functions it calls', () => {
    expect(entryParams(code, 'ea')).to.equal('A');
    expect(entryParams(code, 'eb')).to.equal('B');
    expect(entryParams(code, 'none')).to.equal(null);
  });

  it('packs named values and rejects missing, unknown and out-of-range fields', () => {
    const a = paramStructs(code).get('A')!;
    const w = packParams(a, { n: 7, s: 0.5, k: -2 }, 'k');
    expect(w[0]).to.equal(7);
    expect(new Float32Array(w.buffer)[1]).to.equal(0.5);
    expect(new Int32Array(w.buffer)[2]).to.equal(-2);
    expect(() => packParams(a, { n: 7, s: 0.5 }, 'k')).to.throw(/A\.k is missing/);
    expect(() => packParams(a, { n: 7, s: 0.5, k: 1, z: 1 }, 'k')).to.throw(/'z' is not a field of A/);
    expect(() => packParams(a, { n: -1, s: 0.5, k: 1 }, 'k')).to.throw(/A\.n = -1 is not a u32/);
    expect(() => packParams(a, { n: 1, s: 1e39, k: 1 }, 'k')).to.throw(/representable in f32/);
    expect(() => packParams(a, { n: 1, s: 1, k: 2 ** 31 }, 'k')).to.throw(/not an i32/);
  });

  it('packs exactly what the GPU reads: each field written back by a kernel', async () => {
    const ctx = await gpu();
    ctx.addShader(
      'layout-echo',
      `struct E { a: u32, b: vec2<f32>, c: i32, d: vec4<f32>, e: f32 }
@group(0) @binding(0) var<uniform> P: E;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() {
  out[0] = f32(P.a); out[1] = P.b.x; out[2] = P.b.y; out[3] = f32(P.c);
  out[4] = P.d.x; out[5] = P.d.y; out[6] = P.d.z; out[7] = P.d.w; out[8] = P.e;
}`,
    );
    await ctx.prepare([{ shader: 'layout-echo' }]);
    const out = ctx.tensor([9]);
    const params = { a: 3, b: [0.25, -1.5], c: -7, d: [1, 2, 3, 4], e: 9.5 };
    await ctx.encode(undefined, (enc) => ctx.dispatch(enc, { shader: 'layout-echo', params, bindings: [out], workgroups: 1 }));
    expect(Array.from(await ctx.read(out))).to.deep.equal([3, 0.25, -1.5, -7, 1, 2, 3, 4, 9.5]);
    await expectThrows(
      () => ctx.encode(undefined, (enc) => ctx.dispatch(enc, { shader: 'layout-echo', params: { a: 3 }, bindings: [out], workgroups: 1 })),
      /layout-echo\.wgsl:main: E\.b is missing/,
    );
    await expectThrows(
      () => ctx.encode(undefined, (enc) => ctx.dispatch(enc, { shader: 'layout-echo', bindings: [out], workgroups: 1 })),
      /reads uniform parameters, but none were given/,
    );
    out.destroy();
  });
});
