// Character data for the GPT: a vocabulary read off the corpus, encoding, the train/validation
// split by document, and seeded batches of windows. No Node APIs (the demo can use it).

import { rng } from '../../src/random.js';

export class Vocab {
  readonly chars: string[];
  readonly #index = new Map<string, number>();

  /** Every distinct character of `texts`, sorted by code point (ids are stable for a corpus). */
  constructor(chars: Iterable<string>) {
    this.chars = [...new Set(chars)].sort();
    this.chars.forEach((c, i) => this.#index.set(c, i));
  }

  static fromTexts(texts: readonly string[]): Vocab {
    const seen = new Set<string>();
    for (const t of texts) for (const c of t) seen.add(c);
    return new Vocab(seen);
  }

  get size(): number {
    return this.chars.length;
  }

  encode(text: string): Uint32Array {
    const out = new Uint32Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const id = this.#index.get(text[i]);
      if (id === undefined) throw new Error(`character ${JSON.stringify(text[i])} is not in the vocabulary`);
      out[i] = id;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) s += this.chars[ids[i]];
    return s;
  }
}

/**
 * Every `every`-th document (the last of each run of `every`) is held out: with the Brown
 * Corpus's files in genre order this takes 5 % from every genre, where "the last 5 %" would be
 * all humour (cr**).
 */
export function splitDocuments<T>(docs: readonly T[], every = 20): { train: T[]; validation: T[] } {
  return { train: docs.filter((_, i) => i % every !== every - 1), validation: docs.filter((_, i) => i % every === every - 1) };
}

/** Draws batches of random windows of T + 1 characters: ids = window[0..T), targets = window[1..T]. */
export class WindowSampler {
  readonly #next: () => number;

  constructor(
    readonly tokens: Uint32Array,
    readonly T: number,
    seed: number,
  ) {
    if (tokens.length < T + 1) throw new Error(`the text has ${tokens.length} tokens, fewer than a window of ${T + 1}`);
    this.#next = rng(seed);
  }

  /** Fills ids [B·T] and targets [B·T] (B = ids.length / T). */
  fill(ids: Uint32Array, targets: Uint32Array): void {
    const { T, tokens } = this;
    const B = ids.length / T;
    for (let b = 0; b < B; b++) {
      const start = Math.floor(this.#next() * (tokens.length - T));
      ids.set(tokens.subarray(start, start + T), b * T);
      targets.set(tokens.subarray(start + 1, start + T + 1), b * T);
    }
  }
}

/** Consecutive non-overlapping windows (the validation set: the same windows every time). */
export function fixedWindows(tokens: Uint32Array, T: number, maxWindows = Infinity): { ids: Uint32Array; targets: Uint32Array; count: number } {
  const count = Math.min(maxWindows, Math.floor((tokens.length - 1) / T));
  const ids = new Uint32Array(count * T);
  const targets = new Uint32Array(count * T);
  for (let w = 0; w < count; w++) {
    ids.set(tokens.subarray(w * T, w * T + T), w * T);
    targets.set(tokens.subarray(w * T + 1, w * T + T + 1), w * T);
  }
  return { ids, targets, count };
}
