// Float64 reference for BoRA and MELoRA (docs/bora.md; math in docs/math.md). Same arguments as
// the GPU kernels, host arrays. Written straight from the spec's index formulas, loop by loop, so that it shares
// no structure with the fused kernels it checks.

import { PeftError } from '../../validate.js';
import { matmul, type F64 } from '../../reference/linalg.js';
import { DEFAULT_SIGMA_TRANSFORM, dividesByMeanAbs, meanAbs, zeroMeanAbsMessage, type SigmaTransform } from './sigma.js';
import type { BoraVariant } from './kernels.js';

export { SIGMA_TRANSFORMS, meanAbs, type SigmaTransform } from './sigma.js';

export interface BoraRefArgs {
  T: number;
  n: number;
  m: number;
  r: number;
  /** b: blocks of A's columns and of B's rows. */
  blocks: number;
  scale: number;
  x: ArrayLike<number>; // [T, n]
  w0: ArrayLike<number>; // [m, n]
  a: ArrayLike<number>; // [r, n]
  b: ArrayLike<number>; // [m, r]
  /** σ [b, b, r] (BoRA); ignored for MELoRA. With sigmaTransform 'raw' it is Σ itself. */
  sigma?: ArrayLike<number>;
  sigmaTransform?: SigmaTransform;
  /** 'melora': Σ[j, k] = I when j = k, else 0, and no σ. Default 'bora'. */
  variant?: BoraVariant;
}

/** Σ = f(σ) and μ. Throws when the transform divides by μ = 0. */
export function sigmaEffective(sigma: ArrayLike<number>, transform: SigmaTransform = DEFAULT_SIGMA_TRANSFORM): { eff: F64; mu: number } {
  const mu = meanAbs(sigma);
  if (dividesByMeanAbs(transform) && mu === 0) throw new PeftError(zeroMeanAbsMessage('bora.sigma', transform));
  const eff = new Float64Array(sigma.length);
  for (let l = 0; l < sigma.length; l++) {
    const s = sigma[l];
    eff[l] = transform === 'exp-mav' ? Math.exp(s / mu) : transform === 'exp' ? Math.exp(s) : transform === 'mav' ? s / mu : s;
  }
  return { eff, mu };
}

/** dσ from dΣ through f, with the gradient through μ = mean|σ| (not detached). */
export function sigmaGrad(sigma: ArrayLike<number>, dEff: ArrayLike<number>, transform: SigmaTransform = DEFAULT_SIGMA_TRANSFORM): F64 {
  const N = sigma.length;
  const { eff, mu } = sigmaEffective(sigma, transform);
  const out = new Float64Array(N);
  if (transform === 'raw') return Float64Array.from(dEff);
  if (transform === 'exp') {
    for (let l = 0; l < N; l++) out[l] = dEff[l] * eff[l];
    return out;
  }
  // Σ_l depends on σ_l through u_l = σ_l/μ and on every σ_p through μ: ∂μ/∂σ_p = sign(σ_p)/N.
  const df = (l: number) => (transform === 'exp-mav' ? dEff[l] * eff[l] : dEff[l]); // dL/du_l
  let c = 0;
  for (let p = 0; p < N; p++) c += df(p) * sigma[p];
  for (let l = 0; l < N; l++) out[l] = df(l) / mu - (Math.sign(sigma[l]) / (N * mu * mu)) * c;
  return out;
}

/** Σ as the kernels use it: f(σ), or MELoRA's block identity. */
export function sigmaFor(p: Pick<BoraRefArgs, 'blocks' | 'r' | 'sigma' | 'sigmaTransform' | 'variant'>): F64 {
  const { blocks: nb, r } = p;
  if (p.variant === 'melora') {
    const eff = new Float64Array(nb * nb * r);
    for (let j = 0; j < nb; j++) for (let q = 0; q < r; q++) eff[(j * nb + j) * r + q] = 1;
    return eff;
  }
  if (!p.sigma || p.sigma.length !== nb * nb * r) {
    throw new PeftError(`bora reference: 'sigma' must have b·b·r = ${nb * nb * r} values, got ${p.sigma?.length ?? 'nothing'}`);
  }
  return sigmaEffective(p.sigma, p.sigmaTransform).eff;
}

function check(p: BoraRefArgs): { nbw: number; mbw: number } {
  if (!Number.isInteger(p.blocks) || p.blocks < 1) throw new PeftError(`bora reference: 'blocks' must be an integer ≥ 1, got ${p.blocks}`);
  if (p.n % p.blocks || p.m % p.blocks) {
    throw new PeftError(`bora reference: blocks b = ${p.blocks} must divide n = ${p.n} and m = ${p.m}`);
  }
  return { nbw: p.n / p.blocks, mbw: p.m / p.blocks };
}

/** Z [T, b, r] (phase 1) and S [T, b, r] (phase 2). */
export function boraIntermediates(p: BoraRefArgs): { z: F64; s: F64 } {
  const { nbw } = check(p);
  const { T, r, blocks: nb } = p;
  const eff = sigmaFor(p);
  const z = new Float64Array(T * nb * r);
  const s = new Float64Array(T * nb * r);
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < nb; k++) {
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let c = 0; c < nbw; c++) acc += p.a[q * p.n + k * nbw + c] * p.x[t * p.n + k * nbw + c];
        z[(t * nb + k) * r + q] = acc;
      }
    }
    for (let j = 0; j < nb; j++) {
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let k = 0; k < nb; k++) acc += eff[(j * nb + k) * r + q] * z[(t * nb + k) * r + q];
        s[(t * nb + j) * r + q] = acc;
      }
    }
  }
  return { z, s };
}

/** Y = X W0ᵀ + s·(B projection of S); with adapterOnly, the adapter term alone. */
export function boraForward(p: BoraRefArgs, adapterOnly = false): F64 {
  const { mbw } = check(p);
  const { T, m, r, blocks: nb } = p;
  const { s } = boraIntermediates(p);
  const y = adapterOnly ? new Float64Array(T * m) : matmul(p.x, p.w0, T, p.n, m, false, true);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < nb; j++) {
      for (let i = 0; i < mbw; i++) {
        let acc = 0;
        for (let q = 0; q < r; q++) acc += p.b[(j * mbw + i) * r + q] * s[(t * nb + j) * r + q];
        y[t * m + j * mbw + i] += p.scale * acc;
      }
    }
  }
  return y;
}

export interface BoraRefGrads {
  dx: F64;
  da: F64;
  db: F64;
  /** dΣ [b, b, r]. */
  dsigmaEff: F64;
  /** dσ [b, b, r] through the transform (absent for MELoRA). */
  dsigma?: F64;
}

/** Gradients of L = sum(Y ⊙ G); with adapterOnly, dX drops the G W0 term. */
export function boraBackward(p: BoraRefArgs & { g: ArrayLike<number> }, adapterOnly = false): BoraRefGrads {
  const { nbw, mbw } = check(p);
  const { T, n, m, r, blocks: nb } = p;
  const eff = sigmaFor(p);
  const { z, s } = boraIntermediates(p);
  const ds = new Float64Array(T * nb * r);
  const dz = new Float64Array(T * nb * r);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < nb; j++) {
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let i = 0; i < mbw; i++) acc += p.g[t * m + j * mbw + i] * p.b[(j * mbw + i) * r + q];
        ds[(t * nb + j) * r + q] = p.scale * acc;
      }
    }
    for (let k = 0; k < nb; k++) {
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let j = 0; j < nb; j++) acc += eff[(j * nb + k) * r + q] * ds[(t * nb + j) * r + q];
        dz[(t * nb + k) * r + q] = acc;
      }
    }
  }
  const db = new Float64Array(m * r);
  for (let j = 0; j < nb; j++) {
    for (let i = 0; i < mbw; i++) {
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += p.g[t * m + j * mbw + i] * s[(t * nb + j) * r + q];
        db[(j * mbw + i) * r + q] = p.scale * acc;
      }
    }
  }
  const dsigmaEff = new Float64Array(nb * nb * r);
  for (let j = 0; j < nb; j++) {
    for (let k = 0; k < nb; k++) {
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += ds[(t * nb + j) * r + q] * z[(t * nb + k) * r + q];
        dsigmaEff[(j * nb + k) * r + q] = acc;
      }
    }
  }
  const da = new Float64Array(r * n);
  const dx = adapterOnly ? new Float64Array(T * n) : matmul(p.g, p.w0, T, m, n);
  for (let k = 0; k < nb; k++) {
    for (let c = 0; c < nbw; c++) {
      const col = k * nbw + c;
      for (let q = 0; q < r; q++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += dz[(t * nb + k) * r + q] * p.x[t * n + col];
        da[q * n + col] = acc;
      }
      for (let t = 0; t < T; t++) {
        let acc = 0;
        for (let q = 0; q < r; q++) acc += p.a[q * n + col] * dz[(t * nb + k) * r + q];
        dx[t * n + col] += acc;
      }
    }
  }
  const out: BoraRefGrads = { dx, da, db, dsigmaEff };
  if (p.variant !== 'melora') out.dsigma = sigmaGrad(p.sigma!, dsigmaEff, p.sigmaTransform);
  return out;
}

/** ΔW [m, n]: block (j, k) = s·B_j diag(Σ[j, k]) A_k. */
export function boraDelta(p: Omit<BoraRefArgs, 'x' | 'T' | 'w0'>): F64 {
  const { nbw, mbw } = check({ ...p, T: 0, x: [], w0: [] });
  const { n, m, r, blocks: nb } = p;
  const eff = sigmaFor(p);
  const out = new Float64Array(m * n);
  for (let j = 0; j < nb; j++) {
    for (let k = 0; k < nb; k++) {
      for (let i = 0; i < mbw; i++) {
        for (let c = 0; c < nbw; c++) {
          let acc = 0;
          for (let q = 0; q < r; q++) acc += p.b[(j * mbw + i) * r + q] * eff[(j * nb + k) * r + q] * p.a[q * n + k * nbw + c];
          out[(j * mbw + i) * n + k * nbw + c] = p.scale * acc;
        }
      }
    }
  }
  return out;
}

/** W' = W0 + ΔW. */
export function boraMerge(p: Omit<BoraRefArgs, 'x' | 'T'>): F64 {
  const delta = boraDelta(p);
  for (let i = 0; i < delta.length; i++) delta[i] += p.w0[i];
  return delta;
}
