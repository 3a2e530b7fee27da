// The uniform cache: a dispatch's parameters packed into the words of the struct its entry point
// reads at @binding(0) (by the layout wgsl.ts read from the source), and one uniform buffer per
// distinct content, kept in LRU order. Kernels dispatch with the same few parameter sets step
// after step, so nearly every dispatch finds its buffer here and writes nothing.

import { PeftError } from '../validate.js';
import { Usage } from './buffers.js';
import type { PipelineCache } from './pipelines.js';
import { packParams, type ParamValues } from './wgsl.js';

/** Buffers kept; past this the least recently used is dropped. */
const CAPACITY = 1024;

export class UniformCache {
  #device: GPUDevice;
  #pipelines: PipelineCache;
  #buffers = new Map<string, GPUBuffer>();

  constructor(device: GPUDevice, pipelines: PipelineCache) {
    this.#device = device;
    this.#pipelines = pipelines;
  }

  /** The uniform buffer holding `params` as `entry` of `shader` reads them. */
  buffer(shader: string, entry: string, params: ParamValues): GPUBuffer {
    if (!params || typeof params !== 'object' || Array.isArray(params)) {
      throw new PeftError(
        `${shader}.wgsl:${entry}: params must be an object of named fields, got ${Array.isArray(params) ? 'an array' : typeof params}`,
      );
    }
    const layout = this.#pipelines.paramLayout(shader, entry);
    if (!layout) throw new PeftError(`${shader}.wgsl:${entry} has no uniform parameters, but params were given`);
    let words: Uint32Array;
    try {
      words = packParams(layout, params, `${shader}.wgsl:${entry}`);
    } catch (e) {
      throw new PeftError((e as Error).message);
    }
    return this.#cached(words);
  }

  #cached(words: Uint32Array): GPUBuffer {
    const key = Array.from(words).join(',');
    let buf = this.#buffers.get(key);
    if (buf) {
      // Refresh its place in the LRU order.
      this.#buffers.delete(key);
      this.#buffers.set(key, buf);
      return buf;
    }
    buf = this.#device.createBuffer({ size: words.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST, label: 'params' });
    this.#device.queue.writeBuffer(buf, 0, words);
    this.#buffers.set(key, buf);
    if (this.#buffers.size > CAPACITY) {
      // Evicted buffers may still be referenced by encoded work; destroying them then would be
      // an error, so they are only dropped and left to the garbage collector.
      const oldest = this.#buffers.keys().next().value as string;
      this.#buffers.delete(oldest);
    }
    return buf;
  }

  destroy(): void {
    for (const buffer of this.#buffers.values()) buffer.destroy();
    this.#buffers.clear();
  }
}
