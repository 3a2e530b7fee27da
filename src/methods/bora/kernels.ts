// BoRA and MELoRA on the GPU (docs/bora.md; math in docs/math.md; kernels in shaders/bora.wgsl).
//
// sigma     Σ = f(σ), μ = mean|σ|                          (1 dispatch, once per step)
// forward   the fused adapter Y = s·B_j Σ_k Σ[j,k] ⊙ (A_k X_k), (2 dispatches; Z and S stay in
//           then Y += X W0ᵀ in the matmul's epilogue (beta 1) workgroup memory unless saved)
// backward  the fused transpose dS = s·G_j B_j, dZ = Σᵀ-mix(dS),  (5 dispatches + 1 for dσ)
//           dX = A_k dZ_k (dS, dZ saved), then dX += G W0 (matmul, beta 1);
//           dB (wgrad), dA (wgrad), dΣ (mix_grad4, or mix_grad when r % 4 ≠ 0), dσ (sigma_raw_grad)
// merge     ΔW block (j,k) = s·B_j diag(Σ[j,k]) A_k, W' = W0 ± ΔW   (1 dispatch)
//
// MELoRA is the variant with Σ[j,k] = I for j = k and 0 otherwise: no σ, no mix phase.

import type { Context } from '../../runtime.js';
import type { Tensor } from '../../tensor.js';
import type { Weight } from '../../base.js';
import { matmul } from '../../ops/matmul.js';
import { kaimingUniform } from '../../random.js';
import { rankReport, type RankReport } from '../../rank.js';
import {
  PeftError,
  asTensor,
  checkContext,
  checkDim,
  checkIo,
  checkMatrix,
  checkRank,
  checkScale,
  checkTensor,
  checkWeight,
  weightTensors,
} from '../../validate.js';
import {
  checkOptions,
  mergeInto,
  mergeName,
  withOutputs,
  type BackwardOptions,
  type EncodeOptions,
  type ForwardOptions,
  type MergeOptions,
  FORWARD_OPTIONS,
  BACKWARD_OPTIONS,
  MERGE_OPTIONS,
} from '../common.js';
import type { PhaseFlops } from '../types.js';
import { checkSigmaTransform, dividesByMeanAbs, meanAbs, zeroMeanAbsMessage, type SigmaTransform } from './sigma.js';

/** 'bora': Σ learned (from σ); 'melora': Σ the fixed block identity, no σ. */
export type BoraVariant = 'bora' | 'melora';
/** @deprecated the field is `variant` now; kept until the public index moves to BoraVariant. */
export type BoraMode = BoraVariant;

export const BORA_VARIANTS: readonly BoraVariant[] = ['bora', 'melora'];

/** Σ for one step, made by `boraSigma`: Σ = f(σ) [b, b, r] and μ = mean|σ| [1]. */
export interface BoraSigma {
  eff: Tensor;
  mu: Tensor;
}

interface BoraLayerTensors {
  /** [m, n]: an f32 Tensor, or a BaseWeight (f16, NF4) the products decode in registers. */
  w0: Weight;
  a: Tensor; // [r, n]
  b: Tensor; // [m, r]
  /** Blocks b: must divide n and m. */
  blocks: number;
  /** s = alpha / r. */
  scale: number;
}

/** BoRA: a learned Σ = f(σ) mixes the blocks. */
export interface BoraMixParams extends BoraLayerTensors {
  variant?: 'bora';
  /** σ [b, b, r]. With sigmaTransform 'raw' it is Σ itself. */
  sigma: Tensor;
  /** How Σ is made from σ (default 'exp-mav', the paper's). */
  sigmaTransform?: SigmaTransform;
  /** Σ of this step from `boraSigma`; when absent each call computes it into scratch. */
  sigmaEff?: BoraSigma;
}

/** MELoRA: the block identity, b independent mini-LoRAs on the diagonal blocks. */
export interface MeloraParams extends BoraLayerTensors {
  variant: 'melora';
  sigma?: undefined;
  sigmaTransform?: undefined;
  sigmaEff?: undefined;
}

export type BoraParams = BoraMixParams | MeloraParams;

export type BoraForwardArgs = BoraParams & {
  x: Tensor; // [T, n]
  /** Output [T, m]; new when absent. */
  y?: Tensor;
  /** Z [T, b·r] kept for the backward (implies saving). */
  z?: Tensor;
  /** S [T, b·r] kept for the backward (implies saving). */
  s?: Tensor;
};

export type BoraBackwardArgs = (
  | (BoraMixParams & {
      /** dσ [b, b, r]; new when absent. */
      dsigma?: Tensor;
      /** Where dΣ [b, b, r] goes, when the caller wants it; scratch otherwise. */
      dsigmaEff?: Tensor;
    })
  | (MeloraParams & { dsigma?: undefined; dsigmaEff?: undefined })
) & {
  x: Tensor; // [T, n]
  /** dL/dY [T, m]. */
  g: Tensor;
  /** The forward's Z and S [T, b·r] (both or neither); recomputed when absent. */
  z?: Tensor;
  s?: Tensor;
  dx?: Tensor;
  da?: Tensor;
  db?: Tensor;
};

export type BoraMergeArgs = BoraParams & {
  /** Target [m, n]; new when absent (not with inPlace). */
  out?: Tensor;
};

export interface BoraForwardOptions extends ForwardOptions {
  /** Write Z and S [T, b·r] for the backward (also implied by passing z or s). */
  save?: boolean;
}

export interface BoraGrads {
  dx: Tensor;
  da: Tensor;
  db: Tensor;
  /** dσ [b, b, r] (variant 'bora' only). */
  dsigma?: Tensor;
}

export interface BoraDims {
  T: number;
  n: number;
  m: number;
  r: number;
  blocks: number;
  /** n / b and m / b: features per block. */
  blockN: number;
  blockM: number;
  variant: BoraVariant;
  sigmaTransform: SigmaTransform;
}

const TRANSFORM_ID: Record<SigmaTransform, number> = { 'exp-mav': 0, exp: 1, mav: 2, raw: 3 };
const WG = 64;
const MAX_TOKENS_PER_GROUP = 8;
/** Blocks k per invocation of `mix_grad` (KC in shaders/bora.wgsl). */
const MIX_GRAD_KC = 4;

const LAYER_ARGS = ['variant', 'w0', 'a', 'b', 'blocks', 'scale', 'sigma', 'sigmaTransform', 'sigmaEff'] as const;
const FORWARD_ARGS = [...LAYER_ARGS, 'x', 'y', 'z', 's'] as const;
const BACKWARD_ARGS = [...LAYER_ARGS, 'x', 'g', 'z', 's', 'dx', 'da', 'db', 'dsigma', 'dsigmaEff'] as const;
const MERGE_ARGS = [...LAYER_ARGS, 'out'] as const;
const BORA_FORWARD_OPTIONS = [...FORWARD_OPTIONS, 'save'] as const;

/**
 * Rejects argument fields the call does not know, so a field of the old API ('mode',
 * 'transform') or a misspelt one is an error rather than silently ignored.
 */
function checkArgs(where: string, p: unknown, known: readonly string[]): void {
  if (!p || typeof p !== 'object') throw new PeftError(`${where}: expected an argument object, got ${p === null ? 'null' : typeof p}`);
  for (const k of Object.keys(p)) {
    if (!known.includes(k)) throw new PeftError(`${where}: unknown argument '${k}' (this call takes ${known.join(', ')})`);
  }
}

export function checkBlocks(where: string, blocks: unknown): number {
  if (typeof blocks !== 'number' || !Number.isInteger(blocks) || blocks < 1) {
    throw new PeftError(`${where}: 'blocks' must be an integer ≥ 1, got ${String(blocks)}`);
  }
  return blocks;
}

export function checkVariant(where: string, variant: unknown): BoraVariant {
  if (variant === undefined) return 'bora';
  if (!BORA_VARIANTS.includes(variant as BoraVariant))
    throw new PeftError(`${where}: 'variant' must be 'bora' or 'melora', got ${typeof variant === 'string' ? variant : JSON.stringify(variant)}`);
  return variant as BoraVariant;
}

/** Why b blocks do not suit an n × m layer, or null. */
export function blocksMismatch(blocks: number, n: number, m: number): string | null {
  if (n % blocks !== 0) return `blocks b = ${blocks} must divide n = ${n} (n mod b = ${n % blocks})`;
  if (m % blocks !== 0) return `blocks b = ${blocks} must divide m = ${m} (m mod b = ${m % blocks})`;
  return null;
}

function checkDivides(where: string, blocks: number, n: number, m: number): void {
  const why = blocksMismatch(blocks, n, m);
  if (why) throw new PeftError(`${where}: ${why}`);
}

function layerDims(where: string, p: BoraParams, x?: Tensor, needX = false): BoraDims {
  const variant = checkVariant(where, p.variant);
  const blocks = checkBlocks(where, p.blocks);
  const [m, n] = checkWeight(where, 'w0', p.w0, '[m, n]');
  const [r] = checkMatrix(where, 'a', p.a, '[r, n]');
  checkTensor(where, 'a', p.a, [r, n], '[r, n]');
  checkTensor(where, 'b', p.b, [m, r], '[m, r]');
  checkRank(where, r, n, m);
  checkScale(where, 'scale', p.scale);
  checkDivides(where, blocks, n, m);
  let sigmaTransform: SigmaTransform = 'exp-mav';
  if (variant === 'bora') {
    sigmaTransform = checkSigmaTransform(where, p.sigmaTransform);
    checkTensor(where, 'sigma', p.sigma, [blocks, blocks, r], '[b, b, r]');
    if (p.sigmaEff !== undefined) {
      if (p.sigmaEff === null || typeof p.sigmaEff !== 'object') throw new PeftError(`${where}: 'sigmaEff' must be { eff, mu } from boraSigma`);
      checkTensor(where, 'sigmaEff.eff', p.sigmaEff.eff, [blocks, blocks, r], '[b, b, r]');
      checkTensor(where, 'sigmaEff.mu', p.sigmaEff.mu, [1], '[1]');
    }
  } else if (p.sigma || p.sigmaEff || p.sigmaTransform !== undefined) {
    throw new PeftError(`${where}: variant 'melora' has a fixed block-identity Σ; do not pass 'sigma', 'sigmaTransform' or 'sigmaEff'`);
  }
  const T = needX ? checkMatrix(where, 'x', x, '[T, n]')[0] : 1;
  return { T, n, m, r, blocks, blockN: n / blocks, blockM: m / blocks, variant, sigmaTransform };
}

/** The caller's Σ of this step, an input every output must stay clear of. */
function sigmaInputs(p: BoraParams): Record<string, Tensor | undefined> {
  return p.sigmaEff ? { 'sigmaEff.eff': p.sigmaEff.eff, 'sigmaEff.mu': p.sigmaEff.mu } : {};
}

/** Tokens per workgroup of the fused kernel: Z and S tiles (2·TT·b·r floats) must fit workgroup memory. */
function tokensPerGroup(ctx: Context, where: string, d: BoraDims): number {
  const fit = Math.floor(ctx.limits.maxComputeWorkgroupStorageSize / (2 * 4 * d.blocks * d.r));
  if (fit < 1) {
    throw new PeftError(
      `${where}: b·r = ${d.blocks * d.r} needs ${8 * d.blocks * d.r} bytes of workgroup memory per token, past this device's ` +
        `maxComputeWorkgroupStorageSize of ${ctx.limits.maxComputeWorkgroupStorageSize}; use fewer blocks or a lower rank`,
    );
  }
  return Math.min(MAX_TOKENS_PER_GROUP, d.T, fit);
}

// ------------------------------------------------------------------------------ Σ

/** Σ = f(σ) and μ on the device: one dispatch, meant to run once per training step. */
export async function boraSigma(
  ctx: Context,
  p: { sigma: Tensor; sigmaTransform?: SigmaTransform; out?: BoraSigma },
  opts: EncodeOptions = {},
): Promise<BoraSigma> {
  const where = 'bora.sigma';
  checkContext(where, ctx);
  checkArgs(where, p, ['sigma', 'sigmaTransform', 'out']);
  checkOptions(where, opts, ['encoder']);
  const transform = checkSigmaTransform(where, p.sigmaTransform);
  const sigma = asTensor(where, 'sigma', p.sigma, 'a Tensor of shape [b, b, r]');
  if (sigma.shape.length !== 3 || sigma.shape[0] !== sigma.shape[1]) {
    throw new PeftError(`${where}: 'sigma' must be a Tensor of shape [b, b, r], got [${sigma.shape.join(', ')}]`);
  }
  const [blocks, , r] = sigma.shape;
  if (p.out !== undefined && (p.out === null || typeof p.out !== 'object')) throw new PeftError(`${where}: 'out' must be { eff, mu }`);
  if (p.out?.eff) checkTensor(where, 'out.eff', p.out.eff, [blocks, blocks, r], '[b, b, r]');
  if (p.out?.mu) checkTensor(where, 'out.mu', p.out.mu, [1], '[1]');
  checkIo(where, ctx, { 'out.eff': p.out?.eff, 'out.mu': p.out?.mu }, { sigma });
  return withOutputs(ctx, where, async (made) => {
    const eff = made.output('out.eff', p.out?.eff, [blocks, blocks, r], '[b, b, r]', 'bora.sigmaEff');
    const mu = made.output('out.mu', p.out?.mu, [1], '[1]', 'bora.mu');
    await encodeSigma(ctx, sigma, { eff, mu }, blocks, r, transform, opts.encoder);
    return { eff, mu };
  });
}

async function encodeSigma(
  ctx: Context,
  sigma: Tensor,
  out: BoraSigma,
  blocks: number,
  r: number,
  transform: SigmaTransform,
  encoder?: GPUCommandEncoder,
) {
  const constants = { R: r, BLOCKS: blocks, TRANSFORM: TRANSFORM_ID[transform] };
  await ctx.prepare([{ shader: 'bora', entry: 'sigma', constants }]);
  await ctx.encode(encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: 'bora',
      entry: 'sigma',
      constants,
      params: { count: blocks * blocks * r },
      bindings: [sigma, out.eff, out.mu],
      workgroups: 1,
      label: 'bora.sigma',
    }),
  );
}

/**
 * Throws a PeftError when μ = mean|σ| is 0 under a transform that divides by it. The device path
 * cannot throw: there the sigma kernel fills Σ with NaN, so every output turns NaN. This reads μ
 * back (a sync point), for callers whose σ lives only on the device.
 */
export async function boraCheckSigma(ctx: Context, s: BoraSigma, sigmaTransform: SigmaTransform = 'exp-mav'): Promise<void> {
  const t = checkSigmaTransform('bora.checkSigma', sigmaTransform);
  if (!dividesByMeanAbs(t)) return;
  const mu = (await ctx.read(s.mu))[0];
  if (!(mu > 0)) throw new PeftError(zeroMeanAbsMessage('bora.sigma', t, mu));
}

/** The host-side check of σ, for callers that have it on the host (vectors, init). */
export function checkSigmaHost(where: string, sigma: ArrayLike<number>, blocks: number, r: number, sigmaTransform: SigmaTransform = 'exp-mav'): void {
  if (!sigma || sigma.length !== blocks * blocks * r) {
    throw new PeftError(
      `${where}: 'sigma' must have b·b·r = ${blocks}·${blocks}·${r} = ${blocks * blocks * r} values, got ${sigma ? sigma.length : 'nothing'}`,
    );
  }
  if (dividesByMeanAbs(sigmaTransform) && meanAbs(sigma) === 0) throw new PeftError(zeroMeanAbsMessage(where, sigmaTransform));
}

/** Σ for this call: the caller's, or computed now into scratch (BoRA); MELoRA has none. */
async function sigmaFor(ctx: Context, p: BoraParams, d: BoraDims, enc: GPUCommandEncoder): Promise<BoraSigma | null> {
  if (p.variant === 'melora') return null;
  if (p.sigmaEff) return p.sigmaEff;
  const out = { eff: ctx.scratch('bora.sigmaEff', [d.blocks, d.blocks, d.r]), mu: ctx.scratch('bora.mu', [1]) };
  await encodeSigma(ctx, p.sigma, out, d.blocks, d.r, d.sigmaTransform, enc);
  return out;
}

// ------------------------------------------------------------------------------ fused kernel

/**
 * One pass of the fused kernel: down-projection, mix, up-projection. The forward runs it with
 * (X, A, Σ, B) into Y; the backward with (G, B, Σᵀ, A) into dX.
 */
interface FusedPass {
  input: Tensor; // [T, nIn]
  downWeight: Tensor;
  sigma: Tensor | null; // null: MELoRA, no mix
  upWeight: Tensor;
  output: Tensor | null; // null: no phase 3
  downSave: Tensor | null; // D [T, b·r] (Z forward, dS backward), when kept
  mixSave: Tensor | null; // S [T, b·r] (S forward, dZ backward), when kept
  nIn: number;
  nOut: number;
  backward: boolean;
  scaleDown: number;
  scaleUp: number;
}

async function encodeFused(ctx: Context, where: string, d: BoraDims, c: FusedPass, enc: GPUCommandEncoder): Promise<void> {
  const TT = tokensPerGroup(ctx, where, d);
  const constants = {
    R: d.r,
    BLOCKS: d.blocks,
    TT,
    WG,
    MIX: d.variant === 'bora',
    MIX_T: c.backward,
    DOWN_QC: !c.backward,
    UP_QC: c.backward,
    SAVE: !!c.downSave,
    PROJECT: !!c.output,
  };
  const blockIn = c.nIn / d.blocks;
  const blockOut = c.nOut / d.blocks;
  // fused4: 16-byte loads and stores, when every row, block and rank group it views as vec4
  // starts on a multiple of 4.
  const vec4 = [c.nIn, blockIn, c.nOut, blockOut, d.r].every((v) => v % 4 === 0);
  const entry = vec4 ? 'fused4' : 'fused';
  await ctx.prepare([{ shader: 'bora', entry, constants }]);
  const groups = Math.ceil(d.T / TT);
  // Unused read_write bindings get distinct one-word scratch buffers (writable bindings must not alias).
  ctx.dispatch(enc, {
    shader: 'bora',
    entry,
    constants,
    params: { tokens: d.T, n_in: c.nIn, n_out: c.nOut, block_in: blockIn, block_out: blockOut, scale_down: c.scaleDown, scale_up: c.scaleUp, groups },
    bindings: [
      c.input,
      c.downWeight,
      c.sigma ?? c.downWeight,
      c.upWeight,
      c.output ?? ctx.scratch('bora.unused.out', [4]), // 16 bytes: fused4 views it as vec4
      c.downSave ?? ctx.scratch('bora.unused.d', [1]),
      c.mixSave ?? ctx.scratch('bora.unused.s', [4]),
    ],
    workgroups: groups,
    label: `${where} ${entry}`,
  });
}

/** dB (cols = m, ranks = S) or dA (cols = n, ranks = dZ, stored [r, n]). */
async function encodeWeightGrad(
  ctx: Context,
  d: BoraDims,
  cols: Tensor,
  ranks: Tensor,
  grad: Tensor,
  count: number,
  scale: number,
  rankMajor: boolean,
  label: string,
  enc: GPUCommandEncoder,
) {
  const constants = { R: d.r, BLOCKS: d.blocks, WG, OUT_QC: rankMajor };
  await ctx.prepare([{ shader: 'bora', entry: 'wgrad', constants }]);
  const chunks = Math.ceil(d.r / 8);
  ctx.dispatch(enc, {
    shader: 'bora',
    entry: 'wgrad',
    constants,
    params: { tokens: d.T, cols: count, block_cols: count / d.blocks, scale },
    bindings: [cols, ranks, grad],
    workgroups: Math.ceil((Math.ceil(count / 4) * chunks) / WG),
    label,
  });
}

// ------------------------------------------------------------------------------ forward / backward

/**
 * Y = X W0ᵀ + s·B-projection(Σ-mix(A·X)). Inference (the default) keeps Z and S in workgroup
 * memory; with `save` (or given z / s tensors) it also writes Z and S [T, b·r] for the backward.
 */
export async function boraForward(ctx: Context, p: BoraForwardArgs, opts: BoraForwardOptions = {}): Promise<{ y: Tensor; z?: Tensor; s?: Tensor }> {
  const where = 'bora.forward';
  checkContext(where, ctx);
  checkArgs(where, p, FORWARD_ARGS);
  checkOptions(where, opts, BORA_FORWARD_OPTIONS);
  const d = layerDims(where, p, p.x, true);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  const br = d.blocks * d.r;
  const save = !!opts.save || !!p.z || !!p.s;
  if (p.y) checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]');
  if (p.z) checkTensor(where, 'z', p.z, [d.T, br], '[T, b·r]');
  if (p.s) checkTensor(where, 's', p.s, [d.T, br], '[T, b·r]');
  checkIo(where, ctx, { y: p.y, z: p.z, s: p.s }, { x: p.x, ...weightTensors('w0', p.w0), a: p.a, b: p.b, sigma: p.sigma, ...sigmaInputs(p) });
  return withOutputs(ctx, where, async (made) => {
    const y = made.output('y', p.y, [d.T, d.m], '[T, m]', 'bora.y');
    const z = save ? made.output('z', p.z, [d.T, br], '[T, b·r]', 'bora.z') : undefined;
    const s = save ? made.output('s', p.s, [d.T, br], '[T, b·r]', 'bora.s') : undefined;
    await ctx.encode(opts.encoder, async (enc) => {
      const sig = await sigmaFor(ctx, p, d, enc);
      // The adapter term is written first and the base product adds onto it in its epilogue
      // (beta = 1), as LoRA's second product does: phase 3 then only stores Y, where adding
      // into a Y the base product has just pushed out of the caches re-read it cold (docs/bora.md).
      await encodeFused(
        ctx,
        where,
        d,
        {
          input: p.x,
          downWeight: p.a,
          sigma: sig?.eff ?? null,
          upWeight: p.b,
          output: y,
          downSave: z ?? null,
          mixSave: s ?? null,
          nIn: d.n,
          nOut: d.m,
          backward: false,
          scaleDown: 1,
          scaleUp: p.scale,
        },
        enc,
      );
      if (!opts.adapterOnly) await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true, beta: 1 }, enc);
    });
    return save ? { y, z, s } : { y };
  });
}

/**
 * dX, dA, dB and (BoRA) dσ of L = sum(Y ⊙ G). Pass the forward's Z and S to skip recomputing
 * them; dΣ is written to `dsigmaEff` when given.
 */
export async function boraBackward(ctx: Context, p: BoraBackwardArgs, opts: BackwardOptions = {}): Promise<BoraGrads> {
  const where = 'bora.backward';
  checkContext(where, ctx);
  checkArgs(where, p, BACKWARD_ARGS);
  checkOptions(where, opts, BACKWARD_OPTIONS);
  const d = layerDims(where, p, p.x, true);
  const br = d.blocks * d.r;
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  checkTensor(where, 'g', p.g, [d.T, d.m], '[T, m]');
  if (!!p.z !== !!p.s) throw new PeftError(`${where}: pass both 'z' and 's' from the forward, or neither`);
  if (p.z) checkTensor(where, 'z', p.z, [d.T, br], '[T, b·r]');
  if (p.s) checkTensor(where, 's', p.s, [d.T, br], '[T, b·r]');
  if (p.dx) checkTensor(where, 'dx', p.dx, [d.T, d.n], '[T, n]');
  if (p.da) checkTensor(where, 'da', p.da, [d.r, d.n], '[r, n]');
  if (p.db) checkTensor(where, 'db', p.db, [d.m, d.r], '[m, r]');
  if (p.variant === 'melora' && (p.dsigma || p.dsigmaEff)) {
    throw new PeftError(`${where}: variant 'melora' has no σ; do not pass 'dsigma' or 'dsigmaEff'`);
  }
  if (p.dsigma) checkTensor(where, 'dsigma', p.dsigma, [d.blocks, d.blocks, d.r], '[b, b, r]');
  if (p.dsigmaEff) checkTensor(where, 'dsigmaEff', p.dsigmaEff, [d.blocks, d.blocks, d.r], '[b, b, r]');
  checkIo(
    where,
    ctx,
    { dx: p.dx, da: p.da, db: p.db, dsigma: p.dsigma, dsigmaEff: p.dsigmaEff },
    { x: p.x, g: p.g, ...weightTensors('w0', p.w0), a: p.a, b: p.b, z: p.z, s: p.s, sigma: p.sigma, ...sigmaInputs(p) },
  );
  return withOutputs(ctx, where, async (made) => {
    const dx = made.output('dx', p.dx, [d.T, d.n], '[T, n]', 'bora.dx');
    const da = made.output('da', p.da, [d.r, d.n], '[r, n]', 'bora.da');
    const db = made.output('db', p.db, [d.m, d.r], '[m, r]', 'bora.db');
    let dsigma: Tensor | undefined;
    let dSigmaEff: Tensor | undefined;
    if (p.variant !== 'melora') {
      dsigma = made.output('dsigma', p.dsigma, [d.blocks, d.blocks, d.r], '[b, b, r]', 'bora.dsigma');
      dSigmaEff = p.dsigmaEff ?? ctx.scratch('bora.dsigmaEff', [d.blocks, d.blocks, d.r]);
    }
    const ds = ctx.scratch('bora.ds', [d.T, br]);
    const dz = ctx.scratch('bora.dz', [d.T, br]);
    await ctx.encode(opts.encoder, async (enc) => {
      const sig = await sigmaFor(ctx, p, d, enc);
      let z = p.z;
      let s = p.s;
      if (!z || !s) {
        z = ctx.scratch('bora.z', [d.T, br]);
        s = ctx.scratch('bora.s', [d.T, br]);
        await encodeFused(
          ctx,
          where,
          d,
          {
            input: p.x,
            downWeight: p.a,
            sigma: sig?.eff ?? null,
            upWeight: p.b,
            output: null,
            downSave: z,
            mixSave: s,
            nIn: d.n,
            nOut: d.m,
            backward: false,
            scaleDown: 1,
            scaleUp: 1,
          },
          enc,
        );
      }
      // The transpose of the forward: G → dS = s·G_j B_j → dZ = Σᵀ-mix → dX = A_k dZ_k, then
      // dX += G W0 in the base product's epilogue (the order of the forward).
      await encodeFused(
        ctx,
        where,
        d,
        {
          input: p.g,
          downWeight: p.b,
          sigma: sig?.eff ?? null,
          upWeight: p.a,
          output: dx,
          downSave: ds,
          mixSave: dz,
          nIn: d.m,
          nOut: d.n,
          backward: true,
          scaleDown: p.scale,
          scaleUp: 1,
        },
        enc,
      );
      if (!opts.adapterOnly) await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m, beta: 1 }, enc);
      await encodeWeightGrad(ctx, d, p.g, s, db, d.m, p.scale, false, 'bora.db', enc);
      await encodeWeightGrad(ctx, d, p.x, dz, da, d.n, 1, true, 'bora.da', enc);
      if (sig && dsigma && dSigmaEff && p.sigma) {
        const mixConstants = { R: d.r, BLOCKS: d.blocks, WG };
        const sigmaConstants = { R: d.r, BLOCKS: d.blocks, TRANSFORM: TRANSFORM_ID[d.sigmaTransform] };
        // mix_grad4 reads dS and Z 4 ranks per load; each invocation owns MIX_GRAD_KC blocks k.
        const mixEntry = d.r % 4 === 0 ? 'mix_grad4' : 'mix_grad';
        await ctx.prepare([
          { shader: 'bora', entry: mixEntry, constants: mixConstants },
          { shader: 'bora', entry: 'sigma_raw_grad', constants: sigmaConstants },
        ]);
        const count = d.blocks * br;
        const invocations = d.blocks * Math.ceil(d.blocks / MIX_GRAD_KC) * (mixEntry === 'mix_grad4' ? d.r / 4 : d.r);
        ctx.dispatch(enc, {
          shader: 'bora',
          entry: mixEntry,
          constants: mixConstants,
          params: { tokens: d.T },
          bindings: [ds, z, dSigmaEff],
          workgroups: Math.ceil(invocations / WG),
          label: 'bora.dSigma',
        });
        ctx.dispatch(enc, {
          shader: 'bora',
          entry: 'sigma_raw_grad',
          constants: sigmaConstants,
          params: { count },
          bindings: [p.sigma, sig.eff, sig.mu, dSigmaEff, dsigma],
          workgroups: 1,
          label: 'bora.dsigma',
        });
      }
    });
    return dsigma ? { dx, da, db, dsigma } : { dx, da, db };
  });
}

// ------------------------------------------------------------------------------ merge

/**
 * W' = W0 + ΔW with ΔW block (j, k) = s·B_j diag(Σ[j, k]) A_k, written to `out` (new by
 * default). `inPlace` updates W0 itself (with `unmerge`, W' − ΔW); `deltaOnly` writes ΔW.
 */
export function boraMerge(ctx: Context, p: BoraMergeArgs & { w0: Tensor; out?: Tensor }, opts?: MergeOptions): Promise<Tensor>;
export function boraMerge(ctx: Context, p: BoraMergeArgs & { out?: Tensor }, opts?: MergeOptions & { inPlace?: false }): Promise<Tensor>;
/** A BaseWeight W0 merged inPlace, or into a BaseWeight `out`, returns that BaseWeight. */
export function boraMerge(ctx: Context, p: BoraMergeArgs, opts?: MergeOptions): Promise<Weight>;
export async function boraMerge(ctx: Context, p: BoraMergeArgs, opts: MergeOptions = {}): Promise<Weight> {
  const where = mergeName('bora', opts ?? {});
  checkContext(where, ctx);
  checkArgs(where, p, MERGE_ARGS);
  checkOptions(where, opts, MERGE_OPTIONS);
  const d = layerDims(where, p);
  const constants = { R: d.r, BLOCKS: d.blocks, WG, MIX: d.variant === 'bora' };
  await ctx.prepare([{ shader: 'bora', entry: 'delta', constants }]);
  return mergeInto(ctx, where, p.w0, p.out, opts, { a: p.a, b: p.b, sigma: p.sigma, ...sigmaInputs(p) }, async (enc, target, sign) => {
    const sig = await sigmaFor(ctx, p, d, enc);
    ctx.dispatch(enc, {
      shader: 'bora',
      entry: 'delta',
      constants,
      params: { n: d.n, m: d.m, block_n: d.blockN, block_m: d.blockM, scale: sign * p.scale },
      bindings: [p.a, sig?.eff ?? p.a, p.b, target],
      workgroups: Math.ceil((d.m * d.n) / WG),
      label: where,
    });
  });
}

// ------------------------------------------------------------------------------ init, sizes, rank

export interface BoraInitArgs {
  /** In-features. */
  n: number;
  /** Out-features. */
  m: number;
  /** Rank. */
  r: number;
  /** Blocks b (divides n and m). */
  blocks: number;
  /** Seed of A's (and σ's) values. */
  seed: number;
  /** Default 'bora'; 'melora' has no σ. */
  variant?: BoraVariant;
}

/**
 * Initial parameters (host arrays): A and σ kaiming-uniform with A's bound U(-1/√n, 1/√n), B = 0.
 * MELoRA has no σ.
 */
export function boraInit(args: BoraInitArgs): { a: Float32Array; b: Float32Array; sigma?: Float32Array } {
  const where = 'bora.init';
  checkArgs(where, args, ['n', 'm', 'r', 'blocks', 'seed', 'variant']);
  const n = checkDim(where, 'n', args.n);
  const m = checkDim(where, 'm', args.m);
  const r = checkDim(where, 'r', args.r);
  const blocks = checkBlocks(where, args.blocks);
  const variant = checkVariant(where, args.variant);
  checkDivides(where, blocks, n, m);
  checkRank(where, r, n, m);
  if (!Number.isInteger(args.seed)) throw new PeftError(`${where}: 'seed' must be an integer, got ${String(args.seed)}`);
  const a = kaimingUniform(r * n, n, args.seed);
  const b = new Float32Array(m * r);
  if (variant === 'melora') return { a, b };
  // A different stream from A's, same bound (the paper initialises σ like A).
  return { a, b, sigma: kaimingUniform(blocks * blocks * r, n, (args.seed ^ 0x5bd1e995) >>> 0) };
}

/** A layer's sizes as the counts below take them. */
export interface BoraSize {
  n: number;
  m: number;
  r: number;
  blocks: number;
  variant?: BoraVariant;
}

/** Trainable parameters: LoRA's r(n + m), plus b²r for BoRA's σ. */
export function boraParamCount(d: BoraSize): number {
  return d.r * (d.n + d.m) + (checkVariant('bora.paramCount', d.variant) === 'bora' ? d.blocks * d.blocks * d.r : 0);
}

/**
 * Analytic FLOPs (a multiply-add counts 2), for T tokens. BoRA adds b²r multiply-adds per token to
 * LoRA's forward (the mix) and 2·b²r to its backward (the transposed mix and dΣ); MELoRA adds none.
 */
export function boraFlops(T: number, d: BoraSize): PhaseFlops {
  const mix = checkVariant('bora.flops', d.variant) === 'bora' ? 2 * d.blocks * d.blocks * d.r * T : 0;
  const base = 2 * d.m * d.n * T;
  const adapterForward = 2 * (d.n + d.m) * d.r * T + mix;
  const adapterBackward = 4 * (d.n + d.m) * d.r * T + 2 * mix;
  return { forward: base + adapterForward, backward: base + adapterBackward, adapterForward, adapterBackward };
}

/** The divisor of both n and m nearest ⌊√n⌋ (ties go to the smaller, fewer parameters). */
export function recommendedBlocks(n: number, m: number): number {
  checkDim('recommendedBlocks', 'n', n);
  checkDim('recommendedBlocks', 'm', m);
  const target = Math.floor(Math.sqrt(n));
  let best = 1;
  for (let b = 1; b <= Math.min(n, m); b++) {
    if (n % b || m % b) continue;
    if (Math.abs(b - target) < Math.abs(best - target)) best = b;
  }
  return best;
}

/** Singular-value report of ΔW, computed on the device and analysed on the CPU (paper's Figure 4). */
export async function boraRank(ctx: Context, p: BoraParams, threshold = 0.005): Promise<RankReport> {
  checkContext('bora.rank', ctx);
  checkArgs('bora.rank', p, LAYER_ARGS);
  const d = layerDims('bora.rank', p);
  const delta = await boraMerge(ctx, p, { deltaOnly: true });
  try {
    return rankReport(await ctx.read(delta), d.m, d.n, threshold);
  } finally {
    delta.destroy();
  }
}
