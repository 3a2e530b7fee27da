// The WebGPU runtime: one Context per GPUDevice. It finds a device in any host (a browser's
// navigator.gpu, Node through Dawn's `webgpu` package, or a device the caller already has),
// compiles and caches pipelines, owns the package's buffers, and turns WebGPU's asynchronous
// errors (validation, out-of-memory, device loss) into thrown Errors that say what failed.
//
// Context is a facade over the parts in src/runtime/, each with its own reasons written at its top:
//   device.ts      device acquisition (and the no-WebGPU messages), adapter description, loss
//   dawn.ts        Dawn in Node (Node-only; browser bundles never reach it)
//   buffers.ts     the buffer allocator and its accounting, tensors, host transfers, scratch
//   pipelines.ts   shader sources through wgsl.ts, modules, compilation messages, pipelines
//   uniforms.ts    uniform parameters packed by layout, one buffer per content, LRU
//   dispatcher.ts  workgroup grids, prepare / dispatch / encode, submit and sync in error scopes
//   wgsl.ts        what the runtime reads out of WGSL: `//#each` variants and uniform layouts
//
// Faults. A destroyed context or a lost device never ends the process: every public function
// checks the context first and rejects with a PeftError naming the call and what was lost
// ("lora.forward: this context was destroyed", "...: the GPU device was lost (reason: message);
// create a new context"), and a loss in the middle of a call rejects that call's own promise.
// `ctx.lost` resolves and `ctx.onLost(fn)` runs when the device is lost; `ctx.isLost` and
// `ctx.isDestroyed` say so synchronously (Dawn reports a `device.destroy()` a task later, so a
// call started in the same task learns of it when its own work is checked).
//
// Ordering. The queue runs work in the order it is issued. ctx.write / upload / fill / copy are
// issued at once; a kernel call issues its work when its pipelines are ready, after its first
// await. So a call issued without awaiting it may run after a ctx.write that follows it in the
// program: write a call's inputs before starting it, and change them only after its promise
// resolves. Reads and sync() wait until every call started before them has issued its work, so
// `ctx.read(y)` after an un-awaited call reads that call's result. Writes are not held back the
// same way: kernels themselves write tables and index sets while encoding, and those writes must
// land before their own call's work, not after it.

import type { DType, HostArray, HostArrayOf, Tensor } from './tensor.js';
import { PeftError, asTensor, checkContext, checkOwner } from './validate.js';
import { BufferAllocator, type AllocationRecord } from './runtime/buffers.js';
import {
  DeviceHealth,
  acquireDevice,
  checkTuning,
  defaultTuning,
  type ContextOptions,
  type DeviceDescription,
  type Tuning,
} from './runtime/device.js';
import { Dispatcher, type DispatchSpec, type PipelineSpec } from './runtime/dispatcher.js';
import { PipelineCache, type Constants } from './runtime/pipelines.js';
import { UniformCache } from './runtime/uniforms.js';
import type { ParamLayout } from './runtime/wgsl.js';

export { Usage, type AllocationRecord } from './runtime/buffers.js';
export { setGpuProvider, noWebGpuMessage, type ContextOptions, type DeviceDescription, type GpuProvider, type Tuning } from './runtime/device.js';
export type { DispatchSpec, PipelineSpec } from './runtime/dispatcher.js';
export type { ParamValues } from './runtime/wgsl.js';

export class Context {
  readonly device: GPUDevice;
  readonly adapterInfo: DeviceDescription;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  /** Resolves when the device is lost; the context is unusable after that. */
  readonly lost: Promise<GPUDeviceLostInfo>;
  /** Kernel choices for this device; may be changed between calls (benchmarks compare them). */
  tuning: Tuning;

  #ownsDevice: boolean;
  #health: DeviceHealth;
  #pipelines: PipelineCache;
  #uniforms: UniformCache;
  #dispatcher: Dispatcher;
  #buffers: BufferAllocator;

  private constructor(device: GPUDevice, info: DeviceDescription, owns: boolean, tuning?: Partial<Tuning>) {
    this.device = device;
    this.adapterInfo = info;
    this.tuning = defaultTuning(info, tuning);
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.limits = device.limits;
    this.#ownsDevice = owns;
    this.#health = new DeviceHealth(device);
    this.lost = this.#health.lost;
    this.#pipelines = new PipelineCache(device, this.#health);
    this.#uniforms = new UniformCache(device, this.#pipelines);
    this.#dispatcher = new Dispatcher(device, this.#health, this.#pipelines, this.#uniforms);
    this.#buffers = new BufferAllocator(this, device, this.#health, this.#dispatcher);
  }

  /**
   * Creates a context. With no options it uses navigator.gpu where the host has it, else the
   * registered GPU provider, else Dawn's `webgpu` package in Node. A lost device cannot be
   * revived: create a new context.
   */
  static async create(options: ContextOptions = {}): Promise<Context> {
    checkTuning(options.tuning);
    // Dawn's create() result (the `root` acquireDevice reports) is kept alive by src/runtime/dawn.ts.
    const { device, info, owns } = await acquireDevice(options);
    return new Context(device, info, owns, options.tuning);
  }

  /**
   * True once the device is lost (a driver reset, a browser tab's GPU process restarted,
   * device.destroy()); the context cannot be used again, create a new one.
   */
  get isLost(): boolean {
    return this.#health.isLost;
  }

  /** True once destroy() was called. */
  get isDestroyed(): boolean {
    return this.#health.destroyed;
  }

  /**
   * Calls `fn` once when the device is lost (at once, on a later task, if it already was); returns
   * an unsubscribe. A throwing `fn` is reported to the console, never as an unhandled rejection.
   */
  onLost(fn: (info: GPUDeviceLostInfo) => void): () => void {
    let active = true;
    void this.lost.then((info) => {
      if (!active) return;
      try {
        fn(info);
      } catch (e) {
        console.error('peft-wgsl: an onLost listener threw', e);
      }
    });
    return () => {
      active = false;
    };
  }

  /**
   * What a call named `where` that failed with `e` should reject with: the loss or destruction
   * under that call's name when the context died under it, else `e`. For the kernel calls.
   */
  explainFailure(where: string, e: unknown): Promise<unknown> {
    return this.#health.explain(where, e);
  }

  /** Throws when the device is lost or the context destroyed. Every operation calls it first. */
  assertAlive(what = 'operation'): void {
    this.#health.assertAlive(what);
  }

  // ---------------------------------------------------------------- memory

  /** Live bytes, peak bytes and every live allocation the package made on this context. */
  get allocations(): { liveBytes: number; peakBytes: number; live: AllocationRecord[] } {
    return this.#buffers.allocations;
  }

  /** Calls `fn` for every buffer the package allocates from now on; returns an unsubscribe. */
  onAllocate(fn: (r: AllocationRecord) => void): () => void {
    return this.#buffers.onAllocate(fn);
  }

  resetPeak(): void {
    this.#buffers.resetPeak();
  }

  createBuffer(bytes: number, usage: number, label: string, shape?: readonly number[]): GPUBuffer {
    return this.#buffers.createBuffer(bytes, usage, label, shape);
  }

  releaseBuffer(buffer: GPUBuffer): void {
    this.#buffers.releaseBuffer(buffer);
  }

  /** A new device tensor (contents undefined until written). */
  tensor<D extends DType = 'f32'>(shape: readonly number[], dtype: D = 'f32' as D, label = 'tensor'): Tensor<D> {
    return this.#buffers.tensor(shape, dtype, label);
  }

  /** A device tensor filled with zeros. */
  zeros<D extends DType = 'f32'>(shape: readonly number[], dtype: D = 'f32' as D, label = 'zeros'): Tensor<D> {
    const t = this.tensor(shape, dtype, label);
    this.fill(t, 0);
    return t;
  }

  /** Uploads host data as a new tensor of the given shape. */
  upload<D extends DType = 'f32'>(data: HostArray, shape: readonly number[], dtype: D = 'f32' as D, label = 'tensor'): Tensor<D> {
    const t = this.tensor(shape, dtype, label);
    this.write(t, data);
    return t;
  }

  /** Writes host data into a tensor; the length must match exactly. */
  write(t: Tensor, data: HostArray): void {
    this.#mine('write', t);
    this.#buffers.write(t, data);
  }

  fill(t: Tensor, value: number): void {
    this.#mine('fill', t);
    this.#buffers.fill(t, value);
  }

  /** Copies `src` into `dst` (same element count), on the given encoder or a new submission. */
  copy(src: Tensor, dst: Tensor, encoder?: GPUCommandEncoder): void {
    this.#mine('copy', src, 'src');
    this.#mine('copy', dst, 'dst');
    this.#buffers.copy(src, dst, encoder);
  }

  /**
   * Reads a tensor back to the host: a Float32Array for an f32 tensor, Uint32Array for u32,
   * Int32Array for i32. Throws any GPU error raised by work submitted before it.
   */
  async read<D extends DType>(t: Tensor<D>): Promise<HostArrayOf<D>> {
    const what = this.#mine('read', t);
    try {
      await this.#dispatcher.settled();
      return await this.#buffers.read(t);
    } catch (e) {
      throw await this.#health.explain(what, e);
    }
  }

  /** Throws unless this context is alive and `t` is one of its tensors; returns the call's name. */
  #mine(op: string, t: Tensor, name = 't'): string {
    const tensor = asTensor(op, name, t);
    const where = `${op} '${tensor.label}'`;
    checkContext(where, this);
    checkOwner(where, name, this, tensor);
    return where;
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    if (t.dtype !== 'f32') throw new PeftError(`readF32: '${t.label}' is ${t.dtype}, expected f32`);
    return (await this.read(t)) as Float32Array;
  }

  /**
   * A scratch tensor owned by the context and reused by every call that asks for the same name and
   * shape. Work is ordered on the queue, so consecutive kernels may share one even inside a single
   * encoder; a kernel must not hand its scratch back to the caller.
   */
  scratch<D extends DType = 'f32'>(name: string, shape: readonly number[], dtype: D = 'f32' as D): Tensor<D> {
    return this.#buffers.scratch(name, shape, dtype);
  }

  /** Frees every scratch tensor (they are made again on demand). */
  releaseScratch(): void {
    this.#buffers.releaseScratch();
  }

  // ---------------------------------------------------------------- errors

  /** Submits the encoder's work inside validation and out-of-memory error scopes. */
  submit(encoder: GPUCommandEncoder): void {
    this.#dispatcher.submit(encoder);
  }

  /**
   * Waits for the queue and throws the first error raised by work this context submitted or by
   * anything uncaptured on the device since the last sync.
   */
  async sync(): Promise<void> {
    try {
      await this.#dispatcher.sync();
    } catch (e) {
      throw await this.#health.explain('sync', e);
    }
  }

  // ---------------------------------------------------------------- pipelines and dispatch

  /**
   * Registers a WGSL module of the caller's under `name`, so it is dispatched like the package's
   * own (with the common prelude, pipeline cache and error reporting).
   */
  addShader(name: string, code: string): void {
    this.#pipelines.addShader(name, code);
  }

  /** The uniform layout `entry` of `shader` reads at binding 0 (null: it has no uniform). */
  paramLayout(shader: string, entry: string): ParamLayout | null {
    return this.#pipelines.paramLayout(shader, entry);
  }

  /**
   * The compute pipeline for a shader entry point specialised with override constants; cached by
   * (shader, entry, constants). Compilation errors throw with the shader's file and line.
   */
  pipeline(shader: string, entry = 'main', constants: Constants = {}): Promise<GPUComputePipeline> {
    return this.#pipelines.pipeline(shader, entry, constants);
  }

  /** Splits a 1-D workgroup count across x and y when it passes the per-dimension limit. */
  workgroupGrid(count: number | [number, number?, number?]): [number, number, number] {
    return this.#dispatcher.workgroupGrid(count);
  }

  /** Compiles every pipeline a kernel will use, so encoding can stay synchronous. */
  prepare(specs: PipelineSpec[]): Promise<void> {
    return this.#dispatcher.prepare(specs);
  }

  /** Encodes one dispatch into `encoder`. The pipeline must have been prepared. */
  dispatch(encoder: GPUCommandEncoder, spec: DispatchSpec): void {
    this.#dispatcher.dispatch(encoder, spec);
  }

  /** Runs `fn` on the caller's encoder, or on a new one that is submitted afterwards. */
  encode<T>(encoder: GPUCommandEncoder | undefined, fn: (enc: GPUCommandEncoder) => T | Promise<T>): Promise<T> {
    return this.#dispatcher.encode(encoder, fn);
  }

  /** Releases the package's buffers; destroys the device if this context created it. */
  destroy(): void {
    if (this.#health.destroyed) return;
    this.#buffers.destroyAll();
    this.#uniforms.destroy();
    this.#health.markDestroyed();
    if (this.#ownsDevice) this.device.destroy();
    // Dawn's root stays referenced by dawn.ts: the device may finish tearing down asynchronously.
  }
}

/** Creates a context; see Context.create. */
export function createContext(options?: ContextOptions): Promise<Context> {
  return Context.create(options);
}
