// LoRMA on the GPU (docs/lorma.md; the math in docs/math.md): a multiplicative adapter W' = M·W0
// (pre, d = m) or W0·M (post, d = n), with M built from B [d, r] and A [r, d]:
//
//   plus  M = s·B A + I          none  M = s·B A          pi  M = s·π(B A), π rotating row i right by i
//
// The layer output is Y = X W'ᵀ. Pre: U = X W0ᵀ once, then Y = U Mᵀ. Post: V = X Mᵀ, Y = V W0ᵀ.
//
// plus / none   M − [I] has rank r, so the layer is a LoRA with A' = A W0 (pre) or B' = W0 B
//               (post): X W0ᵀ is computed once and fused with the adapter term (see below).
// pi            forward   pre: U = X W0ᵀ, Y = s·U π(BA)ᵀ     post: V = s·X π(BA)ᵀ, Y = V W0ᵀ
//               backward  pre: dU = s·G π(BA), dX = dU W0   post: dV = G W0, dX = s·dV π(BA)
//               two ways to apply π(BA), chosen by lormaPiPath (a call's piPath, else the
//               context's setLormaTuning):
//               fft    d a power of two: π(BA) = Σ_q diag(B[:, q])·circulant(A[q, :]), so each row
//                      is r cyclic correlations, O(T·r·d log d) by batched FFTs (shaders/fft.wgsl)
//                      and pointwise spectra kernels; extra memory O(T·r·d) (the spectra)
//               tiles  any d: shaders/lorma.wgsl generates tiles of π(B A) on the fly, O(T·d²);
//                      dA, dB from dP, contracted strip by strip (never stored); extra O(d·r)
//               No d×d buffer is ever allocated (forward, backward or merge); the merge uses tiles.
// merge         W' = M W0 or W0 M on the device (the output is the only m×n buffer)
//
// There is no adapter term apart from the base product (W' = M·W0 mixes them), so the forward and
// backward refuse `adapterOnly` rather than return the whole layer under that name.

import type { Context } from '../../runtime.js';
import { Tensor } from '../../tensor.js';
import { BaseWeight, type Weight } from '../../base.js';
import { dequantize } from '../../quant/index.js';
import { matmul } from '../../ops/matmul.js';
import { fftBatched, fftStride, fftTwiddles, isPowerOfTwo } from '../../ops/fft.js';
import { kaimingUniform } from '../../random.js';
import {
  PeftError,
  checkContext,
  checkDim,
  checkIo,
  checkMatrix,
  checkScale,
  checkTensor,
  checkWeight,
  describeValue,
  weightTensors,
} from '../../validate.js';
import { checkOptions, mergeInto, withOutputs, type BackwardOptions, type ForwardOptions, type MergeOptions } from '../common.js';

/** pi: M = s·π(BA) (LoRMA_π); plus: M = I + s·BA (LoRMA₊); none: M = s·BA (the paper's naive form). */
export type LormaVariant = 'pi' | 'plus' | 'none';
/** 'pre': W' = M W0, d = m (the paper's default); 'post': W' = W0 M, d = n. */
export type LormaOrder = 'pre' | 'post';
/** How LoRMA_π applies π(BA): 'auto' picks by d (LORMA_FFT_MIN_D), or force 'tiles' or 'fft'. */
export type LormaPiChoice = 'auto' | 'tiles' | 'fft';
/** The kernels a LoRMA_π call actually runs. */
export type LormaPiPath = 'tiles' | 'fft';

export const LORMA_VARIANTS: readonly LormaVariant[] = ['pi', 'plus', 'none'];
export const LORMA_ORDERS: readonly LormaOrder[] = ['pre', 'post'];
export const LORMA_PI_CHOICES: readonly LormaPiChoice[] = ['auto', 'tiles', 'fft'];

interface LormaCommon {
  /** [m, n]: an f32 Tensor, or a BaseWeight (f16, NF4) the products decode in registers. */
  w0: Weight;
  a: Tensor; // [r, d]
  b: Tensor; // [d, r]
  /** s = alpha / r. */
  scale: number;
  /** Default 'pre'. */
  order?: LormaOrder;
}

export interface LormaPiParams extends LormaCommon {
  variant: 'pi';
  /** This call's path, instead of the context's (setLormaTuning). */
  piPath?: LormaPiChoice;
}

export interface LormaLowRankParams extends LormaCommon {
  variant: 'plus' | 'none';
}

export type LormaParams = LormaPiParams | LormaLowRankParams;

/**
 * What the forward keeps for the backward differs by variant: U = X W0ᵀ [T, m] (pi, pre) and the
 * FFT path's correlations c, or Z = X A'ᵀ [T, r] (plus, none).
 */
export type LormaForwardArgs =
  (LormaPiParams & { x: Tensor; y?: Tensor; u?: Tensor; c?: Tensor }) | (LormaLowRankParams & { x: Tensor; y?: Tensor; z?: Tensor });

export type LormaBackwardArgs =
  | (LormaPiParams & { x: Tensor; g: Tensor; u?: Tensor; c?: Tensor; dx?: Tensor; da?: Tensor; db?: Tensor })
  | (LormaLowRankParams & { x: Tensor; g: Tensor; z?: Tensor; dx?: Tensor; da?: Tensor; db?: Tensor });

export type LormaMergeArgs = LormaParams & { out?: Tensor };

// Every field any variant takes, for the checks that catch a JavaScript caller's mix-up.
interface AnyArgs extends LormaCommon {
  variant: LormaVariant;
  piPath?: LormaPiChoice;
  x?: Tensor;
  u?: Tensor;
  z?: Tensor;
  c?: Tensor;
}

export interface LormaDims {
  T: number;
  n: number;
  m: number;
  r: number;
  d: number;
  order: LormaOrder;
  variant: LormaVariant;
  /** pi: the caller's piPath, else the context's choice. */
  piChoice: LormaPiChoice;
}

// ------------------------------------------------------------------ tuning (per context)

export interface LormaTuning {
  /** LoRMA_π's path for calls and layers that do not name one. Default 'auto'. */
  pi: LormaPiChoice;
}

// Owned here rather than in the runtime: only this family reads it.
const tunings = new WeakMap<Context, LormaTuning>();

/** The context's LoRMA settings (a copy). */
export function lormaTuning(ctx: Context): LormaTuning {
  return { pi: 'auto', ...tunings.get(ctx) };
}

/** Changes the context's LoRMA settings, e.g. setLormaTuning(ctx, { pi: 'tiles' }). */
export function setLormaTuning(ctx: Context, tuning: Partial<LormaTuning>): void {
  const where = 'setLormaTuning';
  checkOptions(where, tuning, ['pi']);
  if (tuning.pi !== undefined) checkPiChoice(where, 'pi', tuning.pi);
  tunings.set(ctx, { ...lormaTuning(ctx), ...tuning });
}

function checkPiChoice(where: string, name: string, v: unknown): LormaPiChoice {
  if (!LORMA_PI_CHOICES.includes(v as LormaPiChoice)) {
    throw new PeftError(`${where}: '${name}' is ${JSON.stringify(v)}, expected 'auto', 'tiles' or 'fft'`);
  }
  return v as LormaPiChoice;
}

// ------------------------------------------------------------------ argument checks

function dims(ctx: Context, where: string, p: LormaParams, x?: Tensor, xName = 'x', needX = false): LormaDims {
  if (!p || typeof p !== 'object') throw new PeftError(`${where}: expected an argument object {w0, a, b, scale, variant}, got ${describeValue(p)}`);
  const any = p as AnyArgs & { inflation?: unknown };
  if (any.variant === undefined && any.inflation !== undefined) {
    throw new PeftError(`${where}: 'inflation' is now 'variant' (one of ${LORMA_VARIANTS.map((s) => `'${s}'`).join(', ')})`);
  }
  if (!LORMA_VARIANTS.includes(any.variant)) {
    throw new PeftError(`${where}: 'variant' must be one of ${LORMA_VARIANTS.map((s) => `'${s}'`).join(', ')}, got ${JSON.stringify(any.variant)}`);
  }
  const order = p.order ?? 'pre';
  if (!LORMA_ORDERS.includes(order)) throw new PeftError(`${where}: 'order' must be 'pre' or 'post', got ${JSON.stringify(p.order)}`);
  if (any.piPath !== undefined && any.variant !== 'pi')
    throw new PeftError(`${where}: 'piPath' belongs to the pi variant; ${any.variant} takes none`);
  const piChoice = any.piPath === undefined ? lormaTuning(ctx).pi : checkPiChoice(where, 'piPath', any.piPath);
  const [m, n] = checkWeight(where, 'w0', p.w0, '[m, n]');
  const d = order === 'pre' ? m : n;
  const dName = order === 'pre' ? `d = m = ${m} for pre-multiplication` : `d = n = ${n} for post-multiplication`;
  const [r] = checkMatrix(where, 'a', p.a, `[r, d] (${dName})`);
  if (p.a.shape[1] !== d) {
    throw new PeftError(`${where}: 'a' has shape [${p.a.shape.join(', ')}], expected [r, d] = [${r}, ${d}] (${dName})`);
  }
  checkTensor(where, 'a', p.a, [r, d], '[r, d]');
  if (Tensor.isTensor(p.b) && p.b.shape.length === 2 && p.b.shape[0] !== d) {
    throw new PeftError(`${where}: 'b' has shape [${p.b.shape.join(', ')}], expected [d, r] = [${d}, ${r}] (${dName})`);
  }
  checkTensor(where, 'b', p.b, [d, r], '[d, r]');
  if (r > d) throw new PeftError(`${where}: rank r = ${r} is above d = ${d} (${dName})`);
  checkScale(where, 'scale', p.scale);
  let T = 1;
  if (needX) T = checkMatrix(where, xName, x, `[T, ${xName === 'x' ? 'n' : 'm'}]`)[0];
  return { T, n, m, r, d, order, variant: any.variant, piChoice };
}

function refuseAdapterOnly(where: string, opts: { adapterOnly?: boolean }): void {
  if (opts.adapterOnly) {
    throw new PeftError(`${where}: 'adapterOnly' is not supported: LoRMA's W' = M·W0 has no adapter term apart from the base product`);
  }
}

// ------------------------------------------------------------------ π kernels

// 128 invocations: each generated tile of π(BA) serves BM = 128 tokens (measured on lavapipe:
// about 1.5× less CPU time than 64 tokens at r = 8).
const MIX_WG = 8;
const MIX_WG_M = 16;
const MIX_BM = MIX_WG_M * 8;
const MIX_BN = MIX_WG * 8;

function mixConstants(trans: boolean, inT: boolean, outT: boolean) {
  return { TRANS: trans, IN_T: inT, OUT_T: outT, WG_M: MIX_WG_M, WG_N: MIX_WG };
}

/** out[rows, d] = s·op(In) M'ᵀ (trans) or s·op(In) M' (+ beta·out), M' = π(B A) generated on the fly. */
async function piMix(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: {
    input: Tensor;
    b: Tensor;
    a: Tensor;
    out: Tensor;
    rows: number;
    d: number;
    r: number;
    s: number;
    trans: boolean;
    inT?: boolean;
    outT?: boolean;
    beta?: number;
  },
): Promise<void> {
  const constants = mixConstants(a.trans, !!a.inT, !!a.outT);
  await ctx.prepare([{ shader: 'lorma', entry: 'mix', constants }]);
  const colTiles = Math.ceil(a.d / MIX_BN);
  ctx.dispatch(enc, {
    shader: 'lorma',
    entry: 'mix',
    constants,
    params: { rows: a.rows, d: a.d, r: a.r, col_tiles: colTiles, scale: a.s, beta: a.beta ?? 0 },
    bindings: [a.input, a.b, a.a, a.out],
    workgroups: Math.ceil(a.rows / MIX_BM) * colTiles,
    label: `lorma.pi.mix ${a.rows}x${a.d}${a.trans ? '' : ' T'}`,
  });
}

/**
 * dB = dP Aᵀ, dA = Bᵀ dP with dP[i, j] = s·Σ_t dOut[t, i] In[t, (i + j) mod d] = dM'[i, (i + j) mod d],
 * dM' = s·dOutᵀ In, made a strip of w columns at a time by matmul (so GPUs get its tiled kernel)
 * and folded into dB and dA at once; neither dP nor dM' is ever stored whole.
 */
async function piGrads(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: { input: Tensor; dOut: Tensor; b: Tensor; a: Tensor; da: Tensor; db: Tensor; T: number; d: number; r: number; s: number },
): Promise<void> {
  const { T, d, r } = a;
  // Strip width: at most 64 columns and always fewer than d, so no strip is ever d×d.
  const w = Math.max(1, Math.min(64, Math.ceil(d / 2)));
  await ctx.prepare([
    { shader: 'lorma', entry: 'strip' },
    { shader: 'lorma', entry: 'contract' },
  ]);
  const stripIn = ctx.scratch('lorma.strip', [T, w]);
  const dm = ctx.scratch('lorma.dmstrip', [d, w]);
  for (let col0 = 0; col0 < d; col0 += w) {
    const width = Math.min(w, d - col0);
    ctx.dispatch(enc, {
      shader: 'lorma',
      entry: 'strip',
      params: { tokens: T, d, col0, width },
      bindings: [a.input, stripIn],
      workgroups: Math.ceil((T * width) / 64),
      label: 'lorma.pi.strip',
    });
    await matmul(ctx, { a: a.dOut, b: stripIn, c: dm, M: d, N: width, K: T, transA: true, alpha: a.s }, enc);
    ctx.dispatch(enc, {
      shader: 'lorma',
      entry: 'contract',
      params: { d, r, col0, width, overwrite: col0 === 0 ? 1 : 0 },
      bindings: [dm, a.b, a.a, a.db, a.da],
      workgroups: Math.ceil((2 * d * r) / 64),
      label: 'lorma.pi.contract',
    });
  }
}

// ------------------------------------------------------------------ π by FFT (power-of-two d)

/**
 * Smallest power-of-two d for which the 'auto' LoRMA_π path takes the FFTs. Measured on
 * lavapipe (docs/lorma.md), whole step, r = 8: at d = 64 the tiles take half the time of the FFT
 * path's 26 dispatches, at d = 128 the two are even (T = 512) or the FFTs ahead (T = 64), from
 * d = 256 on the FFTs win (1.5× at d = 256, 2× at 512, 4–5× at 1024).
 */
export const LORMA_FFT_MIN_D = 128;

/**
 * The path `choice` leads to for a layer of this d, without a device: 'fft' (r cyclic correlations
 * per token, O(T·r·d log d)) needs d a power of two ≥ 8 (its kernels run a whole radix-8 stage)
 * and at most `maxGrid` (d is a workgroup-grid dimension of the spectra kernels); 'tiles'
 * (π(BA) generated tile by tile, O(T·d²)) takes any d.
 */
export function piPathFor(choice: LormaPiChoice, d: number, maxGrid = Infinity): LormaPiPath {
  if (choice === 'tiles' || d < 8 || !isPowerOfTwo(d) || d > maxGrid) return 'tiles';
  if (choice === 'fft') return 'fft';
  return d >= LORMA_FFT_MIN_D ? 'fft' : 'tiles';
}

/**
 * Which LoRMA_π kernels a layer of this d runs on this context: `choice` (a call's or layer's
 * piPath) or else the context's setting (setLormaTuning). The merge always uses the tiles.
 */
export function lormaPiPath(ctx: Context, d: number, choice?: LormaPiChoice): LormaPiPath {
  const c = choice ?? lormaTuning(ctx).pi;
  // 'auto' on a GPU takes the tiles: on an H200 (GPU kit, 2026-12-04, T = 512, d = 1024, r = 8)
  // the tiled step took 2.6–3.6 ms against the FFT path's 12.5 ms, whose many short dispatches a
  // GPU cannot fill; LORMA_FFT_MIN_D was measured on lavapipe, where the FFT wins 4–5×.
  if (c === 'auto' && !ctx.adapterInfo.isCpu) return 'tiles';
  return piPathFor(c, d, ctx.limits.maxComputeWorkgroupsPerDimension);
}

const FFT_ENTRIES = [
  'fft_pack',
  'fft_scan',
  'fft_split',
  'fft_unpack',
  'fft_corr_spec',
  'fft_mix_out',
  'fft_pack_h',
  'fft_du_spec',
  'fft_da_spec',
  'fft_db',
] as const;
type FftEntry = (typeof FFT_ENTRIES)[number];

interface FftDims {
  T: number;
  d: number;
  r: number;
  s: number;
}

/** A token chunk: W holds the spectra of tokens t0 .. t0 + n − 1 only. */
interface Chunk {
  t0: number;
  n: number;
}

// Workgroups of the spectra kernels (shaders/lorma.wgsl): 64 lanes, rows in blocks of FQ_TB = 16,
// bins walked by at most 64 y workgroups.
const lanes = (n: number) => Math.ceil(n / 64);
const rowBlocks = (n: number) => Math.ceil(n / 16);
const binSteps = (d: number) => Math.min(d, 64);

/**
 * Tokens per chunk of the spectra W (⌈r/2⌉·chunk transforms of d): W stays within T·d floats, the
 * size of one activation, so that a step's extra memory is a few activations whatever r is (all of
 * W at once was T·r·d floats, 16 MiB at d = 1024, T = 512, r = 8). Even, so that token pairs,
 * which share a transform in In's packed spectra, never straddle two chunks.
 */
export function lormaFftChunk(T: number, r: number): number {
  return Math.min(T, Math.max(2, 2 * Math.floor(T / (4 * Math.ceil(r / 2)))));
}

function chunks(T: number, r: number): Chunk[] {
  const size = lormaFftChunk(T, r);
  const out: Chunk[] = [];
  for (let t0 = 0; t0 < T; t0 += size) out.push({ t0, n: Math.min(size, T - t0) });
  return out;
}

// Sections of the non-finite flags (shaders/lorma.wgsl, `bad`): which input fft_pack flags, and
// which output fft_unpack writes.
const FLAG_IN = 0;
const FLAG_A = 1;
const UNPACK_DIN = 0;
const UNPACK_DA = 1;

/**
 * The flags of non-finite input rows, [T + 1 | r + 1 | T + 1 | r + 1] u32 for In, A, dOut, B:
 * cleared at the start of every call, set by the kernels that feed transforms, read by those that
 * write outputs, so NaN and ±Inf reach exactly the outputs the reference has them in.
 */
function fftFlags(ctx: Context, T: number, r: number): Tensor {
  return ctx.scratch('lorma.fft.bad', [2 * T + 2 * r + 4], 'u32');
}

/** `grid`: workgroups [x, y], or a 1-D count of invocations (split into workgroups of 64). */
function fftDispatch(
  ctx: Context,
  enc: GPUCommandEncoder,
  entry: FftEntry,
  dm: FftDims,
  extra: { rows?: number; scale?: number; flags?: number; chunk?: Chunk; accumulate?: boolean },
  bindings: Tensor[],
  grid: number | [number, number],
): void {
  const { T, d, r } = dm;
  const rows = extra.rows ?? 0;
  const pairs = Math.ceil(r / 2);
  const rowPairs = Math.ceil(rows / 2);
  const chunk = extra.chunk ?? { t0: 0, n: T };
  const params = {
    tokens: T,
    d,
    r,
    log2d: Math.log2(d),
    pairs,
    rows,
    row_pairs: rowPairs,
    scale: extra.scale ?? 1,
    w_stride: fftStride(pairs * chunk.n),
    packed_stride: fftStride(rowPairs),
    flags: extra.flags ?? 0,
    nan_bits: 0x7fc00000,
    t0: chunk.t0,
    chunk: chunk.n,
    in_stride: fftStride(Math.ceil(T / 2)),
    accumulate: extra.accumulate ? 1 : 0,
  };
  const workgroups = typeof grid === 'number' ? lanes(grid) : grid;
  ctx.dispatch(enc, { shader: 'lorma', entry, params, bindings, workgroups, label: `lorma.pi.${entry}` });
}

/** F A [d][r] (split, bins bit-reversed), and clears the non-finite flags: the first step of every call. */
async function fftFactorSpectrum(ctx: Context, enc: GPUCommandEncoder, dm: FftDims, a: Tensor): Promise<Tensor> {
  const { T, d, r } = dm;
  await ctx.prepare(FFT_ENTRIES.map((entry) => ({ shader: 'lorma', entry })));
  const np = Math.ceil(r / 2);
  const pa = ctx.scratch('lorma.fft.pa', [d, fftStride(np), 2]);
  const fa = ctx.scratch('lorma.fft.fa', [d, r, 2]);
  const bad = fftFlags(ctx, T, r);
  enc.clearBuffer(bad.buffer, 0, bad.byteLength);
  fftDispatch(ctx, enc, 'fft_pack', dm, { rows: r, flags: FLAG_A }, [a, pa, bad], [lanes(d), rowBlocks(np)]);
  await fftBatched(ctx, enc, { data: pa, n: d, nb: np, stride: fftStride(np), inverse: false });
  fftDispatch(ctx, enc, 'fft_split', dm, { rows: r }, [pa, fa], [lanes(np), binSteps(d)]);
  return fa;
}

/**
 * In's packed spectra Z [d][fftStride(⌈T/2⌉)], Z_u = F(In_2u + i·In_2u+1) (bins bit-reversed), into
 * `into` (the caller's `c`) or a scratch tensor; with `kept`, the forward's Z is taken as it is and
 * only In's non-finite rows are flagged again.
 */
async function fftInputSpectra(ctx: Context, enc: GPUCommandEncoder, dm: FftDims, input: Tensor, into?: Tensor, kept = false): Promise<Tensor> {
  const { T, d, r } = dm;
  const bad = fftFlags(ctx, T, r);
  if (kept && into) {
    fftDispatch(ctx, enc, 'fft_scan', dm, { rows: T, flags: FLAG_IN }, [input, bad], [lanes(d), rowBlocks(T)]);
    return into;
  }
  const nbt = Math.ceil(T / 2);
  const zin = into ?? ctx.scratch('lorma.fft.pin', lormaCorrelationsShape(T, d, r));
  fftDispatch(ctx, enc, 'fft_pack', dm, { rows: T, flags: FLAG_IN }, [input, zin, bad], [lanes(d), rowBlocks(nbt)]);
  await fftBatched(ctx, enc, { data: zin, n: d, nb: nbt, stride: fftStride(nbt), inverse: false });
  return zin;
}

/**
 * The shape of what the FFT path's forward keeps for its backward (lormaForward's `c`): In's packed
 * spectra, [d, fftStride(⌈T/2⌉), 2] — ⌈T/2⌉ complex values per bin (two real rows per transform),
 * padded a little (src/ops/fft.ts); about T·d floats, the size of U. (`r` is not used: the
 * argument list is that of the correlations this once held, T·r·d floats.)
 */
export function lormaCorrelationsShape(T: number, d: number, _r?: number): [number, number, number] {
  return [d, fftStride(Math.ceil(T / 2)), 2];
}

/**
 * W = d·(C_2p + i·C_2p+1) [d][⌈r/2⌉·chunk] complex for the chunk's tokens, C_q[t, i] = Σ_j A[q, j]·In[t, (i + j) mod d],
 * but for the inverse transform's last stage, which the kernel that reads W runs (fft_mix_out, fft_db).
 */
async function fftCorrelations(ctx: Context, enc: GPUCommandEncoder, dm: FftDims, fa: Tensor, zin: Tensor, w: Tensor, ch: Chunk): Promise<void> {
  const nb = Math.ceil(dm.r / 2) * ch.n;
  fftDispatch(ctx, enc, 'fft_corr_spec', dm, { chunk: ch }, [fa, zin, w], [lanes(ch.n), binSteps(dm.d)]);
  await fftBatched(ctx, enc, { data: w, n: dm.d, nb, stride: fftStride(nb), inverse: true, partial: true });
}

function spectraChunk(ctx: Context, T: number, d: number, r: number): Tensor {
  return ctx.scratch('lorma.fft.w', [d, fftStride(Math.ceil(r / 2) * lormaFftChunk(T, r)), 2]);
}

/** out = s·In·π(BA)ᵀ by r cyclic correlations per row of In (the forward mixing), a token chunk at a time. */
async function piFftMixT(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: { input: Tensor; b: Tensor; a: Tensor; out: Tensor; c?: Tensor; T: number; d: number; r: number; s: number },
): Promise<void> {
  const dm = { T: a.T, d: a.d, r: a.r, s: a.s };
  const fa = await fftFactorSpectrum(ctx, enc, dm, a.a);
  const zin = await fftInputSpectra(ctx, enc, dm, a.input, a.c);
  const bad = fftFlags(ctx, a.T, a.r);
  const w = spectraChunk(ctx, a.T, a.d, a.r);
  const tw = fftTwiddles(ctx, a.d);
  for (const ch of chunks(a.T, a.r)) {
    await fftCorrelations(ctx, enc, dm, fa, zin, w, ch);
    fftDispatch(ctx, enc, 'fft_mix_out', dm, { scale: a.s / a.d, chunk: ch }, [w, a.b, a.out, bad, tw], [lanes(a.d / 8), rowBlocks(ch.n)]);
  }
}

/**
 * The backward of out = s·In·π(BA)ᵀ for dOut: dIn = s·dOut·π(BA) (r convolutions per row), and
 * dA, dB from (In, dOut), a token chunk at a time. Extra memory: the spectra W of one chunk
 * (at most T·d floats), In's packed spectra (`c` when the forward kept them) and one chunk's
 * packed dIn spectra.
 */
async function piFftBackward(
  ctx: Context,
  enc: GPUCommandEncoder,
  a: {
    input: Tensor;
    dOut: Tensor;
    b: Tensor;
    a: Tensor;
    dIn: Tensor;
    da: Tensor;
    db: Tensor;
    c?: Tensor;
    T: number;
    d: number;
    r: number;
    s: number;
  },
): Promise<void> {
  const { T, d, r, s } = a;
  const dm = { T, d, r, s };
  const np = Math.ceil(r / 2);
  const fa = await fftFactorSpectrum(ctx, enc, dm, a.a);
  const zin = await fftInputSpectra(ctx, enc, dm, a.input, a.c, a.c !== undefined);
  const bad = fftFlags(ctx, T, r);
  const w = spectraChunk(ctx, T, d, r);
  const size = lormaFftChunk(T, r);
  const zdu = ctx.scratch('lorma.fft.zdu', [d, fftStride(Math.ceil(size / 2)), 2]);
  // dA's spectra, summed over the chunks (pa is free once F A is split).
  const za = ctx.scratch('lorma.fft.pa', [d, fftStride(np), 2]);
  const tw = fftTwiddles(ctx, d);
  for (const ch of chunks(T, r)) {
    const nb = np * ch.n;
    const first = ch.t0 === 0;
    // W = F(H_2p + i·H_2p+1), H_q[t, i] = dOut[t, i]·B[i, q] (fft_pack_h runs the first stage).
    fftDispatch(ctx, enc, 'fft_pack_h', dm, { chunk: ch }, [a.dOut, a.b, w, bad, tw], [lanes(d / 8), rowBlocks(ch.n)]);
    await fftBatched(ctx, enc, { data: w, n: d, nb, stride: fftStride(nb), inverse: false, partial: true });
    // dIn's rows of the chunk: Σ_q F H_q·F A_q, two rows per inverse transform.
    const pairsOf = Math.ceil(ch.n / 2);
    fftDispatch(ctx, enc, 'fft_du_spec', dm, { rows: ch.n, chunk: ch }, [w, fa, zdu], [lanes(pairsOf), binSteps(d)]);
    await fftBatched(ctx, enc, { data: zdu, n: d, nb: pairsOf, stride: fftStride(pairsOf), inverse: true });
    fftDispatch(
      ctx,
      enc,
      'fft_unpack',
      dm,
      { rows: ch.n, scale: s / d, flags: UNPACK_DIN, chunk: ch },
      [zdu, a.dIn, bad],
      [lanes(d), rowBlocks(ch.n)],
    );
    // dA: Σ_t conj(F H_q,t)·F In_t per q, onto the earlier chunks' sums.
    fftDispatch(ctx, enc, 'fft_da_spec', dm, { rows: r, chunk: ch, accumulate: !first }, [w, zin, za], [lanes(d / 2 + 1), np]);
    // dB: the chunk's correlations C_q again (into W, no longer needed), contracted with dOut.
    await fftCorrelations(ctx, enc, dm, fa, zin, w, ch);
    fftDispatch(ctx, enc, 'fft_db', dm, { scale: s / d, chunk: ch, accumulate: !first }, [w, a.dOut, a.db, bad, tw], [lanes(d / 8), np]);
  }
  await fftBatched(ctx, enc, { data: za, n: d, nb: np, stride: fftStride(np), inverse: true });
  // dA's rows: unpack with t0 = 0 (the default chunk).
  fftDispatch(ctx, enc, 'fft_unpack', dm, { rows: r, scale: s / d, flags: UNPACK_DA }, [za, a.da, bad], [lanes(d), rowBlocks(r)]);
}

// ------------------------------------------------------------------ plus and none: an effective LoRA

// With M = s·B A (+ I), the layer is LoRA with one factor folded through W0:
//   pre   Y = X W0ᵀ Mᵀ = [X W0ᵀ] + s·(X A'ᵀ) Bᵀ,   A' = A W0 [r, n]
//   post  Y = X Mᵀ W0ᵀ = [X W0ᵀ] + s·(X Aᵀ) B'ᵀ,   B' = W0 B [m, r]
// so X W0ᵀ is computed once, fused with the adapter term, and U is never stored; the fold costs
// r·m·n, 1/T of the base product. Backward: H = G B', dX = [G W0] + s·H A', and the factor
// gradients of the effective LoRA, dB' = s·Gᵀ Z and dA' = s·Hᵀ X, mapped back through W0:
//   pre   dB = dB',  dA = dA' W0ᵀ          post  dA = dA',  dB = W0ᵀ dB'
// plus with pre-multiplication, the case LoRMA₊ is measured in, skips the fold where it can: the
// forward computes U = X W0ᵀ first (Z = U Aᵀ = X A'ᵀ, Y = U + s·Z Bᵀ), and a backward given that
// Z takes dX = (G + s·H A) W0. Only dA = dA' W0ᵀ keeps an r·m·n product: ΔW's gradient through
// the frozen W0 (3 folds per step were 1.08–1.11× LoRA's step at d = 1024, T = 512, r = 8).

async function foldedFactor(ctx: Context, enc: GPUCommandEncoder, p: LormaCommon, dm: LormaDims): Promise<{ a: Tensor; b: Tensor }> {
  const { n, m, r } = dm;
  if (dm.order === 'pre') {
    const aw = ctx.scratch('lorma.aw0', [r, n]);
    await matmul(ctx, { a: p.a, b: p.w0, c: aw, M: r, N: n, K: m }, enc);
    return { a: aw, b: p.b };
  }
  const wb = ctx.scratch('lorma.w0b', [m, r]);
  await matmul(ctx, { a: p.w0, b: p.b, c: wb, M: m, N: r, K: n }, enc);
  return { a: p.a, b: wb };
}

async function lowRankForward(ctx: Context, enc: GPUCommandEncoder, p: LormaCommon, dm: LormaDims, x: Tensor, y: Tensor, z: Tensor): Promise<void> {
  const { T, n, m, r } = dm;
  if (dm.variant === 'plus' && dm.order === 'pre') {
    // U = X W0ᵀ straight into Y, Z = U Aᵀ, Y += s·Z Bᵀ: LoRA's products plus one more read of Y
    // (8·T·m bytes) instead of the fold's r·m·n multiply-adds, a third of LoRMA₊'s extra work.
    await matmul(ctx, { a: x, b: p.w0, c: y, M: T, N: m, K: n, transB: true }, enc);
    await matmul(ctx, { a: y, b: p.a, c: z, M: T, N: r, K: m, transB: true }, enc);
    await matmul(ctx, { a: z, b: p.b, c: y, M: T, N: m, K: r, transB: true, alpha: p.scale, beta: 1 }, enc);
    return;
  }
  const f = await foldedFactor(ctx, enc, p, dm);
  await matmul(ctx, { a: x, b: f.a, c: z, M: T, N: r, K: n, transB: true }, enc);
  if (dm.variant === 'plus') {
    await matmul(ctx, { a: x, b: p.w0, c: y, M: T, N: m, K: n, transB: true, second: { a: z, b: f.b, K: r, alpha: p.scale } }, enc);
  } else {
    await matmul(ctx, { a: z, b: f.b, c: y, M: T, N: m, K: r, transB: true, alpha: p.scale }, enc);
  }
}

async function lowRankBackward(
  ctx: Context,
  enc: GPUCommandEncoder,
  p: LormaCommon,
  dm: LormaDims,
  a: { x: Tensor; g: Tensor; z?: Tensor; dx: Tensor; da: Tensor; db: Tensor },
): Promise<void> {
  const { T, n, m, r } = dm;
  // plus, pre, given the forward's Z: the fold A' = A W0 is not needed for dX (below).
  const unfolded = dm.variant === 'plus' && dm.order === 'pre' && a.z !== undefined;
  const f = unfolded ? { a: p.a, b: p.b } : await foldedFactor(ctx, enc, p, dm);
  let z = a.z;
  if (!z) {
    z = ctx.scratch('lorma.z', [T, r]);
    await matmul(ctx, { a: a.x, b: f.a, c: z, M: T, N: r, K: n, transB: true }, enc);
  }
  const h = ctx.scratch('lorma.h', [T, r]);
  await matmul(ctx, { a: a.g, b: f.b, c: h, M: T, N: r, K: m }, enc);
  if (unfolded) {
    // dX = (G + s·H A) W0: dU in scratch, then one base product; the same work as LoRA's fused
    // dX = G W0 + s·H A plus a copy and a read of dU, against the fold's r·m·n.
    const du = ctx.scratch('lorma.du', [T, m]);
    ctx.copy(a.g, du, enc);
    await matmul(ctx, { a: h, b: p.a, c: du, M: T, N: m, K: r, alpha: p.scale, beta: 1 }, enc);
    await matmul(ctx, { a: du, b: p.w0, c: a.dx, M: T, N: n, K: m }, enc);
  } else if (dm.variant === 'plus') {
    await matmul(ctx, { a: a.g, b: p.w0, c: a.dx, M: T, N: n, K: m, second: { a: h, b: f.a, K: r, alpha: p.scale } }, enc);
  } else {
    await matmul(ctx, { a: h, b: f.a, c: a.dx, M: T, N: n, K: r, alpha: p.scale }, enc);
  }
  if (dm.order === 'pre') {
    await matmul(ctx, { a: a.g, b: z, c: a.db, M: m, N: r, K: T, transA: true, alpha: p.scale }, enc);
    const daf = ctx.scratch('lorma.da_folded', [r, n]);
    await matmul(ctx, { a: h, b: a.x, c: daf, M: r, N: n, K: T, transA: true, alpha: p.scale }, enc);
    await matmul(ctx, { a: daf, b: p.w0, c: a.da, M: r, N: m, K: n, transB: true }, enc);
  } else {
    await matmul(ctx, { a: h, b: a.x, c: a.da, M: r, N: n, K: T, transA: true, alpha: p.scale }, enc);
    const dbf = ctx.scratch('lorma.db_folded', [m, r]);
    await matmul(ctx, { a: a.g, b: z, c: dbf, M: m, N: r, K: T, transA: true, alpha: p.scale }, enc);
    await matmul(ctx, { a: p.w0, b: dbf, c: a.db, M: n, N: r, K: m, transA: true }, enc);
  }
}

// ------------------------------------------------------------------ public API

/**
 * Y = X W'ᵀ. Returns Y, plus what lormaBackward can reuse: for pi with pre-multiplication
 * U = X W0ᵀ [T, m] (the input of the π mixing), for plus / none Z = X A'ᵀ [T, r] (A' = A W0 pre,
 * A post). On π's FFT path (lormaPiPath), a caller's `c` of shape lormaCorrelationsShape(T, d, r)
 * receives the correlations C_q (d·(C_2p + i·C_2p+1), [i][pair·T + t]), which lormaBackward then
 * takes instead of recomputing them for dB: T·r·d floats kept for a quarter less backward work.
 */
export async function lormaForward(
  ctx: Context,
  args: LormaForwardArgs,
  opts: ForwardOptions = {},
): Promise<{ y: Tensor; u?: Tensor; z?: Tensor; c?: Tensor }> {
  const where = 'lorma.forward';
  checkContext(where, ctx);
  checkOptions(where, opts, ['encoder', 'adapterOnly']);
  refuseAdapterOnly(where, opts);
  const dm = dims(ctx, where, args, args?.x, 'x', true);
  const p = args as AnyArgs & { x: Tensor; y?: Tensor };
  const { T, n, m, r, d } = dm;
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkReuse(where, dm, p.u, p.z);
  const fft = checkCorrelations(ctx, where, dm, p.c);
  if (p.y) checkTensor(where, 'y', p.y, [T, m], '[T, m]');
  const pi = dm.variant === 'pi';
  const pre = dm.order === 'pre';
  checkIo(where, ctx, { y: p.y, u: p.u, z: p.z, c: p.c }, { x: p.x, ...weightTensors('w0', p.w0), a: p.a, b: p.b });
  return withOutputs(ctx, where, async (made) => {
    const y = made.output('y', p.y, [T, m], '[T, m]', 'lorma.y');
    const u = pi && pre ? (p.u ?? made.tensor([T, m], 'lorma.u')) : undefined;
    const z = pi ? undefined : (p.z ?? made.tensor([T, r], 'lorma.z'));
    await ctx.encode(opts.encoder, async (enc) => {
      if (!pi) {
        await lowRankForward(ctx, enc, p, dm, p.x, y, z!);
      } else if (pre) {
        await matmul(ctx, { a: p.x, b: p.w0, c: u!, M: T, N: m, K: n, transB: true }, enc);
        if (fft) await piFftMixT(ctx, enc, { input: u!, b: p.b, a: p.a, out: y, c: p.c, T, d, r, s: p.scale });
        else await piMix(ctx, enc, { input: u!, b: p.b, a: p.a, out: y, rows: T, d, r, s: p.scale, trans: true });
      } else {
        const v = ctx.scratch('lorma.v', [T, n]);
        if (fft) await piFftMixT(ctx, enc, { input: p.x, b: p.b, a: p.a, out: v, c: p.c, T, d, r, s: p.scale });
        else await piMix(ctx, enc, { input: p.x, b: p.b, a: p.a, out: v, rows: T, d, r, s: p.scale, trans: true });
        await matmul(ctx, { a: v, b: p.w0, c: y, M: T, N: m, K: n, transB: true }, enc);
      }
    });
    return { y, u, z, c: p.c };
  });
}

// c belongs to π's FFT path; returns whether this call takes that path.
function checkCorrelations(ctx: Context, where: string, dm: LormaDims, c: Tensor | undefined): boolean {
  const fft = dm.variant === 'pi' && lormaPiPath(ctx, dm.d, dm.piChoice) === 'fft';
  if (c) {
    if (!fft) {
      throw new PeftError(
        `${where}: 'c' (the forward's spectra of In) belongs to LoRMA_π's FFT path (d a power of two; piPath or setLormaTuning); this call (${dm.variant}, d = ${dm.d}, '${dm.piChoice}') takes none`,
      );
    }
    checkTensor(where, 'c', c, lormaCorrelationsShape(dm.T, dm.d, dm.r), '[d, fftStride(⌈T/2⌉), 2]');
  }
  return fft;
}

// u belongs to pi pre, z to plus / none; anything else is a caller's mix-up worth reporting.
function checkReuse(where: string, dm: LormaDims, u: Tensor | undefined, z: Tensor | undefined): void {
  if (u) {
    if (dm.variant !== 'pi' || dm.order !== 'pre') {
      throw new PeftError(`${where}: 'u' (U = X W0ᵀ) belongs to pi with pre-multiplication; ${dm.variant} ${dm.order} takes none`);
    }
    checkTensor(where, 'u', u, [dm.T, dm.m], '[T, m]');
  }
  if (z) {
    if (dm.variant === 'pi') throw new PeftError(`${where}: 'z' belongs to the plus and none variants; pi takes none`);
    checkTensor(where, 'z', z, [dm.T, dm.r], '[T, r]');
  }
}

/**
 * dX, dA, dB of L = sum(Y ⊙ G). Pass the forward's u or z (and c on π's FFT path) to skip
 * recomputing them.
 */
export async function lormaBackward(
  ctx: Context,
  args: LormaBackwardArgs,
  opts: BackwardOptions = {},
): Promise<{ dx: Tensor; da: Tensor; db: Tensor }> {
  const where = 'lorma.backward';
  checkContext(where, ctx);
  checkOptions(where, opts, ['encoder', 'adapterOnly']);
  refuseAdapterOnly(where, opts);
  const dm = dims(ctx, where, args, args?.x, 'x', true);
  const p = args as AnyArgs & { x: Tensor; g: Tensor; dx?: Tensor; da?: Tensor; db?: Tensor };
  const { T, n, m, r, d } = dm;
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'g', p.g, [T, m], '[T, m]');
  checkReuse(where, dm, p.u, p.z);
  const fft = checkCorrelations(ctx, where, dm, p.c);
  if (p.dx) checkTensor(where, 'dx', p.dx, [T, n], '[T, n]');
  if (p.da) checkTensor(where, 'da', p.da, [r, d], '[r, d]');
  if (p.db) checkTensor(where, 'db', p.db, [d, r], '[d, r]');
  checkIo(where, ctx, { dx: p.dx, da: p.da, db: p.db }, { x: p.x, g: p.g, ...weightTensors('w0', p.w0), a: p.a, b: p.b, u: p.u, z: p.z, c: p.c });
  return withOutputs(ctx, where, async (made) => {
    const dx = made.output('dx', p.dx, [T, n], '[T, n]', 'lorma.dx');
    const da = made.output('da', p.da, [r, d], '[r, d]', 'lorma.da');
    const db = made.output('db', p.db, [d, r], '[d, r]', 'lorma.db');
    await ctx.encode(opts.encoder, async (enc) => {
      if (dm.variant !== 'pi') {
        await lowRankBackward(ctx, enc, p, dm, { x: p.x, g: p.g, z: p.z, dx, da, db });
      } else if (dm.order === 'pre') {
        // dU = s·G π(BA) (the transposed mixing), dA, dB from (U, G), dX = dU W0.
        let u = p.u;
        if (!u) {
          u = ctx.scratch('lorma.u', [T, m]);
          await matmul(ctx, { a: p.x, b: p.w0, c: u, M: T, N: m, K: n, transB: true }, enc);
        }
        const du = ctx.scratch('lorma.du', [T, m]);
        if (fft) {
          await piFftBackward(ctx, enc, { input: u, dOut: p.g, b: p.b, a: p.a, dIn: du, da, db, c: p.c, T, d, r, s: p.scale });
        } else {
          await piMix(ctx, enc, { input: p.g, b: p.b, a: p.a, out: du, rows: T, d, r, s: p.scale, trans: false });
          await piGrads(ctx, enc, { input: u, dOut: p.g, b: p.b, a: p.a, da, db, T, d, r, s: p.scale });
        }
        await matmul(ctx, { a: du, b: p.w0, c: dx, M: T, N: n, K: m }, enc);
      } else {
        // dV = G W0, dX = s·dV π(BA), dA, dB from (X, dV).
        const dv = ctx.scratch('lorma.dv', [T, n]);
        await matmul(ctx, { a: p.g, b: p.w0, c: dv, M: T, N: n, K: m }, enc);
        if (fft) {
          await piFftBackward(ctx, enc, { input: p.x, dOut: dv, b: p.b, a: p.a, dIn: dx, da, db, c: p.c, T, d, r, s: p.scale });
        } else {
          await piMix(ctx, enc, { input: dv, b: p.b, a: p.a, out: dx, rows: T, d, r, s: p.scale, trans: false });
          await piGrads(ctx, enc, { input: p.x, dOut: dv, b: p.b, a: p.a, da, db, T, d, r, s: p.scale });
        }
      }
    });
    return { dx, da, db };
  });
}

/**
 * W' = M W0 (pre) or W0 M (post), computed on the device into `out` (new by default); with
 * `deltaOnly`, ΔW = W' − W0. M is never stored: π(B A) is generated tile by tile, and the low-rank
 * variants go through A W0 [r, n] or W0 B [m, r]. Unlike LoRA's, the merge cannot be undone
 * without W0 (W0 = M⁻¹ W'), so 'inPlace' and 'unmerge' are refused.
 */
export function lormaMerge(ctx: Context, args: LormaMergeArgs & { w0: Tensor; out?: Tensor }, opts?: MergeOptions): Promise<Tensor>;
export function lormaMerge(ctx: Context, args: LormaMergeArgs & { out?: Tensor }, opts?: MergeOptions & { inPlace?: false }): Promise<Tensor>;
/** Into a BaseWeight `out`: that BaseWeight (inPlace is refused). */
export function lormaMerge(ctx: Context, args: LormaMergeArgs, opts?: MergeOptions): Promise<Weight>;
export async function lormaMerge(ctx: Context, args: LormaMergeArgs, opts: MergeOptions = {}): Promise<Weight> {
  const where = 'lorma.merge';
  checkContext(where, ctx);
  checkOptions(where, opts, ['encoder', 'deltaOnly', 'inPlace', 'unmerge', 'safeMerge']);
  for (const k of ['inPlace', 'unmerge'] as const) {
    if (opts[k]) throw new PeftError(`${where}: '${k}' is not supported: LoRMA's W' = M·W0 cannot be undone without W0`);
  }
  const dm = dims(ctx, where, args);
  const p = args as AnyArgs;
  const { n, m, r, d } = dm;
  const delta = !!opts.deltaOnly;
  return mergeInto(ctx, where, p.w0, args.out, opts, { a: p.a, b: p.b }, async (enc, out) => {
    // mergeInto starts `out` from W0, or from zero for deltaOnly; plus adds s·ΔW' onto either,
    // while pi and none replace it (beta = 0), or subtract the W0 put back for ΔW (beta = −1).
    if (dm.variant === 'pi') {
      if (delta) await copyW0(ctx, p.w0, out, enc);
      // The mixing reads W0 whole while it writes `out`: a packed W0 is decoded into scratch first
      // (a merge's one m×n buffer besides its result; the forward and backward never need it).
      let input: Tensor;
      if (BaseWeight.isBaseWeight(p.w0)) {
        input = ctx.scratch('lorma.w0.f32', [m, n]);
        await dequantize(ctx, p.w0, input, { encoder: enc });
      } else input = p.w0;
      const beta = delta ? -1 : 0;
      if (dm.order === 'pre') {
        // W'ᵀ = W0ᵀ M'ᵀ·s: rows are W0's n columns, read and written transposed.
        await piMix(ctx, enc, { input, b: p.b, a: p.a, out, rows: n, d, r, s: p.scale, trans: true, inT: true, outT: true, beta });
      } else {
        await piMix(ctx, enc, { input, b: p.b, a: p.a, out, rows: m, d, r, s: p.scale, trans: false, beta });
      }
      return;
    }
    // plus: W' = W0 + s·B (A W0) or W0 + s·(W0 B) A; none drops the W0 term.
    const plus = dm.variant === 'plus';
    if (delta && !plus) await copyW0(ctx, p.w0, out, enc);
    const beta = plus ? 1 : delta ? -1 : 0;
    if (dm.order === 'pre') {
      const aw = ctx.scratch('lorma.aw0', [r, n]);
      await matmul(ctx, { a: p.a, b: p.w0, c: aw, M: r, N: n, K: m }, enc);
      await matmul(ctx, { a: p.b, b: aw, c: out, M: m, N: n, K: r, alpha: p.scale, beta }, enc);
    } else {
      const wb = ctx.scratch('lorma.w0b', [m, r]);
      await matmul(ctx, { a: p.w0, b: p.b, c: wb, M: m, N: r, K: n }, enc);
      await matmul(ctx, { a: wb, b: p.a, c: out, M: m, N: n, K: r, alpha: p.scale, beta }, enc);
    }
  });
}

export interface LormaInitOptions {
  /** Size of M: m for pre-multiplication, n for post. */
  d: number;
  r: number;
  scale: number;
  variant: LormaVariant;
  seed?: number;
}

/**
 * Host initial values of A [r, d] and B [d, r] (seeded):
 * - pi: B ~ U(−1/√r, 1/√r) with B[:, 0] = 1, A = 0 with A[0, 0] = 1, both divided by √s, so that
 *   s·π(B A) = I and the layer starts as the base layer;
 * - plus: B = 0, A kaiming-uniform U(−1/√d, 1/√d), so s·B A + I = I;
 * - none: no init gives M = I (rank ≤ r); A and B kaiming-uniform, A ~ U(−1/√d, 1/√d), B ~ U(−1/√r, 1/√r).
 */
export function lormaInit(opts: LormaInitOptions): { a: Float32Array; b: Float32Array } {
  const where = 'lorma.init';
  if (!opts || typeof opts !== 'object') throw new PeftError(`${where}: expected options {d, r, scale, variant, seed?}`);
  checkOptions(where, opts, ['d', 'r', 'scale', 'variant', 'seed']);
  const d = checkDim(where, 'd', opts.d);
  const r = checkDim(where, 'r', opts.r);
  if (r > d) throw new PeftError(`${where}: rank r = ${r} is above d = ${d}`);
  const s = checkScale(where, 'scale', opts.scale);
  if (!LORMA_VARIANTS.includes(opts.variant)) {
    throw new PeftError(`${where}: 'variant' must be one of ${LORMA_VARIANTS.map((v) => `'${v}'`).join(', ')}, got ${JSON.stringify(opts.variant)}`);
  }
  const seed = opts.seed ?? 0;
  if (opts.variant === 'pi') {
    if (!(s > 0)) throw new PeftError(`${where}: the pi init divides by √s and needs scale > 0, got ${s}`);
    const root = Math.sqrt(s);
    const b = kaimingUniform(d * r, r, seed);
    for (let i = 0; i < d; i++) b[i * r] = 1;
    for (let i = 0; i < b.length; i++) b[i] /= root;
    const a = new Float32Array(r * d);
    a[0] = 1 / root;
    return { a, b };
  }
  const a = kaimingUniform(r * d, d, seed);
  const b = opts.variant === 'plus' ? new Float32Array(d * r) : kaimingUniform(d * r, r, seed + 1);
  return { a, b };
}

/** W0 as f32 into `out`: a copy, or a packed W0 decoded (src/quant's dequantize). */
async function copyW0(ctx: Context, w0: Weight, out: Tensor, enc: GPUCommandEncoder): Promise<void> {
  if (BaseWeight.isBaseWeight(w0)) await dequantize(ctx, w0, out, { encoder: enc });
  else ctx.copy(w0, out, enc);
}
