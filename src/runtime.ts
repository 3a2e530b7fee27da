// The WebGPU runtime: one Context per GPUDevice. It finds a device in any host (a browser's
// navigator.gpu, Node through Dawn's `webgpu` package, or a device the caller already has),
// compiles and caches pipelines, owns the package's buffers, and turns WebGPU's asynchronous
// errors (validation, out-of-memory, device loss) into thrown Errors that say what failed.

import { SHADERS } from './generated/shaders.js';
import { Tensor, type DType, type HostArray, bytesPerElement } from './tensor.js';
import { PeftError } from './validate.js';
import { expandVariants, paramStructs, entryParams, packParams, type ParamLayout, type ParamValues } from './runtime/wgsl.js';

// Numeric flags, so a caller's device works in Node even when Dawn's globals
// (GPUBufferUsage, GPUMapMode) were never installed on globalThis.
export const Usage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  QUERY_RESOLVE: 0x0200,
} as const;
const MAP_READ_MODE = 0x0001;

const PRELUDE_NAME = 'common';
const PRELUDE = SHADERS[PRELUDE_NAME] ?? '';
const PRELUDE_LINES = PRELUDE.split('\n').length - 1;

export interface ContextOptions {
  /** Use this device: the caller keeps ownership, `destroy()` will not destroy it. */
  device?: GPUDevice;
  /** Use this adapter to request a device. */
  adapter?: GPUAdapter;
  /** Use this GPU object (navigator.gpu, or the result of Dawn's `create()`). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Options passed to Dawn's `create()` in Node, e.g. ['enable-dawn-features=...']. */
  dawnOptions?: string[];
  /** Features to request when the adapter has them. Defaults to shader-f16, subgroups, timestamp-query. */
  features?: GPUFeatureName[];
  /** Kernel choices; by default picked from the adapter (see Tuning). */
  tuning?: Partial<Tuning>;
}

/**
 * Kernel variants. CPU WebGPU (lavapipe, SwiftShader) pays a lot for workgroup barriers and little
 * for re-reading memory, so it gets the barrier-free kernels; GPUs get the workgroup-tiled ones.
 */
export interface Tuning {
  /** 'direct-scalar' is 'direct' without 16-byte loads, kept to compare the two in bench/. */
  matmul: 'tiled' | 'direct' | 'direct-scalar';
  /**
   * LoRMA_π's forward and backward: 'fft' (cyclic correlations, O(T·r·d log d), d a power of two),
   * 'tiles' (π(BA) generated tile by tile, any d) or 'auto' (fft when d is a power of two from
   * LORMA_FFT_MIN_D up). See lormaPiPath in src/lorma.ts.
   */
  lormaPi: 'auto' | 'tiles' | 'fft';
}

/** What one allocation by the package looked like; see Context.allocations. */
export interface AllocationRecord {
  label: string;
  bytes: number;
  shape?: readonly number[];
}

export interface DeviceDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Software rasterisers (lavapipe, SwiftShader) run the WGSL on the CPU. */
  isCpu: boolean;
}

// Dawn's create() result must outlive every device it made: if it is collected the process
// segfaults. Each context holds its own; this set keeps them alive even if a context is dropped
// without destroy().
const dawnRoots = new Set<unknown>();

async function nodeGpu(options: string[]): Promise<{ gpu: GPU; root: unknown }> {
  const g = globalThis as { process?: { env: Record<string, string | undefined> } };
  const env = g.process?.env;
  if (env && !env.XDG_RUNTIME_DIR) {
    // Mesa's Vulkan drivers want a writable runtime folder; any will do.
    const os = await import('node:os');
    const fs = await import('node:fs');
    const dir = `${os.tmpdir()}/peft-wgsl-xdg-${process.pid}`;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    env.XDG_RUNTIME_DIR = dir;
  }
  const moduleName = 'webgpu';
  let mod: { create: (opts: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = await import(/* @vite-ignore */ moduleName);
  } catch (e) {
    throw new PeftError(
      `no WebGPU found: this host has no navigator.gpu and the 'webgpu' package (Dawn for Node) could not be loaded (${(e as Error).message}). ` +
        `Install it with 'npm install webgpu', or pass { device } from a host that has WebGPU.`,
    );
  }
  const gpu = mod.create(options);
  // Dawn's classes (GPUBufferUsage, GPUShaderStage, ...) for code that expects browser globals.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  dawnRoots.add(gpu);
  return { gpu, root: gpu };
}

function describe(info: GPUAdapterInfo | undefined): DeviceDescription {
  const vendor = info?.vendor ?? '';
  const architecture = info?.architecture ?? '';
  const device = info?.device ?? '';
  const description = info?.description ?? '';
  const all = `${vendor} ${architecture} ${device} ${description}`.toLowerCase();
  const isCpu = /llvmpipe|lavapipe|swiftshader|software|cpu/.test(all);
  return { vendor, architecture, device, description, isCpu };
}

const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export interface DispatchSpec {
  /** Shader file name without `.wgsl`, e.g. 'matmul'. */
  shader: string;
  entry?: string;
  constants?: Record<string, number | boolean>;
  /**
   * The entry point's uniform struct at binding 0, by field name (see src/runtime/wgsl.ts): packed
   * by the struct's layout; a missing or unknown field is an error. Legacy positional arrays
   * (plain numbers as u32, {f32} / {i32} as such) are still accepted while kernels move over.
   */
  params?: ParamValues | ParamValue[];
  /** Storage bindings, at binding 1, 2, ... in this order (binding 0 is params when given). */
  bindings: (Tensor | GPUBuffer)[];
  /** Workgroup count; a single number is split across x and y when it passes the device limit. */
  workgroups: number | [number, number?, number?];
  label?: string;
}

export type ParamValue = number | { f32: number } | { i32: number } | { u32: number };

export const f32 = (v: number): ParamValue => ({ f32: v });
export const i32 = (v: number): ParamValue => ({ i32: v });

export class Context {
  readonly device: GPUDevice;
  readonly adapterInfo: DeviceDescription;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  /** Resolves when the device is lost; the context is unusable after that. */
  readonly lost: Promise<GPUDeviceLostInfo>;
  /** Kernel choices for this device; may be changed between calls (benchmarks compare them). */
  tuning: Tuning;

  #root: unknown;
  #ownsDevice: boolean;
  #lostInfo: GPUDeviceLostInfo | null = null;
  #destroyed = false;
  #modules = new Map<string, GPUShaderModule>();
  #sources = new Map<string, { code: string; lineMap: number[]; structs: Map<string, ParamLayout>; entries: Map<string, ParamLayout | null> }>();
  /** One getCompilationInfo per module: Chromium never settles a second call on the same module. */
  #compiled = new Map<GPUShaderModule, Promise<string | null>>();
  #pipelines = new Map<string, Promise<GPUComputePipeline> | GPUComputePipeline>();
  #uniforms = new Map<string, GPUBuffer>();
  #scratch = new Map<string, Tensor>();
  #extraShaders = new Map<string, string>();
  #pending: Promise<GPUError | null>[] = [];
  #uncaptured: GPUError[] = [];
  #live = new Map<GPUBuffer, AllocationRecord>();
  #peakBytes = 0;
  #liveBytes = 0;
  #allocationListeners = new Set<(r: AllocationRecord) => void>();

  private constructor(device: GPUDevice, info: DeviceDescription, root: unknown, owns: boolean, tuning?: Partial<Tuning>) {
    this.device = device;
    this.adapterInfo = info;
    this.tuning = { matmul: info.isCpu ? 'direct' : 'tiled', lormaPi: 'auto', ...tuning };
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.limits = device.limits;
    this.#root = root;
    this.#ownsDevice = owns;
    this.lost = device.lost.then((info) => {
      this.#lostInfo = info;
      return info;
    });
    // Errors outside our scopes (a bad bind group while encoding, the caller's own submits) are
    // kept and thrown by the next sync() or read().
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.#uncaptured.push(ev.error);
    };
  }

  /**
   * Creates a context. With no options it uses navigator.gpu where the host has it, else
   * Dawn's `webgpu` package in Node. A lost device cannot be revived: create a new context.
   */
  static async create(options: ContextOptions = {}): Promise<Context> {
    const variant = options.tuning?.matmul;
    if (variant !== undefined && !['tiled', 'direct', 'direct-scalar'].includes(variant)) {
      throw new PeftError(`Context.create: options.tuning.matmul is '${variant}', expected 'tiled', 'direct' or 'direct-scalar'`);
    }
    const pi = options.tuning?.lormaPi;
    if (pi !== undefined && !['auto', 'tiles', 'fft'].includes(pi)) {
      throw new PeftError(`Context.create: options.tuning.lormaPi is '${pi}', expected 'auto', 'tiles' or 'fft'`);
    }
    if (options.device) {
      const info = describe((options.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo);
      return new Context(options.device, info, null, false, options.tuning);
    }
    let root: unknown = null;
    let adapter = options.adapter;
    if (!adapter) {
      let gpu = options.gpu;
      if (!gpu) {
        const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
        if (nav?.gpu) gpu = nav.gpu;
        else ({ gpu, root } = await nodeGpu(options.dawnOptions ?? []));
      }
      const found = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
      if (!found) {
        throw new PeftError(
          'no WebGPU adapter: the host has WebGPU but offered no adapter. On Linux without a GPU install ' +
            "Mesa's lavapipe (Debian: mesa-vulkan-drivers from bookworm-backports, see DEVELOPERS.md); in a browser, enable WebGPU.",
        );
      }
      adapter = found;
    }
    const wanted = options.features ?? (['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[]);
    const requiredFeatures = wanted.filter((f) => adapter!.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const name of WANTED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number>)[name];
      if (typeof v === 'number') requiredLimits[name] = v;
    }
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'peft-wgsl' });
    } catch (e) {
      throw new PeftError(`requestDevice failed: ${(e as Error).message}`);
    }
    const info = describe((adapter as GPUAdapter & { info?: GPUAdapterInfo }).info);
    return new Context(device, info, root, true, options.tuning);
  }

  get isLost(): boolean {
    return this.#lostInfo !== null;
  }

  /** Throws when the device is lost or the context destroyed. Every operation calls it first. */
  assertAlive(what = 'operation'): void {
    if (this.#destroyed) throw new PeftError(`${what}: this context was destroyed`);
    if (this.#lostInfo) {
      throw new PeftError(
        `${what}: the GPU device was lost (${this.#lostInfo.reason}: ${this.#lostInfo.message}); create a new context`,
      );
    }
  }

  // ---------------------------------------------------------------- memory

  /** Live bytes, peak bytes and every live allocation the package made on this context. */
  get allocations(): { liveBytes: number; peakBytes: number; live: AllocationRecord[] } {
    return { liveBytes: this.#liveBytes, peakBytes: this.#peakBytes, live: [...this.#live.values()] };
  }

  /** Calls `fn` for every buffer the package allocates from now on; returns an unsubscribe. */
  onAllocate(fn: (r: AllocationRecord) => void): () => void {
    this.#allocationListeners.add(fn);
    return () => this.#allocationListeners.delete(fn);
  }

  resetPeak(): void {
    this.#peakBytes = this.#liveBytes;
  }

  createBuffer(bytes: number, usage: number, label: string, shape?: readonly number[]): GPUBuffer {
    this.assertAlive(`allocate '${label}'`);
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (usage & Usage.STORAGE && size > this.limits.maxStorageBufferBindingSize) {
      throw new PeftError(
        `'${label}' needs ${size} bytes, past this device's maxStorageBufferBindingSize of ${this.limits.maxStorageBufferBindingSize} bytes` +
          (shape ? ` (shape [${shape.join(', ')}])` : '') + '; use smaller tensors (fewer tokens per call)',
      );
    }
    if (size > this.limits.maxBufferSize) {
      throw new PeftError(`'${label}' needs ${size} bytes, past this device's maxBufferSize of ${this.limits.maxBufferSize}`);
    }
    const buffer = this.device.createBuffer({ size, usage, label });
    const rec: AllocationRecord = { label, bytes: size, shape };
    this.#live.set(buffer, rec);
    this.#liveBytes += size;
    this.#peakBytes = Math.max(this.#peakBytes, this.#liveBytes);
    for (const fn of this.#allocationListeners) fn(rec);
    return buffer;
  }

  releaseBuffer(buffer: GPUBuffer): void {
    const rec = this.#live.get(buffer);
    if (rec) {
      this.#live.delete(buffer);
      this.#liveBytes -= rec.bytes;
    }
    buffer.destroy();
  }

  /** A new device tensor (contents undefined until written). */
  tensor(shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    checkShape(label, shape);
    const count = shape.reduce((a, b) => a * b, 1);
    const buffer = this.createBuffer(count * bytesPerElement(dtype), Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST, label, shape);
    return new Tensor(this, buffer, shape, dtype, true, label);
  }

  /** A device tensor filled with zeros. */
  zeros(shape: readonly number[], dtype: DType = 'f32', label = 'zeros'): Tensor {
    const t = this.tensor(shape, dtype, label);
    this.fill(t, 0);
    return t;
  }

  /** Uploads host data as a new tensor of the given shape. */
  upload(data: HostArray, shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    const t = this.tensor(shape, dtype, label);
    this.write(t, data);
    return t;
  }

  /** Writes host data into a tensor; the length must match exactly. */
  write(t: Tensor, data: HostArray): void {
    this.assertAlive(`write '${t.label}'`);
    const typed = toTyped(data, t.dtype, t.label);
    if (typed.length !== t.size) {
      throw new PeftError(`'${t.label}' has ${t.size} elements (shape [${t.shape.join(', ')}]), got ${typed.length} values`);
    }
    this.device.queue.writeBuffer(t.buffer, 0, typed.buffer, typed.byteOffset, typed.byteLength);
  }

  fill(t: Tensor, value: number): void {
    if (value === 0) {
      const enc = this.device.createCommandEncoder({ label: `clear ${t.label}` });
      enc.clearBuffer(t.buffer, 0, t.buffer.size);
      this.submit(enc);
      return;
    }
    const arr = t.dtype === 'f32' ? new Float32Array(t.size) : t.dtype === 'u32' ? new Uint32Array(t.size) : new Int32Array(t.size);
    arr.fill(value);
    this.write(t, arr);
  }

  /** Copies `src` into `dst` (same element count), on the given encoder or a new submission. */
  copy(src: Tensor, dst: Tensor, encoder?: GPUCommandEncoder): void {
    if (src.byteLength !== dst.byteLength) {
      throw new PeftError(`copy: '${src.label}' has ${src.byteLength} bytes but '${dst.label}' has ${dst.byteLength}`);
    }
    const enc = encoder ?? this.device.createCommandEncoder({ label: `copy ${src.label}` });
    enc.copyBufferToBuffer(src.buffer, 0, dst.buffer, 0, src.byteLength);
    if (!encoder) this.submit(enc);
  }

  /** Reads a tensor back to the host. Throws any GPU error raised by work submitted before it. */
  async read(t: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
    this.assertAlive(`read '${t.label}'`);
    const staging = this.device.createBuffer({ size: t.buffer.size, usage: Usage.MAP_READ | Usage.COPY_DST, label: `read ${t.label}` });
    try {
      const enc = this.device.createCommandEncoder({ label: `read ${t.label}` });
      enc.copyBufferToBuffer(t.buffer, 0, staging, 0, t.buffer.size);
      this.submit(enc);
      await this.sync();
      await Promise.race([
        staging.mapAsync(MAP_READ_MODE),
        this.lost.then((info) => {
          throw new PeftError(`read '${t.label}': the GPU device was lost (${info.reason}: ${info.message}); create a new context`);
        }),
      ]);
      const bytes = staging.getMappedRange().slice(0, t.byteLength);
      staging.unmap();
      return t.dtype === 'f32' ? new Float32Array(bytes) : t.dtype === 'u32' ? new Uint32Array(bytes) : new Int32Array(bytes);
    } finally {
      staging.destroy();
    }
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    if (t.dtype !== 'f32') throw new PeftError(`readF32: '${t.label}' is ${t.dtype}, expected f32`);
    return (await this.read(t)) as Float32Array;
  }

  // ---------------------------------------------------------------- errors

  /** Submits the encoder's work inside validation and out-of-memory error scopes. */
  submit(encoder: GPUCommandEncoder): void {
    this.assertAlive('submit');
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.device.queue.submit([encoder.finish()]);
    const validation = this.device.popErrorScope();
    const oom = this.device.popErrorScope();
    this.#pending.push(validation, oom);
  }

  /**
   * Waits for the queue and throws the first error raised by work this context submitted or by
   * anything uncaptured on the device since the last sync.
   */
  async sync(): Promise<void> {
    this.assertAlive('sync');
    const pending = this.#pending;
    this.#pending = [];
    const errors = (await Promise.all(pending)).filter((e): e is GPUError => e !== null);
    const uncaptured = this.#uncaptured.splice(0);
    const first = errors[0] ?? uncaptured[0];
    if (first) {
      const kind = first.constructor?.name === 'GPUOutOfMemoryError' || /out of memory/i.test(first.message) ? 'out of GPU memory' : 'GPU validation error';
      throw new PeftError(`${kind}: ${first.message}`);
    }
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.lost]);
    this.assertAlive('sync');
  }

  // ---------------------------------------------------------------- pipelines and dispatch

  /**
   * Registers a WGSL module of the caller's under `name`, so it is dispatched like the package's
   * own (with the common prelude, pipeline cache and error reporting).
   */
  addShader(name: string, code: string): void {
    if (name in SHADERS || this.#extraShaders.has(name)) throw new PeftError(`addShader: a shader named '${name}' already exists`);
    this.#extraShaders.set(name, code);
  }

  /** The shader's source with its `//#each` variants expanded, and its uniform layouts. */
  #source(shader: string) {
    let src = this.#sources.get(shader);
    if (src) return src;
    const raw = SHADERS[shader] ?? this.#extraShaders.get(shader);
    if (raw === undefined) {
      throw new PeftError(`unknown shader '${shader}': expected one of ${Object.keys(SHADERS).filter((s) => s !== PRELUDE_NAME).join(', ')}`);
    }
    let expanded;
    try {
      expanded = expandVariants(raw, shader);
    } catch (e) {
      throw new PeftError((e as Error).message);
    }
    src = { ...expanded, structs: paramStructs(expanded.code), entries: new Map() };
    this.#sources.set(shader, src);
    return src;
  }

  /** The uniform layout `entry` of `shader` reads at binding 0 (null: it has no uniform). */
  paramLayout(shader: string, entry: string): ParamLayout | null {
    const src = this.#source(shader);
    let layout = src.entries.get(entry);
    if (layout === undefined) {
      let struct: string | null;
      try {
        struct = entryParams(src.code, entry);
      } catch (e) {
        throw new PeftError(`${shader}.wgsl: ${(e as Error).message}`);
      }
      layout = struct === null ? null : src.structs.get(struct) ?? null;
      if (struct !== null && layout === null) throw new PeftError(`${shader}.wgsl: uniform struct ${struct} of '${entry}' is not made of 32-bit scalars and vectors`);
      src.entries.set(entry, layout);
    }
    return layout;
  }

  #module(shader: string): GPUShaderModule {
    let mod = this.#modules.get(shader);
    if (mod) return mod;
    const source = this.#source(shader).code;
    // getCompilationInfo reports the errors with lines; the scope keeps them from also surfacing
    // as uncaptured errors at some later, unrelated sync.
    this.device.pushErrorScope('validation');
    mod = this.device.createShaderModule({ code: `${PRELUDE}${source}`, label: `${shader}.wgsl` });
    void this.device.popErrorScope();
    this.#modules.set(shader, mod);
    return mod;
  }

  #compilationError(shader: string, mod: GPUShaderModule): Promise<string | null> {
    let checked = this.#compiled.get(mod);
    if (!checked) {
      checked = this.#readCompilationInfo(shader, mod);
      this.#compiled.set(mod, checked);
    }
    return checked;
  }

  async #readCompilationInfo(shader: string, mod: GPUShaderModule): Promise<string | null> {
    const info = await mod.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length === 0) return null;
    return errors
      .map((m) => {
        const inPrelude = m.lineNum <= PRELUDE_LINES;
        const line = this.#source(shader).lineMap[m.lineNum - PRELUDE_LINES - 1] ?? m.lineNum - PRELUDE_LINES;
        const where = inPrelude ? `${PRELUDE_NAME}.wgsl:${m.lineNum}` : `${shader}.wgsl:${line}`;
        return `${where}:${m.linePos}: ${m.message}`;
      })
      .join('\n');
  }

  /**
   * The compute pipeline for a shader entry point specialised with override constants; cached by
   * (shader, entry, constants). Compilation errors throw with the shader's file and line.
   */
  async pipeline(shader: string, entry = 'main', constants: Record<string, number | boolean> = {}): Promise<GPUComputePipeline> {
    const key = pipelineKey(shader, entry, constants);
    const hit = this.#pipelines.get(key);
    if (hit) return hit;
    const p = this.#buildPipeline(shader, entry, constants);
    this.#pipelines.set(key, p);
    try {
      const built = await p;
      this.#pipelines.set(key, built);
      return built;
    } catch (e) {
      this.#pipelines.delete(key);
      throw e;
    }
  }

  async #buildPipeline(shader: string, entry: string, constants: Record<string, number | boolean>): Promise<GPUComputePipeline> {
    this.assertAlive(`compile ${shader}.wgsl`);
    const mod = this.#module(shader);
    const compileError = await this.#compilationError(shader, mod);
    if (compileError) throw new PeftError(`WGSL compilation failed in ${shader}.wgsl:\n${compileError}`);
    const numeric: Record<string, number> = {};
    for (const [k, v] of Object.entries(constants)) numeric[k] = typeof v === 'boolean' ? (v ? 1 : 0) : v;
    try {
      // createComputePipelineAsync rejects on error; nothing to capture here.
      return await this.device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module: mod, entryPoint: entry, constants: numeric },
        label: `${shader}.${entry}${JSON.stringify(constants)}`,
      });
    } catch (e) {
      throw new PeftError(`pipeline ${shader}.wgsl:${entry} with constants ${JSON.stringify(constants)} failed: ${(e as Error).message}`);
    }
  }

  /** The pipeline if already built (dispatch needs it synchronously); see `prepare`. */
  #ready(shader: string, entry: string, constants: Record<string, number | boolean>): GPUComputePipeline {
    const hit = this.#pipelines.get(pipelineKey(shader, entry, constants));
    if (hit && !(hit instanceof Promise)) return hit;
    throw new PeftError(
      `pipeline ${shader}.wgsl:${entry} ${JSON.stringify(constants)} is not compiled yet: await the kernel's prepare step (or ctx.pipeline) before encoding`,
    );
  }

  /** Splits a 1-D workgroup count across x and y when it passes the per-dimension limit. */
  workgroupGrid(count: number | [number, number?, number?]): [number, number, number] {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (Array.isArray(count)) {
      const grid: [number, number, number] = [count[0], count[1] ?? 1, count[2] ?? 1];
      grid.forEach((c, i) => {
        if (!Number.isInteger(c) || c < 0 || c > max) {
          throw new PeftError(`workgroup count ${c} in dimension ${'xyz'[i]} is not an integer in [0, ${max}]`);
        }
      });
      return grid;
    }
    if (!Number.isInteger(count) || count < 0) throw new PeftError(`workgroup count ${count} is not a non-negative integer`);
    if (count <= max) return [count, 1, 1];
    const y = Math.ceil(count / max);
    if (y > max) {
      const z = Math.ceil(count / (max * max));
      if (z > max) throw new PeftError(`workgroup count ${count} exceeds this device's ${max}³ grid`);
      return [max, max, z];
    }
    return [Math.ceil(count / y), y, 1];
  }

  #uniform(shader: string, entry: string, params: ParamValues | ParamValue[]): GPUBuffer {
    if (!Array.isArray(params)) {
      const layout = this.paramLayout(shader, entry);
      if (!layout) throw new PeftError(`${shader}.wgsl:${entry} has no uniform parameters, but params were given`);
      let words: Uint32Array;
      try {
        words = packParams(layout, params as ParamValues, `${shader}.wgsl:${entry}`);
      } catch (e) {
        throw new PeftError((e as Error).message);
      }
      return this.#uniformBuffer(words);
    }
    const words = new Uint32Array(Math.max(4, Math.ceil(params.length / 4) * 4));
    const asF32 = new Float32Array(words.buffer);
    const asI32 = new Int32Array(words.buffer);
    params.forEach((p, i) => {
      if (typeof p === 'number') {
        if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) throw new PeftError(`uniform parameter ${i} = ${p} is not a u32`);
        words[i] = p;
      } else if ('f32' in p) asF32[i] = p.f32;
      else if ('i32' in p) asI32[i] = p.i32;
      else words[i] = p.u32;
    });
    return this.#uniformBuffer(words);
  }

  #uniformBuffer(words: Uint32Array): GPUBuffer {
    const key = Array.from(words).join(',');
    let buf = this.#uniforms.get(key);
    if (buf) {
      // Refresh its place in the LRU order.
      this.#uniforms.delete(key);
      this.#uniforms.set(key, buf);
      return buf;
    }
    buf = this.device.createBuffer({ size: words.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST, label: 'params' });
    this.device.queue.writeBuffer(buf, 0, words);
    this.#uniforms.set(key, buf);
    if (this.#uniforms.size > 1024) {
      // Evicted buffers may still be referenced by encoded work; destroying them then would be
      // an error, so they are only dropped and left to the garbage collector.
      const oldest = this.#uniforms.keys().next().value as string;
      this.#uniforms.delete(oldest);
    }
    return buf;
  }

  /** Compiles every pipeline a kernel will use, so encoding can stay synchronous. */
  async prepare(specs: { shader: string; entry?: string; constants?: Record<string, number | boolean> }[]): Promise<void> {
    await Promise.all(specs.map((s) => this.pipeline(s.shader, s.entry ?? 'main', s.constants ?? {})));
  }

  /** Encodes one dispatch into `encoder`. The pipeline must have been prepared. */
  dispatch(encoder: GPUCommandEncoder, spec: DispatchSpec): void {
    this.assertAlive(spec.label ?? spec.shader);
    const entry = spec.entry ?? 'main';
    const constants = spec.constants ?? {};
    const pipeline = this.#ready(spec.shader, entry, constants);
    const grid = this.workgroupGrid(spec.workgroups);
    if (grid[0] * grid[1] * grid[2] === 0) return;
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (spec.params) entries.push({ binding: binding++, resource: { buffer: this.#uniform(spec.shader, entry, spec.params) } });
    else if (this.paramLayout(spec.shader, entry)) throw new PeftError(`${spec.shader}.wgsl:${entry} reads uniform parameters, but none were given`);
    for (const b of spec.bindings) {
      const buffer = b instanceof Tensor ? b.buffer : b;
      entries.push({ binding: binding++, resource: { buffer } });
    }
    this.device.pushErrorScope('validation');
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: spec.label });
    this.#pending.push(this.device.popErrorScope());
    const pass = encoder.beginComputePass({ label: spec.label ?? `${spec.shader}.${entry}` });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    pass.end();
  }

  /** Runs `fn` on the caller's encoder, or on a new one that is submitted afterwards. */
  async encode<T>(encoder: GPUCommandEncoder | undefined, fn: (enc: GPUCommandEncoder) => T | Promise<T>): Promise<T> {
    if (encoder) return await fn(encoder);
    const enc = this.device.createCommandEncoder({ label: 'peft-wgsl' });
    const out = await fn(enc);
    this.submit(enc);
    return out;
  }

  /**
   * A scratch tensor owned by the context and reused by every call that asks for the same name and
   * shape. Work is ordered on the queue, so consecutive kernels may share one even inside a single
   * encoder; a kernel must not hand its scratch back to the caller.
   */
  scratch(name: string, shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const key = `${name}:${dtype}:${shape.join('x')}`;
    let t = this.#scratch.get(key);
    if (!t) {
      t = this.tensor(shape, dtype, `scratch ${name}`);
      this.#scratch.set(key, t);
    }
    return t;
  }

  /** Frees every scratch tensor (they are made again on demand). */
  releaseScratch(): void {
    for (const t of this.#scratch.values()) t.destroy();
    this.#scratch.clear();
  }

  /** Releases the package's buffers; destroys the device if this context created it. */
  destroy(): void {
    if (this.#destroyed) return;
    for (const buffer of this.#live.keys()) buffer.destroy();
    this.#live.clear();
    this.#liveBytes = 0;
    for (const buffer of this.#uniforms.values()) buffer.destroy();
    this.#uniforms.clear();
    this.#scratch.clear();
    this.#destroyed = true;
    if (this.#ownsDevice) this.device.destroy();
    // The Dawn root stays in dawnRoots: the device may finish tearing down asynchronously.
    void this.#root;
  }
}

function pipelineKey(shader: string, entry: string, constants: Record<string, number | boolean>): string {
  const sorted = Object.keys(constants)
    .sort()
    .map((k) => `${k}=${constants[k]}`)
    .join(',');
  return `${shader}:${entry}:${sorted}`;
}

function checkShape(label: string, shape: readonly number[]): void {
  if (!Array.isArray(shape) || shape.length === 0) throw new PeftError(`'${label}': shape must be a non-empty array of positive integers`);
  shape.forEach((d, i) => {
    if (!Number.isInteger(d) || d <= 0) {
      throw new PeftError(`'${label}': dimension ${i} of shape [${shape.join(', ')}] is ${d}, expected a positive integer`);
    }
  });
}

function toTyped(data: HostArray, dtype: DType, label: string): Float32Array | Uint32Array | Int32Array {
  if (dtype === 'f32') return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  const arr = data as ArrayLike<number>;
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    const ok = Number.isInteger(v) && (dtype === 'u32' ? v >= 0 && v <= 0xffffffff : v >= -0x80000000 && v <= 0x7fffffff);
    if (!ok) throw new PeftError(`'${label}': element ${i} is ${v}, expected an ${dtype === 'u32' ? 'unsigned' : 'signed'} 32-bit integer`);
  }
  if (dtype === 'u32') return data instanceof Uint32Array ? data : Uint32Array.from(arr);
  return data instanceof Int32Array ? data : Int32Array.from(arr);
}

/** Creates a context; see Context.create. */
export function createContext(options?: ContextOptions): Promise<Context> {
  return Context.create(options);
}
