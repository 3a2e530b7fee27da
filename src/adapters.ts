// Adapter files: safetensors weights plus an adapter_config.json, laid out like HF PEFT's so the
// files look familiar (`<module>.lora_A.weight` [r, n], `<module>.lora_B.weight` [m, r],
// `peft_type`, `r`, `lora_alpha`, `target_modules`). Methods PEFT does not know keep the same
// A/B names and add their own tensors under plain names: `<module>.sigma` (BoRA's σ, [b, b, r])
// and `<module>.indices` (SBoRA's frozen index list, u32 [r]).
//
// The codec works on bytes so a browser can download and upload adapters; `saveAdapter` and
// `loadAdapter` add Node file I/O, writing each file to a temporary name and renaming it so a
// crash never leaves a half-written adapter behind.

import { PeftError } from './validate.js';

// ------------------------------------------------------------------ safetensors

export type SafetensorsDType = 'F32' | 'U32' | 'I32';
export type TensorData = Float32Array | Uint32Array | Int32Array;

export interface NamedTensor {
  shape: number[];
  data: TensorData;
}

const DTYPE_OF: Record<SafetensorsDType, { bytes: number; make: (buf: ArrayBuffer) => TensorData }> = {
  F32: { bytes: 4, make: (b) => new Float32Array(b) },
  U32: { bytes: 4, make: (b) => new Uint32Array(b) },
  I32: { bytes: 4, make: (b) => new Int32Array(b) },
};

// Dtypes the format defines that this package does not read; named in the error so a user knows
// the file is valid safetensors, just not one of ours.
const KNOWN_OTHER_DTYPES = new Set(['BOOL', 'U8', 'I8', 'I16', 'U16', 'F16', 'BF16', 'F64', 'I64', 'U64', 'F8_E4M3', 'F8_E5M2']);

function dtypeOf(data: TensorData): SafetensorsDType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Uint32Array) return 'U32';
  if (data instanceof Int32Array) return 'I32';
  throw new PeftError('safetensors: tensor data must be a Float32Array, Uint32Array or Int32Array');
}

// A header longer than this is certainly not one of ours and probably not a safetensors file.
const MAX_HEADER = 100 * 1024 * 1024;

/** Serialises tensors (sorted by name, 8-byte aligned header, little-endian data) to safetensors bytes. */
export function encodeSafetensors(tensors: Record<string, NamedTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new PeftError(`safetensors: metadata '${k}' must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new PeftError("safetensors: '__metadata__' is reserved and cannot name a tensor");
    const t = tensors[name];
    const dtype = dtypeOf(t.data);
    checkShapeArray(`safetensors: tensor '${name}'`, t.shape);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new PeftError(`safetensors: tensor '${name}' has shape [${t.shape.join(', ')}] (${count} values) but ${t.data.length} values`);
    }
    const bytes = count * DTYPE_OF[dtype].bytes;
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const spaced = new Uint8Array(padded).fill(0x20);
    spaced.set(json);
    json = spaced;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const name of names) {
    const d = tensors[name].data;
    // Every platform WebGPU runs on is little-endian, which the format requires.
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

/** Parses safetensors bytes; every structural problem throws a PeftError that says what is wrong. */
export function decodeSafetensors(
  bytes: Uint8Array,
  what = 'safetensors',
): { tensors: Record<string, NamedTensor & { dtype: SafetensorsDType }>; metadata: Record<string, string> } {
  if (!(bytes instanceof Uint8Array)) throw new PeftError(`${what}: expected the file's bytes as a Uint8Array`);
  if (bytes.length < 8) throw new PeftError(`${what}: file is ${bytes.length} bytes, too short for a safetensors header (truncated?)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER || 8 + headerLen > bytes.length) {
    throw new PeftError(`${what}: header length ${headerLen} runs past the end of the ${bytes.length}-byte file (truncated, or not a safetensors file)`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new PeftError(`${what}: header is not valid UTF-8 JSON (${(e as Error).message}); not a safetensors file?`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new PeftError(`${what}: header must be a JSON object`);
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const tensors: Record<string, NamedTensor & { dtype: SafetensorsDType }> = {};
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!entry || typeof entry !== 'object' || Array.isArray(entry) || Object.values(entry).some((v) => typeof v !== 'string')) {
        throw new PeftError(`${what}: '__metadata__' must map names to strings`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object') throw new PeftError(`${what}: entry '${name}' must be an object with dtype, shape, data_offsets`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_OF)) {
      const known = typeof e.dtype === 'string' && KNOWN_OTHER_DTYPES.has(e.dtype);
      throw new PeftError(
        `${what}: tensor '${name}' has dtype ${JSON.stringify(e.dtype)}; ` +
          (known ? 'this package reads only F32, U32 and I32 (convert the file to float32)' : 'expected F32, U32 or I32'),
      );
    }
    const dtype = e.dtype as SafetensorsDType;
    checkShapeArray(`${what}: tensor '${name}'`, e.shape, true);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((v) => Number.isInteger(v) && v >= 0)) {
      throw new PeftError(`${what}: tensor '${name}' data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    const count = shape.reduce((a, b) => a * b, 1);
    const need = count * DTYPE_OF[dtype].bytes;
    if (end - begin !== need) {
      throw new PeftError(`${what}: tensor '${name}' of shape [${shape.join(', ')}] ${dtype} needs ${need} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    if (end > dataLen) {
      throw new PeftError(`${what}: tensor '${name}' data_offsets [${begin}, ${end}] run past the ${dataLen} data bytes (truncated file?)`);
    }
    spans.push([begin, end, name]);
    // Copy so the result is aligned and independent of the caller's buffer.
    const buf = bytes.slice(dataStart + begin, dataStart + end).buffer;
    tensors[name] = { dtype, shape: [...shape], data: DTYPE_OF[dtype].make(buf) };
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) throw new PeftError(`${what}: tensors '${spans[i - 1][2]}' and '${spans[i][2]}' overlap in the data section`);
  }
  return { tensors, metadata };
}

function checkShapeArray(where: string, shape: unknown, allowEmpty = false): void {
  if (!Array.isArray(shape) || (!allowEmpty && shape.length === 0) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new PeftError(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
}

// ------------------------------------------------------------------ adapters

/** This package's methods, as named in the `method` field of adapter_config.json. */
export const ADAPTER_METHODS = ['lora', 'bora', 'melora', 'sbora-fa', 'sbora-fb', 'lorma-plus', 'lorma-pi'] as const;
export type AdapterMethod = (typeof ADAPTER_METHODS)[number];

const PEFT_TYPE: Record<AdapterMethod, string> = {
  lora: 'LORA',
  bora: 'BORA',
  melora: 'MELORA',
  'sbora-fa': 'SBORA',
  'sbora-fb': 'SBORA',
  'lorma-plus': 'LORMA',
  'lorma-pi': 'LORMA',
};

export type SigmaTransform = 'exp-mav' | 'exp' | 'mav' | 'raw';

export interface AdapterConfig {
  /** 'LORA' for plain LoRA (readable by HF PEFT); BORA, MELORA, SBORA, LORMA for the others. */
  peft_type: string;
  method: AdapterMethod;
  r: number;
  lora_alpha: number;
  target_modules: string[];
  lora_dropout?: number;
  bias?: 'none';
  base_model_name_or_path?: string | null;
  task_type?: string | null;
  inference_mode?: boolean;
  fan_in_fan_out?: boolean;
  /** BoRA and MELoRA: blocks b (b | n and b | m). */
  blocks?: number;
  /** BoRA: how Σ is made from σ. */
  sigma_transform?: SigmaTransform;
  /** LoRMA: the adapted weight is M W0 ('pre') or W0 M ('post'). */
  order?: 'pre' | 'post';
  /** Written by this package; carries its version. */
  library?: string;
}

/** One adapted module's tensors, under the plain names of the per-method table in `tensorsOf`. */
export interface ModuleTensors {
  lora_A?: NamedTensor;
  lora_B?: NamedTensor;
  sigma?: NamedTensor;
  indices?: NamedTensor;
}

export interface Adapter {
  config: AdapterConfig;
  /** Keyed by module name (each one of config.target_modules). */
  modules: Record<string, ModuleTensors>;
}

/** Which tensors each method stores: required ones only; anything else in a file is an error. */
export function tensorsOf(method: AdapterMethod): (keyof ModuleTensors)[] {
  switch (method) {
    case 'lora':
    case 'melora':
    case 'lorma-plus':
    case 'lorma-pi':
      return ['lora_A', 'lora_B'];
    case 'bora':
      return ['lora_A', 'lora_B', 'sigma'];
    case 'sbora-fa':
      return ['lora_B', 'indices'];
    case 'sbora-fb':
      return ['lora_A', 'indices'];
  }
}

const KEY_SUFFIX: Record<keyof ModuleTensors, string> = {
  lora_A: 'lora_A.weight',
  lora_B: 'lora_B.weight',
  sigma: 'sigma',
  indices: 'indices',
};

/** Default config fields for a method, to be completed with r, lora_alpha and target_modules. */
export function adapterConfig(method: AdapterMethod, fields: Omit<AdapterConfig, 'peft_type' | 'method'>): AdapterConfig {
  const cfg: AdapterConfig = {
    peft_type: PEFT_TYPE[method],
    method,
    r: fields.r,
    lora_alpha: fields.lora_alpha,
    target_modules: fields.target_modules,
    lora_dropout: fields.lora_dropout ?? 0,
    bias: 'none',
    base_model_name_or_path: fields.base_model_name_or_path ?? null,
    task_type: fields.task_type ?? null,
    inference_mode: true,
    fan_in_fan_out: false,
    library: 'peft-wgsl',
  };
  if (method === 'bora' || method === 'melora') cfg.blocks = fields.blocks;
  if (method === 'bora') cfg.sigma_transform = fields.sigma_transform ?? 'exp-mav';
  if (method === 'lorma-plus' || method === 'lorma-pi') cfg.order = fields.order ?? 'pre';
  return cfg;
}

function positiveInt(where: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new PeftError(`${where}: '${name}' must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Checks a parsed adapter_config.json and returns it typed; errors name the field. */
export function validateConfig(raw: unknown, where = 'adapter_config.json'): AdapterConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new PeftError(`${where}: must be a JSON object`);
  const c = raw as Record<string, unknown>;
  let method = c.method as AdapterMethod | undefined;
  // A plain PEFT LoRA config has no 'method' field: read it as LoRA.
  if (method === undefined && c.peft_type === 'LORA') method = 'lora';
  if (typeof method !== 'string' || !(ADAPTER_METHODS as readonly string[]).includes(method)) {
    throw new PeftError(`${where}: 'method' must be one of ${ADAPTER_METHODS.join(', ')}, got ${JSON.stringify(c.method)}`);
  }
  if (c.peft_type !== PEFT_TYPE[method]) {
    throw new PeftError(`${where}: 'peft_type' is ${JSON.stringify(c.peft_type)} but method '${method}' has peft_type '${PEFT_TYPE[method]}'`);
  }
  positiveInt(where, 'r', c.r);
  if (typeof c.lora_alpha !== 'number' || !Number.isFinite(c.lora_alpha)) {
    throw new PeftError(`${where}: 'lora_alpha' must be a finite number, got ${JSON.stringify(c.lora_alpha)}`);
  }
  if (!Array.isArray(c.target_modules) || c.target_modules.length === 0 || !c.target_modules.every((m) => typeof m === 'string' && m.length > 0)) {
    throw new PeftError(`${where}: 'target_modules' must be a non-empty array of module names, got ${JSON.stringify(c.target_modules)}`);
  }
  if (new Set(c.target_modules).size !== c.target_modules.length) throw new PeftError(`${where}: 'target_modules' lists a module twice`);
  if (method === 'bora' || method === 'melora') positiveInt(where, 'blocks', c.blocks);
  if (method === 'bora' && !['exp-mav', 'exp', 'mav', 'raw'].includes(c.sigma_transform as string)) {
    throw new PeftError(`${where}: 'sigma_transform' must be one of exp-mav, exp, mav, raw, got ${JSON.stringify(c.sigma_transform)}`);
  }
  if ((method === 'lorma-plus' || method === 'lorma-pi') && c.order !== 'pre' && c.order !== 'post') {
    throw new PeftError(`${where}: 'order' must be 'pre' or 'post', got ${JSON.stringify(c.order)}`);
  }
  return { ...c, method } as unknown as AdapterConfig;
}

/** Base-layer sizes to check an adapter against: out-features m and in-features n per module. */
export type ModuleShapes = Record<string, { n: number; m: number }>;

function shapeIs(t: NamedTensor, shape: number[]): boolean {
  return t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
}

/** Checks every module's tensors against the config (and the base shapes when given). */
export function validateAdapter(adapter: Adapter, shapes?: ModuleShapes, where = 'adapter'): void {
  const cfg = validateConfig(adapter.config, `${where} config`);
  const { r, method } = cfg;
  const names = Object.keys(adapter.modules ?? {});
  for (const m of cfg.target_modules) if (!names.includes(m)) throw new PeftError(`${where}: module '${m}' is in target_modules but has no tensors`);
  for (const m of names) if (!cfg.target_modules.includes(m)) throw new PeftError(`${where}: module '${m}' has tensors but is not in target_modules`);
  const wanted = tensorsOf(method);
  for (const mod of names) {
    const t = adapter.modules[mod];
    const label = (k: keyof ModuleTensors) => `${mod}.${KEY_SUFFIX[k]}`;
    for (const k of Object.keys(t) as (keyof ModuleTensors)[]) {
      if (t[k] && !wanted.includes(k)) throw new PeftError(`${where}: '${label(k)}' is not a tensor of method '${method}' (expected ${wanted.map(label).join(', ')})`);
    }
    for (const k of wanted) {
      const x = t[k];
      if (!x) throw new PeftError(`${where}: '${label(k)}' is missing (method '${method}' needs ${wanted.map(label).join(', ')})`);
      const expectU32 = k === 'indices';
      if (expectU32 !== (x.data instanceof Uint32Array)) throw new PeftError(`${where}: '${label(k)}' must be ${expectU32 ? 'U32' : 'F32'}`);
      if (x.data.length !== x.shape.reduce((a, b) => a * b, 1)) throw new PeftError(`${where}: '${label(k)}' data length does not match its shape`);
    }
    const a = t.lora_A;
    const b = t.lora_B;
    if (a && (a.shape.length !== 2 || a.shape[0] !== r)) throw new PeftError(`${where}: '${label('lora_A')}' has shape [${a.shape.join(', ')}], expected [r, n] with r = ${r}`);
    if (b && (b.shape.length !== 2 || b.shape[1] !== r)) throw new PeftError(`${where}: '${label('lora_B')}' has shape [${b.shape.join(', ')}], expected [m, r] with r = ${r}`);
    const base = shapes?.[mod];
    if (shapes && !base) throw new PeftError(`${where}: the model has no module '${mod}'`);
    let n: number | undefined;
    let m: number | undefined;
    if (method === 'lorma-plus' || method === 'lorma-pi') {
      // M is d×d with d = m (pre) or n (post): B [d, r], A [r, d].
      const d = b!.shape[0];
      if (a!.shape[1] !== d) throw new PeftError(`${where}: LoRMA's '${label('lora_A')}' [r, d] and '${label('lora_B')}' [d, r] disagree on d (${a!.shape[1]} vs ${d})`);
      const want = base && (cfg.order === 'post' ? base.n : base.m);
      if (want !== undefined && d !== want) {
        throw new PeftError(`${where}: '${label('lora_B')}' has d = ${d}, but LoRMA-${cfg.order} on module '${mod}' needs d = ${cfg.order === 'post' ? 'n' : 'm'} = ${want}`);
      }
    } else {
      n = a?.shape[1];
      m = b?.shape[0];
      if (base) {
        if (n !== undefined && n !== base.n) throw new PeftError(`${where}: '${label('lora_A')}' has n = ${n}, but module '${mod}' has ${base.n} in-features`);
        if (m !== undefined && m !== base.m) throw new PeftError(`${where}: '${label('lora_B')}' has m = ${m}, but module '${mod}' has ${base.m} out-features`);
        n = base.n;
        m = base.m;
      }
    }
    if (method === 'bora' || method === 'melora') {
      const blocks = cfg.blocks!;
      if (n !== undefined && n % blocks !== 0) throw new PeftError(`${where}: blocks = ${blocks} does not divide n = ${n} of module '${mod}'`);
      if (m !== undefined && m % blocks !== 0) throw new PeftError(`${where}: blocks = ${blocks} does not divide m = ${m} of module '${mod}'`);
      if (t.sigma && !shapeIs(t.sigma, [blocks, blocks, r])) {
        throw new PeftError(`${where}: '${label('sigma')}' has shape [${t.sigma.shape.join(', ')}], expected [b, b, r] = [${blocks}, ${blocks}, ${r}]`);
      }
    }
    if (t.indices) {
      const idx = t.indices;
      if (!shapeIs(idx, [r])) throw new PeftError(`${where}: '${label('indices')}' has shape [${idx.shape.join(', ')}], expected [r] = [${r}]`);
      // FA picks input columns (< n), FB output rows (< m).
      const bound = method === 'sbora-fa' ? n : m;
      const seen = new Set<number>();
      for (const v of idx.data) {
        if (seen.has(v)) throw new PeftError(`${where}: '${label('indices')}' holds ${v} twice; indices must be distinct`);
        seen.add(v);
        if (bound !== undefined && v >= bound) throw new PeftError(`${where}: '${label('indices')}' holds ${v}, out of range [0, ${bound})`);
      }
    }
  }
}

/** The two files of an adapter as bytes and text: what a browser downloads. */
export function encodeAdapter(adapter: Adapter, shapes?: ModuleShapes): { safetensors: Uint8Array; config: string } {
  validateAdapter(adapter, shapes);
  const flat: Record<string, NamedTensor> = {};
  for (const [mod, t] of Object.entries(adapter.modules)) {
    for (const k of tensorsOf(adapter.config.method)) flat[`${mod}.${KEY_SUFFIX[k]}`] = t[k]!;
  }
  return {
    safetensors: encodeSafetensors(flat, { format: 'pt' }),
    config: `${JSON.stringify(adapter.config, null, 2)}\n`,
  };
}

/** Parses and validates an adapter from its two files. */
export function decodeAdapter(files: { safetensors: Uint8Array; config: string }, shapes?: ModuleShapes): Adapter {
  let raw: unknown;
  try {
    raw = JSON.parse(files.config);
  } catch (e) {
    throw new PeftError(`adapter_config.json: not valid JSON (${(e as Error).message})`);
  }
  const config = validateConfig(raw);
  const { tensors } = decodeSafetensors(files.safetensors, 'adapter_model.safetensors');
  const modules: Record<string, ModuleTensors> = {};
  const suffixes = Object.entries(KEY_SUFFIX) as [keyof ModuleTensors, string][];
  for (const [key, t] of Object.entries(tensors)) {
    // PEFT prefixes keys with 'base_model.model.'; accept it so its LoRA files load too.
    const plain = key.startsWith('base_model.model.') ? key.slice('base_model.model.'.length) : key;
    const hit = suffixes.find(([, s]) => plain.endsWith(`.${s}`));
    if (!hit) throw new PeftError(`adapter_model.safetensors: key '${key}' is not '<module>.lora_A.weight', '.lora_B.weight', '.sigma' or '.indices'`);
    const mod = plain.slice(0, plain.length - hit[1].length - 1);
    modules[mod] ??= {};
    modules[mod][hit[0]] = { shape: t.shape, data: t.data };
  }
  const adapter = { config, modules };
  validateAdapter(adapter, shapes, 'adapter_model.safetensors');
  return adapter;
}

export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';

// Node's fs, loaded only when saving or loading files, so browser bundles never pull it in.
async function nodeFs(): Promise<typeof import('node:fs/promises')> {
  const name = 'node:fs/promises';
  try {
    return await import(/* @vite-ignore */ name);
  } catch {
    throw new PeftError('saveAdapter/loadAdapter need Node\'s file system; in a browser use encodeAdapter/decodeAdapter');
  }
}

/** Writes `data` to `path` through a temporary file and a rename: readers see all or nothing. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const fs = await nodeFs();
  const tmp = `${path}.tmp-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  try {
    const handle = await fs.open(tmp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}

/**
 * Saves `adapter_model.safetensors` and `adapter_config.json` into `dir` (created if missing).
 * The weights are renamed into place before the config, so a config always has its weights.
 */
export async function saveAdapter(dir: string, adapter: Adapter, shapes?: ModuleShapes): Promise<void> {
  const files = encodeAdapter(adapter, shapes);
  const fs = await nodeFs();
  await fs.mkdir(dir, { recursive: true });
  await writeFileAtomic(`${dir}/${ADAPTER_WEIGHTS_FILE}`, files.safetensors);
  await writeFileAtomic(`${dir}/${ADAPTER_CONFIG_FILE}`, files.config);
}

/** Loads and validates an adapter saved by `saveAdapter` (or a PEFT LoRA adapter in float32). */
export async function loadAdapter(dir: string, shapes?: ModuleShapes): Promise<Adapter> {
  const fs = await nodeFs();
  const read = async (name: string) => {
    try {
      return await fs.readFile(`${dir}/${name}`);
    } catch (e) {
      throw new PeftError(`loadAdapter: cannot read ${dir}/${name} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  const config = (await read(ADAPTER_CONFIG_FILE)).toString('utf8');
  const weights = await read(ADAPTER_WEIGHTS_FILE);
  return decodeAdapter({ safetensors: new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength), config }, shapes);
}
