// BoRA and MELoRA on the GPU (KERNELS.md, "BoRA"; kernels in shaders/bora.wgsl, math in docs/bora.md).
//
// sigma     Σ = f(σ), μ = mean|σ|                          (1 dispatch, once per step)
// forward   Y = X W0ᵀ (matmul), then the fused adapter:   (2 dispatches; Z and S stay in
//           Y += s·B_j Σ_k Σ[j,k] ⊙ (A_k X_k)              workgroup memory unless saved)
// backward  dX = G W0 (matmul), then the fused transpose:  (5 dispatches + 1 for dσ)
//           dS = s·G_j B_j, dZ = Σᵀ-mix(dS), dX += A_k dZ_k (dS, dZ saved);
//           dB (wgrad), dA (wgrad), dΣ (dsig), dσ (sigma_grad)
// merge     ΔW block (j,k) = s·B_j diag(Σ[j,k]) A_k, W' = W0 ± ΔW   (1 dispatch)
//
// MELoRA is the mode with Σ[j,k] = I for j = k and 0 otherwise: no σ, no mix phase.

import type { Context } from './runtime.js';
import { f32 } from './runtime.js';
import type { Tensor } from './tensor.js';
import { matmul } from './ops/matmul.js';
import { kaimingUniform } from './random.js';
import { rankReport, type RankReport } from './rank.js';
import { SIGMA_TRANSFORMS, meanAbs, type SigmaTransform } from './reference/bora.js';
import { PeftError, checkDim, checkDistinct, checkRank, checkScale, checkTensor } from './validate.js';

export type { SigmaTransform } from './reference/bora.js';
export type BoraMode = 'bora' | 'melora';

/** Σ for one step, made by `boraSigma`: Σ = f(σ) [b, b, r] and μ = mean|σ| [1]. */
export interface BoraSigma {
  eff: Tensor;
  mu: Tensor;
}

export interface BoraParams {
  w0: Tensor; // [m, n]
  a: Tensor; // [r, n]
  b: Tensor; // [m, r]
  /** Blocks b: must divide n and m. */
  blocks: number;
  /** s = alpha / r. */
  scale: number;
  /** 'bora' (default) or 'melora' (fixed block-identity Σ, no σ). */
  mode?: BoraMode;
  /** σ [b, b, r], required for BoRA, absent for MELoRA. With transform 'raw' it is Σ itself. */
  sigma?: Tensor;
  transform?: SigmaTransform;
  /** Σ of this step from `boraSigma`; when absent each call computes it into scratch. */
  sigmaEff?: BoraSigma;
}

export interface EncodeOptions {
  encoder?: GPUCommandEncoder;
}

export interface BoraDims {
  T: number;
  n: number;
  m: number;
  r: number;
  blocks: number;
  /** n / b and m / b. */
  nb: number;
  mb: number;
  mode: BoraMode;
  transform: SigmaTransform;
}

const TRANSFORM_ID: Record<SigmaTransform, number> = { 'exp-mav': 0, exp: 1, mav: 2, raw: 3 };
const WG = 64;
const MAX_TT = 8;

function checkBlocks(where: string, blocks: unknown): number {
  if (typeof blocks !== 'number' || !Number.isInteger(blocks) || blocks < 1) {
    throw new PeftError(`${where}: 'blocks' must be an integer ≥ 1, got ${String(blocks)}`);
  }
  return blocks;
}

function checkTransform(where: string, t: unknown): SigmaTransform {
  if (t === undefined) return 'exp-mav';
  if (!SIGMA_TRANSFORMS.includes(t as SigmaTransform)) {
    throw new PeftError(`${where}: 'transform' must be one of ${SIGMA_TRANSFORMS.join(', ')}, got ${String(t)}`);
  }
  return t as SigmaTransform;
}

function checkDivides(where: string, blocks: number, n: number, m: number): void {
  if (n % blocks !== 0) throw new PeftError(`${where}: blocks b = ${blocks} must divide n = ${n} (n mod b = ${n % blocks})`);
  if (m % blocks !== 0) throw new PeftError(`${where}: blocks b = ${blocks} must divide m = ${m} (m mod b = ${m % blocks})`);
}

function dims(where: string, p: BoraParams, x?: Tensor): BoraDims {
  const blocks = checkBlocks(where, p.blocks);
  const mode = p.mode ?? 'bora';
  if (mode !== 'bora' && mode !== 'melora') throw new PeftError(`${where}: 'mode' must be 'bora' or 'melora', got ${String(mode)}`);
  if (!p.w0 || p.w0.shape.length !== 2) throw new PeftError(`${where}: 'w0' must be a 2-D Tensor [m, n]`);
  const [m, n] = p.w0.shape;
  if (!p.a || p.a.shape.length !== 2) throw new PeftError(`${where}: 'a' must be a 2-D Tensor [r, n]`);
  const r = p.a.shape[0];
  checkTensor(where, 'w0', p.w0, [m, n], '[m, n]');
  checkTensor(where, 'a', p.a, [r, n], '[r, n]');
  checkTensor(where, 'b', p.b, [m, r], '[m, r]');
  checkRank(where, r, n, m);
  checkScale(where, 'scale', p.scale);
  checkDivides(where, blocks, n, m);
  const transform = checkTransform(where, p.transform);
  if (mode === 'bora') {
    checkTensor(where, 'sigma', p.sigma, [blocks, blocks, r], '[b, b, r]');
    if (p.sigmaEff) {
      checkTensor(where, 'sigmaEff.eff', p.sigmaEff.eff, [blocks, blocks, r], '[b, b, r]');
      checkTensor(where, 'sigmaEff.mu', p.sigmaEff.mu, [1], '[1]');
    }
  } else if (p.sigma || p.sigmaEff) {
    throw new PeftError(`${where}: MELoRA mode has a fixed block-identity Σ; do not pass 'sigma' or 'sigmaEff'`);
  }
  let T = 1;
  if (x) {
    if (x.shape.length !== 2) throw new PeftError(`${where}: 'x' must be a 2-D Tensor [T, n]`);
    T = x.shape[0];
  }
  return { T, n, m, r, blocks, nb: n / blocks, mb: m / blocks, mode, transform };
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
  return Math.min(MAX_TT, d.T, fit);
}

// ------------------------------------------------------------------------------ Σ

/** Σ = f(σ) and μ on the device: one dispatch, meant to run once per training step. */
export async function boraSigma(
  ctx: Context,
  p: { sigma: Tensor; transform?: SigmaTransform; out?: BoraSigma },
  opts: EncodeOptions = {},
): Promise<BoraSigma> {
  const where = 'bora.sigma';
  const transform = checkTransform(where, p.transform);
  if (!p.sigma || p.sigma.shape.length !== 3 || p.sigma.shape[0] !== p.sigma.shape[1]) {
    throw new PeftError(`${where}: 'sigma' must be a Tensor of shape [b, b, r], got ${p.sigma ? `[${p.sigma.shape.join(', ')}]` : 'nothing'}`);
  }
  const [blocks, , r] = p.sigma.shape;
  checkTensor(where, 'sigma', p.sigma, [blocks, blocks, r], '[b, b, r]');
  const eff = p.out ? checkTensor(where, 'out.eff', p.out.eff, [blocks, blocks, r], '[b, b, r]') : ctx.tensor([blocks, blocks, r], 'f32', 'bora.sigmaEff');
  const mu = p.out ? checkTensor(where, 'out.mu', p.out.mu, [1], '[1]') : ctx.tensor([1], 'f32', 'bora.mu');
  checkDistinct(where, { eff, mu, sigma: p.sigma });
  await encodeSigma(ctx, p.sigma, eff, mu, blocks, r, transform, opts.encoder);
  return { eff, mu };
}

async function encodeSigma(ctx: Context, sigma: Tensor, eff: Tensor, mu: Tensor, blocks: number, r: number, transform: SigmaTransform, encoder?: GPUCommandEncoder) {
  const constants = { R: r, BLOCKS: blocks, TRANSFORM: TRANSFORM_ID[transform] };
  await ctx.prepare([{ shader: 'bora', entry: 'sigma', constants }]);
  await ctx.encode(encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: 'bora', entry: 'sigma', constants,
      params: [blocks * blocks * r, 0, 0, 0, 0, f32(0), f32(0), 1],
      bindings: [sigma, eff, mu], workgroups: 1, label: 'bora.sigma',
    }),
  );
}

/**
 * Throws a PeftError when μ = mean|σ| is 0 under a transform that divides by it. The device path
 * cannot throw: there the sigma kernel fills Σ with NaN, so every output turns NaN. This reads μ
 * back (a sync point), for callers whose σ lives only on the device.
 */
export async function boraCheckSigma(ctx: Context, s: BoraSigma, transform: SigmaTransform = 'exp-mav'): Promise<void> {
  const t = checkTransform('bora.checkSigma', transform);
  if (t !== 'exp-mav' && t !== 'mav') return;
  const mu = (await ctx.read(s.mu))[0];
  if (!(mu > 0)) throw new PeftError(`bora.sigma: μ = mean|σ| is ${mu}, so σ/μ is undefined for the '${t}' transform; initialise σ away from 0`);
}

/** The host-side check of σ, for callers that have it on the host (vectors, init). */
export function checkSigmaHost(where: string, sigma: ArrayLike<number>, blocks: number, r: number, transform: SigmaTransform = 'exp-mav'): void {
  if (!sigma || sigma.length !== blocks * blocks * r) {
    throw new PeftError(`${where}: 'sigma' must have b·b·r = ${blocks}·${blocks}·${r} = ${blocks * blocks * r} values, got ${sigma ? sigma.length : 'nothing'}`);
  }
  if ((transform === 'exp-mav' || transform === 'mav') && meanAbs(sigma) === 0) {
    throw new PeftError(`${where}: μ = mean|σ| is 0, so σ/μ is undefined for the '${transform}' transform; initialise σ away from 0`);
  }
}

/** Σ for this call: the caller's, or computed now into scratch (BoRA); MELoRA has none. */
async function sigmaFor(ctx: Context, p: BoraParams, d: BoraDims, enc: GPUCommandEncoder): Promise<BoraSigma | null> {
  if (d.mode === 'melora') return null;
  if (p.sigmaEff) return p.sigmaEff;
  const eff = ctx.scratch('bora.sigmaEff', [d.blocks, d.blocks, d.r]);
  const mu = ctx.scratch('bora.mu', [1]);
  await encodeSigma(ctx, p.sigma!, eff, mu, d.blocks, d.r, d.transform, enc);
  return { eff, mu };
}

// ------------------------------------------------------------------------------ fused kernel

interface FusedCall {
  input: Tensor; // [T, nIn]
  down: Tensor;
  sig: Tensor | null;
  up: Tensor;
  out: Tensor | null; // null: no phase 3
  dsave: Tensor | null;
  ssave: Tensor | null;
  nIn: number;
  nOut: number;
  backward: boolean;
  aDown: number;
  aOut: number;
  accum: boolean;
}

async function encodeFused(ctx: Context, where: string, d: BoraDims, c: FusedCall, enc: GPUCommandEncoder): Promise<void> {
  const TT = tokensPerGroup(ctx, where, d);
  const save = !!c.dsave;
  const constants = {
    R: d.r, BLOCKS: d.blocks, TT, WG,
    MIX: d.mode === 'bora', MIX_T: c.backward, DOWN_QC: !c.backward, UP_QC: c.backward,
    SAVE: save, PROJECT: !!c.out, ACCUM: c.accum,
  };
  const wIn = c.nIn / d.blocks;
  const wOut = c.nOut / d.blocks;
  // fused4: 16-byte loads and stores, when every row, block and rank group it views as vec4
  // starts on a multiple of 4.
  const vec4 = [c.nIn, wIn, c.nOut, wOut, d.r].every((v) => v % 4 === 0);
  const entry = vec4 ? 'fused4' : 'fused';
  await ctx.prepare([{ shader: 'bora', entry, constants }]);
  const groups = Math.ceil(d.T / TT);
  // Unused read_write bindings get distinct one-word scratch buffers (writable bindings must not alias).
  ctx.dispatch(enc, {
    shader: 'bora', entry, constants,
    params: [d.T, c.nIn, c.nOut, wIn, wOut, f32(c.aDown), f32(c.aOut), groups],
    bindings: [
      c.input, c.down, c.sig ?? c.down, c.up,
      c.out ?? ctx.scratch('bora.unused.out', [4]), // 16 bytes: fused4 views it as vec4
      c.dsave ?? ctx.scratch('bora.unused.d', [1]),
      c.ssave ?? ctx.scratch('bora.unused.s', [4]),
    ],
    workgroups: groups,
    label: `${where} ${entry}`,
  });
}

async function encodeWgrad(ctx: Context, d: BoraDims, m: Tensor, v: Tensor, out: Tensor, cols: number, alpha: number, outQC: boolean, label: string, enc: GPUCommandEncoder) {
  const constants = { R: d.r, BLOCKS: d.blocks, WG, OUT_QC: outQC };
  await ctx.prepare([{ shader: 'bora', entry: 'wgrad', constants }]);
  const chunks = Math.ceil(d.r / 8);
  ctx.dispatch(enc, {
    shader: 'bora', entry: 'wgrad', constants,
    params: [d.T, cols, 0, cols / d.blocks, 0, f32(alpha), f32(0), 0],
    bindings: [m, v, out], workgroups: Math.ceil((Math.ceil(cols / 4) * chunks) / WG), label,
  });
}

// ------------------------------------------------------------------------------ forward / backward

/**
 * Y = X W0ᵀ + s·B-projection(Σ-mix(A·X)). Inference (the default) keeps Z and S in workgroup
 * memory; with `save` (or given z / s tensors) it also writes Z and S [T, b·r] for the backward.
 */
export async function boraForward(
  ctx: Context,
  p: BoraParams & { x: Tensor; y?: Tensor; z?: Tensor; s?: Tensor },
  opts: EncodeOptions & { adapterOnly?: boolean; save?: boolean } = {},
): Promise<{ y: Tensor; z?: Tensor; s?: Tensor }> {
  const where = 'bora.forward';
  const d = dims(where, p, p.x);
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  const br = d.blocks * d.r;
  const y = p.y ? checkTensor(where, 'y', p.y, [d.T, d.m], '[T, m]') : ctx.tensor([d.T, d.m], 'f32', 'bora.y');
  const save = opts.save || !!p.z || !!p.s;
  const z = save ? (p.z ? checkTensor(where, 'z', p.z, [d.T, br], '[T, b·r]') : ctx.tensor([d.T, br], 'f32', 'bora.z')) : undefined;
  const s = save ? (p.s ? checkTensor(where, 's', p.s, [d.T, br], '[T, b·r]') : ctx.tensor([d.T, br], 'f32', 'bora.s')) : undefined;
  checkDistinct(where, { y, z, s, x: p.x, w0: p.w0, a: p.a, b: p.b, sigma: p.sigma });
  await ctx.encode(opts.encoder, async (enc) => {
    const sig = await sigmaFor(ctx, p, d, enc);
    if (!opts.adapterOnly) await matmul(ctx, { a: p.x, b: p.w0, c: y, M: d.T, N: d.m, K: d.n, transB: true }, enc);
    await encodeFused(ctx, where, d, {
      input: p.x, down: p.a, sig: sig?.eff ?? null, up: p.b, out: y, dsave: z ?? null, ssave: s ?? null,
      nIn: d.n, nOut: d.m, backward: false, aDown: 1, aOut: p.scale, accum: !opts.adapterOnly,
    }, enc);
  });
  return save ? { y, z, s } : { y };
}

export interface BoraGrads {
  dx: Tensor;
  da: Tensor;
  db: Tensor;
  /** dσ [b, b, r] (BoRA only). */
  dsigma?: Tensor;
}

/**
 * dX, dA, dB and dσ of L = sum(Y ⊙ G). Pass the forward's Z and S to skip recomputing them; dΣ is
 * written to `dsigmaEff` when given.
 */
export async function boraBackward(
  ctx: Context,
  p: BoraParams & { x: Tensor; g: Tensor; z?: Tensor; s?: Tensor; dx?: Tensor; da?: Tensor; db?: Tensor; dsigma?: Tensor; dsigmaEff?: Tensor },
  opts: EncodeOptions & { adapterOnly?: boolean } = {},
): Promise<BoraGrads> {
  const where = 'bora.backward';
  const d = dims(where, p, p.x);
  const br = d.blocks * d.r;
  checkTensor(where, 'x', p.x, [d.T, d.n], '[T, n]');
  checkTensor(where, 'g', p.g, [d.T, d.m], '[T, m]');
  if (!!p.z !== !!p.s) throw new PeftError(`${where}: pass both 'z' and 's' from the forward, or neither`);
  if (p.z) checkTensor(where, 'z', p.z, [d.T, br], '[T, b·r]');
  if (p.s) checkTensor(where, 's', p.s, [d.T, br], '[T, b·r]');
  const bora = d.mode === 'bora';
  const dx = p.dx ? checkTensor(where, 'dx', p.dx, [d.T, d.n], '[T, n]') : ctx.tensor([d.T, d.n], 'f32', 'bora.dx');
  const da = p.da ? checkTensor(where, 'da', p.da, [d.r, d.n], '[r, n]') : ctx.tensor([d.r, d.n], 'f32', 'bora.da');
  const db = p.db ? checkTensor(where, 'db', p.db, [d.m, d.r], '[m, r]') : ctx.tensor([d.m, d.r], 'f32', 'bora.db');
  let dsigma: Tensor | undefined;
  if (bora) dsigma = p.dsigma ? checkTensor(where, 'dsigma', p.dsigma, [d.blocks, d.blocks, d.r], '[b, b, r]') : ctx.tensor([d.blocks, d.blocks, d.r], 'f32', 'bora.dsigma');
  else if (p.dsigma || p.dsigmaEff) throw new PeftError(`${where}: MELoRA mode has no σ; do not pass 'dsigma' or 'dsigmaEff'`);
  const dEff = p.dsigmaEff ? checkTensor(where, 'dsigmaEff', p.dsigmaEff, [d.blocks, d.blocks, d.r], '[b, b, r]') : ctx.scratch('bora.dsigmaEff', [d.blocks, d.blocks, d.r]);
  checkDistinct(where, { dx, da, db, dsigma, dsigmaEff: p.dsigmaEff, x: p.x, g: p.g, w0: p.w0, a: p.a, b: p.b, z: p.z, s: p.s, sigma: p.sigma });
  const ds = ctx.scratch('bora.ds', [d.T, br]);
  const dz = ctx.scratch('bora.dz', [d.T, br]);
  await ctx.encode(opts.encoder, async (enc) => {
    const sig = await sigmaFor(ctx, p, d, enc);
    let z = p.z;
    let s = p.s;
    if (!z || !s) {
      z = ctx.scratch('bora.z', [d.T, br]);
      s = ctx.scratch('bora.s', [d.T, br]);
      await encodeFused(ctx, where, d, {
        input: p.x, down: p.a, sig: sig?.eff ?? null, up: p.b, out: null, dsave: z, ssave: s,
        nIn: d.n, nOut: d.m, backward: false, aDown: 1, aOut: 1, accum: false,
      }, enc);
    }
    if (!opts.adapterOnly) await matmul(ctx, { a: p.g, b: p.w0, c: dx, M: d.T, N: d.n, K: d.m }, enc);
    // The transpose of the forward: G → dS = s·G_j B_j → dZ = Σᵀ-mix → dX += A_k dZ_k.
    await encodeFused(ctx, where, d, {
      input: p.g, down: p.b, sig: sig?.eff ?? null, up: p.a, out: dx, dsave: ds, ssave: dz,
      nIn: d.m, nOut: d.n, backward: true, aDown: p.scale, aOut: 1, accum: !opts.adapterOnly,
    }, enc);
    await encodeWgrad(ctx, d, p.g, s, db, d.m, p.scale, false, 'bora.db', enc);
    await encodeWgrad(ctx, d, p.x, dz, da, d.n, 1, true, 'bora.da', enc);
    if (bora) {
      const c1 = { R: d.r, BLOCKS: d.blocks, WG };
      const c2 = { R: d.r, BLOCKS: d.blocks, TRANSFORM: TRANSFORM_ID[d.transform] };
      await ctx.prepare([{ shader: 'bora', entry: 'dsig', constants: c1 }, { shader: 'bora', entry: 'sigma_grad', constants: c2 }]);
      const N = d.blocks * br;
      ctx.dispatch(enc, {
        shader: 'bora', entry: 'dsig', constants: c1, params: [d.T, 0, 0, 0, 0, f32(0), f32(0), 0],
        bindings: [ds, z, dEff], workgroups: Math.ceil(N / WG), label: 'bora.dSigma',
      });
      ctx.dispatch(enc, {
        shader: 'bora', entry: 'sigma_grad', constants: c2, params: [N, 0, 0, 0, 0, f32(0), f32(0), 0],
        bindings: [dEff, sig!.eff, sig!.mu, p.sigma!, dsigma!], workgroups: 1, label: 'bora.dsigma',
      });
    }
  });
  return bora ? { dx, da, db, dsigma } : { dx, da, db };
}

// ------------------------------------------------------------------------------ merge

/**
 * W' = W0 + sign·ΔW with ΔW block (j, k) = s·B_j diag(Σ[j, k]) A_k, written to `out` (new by
 * default). `inPlace` updates W0 itself (with `unmerge`, W' − ΔW); `deltaOnly` writes ΔW.
 */
export async function boraMerge(
  ctx: Context,
  p: BoraParams & { out?: Tensor },
  opts: EncodeOptions & { inPlace?: boolean; unmerge?: boolean; deltaOnly?: boolean } = {},
): Promise<Tensor> {
  const where = opts.unmerge ? 'bora.unmerge' : 'bora.merge';
  const d = dims(where, p);
  const sign = opts.unmerge ? -1 : 1;
  let out: Tensor;
  if (opts.inPlace) {
    if (opts.deltaOnly) throw new PeftError(`${where}: 'inPlace' and 'deltaOnly' exclude each other`);
    out = p.w0;
  } else {
    out = p.out ? checkTensor(where, 'out', p.out, [d.m, d.n], '[m, n]') : ctx.tensor([d.m, d.n], 'f32', 'bora.merged');
    checkDistinct(where, { out, w0: p.w0, a: p.a, b: p.b, sigma: p.sigma });
  }
  const constants = { R: d.r, BLOCKS: d.blocks, WG, MIX: d.mode === 'bora' };
  await ctx.prepare([{ shader: 'bora', entry: 'delta', constants }]);
  await ctx.encode(opts.encoder, async (enc) => {
    const sig = await sigmaFor(ctx, p, d, enc);
    if (!opts.inPlace && !opts.deltaOnly) ctx.copy(p.w0, out, enc);
    ctx.dispatch(enc, {
      shader: 'bora', entry: 'delta', constants,
      params: [0, d.n, d.m, d.nb, d.mb, f32(sign * p.scale), f32(opts.deltaOnly ? 0 : 1), 0],
      bindings: [p.a, sig?.eff ?? p.a, p.b, out],
      workgroups: Math.ceil((d.m * d.n) / WG), label: where,
    });
  });
  return out;
}

// ------------------------------------------------------------------------------ init, sizes, rank

/**
 * Initial parameters (host arrays): A and σ kaiming-uniform with A's bound U(-1/√n, 1/√n), B = 0.
 * MELoRA has no σ.
 */
export function boraInit(n: number, m: number, r: number, blocks: number, seed: number, mode: BoraMode = 'bora'): { a: Float32Array; b: Float32Array; sigma?: Float32Array } {
  const where = 'bora.init';
  checkDim(where, 'n', n);
  checkDim(where, 'm', m);
  checkDim(where, 'r', r);
  checkBlocks(where, blocks);
  checkDivides(where, blocks, n, m);
  checkRank(where, r, n, m);
  const a = kaimingUniform(r * n, n, seed);
  const b = new Float32Array(m * r);
  if (mode === 'melora') return { a, b };
  // A different stream from A's, same bound (the paper initialises σ like A).
  return { a, b, sigma: kaimingUniform(blocks * blocks * r, n, (seed ^ 0x5bd1e995) >>> 0) };
}

/** Trainable parameters: LoRA's r(n + m), plus b²r for BoRA's σ. */
export function boraParamCount(n: number, m: number, r: number, blocks: number, mode: BoraMode = 'bora'): number {
  return r * (n + m) + (mode === 'bora' ? blocks * blocks * r : 0);
}

/**
 * Analytic FLOPs (a multiply-add counts 2), for T tokens. BoRA adds b²r multiply-adds per token to
 * LoRA's forward (the mix) and 2·b²r to its backward (the transposed mix and dΣ); MELoRA adds none.
 */
export function boraFlops(T: number, n: number, m: number, r: number, blocks: number, mode: BoraMode = 'bora') {
  const mix = mode === 'bora' ? 2 * blocks * blocks * r * T : 0;
  const base = 2 * m * n * T;
  const adapterForward = 2 * (n + m) * r * T + mix;
  const adapterBackward = 4 * (n + m) * r * T + 2 * mix;
  return { forward: base + adapterForward, backward: base + adapterBackward, adapterForward, adapterBackward, step: 2 * base + adapterForward + adapterBackward };
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
  const d = dims('bora.rank', p);
  const delta = await boraMerge(ctx, p, { deltaOnly: true });
  try {
    return rankReport(await ctx.read(delta), d.m, d.n, threshold);
  } finally {
    delta.destroy();
  }
}
