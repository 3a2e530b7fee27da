// The dispatcher: a kernel first awaits its pipelines (`prepare`), then encodes synchronously,
// each dispatch with its uniform, bind group and workgroup grid (a count past
// maxComputeWorkgroupsPerDimension is split over y and z; kernels recover the linear index with
// `linear_workgroup`). WebGPU reports errors asynchronously, so every submission and bind group
// sits inside validation and out-of-memory error scopes, and errors outside them (the caller's own
// submits, say) are collected from the device; the next `sync()` throws the first of them.

import { Tensor } from '../tensor.js';
import { PeftError } from '../validate.js';
import type { DeviceHealth } from './device.js';
import type { Constants, PipelineCache } from './pipelines.js';
import type { UniformCache } from './uniforms.js';
import type { ParamValues } from './wgsl.js';

export interface DispatchSpec {
  /** Shader file name without `.wgsl`, e.g. 'matmul'. */
  shader: string;
  entry?: string;
  constants?: Constants;
  /**
   * The entry point's uniform struct at binding 0, by field name (see src/runtime/wgsl.ts): packed
   * by the struct's layout; a missing or unknown field is an error.
   */
  params?: ParamValues;
  /**
   * Storage bindings, at binding 1, 2, ... in this order (binding 0 is params when given): a
   * whole tensor or buffer (at most maxStorageBufferBindingSize bytes), or a range of one.
   */
  bindings: (Tensor | GPUBuffer | BufferRange)[];
  /** Workgroup count; a single number is split across x and y when it passes the device limit. */
  workgroups: number | [number, number?, number?];
  label?: string;
}

/**
 * `size` bytes of `buffer` from `offset`: how a kernel binds part of a tensor larger than one
 * storage binding. `offset` is a multiple of minStorageBufferOffsetAlignment.
 */
export interface BufferRange {
  buffer: Tensor | GPUBuffer;
  offset: number;
  size: number;
}

export interface PipelineSpec {
  shader: string;
  entry?: string;
  constants?: Constants;
}

export class Dispatcher {
  #device: GPUDevice;
  #health: DeviceHealth;
  #pipelines: PipelineCache;
  #uniforms: UniformCache;
  #pending: Promise<GPUError | null>[] = [];
  #uncaptured: GPUError[] = [];
  /** The scopes of each encoder's bind groups and submission, so its call can report them. */
  #scopes = new WeakMap<GPUCommandEncoder, Promise<GPUError | null>[]>();
  /** Errors already thrown by the call that caused them; sync() does not throw them again. */
  #reported = new WeakSet<GPUError>();
  /** Calls between encode() and their submission; read() and sync() wait for them. */
  #inflight = new Set<Promise<unknown>>();

  constructor(device: GPUDevice, health: DeviceHealth, pipelines: PipelineCache, uniforms: UniformCache) {
    this.#device = device;
    this.#health = health;
    this.#pipelines = pipelines;
    this.#uniforms = uniforms;
    // Errors outside our scopes (a bad bind group while encoding, the caller's own submits) are
    // kept and thrown by the next sync() or read(). Dawn's device holds its handler from native
    // code, where the garbage collector cannot see a cycle: a handler that reached the dispatcher
    // (and so the device, its pipelines and buffers) kept every context's device alive forever,
    // 1.5–3 MiB per context. The handler reaches only this list.
    const uncaptured = this.#uncaptured;
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      uncaptured.push(ev.error);
    };
  }

  /** Splits a 1-D workgroup count across x and y when it passes the per-dimension limit. */
  workgroupGrid(count: number | [number, number?, number?]): [number, number, number] {
    const max = this.#device.limits.maxComputeWorkgroupsPerDimension;
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

  async prepare(specs: PipelineSpec[]): Promise<void> {
    await Promise.all(specs.map((s) => this.#pipelines.pipeline(s.shader, s.entry ?? 'main', s.constants ?? {})));
  }

  dispatch(encoder: GPUCommandEncoder, spec: DispatchSpec): void {
    this.#health.assertAlive(spec.label ?? spec.shader);
    const entry = spec.entry ?? 'main';
    const constants = spec.constants ?? {};
    const pipeline = this.#pipelines.ready(spec.shader, entry, constants);
    const grid = this.workgroupGrid(spec.workgroups);
    if (grid[0] * grid[1] * grid[2] === 0) return;
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (spec.params) entries.push({ binding: binding++, resource: { buffer: this.#uniforms.buffer(spec.shader, entry, spec.params) } });
    else if (this.#pipelines.paramLayout(spec.shader, entry))
      throw new PeftError(`${spec.shader}.wgsl:${entry} reads uniform parameters, but none were given`);
    for (const b of spec.bindings) {
      // The safety net under the calls' own checks: Dawn's message for another device's buffer
      // names neither the call nor the tensor.
      if (b instanceof Tensor && b.ctx?.device !== this.#device) {
        throw new PeftError(`${spec.label ?? spec.shader}: tensor '${b.label}' belongs to another context`);
      }
      entries.push({ binding, resource: this.#bufferBinding(spec, b, binding) });
      binding++;
    }
    this.#device.pushErrorScope('validation');
    const bindGroup = this.#device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: spec.label });
    this.#track(encoder, this.#device.popErrorScope());
    const pass = encoder.beginComputePass({ label: spec.label ?? `${spec.shader}.${entry}` });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    pass.end();
  }

  // Checked here rather than left to createBindGroup, whose error would surface later and name
  // neither the kernel nor the tensor.
  #bufferBinding(spec: DispatchSpec, b: Tensor | GPUBuffer | BufferRange, index: number): GPUBufferBinding {
    const limits = this.#device.limits;
    const kernel = spec.label ?? `${spec.shader}.wgsl:${spec.entry ?? 'main'}`;
    const range = !(b instanceof Tensor) && 'buffer' in b && 'offset' in b ? b : undefined;
    const target = range ? range.buffer : (b as Tensor | GPUBuffer);
    if (range && target instanceof Tensor && target.ctx?.device !== this.#device) {
      throw new PeftError(`${kernel}: tensor '${target.label}' belongs to another context`);
    }
    const buffer = target instanceof Tensor ? target.buffer : target;
    const name = target instanceof Tensor ? `'${target.label}' (shape [${target.shape.join(', ')}])` : `buffer '${buffer.label}'`;
    if (!range) {
      if (buffer.size > limits.maxStorageBufferBindingSize) {
        throw new PeftError(
          `${kernel}: binding ${index} is ${name}, ${buffer.size} bytes, past this device's maxStorageBufferBindingSize of ` +
            `${limits.maxStorageBufferBindingSize} bytes; this kernel reads the tensor whole and cannot split it across bindings`,
        );
      }
      return { buffer };
    }
    const { offset, size } = range;
    const ok =
      Number.isInteger(offset) &&
      Number.isInteger(size) &&
      offset >= 0 &&
      size > 0 &&
      offset % limits.minStorageBufferOffsetAlignment === 0 &&
      size % 4 === 0 &&
      offset + size <= buffer.size &&
      size <= limits.maxStorageBufferBindingSize;
    if (!ok) {
      throw new PeftError(
        `${kernel}: binding ${index} is bytes [${offset}, ${offset + size}) of ${name}, ${buffer.size} bytes; a range needs an offset ` +
          `that is a multiple of minStorageBufferOffsetAlignment (${limits.minStorageBufferOffsetAlignment}), a positive size that is a ` +
          `multiple of 4 and at most maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize}), inside the buffer`,
      );
    }
    return { buffer, offset, size };
  }

  /**
   * Runs `fn` on the caller's encoder, or on a new one submitted afterwards. The returned promise
   * rejects with the errors of this call's own error scopes (its bind groups and, when it
   * submitted, its submission): WebGPU resolves a scope when the call is validated, not when the
   * GPU finishes, so this adds no wait on the queue.
   */
  async encode<T>(encoder: GPUCommandEncoder | undefined, fn: (enc: GPUCommandEncoder) => T | Promise<T>): Promise<T> {
    // On the caller's encoder (or nested in one of our calls) the errors wait for whoever submits.
    if (encoder) return await fn(encoder);
    const enc = this.#device.createCommandEncoder({ label: 'peft-wgsl' });
    const run = (async () => {
      const out = await fn(enc);
      this.submit(enc);
      return out;
    })();
    this.#inflight.add(run);
    try {
      const out = await run;
      await this.#reportScopes(enc);
      return out;
    } finally {
      this.#inflight.delete(run);
    }
  }

  /** Waits until every call that began encoding before now has submitted (or failed). */
  async settled(): Promise<void> {
    if (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  #track(encoder: GPUCommandEncoder, scope: Promise<GPUError | null>): void {
    this.#pending.push(scope);
    let list = this.#scopes.get(encoder);
    if (!list) this.#scopes.set(encoder, (list = []));
    list.push(scope);
  }

  async #reportScopes(encoder: GPUCommandEncoder): Promise<void> {
    const list = this.#scopes.get(encoder);
    if (!list) return;
    this.#scopes.delete(encoder);
    const errors = (await Promise.all(list)).filter((e): e is GPUError => e !== null);
    // The first is the cause; the rest (a submit that met the invalid bind group) are its echo.
    for (const e of errors) this.#reported.add(e);
    if (errors[0]) throw scopeError(errors[0]);
  }

  submit(encoder: GPUCommandEncoder): void {
    this.#health.assertAlive('submit');
    this.#device.pushErrorScope('out-of-memory');
    this.#device.pushErrorScope('validation');
    this.#device.queue.submit([encoder.finish()]);
    const validation = this.#device.popErrorScope();
    const oom = this.#device.popErrorScope();
    this.#track(encoder, validation);
    this.#track(encoder, oom);
  }

  async sync(): Promise<void> {
    this.#health.assertAlive('sync');
    await this.settled();
    const pending = this.#pending;
    this.#pending = [];
    const errors = (await Promise.all(pending)).filter((e): e is GPUError => e !== null && !this.#reported.has(e));
    const uncaptured = this.#uncaptured.splice(0);
    const first = errors[0] ?? uncaptured[0];
    if (first) throw scopeError(first);
    await Promise.race([this.#device.queue.onSubmittedWorkDone(), this.#health.lost]);
    this.#health.assertAlive('sync');
  }
}

function scopeError(e: GPUError): PeftError {
  const kind = e.constructor?.name === 'GPUOutOfMemoryError' || /out of memory/i.test(e.message) ? 'out of GPU memory' : 'GPU validation error';
  return new PeftError(`${kind}: ${e.message}`);
}
