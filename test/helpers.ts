// Shared test fixtures: one GPU context for the whole run (Dawn's create() object must stay
// referenced while devices live), seeded inputs, and the tolerance check.

import { expect } from 'chai';
import { Context } from '../src/runtime.js';
import { relativeError } from '../src/reference/linalg.js';
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
