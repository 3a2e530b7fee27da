// Index sets for SBoRA (docs/sbora.md): the frozen standard-basis factor is r distinct
// indices into [0, size), kept as u32 on the device and never expanded into a matrix.
//
// Every set the kernels accept went through this module: either sampled from a seed (without
// replacement and unsorted, as the authors' `random.sample` does, but repeatable) or given by
// the caller and validated. The kernels rely on distinctness: two equal indices would make two
// invocations write the same output element, a data race on the GPU.
//
// Multi-SBoRA (the paper's future work) gives several adapters of one layer disjoint sets;
// `IndexAllocator` hands them out from one pool so that no two ever overlap.

import type { Context } from '../../runtime.js';
import type { Tensor } from '../../tensor.js';
import { rng } from '../../random.js';
import { PeftError, checkDim } from '../../validate.js';

/** r distinct indices sampled from [0, size) by a seeded partial Fisher–Yates shuffle; not sorted. */
export function sampleIndices(size: number, r: number, seed: number): Uint32Array {
  const where = 'sampleIndices';
  checkDim(where, 'size', size);
  checkDim(where, 'r', r);
  checkSeed(where, seed);
  if (r > size) throw new PeftError(`${where}: cannot draw r = ${r} distinct indices from [0, ${size})`);
  return drawFrom(
    Uint32Array.from({ length: size }, (_, i) => i),
    r,
    rng(seed),
  );
}

// Moves r random picks to the front of `pool` (partial Fisher–Yates) and returns them in draw order.
function drawFrom(pool: Uint32Array, r: number, next: () => number): Uint32Array {
  for (let i = 0; i < r; i++) {
    const j = i + Math.floor(next() * (pool.length - i));
    const t = pool[i];
    pool[i] = pool[j];
    pool[j] = t;
  }
  return pool.slice(0, r);
}

function checkSeed(where: string, seed: unknown): number {
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new PeftError(`${where}: 'seed' must be an integer in [0, 2^32), got ${String(seed)}`);
  }
  return seed;
}

/**
 * Checks a caller's index set: exactly `r` values (when r is given), each an integer in
 * [0, size), no value twice. Returns the values as a new Uint32Array, order kept.
 */
export function checkIndices(where: string, name: string, values: ArrayLike<number> | undefined, size: number, r?: number): Uint32Array {
  checkDim(where, 'size', size);
  if (!values || typeof values !== 'object' || typeof (values as ArrayLike<number>).length !== 'number') {
    throw new PeftError(
      `${where}: '${name}' must be an array of distinct integer indices in [0, ${size}), got ${values === undefined ? 'nothing' : typeof values}`,
    );
  }
  if (r !== undefined && values.length !== r) {
    throw new PeftError(`${where}: '${name}' has ${values.length} indices, expected r = ${r}`);
  }
  if (values.length === 0) throw new PeftError(`${where}: '${name}' is empty, expected at least one index`);
  if (values.length > size)
    throw new PeftError(`${where}: '${name}' has ${values.length} indices, more than the ${size} distinct values in [0, ${size})`);
  const out = new Uint32Array(values.length);
  const seen = new Map<number, number>();
  for (let q = 0; q < values.length; q++) {
    const v = values[q];
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw new PeftError(`${where}: '${name}'[${q}] is ${String(v)}, expected an integer index in [0, ${size})`);
    }
    if (v < 0 || v >= size) throw new PeftError(`${where}: '${name}'[${q}] = ${v} is out of range [0, ${size})`);
    const first = seen.get(v);
    if (first !== undefined) throw new PeftError(`${where}: '${name}' repeats index ${v} (at positions ${first} and ${q}); indices must be distinct`);
    seen.set(v, q);
    out[q] = v;
  }
  return out;
}

/**
 * A validated index set on the device: `tensor` is u32 [r], `values` the same indices on the
 * host (for merges, allocators and the reference). Made only by `createIndexSet`.
 */
export class IndexSet {
  static #token = Symbol('IndexSet');

  private constructor(
    token: symbol,
    /** The indices are drawn from [0, size): n for SBoRA-FA, m for SBoRA-FB. */
    readonly size: number,
    readonly values: Uint32Array,
    readonly tensor: Tensor,
  ) {
    if (token !== IndexSet.#token) throw new PeftError('IndexSet: use createIndexSet or IndexSet.create');
  }

  get r(): number {
    return this.values.length;
  }

  /** Bytes the set holds on the device: 4·r. */
  get deviceBytes(): number {
    return this.tensor.byteLength;
  }

  destroy(): void {
    this.tensor.destroy();
  }

  /** Validates the indices (see checkIndices) and uploads them; `createIndexSet` is the usual door. */
  static create(ctx: Context, size: number, values: ArrayLike<number>, label = 'sbora.idx', where = 'IndexSet.create'): IndexSet {
    const checked = checkIndices(where, 'values', values, size);
    return new IndexSet(IndexSet.#token, size, checked, ctx.upload(checked, [checked.length], 'u32', label));
  }
}

export type IndexSpec = { size: number; values: ArrayLike<number>; r?: number } | { size: number; r: number; seed: number };

/** Uploads a caller's validated set ({size, values}) or a seeded sample ({size, r, seed}). */
export function createIndexSet(ctx: Context, spec: IndexSpec, label = 'sbora.idx'): IndexSet {
  const where = 'createIndexSet';
  if (!spec || typeof spec !== 'object') throw new PeftError(`${where}: expected {size, values} or {size, r, seed}, got ${String(spec)}`);
  const size = checkDim(where, 'size', spec.size);
  let values: Uint32Array;
  if ('values' in spec && spec.values !== undefined) {
    if (spec.r !== undefined) checkDim(where, 'r', spec.r);
    values = checkIndices(where, 'values', spec.values, size, spec.r);
  } else if ('seed' in spec) {
    values = sampleIndices(size, spec.r, spec.seed);
  } else {
    throw new PeftError(`${where}: give either 'values' (the caller's indices) or 'r' and 'seed' (a sample)`);
  }
  return IndexSet.create(ctx, size, values, label, where);
}

/** Checks that no index appears in two of the sets (Multi-SBoRA). */
export function checkDisjoint(where: string, sets: readonly { values: ArrayLike<number> }[]): void {
  const owner = new Map<number, number>();
  sets.forEach((s, k) => {
    for (let q = 0; q < s.values.length; q++) {
      const v = s.values[q];
      const other = owner.get(v);
      if (other !== undefined && other !== k) {
        throw new PeftError(`${where}: index ${v} is in both set ${other} and set ${k}; Multi-SBoRA sets must be disjoint`);
      }
      owner.set(v, k);
    }
  });
}

/**
 * Hands out disjoint index sets from [0, size) for the adapters of one layer (Multi-SBoRA).
 * Draws are seeded: the same seed and the same sequence of requests give the same sets.
 */
export class IndexAllocator {
  readonly size: number;
  #free: Uint32Array;
  #taken = new Set<number>();
  #next: () => number;

  constructor(size: number, seed: number) {
    const where = 'IndexAllocator';
    this.size = checkDim(where, 'size', size);
    this.#next = rng(checkSeed(where, seed));
    this.#free = Uint32Array.from({ length: size }, (_, i) => i);
  }

  /** Indices not yet handed out. */
  get remaining(): number {
    return this.#free.length;
  }

  /** Whether `index` belongs to a set already handed out. */
  isTaken(index: number): boolean {
    return this.#taken.has(index);
  }

  /** r fresh indices, disjoint from every earlier allocation. */
  allocate(r: number): Uint32Array {
    const where = 'IndexAllocator.allocate';
    checkDim(where, 'r', r);
    if (r > this.#free.length) {
      throw new PeftError(`${where}: asked for r = ${r} indices but only ${this.#free.length} of [0, ${this.size}) remain unallocated`);
    }
    const picked = drawFrom(this.#free, r, this.#next);
    this.#free = this.#free.slice(r);
    for (const v of picked) this.#taken.add(v);
    return picked;
  }

  /** Claims a caller's set (validated, and disjoint from earlier allocations). */
  claim(values: ArrayLike<number>): Uint32Array {
    const where = 'IndexAllocator.claim';
    const checked = checkIndices(where, 'values', values, this.size);
    for (const v of checked) {
      if (this.#taken.has(v)) throw new PeftError(`${where}: index ${v} is already allocated to another adapter`);
    }
    const drop = new Set(checked);
    this.#free = this.#free.filter((v) => !drop.has(v));
    for (const v of checked) this.#taken.add(v);
    return checked;
  }

  /** Returns a set to the pool (an adapter that was discarded). */
  release(values: ArrayLike<number>): void {
    const where = 'IndexAllocator.release';
    const checked = checkIndices(where, 'values', values, this.size);
    for (const v of checked) {
      if (!this.#taken.has(v)) throw new PeftError(`${where}: index ${v} is not allocated`);
    }
    for (const v of checked) this.#taken.delete(v);
    const merged = new Uint32Array(this.#free.length + checked.length);
    merged.set(this.#free);
    merged.set(checked, this.#free.length);
    this.#free = merged;
  }
}
