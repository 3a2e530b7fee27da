// The uniform cache: a dispatch's parameters packed into the words of the struct its entry point
// reads at @binding(0) (by the layout wgsl.ts read from the source), and one uniform buffer per
// distinct content, kept in LRU order. Kernels dispatch with the same few parameter sets step
// after step, so nearly every dispatch finds its buffer here and writes nothing.

import { PeftError } from '../validate.js';
import { Usage } from './buffers.js';
import type { PipelineCache } from './pipelines.js';
import { packParams, type ParamValues } from './wgsl.js';

/**
 * Legacy positional uniform words: a plain number is a u32, {f32} / {i32} / {u32} say the type.
 * Kept while kernels move to named parameters; use a named object instead.
 */
export type ParamValue = number | { f32: number } | { i32: number } | { u32: number };

/** @deprecated pass named params: the struct's field types say which words are f32. */
export const f32 = (v: number): ParamValue => ({ f32: v });
/** @deprecated pass named params: the struct's field types say which words are i32. */
export const i32 = (v: number): ParamValue => ({ i32: v });

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
  buffer(shader: string, entry: string, params: ParamValues | ParamValue[]): GPUBuffer {
    if (!Array.isArray(params)) {
      const layout = this.#pipelines.paramLayout(shader, entry);
      if (!layout) throw new PeftError(`${shader}.wgsl:${entry} has no uniform parameters, but params were given`);
      let words: Uint32Array;
      try {
        words = packParams(layout, params as ParamValues, `${shader}.wgsl:${entry}`);
      } catch (e) {
        throw new PeftError((e as Error).message);
      }
      return this.#cached(words);
    }
    return this.#cached(packPositional(params));
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

function packPositional(params: ParamValue[]): Uint32Array {
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
  return words;
}
