// SBoRA on the GPU (docs/sbora.md; shaders/sbora.wgsl): LoRA with one factor frozen to r
// standard-basis vectors, kept as r distinct u32 indices (./indices.ts). One set of functions
// serves both variants, picked by the argument's `variant`:
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
// Adapter dropout (docs/math.md) is applied inside the kernels from the hashed mask: FA masks
// only the T·r gathered elements of X; neither variant stores a masked copy of X.

import { dropThreshold, type Dropout } from '../../ops/dropout.js';
import { matmul } from '../../ops/matmul.js';
import type { Context } from '../../runtime.js';
import type { Tensor } from '../../tensor.js';
import type { Weight } from '../../base.js';
import { PeftError, checkContext, checkIo, checkMatrix, checkScale, checkTensor, checkWeight, describeValue, weightTensors } from '../../validate.js';
import {
  checkDropoutArg,
  checkOptions,
  mergeInto,
  mergeName,
  withOutputs,
  type BackwardOptions,
  type ForwardOptions,
  type MergeOptions,
  FORWARD_OPTIONS,
  MERGE_OPTIONS,
} from '../common.js';
import { IndexSet, checkDisjoint } from './indices.js';

export type SboraVariant = 'fa' | 'fb';

/** SBoRA-FA: A frozen to the rows idx of I_n, B trained. */
export interface SboraFaArgs {
  variant: 'fa';
  /** [m, n]: an f32 Tensor, or a BaseWeight (f16, NF4) the products decode in registers. */
  w0: Weight;
  b: Tensor; // [m, r], trained
  /** r distinct indices into [0, n): the frozen A's one-hot rows. */
  idx: IndexSet;
  /** s = alpha / r. */
  scale: number;
}

/** SBoRA-FB: B frozen to the columns idx of I_m, A trained. */
export interface SboraFbArgs {
  variant: 'fb';
  /** [m, n]: an f32 Tensor, or a BaseWeight (f16, NF4) the products decode in registers. */
  w0: Weight;
  a: Tensor; // [r, n], trained
  /** r distinct indices into [0, m): the frozen B's one-hot columns. */
  idx: IndexSet;
  scale: number;
}

/** One SBoRA layer's tensors; `variant` says which factor is trained. */
export type SboraArgs = SboraFaArgs | SboraFbArgs;

interface Activations {
  x: Tensor; // [T, n]
  /** Adapter dropout on X (docs/math.md); the backward must get the forward's. */
  dropout?: Dropout;
}

export type SboraForwardArgs = SboraArgs & Activations & { y?: Tensor };

export type SboraBackwardArgs =
  (SboraFaArgs & Activations & { g: Tensor; dx?: Tensor; db?: Tensor }) | (SboraFbArgs & Activations & { g: Tensor; dx?: Tensor; da?: Tensor });

/** What sboraBackward returns: dX and the trained factor's gradient (dB for FA, dA for FB). */
export type SboraGradients<P extends { variant: SboraVariant }> = P extends { variant: 'fa' }
  ? { dx: Tensor; db: Tensor }
  : { dx: Tensor; da: Tensor };

export type SboraMergeArgs = SboraArgs & { out?: Tensor };

export interface SboraDims {
  T: number;
  n: number;
  m: number;
  r: number;
}

const SHADER = 'sbora';

// ------------------------------------------------------------------------------------ tuning

/** Kernel knobs of one context (benchmarks compare them; the defaults follow ctx.tuning). */
export interface SboraTuning {
  /** Invocations per workgroup of every SBoRA kernel: 8 under the CPU tunings, 64 under 'tiled'. */
  lanes: number;
  /** Rows per workgroup of the gather kernel: 32 under the CPU tunings, 8 under 'tiled'. */
  gatherRows: number;
}

const tunings = new WeakMap<Context, Partial<SboraTuning>>();

// The GPU layout goes with matmul's GPU tuning, so the tests reach both layouts on any device.
function gpuLayout(ctx: Context): boolean {
  return ctx.tuning.matmul === 'tiled';
}

/** The knobs the SBoRA kernels use on `ctx` now: the ones set, else the defaults. */
export function sboraTuning(ctx: Context): SboraTuning {
  const set = tunings.get(ctx) ?? {};
  return { lanes: set.lanes ?? (gpuLayout(ctx) ? 64 : 8), gatherRows: set.gatherRows ?? (gpuLayout(ctx) ? 8 : 32) };
}

/**
 * Sets some of `ctx`'s SBoRA knobs (undefined puts one back to its default); returns the knobs
 * now in force. Other contexts are not affected.
 */
export function setSboraTuning(ctx: Context, partial: Partial<SboraTuning>): SboraTuning {
  const where = 'setSboraTuning';
  checkOptions(where, partial, ['lanes', 'gatherRows']);
  if (partial === undefined) throw new PeftError(`${where}: expected an object { lanes?, gatherRows? }`);
  const next = { ...tunings.get(ctx) };
  const limit = Math.min(ctx.limits.maxComputeInvocationsPerWorkgroup, ctx.limits.maxComputeWorkgroupSizeX);
  for (const [k, max] of [
    ['lanes', limit],
    ['gatherRows', 1 << 16],
  ] as const) {
    if (!(k in partial)) continue;
    const v = partial[k];
    if (v === undefined) {
      delete next[k];
      continue;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      throw new PeftError(`${where}: '${k}' must be an integer in [1, ${max}], got ${String(v)}`);
    }
    next[k] = v;
  }
  tunings.set(ctx, next);
  return sboraTuning(ctx);
}

// ---------------------------------------------------------------------------- argument checks

function checkVariant(where: string, p: { variant?: unknown } | undefined): SboraVariant {
  if (!p || typeof p !== 'object')
    throw new PeftError(
      `${where}: expected an argument object {variant: 'fa', w0, b, idx, scale} or {variant: 'fb', w0, a, idx, scale}, got ${describeValue(p)}`,
    );
  if (p.variant !== 'fa' && p.variant !== 'fb') throw new PeftError(`${where}: 'variant' must be 'fa' or 'fb', got ${JSON.stringify(p.variant)}`);
  return p.variant;
}

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

/** Checks w0, idx, the trained factor and scale; returns the sizes (T from x when given). */
function dims(where: string, p: SboraArgs, x?: Tensor, needX = false): SboraDims {
  const [m, n] = checkWeight(where, 'w0', p.w0, '[m, n]');
  let r: number;
  if (p.variant === 'fa') {
    r = checkIndexSet(where, p.idx, n, 'n').r;
    checkTensor(where, 'b', p.b, [m, r], '[m, r]');
  } else {
    r = checkIndexSet(where, p.idx, m, 'm').r;
    checkTensor(where, 'a', p.a, [r, n], '[r, n]');
  }
  checkScale(where, 'scale', p.scale);
  let T = 1;
  if (needX) {
    T = checkMatrix(where, 'x', x, '[T, n]')[0];
    checkTensor(where, 'x', x, [T, n], '[T, n]');
  }
  return { T, n, m, r };
}

function factorOf(p: SboraArgs): Tensor {
  return p.variant === 'fa' ? p.b : p.a;
}

// -------------------------------------------------------------------------------- dispatches

// sbora.wgsl's strip layout (index_add_mm, gather_outer): a workgroup of LANES invocations owns
// SR uniform ranks and LANES·SC per-lane items. Eight lanes fill one AVX2 vector on lavapipe;
// GPUs want wider groups. gather_mm has its own layout: ROWS rows and 4·LANES columns per
// workgroup, 4 consecutive columns per lane.
const SR = 8;
const SC = 4;

function strip(lanes: number, rank: number, laneItems: number): { laneTiles: number; workgroups: number } {
  const laneTiles = Math.ceil(laneItems / (lanes * SC));
  return { laneTiles, workgroups: Math.ceil(rank / SR) * laneTiles };
}

// Which operand of a kernel carries X's dropout mask (see DROP in sbora.wgsl): 1 or 2.
type MaskedOperand = { operand: 1 | 2; d: Dropout };

function dropConstants(drop: MaskedOperand | undefined): { DROP: number } {
  return { DROP: drop ? drop.operand : 0 };
}

function dropParams(drop: MaskedOperand | undefined): { seed: number; threshold: number; keep_scale: number } {
  if (!drop) return { seed: 0, threshold: 0, keep_scale: 1 };
  return { seed: drop.d.seed, threshold: dropThreshold(drop.d.p), keep_scale: 1 / (1 - drop.d.p) };
}

/** out[t, j] = s·Σ_q tokens[t, idx[q]]·factor(j, q) + beta·out[t, j]: FA's forward, FB's dX. */
async function gatherProduct(
  ctx: Context,
  enc: GPUCommandEncoder,
  g: {
    out: Tensor;
    tokens: Tensor;
    factor: Tensor;
    factorRankMajor: boolean;
    idx: IndexSet;
    rows: number;
    cols: number;
    tokenCols: number;
    scale: number;
    beta: number;
    drop?: MaskedOperand;
  },
  label: string,
): Promise<void> {
  const { lanes, gatherRows } = sboraTuning(ctx);
  const colTiles = Math.ceil(g.cols / (4 * lanes));
  // 16-byte stores where every row of the output starts on a multiple of 4 floats.
  const entry = g.cols % 4 === 0 ? 'gather_mm4' : 'gather_mm';
  const constants = { FACTOR_RANK_MAJOR: g.factorRankMajor, LANES: lanes, RANK: g.idx.r, ROWS: gatherRows, ...dropConstants(g.drop) };
  await ctx.prepare([{ shader: SHADER, entry, constants }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry,
    constants,
    params: { rows: g.rows, cols: g.cols, token_cols: g.tokenCols, col_tiles: colTiles, scale: g.scale, beta: g.beta, ...dropParams(g.drop) },
    bindings: [g.idx.tensor, g.out, g.factor, g.tokens],
    workgroups: Math.ceil(g.rows / gatherRows) * colTiles,
    label,
  });
}

/** out[t, idx[q]] += s·Σ_k tokens[t, k]·factor(q, k): FB's forward, FA's dX. */
async function indexAddProduct(
  ctx: Context,
  enc: GPUCommandEncoder,
  g: {
    out: Tensor;
    tokens: Tensor;
    factor: Tensor;
    factorRankMajor: boolean;
    idx: IndexSet;
    rows: number;
    outCols: number;
    depth: number;
    scale: number;
    drop?: MaskedOperand;
  },
  label: string,
): Promise<void> {
  const { lanes } = sboraTuning(ctx);
  const grid = strip(lanes, g.idx.r, g.rows);
  const constants = { FACTOR_RANK_MAJOR: g.factorRankMajor, LANES: lanes, ...dropConstants(g.drop) };
  await ctx.prepare([{ shader: SHADER, entry: 'index_add_mm', constants }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry: 'index_add_mm',
    constants,
    params: { rows: g.rows, out_cols: g.outCols, depth: g.depth, rank: g.idx.r, lane_tiles: grid.laneTiles, scale: g.scale, ...dropParams(g.drop) },
    bindings: [g.idx.tensor, g.out, g.factor, g.tokens],
    workgroups: grid.workgroups,
    label,
  });
}

/** out(j, q) = s·Σ_t dense[t, j]·tokens[t, idx[q]]: the trained factor's gradient. */
async function gatherOuter(
  ctx: Context,
  enc: GPUCommandEncoder,
  g: {
    out: Tensor;
    outRankMajor: boolean;
    dense: Tensor;
    tokens: Tensor;
    idx: IndexSet;
    cols: number;
    T: number;
    tokenCols: number;
    scale: number;
    drop?: MaskedOperand;
  },
  label: string,
): Promise<void> {
  const { lanes } = sboraTuning(ctx);
  const grid = strip(lanes, g.idx.r, g.cols);
  const constants = { OUT_RANK_MAJOR: g.outRankMajor, LANES: lanes, ...dropConstants(g.drop) };
  await ctx.prepare([{ shader: SHADER, entry: 'gather_outer', constants }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry: 'gather_outer',
    constants,
    params: { cols: g.cols, tokens: g.T, rank: g.idx.r, token_cols: g.tokenCols, lane_tiles: grid.laneTiles, scale: g.scale, ...dropParams(g.drop) },
    bindings: [g.idx.tensor, g.out, g.dense, g.tokens],
    workgroups: grid.workgroups,
    label,
  });
}

/** target += scale·ΔW on the r columns (FA) or rows (FB) only; scale < 0 unmerges. */
async function mergeRegion(ctx: Context, enc: GPUCommandEncoder, target: Tensor, p: SboraArgs, scale: number): Promise<void> {
  const [m, n] = target.shape;
  const r = p.idx.r;
  const entry = p.variant === 'fa' ? 'merge_cols' : 'merge_rows';
  await ctx.prepare([{ shader: SHADER, entry }]);
  ctx.dispatch(enc, {
    shader: SHADER,
    entry,
    params: { rows: m, cols: n, rank: r, scale },
    bindings: [p.idx.tensor, target, factorOf(p)],
    workgroups: Math.ceil((p.variant === 'fa' ? m * r : r * n) / 64),
    label: `sbora.${entry}`,
  });
}

function clear(enc: GPUCommandEncoder, t: Tensor): void {
  enc.clearBuffer(t.buffer, 0, t.byteLength);
}

// ---------------------------------------------------------------------------- forward, backward

/**
 * FA: Y = X W0ᵀ + s·X[:, idx] Bᵀ.  FB: Y = X W0ᵀ, then Y[:, idx[q]] += s·(X Aᵀ)[:, q].
 * With adapterOnly, the adapter term alone (FB: zero outside the columns idx).
 */
export async function sboraForward(ctx: Context, p: SboraForwardArgs, opts: ForwardOptions = {}): Promise<{ y: Tensor }> {
  const variant = checkVariant('sbora.forward', p);
  const where = `sbora.${variant}.forward`;
  checkContext(where, ctx);
  checkOptions(where, opts, FORWARD_OPTIONS);
  const d = dims(where, p, p.x, true);
  if (p.y) checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]');
  checkIo(where, ctx, { y: p.y }, { x: p.x, ...weightTensors('w0', p.w0), [variant === 'fa' ? 'b' : 'a']: factorOf(p), idx: p.idx.tensor });
  const dropout = checkDropoutArg(where, p.dropout);
  return withOutputs(ctx, where, async (made) => {
    const y = made.output('y', p.y, [d.T, d.m], '[T, m]', `sbora.${variant}.y`);
    // Dropout masks X as the adapter reads it (operand 1): FA's gathered X[:, idx], FB's X rows.
    const drop: MaskedOperand | undefined = dropout && { operand: 1, d: dropout };
    await ctx.encode(opts.encoder, async (enc) => {
      // The base product on the very matmul kernel LoRA's uses, then the adapter term on top.
      if (p.variant === 'fa') {
        if (!opts.adapterOnly) await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true }, enc);
        await gatherProduct(
          ctx,
          enc,
          {
            out: y,
            tokens: p.x,
            factor: p.b,
            factorRankMajor: false,
            idx: p.idx,
            rows: d.T,
            cols: d.m,
            tokenCols: d.n,
            scale: p.scale,
            beta: opts.adapterOnly ? 0 : 1,
            drop,
          },
          'sbora.fa.forward.adapter',
        );
      } else {
        if (opts.adapterOnly) clear(enc, y);
        else await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true }, enc);
        await indexAddProduct(
          ctx,
          enc,
          { out: y, tokens: p.x, factor: p.a, factorRankMajor: true, idx: p.idx, rows: d.T, outCols: d.m, depth: d.n, scale: p.scale, drop },
          'sbora.fb.forward.adapter',
        );
      }
    });
    return { y };
  });
}

/**
 * dX and the trained factor's gradient (dB for FA, dA for FB) of L = sum(Y ⊙ G); with
 * adapterOnly, dX is the adapter's part alone.
 */
export async function sboraBackward<P extends SboraBackwardArgs>(ctx: Context, p: P, opts: BackwardOptions = {}): Promise<SboraGradients<P>> {
  const variant = checkVariant('sbora.backward', p);
  const where = `sbora.${variant}.backward`;
  checkContext(where, ctx);
  checkOptions(where, opts, FORWARD_OPTIONS);
  const q = p as SboraBackwardArgs;
  const d = dims(where, q, q.x, true);
  checkTensor(where, 'g', q.g, [d.T, d.m], '[T, m]');
  if (q.dx) checkTensor(where, 'dx', q.dx, [d.T, d.n], '[T, n]');
  const dropout = checkDropoutArg(where, q.dropout);
  if (q.variant === 'fa') {
    if (q.db) checkTensor(where, 'db', q.db, [d.m, d.r], '[m, r]');
    checkIo(where, ctx, { dx: q.dx, db: q.db }, { x: q.x, g: q.g, ...weightTensors('w0', q.w0), b: q.b, idx: q.idx.tensor });
    return withOutputs(ctx, where, async (made) => {
      const dx = made.output('dx', q.dx, [d.T, d.n], '[T, n]', `sbora.${variant}.dx`);
      const db = made.output('db', q.db, [d.m, d.r], '[m, r]', 'sbora.fa.db');
      await ctx.encode(opts.encoder, async (enc) => {
        if (opts.adapterOnly) clear(enc, dx);
        else await matmul(ctx, { a: q.g, b: q.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
        // (G B)[:, q] lands in input column idx[q]: the index_add that replaces H A. With dropout,
        // X's mask lands on the written dX elements (operand 2) and on the gathered X (operand 1).
        const written: MaskedOperand | undefined = dropout && { operand: 2, d: dropout };
        const gathered: MaskedOperand | undefined = dropout && { operand: 1, d: dropout };
        await indexAddProduct(
          ctx,
          enc,
          {
            out: dx,
            tokens: q.g,
            factor: q.b,
            factorRankMajor: false,
            idx: q.idx,
            rows: d.T,
            outCols: d.n,
            depth: d.m,
            scale: q.scale,
            drop: written,
          },
          'sbora.fa.dx',
        );
        await gatherOuter(
          ctx,
          enc,
          { out: db, outRankMajor: false, dense: q.g, tokens: q.x, idx: q.idx, cols: d.m, T: d.T, tokenCols: d.n, scale: q.scale, drop: gathered },
          'sbora.fa.db',
        );
      });
      return { dx, db } as SboraGradients<P>;
    });
  }
  if (q.da) checkTensor(where, 'da', q.da, [d.r, d.n], '[r, n]');
  checkIo(where, ctx, { dx: q.dx, da: q.da }, { x: q.x, g: q.g, ...weightTensors('w0', q.w0), a: q.a, idx: q.idx.tensor });
  return withOutputs(ctx, where, async (made) => {
    const dx = made.output('dx', q.dx, [d.T, d.n], '[T, n]', `sbora.${variant}.dx`);
    const da = made.output('da', q.da, [d.r, d.n], '[r, n]', 'sbora.fb.da');
    // The adapter's share of dX is masked (operand 2 of gather_mm), and so is X in dA (operand 2
    // of gather_outer, where X is the dense operand).
    const drop: MaskedOperand | undefined = dropout && { operand: 2, d: dropout };
    await ctx.encode(opts.encoder, async (enc) => {
      if (!opts.adapterOnly) await matmul(ctx, { a: q.g, b: q.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
      await gatherProduct(
        ctx,
        enc,
        {
          out: dx,
          tokens: q.g,
          factor: q.a,
          factorRankMajor: true,
          idx: q.idx,
          rows: d.T,
          cols: d.n,
          tokenCols: d.m,
          scale: q.scale,
          beta: opts.adapterOnly ? 0 : 1,
          drop,
        },
        'sbora.fb.dx.adapter',
      );
      await gatherOuter(
        ctx,
        enc,
        { out: da, outRankMajor: true, dense: q.x, tokens: q.g, idx: q.idx, cols: d.n, T: d.T, tokenCols: d.m, scale: q.scale, drop },
        'sbora.fb.da',
      );
    });
    return { dx, da } as SboraGradients<P>;
  });
}

// ---------------------------------------------------------------------------------- merging

/**
 * FA: W'[:, idx[q]] = W0[:, idx[q]] ± s·B[:, q] (O(m·r) work).  FB: W'[idx[q], :] = W0[idx[q], :]
 * ± s·A[q, :] (O(r·n)). With inPlace only those r columns or rows of W0 are written; deltaOnly
 * writes ΔW (zero outside the region); unmerge subtracts.
 */
export function sboraMerge(ctx: Context, p: SboraMergeArgs & { w0: Tensor; out?: Tensor }, opts?: MergeOptions): Promise<Tensor>;
export function sboraMerge(ctx: Context, p: SboraMergeArgs & { out?: Tensor }, opts?: MergeOptions & { inPlace?: false }): Promise<Tensor>;
/** A BaseWeight W0 merged inPlace, or into a BaseWeight `out`, returns that BaseWeight. */
export function sboraMerge(ctx: Context, p: SboraMergeArgs, opts?: MergeOptions): Promise<Weight>;
export async function sboraMerge(ctx: Context, p: SboraMergeArgs, opts: MergeOptions = {}): Promise<Weight> {
  const variant = checkVariant('sbora.merge', p);
  const where = mergeName(`sbora.${variant}`, opts ?? {});
  checkContext(where, ctx);
  checkOptions(where, opts, MERGE_OPTIONS);
  dims(where, p);
  const inputs = { [variant === 'fa' ? 'b' : 'a']: factorOf(p), idx: p.idx.tensor };
  return mergeInto(ctx, where, p.w0, p.out, opts, inputs, (enc, target, sign) => mergeRegion(ctx, enc, target, p, sign * p.scale));
}

// ------------------------------------------------------------------------------- Multi-SBoRA

/** One adapter of a Multi-SBoRA layer: its own variant, index set, factor and scale. */
export type SboraAdapter = Omit<SboraFaArgs, 'w0'> | Omit<SboraFbArgs, 'w0'>;

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
  const where = mergeName('sbora.multi', opts ?? {});
  checkContext(where, ctx);
  checkOptions(where, opts, MERGE_OPTIONS);
  if (!p || typeof p !== 'object') throw new PeftError(`${where}: expected an argument object { w0, adapters, out? }, got ${describeValue(p)}`);
  if (!Array.isArray(p.adapters) || p.adapters.length === 0) {
    throw new PeftError(`${where}: 'adapters' must be a non-empty array of {variant: 'fa', idx, b, scale} or {variant: 'fb', idx, a, scale}`);
  }
  checkMatrix(where, 'w0', p.w0, '[m, n]');
  const inputs: Record<string, Tensor> = {};
  const layers = p.adapters.map((ad, k): SboraArgs => {
    const name = `adapters[${k}]`;
    if (!ad || (ad.variant !== 'fa' && ad.variant !== 'fb')) throw new PeftError(`${where}: '${name}.variant' must be 'fa' or 'fb'`);
    const layer = { ...ad, w0: p.w0 } as SboraArgs;
    dims(`${where} ${name}`, layer);
    inputs[`${name}.${ad.variant === 'fa' ? 'b' : 'a'}`] = factorOf(layer);
    return layer;
  });
  checkDisjoint(
    `${where} (FA column sets)`,
    p.adapters.filter((a) => a.variant === 'fa').map((a) => a.idx),
  );
  checkDisjoint(
    `${where} (FB row sets)`,
    p.adapters.filter((a) => a.variant === 'fb').map((a) => a.idx),
  );
  return mergeInto(ctx, where, p.w0, p.out, opts, inputs, async (enc, target, sign) => {
    for (const layer of layers) await mergeRegion(ctx, enc, target, layer, sign * layer.scale);
  });
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
