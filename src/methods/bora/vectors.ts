// The `peft-wgsl vectors` runner for BoRA cases: Σ, forward (Z and S saved), backward, ΔW and the
// merged weight, each through the GPU kernels. σ is `sigma` (its transform in
// params.sigmaTransform, default exp-mav) or, for the raw transform, `sigma_raw`, used as Σ
// directly; raw cases have no dsigma output.

import { onDevice } from '../../host.js';
import { asW0, caseWeight } from '../../vectors/base.js';
import type { Tensor } from '../../tensor.js';
import { input, output, type VectorRunner } from '../../vectors/types.js';
import { boraBackward, boraForward, boraMerge, boraSigma, checkSigmaHost } from './kernels.js';
import { SIGMA_TRANSFORMS, type SigmaTransform } from './sigma.js';

export const runBora: VectorRunner = async (ctx, c, info) => {
  const { T, inFeatures: n, outFeatures: m, rank: r, scale } = c.params;
  const blocks = c.params.blocks as number;
  const sigmaTransform = (c.params.sigmaTransform ?? 'exp-mav') as SigmaTransform;
  if (!SIGMA_TRANSFORMS.includes(sigmaTransform))
    throw new Error(`case '${c.name}': sigmaTransform '${sigmaTransform}' is not one of ${SIGMA_TRANSFORMS.join(', ')}`);
  if (typeof blocks !== 'number' || !Number.isInteger(blocks) || blocks < 1)
    throw new Error(`case '${c.name}': params.blocks must be an integer ≥ 1, got ${String(blocks)}`);
  const raw = sigmaTransform === 'raw';
  const sigma = input(c, raw ? 'sigma_raw' : 'sigma', [blocks, blocks, r]);
  checkSigmaHost(`case '${c.name}'`, sigma, blocks, r, sigmaTransform);
  const host = {
    x: { data: input(c, 'x', [T, n]), shape: [T, n] },
    a: { data: input(c, 'a', [r, n]), shape: [r, n] },
    b: { data: input(c, 'b', [m, r]), shape: [m, r] },
    g: { data: input(c, 'dy', [T, m]), shape: [T, m] },
    sigma: { data: sigma, shape: [blocks, blocks, r] },
  };
  const w0 = caseWeight(ctx, c, m, n, info);
  const out = await onDevice(ctx, host, async (t) => {
    const sigmaEff = await boraSigma(ctx, { sigma: t.sigma, sigmaTransform });
    const p = { w0: asW0(w0), a: t.a, b: t.b, sigma: t.sigma, blocks, scale, sigmaTransform, sigmaEff };
    const { y, z, s } = await boraForward(ctx, { ...p, x: t.x }, { save: true });
    const { dx, da, db, dsigma } = await boraBackward(ctx, { ...p, x: t.x, g: t.g, z, s });
    const delta_w = await boraMerge(ctx, p, { deltaOnly: true });
    const merged = await boraMerge(ctx, p);
    z!.destroy();
    s!.destroy();
    sigmaEff.mu.destroy();
    const res: Record<string, Tensor> = { y, dx, da, db, sigma_eff: sigmaEff.eff, delta_w, merged };
    if (raw) dsigma!.destroy();
    else res.dsigma = dsigma!;
    return res;
  }).finally(() => w0.destroy());
  const result: Record<string, ReturnType<typeof output>> = {
    y: output(out.y, [T, m]),
    dx: output(out.dx, [T, n]),
    da: output(out.da, [r, n]),
    db: output(out.db, [m, r]),
    sigma_eff: output(out.sigma_eff, [blocks, blocks, r]),
    delta_w: output(out.delta_w, [m, n]),
    merged: output(out.merged, [m, n]),
  };
  if (!raw) result.dsigma = output(out.dsigma, [blocks, blocks, r]);
  return result;
};
