// SBoRA on the GPU (KERNELS.md, "SBoRA"; shaders/sbora.wgsl): LoRA with one factor frozen to r
// standard-basis vectors, kept as r distinct u32 indices (src/indices.ts).
//
// SBoRA-FA (A = rows idx of I_n frozen, B [m, r] trained)
//   forward   Y = X W0ᵀ;  Y += s·X[:, idx] Bᵀ             2 dispatches (matmul, gather-product)
//   backward  dX = G W0;  dX[:, idx[q]] += s·(G B)[:, q];  dB = s·Gᵀ X[:, idx]      3 dispatches
//   merge     W'[:, idx[q]] = W0[:, idx[q]] + s·B[:, q]    O(m·r), other columns untouched
// SBoRA-FB (B = columns idx of I_m frozen, A [r, n] trained)
//   forward   Y = X W0ᵀ;  Y[:, idx[q]] += s·(X Aᵀ)[:, q]   2 dispatches (matmul, index_add)
//   backward  dX = G W0 + s·G[:, idx] A;  dA = s·G[:, idx]ᵀ X                       3 dispatches
//   merge     W'[idx[q], :] = W0[idx[q], :] + s·A[q, :]    O(r·n), other rows untouched
//
// The frozen products run on matmul.wgsl, the very kernel LoRA's run on, so the layer costs LoRA's
// base product plus an adapter term that is cheaper than LoRA's. (A fused epilogue was built and
// dropped: it had to copy matmul's loop, and fell behind when matmul's loop got faster; the extra
// pass over Y it saved is small next to the base product. See docs/sbora.md.)
// Neither variant keeps an activation for the backward (LoRA keeps Z = X Aᵀ) or needs scratch.
// Adapter dropout (KERNELS.md, "Dropout") is applied inside the kernels from the hashed mask:
// FA masks only the T·r gathered elements of X; neither variant stores a masked copy of X.

import { IndexSet, checkDisjoint } from './indices.js';
import type { EncodeOptions } from './lora.js';
import { checkDropout, type Dropout } from './ops/dropout.js';
import { matmul } from './ops/matmul.js';
import { dropThreshold } from './ops/dropout.js';
import type { Context } from './runtime.js';
import { f32, type ParamValue } from './runtime.js';
import type { Tensor } from './tensor.js';
import { PeftError, checkDistinct, checkScale, checkTensor } from './validate.js';

export type SboraVariant = 'fa' | 'fb';

export interface SboraFaParams {
  w0: Tensor; // [m, n]
  b: Tensor; // [m, r], trained
  /** r distinct indices into [0, n): the frozen A's one-hot rows. */
  idx: IndexSet;
  /** s = alpha / r. */
  scale: number;
}

export interface SboraFbParams {
  w0: Tensor; // [m, n]
  a: Tensor; // [r, n], trained
  /** r distinct indices into [0, m): the frozen B's one-hot columns. */
  idx: IndexSet;
  scale: number;
}

export interface SboraDims {
  T: number;
  n: number;
  m: number;
  r: number;
}

const SHADER = 'sbora';

function checkIndexSet(where: string, idx: IndexSet | undefined, size: number, sizeName: string): IndexSet {
  if (!(idx instanceof IndexSet)) {
    throw new PeftError(
      `${where}: 'idx' must be an IndexSet (from createIndexSet: validated, distinct indices in [0, ${sizeName} = ${size})), got ${idx === undefined ? 'nothing' : typeof idx}`,
    );
  }
  if (idx.size !== size) {
    throw new PeftError(`${where}: 'idx' indexes [0, ${idx.size}), expected [0, ${sizeName}) = [0, ${size})`);
  }
  checkTensor(where, 'idx', idx.tensor, [idx.r], '[r]', 'u32');
  return idx;
}

function faDims(where: string, p: SboraFaParams, x?: Tensor, xName = 'x'): SboraDims {
  if (!p || typeof p !== 'object') throw new PeftError(`${where}: expected {w0, b, idx, scale}`);
  if (!p.w0 || !Array.isArray(p.w0.shape) || p.w0.shape.length !== 2) throw new PeftError(`${where}: 'w0' must be a 2-D Tensor [m, n]`);
  const [m, n] = p.w0.shape;
  checkTensor(where, 'w0', p.w0, [m, n], '[m, n]');
  const idx = checkIndexSet(where, p.idx, n, 'n');
  const r = idx.r;
  checkTensor(where, 'b', p.b, [m, r], '[m, r]');
  checkScale(where, 'scale', p.scale);
  return { T: rowsOf(where, x, xName), n, m, r };
}

function fbDims(where: string, p: SboraFbParams, x?: Tensor, xName = 'x'): SboraDims {
  if (!p || typeof p !== 'object') throw new PeftError(`${where}: expected {w0, a, idx, scale}`);
  if (!p.w0 || !Array.isArray(p.w0.shape) || p.w0.shape.length !== 2) throw new PeftError(`${where}: 'w0' must be a 2-D Tensor [m, n]`);
  const [m, n] = p.w0.shape;
  checkTensor(where, 'w0', p.w0, [m, n], '[m, n]');
  const idx = checkIndexSet(where, p.idx, m, 'm');
  const r = idx.r;
  checkTensor(where, 'a', p.a, [r, n], '[r, n]');
  checkScale(where, 'scale', p.scale);
  return { T: rowsOf(where, x, xName), n, m, r };
}

function rowsOf(where: string, x: Tensor | undefined, name: string): number {
  if (!x) return 1;
  if (!x.shape || x.shape.length !== 2) throw new PeftError(`${where}: '${name}' must be a 2-D Tensor [T, ${name === 'x' ? 'n' : 'm'}]`);
  return x.shape[0];
}

// sbora.wgsl's strip layout (index_add_mm, gather_outer): a workgroup of LANES invocations owns
// SR uniform rows and LANES·SC per-lane columns. Eight lanes fill one AVX2 vector on lavapipe;
// GPUs want wider groups. gather_mm has its own layout: ROWS rows and 4·LANES columns per
// workgroup, 4 consecutive columns per lane.
const SR = 8;
const SC = 4;
/**
 * Benchmark knobs: invocations per workgroup of the SBoRA kernels (default 8 under the CPU
 * tunings, 64 under 'tiled') and rows per workgroup of the gather kernel (default 32 and 8).
 */
export const sboraTuning: { lanes?: number; gatherRows?: number } = {};
// The GPU layout goes with matmul's GPU tuning, so the tests reach both layouts on any device.
function gpuLayout(ctx: Context): boolean {
  return ctx.tuning.matmul === 'tiled';
}
function lanes(ctx: Context): number {
  return sboraTuning.lanes ?? (gpuLayout(ctx) ? 64 : 8);
}

function grid(ctx: Context, uniformRows: number, laneCols: number): { LANES: number; tilesN: number; workgroups: number } {
  const L = lanes(ctx);
  const tilesN = Math.ceil(laneCols / (L * SC));
  return { LANES: L, tilesN, workgroups: Math.ceil(uniformRows / SR) * tilesN };
}

// Which operand of a kernel carries X's dropout mask (see DROP in sbora.wgsl): 1 or 2.
type DropMode = { mode: 1 | 2; d: Dropout };

function dropConstants(drop: DropMode | undefined): { DROP: number } {
  return { DROP: drop ? drop.mode : 0 };
}

function dropParams(drop: DropMode | undefined): ParamValue[] {
  if (!drop) return [0, 0, f32(1), 0];
  return [drop.d.seed, dropThreshold(drop.d.p), f32(1 / (1 - drop.d.p)), 0];
}

interface GatherMM {
  out: Tensor;
  src: Tensor;
  f: Tensor;
  idx: IndexSet;
  M: number;
  N: number;
  K: number;
  R: number;
  scale: number;
  beta: number;
  fRN: boolean;
  drop?: DropMode;
}

async function gatherMM(ctx: Context, enc: GPUCommandEncoder, g: GatherMM, label: string): Promise<void> {
  const L = lanes(ctx);
  // Rows per workgroup: a lane loads its 4·r factor values once and reuses them for every row, so
  // CPUs (which pay per workgroup) want many; GPUs want more workgroups.
  const ROWS = sboraTuning.gatherRows ?? (gpuLayout(ctx) ? 8 : 32);
  const tilesN = Math.ceil(g.N / (4 * L));
  // 16-byte stores where every row of C starts on a multiple of 4 floats.
  const entry = g.N % 4 === 0 ? 'gather_mm4' : 'gather_mm';
  const constants = { F_RN: g.fRN, LANES: L, RANK: g.R, ROWS, ...dropConstants(g.drop) };
  await ctx.prepare([{ shader: SHADER, entry, constants }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry,
    constants,
    params: [g.M, g.N, g.K, g.R, g.K, f32(g.scale), f32(g.beta), tilesN, ...dropParams(g.drop)],
    bindings: [g.idx.tensor, g.out, g.src, g.f],
    workgroups: Math.ceil(g.M / ROWS) * tilesN,
    label,
  });
}

async function indexAddMM(
  ctx: Context,
  enc: GPUCommandEncoder,
  g: { out: Tensor; src: Tensor; f: Tensor; idx: IndexSet; M: number; N: number; K: number; R: number; scale: number; fRK: boolean; drop?: DropMode },
  label: string,
): Promise<void> {
  const gr = grid(ctx, g.R, g.M);
  const constants = { F_RK: g.fRK, LANES: gr.LANES, ...dropConstants(g.drop) };
  await ctx.prepare([{ shader: SHADER, entry: 'index_add_mm', constants }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry: 'index_add_mm',
    constants,
    params: [g.M, g.N, g.K, g.R, g.K, f32(g.scale), f32(1), gr.tilesN, ...dropParams(g.drop)],
    bindings: [g.idx.tensor, g.out, g.src, g.f],
    workgroups: gr.workgroups,
    label,
  });
}

async function gatherOuter(
  ctx: Context,
  enc: GPUCommandEncoder,
  g: { out: Tensor; src: Tensor; fac: Tensor; idx: IndexSet; rows: number; T: number; R: number; ld: number; scale: number; outRN: boolean; drop?: DropMode },
  label: string,
): Promise<void> {
  const gr = grid(ctx, g.R, g.rows);
  const constants = { D_RN: g.outRN, LANES: gr.LANES, ...dropConstants(g.drop) };
  await ctx.prepare([{ shader: SHADER, entry: 'gather_outer', constants }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry: 'gather_outer',
    constants,
    params: [g.rows, 0, g.T, g.R, g.ld, f32(g.scale), f32(0), gr.tilesN, ...dropParams(g.drop)],
    bindings: [g.idx.tensor, g.out, g.src, g.fac],
    workgroups: gr.workgroups,
    label,
  });
}

async function regional(
  ctx: Context,
  enc: GPUCommandEncoder,
  variant: SboraVariant,
  g: { out: Tensor; factor: Tensor; idx: IndexSet; m: number; n: number; r: number; scale: number },
): Promise<void> {
  const entry = variant === 'fa' ? 'merge_cols' : 'merge_rows';
  await ctx.prepare([{ shader: SHADER, entry }]);
  const count = variant === 'fa' ? g.m * g.r : g.r * g.n;
  ctx.dispatch(enc, {
    shader: SHADER,
    entry,
    params: [g.m, g.n, 0, g.r, 0, f32(g.scale), f32(0), 0, ...dropParams(undefined)],
    bindings: [g.idx.tensor, g.out, g.factor],
    workgroups: Math.ceil(count / 64),
    label: `sbora.${entry}`,
  });
}

function clear(enc: GPUCommandEncoder, t: Tensor): void {
  enc.clearBuffer(t.buffer, 0, t.byteLength);
}

// ------------------------------------------------------------------------------------ SBoRA-FA

/** Y = X W0ᵀ + s·X[:, idx] Bᵀ (with adapterOnly, the second term alone). */
export async function sboraFaForward(
  ctx: Context,
  p: SboraFaParams & { x: Tensor; y?: Tensor; dropout?: Dropout },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<{ y: Tensor }> {
  const where = 'sbora.fa.forward';
  const d = faDims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  const y = p.y ? checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]') : ctx.tensor([d.T, d.m], 'f32', 'sbora.fa.y');
  checkDistinct(where, { y, x: p.x, w0: p.w0, b: p.b, idx: p.idx.tensor });
  const dropout = checkDropout(where, p.dropout);
  // Dropout masks the gathered X[:, idx] only.
  const drop: DropMode | undefined = dropout && { mode: 1, d: dropout };
  const g = { out: y, src: p.x, f: p.b, idx: p.idx, M: d.T, N: d.m, K: d.n, R: d.r, scale: p.scale, fRN: false, drop };
  await ctx.encode(opts.encoder, async (enc) => {
    // The base product on the very matmul kernel LoRA's uses, then the gather-product on top.
    if (!opts.adapterOnly) await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true }, enc);
    await gatherMM(ctx, enc, { ...g, beta: opts.adapterOnly ? 0 : 1 }, 'sbora.fa.forward.adapter');
  });
  return { y };
}

/** dX and dB of L = sum(Y ⊙ G); with adapterOnly, dX is the adapter's part alone. */
export async function sboraFaBackward(
  ctx: Context,
  p: SboraFaParams & { x: Tensor; g: Tensor; dx?: Tensor; db?: Tensor; dropout?: Dropout },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<{ dx: Tensor; db: Tensor }> {
  const where = 'sbora.fa.backward';
  const d = faDims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  checkTensor(where, 'g', p.g, [d.T, d.m], '[T, m]');
  const dx = p.dx ? checkTensor(where, 'dx', p.dx, [d.T, d.n], '[T, n]') : ctx.tensor([d.T, d.n], 'f32', 'sbora.fa.dx');
  const db = p.db ? checkTensor(where, 'db', p.db, [d.m, d.r], '[m, r]') : ctx.tensor([d.m, d.r], 'f32', 'sbora.fa.db');
  checkDistinct(where, { dx, db, x: p.x, g: p.g, w0: p.w0, b: p.b, idx: p.idx.tensor });
  const dropout = checkDropout(where, p.dropout);
  await ctx.encode(opts.encoder, async (enc) => {
    if (opts.adapterOnly) clear(enc, dx);
    else await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
    // (G B)[:, q] lands in input column idx[q]: the index_add that replaces H A.
    // With dropout, the mask of X lands on the written dX elements (mode 2) and on the gathered X (mode 1).
    const dx2: DropMode | undefined = dropout && { mode: 2, d: dropout };
    const x1: DropMode | undefined = dropout && { mode: 1, d: dropout };
    await indexAddMM(ctx, enc, { out: dx, src: p.g, f: p.b, idx: p.idx, M: d.T, N: d.n, K: d.m, R: d.r, scale: p.scale, fRK: false, drop: dx2 }, 'sbora.fa.dx');
    await gatherOuter(ctx, enc, { out: db, src: p.x, fac: p.g, idx: p.idx, rows: d.m, T: d.T, R: d.r, ld: d.n, scale: p.scale, outRN: false, drop: x1 }, 'sbora.fa.db');
  });
  return { dx, db };
}

// ------------------------------------------------------------------------------------ SBoRA-FB

/** Y = X W0ᵀ, then Y[:, idx[q]] += s·(X Aᵀ)[:, q] (with adapterOnly, Y is zero outside idx). */
export async function sboraFbForward(
  ctx: Context,
  p: SboraFbParams & { x: Tensor; y?: Tensor; dropout?: Dropout },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<{ y: Tensor }> {
  const where = 'sbora.fb.forward';
  const d = fbDims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  const y = p.y ? checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]') : ctx.tensor([d.T, d.m], 'f32', 'sbora.fb.y');
  checkDistinct(where, { y, x: p.x, w0: p.w0, a: p.a, idx: p.idx.tensor });
  const dropout = checkDropout(where, p.dropout);
  await ctx.encode(opts.encoder, async (enc) => {
    if (opts.adapterOnly) clear(enc, y);
    else await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true }, enc);
    // Dropout masks X as the adapter reads it (mode 1): no masked copy is stored.
    const drop: DropMode | undefined = dropout && { mode: 1, d: dropout };
    await indexAddMM(ctx, enc, { out: y, src: p.x, f: p.a, idx: p.idx, M: d.T, N: d.m, K: d.n, R: d.r, scale: p.scale, fRK: true, drop }, 'sbora.fb.forward.adapter');
  });
  return { y };
}

/** dX and dA of L = sum(Y ⊙ G); with adapterOnly, dX is the adapter's part alone. */
export async function sboraFbBackward(
  ctx: Context,
  p: SboraFbParams & { x: Tensor; g: Tensor; dx?: Tensor; da?: Tensor; dropout?: Dropout },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<{ dx: Tensor; da: Tensor }> {
  const where = 'sbora.fb.backward';
  const d = fbDims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  checkTensor(where, 'g', p.g, [d.T, d.m], '[T, m]');
  const dx = p.dx ? checkTensor(where, 'dx', p.dx, [d.T, d.n], '[T, n]') : ctx.tensor([d.T, d.n], 'f32', 'sbora.fb.dx');
  const da = p.da ? checkTensor(where, 'da', p.da, [d.r, d.n], '[r, n]') : ctx.tensor([d.r, d.n], 'f32', 'sbora.fb.da');
  checkDistinct(where, { dx, da, x: p.x, g: p.g, w0: p.w0, a: p.a, idx: p.idx.tensor });
  const dropout = checkDropout(where, p.dropout);
  // The adapter's share of dX is masked (mode 2 of gather_mm), and so is X in dA (mode 2 of gather_outer).
  const drop: DropMode | undefined = dropout && { mode: 2, d: dropout };
  const g = { out: dx, src: p.g, f: p.a, idx: p.idx, M: d.T, N: d.n, K: d.m, R: d.r, scale: p.scale, fRN: true, drop };
  await ctx.encode(opts.encoder, async (enc) => {
    if (!opts.adapterOnly) await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
    await gatherMM(ctx, enc, { ...g, beta: opts.adapterOnly ? 0 : 1 }, 'sbora.fb.dx.adapter');
    await gatherOuter(ctx, enc, { out: da, src: p.g, fac: p.x, idx: p.idx, rows: d.n, T: d.T, R: d.r, ld: d.m, scale: p.scale, outRN: true, drop }, 'sbora.fb.da');
  });
  return { dx, da };
}

// ---------------------------------------------------------------------------------- merging

export interface MergeOptions extends EncodeOptions {
  /** Update W0 itself: only the r columns (FA) or rows (FB) are written. */
  inPlace?: boolean;
  /** Subtract the adapter instead (undo an in-place merge). */
  unmerge?: boolean;
  /** Write ΔW = W' − W0 (zero outside the region) instead of W'. */
  deltaOnly?: boolean;
}

async function mergeInto(
  ctx: Context,
  where: string,
  w0: Tensor,
  m: number,
  n: number,
  out: Tensor | undefined,
  opts: MergeOptions,
  write: (enc: GPUCommandEncoder, target: Tensor) => Promise<void>,
  inputs: Record<string, Tensor>,
): Promise<Tensor> {
  let target: Tensor;
  if (opts.inPlace) {
    if (opts.deltaOnly) throw new PeftError(`${where}: 'inPlace' and 'deltaOnly' exclude each other`);
    if (out) throw new PeftError(`${where}: 'out' is not used with 'inPlace' (W0 itself is updated)`);
    target = w0;
  } else {
    target = out ? checkTensor(where, 'out', out, [m, n], '[m, n]') : ctx.tensor([m, n], 'f32', 'sbora.merged');
    checkDistinct(where, { out: target, w0, ...inputs });
  }
  await ctx.encode(opts.encoder, async (enc) => {
    if (opts.deltaOnly) clear(enc, target);
    else if (!opts.inPlace) ctx.copy(w0, target, enc);
    await write(enc, target);
  });
  return target;
}

/** W'[:, idx[q]] = W0[:, idx[q]] ± s·B[:, q]; O(m·r) work. See MergeOptions. */
export async function sboraFaMerge(ctx: Context, p: SboraFaParams & { out?: Tensor }, opts: MergeOptions = {}): Promise<Tensor> {
  const where = opts.unmerge ? 'sbora.fa.unmerge' : 'sbora.fa.merge';
  const d = faDims(where, p);
  const sign = opts.unmerge ? -1 : 1;
  return mergeInto(ctx, where, p.w0, d.m, d.n, p.out, opts, (enc, target) =>
    regional(ctx, enc, 'fa', { out: target, factor: p.b, idx: p.idx, m: d.m, n: d.n, r: d.r, scale: sign * p.scale }),
  { b: p.b, idx: p.idx.tensor });
}

/** W'[idx[q], :] = W0[idx[q], :] ± s·A[q, :]; O(r·n) work. See MergeOptions. */
export async function sboraFbMerge(ctx: Context, p: SboraFbParams & { out?: Tensor }, opts: MergeOptions = {}): Promise<Tensor> {
  const where = opts.unmerge ? 'sbora.fb.unmerge' : 'sbora.fb.merge';
  const d = fbDims(where, p);
  const sign = opts.unmerge ? -1 : 1;
  return mergeInto(ctx, where, p.w0, d.m, d.n, p.out, opts, (enc, target) =>
    regional(ctx, enc, 'fb', { out: target, factor: p.a, idx: p.idx, m: d.m, n: d.n, r: d.r, scale: sign * p.scale }),
  { a: p.a, idx: p.idx.tensor });
}

// ------------------------------------------------------------------------------- Multi-SBoRA

/** One adapter of a Multi-SBoRA layer: its own index set, factor and scale. */
export type SboraAdapter =
  | { variant: 'fa'; idx: IndexSet; b: Tensor; scale: number }
  | { variant: 'fb'; idx: IndexSet; a: Tensor; scale: number };

/**
 * Merges several adapters of one layer at once (Multi-SBoRA): one copy of W0 (unless inPlace),
 * then each adapter's regional update. FA adapters must have pairwise disjoint column sets and
 * FB adapters pairwise disjoint row sets, so every weight is written by at most one adapter of
 * each variant and the result does not depend on the order.
 */
export async function sboraMultiMerge(
  ctx: Context,
  p: { w0: Tensor; adapters: readonly SboraAdapter[]; out?: Tensor },
  opts: MergeOptions = {},
): Promise<Tensor> {
  const where = opts.unmerge ? 'sbora.multi.unmerge' : 'sbora.multi.merge';
  if (!p || !Array.isArray(p.adapters) || p.adapters.length === 0) {
    throw new PeftError(`${where}: 'adapters' must be a non-empty array of {variant: 'fa', idx, b, scale} or {variant: 'fb', idx, a, scale}`);
  }
  if (!p.w0 || !Array.isArray(p.w0.shape) || p.w0.shape.length !== 2) throw new PeftError(`${where}: 'w0' must be a 2-D Tensor [m, n]`);
  const [m, n] = p.w0.shape;
  const inputs: Record<string, Tensor> = {};
  const dims = p.adapters.map((ad, k) => {
    const name = `adapters[${k}]`;
    if (!ad || (ad.variant !== 'fa' && ad.variant !== 'fb')) throw new PeftError(`${where}: '${name}.variant' must be 'fa' or 'fb'`);
    const d = ad.variant === 'fa' ? faDims(`${where} ${name}`, { ...ad, w0: p.w0 }) : fbDims(`${where} ${name}`, { ...ad, w0: p.w0 });
    inputs[`${name}.${ad.variant === 'fa' ? 'b' : 'a'}`] = ad.variant === 'fa' ? ad.b : ad.a;
    return d;
  });
  checkDisjoint(`${where} (FA column sets)`, p.adapters.filter((a) => a.variant === 'fa').map((a) => a.idx));
  checkDisjoint(`${where} (FB row sets)`, p.adapters.filter((a) => a.variant === 'fb').map((a) => a.idx));
  const sign = opts.unmerge ? -1 : 1;
  return mergeInto(ctx, where, p.w0, m, n, p.out, opts, async (enc, target) => {
    for (const [k, ad] of p.adapters.entries()) {
      const d = dims[k];
      const factor = ad.variant === 'fa' ? ad.b : ad.a;
      await regional(ctx, enc, ad.variant, { out: target, factor, idx: ad.idx, m, n, r: d.r, scale: sign * ad.scale });
    }
  }, inputs);
}

// -------------------------------------------------------------------------------- accounting

export interface SboraAccount {
  variant: SboraVariant;
  /** Trained weights: m·r (FA, B) or r·n (FB, A). */
  trainableParams: number;
  /** The frozen factor: r u32 indices. */
  storedIndices: number;
  indexBytes: number;
  /** The trained factor's gradient, f32. */
  gradientBytes: number;
  /** Activations kept from the forward for the backward, beyond X itself (LoRA keeps Z [T, r]). */
  savedActivationBytes: number;
  /** Scratch the kernels allocate: none (LoRA's backward uses Z and H, [T, r] each). */
  scratchBytes: number;
  /** Everything the adapter adds on the device: factor, its gradient and the indices. */
  deviceBytes: number;
  /** The same for a LoRA adapter of rank r on this layer, for comparison (A, B, dA, dB, Z, H). */
  loraDeviceBytes: number;
  loraTrainableParams: number;
}

/** What an SBoRA adapter of rank r on an [m, n] layer holds, for T tokens per call. */
export function sboraAccounting(variant: SboraVariant, dims: { n: number; m: number; r: number; T?: number }): SboraAccount {
  const where = 'sbora.accounting';
  if (variant !== 'fa' && variant !== 'fb') throw new PeftError(`${where}: 'variant' must be 'fa' or 'fb', got ${String(variant)}`);
  for (const k of ['n', 'm', 'r'] as const) {
    const v = dims?.[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new PeftError(`${where}: '${k}' must be a positive integer, got ${String(v)}`);
  }
  const T = dims.T ?? 1;
  if (!Number.isInteger(T) || T <= 0) throw new PeftError(`${where}: 'T' must be a positive integer, got ${String(dims.T)}`);
  const { n, m, r } = dims;
  const size = variant === 'fa' ? n : m;
  if (r > size) throw new PeftError(`${where}: r = ${r} indices cannot be distinct in [0, ${variant === 'fa' ? 'n' : 'm'}) = [0, ${size})`);
  const trainable = variant === 'fa' ? m * r : r * n;
  const loraTrainable = r * (n + m);
  return {
    variant,
    trainableParams: trainable,
    storedIndices: r,
    indexBytes: 4 * r,
    gradientBytes: 4 * trainable,
    savedActivationBytes: 0,
    scratchBytes: 0,
    deviceBytes: 4 * trainable * 2 + 4 * r,
    loraDeviceBytes: 4 * loraTrainable * 2 + 4 * T * r * 2,
    loraTrainableParams: loraTrainable,
  };
}
