// Scaffolding every method shares: option types, output tensors given or made, and the one merge
// path (W' = W0 ± ΔW into a new tensor, a caller's tensor, or W0 itself).

import type { Context } from '../runtime.js';
import { checkDropout, type Dropout } from '../ops/dropout.js';
import type { Tensor } from '../tensor.js';
import { PeftError, checkArgObject, checkContext, checkIo, checkTensor, describeValue, weightTensors } from '../validate.js';
import { encodeFiniteCheck, finiteResult, prepareFiniteCheck, readFiniteCheck } from '../ops/finite.js';
import type { HostValues, LayerSpec, Trainable } from './types.js';
import { BaseWeight, formatOf, type Weight } from '../base.js';
import {
  checkBaseWeight,
  encodeDequantize,
  encodeF16Pack,
  encodeNf4Error,
  encodeQuantizeNf4,
  f16RangeError,
  prepareDequantize,
  prepareF16Pack,
  prepareNf4Error,
  prepareQuantizeNf4,
  quantErrorOf,
  quantizeError,
} from '../quant/index.js';

export interface EncodeOptions {
  /** Record into this encoder instead of submitting now. */
  encoder?: GPUCommandEncoder;
}

/** Forward options every method takes. */
export interface ForwardOptions extends EncodeOptions {
  /** Y gets the adapter term alone (no base product). */
  adapterOnly?: boolean;
}

/** Backward options every method takes. */
export interface BackwardOptions extends EncodeOptions {
  /** dX gets the adapter's share alone (no G W0). */
  adapterOnly?: boolean;
}

export interface MergeOptions extends EncodeOptions {
  /** Update W0 itself instead of writing a new tensor. */
  inPlace?: boolean;
  /** Subtract ΔW (undo an earlier merge). */
  unmerge?: boolean;
  /** Write ΔW alone. */
  deltaOnly?: boolean;
  /**
   * As PEFT's safe_merge: count the result's NaN and ±Inf values on the device and throw a
   * PeftError, having changed nothing of the caller's, when there are any. Costs one read of the
   * result and a wait for the device (so no caller's `encoder`); with `inPlace` or `out` the merge
   * runs in a temporary [m, n] tensor that is copied over only once it has passed.
   */
  safeMerge?: boolean;
  /**
   * Allows writing the result into an NF4 weight (W0 with inPlace, or an NF4 `out`), which
   * requantizes it and loses precision; the written weight's `quantError` then holds the error
   * (max abs, and relative to max |W'|) against the exact f32 result. Without it such a merge is an
   * error.
   */
  requantize?: boolean;
}

/** The option names each kind of call takes; a method adds its own (BoRA's forward: 'save'). */
export const FORWARD_OPTIONS = ['encoder', 'adapterOnly'] as const;
export const BACKWARD_OPTIONS = ['encoder', 'adapterOnly'] as const;
export const MERGE_OPTIONS = ['encoder', 'inPlace', 'unmerge', 'deltaOnly', 'safeMerge', 'requantize'] as const;

/**
 * Rejects option names the call does not know, so a misspelt or unsupported option is an error
 * rather than silently ignored.
 */
export function checkOptions(where: string, opts: object | null | undefined, known: readonly string[]): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts))
    throw new PeftError(`${where}: options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) throw new PeftError(`${where}: unknown option '${k}' (this call takes ${known.join(', ')})`);
  }
}

/** The caller's output tensor, checked against `shape`, or a new one labelled `label`. */
export function outputOrNew(
  ctx: Context,
  where: string,
  name: string,
  given: Tensor | undefined,
  shape: number[],
  dims: string,
  label: string,
): Tensor {
  return given ? checkTensor(where, name, given, shape, dims) : ctx.tensor(shape, 'f32', label);
}

/**
 * What every public call checks first, before it reads a size: a live Context (a destroyed one or
 * a lost device is named here) and an argument object (`expected` lists its fields).
 */
export function checkCall(where: string, ctx: Context, p: unknown, expected: string): void {
  checkContext(where, ctx);
  checkArgObject(where, p, expected);
}

/** The call's `dropout` argument: absent, or { p, seed } checked by checkDropout. */
export function checkDropoutArg(where: string, d: unknown): Dropout | undefined {
  if (d === undefined) return undefined;
  if (d === null || typeof d !== 'object' || Array.isArray(d)) {
    throw new PeftError(`${where}: 'dropout' must be an object { p, seed }, got ${describeValue(d)}`);
  }
  return checkDropout(where, d as Dropout);
}

/**
 * The tensors one call allocates for its caller. If the call fails after allocating (a check that
 * needs the device, a pipeline that fails to compile, a lost device, an error its own submission
 * raised), they are freed before the error reaches the caller; the caller's tensors never are.
 */
export class CallOutputs {
  readonly #made: Tensor[] = [];
  constructor(
    private readonly ctx: Context,
    private readonly where: string,
  ) {}

  /** The caller's tensor `given` (checked against `shape`), or a new one this call owns. */
  output(name: string, given: Tensor | undefined, shape: number[], dims: string, label: string): Tensor {
    return given ? checkTensor(this.where, name, given, shape, dims) : this.tensor(shape, label);
  }

  /** A new f32 tensor, freed if the call fails. */
  tensor(shape: number[], label: string): Tensor {
    const t = this.ctx.tensor(shape, 'f32', label);
    this.#made.push(t);
    return t;
  }

  free(): void {
    for (const t of this.#made.splice(0)) t.destroy();
  }
}

/**
 * Runs a call's allocating part: on failure frees what it allocated and rejects with the loss
 * under the call's name when the context died during it, else with the error itself.
 */
export async function withOutputs<T>(ctx: Context, where: string, fn: (out: CallOutputs) => Promise<T>): Promise<T> {
  const out = new CallOutputs(ctx, where);
  try {
    return await fn(out);
  } catch (e) {
    out.free();
    const why = await ctx.explainFailure(where, e);
    // A scope's error is reported by encode() without the call's name; the caller gets it here.
    if (why instanceof PeftError && /^(GPU validation error|out of GPU memory)/.test(why.message)) throw new PeftError(`${where}: ${why.message}`);
    throw why;
  }
}

/**
 * The one merge path. Picks the target (W0 itself with inPlace, the caller's `out`, or a new
 * [m, n] f32 tensor), starts it from W0 (or zero with deltaOnly), then lets `accumulate` add
 * sign·ΔW into it with sign = −1 for unmerge. Every check comes before the target is allocated,
 * and a failure afterwards frees it. With safeMerge the result is checked for NaN and ±Inf on the
 * device before the caller's W0 or `out` is written (MergeOptions.safeMerge).
 *
 * W0 may be a BaseWeight (f16 or NF4): it is dequantized straight into the f32 target, so no f32
 * copy of W0 exists besides the result. A BaseWeight destination (an f16 or NF4 `out`, or W0 itself
 * with inPlace) gets the result packed from an f32 [m, n] scratch: f16 after a range check (a value
 * past 65504 is an error, the destination unchanged); NF4 only with `requantize`, which quantizes
 * the scratch, measures the error against it, and copies codes and absmax over once both passed.
 */
export async function mergeInto<W extends Weight, O extends Weight | undefined>(
  ctx: Context,
  where: string,
  w0: W,
  out: O,
  opts: MergeOptions,
  inputs: Record<string, Tensor | undefined>,
  accumulate: (enc: GPUCommandEncoder, target: Tensor, sign: number) => void | Promise<void>,
): Promise<W | NonNullable<O> | Tensor> {
  const base = BaseWeight.isBaseWeight(w0) ? checkBaseWeight(where, 'w0', ctx, w0) : undefined;
  const [m, n] = w0.shape;
  const dest: Weight | undefined = opts.inPlace ? w0 : out;
  const destName = opts.inPlace ? 'w0' : 'out';
  if (opts.inPlace) {
    if (opts.deltaOnly) throw new PeftError(`${where}: 'inPlace' and 'deltaOnly' exclude each other`);
    if (out) throw new PeftError(`${where}: 'out' is not used with 'inPlace' (W0 itself is updated)`);
    checkIo(where, ctx, weightTensors('w0', w0), inputs);
  } else {
    if (BaseWeight.isBaseWeight(out)) {
      checkBaseWeight(where, 'out', ctx, out);
      if (out.shape[0] !== m || out.shape[1] !== n) {
        throw new PeftError(`${where}: 'out' has shape [${out.shape.join(', ')}], expected [m, n] = [${m}, ${n}]`);
      }
    } else if (out) checkTensor(where, 'out', out, [m, n], '[m, n]');
    checkIo(where, ctx, out ? weightTensors('out', out) : {}, { ...weightTensors('w0', w0), ...inputs });
  }
  const safe = opts.safeMerge;
  if (safe !== undefined && typeof safe !== 'boolean') throw new PeftError(`${where}: 'safeMerge' must be a boolean, got ${describeValue(safe)}`);
  if (safe && opts.encoder) {
    throw new PeftError(`${where}: 'safeMerge' waits for the device's check before returning, so it cannot record into the caller's 'encoder'`);
  }
  const requantize = opts.requantize;
  if (requantize !== undefined && typeof requantize !== 'boolean') {
    throw new PeftError(`${where}: 'requantize' must be a boolean, got ${describeValue(requantize)}`);
  }
  const packed = BaseWeight.isBaseWeight(dest) ? dest : undefined;
  if (packed?.format === 'nf4' && !requantize) {
    throw new PeftError(
      `${where}: '${destName}' is NF4, so writing the merged weight into it requantizes it, which loses precision; ` +
        `pass { requantize: true } to accept that (the result's quantError then says how much), or merge into an f32 or f16 'out'`,
    );
  }
  if (requantize && packed?.format !== 'nf4') {
    throw new PeftError(
      `${where}: 'requantize' applies to an NF4 destination only, and '${destName}' is ${dest ? formatOf(dest) : 'a new f32 tensor'}`,
    );
  }
  if (packed && opts.encoder) {
    throw new PeftError(
      `${where}: writing an ${packed.format} '${destName}' checks the result on the device before replacing it, so it cannot record into the caller's 'encoder'`,
    );
  }
  return withOutputs(ctx, where, async (made) => {
    // safeMerge never writes the caller's tensor before the check, and a packed destination is
    // written only from an f32 scratch: both merge into a temporary.
    const direct = dest && !safe && !packed ? (dest as Tensor) : undefined;
    const target = direct ?? made.tensor([m, n], dest ? `${where}.${packed ? 'scratch' : 'safe'}` : `${where}.out`);
    if (safe) await prepareFiniteCheck(ctx);
    if (base && !opts.deltaOnly) await prepareDequantize(ctx, base.format);
    let check: Tensor<'u32'> | undefined;
    try {
      await ctx.encode(opts.encoder, async (enc) => {
        if (opts.deltaOnly) enc.clearBuffer(target.buffer, 0, target.byteLength);
        else if (base) encodeDequantize(ctx, enc, base, target);
        else if (target !== w0) ctx.copy(w0 as Tensor, target, enc);
        await accumulate(enc, target, opts.unmerge ? -1 : 1);
        if (safe) {
          check = finiteResult(ctx, `${where}.check`);
          encodeFiniteCheck(ctx, enc, target, check);
        }
      });
      const bad = check && (await readFiniteCheck(ctx, check));
      if (bad) {
        const kept = dest ? `'${destName}' is unchanged` : 'no tensor was returned';
        throw new PeftError(
          `${where}: safeMerge: the merged weight has ${bad.count} non-finite value${bad.count === 1 ? '' : 's'} (NaN or ±Inf), ` +
            `the first at [${Math.floor(bad.first / n)}, ${bad.first % n}]; ${kept}`,
        );
      }
    } finally {
      check?.destroy();
    }
    if (!dest || target === dest) return target;
    if (packed) await packInto(ctx, where, destName, target, packed);
    else ctx.copy(target, dest as Tensor);
    target.destroy();
    return dest as W | NonNullable<O>;
  });
}

/**
 * Writes the f32 merge result `src` into the f16 or NF4 `dest`, checking first: f16 needs every
 * value within ±65504; NF4 (requantize) quantizes into temporaries, measures the error against
 * `src`, and copies over once the quantizer reported no problem. `dest` is unchanged on error.
 */
async function packInto(ctx: Context, where: string, name: string, src: Tensor, dest: BaseWeight): Promise<void> {
  const cols = dest.shape[1];
  if (dest.format === 'f16') {
    await prepareF16Pack(ctx, false);
    await prepareF16Pack(ctx, true);
    const status = ctx.tensor([2], 'u32', `${where}.status`);
    try {
      await ctx.encode(undefined, (enc) => encodeF16Pack(ctx, enc, src, null, status));
      const bad = f16RangeError(where, `the merged ${name}`, await ctx.read(status), cols);
      if (bad) throw new PeftError(`${bad.message}; '${name}' is unchanged`);
      await ctx.encode(undefined, (enc) => encodeF16Pack(ctx, enc, src, dest.data, status));
    } finally {
      status.destroy();
    }
    return;
  }
  await prepareQuantizeNf4(ctx, false);
  await prepareNf4Error(ctx);
  const made: Tensor[] = [];
  try {
    const codes = ctx.tensor(dest.data.shape, 'u32', `${where}.codes`);
    made.push(codes);
    const absmax = ctx.tensor(dest.absmax!.shape, 'f32', `${where}.absmax`);
    made.push(absmax);
    const status = ctx.tensor([4], 'u32', `${where}.status`);
    made.push(status);
    const err = ctx.tensor([2], 'u32', `${where}.error`);
    made.push(err);
    await ctx.encode(undefined, (enc) => {
      encodeQuantizeNf4(ctx, enc, src, dest.blockSize, codes, absmax, status);
      encodeNf4Error(ctx, enc, src, codes, absmax, dest.blockSize, err);
    });
    const bad = quantizeError(where, `the merged ${name}`, await ctx.read(status), cols, dest.blockSize);
    if (bad) throw new PeftError(`${bad.message}; '${name}' is unchanged`);
    const report = quantErrorOf(await ctx.read(err));
    await ctx.encode(undefined, (enc) => {
      ctx.copy(codes, dest.data, enc);
      ctx.copy(absmax, dest.absmax!, enc);
    });
    dest.quantError = report;
  } finally {
    for (const t of made) t.destroy();
  }
}

/** Splits `where` for merge calls: 'bora.merge' or 'bora.unmerge'. */
export function mergeName(family: string, opts: MergeOptions): string {
  return `${family}.${opts.unmerge ? 'unmerge' : 'merge'}`;
}

// ------------------------------------------------------------------ adapter layers

/** Tensors a layer's forward keeps for its backward, one set per token count. */
export class SavedTensors {
  #map = new Map<string, Tensor>();
  constructor(
    private ctx: Context,
    private prefix: string,
  ) {}
  get(name: string, shape: number[]): Tensor {
    const key = `${name}:${shape.join('x')}`;
    let t = this.#map.get(key);
    if (!t) {
      t = this.ctx.tensor(shape, 'f32', `${this.prefix}.${name}`);
      this.#map.set(key, t);
    }
    return t;
  }
  destroy(): void {
    for (const t of this.#map.values()) t.destroy();
    this.#map.clear();
  }
}

/** A trainable tensor with its gradient buffer. */
export function trainable(ctx: Context, name: string, data: Float32Array, shape: number[]): Trainable {
  return { name, param: ctx.upload(data, shape, 'f32', name), grad: ctx.tensor(shape, 'f32', `d${name}`) };
}

/** The label of a layer's tensor: '<spec.name>.<name>', or `name` for an unnamed layer. */
export function layerLabel(spec: LayerSpec, name: string): string {
  return spec.name ? `${spec.name}.${name}` : name;
}

/** A layer's trainable `name`: labelled by layerLabel, starting from spec.from or `init()`. */
export function layerTrainable(ctx: Context, spec: LayerSpec, name: string, shape: number[], init: () => Float32Array): Trainable {
  return trainable(ctx, layerLabel(spec, name), initial(spec, name, shape, init), shape);
}

/** Frees trainables and their gradients. */
export function destroyTrainables(trainables: readonly Trainable[]): void {
  for (const t of trainables) {
    t.param.destroy();
    t.grad.destroy();
  }
}

/** The starting values of `name`: the file's (spec.from) when given, else `init()`. */
export function initial(spec: LayerSpec, name: string, shape: number[], init: () => Float32Array): Float32Array {
  const given = spec.from?.[name];
  if (!given) return init();
  const want = shape.reduce((a, b) => a * b, 1);
  if (!(given.data instanceof Float32Array) || given.data.length !== want) {
    throw new PeftError(
      `createLayer: '${name}' must be ${want} f32 values (shape [${shape.join(', ')}]), got ${given.data.length} ${given.data.constructor.name}`,
    );
  }
  return given.data;
}

/** Host copies of the trainables, keyed by the part of their name after the layer prefix. */
export async function trainableValues(ctx: Context, prefix: string, trainables: Trainable[]): Promise<Record<string, HostValues>> {
  const out: Record<string, HostValues> = Object.create(null) as Record<string, HostValues>;
  for (const t of trainables) {
    const key = prefix && t.name.startsWith(`${prefix}.`) ? t.name.slice(prefix.length + 1) : t.name;
    out[key] = { shape: [...t.param.shape], data: (await ctx.read(t.param)) as Float32Array };
  }
  return out;
}

/** For checkModule: `t` has exactly `shape` (named dims in the message). */
export function expectShape(where: string, label: string, t: HostValues | undefined, shape: readonly number[], dims: string): void {
  if (!t) throw new PeftError(`${where}: '${label}' is missing`);
  const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!same) throw new PeftError(`${where}: '${label}' has shape [${t.shape.join(', ')}], expected ${dims} = [${shape.join(', ')}]`);
}

/**
 * The module a checkModule call is about, from its `label`: label(name) is always
 * '<module path>.<key>' (src/adapters.ts), so the module is the label of `spec` less its key.
 */
export function moduleOf(label: (name: string) => string, spec: { name: string; key: string }): string {
  const full = label(spec.name);
  return full.endsWith(`.${spec.key}`) ? full.slice(0, -spec.key.length - 1) : full;
}
