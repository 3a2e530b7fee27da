// Host side of shaders/matmul.wgsl: C = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2)] [+ beta·C].
//
// An operand larger than one storage binding (maxStorageBufferBindingSize: 128 MiB on lavapipe,
// while buffers may reach maxBufferSize) is not refused: the product is cut into blocks along the
// dimension that indexes that operand's stored rows (M for A, C and A2 stored untransposed; N for
// B stored transposed; K for A transposed or B untransposed), and each block binds only the buffer
// range its rows occupy. Blocks along K accumulate into C (beta = 1 after the first), and the fused
// second product is added once, by the first K block.
//
// A or B (not both, and not the fused second product's factors) may be a BaseWeight in f16 or NF4
// (src/base.ts): the shader decodes it in registers, so it is never widened to an f32 buffer. Its
// transposes mean what they mean for an f32 tensor of its logical [rows, cols]. It splits into row
// blocks as f32 does: a block's binding starts at an aligned byte, and the shader is told the
// element index of that byte (q_base) to find each value's absmax, which stays bound whole.

import type { Context, Tuning } from '../runtime.js';
import type { BufferRange } from '../runtime/dispatcher.js';
import type { Tensor } from '../tensor.js';
import { BaseWeight, type Weight } from '../base.js';
import { PeftError, asTensor, checkContext, checkDim, checkOwner, checkWeight } from '../validate.js';

export interface MatmulArgs {
  /** [M, K] ([K, M] with transA); a BaseWeight must have exactly that shape. */
  a: Weight;
  /** [K, N] ([N, K] with transB); a BaseWeight must have exactly that shape. */
  b: Weight;
  c: Tensor;
  M: number;
  N: number;
  K: number;
  /** A is stored [K, M] rather than [M, K]. */
  transA?: boolean;
  /** B is stored [N, K] rather than [K, N]. */
  transB?: boolean;
  alpha?: number;
  /** 0 (the default) overwrites C without reading it. */
  beta?: number;
  /** A second product with the same transposes, added before the store (f32 tensors only). */
  second?: { a: Tensor; b: Tensor; K: number; alpha?: number };
  /**
   * Split as if a storage binding held at most this many bytes (at most the device's
   * maxStorageBufferBindingSize, the default): lets tests exercise the blocks on small tensors.
   */
  bindingLimit?: number;
}

/**
 * Kernel variants, the names ctx.tuning.matmul accepts. 'direct' reads 16 bytes per load (entry
 * `direct4`) when the contiguous dimensions are multiples of 4, else falls back to scalar loads;
 * 'direct-scalar' always uses scalar loads (kept for benchmarks). 'tiled' is entry `main`.
 *
 * The GPU variants below are used where every operand's contiguous dimension, row stride and
 * offset are multiples of 4 ("aligned"), else `main`; f32 operands only:
 * - 'tiled4': entry `tiled4` (8×8 invocations, 8×8 outputs each, 32-deep slices, 16-byte staging);
 * - 'tiled-vec4': entry `tiled_vec4` of shaders/matmul-vec4.wgsl (TF.js's MatMulPackedVec4 recipe:
 *   16×16 invocations, 4 rows × a vec4 each, a 64×64 tile, padded vec4 slices, register prefetch);
 * - 'tiled-vec4-128': the same entry with 8 rows per invocation, a 128×64 tile;
 * - 'subgroup': entry `subgroup` of shaders/matmul-subgroups.wgsl (8×256 per workgroup, A shared
 *   by subgroup shuffles, no workgroup memory) where the device has the `subgroups` feature; on a
 *   device without it `main`, whatever the shape.
 */
export type MatmulVariant = Tuning['matmul'];

/**
 * The variant a context gets when options.tuning.matmul is not given, by adapter class: the
 * first key that matches of `${cpu|gpu}:${vendor}` (vendor as the adapter reports it, lower
 * case, e.g. 'gpu:nvidia', 'gpu:apple') and then 'cpu' or 'gpu'. Edit it from the GPU kit's
 * measurements (docs/benchmarks/README.md, "Choosing from the kit's results").
 *
 * gpu:nvidia — the kit on an H200 (2026-12-04, T = 512, n = m = 1024, r = 8, 9 interleaved
 * rounds of 16 steps): base-layer step 0.22 ms on 'tiled-vec4' against 0.28–0.30 on 'tiled',
 * 'tiled4', 'subgroup' and 'direct' (1.97 on 'tiled-vec4-128'); LoRA's step 0.55 against
 * 0.69–0.73 (1.79 on 'tiled4'). Other GPUs keep 'tiled' until the kit has run on one.
 */
export const MATMUL_BY_ADAPTER: Readonly<Record<string, MatmulVariant>> = {
  cpu: 'direct',
  gpu: 'tiled',
  'gpu:nvidia': 'tiled-vec4',
};

/** The default variant for an adapter, from MATMUL_BY_ADAPTER. */
export function matmulVariantFor(adapter: { vendor: string; isCpu: boolean }): MatmulVariant {
  const kind = adapter.isCpu ? 'cpu' : 'gpu';
  const vendor = (adapter.vendor || '').toLowerCase();
  return MATMUL_BY_ADAPTER[`${kind}:${vendor}`] ?? MATMUL_BY_ADAPTER[kind] ?? (adapter.isCpu ? 'direct' : 'tiled');
}

/** Whether `direct4` can view A and B as vec4 arrays for these transposes and sizes. */
function vec4Fits(M: number, N: number, K: number, transA: boolean, transB: boolean): boolean {
  if (!transA && transB) return K % 4 === 0;
  if (!transA && !transB) return K % 4 === 0 && N % 4 === 0;
  if (transA && !transB) return M % 4 === 0 && N % 4 === 0;
  return false;
}

/** Whether `tiled4` can stage A and B with 16-byte loads: each one's contiguous dimension is a multiple of 4. */
function tiled4Fits(M: number, N: number, K: number, transA: boolean, transB: boolean): boolean {
  return (transA ? M : K) % 4 === 0 && (transB ? K : N) % 4 === 0;
}

/**
 * The shader entry point matmul() picks for these sizes under ctx.tuning (exported for tests):
 * a fallback shows as the entry it falls back to ('subgroup' without the feature gives 'main').
 */
export function matmulEntry(ctx: Context, M: number, N: number, K: number, transA = false, transB = false): string {
  return config(ctx, M, N, K, transA, transB, false, true).entry;
}

/** The variants that are `main` when they do not apply. */
const GPU_VARIANTS: readonly MatmulVariant[] = ['tiled', 'tiled4', 'tiled-vec4', 'tiled-vec4-128', 'subgroup'];

function config(
  ctx: Context,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  second: boolean,
  aligned4: boolean,
): { shader: string; entry: string; constants: Record<string, number | boolean>; tileM: number; tileN: number } {
  const variant = ctx.tuning.matmul;
  const fits = aligned4 && tiled4Fits(M, N, K, transA, transB);
  const flags = { TRANS_A: transA, TRANS_B: transB, SECOND: second };
  if (variant === 'tiled4' && fits) {
    // Its 8×8 invocations and 64×64 tile are fixed in the shader, not overridden.
    return { shader: 'matmul', entry: 'tiled4', constants: flags, tileM: 64, tileN: 64 };
  }
  if ((variant === 'tiled-vec4' || variant === 'tiled-vec4-128') && fits) {
    const tm = variant === 'tiled-vec4' ? 4 : 8;
    return { shader: 'matmul-vec4', entry: 'tiled_vec4', constants: { ...flags, TM: tm }, tileM: 16 * tm, tileN: 64 };
  }
  if (variant === 'subgroup' && fits && ctx.device.features.has('subgroups')) {
    return { shader: 'matmul-subgroups', entry: 'subgroup', constants: flags, tileM: 8, tileN: 256 };
  }
  const tiled = GPU_VARIANTS.includes(variant);
  const wg = tiled ? 16 : 8;
  let entry = 'direct';
  if (tiled) entry = 'main';
  else if (variant !== 'direct-scalar' && aligned4 && vec4Fits(M, N, K, transA, transB)) entry = 'direct4';
  return {
    shader: 'matmul',
    entry,
    constants: { ...flags, WG_M: wg, WG_N: wg },
    tileM: wg * 4,
    tileN: wg * 4,
  };
}

function need(ctx: Context, where: string, name: string, t: Tensor, elements: number): void {
  asTensor(where, name, t, `a Tensor of at least ${elements} f32 values`);
  checkOwner(where, name, ctx, t);
  if (t.size < elements) throw new PeftError(`${where}: '${name}' has ${t.size} elements, needs at least ${elements}`);
  if (t.dtype !== 'f32') throw new PeftError(`${where}: '${name}' is ${t.dtype}, expected f32`);
}

/** Whether the packed-B entries (direct_qb_f16 / direct_qb_nf4) read whole words for this block. */
function qbVecFits(
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  a: { offset: number; ld: number },
  b: { offset: number; ld: number },
): boolean {
  if (transA || a.offset % 4 !== 0 || a.ld % 4 !== 0) return false;
  if (transB) return K % 8 === 0 && b.offset % 8 === 0 && b.ld % 8 === 0;
  return K % 4 === 0 && N % 4 === 0 && b.offset % 4 === 0 && b.ld % 4 === 0;
}

/**
 * The entry for a product with a packed operand (`q`): `main_qa` / `main_qb` on the tiled
 * variants (tiled4's 16-byte staging does not apply to packed words), else `direct_qb_<format>`
 * where the reads are whole words, else the one-value-per-load `direct_qa` / `direct_qb`.
 */
function quantConfig(
  ctx: Context,
  q: 'a' | 'b',
  w: BaseWeight,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  second: boolean,
  a: { offset: number; ld: number },
  b: { offset: number; ld: number },
): { entry: string; constants: Record<string, number | boolean>; tileM: number; tileN: number; scales: boolean } {
  const variant = ctx.tuning.matmul;
  const tiled = GPU_VARIANTS.includes(variant);
  const wg = tiled ? 16 : 8;
  const constants: Record<string, number | boolean> = { TRANS_A: transA, TRANS_B: transB, SECOND: second, WG_M: wg, WG_N: wg };
  const shape = { tileM: wg * 4, tileN: wg * 4 };
  if (!tiled && variant !== 'direct-scalar' && q === 'b' && qbVecFits(N, K, transA, transB, a, b)) {
    if (w.format === 'f16') return { entry: 'direct_qb_f16', constants, ...shape, scales: false };
    return { entry: 'direct_qb_nf4', constants: { ...constants, Q_BLOCK: w.blockSize }, ...shape, scales: true };
  }
  const entry = `${tiled ? 'main' : 'direct'}_q${q}`;
  return {
    entry,
    constants: { ...constants, FORMAT: w.format === 'nf4' ? 2 : 1, Q_BLOCK: w.format === 'nf4' ? w.blockSize : 64 },
    ...shape,
    scales: true,
  };
}

/** A packed operand: its BaseWeight, checked against the operand's logical shape and context. */
function needWeight(ctx: Context, where: string, name: string, w: BaseWeight, rows: number, cols: number, dims: string): void {
  checkWeight(where, name, w, dims, ctx, [rows, cols]);
}

type Dim = 'M' | 'N' | 'K' | 'K2';

/** One operand as stored: a row-major [rows, cols] matrix at the start of its tensor. */
interface Operand {
  name: string;
  t: Tensor;
  rows: Dim;
  cols: Dim;
  /** Bytes per value: 4 for f32, 2 for f16, 0.5 for NF4 (absent: 4). */
  bytes?: number;
}

/** Half-open index ranges along each dimension. */
type Ranges = Record<Dim, [number, number]>;

/** One block of the product: its ranges, and whether it adds the second product and reads C. */
export interface MatmulBlock {
  ranges: Ranges;
  second: boolean;
  beta: number;
}

/** Rows per block: a multiple of 64 (whole tiles, and vec4-aligned) where that many fit. */
function roundRows(rows: number): number {
  if (rows >= 64) return rows - (rows % 64);
  if (rows >= 4) return rows - (rows % 4);
  return rows;
}

/**
 * The blocks matmul() dispatches for these operands: one when every operand fits a binding,
 * else as few as keep each operand's rows in one binding range (exported for tests).
 */
export function matmulBlocks(
  where: string,
  operands: readonly Operand[],
  dims: Record<Dim, number>,
  limit: number,
  align: number,
  beta: number,
  hasSecond: boolean,
): MatmulBlock[] {
  const step: Record<Dim, number> = { ...dims };
  for (const op of operands) {
    // A range starts at an aligned offset at or before the block's first element (a packed one
    // may start inside a word, and its end is rounded up to a whole word).
    const bytes = op.bytes ?? 4;
    const slack = bytes === 4 ? align - 4 : align + 4;
    const rowBytes = dims[op.cols] * bytes;
    if (op.t.buffer.size <= limit || dims[op.rows] * rowBytes + slack <= limit) continue;
    const rows = Math.floor((limit - slack) / rowBytes);
    if (op.rows === 'K2' || rows < 1) {
      throw new PeftError(
        `${where}: '${op.name}' ('${op.t.label}', shape [${op.t.shape.join(', ')}]) is ${dims[op.rows] * rowBytes} bytes, past this ` +
          `device's maxStorageBufferBindingSize of ${limit} bytes, and cannot be split into blocks of rows ` +
          (op.rows === 'K2' ? '(it is a factor of the fused second product)' : `(one row is ${rowBytes} bytes)`),
      );
    }
    step[op.rows] = Math.min(step[op.rows], roundRows(rows));
  }
  const blocks: MatmulBlock[] = [];
  for (let m0 = 0; m0 < dims.M; m0 += step.M) {
    for (let n0 = 0; n0 < dims.N; n0 += step.N) {
      for (let k0 = 0; k0 < dims.K; k0 += step.K) {
        blocks.push({
          ranges: {
            M: [m0, Math.min(dims.M, m0 + step.M)],
            N: [n0, Math.min(dims.N, n0 + step.N)],
            K: [k0, Math.min(dims.K, k0 + step.K)],
            K2: [0, dims.K2],
          },
          second: hasSecond && k0 === 0,
          beta: k0 === 0 ? beta : 1,
        });
      }
    }
  }
  return blocks;
}

/**
 * How `op` is bound for `block`: the whole tensor when it fits one binding, else the aligned
 * range holding the block's rows; `offset` is the block's first element within that binding.
 */
function bindOperand(where: string, op: Operand, dims: Record<Dim, number>, block: MatmulBlock, limit: number, align: number) {
  const [r0, r1] = block.ranges[op.rows];
  const [c0, c1] = block.ranges[op.cols];
  const ld = dims[op.cols];
  const bytes = op.bytes ?? 4;
  const start = r0 * ld + c0;
  const end = (r1 - 1) * ld + c1;
  if (op.t.buffer.size <= limit) return { binding: op.t as Tensor | BufferRange, offset: start, ld, base: 0 };
  const byteStart = Math.floor((start * bytes) / align) * align;
  const size = Math.min(op.t.buffer.size, Math.ceil((end * bytes) / 4) * 4) - byteStart;
  if (size > limit) throw new PeftError(`${where}: block of '${op.name}' is ${size} bytes, past the binding limit of ${limit} (internal error)`);
  // base: the element index of the binding's first byte (whole for every format, align being a multiple of 4).
  const base = byteStart / bytes;
  return { binding: { buffer: op.t, offset: byteStart, size } as Tensor | BufferRange, offset: start - base, ld, base };
}

/** Encodes C = alpha·op(A)·op(B) (+ second) (+ beta·C) into `encoder` (or submits it now). */
export async function matmul(ctx: Context, args: MatmulArgs, encoder?: GPUCommandEncoder): Promise<void> {
  const where = 'matmul';
  checkContext(where, ctx);
  if (!args || typeof args !== 'object')
    throw new PeftError(`${where}: the arguments must be an object { a, b, c, M, N, K, … }, got ${args === null ? 'null' : typeof args}`);
  const M = checkDim(where, 'M', args.M);
  const N = checkDim(where, 'N', args.N);
  const K = checkDim(where, 'K', args.K);
  const transA = !!args.transA;
  const transB = !!args.transB;
  const qa = BaseWeight.isBaseWeight(args.a) ? args.a : undefined;
  const qb = BaseWeight.isBaseWeight(args.b) ? args.b : undefined;
  if (qa && qb) throw new PeftError(`${where}: 'a' and 'b' are both BaseWeights (${qa.format}, ${qb.format}); at most one operand may be packed`);
  if (qa) needWeight(ctx, where, 'a', qa, transA ? K : M, transA ? M : K, transA ? '[K, M]' : '[M, K]');
  else need(ctx, where, 'a', args.a as Tensor, M * K);
  if (qb) needWeight(ctx, where, 'b', qb, transB ? N : K, transB ? K : N, transB ? '[N, K]' : '[K, N]');
  else need(ctx, where, 'b', args.b as Tensor, K * N);
  need(ctx, where, 'c', args.c, M * N);
  const second = args.second;
  let K2 = 0;
  if (second) {
    K2 = checkDim(where, 'second.K', second.K);
    for (const [name, t] of [
      ['second.a', second.a as unknown],
      ['second.b', second.b as unknown],
    ] as const) {
      if (BaseWeight.isBaseWeight(t)) {
        throw new PeftError(
          `${where}: '${name}' is a ${t.format} BaseWeight; the fused second product reads f32 Tensors only (pass the weight as 'a' or 'b')`,
        );
      }
    }
    need(ctx, where, 'second.a', second.a, M * K2);
    need(ctx, where, 'second.b', second.b, K2 * N);
  }
  const q = qa ? 'a' : qb ? 'b' : undefined;
  const w = qa ?? qb;
  const deviceLimit = ctx.limits.maxStorageBufferBindingSize;
  const limit = args.bindingLimit === undefined ? deviceLimit : checkDim(where, 'bindingLimit', args.bindingLimit);
  if (limit > deviceLimit)
    throw new PeftError(`${where}: 'bindingLimit' is ${limit}, past this device's maxStorageBufferBindingSize of ${deviceLimit}`);
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const dims: Record<Dim, number> = { M, N, K, K2 };
  const packedBytes = (x: Weight) => (BaseWeight.isBaseWeight(x) ? (x.format === 'f16' ? 2 : 0.5) : 4);
  const dataOf = (x: Weight) => (BaseWeight.isBaseWeight(x) ? x.data : x);
  const ops: Operand[] = [
    { name: 'a', t: dataOf(args.a), rows: transA ? 'K' : 'M', cols: transA ? 'M' : 'K', bytes: packedBytes(args.a) },
    { name: 'b', t: dataOf(args.b), rows: transB ? 'N' : 'K', cols: transB ? 'K' : 'N', bytes: packedBytes(args.b) },
    { name: 'c', t: args.c, rows: 'M', cols: 'N' },
  ];
  // The absmax is bound whole: it is 8/blockSize of the packed bytes or less.
  if (w?.absmax && w.absmax.buffer.size > limit) {
    throw new PeftError(
      `${where}: the absmax of '${q}' ('${w.absmax.label}', ${w.absmax.buffer.size} bytes) is past this device's maxStorageBufferBindingSize of ${limit} bytes`,
    );
  }
  if (second) {
    ops.push(
      { name: 'second.a', t: second.a, rows: transA ? 'K2' : 'M', cols: transA ? 'M' : 'K2' },
      { name: 'second.b', t: second.b, rows: transB ? 'N' : 'K2', cols: transB ? 'K2' : 'N' },
    );
  }
  const blocks = matmulBlocks(where, ops, dims, limit, align, args.beta ?? 0, !!second);
  const plans = blocks.map((block) => {
    const [a, b, c, a2, b2] = ops.map((op) => bindOperand(where, op, dims, block, limit, align));
    const size = (d: Dim) => block.ranges[d][1] - block.ranges[d][0];
    const aligned4 = a.offset % 4 === 0 && b.offset % 4 === 0 && a.ld % 4 === 0 && b.ld % 4 === 0;
    const cfg =
      q && w
        ? { shader: 'matmul', ...quantConfig(ctx, q, w, size('N'), size('K'), transA, transB, block.second, a, b) }
        : { ...config(ctx, size('M'), size('N'), size('K'), transA, transB, block.second, aligned4), scales: false };
    return { block, cfg, a, b, c, a2: block.second ? a2 : a, b2: block.second ? b2 : b, M: size('M'), N: size('N'), K: size('K') };
  });
  const distinct = new Map(plans.map((p) => [`${p.cfg.shader}:${p.cfg.entry}:${JSON.stringify(p.cfg.constants)}`, p.cfg]));
  await ctx.prepare([...distinct.values()].map((cfg) => ({ shader: cfg.shader, entry: cfg.entry, constants: cfg.constants })));
  const label = `matmul ${M}x${N}x${K}`;
  await ctx.encode(encoder, (enc) => {
    plans.forEach((p, i) => {
      const tilesN = Math.ceil(p.N / p.cfg.tileN);
      const tilesM = Math.ceil(p.M / p.cfg.tileM);
      ctx.dispatch(enc, {
        shader: p.cfg.shader,
        entry: p.cfg.entry,
        constants: p.cfg.constants,
        params: {
          M: p.M,
          N: p.N,
          K: p.K,
          K2: p.block.second ? K2 : 0,
          alpha: args.alpha ?? 1,
          alpha2: second?.alpha ?? 1,
          beta: p.block.beta,
          tiles_n: tilesN,
          lda: p.a.ld,
          ldb: p.b.ld,
          ldc: p.c.ld,
          lda2: p.a2.ld,
          ldb2: p.b2.ld,
          off_a: p.a.offset,
          off_b: p.b.offset,
          off_c: p.c.offset,
          off_a2: p.a2.offset,
          off_b2: p.b2.offset,
          // Read by matmul.wgsl's packed entries only (the GPU variants read f32 operands alone).
          q_base: q === 'a' ? p.a.base : q === 'b' ? p.b.base : 0,
        },
        // Unused second operands are bound to the first ones: WebGPU needs every declared binding.
        // Binding 6 (absmax) exists only in the packed entries that read it; f16's decode reads
        // it in a branch its FORMAT never takes, so it gets the packed data as a placeholder.
        bindings: [p.a.binding, p.b.binding, p.c.binding, p.a2.binding, p.b2.binding, ...(p.cfg.scales && w ? [w.absmax ?? w.data] : [])],
        workgroups: tilesM * tilesN,
        label: plans.length === 1 ? label : `${label} block ${i + 1}/${plans.length}`,
      });
    });
  });
}
