// The buffer allocator: every buffer the package makes goes through here and is recorded, so
// tests can prove what a kernel allocates (LoRMA_π never a d×d matrix, for one) and benchmarks can
// report device bytes. Sizes past the device's maxBufferSize are refused with an error that names
// the tensor, rather than left for the driver to fail on. Tensors, host transfers and the
// context's scratch tensors are built on it.

import { Tensor, type DType, type HostArray, type HostArrayOf, bytesPerElement } from '../tensor.js';
import { PeftError } from '../validate.js';
import type { DeviceHealth } from './device.js';
import type { Context } from '../runtime.js';

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

/** What one allocation by the package looked like; see Context.allocations. */
export interface AllocationRecord {
  label: string;
  bytes: number;
  shape?: readonly number[];
}

/** What the allocator needs of the dispatcher: submissions inside error scopes, and their errors. */
export interface Submitter {
  submit(encoder: GPUCommandEncoder): void;
  sync(): Promise<void>;
}

export class BufferAllocator {
  #owner: Context;
  #device: GPUDevice;
  #limits: GPUSupportedLimits;
  #health: DeviceHealth;
  #queue: Submitter;
  #live = new Map<GPUBuffer, AllocationRecord>();
  #peakBytes = 0;
  #liveBytes = 0;
  #listeners = new Set<(r: AllocationRecord) => void>();
  #scratch = new Map<string, Tensor>();

  /** `owner` is the context the tensors belong to (a Tensor frees itself through it). */
  constructor(owner: Context, device: GPUDevice, health: DeviceHealth, queue: Submitter) {
    this.#owner = owner;
    this.#device = device;
    this.#limits = device.limits;
    this.#health = health;
    this.#queue = queue;
  }

  get allocations(): { liveBytes: number; peakBytes: number; live: AllocationRecord[] } {
    return { liveBytes: this.#liveBytes, peakBytes: this.#peakBytes, live: [...this.#live.values()] };
  }

  onAllocate(fn: (r: AllocationRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  resetPeak(): void {
    this.#peakBytes = this.#liveBytes;
  }

  createBuffer(bytes: number, usage: number, label: string, shape?: readonly number[]): GPUBuffer {
    this.#health.assertAlive(`allocate '${label}'`);
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    // A storage tensor may pass maxStorageBufferBindingSize: matmul binds it in ranges, and a kernel
    // that must bind it whole refuses it when it is dispatched (src/runtime/dispatcher.ts).
    if (size > this.#limits.maxBufferSize) {
      throw new PeftError(
        `'${label}' needs ${size} bytes, past this device's maxBufferSize of ${this.#limits.maxBufferSize} bytes` +
          (shape ? ` (shape [${shape.join(', ')}])` : '') +
          '; use smaller tensors (fewer tokens per call)',
      );
    }
    const buffer = this.#device.createBuffer({ size, usage, label });
    const rec: AllocationRecord = { label, bytes: size, shape };
    this.#live.set(buffer, rec);
    this.#liveBytes += size;
    this.#peakBytes = Math.max(this.#peakBytes, this.#liveBytes);
    for (const fn of this.#listeners) fn(rec);
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

  tensor<D extends DType>(shape: readonly number[], dtype: D, label: string): Tensor<D> {
    checkShape(label, shape);
    const count = shape.reduce((a, b) => a * b, 1);
    const buffer = this.createBuffer(count * bytesPerElement(dtype), Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST, label, shape);
    return new Tensor(this.#owner, buffer, shape, dtype, true, label);
  }

  write(t: Tensor, data: HostArray): void {
    this.#health.assertAlive(`write '${t.label}'`);
    const typed = toTyped(data, t.dtype, t.label);
    if (typed.length !== t.size) {
      throw new PeftError(`'${t.label}' has ${t.size} elements (shape [${t.shape.join(', ')}]), got ${typed.length} values`);
    }
    this.#device.queue.writeBuffer(t.buffer, 0, typed.buffer, typed.byteOffset, typed.byteLength);
  }

  fill(t: Tensor, value: number): void {
    if (value === 0) {
      const enc = this.#device.createCommandEncoder({ label: `clear ${t.label}` });
      enc.clearBuffer(t.buffer, 0, t.buffer.size);
      this.#queue.submit(enc);
      return;
    }
    const arr = t.dtype === 'f32' ? new Float32Array(t.size) : t.dtype === 'u32' ? new Uint32Array(t.size) : new Int32Array(t.size);
    arr.fill(value);
    this.write(t, arr);
  }

  copy(src: Tensor, dst: Tensor, encoder?: GPUCommandEncoder): void {
    if (src.byteLength !== dst.byteLength) {
      throw new PeftError(`copy: '${src.label}' has ${src.byteLength} bytes but '${dst.label}' has ${dst.byteLength}`);
    }
    const enc = encoder ?? this.#device.createCommandEncoder({ label: `copy ${src.label}` });
    enc.copyBufferToBuffer(src.buffer, 0, dst.buffer, 0, src.byteLength);
    if (!encoder) this.#queue.submit(enc);
  }

  async read<D extends DType>(t: Tensor<D>): Promise<HostArrayOf<D>> {
    this.#health.assertAlive(`read '${t.label}'`);
    const staging = this.#device.createBuffer({ size: t.buffer.size, usage: Usage.MAP_READ | Usage.COPY_DST, label: `read ${t.label}` });
    try {
      const enc = this.#device.createCommandEncoder({ label: `read ${t.label}` });
      enc.copyBufferToBuffer(t.buffer, 0, staging, 0, t.buffer.size);
      this.#queue.submit(enc);
      await this.#queue.sync();
      await Promise.race([
        staging.mapAsync(MAP_READ_MODE),
        this.#health.lost.then((info) => {
          throw new PeftError(`read '${t.label}': the GPU device was lost (${info.reason}: ${info.message}); create a new context`);
        }),
      ]);
      const bytes = staging.getMappedRange().slice(0, t.byteLength);
      staging.unmap();
      const out = t.dtype === 'f32' ? new Float32Array(bytes) : t.dtype === 'u32' ? new Uint32Array(bytes) : new Int32Array(bytes);
      return out as HostArrayOf<D>;
    } finally {
      staging.destroy();
    }
  }

  /**
   * A scratch tensor owned by the context and reused by every call that asks for the same name and
   * shape. Work is ordered on the queue, so consecutive kernels may share one even inside a single
   * encoder; a kernel must not hand its scratch back to the caller.
   */
  scratch<D extends DType>(name: string, shape: readonly number[], dtype: D): Tensor<D> {
    const key = `${name}:${dtype}:${shape.join('x')}`;
    let t = this.#scratch.get(key) as Tensor<D> | undefined;
    if (!t) {
      t = this.tensor(shape, dtype, `scratch ${name}`);
      this.#scratch.set(key, t);
    }
    return t;
  }

  releaseScratch(): void {
    for (const t of this.#scratch.values()) t.destroy();
    this.#scratch.clear();
  }

  /** Destroys every live buffer (the context's destroy). */
  destroyAll(): void {
    for (const buffer of this.#live.keys()) buffer.destroy();
    this.#live.clear();
    this.#liveBytes = 0;
    this.#scratch.clear();
  }
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
