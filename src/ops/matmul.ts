// Host side of shaders/matmul.wgsl: C = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2)] [+ beta·C].
//
// An operand larger than one storage binding (maxStorageBufferBindingSize: 128 MiB on lavapipe,
// while buffers may reach maxBufferSize) is not refused: the product is cut into blocks along the
// dimension that indexes that operand's stored rows (M for A, C and A2 stored untransposed; N for
// B stored transposed; K for A transposed or B untransposed), and each block binds only the buffer
// range its rows occupy. Blocks along K accumulate into C (beta = 1 after the first), and the fused
// second product is added once, by the first K block.

import type { Context, Tuning } from '../runtime.js';
import type { BufferRange } from '../runtime/dispatcher.js';
import type { Tensor } from '../tensor.js';
import { PeftError, asTensor, checkContext, checkDim, checkOwner } from '../validate.js';

export interface MatmulArgs {
  a: Tensor;
  b: Tensor;
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
  /** A second product with the same transposes, added before the store. */
  second?: { a: Tensor; b: Tensor; K: number; alpha?: number };
  /**
   * Split as if a storage binding held at most this many bytes (at most the device's
   * maxStorageBufferBindingSize, the default): lets tests exercise the blocks on small tensors.
   */
  bindingLimit?: number;
}

/**
 * Kernel variants of shaders/matmul.wgsl, the names ctx.tuning.matmul accepts. 'direct' reads
 * 16 bytes per load (entry `direct4`) when the contiguous dimensions are multiples of 4, else
 * falls back to scalar loads; 'direct-scalar' always uses scalar loads (kept for benchmarks).
 * 'tiled' is entry `main`; 'tiled4' is entry `tiled4` (16-byte staging loads, 8×8 outputs per
 * invocation, 32-deep slices) where every operand's contiguous dimension, row stride and offset
 * are multiples of 4, else `main`.
 */
export type MatmulVariant = Tuning['matmul'];

/**
 * The variant a context gets when options.tuning.matmul is not given, by adapter class: the
 * first key that matches of `${cpu|gpu}:${vendor}` (vendor as the adapter reports it, lower
 * case, e.g. 'gpu:nvidia', 'gpu:apple') and then 'cpu' or 'gpu'. Edit it from the GPU kit's
 * measurements. 'tiled' stays the GPU default: 'tiled4' is built for GPUs but has been
 * measured on lavapipe only, which says little about a GPU.
 */
export const MATMUL_BY_ADAPTER: Readonly<Record<string, MatmulVariant>> = {
  cpu: 'direct',
  gpu: 'tiled',
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

/** The shader entry point matmul() picks for these sizes under ctx.tuning (exported for tests). */
export function matmulEntry(ctx: Context, M: number, N: number, K: number, transA = false, transB = false): string {
  return config(ctx, M, N, K, transA, transB, false, true).entry;
}

function config(
  ctx: Context,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  second: boolean,
  aligned4: boolean,
): { entry: string; constants: Record<string, number | boolean>; tileM: number; tileN: number } {
  const variant = ctx.tuning.matmul;
  if (variant === 'tiled4' && aligned4 && tiled4Fits(M, N, K, transA, transB)) {
    // Its 8×8 invocations and 64×64 tile are fixed in the shader, not overridden.
    return { entry: 'tiled4', constants: { TRANS_A: transA, TRANS_B: transB, SECOND: second }, tileM: 64, tileN: 64 };
  }
  const tiled = variant === 'tiled' || variant === 'tiled4';
  const wg = tiled ? 16 : 8;
  let entry = 'direct';
  if (tiled) entry = 'main';
  else if (variant !== 'direct-scalar' && aligned4 && vec4Fits(M, N, K, transA, transB)) entry = 'direct4';
  return {
    entry,
    constants: { TRANS_A: transA, TRANS_B: transB, SECOND: second, WG_M: wg, WG_N: wg },
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

type Dim = 'M' | 'N' | 'K' | 'K2';

/** One operand as stored: a row-major [rows, cols] matrix at the start of its tensor. */
interface Operand {
  name: string;
  t: Tensor;
  rows: Dim;
  cols: Dim;
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
  // A range starts at an aligned offset at or before the block's first element.
  const slack = align - 4;
  for (const op of operands) {
    const rowBytes = dims[op.cols] * 4;
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
  const start = r0 * ld + c0;
  const end = (r1 - 1) * ld + c1;
  if (op.t.buffer.size <= limit) return { binding: op.t as Tensor | BufferRange, offset: start, ld };
  const byteStart = Math.floor((start * 4) / align) * align;
  const size = end * 4 - byteStart;
  if (size > limit) throw new PeftError(`${where}: block of '${op.name}' is ${size} bytes, past the binding limit of ${limit} (internal error)`);
  return { binding: { buffer: op.t, offset: byteStart, size } as Tensor | BufferRange, offset: start - byteStart / 4, ld };
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
  need(ctx, where, 'a', args.a, M * K);
  need(ctx, where, 'b', args.b, K * N);
  need(ctx, where, 'c', args.c, M * N);
  const second = args.second;
  let K2 = 0;
  if (second) {
    K2 = checkDim(where, 'second.K', second.K);
    need(ctx, where, 'second.a', second.a, M * K2);
    need(ctx, where, 'second.b', second.b, K2 * N);
  }
  const deviceLimit = ctx.limits.maxStorageBufferBindingSize;
  const limit = args.bindingLimit === undefined ? deviceLimit : checkDim(where, 'bindingLimit', args.bindingLimit);
  if (limit > deviceLimit)
    throw new PeftError(`${where}: 'bindingLimit' is ${limit}, past this device's maxStorageBufferBindingSize of ${deviceLimit}`);
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const transA = !!args.transA;
  const transB = !!args.transB;
  const dims: Record<Dim, number> = { M, N, K, K2 };
  const ops: Operand[] = [
    { name: 'a', t: args.a, rows: transA ? 'K' : 'M', cols: transA ? 'M' : 'K' },
    { name: 'b', t: args.b, rows: transB ? 'N' : 'K', cols: transB ? 'K' : 'N' },
    { name: 'c', t: args.c, rows: 'M', cols: 'N' },
  ];
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
    const cfg = config(ctx, size('M'), size('N'), size('K'), transA, transB, block.second, aligned4);
    return { block, cfg, a, b, c, a2: block.second ? a2 : a, b2: block.second ? b2 : b, M: size('M'), N: size('N'), K: size('K') };
  });
  const distinct = new Map(plans.map((p) => [`${p.cfg.entry}:${JSON.stringify(p.cfg.constants)}`, p.cfg]));
  await ctx.prepare([...distinct.values()].map((cfg) => ({ shader: 'matmul', entry: cfg.entry, constants: cfg.constants })));
  const label = `matmul ${M}x${N}x${K}`;
  await ctx.encode(encoder, (enc) => {
    plans.forEach((p, i) => {
      const tilesN = Math.ceil(p.N / p.cfg.tileN);
      const tilesM = Math.ceil(p.M / p.cfg.tileM);
      ctx.dispatch(enc, {
        shader: 'matmul',
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
        },
        // Unused second operands are bound to the first ones: WebGPU needs every declared binding.
        bindings: [p.a.binding, p.b.binding, p.c.binding, p.a2.binding, p.b2.binding],
        workgroups: tilesM * tilesN,
        label: plans.length === 1 ? label : `${label} block ${i + 1}/${plans.length}`,
      });
    });
  });
}
