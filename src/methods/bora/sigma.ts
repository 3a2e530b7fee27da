// BoRA's Σ = f(σ): the transforms a layer may use and the host-side pieces of them that both the
// GPU path (kernels.ts) and the float64 reference need. Production code imports this module, the
// reference imports it too, and nothing here imports the reference.

import { PeftError } from '../../validate.js';

/**
 * How Σ is made from the trained σ, with μ = mean|σ|: 'exp-mav' Σ = exp(σ/μ) (the paper's),
 * 'exp' Σ = exp(σ), 'mav' Σ = σ/μ, 'raw' Σ = σ.
 */
export type SigmaTransform = 'exp-mav' | 'exp' | 'mav' | 'raw';

export const SIGMA_TRANSFORMS: readonly SigmaTransform[] = ['exp-mav', 'exp', 'mav', 'raw'];

/** The paper's transform, used when none is given. */
export const DEFAULT_SIGMA_TRANSFORM: SigmaTransform = 'exp-mav';

/** Whether the transform divides by μ (so μ = 0 leaves Σ undefined). */
export function dividesByMeanAbs(t: SigmaTransform): boolean {
  return t === 'exp-mav' || t === 'mav';
}

/** μ = mean|σ| over all b²r entries. */
export function meanAbs(sigma: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < sigma.length; i++) s += Math.abs(sigma[i]);
  return s / sigma.length;
}

/** `t` as a SigmaTransform (undefined: the default); a PeftError naming `where` and `name` otherwise. */
export function checkSigmaTransform(where: string, t: unknown, name = 'sigmaTransform'): SigmaTransform {
  if (t === undefined) return DEFAULT_SIGMA_TRANSFORM;
  if (!SIGMA_TRANSFORMS.includes(t as SigmaTransform)) {
    throw new PeftError(`${where}: '${name}' must be one of ${SIGMA_TRANSFORMS.join(', ')}, got ${typeof t === 'string' ? t : JSON.stringify(t)}`);
  }
  return t as SigmaTransform;
}

/** The message for μ = 0 under a transform that divides by it (one wording everywhere). */
export function zeroMeanAbsMessage(where: string, t: SigmaTransform, mu: number = 0): string {
  return `${where}: μ = mean|σ| is ${mu}, so σ/μ is undefined for the '${t}' transform; initialise σ away from 0`;
}
