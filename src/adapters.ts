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
import { METHODS, METHOD_IDS, methodById } from './methods/registry.js';
import type { BaseShape, MethodOptions } from './methods/types.js';

// ------------------------------------------------------------------ safetensors

/** Dtypes read; F16 and BF16 are widened to f32 on load (files are written as F32, U32, I32). */
export type SafetensorsDType = 'F32' | 'U32' | 'I32' | 'F16' | 'BF16';
export type TensorData = Float32Array | Uint32Array | Int32Array;

export interface NamedTensor {
  shape: number[];
  data: TensorData;
}

const DTYPE_OF: Record<SafetensorsDType, { bytes: number; make: (buf: ArrayBuffer) => TensorData }> = {
  F32: { bytes: 4, make: (b) => new Float32Array(b) },
  U32: { bytes: 4, make: (b) => new Uint32Array(b) },
  I32: { bytes: 4, make: (b) => new Int32Array(b) },
  F16: { bytes: 2, make: (b) => widen(new Uint16Array(b), halfToFloat) },
  BF16: { bytes: 2, make: (b) => widen(new Uint16Array(b), (h) => bfloatBits(h)) },
};

function widen(bits: Uint16Array, f: (h: number) => number): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f(bits[i]);
  return out;
}

const F32_BITS = new Float32Array(1);
const U32_BITS = new Uint32Array(F32_BITS.buffer);
/** bfloat16 is the upper half of an f32. */
function bfloatBits(h: number): number {
  U32_BITS[0] = h << 16;
  return F32_BITS[0];
}

/** IEEE half → number, exactly (every f16 value is an f32 value). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// Dtypes the format defines that this package does not read; named in the error so a user knows
// the file is valid safetensors, just not one of ours.
const KNOWN_OTHER_DTYPES = new Set(['BOOL', 'U8', 'I8', 'I16', 'U16', 'F64', 'I64', 'U64', 'F8_E4M3', 'F8_E5M2']);

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
  // Null-prototype: a tensor named '__proto__' (one a decoded file may hold) stays a key.
  const header = Object.create(null) as Record<string, unknown>;
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

/**
 * Parses safetensors bytes; every structural problem throws a PeftError that says what is wrong.
 * Nothing is allocated from a size the file declares until every entry has been checked against
 * the file's real length, so a hostile file costs at most about its own size in memory.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  what = 'safetensors',
): { tensors: Record<string, NamedTensor & { dtype: SafetensorsDType }>; metadata: Record<string, string> } {
  if (!(bytes instanceof Uint8Array)) throw new PeftError(`${what}: expected the file's bytes as a Uint8Array`);
  if (bytes.length < 8) throw new PeftError(`${what}: file is ${bytes.length} bytes, too short for a safetensors header (truncated?)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER || 8 + headerLen > bytes.length) {
    throw new PeftError(
      `${what}: header length ${headerLen} runs past the end of the ${bytes.length}-byte file (truncated, or not a safetensors file)`,
    );
  }
  let header: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
    header = JSON.parse(text);
  } catch (e) {
    throw new PeftError(`${what}: header is not valid UTF-8 JSON (${(e as Error).message}); not a safetensors file?`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new PeftError(`${what}: header must be a JSON object`);
  // JSON.parse keeps the last of two equal keys; another reader may keep the first, so one file
  // would hold different tensors for different readers. The format forbids duplicates.
  const dup = duplicateKey(text);
  if (dup) throw new PeftError(`${what}: the header names ${dup} twice`);
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const entries: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  // Keys come from the file: null-prototype records, so '__proto__' or 'constructor' is a name
  // like any other and can never reach Object.prototype.
  const metadata = Object.create(null) as Record<string, string>;
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!entry || typeof entry !== 'object' || Array.isArray(entry) || Object.values(entry).some((v) => typeof v !== 'string')) {
        throw new PeftError(`${what}: '__metadata__' must map names to strings`);
      }
      for (const [k, v] of Object.entries(entry as Record<string, string>)) metadata[k] = v;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object' || Array.isArray(e))
      throw new PeftError(`${what}: entry '${name}' must be an object with dtype, shape, data_offsets`);
    if (typeof e.dtype !== 'string' || !Object.hasOwn(DTYPE_OF, e.dtype)) {
      const known = typeof e.dtype === 'string' && KNOWN_OTHER_DTYPES.has(e.dtype);
      throw new PeftError(
        `${what}: tensor '${name}' has dtype ${JSON.stringify(e.dtype)}; ` +
          (known ? 'this package reads only F32, F16, BF16, U32 and I32 (convert the file to float32)' : 'expected F32, F16, BF16, U32 or I32'),
      );
    }
    const dtype = e.dtype as SafetensorsDType;
    checkShapeArray(`${what}: tensor '${name}'`, e.shape, true);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((v) => Number.isSafeInteger(v) && v >= 0)) {
      throw new PeftError(`${what}: tensor '${name}' data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end < begin) throw new PeftError(`${what}: tensor '${name}' data_offsets [${begin}, ${end}] end before they begin`);
    // A product past 2^53 is inexact, but then it is also far past any file's length.
    const count = shape.reduce((a, b) => a * b, 1);
    const need = count * DTYPE_OF[dtype].bytes;
    if (end - begin !== need) {
      throw new PeftError(
        `${what}: tensor '${name}' of shape [${shape.join(', ')}] ${dtype} needs ${need} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    if (end > dataLen) {
      throw new PeftError(`${what}: tensor '${name}' data_offsets [${begin}, ${end}] run past the ${dataLen} data bytes (truncated file?)`);
    }
    entries.push({ name, dtype, shape, begin, end });
  }
  // The format requires the tensors to tile the data section exactly: no overlap (which would
  // let a small file declare many copies of its data), no gap and no trailing bytes (where a
  // second file could hide).
  const spans = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    if (s.begin < at) throw new PeftError(`${what}: tensors '${spans[i - 1].name}' and '${s.name}' overlap in the data section`);
    if (s.begin > at) throw new PeftError(`${what}: data bytes [${at}, ${s.begin}) belong to no tensor (the format allows no gaps)`);
    at = s.end;
  }
  if (at !== dataLen) throw new PeftError(`${what}: ${dataLen - at} bytes after the last tensor's data belong to no tensor (the format allows none)`);
  const tensors = Object.create(null) as Record<string, NamedTensor & { dtype: SafetensorsDType }>;
  for (const { name, dtype, shape, begin, end } of entries) {
    // Copy so the result is aligned and independent of the caller's buffer.
    const buf = bytes.slice(dataStart + begin, dataStart + end).buffer;
    tensors[name] = { dtype, shape: [...shape], data: DTYPE_OF[dtype].make(buf) };
  }
  return { tensors, metadata };
}

/**
 * The first key that one object of a JSON text (already known to parse) names twice, quoted,
 * with the key of the object it is in; undefined when there is none. One pass with a stack, so
 * neither depth nor size of the text can exhaust the call stack.
 */
export function duplicateKey(text: string): string | undefined {
  const seen: (Set<string> | null)[] = [];
  const owners: string[] = [];
  let expectKey = false;
  let lastKey = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22) {
      let j = i + 1;
      let escaped = false;
      while (j < text.length && text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c) {
          escaped = true;
          j++;
        }
        j++;
      }
      if (expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        const keys = seen[seen.length - 1]!;
        if (keys.has(key)) {
          const owner = owners[owners.length - 1];
          return `${JSON.stringify(key)}${owner === undefined ? '' : ` (in ${JSON.stringify(owner)})`}`;
        }
        keys.add(key);
        lastKey = key;
        expectKey = false;
      }
      i = j;
    } else if (ch === 0x7b) {
      if (seen.length > 0) owners.push(lastKey);
      seen.push(new Set());
      expectKey = true;
    } else if (ch === 0x5b) {
      if (seen.length > 0) owners.push(lastKey);
      seen.push(null);
      expectKey = false;
    } else if (ch === 0x7d || ch === 0x5d) {
      seen.pop();
      owners.pop();
      expectKey = false;
    } else if (ch === 0x2c) {
      expectKey = seen[seen.length - 1] instanceof Set;
    }
  }
  return undefined;
}

function checkShapeArray(where: string, shape: unknown, allowEmpty = false): void {
  if (!Array.isArray(shape) || (!allowEmpty && shape.length === 0) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new PeftError(`${where}: shape must be an array of non-negative integers (below 2^53), got ${JSON.stringify(shape)}`);
  }
}

// ------------------------------------------------------------------ adapters

/** This package's methods, as named in the `method` field of adapter_config.json (the registry's ids). */
export const ADAPTER_METHODS: readonly string[] = METHOD_IDS;
export type AdapterMethod = string;

export type { SigmaTransform } from './methods/bora/index.js';

/**
 * adapter_config.json. The LoRA fields are HF PEFT's LoraConfig ones, so PEFT reads a LoRA adapter
 * of ours; `method` and the method's own fields (BoRA's `blocks`, LoRMA's `order`, ...) are ours.
 */
export interface AdapterConfig {
  /** 'LORA' for plain LoRA (readable by HF PEFT); BORA, MELORA, SBORA, LORMA for the others. */
  peft_type: string;
  method: AdapterMethod;
  r: number;
  lora_alpha: number;
  /** Module names, matched as PEFT matches them: exactly or as the last dotted parts; or one regular expression matched in full. */
  target_modules: string[] | string;
  lora_dropout?: number;
  bias?: 'none';
  /** A model id (as on a model hub) or null; never a local path. */
  base_model_name_or_path?: string | null;
  task_type?: string | null;
  inference_mode?: boolean;
  fan_in_fan_out?: boolean;
  init_lora_weights?: boolean;
  modules_to_save?: string[] | null;
  /** Written by this package; carries its name. */
  library?: string;
  /** The method's own fields (see each descriptor's `config`). */
  [field: string]: unknown;
}

/** One adapted module's tensors, by the method's tensor names (lora_A, lora_B, sigma, indices). */
export type ModuleTensors = Record<string, NamedTensor>;

export interface Adapter {
  config: AdapterConfig;
  /** Keyed by module path ('model.layers.0.self_attn.q_proj', or a plain 'h1'). */
  modules: Record<string, ModuleTensors>;
}

/** Which tensors each method stores: required ones only; anything else in a file is an error. */
export function tensorsOf(method: AdapterMethod): string[] {
  return methodById(method, 'tensorsOf').tensors.map((t) => t.name);
}

/** The prefix HF PEFT puts before a module path in adapter files. */
export const PEFT_KEY_PREFIX = 'base_model.model.';

/** What adapterConfig needs: r, lora_alpha, target_modules, and the method's own fields by JSON key. */
export interface AdapterConfigFields {
  r: number;
  lora_alpha: number;
  target_modules: string[] | string;
  lora_dropout?: number;
  base_model_name_or_path?: string | null;
  task_type?: string | null;
  [field: string]: unknown;
}

/** A complete config for a method: PEFT's LoraConfig fields with their defaults, and the method's. */
export function adapterConfig(method: AdapterMethod, fields: AdapterConfigFields): AdapterConfig {
  const desc = methodById(method, 'adapterConfig');
  const cfg: AdapterConfig = {
    peft_type: desc.peftType,
    method: desc.id,
    r: fields.r,
    lora_alpha: fields.lora_alpha,
    target_modules: fields.target_modules,
    lora_dropout: fields.lora_dropout ?? 0,
    bias: 'none',
    base_model_name_or_path: fields.base_model_name_or_path ?? null,
    task_type: fields.task_type ?? null,
    inference_mode: true,
    fan_in_fan_out: false,
    init_lora_weights: true,
    modules_to_save: null,
    library: 'peft-wgsl',
  };
  for (const f of desc.config) cfg[f.key] = fields[f.key] ?? f.default;
  return cfg;
}

/** The method options a config carries (e.g. { blocks, sigmaTransform }), by the descriptor's fields. */
export function configOptions(cfg: AdapterConfig): MethodOptions {
  const desc = methodById(cfg.method, 'adapter_config.json');
  const options: MethodOptions = {};
  for (const f of desc.config) options[f.option] = cfg[f.key];
  return options;
}

function positiveInt(where: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0)
    throw new PeftError(`${where}: '${name}' must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Checks a parsed adapter_config.json and returns it typed; errors name the field. */
export function validateConfig(raw: unknown, where = 'adapter_config.json'): AdapterConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new PeftError(`${where}: must be a JSON object`);
  // Field names come from the file: copied onto a null-prototype record, so a field the file
  // lacks reads as undefined (never an Object.prototype member) and none can reach the prototype.
  const c = Object.assign(Object.create(null) as Record<string, unknown>, raw);
  let method = c.method;
  // A plain PEFT LoRA config has no 'method' field: read it as LoRA.
  if (method === undefined && c.peft_type === 'LORA') method = 'lora';
  if (typeof method !== 'string' || !METHODS.some((m) => m.id === method)) {
    throw new PeftError(`${where}: 'method' must be one of ${ADAPTER_METHODS.join(', ')}, got ${JSON.stringify(c.method)}`);
  }
  const desc = methodById(method, where);
  if (c.peft_type !== desc.peftType) {
    throw new PeftError(`${where}: 'peft_type' is ${JSON.stringify(c.peft_type)} but method '${method}' has peft_type '${desc.peftType}'`);
  }
  positiveInt(where, 'r', c.r);
  if (typeof c.lora_alpha !== 'number' || !Number.isFinite(c.lora_alpha)) {
    throw new PeftError(`${where}: 'lora_alpha' must be a finite number, got ${JSON.stringify(c.lora_alpha)}`);
  }
  const targets = c.target_modules;
  if (typeof targets === 'string') {
    try {
      new RegExp(targets);
    } catch (e) {
      throw new PeftError(`${where}: 'target_modules' is a string, so a regular expression, but ${(e as Error).message}`);
    }
    // JavaScript's backtracking engine takes exponential time on a quantified group that itself
    // repeats (such as '(a+)+'); a file must not be able to hang the loader, so such a pattern is
    // refused. PEFT's own patterns ('.*\\.(q|v)_proj') never need one.
    if (/\([^()]*[+*}][^()]*\)\s*[+*{]/.test(targets)) {
      throw new PeftError(
        `${where}: 'target_modules' ${JSON.stringify(targets)} repeats a group that itself repeats, which can take exponential time to match; list the module names instead`,
      );
    }
  } else {
    if (!Array.isArray(targets) || targets.length === 0 || !targets.every((m) => typeof m === 'string' && m.length > 0)) {
      throw new PeftError(
        `${where}: 'target_modules' must be a non-empty array of module names (or one regular expression), got ${JSON.stringify(targets)}`,
      );
    }
    if (new Set(targets).size !== targets.length) throw new PeftError(`${where}: 'target_modules' lists a module twice`);
  }
  // PEFT features whose tensors or scaling this package does not implement: refuse them rather
  // than load an adapter that would compute something else.
  const mts = c.modules_to_save;
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.length === 0)) {
    throw new PeftError(
      `${where}: 'modules_to_save' (${JSON.stringify(mts)}) is not supported: this package loads adapter tensors only, not fully trained copies of modules`,
    );
  }
  for (const [key, what] of [
    ['use_dora', 'DoRA'],
    ['use_rslora', 'rank-stabilised scaling (rsLoRA)'],
  ] as const) {
    if (c[key] === true) throw new PeftError(`${where}: '${key}' is true: ${what} is not supported`);
  }
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const v = c[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0)
      throw new PeftError(`${where}: '${key}' is not supported (every module must share r and lora_alpha)`);
  }
  const typed = c as AdapterConfig;
  typed.method = method;
  for (const f of desc.config) typed[f.key] = f.check(c[f.key] === undefined ? f.default : c[f.key], where);
  return typed;
}

/** Whether a module path is one of the config's target modules, matched as HF PEFT matches them. */
export function targetMatches(targets: string[] | string, module: string): boolean {
  if (typeof targets === 'string') return new RegExp(`^(?:${targets})$`).test(module);
  return targets.some((t) => module === t || module.endsWith(`.${t}`));
}

/** Base-layer sizes to check an adapter against: out-features m and in-features n per module. */
export type ModuleShapes = Record<string, { n: number; m: number }>;

/** Checks every module's tensors against the config (and the base shapes when given). */
export function validateAdapter(adapter: Adapter, shapes?: ModuleShapes, where = 'adapter'): void {
  if (!adapter || typeof adapter !== 'object')
    throw new PeftError(`${where}: expected { config, modules }, got ${adapter === null ? 'null' : typeof adapter}`);
  const cfg = validateConfig(adapter.config, `${where} config`);
  const desc = methodById(cfg.method, where);
  const options = configOptions(cfg);
  const modules = adapter.modules;
  if (!modules || typeof modules !== 'object') throw new PeftError(`${where}: 'modules' must map module paths to their tensors`);
  const names = Object.keys(modules);
  if (Array.isArray(cfg.target_modules)) {
    for (const t of cfg.target_modules) {
      if (!names.some((mod) => targetMatches([t], mod))) throw new PeftError(`${where}: module '${t}' is in target_modules but has no tensors`);
    }
  } else if (names.length === 0) {
    throw new PeftError(`${where}: no module matches target_modules ${JSON.stringify(cfg.target_modules)}`);
  }
  for (const mod of names)
    if (!targetMatches(cfg.target_modules, mod)) throw new PeftError(`${where}: module '${mod}' has tensors but is not in target_modules`);
  const specs = desc.tensors;
  for (const mod of names) {
    const t = modules[mod];
    const label = (name: string) => `${mod}.${specs.find((s) => s.name === name)?.key ?? name}`;
    const wanted = () => specs.map((s) => `${mod}.${s.key}`).join(', ');
    for (const k of Object.keys(t)) {
      if (!specs.some((s) => s.name === k))
        throw new PeftError(`${where}: '${label(k)}' is not a tensor of method '${cfg.method}' (expected ${wanted()})`);
    }
    for (const spec of specs) {
      const x = Object.hasOwn(t, spec.name) ? t[spec.name] : undefined;
      if (!x) throw new PeftError(`${where}: '${label(spec.name)}' is missing (method '${cfg.method}' needs ${wanted()})`);
      const isU32 = x.data instanceof Uint32Array;
      if ((spec.dtype === 'u32') !== isU32 || (spec.dtype === 'f32' && !(x.data instanceof Float32Array))) {
        throw new PeftError(`${where}: '${label(spec.name)}' must be ${spec.dtype === 'u32' ? 'U32' : 'F32'}`);
      }
      if (!Array.isArray(x.shape) || x.shape.some((d) => !Number.isInteger(d) || d <= 0)) {
        throw new PeftError(`${where}: '${label(spec.name)}' has shape ${JSON.stringify(x.shape)}; every dimension must be a positive integer`);
      }
      if (x.data.length !== x.shape.reduce((a, b) => a * b, 1))
        throw new PeftError(`${where}: '${label(spec.name)}' data length does not match its shape`);
    }
    let base: BaseShape | undefined;
    if (shapes) {
      if (!Object.hasOwn(shapes, mod)) throw new PeftError(`${where}: the model has no module '${mod}'`);
      base = shapes[mod];
    }
    desc.checkModule(t, cfg.r, options, base, label, where);
  }
}

/** The two files of an adapter as bytes and text: what a browser downloads. Keys are PEFT's. */
export function encodeAdapter(adapter: Adapter, shapes?: ModuleShapes): { safetensors: Uint8Array; config: string } {
  validateAdapter(adapter, shapes);
  const desc = methodById(adapter.config.method);
  const flat: Record<string, NamedTensor> = Object.create(null) as Record<string, NamedTensor>;
  for (const [mod, t] of Object.entries(adapter.modules)) {
    for (const spec of desc.tensors) flat[`${PEFT_KEY_PREFIX}${mod}.${spec.key}`] = t[spec.name];
  }
  return {
    safetensors: encodeSafetensors(flat, { format: 'pt' }),
    config: `${JSON.stringify(adapter.config, null, 2)}\n`,
  };
}

/**
 * Parses and validates an adapter from its two files: ours, or HF PEFT's (keys with or without
 * its 'base_model.model.' prefix; F16 and BF16 tensors are widened to f32).
 */
export function decodeAdapter(files: { safetensors: Uint8Array; config: string }, shapes?: ModuleShapes): Adapter {
  if (!files || typeof files !== 'object') throw new PeftError('decodeAdapter: expected { safetensors, config }');
  if (typeof files.config !== 'string') throw new PeftError(`adapter_config.json: expected the file's text as a string, got ${typeof files.config}`);
  let raw: unknown;
  try {
    raw = JSON.parse(files.config);
  } catch (e) {
    throw new PeftError(`adapter_config.json: not valid JSON (${(e as Error).message})`);
  }
  // Two values for one field ("r": 8, "r": 16) would be read differently by different tools.
  const dup = duplicateKey(files.config);
  if (dup) throw new PeftError(`adapter_config.json: names ${dup} twice`);
  const config = validateConfig(raw);
  const desc = methodById(config.method);
  const { tensors } = decodeSafetensors(files.safetensors, 'adapter_model.safetensors');
  const modules: Record<string, ModuleTensors> = Object.create(null) as Record<string, ModuleTensors>;
  const expected = desc.tensors.map((s) => `'<module>.${s.key}'`).join(', ');
  for (const [key, t] of Object.entries(tensors)) {
    const plain = key.startsWith(PEFT_KEY_PREFIX) ? key.slice(PEFT_KEY_PREFIX.length) : key;
    if (/(^|\.)lora_embedding_[AB]$/.test(plain)) {
      throw new PeftError(`adapter_model.safetensors: '${key}' is an embedding adapter (lora_embedding_A/B), which this package does not support`);
    }
    const spec = desc.tensors.find((s) => plain.endsWith(`.${s.key}`));
    if (!spec) throw new PeftError(`adapter_model.safetensors: key '${key}' is not one of method '${desc.id}': ${expected}`);
    const mod = plain.slice(0, plain.length - spec.key.length - 1);
    if (mod === '') throw new PeftError(`adapter_model.safetensors: key '${key}' names no module`);
    if (!Object.hasOwn(modules, mod)) modules[mod] = Object.create(null) as ModuleTensors;
    if (Object.hasOwn(modules[mod], spec.name))
      throw new PeftError(`adapter_model.safetensors: '${mod}.${spec.key}' appears twice (with and without the '${PEFT_KEY_PREFIX}' prefix)`);
    modules[mod][spec.name] = { shape: t.shape, data: t.data };
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
    throw new PeftError("saveAdapter/loadAdapter need Node's file system; in a browser use encodeAdapter/decodeAdapter");
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
  const configBytes = await read(ADAPTER_CONFIG_FILE);
  let config: string;
  try {
    // Fatal, so a corrupted byte is reported instead of becoming U+FFFD inside a field.
    config = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(configBytes);
  } catch {
    throw new PeftError(`loadAdapter: ${dir}/${ADAPTER_CONFIG_FILE} is not valid UTF-8`);
  }
  const weights = await read(ADAPTER_WEIGHTS_FILE);
  return decodeAdapter({ safetensors: new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength), config }, shapes);
}
