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
  tensorsOf,
  type Adapter,
  type AdapterMethod,
  type ModuleTensors,
} from '../src/adapters.js';
import { expectThrows, rand } from './helpers.js';

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

function moduleFor(method: AdapterMethod, seed: number): ModuleTensors {
  const t: ModuleTensors = {};
  const d = method === 'lorma-plus' || method === 'lorma-pi' ? m : 0;
  for (const k of tensorsOf(method)) {
    if (k === 'lora_A') t.lora_A = { shape: [r, d || n], data: rand(r * (d || n)) };
    if (k === 'lora_B') t.lora_B = { shape: [d || m, r], data: rand((d || m) * r) };
    if (k === 'sigma') t.sigma = { shape: [blocks, blocks, r], data: rand(blocks * blocks * r) };
    if (k === 'indices') t.indices = { shape: [r], data: Uint32Array.from(method === 'sbora-fa' ? [seed % n, (seed + 5) % n] : [7, seed % 7]) };
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
      () => decodeSafetensors(handMade({ w: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4))),
      /'w' has dtype "F16".*only F32, U32 and I32/,
    );
    await expectThrows(() => decodeSafetensors(handMade({ w: { dtype: 'Q4', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4))), /expected F32, U32 or I32/);
    await expectThrows(() => decodeSafetensors(handMade({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))), /needs 12 bytes.*hold 8/);
    await expectThrows(() => decodeSafetensors(handMade({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4))), /shape must be/);
    await expectThrows(() => decodeSafetensors(handMade({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, new Uint8Array(4))), /data_offsets must be/);
    await expectThrows(
      () =>
        decodeSafetensors(
          handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)),
        ),
      /'a' and 'b' overlap/,
    );
    await expectThrows(() => decodeSafetensors(handMade({ __metadata__: { k: 1 } }, new Uint8Array(0))), /'__metadata__' must map names to strings/);
  });

  it('rejects bad tensors when writing', async () => {
    await expectThrows(() => encodeSafetensors({ w: { shape: [3], data: new Float32Array(2) } }), /'w' has shape \[3\] \(3 values\) but 2 values/);
    await expectThrows(() => encodeSafetensors({ w: { shape: [2], data: new Float64Array(2) as unknown as Float32Array } }), /Float32Array, Uint32Array or Int32Array/);
    await expectThrows(() => encodeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), /reserved/);
  });
});

describe('adapters: adapter files', () => {
  for (const method of ADAPTER_METHODS) {
    it(`round-trips ${method} through bytes with PEFT-style keys and config`, () => {
      const adapter = adapterFor(method);
      const files = encodeAdapter(adapter, shapes);
      const keys = Object.keys(decodeSafetensors(files.safetensors).tensors).sort();
      const suffix = { lora_A: 'lora_A.weight', lora_B: 'lora_B.weight', sigma: 'sigma', indices: 'indices' };
      const expectedKeys = ['h1', 'h2'].flatMap((mod) => tensorsOf(method).map((k) => `${mod}.${suffix[k]}`)).sort();
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
    await expectThrows(() => decodeAdapter({ safetensors: good.safetensors, config: JSON.stringify({ ...lorma, order: 'mid' }) }), /'order' must be 'pre' or 'post'/);
  });

  it('rejects tensors that do not fit the method or the model', async () => {
    const check = (method: AdapterMethod, edit: (t: ModuleTensors) => void, s = shapes) => () => {
      const adapter = adapterFor(method);
      edit(adapter.modules.h1);
      return encodeAdapter(adapter, s);
    };
    await expectThrows(check('bora', (t) => delete t.sigma), /'h1.sigma' is missing \(method 'bora' needs h1.lora_A.weight, h1.lora_B.weight, h1.sigma\)/);
    await expectThrows(check('lora', (t) => (t.sigma = { shape: [1], data: new Float32Array(1) })), /'h1.sigma' is not a tensor of method 'lora'/);
    await expectThrows(check('bora', (t) => (t.sigma = { shape: [blocks, r], data: rand(blocks * r) })), /'h1.sigma' has shape \[4, 2\], expected \[b, b, r\] = \[4, 4, 2\]/);
    await expectThrows(check('bora', () => {}, { h1: { n: 10, m }, h2: { n: 10, m } }), /'h1.lora_A.weight' has n = 12, but module 'h1' has 10 in-features/);
    await expectThrows(check('lora', () => {}, { h1: { n, m: 9 }, h2: { n, m } }), /'h1.lora_B.weight' has m = 8, but module 'h1' has 9 out-features/);
    await expectThrows(check('lora', () => {}, { h1: { n, m } } as typeof shapes), /the model has no module 'h2'/);
    await expectThrows(
      check('melora', (t) => {
        t.lora_A = { shape: [r, 10], data: rand(r * 10) };
      }, { h1: { n: 10, m }, h2: { n, m } }),
      /blocks = 4 does not divide n = 10/,
    );
    await expectThrows(check('sbora-fa', (t) => (t.indices!.data = Uint32Array.from([3, 3]))), /'h1.indices' holds 3 twice; indices must be distinct/);
    await expectThrows(check('sbora-fa', (t) => (t.indices!.data = Uint32Array.from([1, 12]))), /'h1.indices' holds 12, out of range \[0, 12\)/);
    await expectThrows(check('sbora-fb', (t) => (t.indices!.data = Uint32Array.from([1, 8]))), /'h1.indices' holds 8, out of range \[0, 8\)/);
    await expectThrows(check('sbora-fb', (t) => (t.indices = { shape: [r], data: new Float32Array([0, 1]) })), /'h1.indices' must be U32/);
    await expectThrows(check('lora', (t) => (t.lora_A = { shape: [r, n], data: new Uint32Array(r * n) })), /'h1.lora_A.weight' must be F32/);
    await expectThrows(check('lorma-plus', (t) => (t.lora_A = { shape: [r, m + 1], data: rand(r * (m + 1)) }), undefined as unknown as typeof shapes), /LoRMA's .* disagree on d \(9 vs 8\)/);
    await expectThrows(check('lorma-pi', () => {}, { h1: { n: m, m: 16 }, h2: { n: m, m: 16 } }), /'h1.lora_B.weight' has d = 8, but LoRMA-pre on module 'h1' needs d = m = 16/);
    // A key the format does not know.
    const bad = encodeSafetensors({ 'h1.lora_C.weight': { shape: [1], data: new Float32Array(1) } });
    await expectThrows(() => decodeAdapter({ safetensors: bad, config: encodeAdapter(adapterFor('lora')).config }), /key 'h1.lora_C.weight' is not '<module>.lora_A.weight'/);
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
