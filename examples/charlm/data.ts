// Character data for the small language model: the vocabulary, the normalisation that maps any
// name onto it, and the (context → next character) windows the model trains on. No Node APIs, so
// the browser demo uses the same code.
//
// Vocabulary: 27 tokens, '.' (id 0) for "start or end of a word", then 'a'..'z' (ids 1..26).
// Pokémon names carry more than that; `normaliseName` maps them on, documented in
// docs/finetuning.md:
//   1. '♀' → 'f' and '♂' → 'm' (Nidoran♀ → nidoranf, Nidoran♂ → nidoranm stay distinct);
//   2. Unicode NFD, then combining marks dropped (Flabébé → flabebe);
//   3. lower case; every character outside a–z dropped (Mr. Mime → mrmime, Porygon-Z → porygonz,
//      Farfetch'd → farfetchd, Porygon2 → porygon, Type: Null → typenull);
//   4. empty results and duplicates after normalisation are dropped.

import { rng } from '../../src/random.js';

export const BOUNDARY = '.';
export const VOCAB = [BOUNDARY, ...'abcdefghijklmnopqrstuvwxyz'.split('')] as const;
export const V = VOCAB.length;

export function normaliseName(raw: string): string {
  return raw
    .replace(/♀/g, 'f')
    .replace(/♂/g, 'm')
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^a-z]/g, '');
}

/** Normalised, de-duplicated, non-empty names, in first-seen order. */
export function normaliseNames(raw: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const r of raw) {
    const n = normaliseName(r);
    if (n.length > 0) seen.add(n);
  }
  return [...seen];
}

export function encodeChar(c: string): number {
  const code = c.charCodeAt(0);
  if (c === BOUNDARY) return 0;
  if (c.length !== 1 || code < 97 || code > 122) throw new Error(`character '${c}' is not in the vocabulary (a-z and '.')`);
  return code - 96;
}

export function decodeId(id: number): string {
  return VOCAB[id];
}

/** Training windows: for every word, C ids of left context (padded with '.') → the next id. */
export interface Windows {
  context: number;
  count: number;
  /** [count, context] token ids, row-major. */
  ids: Uint32Array;
  /** [count] next-token ids. */
  targets: Uint32Array;
}

export function makeWindows(words: readonly string[], context: number): Windows {
  let count = 0;
  for (const w of words) count += w.length + 1;
  const ids = new Uint32Array(count * context);
  const targets = new Uint32Array(count);
  let row = 0;
  for (const w of words) {
    const codes = w.split('').map(encodeChar);
    for (let i = 0; i <= codes.length; i++) {
      for (let c = 0; c < context; c++) {
        const at = i - context + c;
        ids[row * context + c] = at >= 0 ? codes[at] : 0;
      }
      targets[row] = i < codes.length ? codes[i] : 0;
      row++;
    }
  }
  return { context, count, ids, targets };
}

/** A seeded Fisher–Yates shuffle (a new array). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice();
  const next = rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Splits words into train and validation by a seeded shuffle (the split is by word, not window). */
export function splitWords(words: readonly string[], validationFraction: number, seed: number): { train: string[]; validation: string[] } {
  const s = shuffled(words, seed);
  const nVal = Math.max(1, Math.round(s.length * validationFraction));
  return { validation: s.slice(0, nVal), train: s.slice(nVal) };
}

/**
 * Draws batches of windows without replacement, reshuffling each epoch. `fill` writes one batch
 * of ids [B, C] and targets [B] into the given arrays.
 */
export class Batcher {
  #order: Uint32Array;
  #pos = 0;
  #next: () => number;
  epoch = 0;

  constructor(
    readonly windows: Windows,
    seed: number,
  ) {
    this.#order = new Uint32Array(windows.count);
    for (let i = 0; i < windows.count; i++) this.#order[i] = i;
    this.#next = rng(seed);
    this.#shuffle();
  }

  #shuffle(): void {
    const o = this.#order;
    for (let i = o.length - 1; i > 0; i--) {
      const j = Math.floor(this.#next() * (i + 1));
      const t = o[i];
      o[i] = o[j];
      o[j] = t;
    }
  }

  fill(ids: Uint32Array, targets: Uint32Array): void {
    const C = this.windows.context;
    const B = targets.length;
    for (let b = 0; b < B; b++) {
      if (this.#pos >= this.#order.length) {
        this.#pos = 0;
        this.epoch++;
        this.#shuffle();
      }
      const w = this.#order[this.#pos++];
      targets[b] = this.windows.targets[w];
      for (let c = 0; c < C; c++) ids[b * C + c] = this.windows.ids[w * C + c];
    }
  }
}
