// Base weights in f16 and NF4 (src/base.ts; docs/quantization.md): made from host data (values,
// f16 or BF16 bits, bitsandbytes' codes and absmax, safetensors entries) or on the device
// (toF16, quantizeNf4), and dequantized to f32 for merges and checks. The kernels are in
// shaders/quant.wgsl; the reference in ./reference.ts.
//
// Every device-side check (a value f16 cannot hold, a NaN or ±Inf in a weight being quantized) is
// read back before the call returns, so these calls take no caller's encoder: a weight that came
// back is a good one.

import { BaseWeight, NF4_VALUES, formatOf, type BaseFormat, type Weight } from '../base.js';
import type { Context } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import { PeftError, checkContext, checkMatrix, checkOwner, checkTensor, describeValue, packedWords } from '../validate.js';
import { F16_MAX, f16Value, packBytes, packHalves, roundF16, f16Bits, unpackBytes, unpackHalves } from './reference.js';

export { BaseWeight, NF4_VALUES, formatOf, type BaseFormat, type Weight };

const WG = 64;
/** Values per invocation of the absmax pass (a divisor of every block size). */
const CHUNK = 32;

// ------------------------------------------------------------------ checks

function checkShape(where: string, shape: unknown): [number, number] {
  const ok = Array.isArray(shape) && shape.length === 2 && shape.every((d) => Number.isSafeInteger(d) && (d as number) > 0);
  if (!ok) throw new PeftError(`${where}: 'shape' must be [rows, cols] of positive integers, got ${describeValue(shape)}`);
  return [shape[0] as number, shape[1] as number];
}

/** A block size bitsandbytes accepts: a power of two from 32 to 4096. */
export function checkBlockSize(where: string, blockSize: unknown): number {
  const b = blockSize as number;
  if (!Number.isInteger(b) || b < 32 || b > 4096 || (b & (b - 1)) !== 0) {
    throw new PeftError(`${where}: 'blockSize' must be a power of two from 32 to 4096, got ${describeValue(blockSize)}`);
  }
  return b;
}

/** `w` is a BaseWeight of `ctx` whose tensors hold what its format and shape say. */
export function checkBaseWeight(where: string, name: string, ctx: Context, w: unknown, format?: 'f16' | 'nf4'): BaseWeight {
  if (!BaseWeight.isBaseWeight(w)) throw new PeftError(`${where}: '${name}' must be a BaseWeight, got ${describeValue(w)}`);
  if (format && w.format !== format) throw new PeftError(`${where}: '${name}' is ${w.format}, expected ${format}`);
  checkOwner(where, name, ctx, w.data);
  const size = w.size;
  checkTensor(where, `${name}.data`, w.data, [packedWords(w.format, size)], '[words]', 'u32');
  if (w.format === 'nf4') {
    checkBlockSize(where, w.blockSize);
    if (!w.absmax) throw new PeftError(`${where}: '${name}' is nf4 without an absmax tensor`);
    checkOwner(where, `${name}.absmax`, ctx, w.absmax);
    checkTensor(where, `${name}.absmax`, w.absmax, [Math.ceil(size / w.blockSize)], '[blocks]');
  }
  return w;
}

// ------------------------------------------------------------------ from host data

function makeWeight(
  ctx: Context,
  format: 'f16' | 'nf4',
  shape: [number, number],
  words: Uint32Array,
  absmax: Float32Array | null,
  blockSize: number,
  label: string,
): BaseWeight {
  const data = ctx.upload(words, [words.length], 'u32', `${label}.data`);
  let scales: Tensor | null = null;
  try {
    if (absmax) scales = ctx.upload(absmax, [absmax.length], 'f32', `${label}.absmax`);
  } catch (e) {
    data.destroy();
    throw e;
  }
  return new BaseWeight(format, shape, data, scales, blockSize, label);
}

/**
 * An f16 weight from f32 or f64 values, each rounded to the nearest f16 (ties to even; a value f16
 * holds exactly stays exact). A NaN, ±Inf or |value| > 65504 is an error naming its index.
 */
export function f16Weight(ctx: Context, values: ArrayLike<number>, shape: readonly [number, number], label = 'w0'): BaseWeight {
  const where = 'f16Weight';
  checkContext(where, ctx);
  const [rows, cols] = checkShape(where, shape);
  checkLength(where, 'values', values, rows * cols);
  const bits = new Uint16Array(rows * cols);
  for (let i = 0; i < bits.length; i++) {
    const h = roundF16(values[i]);
    if (Number.isNaN(h)) throw outOfF16(where, 'values', i, values[i], cols);
    bits[i] = f16Bits(h);
  }
  return makeWeight(ctx, 'f16', [rows, cols], packHalves(bits), null, 0, label);
}

/** An f16 weight from IEEE half bits, stored as they are (NaN and ±Inf bits are refused). */
export function f16WeightFromBits(ctx: Context, bits: Uint16Array, shape: readonly [number, number], label = 'w0'): BaseWeight {
  const where = 'f16WeightFromBits';
  checkContext(where, ctx);
  const [rows, cols] = checkShape(where, shape);
  if (!(bits instanceof Uint16Array)) throw new PeftError(`${where}: 'bits' must be a Uint16Array, got ${describeValue(bits)}`);
  checkLength(where, 'bits', bits, rows * cols);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7c00) === 0x7c00) throw outOfF16(where, 'bits', i, f16Value(bits[i]), cols);
  }
  return makeWeight(ctx, 'f16', [rows, cols], packHalves(bits), null, 0, label);
}

/**
 * An f16 weight from bfloat16 bits (the upper halves of f32 values), each rounded to the nearest
 * f16. BF16 reaches 3.4e38 and f16 65504: a value past that, or NaN/±Inf, is an error; values
 * below f16's range lose precision to its subnormals or round to zero.
 */
export function f16WeightFromBf16(ctx: Context, bits: Uint16Array, shape: readonly [number, number], label = 'w0'): BaseWeight {
  const where = 'f16WeightFromBf16';
  if (!(bits instanceof Uint16Array)) throw new PeftError(`${where}: 'bits' must be a Uint16Array, got ${describeValue(bits)}`);
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  try {
    return f16Weight(ctx, new Float32Array(u.buffer), shape, label);
  } catch (e) {
    if (e instanceof PeftError) throw new PeftError(e.message.replace('f16Weight:', `${where}:`).replace("'values'", "'bits'"));
    throw e;
  }
}

export interface Nf4Data {
  /** ⌈rows·cols / 2⌉ bytes, bitsandbytes' layout: value 2j in the high nibble of byte j. */
  codes: Uint8Array;
  /** ⌈rows·cols / blockSize⌉ finite values ≥ 0, one per block. */
  absmax: Float32Array;
  /** A power of two, 32–4096 (bitsandbytes' default 64). */
  blockSize: number;
}

/**
 * An NF4 weight from bitsandbytes' data: `Params4bit`'s bytes (flattened) as `codes`,
 * `quant_state.absmax` (without double quantization; see nf4WeightFromNested) and its blocksize.
 */
export function nf4Weight(ctx: Context, q: Nf4Data, shape: readonly [number, number], label = 'w0'): BaseWeight {
  const where = 'nf4Weight';
  checkContext(where, ctx);
  const [rows, cols] = checkShape(where, shape);
  if (!q || typeof q !== 'object') throw new PeftError(`${where}: expected { codes, absmax, blockSize }, got ${describeValue(q)}`);
  const blockSize = checkBlockSize(where, q.blockSize);
  const size = rows * cols;
  if (!(q.codes instanceof Uint8Array)) throw new PeftError(`${where}: 'codes' must be a Uint8Array, got ${describeValue(q.codes)}`);
  if (!(q.absmax instanceof Float32Array)) throw new PeftError(`${where}: 'absmax' must be a Float32Array, got ${describeValue(q.absmax)}`);
  checkLength(where, 'codes', q.codes, Math.ceil(size / 2), `⌈rows·cols / 2⌉ for [${rows}, ${cols}]`);
  checkLength(where, 'absmax', q.absmax, Math.ceil(size / blockSize), `⌈rows·cols / blockSize⌉ for [${rows}, ${cols}], blockSize ${blockSize}`);
  for (let b = 0; b < q.absmax.length; b++) {
    const a = q.absmax[b];
    if (!(a >= 0) || !Number.isFinite(a)) throw new PeftError(`${where}: 'absmax'[${b}] is ${a}, expected a finite value ≥ 0`);
  }
  // A lone last code sits in the high nibble; the low nibble past the end holds nothing.
  let codes = q.codes;
  if (size % 2 === 1 && (codes[codes.length - 1] & 15) !== 0) {
    codes = codes.slice();
    codes[codes.length - 1] &= 0xf0;
  }
  return makeWeight(ctx, 'nf4', [rows, cols], packBytes(codes), q.absmax.slice(), blockSize, label);
}

export interface Nf4NestedData {
  codes: Uint8Array;
  blockSize: number;
  /** quant_state.absmax of a double-quantized weight: one uint8 code per block. */
  absmaxCodes: Uint8Array;
  /** quant_state.state2.absmax (`nested_absmax`): one f32 scale per nestedBlockSize codes. */
  nestedAbsmax: Float32Array;
  /** quant_state.state2.code (`nested_quant_map`): the 256-value dynamic map. */
  nestedCode: Float32Array;
  /** quant_state.offset (`nested_offset`): added to every dequantized absmax. */
  offset: number;
  /** quant_state.state2.blocksize (`nested_blocksize`), 256 in bitsandbytes. */
  nestedBlockSize?: number;
}

/**
 * An NF4 weight from a double-quantized bitsandbytes state (QLoRA's 8-bit absmax). The absmax is
 * dequantized once, here, as bitsandbytes does before it uses it: absmax[b] =
 * nestedCode[absmaxCodes[b]] · nestedAbsmax[⌊b / nestedBlockSize⌋] + offset, in f32. The device
 * keeps the f32 absmax (4/blockSize bytes a value), not the 8-bit codes.
 */
export function nf4WeightFromNested(ctx: Context, q: Nf4NestedData, shape: readonly [number, number], label = 'w0'): BaseWeight {
  const where = 'nf4WeightFromNested';
  checkContext(where, ctx);
  const [rows, cols] = checkShape(where, shape);
  if (!q || typeof q !== 'object') throw new PeftError(`${where}: expected { codes, blockSize, absmaxCodes, nestedAbsmax, nestedCode, offset }`);
  const blockSize = checkBlockSize(where, q.blockSize);
  const nb = q.nestedBlockSize ?? 256;
  if (!Number.isInteger(nb) || nb <= 0) throw new PeftError(`${where}: 'nestedBlockSize' must be a positive integer, got ${describeValue(nb)}`);
  const blocks = Math.ceil((rows * cols) / blockSize);
  if (!(q.absmaxCodes instanceof Uint8Array))
    throw new PeftError(`${where}: 'absmaxCodes' must be a Uint8Array, got ${describeValue(q.absmaxCodes)}`);
  checkLength(where, 'absmaxCodes', q.absmaxCodes, blocks, 'one per block');
  if (!(q.nestedCode instanceof Float32Array) || q.nestedCode.length !== 256) {
    throw new PeftError(`${where}: 'nestedCode' must be a Float32Array of 256 values (the dynamic map), got ${describeValue(q.nestedCode)}`);
  }
  if (!(q.nestedAbsmax instanceof Float32Array))
    throw new PeftError(`${where}: 'nestedAbsmax' must be a Float32Array, got ${describeValue(q.nestedAbsmax)}`);
  checkLength(where, 'nestedAbsmax', q.nestedAbsmax, Math.ceil(blocks / nb), `⌈blocks / nestedBlockSize⌉`);
  if (typeof q.offset !== 'number' || !Number.isFinite(q.offset))
    throw new PeftError(`${where}: 'offset' must be a finite number, got ${describeValue(q.offset)}`);
  const absmax = new Float32Array(blocks);
  const offset = Math.fround(q.offset);
  for (let b = 0; b < blocks; b++) absmax[b] = Math.fround(Math.fround(q.nestedCode[q.absmaxCodes[b]] * q.nestedAbsmax[Math.floor(b / nb)]) + offset);
  try {
    return nf4Weight(ctx, { codes: q.codes, absmax, blockSize }, [rows, cols], label);
  } catch (e) {
    if (e instanceof PeftError) throw new PeftError(e.message.replace('nf4Weight:', `${where}:`));
    throw e;
  }
}

function checkLength(where: string, name: string, data: ArrayLike<number>, want: number, what = `rows·cols`): void {
  if (!data || typeof data.length !== 'number')
    throw new PeftError(`${where}: '${name}' must be an array of ${want} numbers, got ${describeValue(data)}`);
  if (data.length !== want) throw new PeftError(`${where}: '${name}' has ${data.length} values, expected ${want} (${what})`);
}

function outOfF16(where: string, name: string, i: number, v: number, cols: number): PeftError {
  return new PeftError(
    `${where}: '${name}'[${i}] (row ${Math.floor(i / cols)}, column ${i % cols}) is ${v}, which f16 cannot hold (finite, |v| ≤ ${F16_MAX})`,
  );
}

// ------------------------------------------------------------------ safetensors

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  /** As decodeSafetensors returns it: F16 and BF16 already widened (exactly) to f32. */
  data: Float32Array | Uint32Array | Int32Array;
}

export interface LoadOptions {
  /** The format on the device; default: f16 for F16 and BF16 entries, f32 for F32. */
  format?: BaseFormat;
  /** NF4 block size (format 'nf4'); default 64. */
  blockSize?: number;
  label?: string;
}

/**
 * A base weight from a safetensors entry (decodeSafetensors' output). F16 stays f16; BF16 becomes
 * f16 (an error for a value past 65504); F32 stays an f32 Tensor. With `format`, the weight is
 * converted: to f16 or NF4 on the device (f32 → f16 in toF16, NF4 by quantizeNf4 from the f16 or
 * f32 upload, which is freed), or to f32 on the host.
 */
export async function weightFromSafetensors(ctx: Context, entry: SafetensorsEntry, opts: LoadOptions = {}): Promise<Weight> {
  const where = 'weightFromSafetensors';
  checkContext(where, ctx);
  if (!entry || typeof entry !== 'object')
    throw new PeftError(`${where}: expected a safetensors entry { dtype, shape, data }, got ${describeValue(entry)}`);
  const { dtype, data } = entry;
  const shape = checkShape(where, entry.shape);
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16')
    throw new PeftError(`${where}: dtype ${describeValue(dtype)} is not a weight (expected F32, F16 or BF16)`);
  if (!(data instanceof Float32Array))
    throw new PeftError(`${where}: 'data' must be the Float32Array decodeSafetensors returns, got ${describeValue(data)}`);
  const label = opts.label ?? 'w0';
  const format = opts.format ?? (dtype === 'F32' ? 'f32' : 'f16');
  if (format !== 'f32' && format !== 'f16' && format !== 'nf4')
    throw new PeftError(`${where}: 'format' must be 'f32', 'f16' or 'nf4', got ${describeValue(format)}`);
  if (format === 'nf4') checkBlockSize(where, opts.blockSize ?? 64);
  checkLength(where, 'data', data, shape[0] * shape[1]);
  if (format === 'f32') return ctx.upload(data, shape, 'f32', label);
  if (dtype !== 'F32') {
    // F16 values round-trip exactly; BF16 values round to f16 here.
    const f16 = dtype === 'F16' ? f16Weight(ctx, data, shape, label) : f16FromBf16Values(ctx, data, shape, label);
    if (format === 'f16') return f16;
    try {
      return await quantizeNf4(ctx, f16, { blockSize: opts.blockSize, label });
    } finally {
      f16.destroy();
    }
  }
  const w = ctx.upload(data, shape, 'f32', `${label}.f32`);
  try {
    return format === 'f16' ? await toF16(ctx, w, { label }) : await quantizeNf4(ctx, w, { blockSize: opts.blockSize, label });
  } finally {
    w.destroy();
  }
}

function f16FromBf16Values(ctx: Context, values: Float32Array, shape: [number, number], label: string): BaseWeight {
  try {
    return f16Weight(ctx, values, shape, label);
  } catch (e) {
    if (e instanceof PeftError) throw new PeftError(e.message.replace('f16Weight:', 'weightFromSafetensors: BF16').replace("'values'", "'data'"));
    throw e;
  }
}

// ------------------------------------------------------------------ on the device

export interface QuantizeOptions {
  /** NF4 block size, a power of two from 32 to 4096; default 64 (bitsandbytes'). */
  blockSize?: number;
  /** Label of the new weight's tensors. */
  label?: string;
}

function checkDeviceInput(where: string, ctx: Context, w: unknown, allowF16: boolean): { size: number; shape: [number, number]; f16: boolean } {
  if (BaseWeight.isBaseWeight(w)) {
    if (!allowF16 || w.format !== 'f16')
      throw new PeftError(`${where}: 'w' is an ${w.format} BaseWeight; expected an f32 Tensor${allowF16 ? ' or an f16 BaseWeight' : ''}`);
    checkBaseWeight(where, 'w', ctx, w, 'f16');
    return { size: w.size, shape: [w.shape[0], w.shape[1]], f16: true };
  }
  const [rows, cols] = checkMatrix(where, 'w', w, '[rows, cols]');
  checkOwner(where, 'w', ctx, w as Tensor);
  return { size: rows * cols, shape: [rows, cols], f16: false };
}

function optionsOf(where: string, opts: unknown, known: readonly string[]): Record<string, unknown> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts))
    throw new PeftError(`${where}: options must be an object, got ${describeValue(opts)}`);
  for (const k of Object.keys(opts))
    if (!known.includes(k)) throw new PeftError(`${where}: unknown option '${k}' (this call takes ${known.join(', ')})`);
  return opts as Record<string, unknown>;
}

const groups = (count: number) => Math.max(1, Math.ceil(count / WG));

/** The status words a device check writes; the caller clears and frees them. */
async function readStatus(ctx: Context, status: Tensor<'u32'>): Promise<Uint32Array> {
  return ctx.read(status);
}

export async function prepareF16Pack(ctx: Context, write: boolean): Promise<void> {
  await ctx.prepare([{ shader: 'quant', entry: 'f16_pack', constants: { WRITE: write } }]);
}

/**
 * Encodes f32 `src` → f16 words into `dest` (with write; without, the range check alone). `status`
 * gets [values out of f16's range, 0xffffffff − the first of them]. Prepared by prepareF16Pack.
 */
export function encodeF16Pack(ctx: Context, enc: GPUCommandEncoder, src: Tensor, dest: Tensor | null, status: Tensor<'u32'>): void {
  enc.clearBuffer(status.buffer, 0, status.buffer.size);
  const words = Math.ceil(src.size / 2);
  ctx.dispatch(enc, {
    shader: 'quant',
    entry: 'f16_pack',
    constants: { WRITE: dest !== null },
    params: { n: src.size, block: 0, chunk: 0, count: words },
    // Without `dest` nothing is written, but the binding needs a buffer other than `status`.
    bindings: [src, dest ?? ctx.scratch('quant.unused', [1], 'u32'), status],
    workgroups: groups(words),
    label: `f16_pack ${src.label}`,
  });
}

export function f16RangeError(where: string, name: string, status: Uint32Array, cols: number, value?: number): PeftError | null {
  if (status[0] === 0) return null;
  const first = 0xffffffff - status[1];
  return new PeftError(
    `${where}: ${status[0]} value${status[0] === 1 ? '' : 's'} of '${name}' f16 cannot hold (NaN, ±Inf or |v| > ${F16_MAX}), ` +
      `the first at [${Math.floor(first / cols)}, ${first % cols}]${value === undefined ? '' : ` (${value})`}`,
  );
}

/**
 * f32 → f16 on the device: a new f16 BaseWeight holding `w` rounded to nearest even. NaN, ±Inf or
 * |value| > 65504 is an error naming the first such element (nothing is returned).
 */
export async function toF16(ctx: Context, w: Tensor, opts: { label?: string } = {}): Promise<BaseWeight> {
  const where = 'toF16';
  checkContext(where, ctx);
  const o = optionsOf(where, opts, ['label']);
  const { size, shape } = checkDeviceInput(where, ctx, w, false);
  const label = (o.label as string | undefined) ?? `${w.label}.f16`;
  await prepareF16Pack(ctx, true);
  const data = ctx.tensor([packedWords('f16', size)], 'u32', `${label}.data`);
  const status = ctx.tensor([2], 'u32', `${where}.status`);
  try {
    await ctx.encode(undefined, (enc) => encodeF16Pack(ctx, enc, w, data, status));
    const bad = f16RangeError(where, 'w', await readStatus(ctx, status), shape[1]);
    if (bad) throw bad;
  } catch (e) {
    data.destroy();
    throw e;
  } finally {
    status.destroy();
  }
  return new BaseWeight('f16', shape, data, null, 0, label);
}

export async function prepareQuantizeNf4(ctx: Context, f16: boolean): Promise<void> {
  await ctx.prepare([
    { shader: 'quant', entry: 'nf4_absmax', constants: { F16_IN: f16 } },
    { shader: 'quant', entry: 'nf4_codes', constants: { F16_IN: f16 } },
  ]);
}

/**
 * Encodes the quantizer: `src` (f32 Tensor or f16 BaseWeight) → `codes` (u32 words) and `absmax`.
 * `status` (4 words) gets [non-finite values, 0xffffffff − the first, blocks outside the quantizer's
 * range, 0xffffffff − the first]. Prepared by prepareQuantizeNf4.
 */
export function encodeQuantizeNf4(
  ctx: Context,
  enc: GPUCommandEncoder,
  src: Tensor | BaseWeight,
  blockSize: number,
  codes: Tensor,
  absmax: Tensor,
  status: Tensor<'u32'>,
): void {
  const f16 = BaseWeight.isBaseWeight(src);
  const input = f16 ? src.data : src;
  const size = src.size;
  enc.clearBuffer(status.buffer, 0, status.buffer.size);
  enc.clearBuffer(absmax.buffer, 0, absmax.buffer.size);
  const chunks = Math.ceil(size / CHUNK);
  ctx.dispatch(enc, {
    shader: 'quant',
    entry: 'nf4_absmax',
    constants: { F16_IN: f16 },
    params: { n: size, block: blockSize, chunk: CHUNK, count: chunks },
    bindings: [input, absmax, status],
    workgroups: groups(chunks),
    label: `nf4_absmax ${src.label}`,
  });
  const words = packedWords('nf4', size);
  ctx.dispatch(enc, {
    shader: 'quant',
    entry: 'nf4_codes',
    constants: { F16_IN: f16 },
    params: { n: size, block: blockSize, chunk: CHUNK, count: words },
    bindings: [input, absmax, codes, status],
    workgroups: groups(words),
    label: `nf4_codes ${src.label}`,
  });
}

/** The quantizer's error from its status words, or null. */
export function quantizeError(where: string, name: string, status: Uint32Array, cols: number, blockSize: number): PeftError | null {
  if (status[0] > 0) {
    const first = 0xffffffff - status[1];
    return new PeftError(
      `${where}: '${name}' has ${status[0]} non-finite value${status[0] === 1 ? '' : 's'} (NaN or ±Inf), the first at ` +
        `[${Math.floor(first / cols)}, ${first % cols}]; NF4 quantizes finite weights only`,
    );
  }
  if (status[2] > 0) {
    const b = 0xffffffff - status[3];
    return new PeftError(
      `${where}: '${name}' has ${status[2]} block${status[2] === 1 ? '' : 's'} (the first: block ${b}, values from index ${b * blockSize}) ` +
        `whose absmax is outside the quantizer's range [2^-120, 2^126) (≈ 7.5e-37 to 8.5e37); an all-zero block is fine`,
    );
  }
  return null;
}

/**
 * bitsandbytes' NF4 quantizer on the device: absmax = each block's largest |value|; code = the
 * NF4 level nearest to value · (1/absmax), the reciprocal and the product rounded to f32, a tie
 * taking the lower code; an all-zero block gets code 7 (the level 0) throughout. `w` is an f32
 * Tensor or an f16 BaseWeight; NaN or ±Inf in it is an error naming the first (nothing returned).
 */
export async function quantizeNf4(ctx: Context, w: Tensor | BaseWeight, opts: QuantizeOptions = {}): Promise<BaseWeight> {
  const where = 'quantizeNf4';
  checkContext(where, ctx);
  const o = optionsOf(where, opts, ['blockSize', 'label']);
  const blockSize = checkBlockSize(where, o.blockSize ?? 64);
  const { size, shape, f16 } = checkDeviceInput(where, ctx, w, true);
  const label = (o.label as string | undefined) ?? `${w.label}.nf4`;
  await prepareQuantizeNf4(ctx, f16);
  const data = ctx.tensor([packedWords('nf4', size)], 'u32', `${label}.data`);
  const absmax = ctx.tensor([Math.ceil(size / blockSize)], 'f32', `${label}.absmax`);
  const status = ctx.tensor([4], 'u32', `${where}.status`);
  try {
    await ctx.encode(undefined, (enc) => encodeQuantizeNf4(ctx, enc, w, blockSize, data, absmax, status));
    const bad = quantizeError(where, 'w', await readStatus(ctx, status), shape[1], blockSize);
    if (bad) throw bad;
  } catch (e) {
    data.destroy();
    absmax.destroy();
    throw e;
  } finally {
    status.destroy();
  }
  return new BaseWeight('nf4', shape, data, absmax, blockSize, label);
}

export async function prepareDequantize(ctx: Context, format: 'f16' | 'nf4'): Promise<void> {
  await ctx.prepare([{ shader: 'quant', entry: format === 'f16' ? 'dequant_f16' : 'dequant_nf4' }]);
}

/** Encodes deq(w) into the f32 `out` ([rows, cols] or any tensor of w.size values). Prepared by prepareDequantize. */
export function encodeDequantize(ctx: Context, enc: GPUCommandEncoder, w: BaseWeight, out: Tensor): void {
  const words = packedWords(w.format, w.size);
  const f16 = w.format === 'f16';
  ctx.dispatch(enc, {
    shader: 'quant',
    entry: f16 ? 'dequant_f16' : 'dequant_nf4',
    params: { n: w.size, block: f16 ? 0 : w.blockSize, chunk: 0, count: words },
    bindings: f16 ? [w.data, out] : [w.data, w.absmax!, out],
    workgroups: groups(words),
    label: `dequantize ${w.label}`,
  });
}

/**
 * deq(w) as an f32 Tensor [rows, cols] (into `out` when given): the f16 values, or NF4[code] ·
 * absmax rounded to f32. For merges, checks and export; the products read `w` directly.
 */
export async function dequantize(ctx: Context, w: BaseWeight, out?: Tensor, opts: { encoder?: GPUCommandEncoder } = {}): Promise<Tensor> {
  const where = 'dequantize';
  checkContext(where, ctx);
  const o = optionsOf(where, opts, ['encoder']);
  checkBaseWeight(where, 'w', ctx, w);
  const shape = [w.shape[0], w.shape[1]];
  if (out !== undefined) {
    checkTensor(where, 'out', out, shape, '[rows, cols]');
    checkOwner(where, 'out', ctx, out);
  }
  await prepareDequantize(ctx, w.format);
  const target = out ?? ctx.tensor(shape, 'f32', `${w.label}.f32`);
  try {
    await ctx.encode(o.encoder as GPUCommandEncoder | undefined, (enc) => encodeDequantize(ctx, enc, w, target));
  } catch (e) {
    if (!out) target.destroy();
    throw e;
  }
  return target;
}

/** The host copy of a base weight: f16 bits, or NF4 codes (bitsandbytes' bytes) and absmax. */
export async function readWeight(
  ctx: Context,
  w: BaseWeight,
): Promise<{ format: 'f16'; bits: Uint16Array } | { format: 'nf4'; codes: Uint8Array; absmax: Float32Array; blockSize: number }> {
  const where = 'readWeight';
  checkContext(where, ctx);
  checkBaseWeight(where, 'w', ctx, w);
  const words = await ctx.read(w.data as Tensor<'u32'>);
  if (w.format === 'f16') return { format: 'f16', bits: unpackHalves(words, w.size) };
  const absmax = await ctx.read(w.absmax as Tensor<'f32'>);
  return { format: 'nf4', codes: unpackBytes(words, Math.ceil(w.size / 2)), absmax, blockSize: w.blockSize };
}

// ------------------------------------------------------------------ requantization error

export interface QuantError {
  /** max |deq(W') − W'| over the weight, W' the exact f32 result. */
  maxAbs: number;
  /** maxAbs / max |W'| (0 for an all-zero W'). */
  relative: number;
}

export async function prepareNf4Error(ctx: Context): Promise<void> {
  await ctx.prepare([{ shader: 'quant', entry: 'nf4_error' }]);
}

/** Encodes the error of NF4 `codes`/`absmax` against the f32 `exact` into `out` (2 words). */
export function encodeNf4Error(
  ctx: Context,
  enc: GPUCommandEncoder,
  exact: Tensor,
  codes: Tensor,
  absmax: Tensor,
  blockSize: number,
  out: Tensor<'u32'>,
): void {
  enc.clearBuffer(out.buffer, 0, out.buffer.size);
  const words = packedWords('nf4', exact.size);
  ctx.dispatch(enc, {
    shader: 'quant',
    entry: 'nf4_error',
    params: { n: exact.size, block: blockSize, chunk: 0, count: words },
    bindings: [exact, codes, absmax, out],
    workgroups: groups(words),
    label: `nf4_error ${exact.label}`,
  });
}

export function quantErrorOf(words: Uint32Array): QuantError {
  const f = new Float32Array(new Uint32Array([words[0], words[1]]).buffer);
  return { maxAbs: f[0], relative: f[1] === 0 ? 0 : f[0] / f[1] };
}

/** Bytes a value of each format takes on the device (NF4: codes and f32 absmax). */
export function bytesPerValue(format: BaseFormat, blockSize = 64): number {
  return format === 'f32' ? 4 : format === 'f16' ? 2 : 0.5 + 4 / blockSize;
}
