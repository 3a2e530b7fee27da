// Scaffolding every method shares: option types, output tensors given or made, and the one merge
// path (W' = W0 ± ΔW into a new tensor, a caller's tensor, or W0 itself).

import type { Context } from '../runtime.js';
import { checkDropout, type Dropout } from '../ops/dropout.js';
import type { Tensor } from '../tensor.js';
import { PeftError, checkArgObject, checkContext, checkIo, checkTensor, describeValue } from '../validate.js';
import { encodeFiniteCheck, finiteResult, prepareFiniteCheck, readFiniteCheck } from '../ops/finite.js';
import type { HostValues, LayerSpec, Trainable } from './types.js';

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
}

/** The option names each kind of call takes; a method adds its own (BoRA's forward: 'save'). */
export const FORWARD_OPTIONS = ['encoder', 'adapterOnly'] as const;
export const BACKWARD_OPTIONS = ['encoder', 'adapterOnly'] as const;
export const MERGE_OPTIONS = ['encoder', 'inPlace', 'unmerge', 'deltaOnly', 'safeMerge'] as const;

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
 * [m, n] tensor), starts it from W0 (or zero with deltaOnly), then lets `accumulate` add
 * sign·ΔW into it with sign = −1 for unmerge. Every check comes before the target is allocated,
 * and a failure afterwards frees it. With safeMerge the result is checked for NaN and ±Inf on the
 * device before the caller's W0 or `out` is written (MergeOptions.safeMerge).
 */
export async function mergeInto(
  ctx: Context,
  where: string,
  w0: Tensor,
  out: Tensor | undefined,
  opts: MergeOptions,
  inputs: Record<string, Tensor | undefined>,
  accumulate: (enc: GPUCommandEncoder, target: Tensor, sign: number) => void | Promise<void>,
): Promise<Tensor> {
  const [m, n] = w0.shape;
  if (opts.inPlace) {
    if (opts.deltaOnly) throw new PeftError(`${where}: 'inPlace' and 'deltaOnly' exclude each other`);
    if (out) throw new PeftError(`${where}: 'out' is not used with 'inPlace' (W0 itself is updated)`);
    checkIo(where, ctx, { w0 }, inputs);
  } else {
    if (out) checkTensor(where, 'out', out, [m, n], '[m, n]');
    checkIo(where, ctx, { out }, { w0, ...inputs });
  }
  const safe = opts.safeMerge;
  if (safe !== undefined && typeof safe !== 'boolean') throw new PeftError(`${where}: 'safeMerge' must be a boolean, got ${describeValue(safe)}`);
  if (safe && opts.encoder) {
    throw new PeftError(`${where}: 'safeMerge' waits for the device's check before returning, so it cannot record into the caller's 'encoder'`);
  }
  // The caller's tensor the result lands in (W0 or out); without one, a new tensor is the result.
  const dest = opts.inPlace ? w0 : out;
  return withOutputs(ctx, where, async (made) => {
    // safeMerge never writes the caller's tensor before the check: it merges into a temporary.
    const target = dest && !safe ? dest : made.tensor([m, n], dest ? `${where}.safe` : `${where}.out`);
    if (safe) await prepareFiniteCheck(ctx);
    let check: Tensor<'u32'> | undefined;
    try {
      await ctx.encode(opts.encoder, async (enc) => {
        if (opts.deltaOnly) enc.clearBuffer(target.buffer, 0, target.byteLength);
        else if (target !== w0) ctx.copy(w0, target, enc);
        await accumulate(enc, target, opts.unmerge ? -1 : 1);
        if (safe) {
          check = finiteResult(ctx, `${where}.check`);
          encodeFiniteCheck(ctx, enc, target, check);
        }
      });
      const bad = check && (await readFiniteCheck(ctx, check));
      if (bad) {
        const kept = dest ? `'${opts.inPlace ? 'w0' : 'out'}' is unchanged` : 'no tensor was returned';
        throw new PeftError(
          `${where}: safeMerge: the merged weight has ${bad.count} non-finite value${bad.count === 1 ? '' : 's'} (NaN or ±Inf), ` +
            `the first at [${Math.floor(bad.first / n)}, ${bad.first % n}]; ${kept}`,
        );
      }
    } finally {
      check?.destroy();
    }
    if (!dest || target === dest) return target;
    ctx.copy(target, dest);
    target.destroy();
    return dest;
  });
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
