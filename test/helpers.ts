// Shared test fixtures: one GPU context for the whole run (Dawn's create() object must stay
// referenced while devices live), seeded inputs, and the tolerance check.

import { expect } from 'chai';
import { Context, type Tuning } from '../src/runtime.js';
import { matmul, type MatmulArgs } from '../src/ops/matmul.js';
import { add, finiteDifference, matmul as refMatmul, relativeError, scale } from '../src/reference/linalg.js';
import type { Tensor } from '../src/tensor.js';
import { uniform } from '../src/random.js';

let shared: Promise<Context> | undefined;

export function gpu(): Promise<Context> {
  shared ??= Context.create();
  return shared;
}

let seedCounter = 1;
/** Seeded values uniform in [-1, 1) (a fresh seed per call, deterministic across runs). */
export function rand(count: number, bound = 1): Float32Array {
  return uniform(count, bound, 0x9e3779b9 ^ seedCounter++);
}

/**
 * Inside a describe: its tests run with the shared context's matmul kernels set to `variant`, and
 * the previous choice comes back after them.
 */
export function useMatmulVariant(variant: Tuning['matmul']): void {
  let saved: Tuning['matmul'];
  before(async () => {
    const ctx = await gpu();
    saved = ctx.tuning.matmul;
    ctx.tuning.matmul = variant;
  });
  after(async () => {
    (await gpu()).tuning.matmul = saved;
  });
}

/** The four (transA, transB) combinations of a matmul. */
export const TRANSPOSES: readonly (readonly [boolean, boolean])[] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

/** f32 kernels against the float64 reference: max error relative to the output's scale. */
export const F32_TOL = 2e-5;

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = F32_TOL): void {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  const err = relativeError(actual, expected);
  expect(err, `${what}: relative error ${err.toExponential(2)} > ${tol}`).to.be.at.most(tol);
}

/** Expects an async call to throw an Error whose message matches every pattern. */
export async function expectThrows(fn: () => unknown, ...patterns: RegExp[]): Promise<Error> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an Error to be thrown').to.be.instanceOf(Error);
  for (const p of patterns) expect((caught as Error).message).to.match(p);
  return caught as Error;
}

/**
 * Seeded host tensors, uploaded: each entry is [shape, bound] (values uniform in [-bound, bound)).
 * Returns the host arrays, the device tensors and a `free` that destroys the device ones.
 */
export async function uploads<K extends string>(spec: Record<K, readonly [readonly number[], number?]>) {
  const ctx = await gpu();
  const host = {} as Record<K, Float32Array>;
  const dev = {} as Record<K, Tensor>;
  for (const [name, [shape, bound]] of Object.entries(spec) as [K, readonly [readonly number[], number?]][]) {
    host[name] = rand(
      shape.reduce((a, b) => a * b, 1),
      bound ?? 1,
    );
    dev[name] = ctx.upload(host[name], shape, 'f32', name);
  }
  const free = () => Object.values<Tensor>(dev).forEach((t) => t.destroy());
  return { ctx, host, dev, free };
}

/**
 * Checks analytic gradients of a float64 `loss` against central finite differences: for each
 * [name, parameter (perturbed in place), gradient], the relative error is below `tol`.
 */
export function expectGradients(loss: () => number, pairs: readonly (readonly [string, Float64Array, ArrayLike<number>])[], tol: number): void {
  for (const [name, param, grad] of pairs) {
    const err = relativeError(grad, finiteDifference(loss, param));
    expect(err, `d${name}: relative error ${err.toExponential(2)} against central differences`).to.be.below(tol);
  }
}

/**
 * One product for expectMatmul: matmul's own sizes and factors; `beta` given accumulates onto a
 * random C0 (without it C starts as a fresh tensor), and `second` asks for the fused second product
 * (random A2, B2 of depth K with the same transposes).
 */
export type MatmulCase = Pick<MatmulArgs, 'M' | 'N' | 'K' | 'transA' | 'transB' | 'alpha' | 'beta' | 'bindingLimit'> & {
  second?: { K: number; alpha: number };
};

/**
 * Runs `matmul` on random operands laid out for the transposes and checks C against
 * alpha·op(A) op(B) + alpha2·op(A2) op(B2) + beta·C0 computed in float64.
 */
export async function expectMatmul(ctx: Context, c: MatmulCase, tol = F32_TOL): Promise<void> {
  const { M, N, K, transA = false, transB = false } = c;
  const made: Tensor[] = [];
  const operands = (depth: number) => {
    const a = rand(M * depth);
    const b = rand(depth * N);
    const A = ctx.upload(a, transA ? [depth, M] : [M, depth]);
    const B = ctx.upload(b, transB ? [N, depth] : [depth, N]);
    made.push(A, B);
    return { A, B, product: refMatmul(a, b, M, depth, N, transA, transB) };
  };
  const first = operands(K);
  let want = scale(first.product, c.alpha ?? 1);
  let second: { a: Tensor; b: Tensor; K: number; alpha: number } | undefined;
  if (c.second) {
    const ops = operands(c.second.K);
    second = { a: ops.A, b: ops.B, K: c.second.K, alpha: c.second.alpha };
    want = add(want, ops.product, c.second.alpha);
  }
  let C: Tensor;
  if (c.beta === undefined) {
    C = ctx.tensor([M, N]);
  } else {
    const c0 = rand(M * N);
    C = ctx.upload(c0, [M, N]);
    want = add(want, c0, c.beta);
  }
  made.push(C);
  try {
    await matmul(ctx, { a: first.A, b: first.B, c: C, M, N, K, transA, transB, alpha: c.alpha, beta: c.beta, second, bindingLimit: c.bindingLimit });
    expectClose(await ctx.read(C), want, 'C', tol);
  } finally {
    for (const t of made) t.destroy();
  }
}
