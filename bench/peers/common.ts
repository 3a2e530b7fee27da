// What the peers (TensorFlow.js, gpu.js) share with the runner: the host inputs every
// implementation starts from, and the shape of what a peer returns.

import { kaimingUniform, uniform } from '../../src/random.js';
import { meanOf, type Timing } from '../timing.js';

export type PeerMethod = 'matmul' | 'lora' | 'bora';
export type PeerPhase = 'matmul' | 'forward' | 'backward';

/** One layer's host data. Seeds match bench/methods/lora.ts so every implementation sees the same numbers. */
export interface PeerInputs {
  T: number;
  n: number;
  m: number;
  r: number;
  b: number;
  s: number;
  x: Float32Array; // [T, n]
  w0: Float32Array; // [m, n]
  a: Float32Array; // [r, n]
  bm: Float32Array; // [m, r]  (B; nonzero so the adapter path shows in the outputs)
  g: Float32Array; // [T, m]
  sigma: Float32Array; // [b, b, r] (BoRA)
}

export function peerInputs(T: number, n: number, m: number, r: number, b: number): PeerInputs {
  return {
    T,
    n,
    m,
    r,
    b,
    s: 2,
    x: uniform(T * n, 1, 1),
    w0: kaimingUniform(m * n, n, 2),
    a: kaimingUniform(r * n, n, 3),
    bm: uniform(m * r, 0.01, 4),
    g: uniform(T * m, 1, 5),
    sigma: kaimingUniform(b * b * r, n, 6),
  };
}

export interface PeerRun {
  timing: Timing;
  /** Named outputs of the last run, for the agreement check (y; dx, da, db[, dsigma]). */
  outputs: Record<string, Float32Array>;
}

export interface Peer {
  impl: 'tfjs-webgpu' | 'gpujs-webgpu';
  /** Adapter description of the device the peer runs on. */
  device: string;
  run(method: PeerMethod, phase: PeerPhase, inp: PeerInputs, opts: { warmup: number; reps: number }): Promise<PeerRun>;
  dispose(): Promise<void>;
}

/** Dawn's navigator.gpu for Node, installed once before any peer library is imported. */
let root: unknown = null;
export async function ensureNavigatorGpu(): Promise<void> {
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return;
  const mod = (await import('webgpu')) as unknown as { create(o: string[]): unknown; globals: Record<string, unknown> };
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  // Keep the create() object referenced: Dawn segfaults if it is collected while devices live.
  root = mod.create([]);
  const nav = g.navigator ?? {};
  try {
    Object.defineProperty(globalThis, 'navigator', { value: { ...nav, gpu: root }, configurable: true, writable: true });
  } catch {
    (nav as { gpu?: unknown }).gpu = root;
  }
}
export function navigatorRoot(): unknown {
  return root;
}

export function summarize(samples: number[], clock: string, cpu: number[] = []): Timing {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    cpuMs: cpu.length ? meanOf(cpu) : null,
    medianMs: sorted[Math.floor(sorted.length / 2)],
    minMs: sorted[0],
    maxMs: sorted[sorted.length - 1],
    samplesMs: samples,
    clock,
  };
}
