// Adapter files: the safetensors codec against bytes built by hand from the format's definition,
// round trips for every method, every malformed-file error, and the all-or-nothing save.

import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ADAPTER_METHODS,
  adapterConfig,
  decodeAdapter,
  decodeSafetensors,
  encodeAdapter,
  encodeSafetensors,
  loadAdapter,
  saveAdapter,
  configOptions,
  targetMatches,
  tensorsOf,
  type Adapter,
  type AdapterMethod,
  type ModuleTensors,
} from '../src/adapters.js';
import { methodById } from '../src/methods/registry.js';
import { expectClose, expectThrows, gpu, rand } from './helpers.js';

// A safetensors file written out by hand: u64 little-endian header size, JSON header, raw data.
function handMade(header: object, data: Uint8Array, pad = true): Uint8Array {
  let json = JSON.stringify(header);
  if (pad) while (json.length % 8 !== 0) json += ' ';
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setUint32(0, h.length, true); // high word stays 0
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

const n = 12;
const m = 8;
const r = 2;
const blocks = 4;

/** A module's tensors for `method`, shaped by its descriptor (indices distinct and in range). */
function moduleFor(method: AdapterMethod, seed: number): ModuleTensors {
  const desc = methodById(method);
  const options = configOptions(adapterConfig(method, { r, lora_alpha: 2 * r, target_modules: ['h1'], blocks }));
  const t: ModuleTensors = {};
  for (const spec of desc.tensors) {
    const shape = spec.shape({ n, m, r }, options);
    const count = shape.reduce((x, y) => x * y, 1);
    t[spec.name] = {
      shape,
      data: spec.dtype === 'u32' ? Uint32Array.from({ length: count }, (_, i) => (seed + 3 * i) % Math.min(n, m)) : rand(count),
    };
  }
  return t;
}

function adapterFor(method: AdapterMethod): Adapter {
  return {
    config: adapterConfig(method, { r, lora_alpha: 2 * r, target_modules: ['h1', 'h2'], blocks, base_model_name_or_path: 'charlm' }),
    modules: { h1: moduleFor(method, 1), h2: moduleFor(method, 2) },
  };
}

const shapes = { h1: { n, m }, h2: { n, m } };

describe('adapters: safetensors codec', () => {
  it('writes exactly the bytes the format defines', () => {
    const bytes = encodeSafetensors(
      { b: { shape: [2], data: new Float32Array([3, -4.5]) }, a: { shape: [1, 1], data: new Uint32Array([7]) } },
      { format: 'pt' },
    );
    // Names sorted, offsets from the start of the data section, header padded with spaces to 8.
    const expected = handMade(
      {
        __metadata__: { format: 'pt' },
        a: { dtype: 'U32', shape: [1, 1], data_offsets: [0, 4] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      },
      new Uint8Array([...new Uint8Array(new Uint32Array([7]).buffer), ...f32Bytes([3, -4.5])]),
    );
    expect(Array.from(bytes)).to.deep.equal(Array.from(expected));
  });

  it('reads a hand-made file, unpadded header and scalar included', () => {
    const file = handMade(
      {
        w: { dtype: 'F32', shape: [2, 2], data_offsets: [4, 20] },
        s: { dtype: 'I32', shape: [], data_offsets: [0, 4] },
      },
      new Uint8Array([...new Uint8Array(new Int32Array([-3]).buffer), ...f32Bytes([1, 2, 3, 4])]),
      false,
    );
    const { tensors, metadata } = decodeSafetensors(file);
    expect(metadata).to.deep.equal({});
    expect(tensors.w.dtype).to.equal('F32');
    expect(tensors.w.shape).to.deep.equal([2, 2]);
    expect(Array.from(tensors.w.data)).to.deep.equal([1, 2, 3, 4]);
    expect(tensors.s.shape).to.deep.equal([]);
    expect(Array.from(tensors.s.data)).to.deep.equal([-3]);
  });

  it('rejects malformed files with errors that say what is wrong', async () => {
    const good = encodeSafetensors({ w: { shape: [2], data: new Float32Array([1, 2]) } });
    await expectThrows(() => decodeSafetensors(good.subarray(0, 5)), /too short/);
    await expectThrows(() => decodeSafetensors(good.subarray(0, good.length - 4)), /'w'.*run past.*truncated/);
    const huge = good.slice();
    new DataView(huge.buffer).setUint32(0, 1e6, true);
    await expectThrows(() => decodeSafetensors(huge), /header length 1000000 runs past/);
    const notJson = handMade({}, new Uint8Array(0));
    notJson.set(new TextEncoder().encode('{x'), 8);
    await expectThrows(() => decodeSafetensors(notJson), /not valid UTF-8 JSON/);
    await expectThrows(() => decodeSafetensors(handMade([1, 2] as unknown as object, new Uint8Array(0))), /must be a JSON object/);
    await expectThrows(
      () => decodeSafetensors(handMade({ w: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(16))),
      /'w' has dtype "F64".*only F32, F16, BF16, U32 and I32/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ w: { dtype: 'Q4', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4))),
      /expected F32, F16, BF16, U32 or I32/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))),
      /needs 12 bytes.*hold 8/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4))),
      /shape must be/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, new Uint8Array(4))),
      /data_offsets must be/,
    );
    await expectThrows(
      () =>
        decodeSafetensors(
          handMade(
            { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
            new Uint8Array(12),
          ),
        ),
      /'a' and 'b' overlap/,
    );
    await expectThrows(() => decodeSafetensors(handMade({ __metadata__: { k: 1 } }, new Uint8Array(0))), /'__metadata__' must map names to strings/);
  });

  it('rejects bad tensors when writing', async () => {
    await expectThrows(() => encodeSafetensors({ w: { shape: [3], data: new Float32Array(2) } }), /'w' has shape \[3\] \(3 values\) but 2 values/);
    await expectThrows(
      () => encodeSafetensors({ w: { shape: [2], data: new Float64Array(2) as unknown as Float32Array } }),
      /Float32Array, Uint32Array or Int32Array/,
    );
    await expectThrows(() => encodeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), /reserved/);
  });
});

describe('adapters: adapter files', () => {
  for (const method of ADAPTER_METHODS) {
    it(`round-trips ${method} through bytes with PEFT-style keys and config`, () => {
      const adapter = adapterFor(method);
      const files = encodeAdapter(adapter, shapes);
      const keys = Object.keys(decodeSafetensors(files.safetensors).tensors).sort();
      const expectedKeys = ['h1', 'h2'].flatMap((mod) => methodById(method).tensors.map((t) => `base_model.model.${mod}.${t.key}`)).sort();
      expect(keys).to.deep.equal(expectedKeys);
      const cfg = JSON.parse(files.config);
      expect(cfg.method).to.equal(method);
      expect(cfg.r).to.equal(r);
      expect(cfg.lora_alpha).to.equal(2 * r);
      expect(cfg.target_modules).to.deep.equal(['h1', 'h2']);
      expect(cfg.peft_type).to.equal(method === 'lora' ? 'LORA' : method.split('-')[0].toUpperCase());
      const back = decodeAdapter(files, shapes);
      expect(back.config).to.deep.equal(adapter.config);
      for (const mod of ['h1', 'h2']) {
        for (const k of tensorsOf(method)) {
          const want = adapter.modules[mod][k]!;
          const got = back.modules[mod][k]!;
          expect(got.shape, `${mod}.${k}`).to.deep.equal(want.shape);
          expect(got.data.constructor).to.equal(want.data.constructor);
          expect(Array.from(got.data), `${mod}.${k}`).to.deep.equal(Array.from(want.data));
        }
      }
    });
  }

  it('reads a PEFT LoRA config and base_model.model-prefixed keys', () => {
    const a = rand(r * n);
    const b = rand(m * r);
    const safetensors = encodeSafetensors({
      'base_model.model.h1.lora_A.weight': { shape: [r, n], data: a },
      'base_model.model.h1.lora_B.weight': { shape: [m, r], data: b },
    });
    const config = JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['h1'], lora_dropout: 0.05, task_type: 'CAUSAL_LM' });
    const back = decodeAdapter({ safetensors, config }, { h1: { n, m } });
    expect(back.config.method).to.equal('lora');
    expect(Array.from(back.modules.h1.lora_A!.data)).to.deep.equal(Array.from(a));
  });

  it('rejects malformed configs, naming the field', async () => {
    const good = encodeAdapter(adapterFor('bora'), shapes);
    const cfg = JSON.parse(good.config);
    const withCfg = (patch: object) => () => decodeAdapter({ safetensors: good.safetensors, config: JSON.stringify({ ...cfg, ...patch }) });
    await expectThrows(() => decodeAdapter({ safetensors: good.safetensors, config: '{' }), /adapter_config.json: not valid JSON/);
    await expectThrows(withCfg({ method: 'dora' }), /'method' must be one of lora, bora/);
    await expectThrows(withCfg({ peft_type: 'LORA' }), /'peft_type' is "LORA" but method 'bora' has peft_type 'BORA'/);
    await expectThrows(withCfg({ r: 0 }), /'r' must be a positive integer, got 0/);
    await expectThrows(withCfg({ lora_alpha: 'x' }), /'lora_alpha' must be a finite number/);
    await expectThrows(withCfg({ target_modules: [] }), /'target_modules' must be a non-empty array/);
    await expectThrows(withCfg({ target_modules: ['h1', 'h1'] }), /lists a module twice/);
    await expectThrows(withCfg({ blocks: 2.5 }), /'blocks' must be a positive integer/);
    await expectThrows(withCfg({ sigma_transform: 'tanh' }), /'sigma_transform' must be one of/);
    await expectThrows(withCfg({ target_modules: ['h1'] }), /module 'h2' has tensors but is not in target_modules/);
    await expectThrows(withCfg({ target_modules: ['h1', 'h2', 'h3'] }), /module 'h3' is in target_modules but has no tensors/);
    await expectThrows(withCfg({ r: 3 }), /'h1.lora_A.weight' has shape \[2, 12\], expected \[r, n\] with r = 3/);
    const lorma = JSON.parse(encodeAdapter(adapterFor('lorma-pi'), shapes).config);
    await expectThrows(
      () => decodeAdapter({ safetensors: good.safetensors, config: JSON.stringify({ ...lorma, order: 'mid' }) }),
      /'order' must be 'pre' or 'post'/,
    );
  });

  it('rejects tensors that do not fit the method or the model', async () => {
    const check =
      (method: AdapterMethod, edit: (t: ModuleTensors) => void, s = shapes) =>
      () => {
        const adapter = adapterFor(method);
        edit(adapter.modules.h1);
        return encodeAdapter(adapter, s);
      };
    await expectThrows(
      check('bora', (t) => delete t.sigma),
      /'h1.sigma' is missing \(method 'bora' needs h1.lora_A.weight, h1.lora_B.weight, h1.sigma\)/,
    );
    await expectThrows(
      check('lora', (t) => (t.sigma = { shape: [1], data: new Float32Array(1) })),
      /'h1.sigma' is not a tensor of method 'lora'/,
    );
    await expectThrows(
      check('bora', (t) => (t.sigma = { shape: [blocks, r], data: rand(blocks * r) })),
      /'h1.sigma' has shape \[4, 2\], expected \[b, b, r\] = \[4, 4, 2\]/,
    );
    await expectThrows(
      check('bora', () => {}, { h1: { n: 10, m }, h2: { n: 10, m } }),
      /'h1.lora_A.weight' has n = 12, but module 'h1' has 10 in-features/,
    );
    await expectThrows(
      check('lora', () => {}, { h1: { n, m: 9 }, h2: { n, m } }),
      /'h1.lora_B.weight' has m = 8, but module 'h1' has 9 out-features/,
    );
    await expectThrows(
      check('lora', () => {}, { h1: { n, m } } as typeof shapes),
      /the model has no module 'h2'/,
    );
    await expectThrows(
      check(
        'melora',
        (t) => {
          t.lora_A = { shape: [r, 10], data: rand(r * 10) };
        },
        { h1: { n: 10, m }, h2: { n, m } },
      ),
      /blocks = 4 does not divide n = 10/,
    );
    await expectThrows(
      check('sbora-fa', (t) => (t.indices!.data = Uint32Array.from([3, 3]))),
      /'h1.indices' holds 3 twice; indices must be distinct/,
    );
    await expectThrows(
      check('sbora-fa', (t) => (t.indices!.data = Uint32Array.from([1, 12]))),
      /'h1.indices' holds 12, out of range \[0, 12\)/,
    );
    await expectThrows(
      check('sbora-fb', (t) => (t.indices!.data = Uint32Array.from([1, 8]))),
      /'h1.indices' holds 8, out of range \[0, 8\)/,
    );
    await expectThrows(
      check('sbora-fb', (t) => (t.indices = { shape: [r], data: new Float32Array([0, 1]) })),
      /'h1.indices' must be U32/,
    );
    await expectThrows(
      check('lora', (t) => (t.lora_A = { shape: [r, n], data: new Uint32Array(r * n) })),
      /'h1.lora_A.weight' must be F32/,
    );
    await expectThrows(
      check('lorma-plus', (t) => (t.lora_A = { shape: [r, m + 1], data: rand(r * (m + 1)) }), undefined as unknown as typeof shapes),
      /LoRMA's .* disagree on d \(9 vs 8\)/,
    );
    await expectThrows(
      check('lorma-pi', () => {}, { h1: { n: m, m: 16 }, h2: { n: m, m: 16 } }),
      /'h1.lora_B.weight' has d = 8, but LoRMA-pre on module 'h1' needs d = m = 16/,
    );
    // A key the format does not know.
    const bad = encodeSafetensors({ 'h1.lora_C.weight': { shape: [1], data: new Float32Array(1) } });
    await expectThrows(
      () => decodeAdapter({ safetensors: bad, config: encodeAdapter(adapterFor('lora')).config }),
      /key 'h1.lora_C.weight' is not one of method 'lora': '<module>.lora_A.weight', '<module>.lora_B.weight'/,
    );
  });
});

describe('adapters: saving and loading files', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'peft-wgsl-adapters-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('saves both files, loads them back, and leaves no temporary files', async () => {
    const adapter = adapterFor('sbora-fb');
    const out = join(dir, 'nested', 'sbora');
    await saveAdapter(out, adapter, shapes);
    expect(readdirSync(out).sort()).to.deep.equal(['adapter_config.json', 'adapter_model.safetensors']);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).peft_type).to.equal('SBORA');
    const back = await loadAdapter(out, shapes);
    expect(Array.from(back.modules.h2.indices!.data)).to.deep.equal(Array.from(adapter.modules.h2.indices!.data));
    expect(Array.from(back.modules.h2.lora_A!.data)).to.deep.equal(Array.from(adapter.modules.h2.lora_A!.data));
  });

  it('leaves the previous adapter intact when a save fails', async () => {
    const first = adapterFor('lora');
    await saveAdapter(dir, first, shapes);
    const before = readFileSync(join(dir, 'adapter_model.safetensors'));
    // An invalid adapter fails before anything is written.
    const broken = adapterFor('lora');
    broken.modules.h1.lora_B = { shape: [m, r + 1], data: rand(m * (r + 1)) };
    await expectThrows(() => saveAdapter(dir, broken, shapes), /'h1.lora_B.weight' has shape/);
    expect(Buffer.compare(readFileSync(join(dir, 'adapter_model.safetensors')), before)).to.equal(0);
    // A failing rename (the target is a folder) removes its temporary file and keeps the old one.
    const other = join(dir, 'blocked');
    mkdirSync(join(other, 'adapter_model.safetensors'), { recursive: true });
    await expectThrows(() => saveAdapter(other, adapterFor('lora'), shapes), /EISDIR|EEXIST|ENOTEMPTY|directory/i);
    expect(readdirSync(other)).to.deep.equal(['adapter_model.safetensors']);
    expect(existsSync(join(other, 'adapter_config.json'))).to.equal(false);
  });

  it('says which file is missing or broken', async () => {
    await expectThrows(() => loadAdapter(join(dir, 'none')), /cannot read .*adapter_config.json \(ENOENT\)/);
    writeFileSync(join(dir, 'adapter_config.json'), encodeAdapter(adapterFor('lora')).config);
    await expectThrows(() => loadAdapter(dir), /cannot read .*adapter_model.safetensors \(ENOENT\)/);
    writeFileSync(join(dir, 'adapter_model.safetensors'), new Uint8Array([1, 2, 3]));
    await expectThrows(() => loadAdapter(dir), /adapter_model.safetensors: file is 3 bytes, too short/);
  });
});

describe('adapters: HF PEFT interop', () => {
  const fixture = new URL('./fixtures/peft-lora/', import.meta.url).pathname;

  it("writes keys under PEFT's base_model.model. prefix and the LoraConfig fields PEFT reads", () => {
    const adapter = adapterFor('lora');
    const files = encodeAdapter(adapter, shapes);
    const keys = Object.keys(decodeSafetensors(files.safetensors).tensors).sort();
    expect(keys).to.deep.equal([
      'base_model.model.h1.lora_A.weight',
      'base_model.model.h1.lora_B.weight',
      'base_model.model.h2.lora_A.weight',
      'base_model.model.h2.lora_B.weight',
    ]);
    const cfg = JSON.parse(files.config) as Record<string, unknown>;
    for (const field of [
      'peft_type',
      'r',
      'lora_alpha',
      'target_modules',
      'lora_dropout',
      'bias',
      'fan_in_fan_out',
      'inference_mode',
      'init_lora_weights',
      'modules_to_save',
      'task_type',
      'base_model_name_or_path',
    ]) {
      expect(cfg, field).to.have.property(field);
    }
    expect(cfg.base_model_name_or_path).to.equal('charlm');
  });

  it('loads an adapter laid out as PEFT saves it: prefixed keys, short target_modules, F16 and BF16 tensors', async () => {
    const shapesOf = JSON.parse(readFileSync(join(fixture, 'expected.json'), 'utf8')) as Record<
      string,
      { n: number; m: number; T: number; w0: number[]; x: number[]; y: number[] }
    >;
    const modelShapes = Object.fromEntries(Object.entries(shapesOf).map(([k, v]) => [k, { n: v.n, m: v.m }]));
    const adapter = await loadAdapter(fixture, modelShapes);
    expect(adapter.config.method).to.equal('lora');
    expect(adapter.config.target_modules).to.deep.equal(['q_proj', 'v_proj']);
    expect(Object.keys(adapter.modules).sort()).to.deep.equal(Object.keys(shapesOf).sort());
    for (const mod of Object.keys(adapter.modules)) {
      expect(adapter.modules[mod].lora_A.data).to.be.instanceOf(Float32Array);
      expect(adapter.modules[mod].lora_A.shape).to.deep.equal([adapter.config.r, shapesOf[mod].n]);
    }
    // Each module's forward, through the registry's LoRA layer, reproduces y = x W0ᵀ + s·x Aᵀ Bᵀ
    // computed in float64 from the stored (rounded) values.
    const ctx = await gpu();
    for (const [mod, e] of Object.entries(shapesOf)) {
      const w0 = ctx.upload(e.w0, [e.m, e.n], 'f32', 'w0');
      const x = ctx.upload(e.x, [e.T, e.n], 'f32', 'x');
      const y = ctx.tensor([e.T, e.m], 'f32', 'y');
      const layer = methodById('lora').createLayer(ctx, { w0, r: adapter.config.r, alpha: adapter.config.lora_alpha, from: adapter.modules[mod] });
      await ctx.encode(undefined, (enc) => layer.forward(enc, x, y));
      expectClose(await ctx.read(y), e.y, `${mod} y`);
      layer.destroy();
      for (const t of [w0, x, y]) t.destroy();
    }
  });

  it('matches short target_modules as PEFT does: the whole path or its last dotted parts', () => {
    expect(targetMatches(['q_proj'], 'model.layers.0.self_attn.q_proj')).to.equal(true);
    expect(targetMatches(['self_attn.q_proj'], 'model.layers.0.self_attn.q_proj')).to.equal(true);
    expect(targetMatches(['q_proj'], 'model.layers.0.self_attn.xq_proj')).to.equal(false);
    expect(targetMatches(['h1'], 'h1')).to.equal(true);
    expect(targetMatches('.*\\.(q|v)_proj', 'model.layers.3.self_attn.v_proj')).to.equal(true);
    expect(targetMatches('.*\\.(q|v)_proj', 'model.layers.3.self_attn.k_proj')).to.equal(false);
  });

  it('rejects embedding adapters, modules_to_save, DoRA and rsLoRA with a clear error', async () => {
    const a = rand(r * n);
    const b = rand(m * r);
    const base = { peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['h1'] };
    const safetensors = encodeSafetensors({
      'base_model.model.h1.lora_A.weight': { shape: [r, n], data: a },
      'base_model.model.h1.lora_B.weight': { shape: [m, r], data: b },
    });
    const withCfg = (patch: object) => () => decodeAdapter({ safetensors, config: JSON.stringify({ ...base, ...patch }) });
    await expectThrows(withCfg({ modules_to_save: ['lm_head'] }), /'modules_to_save' .* is not supported/);
    await expectThrows(withCfg({ use_dora: true }), /'use_dora' is true: DoRA is not supported/);
    await expectThrows(withCfg({ use_rslora: true }), /'use_rslora' is true/);
    const embed = encodeSafetensors({ 'base_model.model.emb.lora_embedding_A': { shape: [r, n], data: a } });
    await expectThrows(() => decodeAdapter({ safetensors: embed, config: JSON.stringify(base) }), /embedding adapter \(lora_embedding_A\/B\)/);
  });

  it('keeps keys from the file off Object.prototype', () => {
    const a = rand(r * n);
    const b = rand(m * r);
    const safetensors = encodeSafetensors({
      'h1.lora_A.weight': { shape: [r, n], data: a },
      'h1.lora_B.weight': { shape: [m, r], data: b },
      '__proto__.lora_A.weight': { shape: [r, n], data: a },
      '__proto__.lora_B.weight': { shape: [m, r], data: b },
    });
    const config = JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['h1', '__proto__'] });
    const back = decodeAdapter({ safetensors, config });
    expect(Object.keys(back.modules).sort()).to.deep.equal(['__proto__', 'h1']);
    expect(({} as Record<string, unknown>).lora_A).to.equal(undefined);
    expect(Object.getPrototypeOf(back.modules)).to.equal(null);
  });
});

describe('adapters: half-precision tensors', () => {
  it('widens F16 and BF16 exactly, subnormals, infinities and NaN included', () => {
    // f16 bits: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), +Inf, NaN
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x7e00]);
    // bf16 bits: the upper half of f32 1.5, -0.15625, 3.0e38-ish, +Inf
    const bf16 = new Uint16Array([0x3fc0, 0xbe20, 0x7f61, 0x7f80]);
    const bytes = new Uint8Array(f16.byteLength + bf16.byteLength);
    bytes.set(new Uint8Array(f16.buffer), 0);
    bytes.set(new Uint8Array(bf16.buffer), f16.byteLength);
    const file = handMade(
      { h: { dtype: 'F16', shape: [6], data_offsets: [0, 12] }, b: { dtype: 'BF16', shape: [4], data_offsets: [12, 20] } },
      bytes,
    );
    const { tensors } = decodeSafetensors(file);
    expect(Array.from(tensors.h.data)).to.deep.equal([1, -2, 65504, 2 ** -24, Infinity, NaN]);
    const f32 = new Float32Array(new Uint32Array(Array.from(bf16, (v) => v << 16)).buffer);
    expect(Array.from(tensors.b.data)).to.deep.equal(Array.from(f32));
    expect(tensors.b.data[0]).to.equal(1.5);
    expect(tensors.h.dtype).to.equal('F16');
  });
});

describe('adapters: hostile files (issue 13)', () => {
  it('checks every entry before copying anything: a small file cannot declare many copies of its data', async () => {
    const size = 1 << 20;
    const header: Record<string, unknown> = {};
    for (let i = 0; i < 300; i++) header[`t${i}`] = { dtype: 'F32', shape: [size / 4], data_offsets: [0, size] };
    const file = handMade(header, new Uint8Array(size));
    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    await expectThrows(() => decodeSafetensors(file), /'t0' and 't1' overlap in the data section/);
    // Copying each declared tensor first cost 300 MiB and seconds here.
    expect((process.memoryUsage().arrayBuffers - before) / 2 ** 20, 'MiB allocated').to.be.below(64);
    expect(performance.now() - t0, 'ms').to.be.below(1000);
  });

  it('requires the tensors to tile the data section: no gap, no trailing bytes, no reversed offsets', async () => {
    const data = new Uint8Array(16);
    await expectThrows(
      () => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data.subarray(0, 8))),
      /data bytes \[0, 4\) belong to no tensor/,
    );
    await expectThrows(
      () =>
        decodeSafetensors(
          handMade(
            { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } },
            data.subarray(0, 12),
          ),
        ),
      /data bytes \[4, 8\) belong to no tensor/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, data.subarray(0, 8))),
      /4 bytes after the last tensor's data belong to no tensor/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data.subarray(0, 8))),
      /'a' data_offsets \[8, 4\] end before they begin/,
    );
    await expectThrows(
      () => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [2 ** 60, 2 ** 60 + 4] } }, data)),
      /data_offsets must be \[begin, end\] non-negative integers/,
    );
    // Empty tensors take no bytes and may sit anywhere the tiling allows.
    const { tensors } = decodeSafetensors(
      handMade({ e: { dtype: 'F32', shape: [0, 3], data_offsets: [4, 4] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32Bytes([2.5])),
    );
    expect(tensors.e.shape).to.deep.equal([0, 3]);
    expect(Array.from(tensors.a.data)).to.deep.equal([2.5]);
  });

  it('rejects a header that names a key twice, at any depth and however it is escaped', async () => {
    const file = (json: string, data = new Uint8Array(4)) => {
      const h = new TextEncoder().encode(json);
      const out = new Uint8Array(8 + h.length + data.length);
      new DataView(out.buffer).setUint32(0, h.length, true);
      out.set(h, 8);
      out.set(data, 8 + h.length);
      return out;
    };
    const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    expect(Object.keys(decodeSafetensors(file(`{"a":${entry}}`)).tensors)).to.deep.equal(['a']);
    await expectThrows(() => decodeSafetensors(file(`{"a":${entry},"a":${entry}}`)), /header names "a" twice/);
    await expectThrows(() => decodeSafetensors(file(`{"a":${entry},"\\u0061":${entry}}`)), /header names "a" twice/);
    await expectThrows(
      () => decodeSafetensors(file(`{"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}`)),
      /names "dtype" \(in "a"\) twice/,
    );
    await expectThrows(() => decodeSafetensors(file(`{"__metadata__":{"k":"1","k":"2"},"a":${entry}}`)), /names "k" \(in "__metadata__"\) twice/);
    // Equal keys in different objects, and key-like strings among values, are not duplicates.
    const ok = decodeSafetensors(file(`{"__metadata__":{"a":"a\\"b","dtype":"x"},"a":${entry}}`));
    expect(ok.metadata.a).to.equal('a"b');
  });

  it('header lengths: zero, unaligned (read), huge, past the end, past the limit', async () => {
    const good = encodeSafetensors({ w: { shape: [2], data: new Float32Array([1, 2]) } });
    const setLength = (v: bigint) => {
      const out = good.slice();
      new DataView(out.buffer).setBigUint64(0, v, true);
      return out;
    };
    await expectThrows(() => decodeSafetensors(setLength(0n)), /header is not valid UTF-8 JSON/);
    await expectThrows(() => decodeSafetensors(setLength(2n ** 64n - 1n)), /runs past the end/);
    await expectThrows(() => decodeSafetensors(setLength(BigInt(good.length))), /runs past the end/);
    await expectThrows(() => decodeSafetensors(setLength(100n * 2n ** 20n + 1n)), /runs past the end/);
    // The format pads headers to 8 bytes, but readers accept any length: so do we.
    const unaligned = handMade({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32Bytes([7]), false);
    expect(headerBytes(unaligned) % 8).to.not.equal(0);
    expect(Array.from(decodeSafetensors(unaligned).tensors.w.data)).to.deep.equal([7]);
  });

  it('shapes: huge products, dimensions past 2^53, fractions, negatives and non-arrays are refused before any allocation', async () => {
    const one = (shape: unknown, offsets: unknown = [0, 4]) =>
      decodeSafetensors(handMade({ w: { dtype: 'F32', shape, data_offsets: offsets } }, new Uint8Array(4)));
    await expectThrows(() => one([2 ** 20, 2 ** 20, 2 ** 20], [0, 2 ** 62]), /data_offsets must be/);
    await expectThrows(() => one([2 ** 20, 2 ** 20], [0, 2 ** 42]), /run past the 4 data bytes/);
    await expectThrows(() => one([0, 1e300], [0, 0]), /shape must be an array of non-negative integers \(below 2\^53\)/);
    await expectThrows(() => one([1.5]), /shape must be/);
    await expectThrows(() => one([-4]), /shape must be/);
    await expectThrows(() => one('4'), /shape must be/);
    await expectThrows(() => one([[1]]), /shape must be/);
    await expectThrows(() => decodeSafetensors(handMade({ w: [1, 2] }, new Uint8Array(0))), /entry 'w' must be an object/);
    await expectThrows(() => decodeSafetensors(handMade({ w: null }, new Uint8Array(0))), /entry 'w' must be an object/);
  });

  it('metadata, config and modules are null-prototype records; file keys never reach Object.prototype', async () => {
    const meta = JSON.parse('{"__proto__": "p", "constructor": "c", "format": "pt"}') as Record<string, string>;
    const { metadata } = decodeSafetensors(encodeSafetensors({ w: { shape: [1], data: new Float32Array(1) } }, meta));
    expect(Object.getPrototypeOf(metadata)).to.equal(null);
    expect(Object.keys(metadata).sort()).to.deep.equal(['__proto__', 'constructor', 'format']);
    expect(metadata.constructor).to.equal('c');
    const bare = decodeSafetensors(encodeSafetensors({ w: { shape: [1], data: new Float32Array(1) } })).metadata;
    expect(bare.constructor, 'a missing key is undefined, not an Object.prototype member').to.equal(undefined);

    // A tensor named '__proto__' survives a round trip (it was dropped from the header before).
    const named = Object.create(null) as Record<string, { shape: number[]; data: Float32Array }>;
    named.__proto__ = { shape: [1], data: new Float32Array([3]) };
    expect(Array.from(decodeSafetensors(encodeSafetensors(named)).tensors.__proto__.data)).to.deep.equal([3]);

    const adapter = adapterFor('lora');
    const files = encodeAdapter(adapter, shapes);
    const hostile = files.config.replace('{', '{"__proto__": {"r": 99, "polluted": true}, "constructor": {"prototype": {"polluted": true}},');
    const back = decodeAdapter({ ...files, config: hostile }, shapes);
    expect(Object.getPrototypeOf(back.config)).to.equal(null);
    expect(back.config.r).to.equal(r);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(Object.getPrototypeOf(back.modules.h1)).to.equal(null);
  });

  it('rejects an adapter_config.json that names a field twice or is not UTF-8', async () => {
    const files = encodeAdapter(adapterFor('lora'), shapes);
    await expectThrows(
      () => decodeAdapter({ ...files, config: files.config.replace('{', `{"r": ${r + 1},`) }),
      /adapter_config\.json: names "r" twice/,
    );
    await expectThrows(
      () => decodeAdapter({ ...files, config: 7 as unknown as string }),
      /adapter_config\.json: expected the file's text as a string/,
    );
    const dir = mkdtempSync(join(tmpdir(), 'peft-utf8-'));
    try {
      await saveAdapter(dir, adapterFor('lora'), shapes);
      const text = readFileSync(join(dir, 'adapter_config.json'));
      const broken = Buffer.concat([text.subarray(0, 20), Buffer.from([0xff]), text.subarray(20)]);
      writeFileSync(join(dir, 'adapter_config.json'), broken);
      await expectThrows(() => loadAdapter(dir, shapes), /adapter_config\.json is not valid UTF-8/);
      // A byte-order mark is not an error: editors on some systems write one.
      writeFileSync(join(dir, 'adapter_config.json'), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]));
      expect((await loadAdapter(dir, shapes)).config.r).to.equal(r);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function headerBytes(file: Uint8Array): number {
  return new DataView(file.buffer, file.byteOffset, file.byteLength).getUint32(0, true);
}

describe('adapters: a regular expression in target_modules cannot hang the loader', () => {
  it('refuses a repeated group that itself repeats, and still takes PEFT-style patterns', async () => {
    const base = { peft_type: 'LORA', r: 2, lora_alpha: 4 };
    await expectThrows(() => validateConfigOf({ ...base, target_modules: '(a+)+$' }), /repeats a group that itself repeats/);
    await expectThrows(() => validateConfigOf({ ...base, target_modules: '(.*q_proj)*' }), /repeats a group that itself repeats/);
    expect(validateConfigOf({ ...base, target_modules: '.*\\.(q|v)_proj' }).target_modules).to.equal('.*\\.(q|v)_proj');
  });
});

function validateConfigOf(raw: object) {
  return decodeAdapter({
    safetensors: encodeSafetensors({
      'base_model.model.x.q_proj.lora_A.weight': { shape: [2, 3], data: rand(6) },
      'base_model.model.x.q_proj.lora_B.weight': { shape: [3, 2], data: rand(6) },
    }),
    config: JSON.stringify(raw),
  }).config;
}
