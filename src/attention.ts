// Fused multi-head scaled dot-product attention, causal or full, forward and backward
// (docs/attention.md). Kernels: shaders/attention.wgsl; float64 reference: src/reference/attention.ts.
//
// Rows are [batch·T, heads·headDim], the layout a fused QKV projection produces: head h of row t is
// columns h·headDim … (h+1)·headDim−1. The forward keeps a running max and sum per query row
// (online softmax) and saves only the row's log-sum-exp; the backward recomputes the scores from
// it. No T×T buffer exists at any point: beyond Q, K, V, Y and their gradients the calls allocate
// O(batch·heads·T) floats (lse, and the backward's row sums D).

import type { Context } from './runtime.js';
import { Tensor } from './tensor.js';
import type { NnEncodeOptions } from './nn.js';
import { PeftError, asTensor, checkArgObject, checkContext, checkDim, checkGivenTensors, checkScale, describeValue } from './validate.js';

export interface AttentionShape {
  batch: number;
  T: number;
  heads: number;
  headDim: number;
  /** Each query row attends only to keys at or before it (default true). */
  causal?: boolean;
  /** Multiplier of q·k before the softmax (default 1/√headDim). */
  scale?: number;
}

/** The widest head the kernels take: each invocation holds 2 to 4 blocks of ROWS·headDim floats in workgroup memory. */
export const ATTENTION_MAX_HEAD_DIM = 128;

const SHADER = 'attention';

interface Dims {
  batch: number;
  T: number;
  heads: number;
  headDim: number;
  causal: boolean;
  scale: number;
  rows: number; // batch·T
  cols: number; // heads·headDim
}

function checkShape(where: string, ctx: Context, p: AttentionShape): Dims {
  const batch = checkDim(where, 'batch', p.batch);
  const T = checkDim(where, 'T', p.T);
  const heads = checkDim(where, 'heads', p.heads);
  const headDim = checkDim(where, 'headDim', p.headDim);
  if (headDim > ATTENTION_MAX_HEAD_DIM) {
    throw new PeftError(`${where}: 'headDim' is ${headDim}, past the largest the attention kernels support (${ATTENTION_MAX_HEAD_DIM})`);
  }
  const causal = p.causal ?? true;
  if (typeof causal !== 'boolean') throw new PeftError(`${where}: 'causal' must be a boolean, got ${describeValue(causal)}`);
  const scale = p.scale === undefined ? 1 / Math.sqrt(headDim) : checkScale(where, 'scale', p.scale);
  const rows = batch * T;
  const cols = heads * headDim;
  // Every row tensor is bound whole; the index arithmetic is u32.
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (rows * cols * 4 > limit) {
    throw new PeftError(
      `${where}: 'T' = ${T} (batch ${batch}, heads·headDim ${cols}) makes each of q, k, v ${rows * cols * 4} bytes, past this ` +
        `device's maxStorageBufferBindingSize of ${limit} bytes (the attention kernels bind each tensor whole)`,
    );
  }
  return { batch, T, heads, headDim, causal, scale, rows, cols };
}

function rowTensor(where: string, name: string, t: unknown, d: Dims): Tensor {
  const x = asTensor(where, name, t, `an f32 Tensor [batch·T, heads·headDim] = [${d.rows}, ${d.cols}]`);
  if (x.dtype !== 'f32') throw new PeftError(`${where}: '${name}' is ${x.dtype}, expected f32`);
  if (x.shape.length !== 2 || x.shape[0] !== d.rows || x.shape[1] !== d.cols) {
    const why =
      x.shape.length === 2 && x.shape[1] === d.cols && x.shape[0] !== d.rows
        ? ` (its ${x.shape[0]} rows are not batch·T = ${d.batch}·${d.T})`
        : x.shape.length === 2 && x.shape[0] === d.rows
          ? ` (its ${x.shape[1]} columns are not heads·headDim = ${d.heads}·${d.headDim})`
          : '';
    throw new PeftError(`${where}: '${name}' has shape [${x.shape.join(', ')}], expected [batch·T, heads·headDim] = [${d.rows}, ${d.cols}]${why}`);
  }
  return x;
}

function lseTensor(where: string, name: string, t: unknown, d: Dims): Tensor {
  const n = d.batch * d.heads * d.T;
  const x = asTensor(where, name, t, `an f32 Tensor [batch·heads·T] = [${n}]`);
  if (x.dtype !== 'f32') throw new PeftError(`${where}: '${name}' is ${x.dtype}, expected f32`);
  if (x.shape.length !== 1 || x.shape[0] !== n) {
    throw new PeftError(`${where}: '${name}' has shape [${x.shape.join(', ')}], expected [batch·heads·T] = [${n}]`);
  }
  return x;
}

function checkCall(where: string, ctx: Context, p: unknown, opts: unknown): void {
  checkContext(where, ctx);
  checkArgObject(where, p, 'with q, k, v and the shape (batch, T, heads, headDim)');
  if (opts === null || typeof opts !== 'object') throw new PeftError(`${where}: options must be an object, got ${describeValue(opts)}`);
  for (const key of Object.keys(opts)) {
    if (key !== 'encoder') throw new PeftError(`${where}: unknown option '${key}' (this call takes 'encoder')`);
  }
  checkGivenTensors(where, ctx, p as object);
}

/** Workgroups: each holds WG·ROWS consecutive rows of one (batch, head). */
function blockGroups(d: Dims, rowsPerInvocation: number, wg: number): number {
  return d.batch * d.heads * Math.ceil(d.T / (rowsPerInvocation * wg));
}

/**
 * The entry point's override constants. Each invocation keeps `held` blocks of ROWS·HD floats in
 * its own slice of workgroup memory (shaders/attention.wgsl). A workgroup holds at most 32 rows
 * (WG·ROWS), fewer where the device's workgroup memory is short (lavapipe's 32 KiB at HD = 128:
 * WG = 4): under the causal mask a workgroup streams every key up to its last row, so taller
 * workgroups waste more. KB = 4 streamed rows per step (8 measured no faster at ROWS = 4).
 */
function constantsFor(ctx: Context, d: Dims, held: number): { HD: number; ROWS: number; WG: number; KB: number } {
  const ROWS = attentionRows(ctx, d.headDim);
  const perLane = held * ROWS * d.headDim * 4;
  let WG = 32 / ROWS;
  while (WG > 1 && WG * perLane > ctx.limits.maxComputeWorkgroupStorageSize) WG /= 2;
  return { HD: d.headDim, ROWS, WG, KB: 4 };
}

function uniforms(d: Dims, c: { ROWS: number; WG: number }) {
  return {
    T: d.T,
    heads: d.heads,
    causal: d.causal ? 1 : 0,
    scale: d.scale,
    groups: Math.ceil(d.T / (c.ROWS * c.WG)),
    count: blockGroups(d, c.ROWS, c.WG),
    hd: d.headDim,
  };
}

/**
 * Rows per invocation: the ROWS rows an invocation holds share every streamed k and v (or q and
 * dy) load and every read-modify-write of the accumulators. 4 measured best on lavapipe (8 was
 * not clearly faster and needs twice the workgroup memory; docs/attention.md); the kernels hold at most 4.
 */
export function attentionRows(_ctx: Context, _headDim: number): number {
  return 4;
}

/**
 * y = softmax(scale·q kᵀ + mask) v per (batch, head), and the per-row log-sum-exp of the scaled,
 * masked scores (lse [batch·heads·T], index (b·heads + h)·T + t), which the backward needs.
 */
export async function attentionForward(
  ctx: Context,
  p: AttentionShape & { q: Tensor; k: Tensor; v: Tensor; y?: Tensor; lse?: Tensor },
  opts: NnEncodeOptions = {},
): Promise<{ y: Tensor; lse: Tensor }> {
  const where = 'attention.forward';
  checkCall(where, ctx, p, opts);
  const d = checkShape(where, ctx, p);
  const q = rowTensor(where, 'q', p.q, d);
  const k = rowTensor(where, 'k', p.k, d);
  const v = rowTensor(where, 'v', p.v, d);
  if (p.y !== undefined) rowTensor(where, 'y', p.y, d);
  if (p.lse !== undefined) lseTensor(where, 'lse', p.lse, d);
  const y = p.y ?? ctx.tensor([d.rows, d.cols], 'f32', 'attention.y');
  const lse = p.lse ?? ctx.tensor([d.batch * d.heads * d.T], 'f32', 'attention.lse');
  const constants = constantsFor(ctx, d, 2);
  await ctx.prepare([{ shader: SHADER, entry: 'attention_forward', constants }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'attention_forward',
      constants,
      params: uniforms(d, constants),
      bindings: [q, k, v, lse, y],
      workgroups: blockGroups(d, constants.ROWS, constants.WG),
      label: `attention forward ${d.batch}x${d.T}x${d.heads}x${d.headDim}`,
    }),
  );
  return { y, lse };
}

/**
 * dq, dk, dv of attentionForward given dy = ∂L/∂y and the forward's y and lse. Two passes, no
 * atomics: the first computes D = rowsum(dy ⊙ y) and dq per query row, the second dk and dv per
 * key row. Outputs are overwritten.
 */
export async function attentionBackward(
  ctx: Context,
  p: AttentionShape & { q: Tensor; k: Tensor; v: Tensor; y: Tensor; lse: Tensor; dy: Tensor; dq?: Tensor; dk?: Tensor; dv?: Tensor },
  opts: NnEncodeOptions = {},
): Promise<{ dq: Tensor; dk: Tensor; dv: Tensor }> {
  const where = 'attention.backward';
  checkCall(where, ctx, p, opts);
  const d = checkShape(where, ctx, p);
  const q = rowTensor(where, 'q', p.q, d);
  const k = rowTensor(where, 'k', p.k, d);
  const v = rowTensor(where, 'v', p.v, d);
  const y = rowTensor(where, 'y', p.y, d);
  const lse = lseTensor(where, 'lse', p.lse, d);
  const dy = rowTensor(where, 'dy', p.dy, d);
  if (p.dq !== undefined) rowTensor(where, 'dq', p.dq, d);
  if (p.dk !== undefined) rowTensor(where, 'dk', p.dk, d);
  if (p.dv !== undefined) rowTensor(where, 'dv', p.dv, d);
  const dq = p.dq ?? ctx.tensor([d.rows, d.cols], 'f32', 'attention.dq');
  const dk = p.dk ?? ctx.tensor([d.rows, d.cols], 'f32', 'attention.dk');
  const dv = p.dv ?? ctx.tensor([d.rows, d.cols], 'f32', 'attention.dv');
  // Scratch: the caller never sees D, and consecutive calls in one encoder may share it (queue order).
  const rowSums = ctx.scratch('attention.D', [d.batch * d.heads * d.T]);
  const cq = constantsFor(ctx, d, 3);
  const ckv = constantsFor(ctx, d, 4);
  await ctx.prepare([
    { shader: SHADER, entry: 'attention_backward_dq', constants: cq },
    { shader: SHADER, entry: 'attention_backward_dkv', constants: ckv },
  ]);
  await ctx.encode(opts.encoder, (enc) => {
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'attention_backward_dq',
      constants: cq,
      params: uniforms(d, cq),
      bindings: [q, k, v, lse, dy, rowSums, y, dq],
      workgroups: blockGroups(d, cq.ROWS, cq.WG),
      label: `attention backward dq ${d.batch}x${d.T}x${d.heads}x${d.headDim}`,
    });
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'attention_backward_dkv',
      constants: ckv,
      params: uniforms(d, ckv),
      bindings: [q, k, v, lse, dy, rowSums, dk, dv],
      workgroups: blockGroups(d, ckv.ROWS, ckv.WG),
      label: `attention backward dk dv ${d.batch}x${d.T}x${d.heads}x${d.headDim}`,
    });
  });
  return { dq, dk, dv };
}
