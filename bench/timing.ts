// GPU timing with timestamp queries: the Node binding busy-waits on the main thread while a
// buffer maps, so wall-clock timing would steal a core from lavapipe. An empty compute pass writes
// a timestamp before the work and another after it; the difference is the GPU time.

import { readFileSync, readdirSync } from 'node:fs';
import type { Context } from '../src/runtime.js';

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  samplesMs: number[];
  /** 'timestamp-query' or 'wall-clock' (devices without the feature). */
  clock: string;
  /**
   * Mean CPU time per run spent by the process's threads other than the main one (on lavapipe:
   * the driver's worker threads that execute the shaders), or null where /proc is not readable.
   * Unlike GPU time it barely moves when other processes load the cores. A mean, not a median:
   * the kernel counts in 10 ms ticks, and the mean over the runs resolves finer than one tick.
   */
  cpuMs?: number | null;
}

/** CPU milliseconds used so far by every thread of this process except the main one (Linux). */
export function workerCpuMs(): number | null {
  try {
    let ticks = 0;
    for (const t of readdirSync('/proc/self/task')) {
      if (Number(t) === process.pid) continue;
      try {
        const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(f[11]) + Number(f[12]);
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return ticks * 10; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

export function meanOf(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function medianOf(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function timeEncoded(
  ctx: Context,
  encode: (enc: GPUCommandEncoder) => Promise<void>,
  opts: { warmup?: number; reps?: number } = {},
): Promise<Timing> {
  const warmup = opts.warmup ?? 2;
  const reps = opts.reps ?? 5;
  const device = ctx.device;
  for (let i = 0; i < warmup; i++) {
    const enc = device.createCommandEncoder();
    await encode(enc);
    ctx.submit(enc);
    await ctx.sync();
  }
  const samples: number[] = [];
  const cpu: number[] = [];
  const useTimestamps = ctx.features.has('timestamp-query');
  const querySet = useTimestamps ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const resolve = useTimestamps ? device.createBuffer({ size: 16, usage: 0x0200 | 0x0004 }) : null;
  const readback = useTimestamps ? device.createBuffer({ size: 16, usage: 0x0001 | 0x0008 }) : null;
  try {
    for (let i = 0; i < reps; i++) {
      const enc = device.createCommandEncoder();
      if (querySet) enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0 } }).end();
      await encode(enc);
      if (querySet) {
        enc.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 1 } }).end();
        enc.resolveQuerySet(querySet, 0, 2, resolve!, 0);
        enc.copyBufferToBuffer(resolve!, 0, readback!, 0, 16);
      }
      const t0 = performance.now();
      const c0 = workerCpuMs();
      ctx.submit(enc);
      await ctx.sync();
      const c1 = workerCpuMs();
      if (c0 !== null && c1 !== null) cpu.push(c1 - c0);
      if (readback) {
        await readback.mapAsync(1);
        const ts = new BigUint64Array(readback.getMappedRange().slice(0));
        readback.unmap();
        samples.push(Number(ts[1] - ts[0]) / 1e6);
      } else {
        samples.push(performance.now() - t0);
      }
    }
  } finally {
    querySet?.destroy();
    resolve?.destroy();
    readback?.destroy();
  }
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    medianMs: sorted[Math.floor(sorted.length / 2)],
    minMs: sorted[0],
    maxMs: sorted[sorted.length - 1],
    samplesMs: samples,
    clock: querySet ? 'timestamp-query' : 'wall-clock',
    cpuMs: cpu.length ? meanOf(cpu) : null,
  };
}
