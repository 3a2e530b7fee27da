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
  /** Storage bindings, at binding 1, 2, ... in this order (binding 0 is params when given). */
  bindings: (Tensor | GPUBuffer)[];
  /** Workgroup count; a single number is split across x and y when it passes the device limit. */
  workgroups: number | [number, number?, number?];
  label?: string;
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

  constructor(device: GPUDevice, health: DeviceHealth, pipelines: PipelineCache, uniforms: UniformCache) {
    this.#device = device;
    this.#health = health;
    this.#pipelines = pipelines;
    this.#uniforms = uniforms;
    // Errors outside our scopes (a bad bind group while encoding, the caller's own submits) are
    // kept and thrown by the next sync() or read().
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.#uncaptured.push(ev.error);
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
      const buffer = b instanceof Tensor ? b.buffer : b;
      entries.push({ binding: binding++, resource: { buffer } });
    }
    this.#device.pushErrorScope('validation');
    const bindGroup = this.#device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: spec.label });
    this.#pending.push(this.#device.popErrorScope());
    const pass = encoder.beginComputePass({ label: spec.label ?? `${spec.shader}.${entry}` });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    pass.end();
  }

  async encode<T>(encoder: GPUCommandEncoder | undefined, fn: (enc: GPUCommandEncoder) => T | Promise<T>): Promise<T> {
    if (encoder) return await fn(encoder);
    const enc = this.#device.createCommandEncoder({ label: 'peft-wgsl' });
    const out = await fn(enc);
    this.submit(enc);
    return out;
  }

  submit(encoder: GPUCommandEncoder): void {
    this.#health.assertAlive('submit');
    this.#device.pushErrorScope('out-of-memory');
    this.#device.pushErrorScope('validation');
    this.#device.queue.submit([encoder.finish()]);
    const validation = this.#device.popErrorScope();
    const oom = this.#device.popErrorScope();
    this.#pending.push(validation, oom);
  }

  async sync(): Promise<void> {
    this.#health.assertAlive('sync');
    const pending = this.#pending;
    this.#pending = [];
    const errors = (await Promise.all(pending)).filter((e): e is GPUError => e !== null);
    const uncaptured = this.#uncaptured.splice(0);
    const first = errors[0] ?? uncaptured[0];
    if (first) {
      const kind =
        first.constructor?.name === 'GPUOutOfMemoryError' || /out of memory/i.test(first.message) ? 'out of GPU memory' : 'GPU validation error';
      throw new PeftError(`${kind}: ${first.message}`);
    }
    await Promise.race([this.#device.queue.onSubmittedWorkDone(), this.#health.lost]);
    this.#health.assertAlive('sync');
  }
}
