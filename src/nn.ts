// Layers of a small model on the GPU (docs/nn.md): embedding, learned positions, linear with bias
// (and the tied output projection: linear with the embedding table, gradients accumulated), GELU /
// tanh, layer norm, residual add and softmax cross-entropy, each with its backward. Kernels: shaders/nn.wgsl (the products
// go through ops/matmul); float64 reference with the same arguments: src/reference/nn.ts.
//
// Conventions as in lora.ts: Tensors in, dims inferred from shapes, optional output tensors,
// `{encoder}` to encode into the caller's command encoder. Backward kernels overwrite their
// outputs (no accumulation), so gradients need no zeroing between steps.

import type { Context } from './runtime.js';
import { Tensor } from './tensor.js';
import { matmul } from './ops/matmul.js';
import {
  PeftError,
  asTensor,
  checkArgObject,
  checkContext,
  checkDim,
  checkDistinct,
  checkGivenTensors,
  checkMatrix,
  checkOwner,
  checkTensor,
  describeValue,
} from './validate.js';

export interface NnEncodeOptions {
  /** Encode into this encoder instead of submitting now. */
  encoder?: GPUCommandEncoder;
}

/** 'gelu' is the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export type Activation = 'gelu' | 'tanh';

const SHADER = 'nn';
const WG = 64;
const groups = (count: number) => Math.ceil(count / WG);
// Row / column kernels: RWG in shaders/nn.wgsl.
const rowGroups = (count: number) => Math.ceil(count / 8);

function actConstants(where: string, fn: Activation | undefined): { ACT: number } {
  const f = fn ?? 'gelu';
  if (f !== 'gelu' && f !== 'tanh') throw new PeftError(`${where}: 'fn' must be 'gelu' or 'tanh', got ${String(fn)}`);
  return { ACT: f === 'tanh' ? 1 : 0 };
}

function matrix(where: string, name: string, t: Tensor | undefined, dims: string): [number, number] {
  return checkMatrix(where, name, t, dims);
}

function idsShape(where: string, name: string, t: Tensor | undefined): number[] {
  const ids = asTensor(where, name, t, 'a u32 Tensor of shape [N] or [B, C]');
  if (ids.shape.length < 1 || ids.shape.length > 2) throw new PeftError(`${where}: '${name}' must be a u32 Tensor of shape [N] or [B, C]`);
  if (ids.dtype !== 'u32') throw new PeftError(`${where}: '${name}' is ${ids.dtype}, expected u32`);
  return [...ids.shape];
}

/** Every tensor of the call is one of `ctx`'s, and no two share a buffer. */
function checkDistinctOwned(where: string, ctx: Context, tensors: Record<string, Tensor | undefined>): void {
  for (const [name, t] of Object.entries(tensors)) if (t !== undefined) checkOwner(where, name, ctx, asTensor(where, name, t));
  checkDistinct(where, tensors);
}

/** What every layer call checks first: a live context, an argument object and an options object. */
function checkLayerCall(where: string, ctx: Context, p: unknown, opts: unknown): void {
  checkContext(where, ctx);
  checkArgObject(where, p, '');
  // The layer calls take no two arguments on one buffer (checkDistinctOwned below, after outputs
  // are made); the caller's own tensors are checked here, before anything is allocated.
  checkGivenTensors(where, ctx, p as object);
  if (opts === null || typeof opts !== 'object') throw new PeftError(`${where}: options must be an object, got ${describeValue(opts)}`);
}

/** Output shape of an embedding lookup: [N, D] for ids [N], [B, C·D] (flattened context) for ids [B, C]. */
function embeddedShape(ids: readonly number[], D: number): [number, number] {
  return ids.length === 1 ? [ids[0], D] : [ids[0], ids[1] * D];
}

/**
 * Checks token ids on the host (every one an integer in [0, vocab)) and writes them into `into`
 * (a u32 tensor of `shape`) or a new tensor. This is where a bad id is caught: the kernels only
 * guard against reading out of bounds.
 */
export function uploadIds(ctx: Context, data: ArrayLike<number>, shape: readonly number[], vocab: number, into?: Tensor): Tensor {
  const where = 'nn.uploadIds';
  checkContext(where, ctx);
  checkDim(where, 'vocab', vocab);
  const count = shape.reduce((a, b) => a * b, 1);
  if (!data || typeof data.length !== 'number') throw new PeftError(`${where}: 'ids' must be an array of ${count} token ids`);
  if (data.length !== count) throw new PeftError(`${where}: 'ids' has ${data.length} values, expected [${shape.join(', ')}] = ${count}`);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isInteger(v) || v < 0 || v >= vocab) {
      throw new PeftError(`${where}: 'ids'[${i}] = ${v} is not a token id: expected an integer in [0, ${vocab})`);
    }
  }
  const t = into ? checkTensor(where, 'into', into, shape, `[${shape.join(', ')}]`, 'u32') : ctx.tensor(shape, 'u32', 'nn.ids');
  ctx.write(t, data instanceof Uint32Array ? data : Uint32Array.from(data));
  return t;
}

// ------------------------------------------------------------------------- embedding

/** out[t] = table[ids[t]]: ids [N] → out [N, D]; ids [B, C] → out [B, C·D] (rows concatenated). */
export async function embeddingForward(ctx: Context, p: { table: Tensor; ids: Tensor; out?: Tensor }, opts: NnEncodeOptions = {}): Promise<Tensor> {
  const where = 'nn.embedding';
  checkLayerCall(where, ctx, p, opts);
  const [V, D] = matrix(where, 'table', p.table, '[V, D]');
  checkTensor(where, 'table', p.table, [V, D], '[V, D]');
  const ids = idsShape(where, 'ids', p.ids);
  const N = p.ids.size;
  const shape = embeddedShape(ids, D);
  const out = p.out ? checkTensor(where, 'out', p.out, shape, ids.length === 1 ? '[N, D]' : '[B, C·D]') : ctx.tensor(shape, 'f32', 'nn.embedded');
  checkDistinctOwned(where, ctx, { out, table: p.table, ids: p.ids });
  await ctx.prepare([{ shader: SHADER, entry: 'embedding_forward' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'embedding_forward',
      params: { N, D, V },
      bindings: [p.table, p.ids, out],
      workgroups: groups(N * D),
      label: `embedding ${N}x${D}`,
    }),
  );
  return out;
}

/**
 * dtable[v] = Σ_{t: ids[t] = v} g[t]: the scatter-add of the lookup's gradient, with one writer per
 * table entry adding in token order (deterministic, no atomics). `g` has the forward output's shape.
 */
export async function embeddingBackward(
  ctx: Context,
  p: { ids: Tensor; g: Tensor; vocab: number; dtable?: Tensor },
  opts: NnEncodeOptions = {},
): Promise<Tensor> {
  const where = 'nn.embeddingBackward';
  checkLayerCall(where, ctx, p, opts);
  const V = checkDim(where, 'vocab', p.vocab);
  const ids = idsShape(where, 'ids', p.ids);
  const N = p.ids.size;
  matrix(where, 'g', p.g, ids.length === 1 ? '[N, D]' : '[B, C·D]');
  const D = p.g.size / N;
  if (!Number.isInteger(D) || D < 1) {
    throw new PeftError(`${where}: 'g' has ${p.g.size} elements, not a multiple of the ${N} ids`);
  }
  checkTensor(where, 'g', p.g, embeddedShape(ids, D), ids.length === 1 ? '[N, D]' : '[B, C·D]');
  const dtable = p.dtable ? checkTensor(where, 'dtable', p.dtable, [V, D], '[V, D]') : ctx.tensor([V, D], 'f32', 'nn.dtable');
  checkDistinctOwned(where, ctx, { dtable, g: p.g, ids: p.ids });
  // Row blocks per column: enough invocations (about 64) to spread over cores, and no more, since
  // every block walks all N tokens.
  const blocks = Math.min(V, Math.max(1, Math.ceil(64 / D)));
  const rows = Math.ceil(V / blocks);
  await ctx.prepare([{ shader: SHADER, entry: 'embedding_backward' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'embedding_backward',
      params: { N, D, V, blocks: Math.ceil(V / rows), rows },
      bindings: [p.g, p.ids, dtable],
      workgroups: rowGroups(D * Math.ceil(V / rows)),
      label: `embedding backward ${V}x${D}`,
    }),
  );
  return dtable;
}

// ------------------------------------------------------------------------- bias

/** y[t, j] += b[j], in place. */
export async function addBias(ctx: Context, p: { y: Tensor; b: Tensor }, opts: NnEncodeOptions = {}): Promise<Tensor> {
  const where = 'nn.addBias';
  checkLayerCall(where, ctx, p, opts);
  const [T, n] = matrix(where, 'y', p.y, '[T, n]');
  checkTensor(where, 'y', p.y, [T, n], '[T, n]');
  checkTensor(where, 'b', p.b, [n], '[n]');
  checkDistinctOwned(where, ctx, { y: p.y, b: p.b });
  await ctx.prepare([{ shader: SHADER, entry: 'add_bias' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'add_bias',
      params: { T, n },
      bindings: [p.y, p.b],
      workgroups: groups(T * n),
      label: `add bias ${T}x${n}`,
    }),
  );
  return p.y;
}

/** db[j] = Σ_t g[t, j]: the gradient of a bias added to every row. */
export async function biasGrad(ctx: Context, p: { g: Tensor; db?: Tensor }, opts: NnEncodeOptions = {}): Promise<Tensor> {
  const where = 'nn.biasGrad';
  checkLayerCall(where, ctx, p, opts);
  const [T, n] = matrix(where, 'g', p.g, '[T, n]');
  checkTensor(where, 'g', p.g, [T, n], '[T, n]');
  const db = p.db ? checkTensor(where, 'db', p.db, [n], '[n]') : ctx.tensor([n], 'f32', 'nn.db');
  checkDistinctOwned(where, ctx, { db, g: p.g });
  await ctx.prepare([{ shader: SHADER, entry: 'bias_grad' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'bias_grad',
      params: { T, n },
      bindings: [p.g, db],
      workgroups: rowGroups(n),
      label: `bias grad ${T}x${n}`,
    }),
  );
  return db;
}

// ------------------------------------------------------------------------- linear

/** y = x wᵀ (+ b): x [T, n], w [m, n] (PyTorch's nn.Linear layout), b [m], y [T, m]. 1–2 dispatches. */
export async function linearForward(ctx: Context, p: { x: Tensor; w: Tensor; b?: Tensor; y?: Tensor }, opts: NnEncodeOptions = {}): Promise<Tensor> {
  const where = 'nn.linear';
  checkLayerCall(where, ctx, p, opts);
  const [m, n] = matrix(where, 'w', p.w, '[m, n]');
  const [T] = matrix(where, 'x', p.x, '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'w', p.w, [m, n], '[m, n]');
  if (p.b) checkTensor(where, 'b', p.b, [m], '[m]');
  const y = p.y ? checkTensor(where, 'y', p.y, [T, m], '[T, m]') : ctx.tensor([T, m], 'f32', 'nn.linear.y');
  checkDistinctOwned(where, ctx, { y, x: p.x, w: p.w, b: p.b });
  await ctx.encode(opts.encoder, async (enc) => {
    await matmul(ctx, { a: p.x, b: p.w, c: y, M: T, N: m, K: n, transB: true }, enc);
    if (p.b) await addBias(ctx, { y, b: p.b }, { encoder: enc });
  });
  return y;
}

export interface LinearBackwardOptions extends NnEncodeOptions {
  /** Compute dx = g w (default true; false for a first layer whose input needs no gradient). */
  dx?: boolean;
  /** Compute dw = gᵀ x (default true; false for frozen weights). */
  dw?: boolean;
  /** Compute db = Σ_t g (default true; false when the layer has no trainable bias). */
  db?: boolean;
  /**
   * The outputs to add into instead of overwrite (default none): 'dx' for an input read by
   * several layers (q, k and v read one normed row), 'dw' for a weight used twice (a tied
   * embedding). Each listed output must be given.
   */
  accumulate?: readonly ('dx' | 'dw')[];
}

/** Gradients of y = x wᵀ + b given g = ∂L/∂y: dx = g w [T, n], dw = gᵀ x [m, n], db = column sums of g [m]. */
export async function linearBackward(
  ctx: Context,
  p: { x: Tensor; w: Tensor; g: Tensor; dx?: Tensor; dw?: Tensor; db?: Tensor },
  opts: LinearBackwardOptions = {},
): Promise<{ dx?: Tensor; dw?: Tensor; db?: Tensor }> {
  const where = 'nn.linearBackward';
  checkLayerCall(where, ctx, p, opts);
  const [m, n] = matrix(where, 'w', p.w, '[m, n]');
  const [T] = matrix(where, 'x', p.x, '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'w', p.w, [m, n], '[m, n]');
  checkTensor(where, 'g', p.g, [T, m], '[T, m]');
  const want = { dx: opts.dx !== false, dw: opts.dw !== false, db: opts.db !== false };
  const accumulate: readonly ('dx' | 'dw')[] = opts.accumulate ?? [];
  const listed: unknown = accumulate;
  if (!Array.isArray(listed) || listed.some((k) => k !== 'dx' && k !== 'dw'))
    throw new PeftError(`${where}: 'accumulate' must be a list of 'dx' and 'dw', got ${describeValue(opts.accumulate)}`);
  for (const k of accumulate) {
    if (!want[k] || !p[k]) throw new PeftError(`${where}: 'accumulate' lists '${k}', so '${k}' must be computed and given (the tensor to add into)`);
  }
  // Every caller output is checked before any is made, so a refused call allocates nothing.
  if (want.dx && p.dx) checkTensor(where, 'dx', p.dx, [T, n], '[T, n]');
  if (want.dw && p.dw) checkTensor(where, 'dw', p.dw, [m, n], '[m, n]');
  if (want.db && p.db) checkTensor(where, 'db', p.db, [m], '[m]');
  const dx = want.dx ? (p.dx ?? ctx.tensor([T, n], 'f32', 'nn.linear.dx')) : undefined;
  const dw = want.dw ? (p.dw ?? ctx.tensor([m, n], 'f32', 'nn.linear.dw')) : undefined;
  const db = want.db ? (p.db ?? ctx.tensor([m], 'f32', 'nn.linear.db')) : undefined;
  checkDistinctOwned(where, ctx, { dx, dw, db, x: p.x, w: p.w, g: p.g });
  await ctx.encode(opts.encoder, async (enc) => {
    const beta = (k: 'dx' | 'dw') => (accumulate.includes(k) ? 1 : 0);
    if (dx) await matmul(ctx, { a: p.g, b: p.w, c: dx, M: T, N: n, K: m, beta: beta('dx') }, enc);
    if (dw) await matmul(ctx, { a: p.g, b: p.x, c: dw, M: m, N: n, K: T, transA: true, beta: beta('dw') }, enc);
    if (db) await biasGrad(ctx, { g: p.g, db }, { encoder: enc });
  });
  return { dx, dw, db };
}

// ------------------------------------------------------------------------- residual and positions

/**
 * y += x in place (same shape): a residual connection, or in a backward the skip path's gradient
 * added to the branch's. 1 dispatch.
 */
export async function residualAdd(ctx: Context, p: { y: Tensor; x: Tensor }, opts: NnEncodeOptions = {}): Promise<Tensor> {
  const where = 'nn.residualAdd';
  checkLayerCall(where, ctx, p, opts);
  const [T, n] = matrix(where, 'y', p.y, '[T, n]');
  checkTensor(where, 'y', p.y, [T, n], '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], `[${T}, ${n}] (the shape of y)`);
  checkDistinctOwned(where, ctx, { y: p.y, x: p.x });
  await ctx.prepare([{ shader: SHADER, entry: 'residual_add' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'residual_add',
      params: { count: T * n },
      bindings: [p.y, p.x],
      workgroups: groups(T * n),
      label: `residual add ${T}x${n}`,
    }),
  );
  return p.y;
}

/** Checks the sequence length of a [batch·T, D] activation against a position table of P rows. */
function checkSequence(where: string, T: unknown, N: number, P: number): number {
  const t = checkDim(where, 'T', T);
  if (t > P) throw new PeftError(`${where}: 'T' is ${t}, past the ${P} rows of the position table`);
  if (N % t !== 0) throw new PeftError(`${where}: the ${N} rows are not a whole number of sequences of T = ${t}`);
  return t;
}

/**
 * x[i] += pos[i mod T] in place: learned absolute position embeddings added to token embeddings
 * x [batch·T, D] (rows of one sequence consecutive), pos [P, D] with P ≥ T. 1 dispatch.
 */
export async function addPositions(ctx: Context, p: { x: Tensor; pos: Tensor; T: number }, opts: NnEncodeOptions = {}): Promise<Tensor> {
  const where = 'nn.addPositions';
  checkLayerCall(where, ctx, p, opts);
  const [P, D] = matrix(where, 'pos', p.pos, '[P, D]');
  checkTensor(where, 'pos', p.pos, [P, D], '[P, D]');
  const [N] = matrix(where, 'x', p.x, '[batch·T, D]');
  checkTensor(where, 'x', p.x, [N, D], `[batch·T, ${D}] (D from pos)`);
  const T = checkSequence(where, p.T, N, P);
  checkDistinctOwned(where, ctx, { x: p.x, pos: p.pos });
  await ctx.prepare([{ shader: SHADER, entry: 'add_positions' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'add_positions',
      params: { N, D, T, P },
      bindings: [p.x, p.pos],
      workgroups: groups(N * D),
      label: `add positions ${N}x${D}`,
    }),
  );
  return p.x;
}

/**
 * dpos[t] = Σ_b g[b·T + t] for t < T, zero for the rows from T to P − 1: the gradient of
 * `addPositions`. g [batch·T, D]; `positions` is P, the table's rows (dpos [P, D]). 1 dispatch.
 */
export async function positionGrad(
  ctx: Context,
  p: { g: Tensor; T: number; positions: number; dpos?: Tensor },
  opts: NnEncodeOptions = {},
): Promise<Tensor> {
  const where = 'nn.positionGrad';
  checkLayerCall(where, ctx, p, opts);
  const P = checkDim(where, 'positions', p.positions);
  const [N, D] = matrix(where, 'g', p.g, '[batch·T, D]');
  checkTensor(where, 'g', p.g, [N, D], '[batch·T, D]');
  const T = checkSequence(where, p.T, N, P);
  const dpos = p.dpos ? checkTensor(where, 'dpos', p.dpos, [P, D], '[positions, D]') : ctx.tensor([P, D], 'f32', 'nn.dpos');
  checkDistinctOwned(where, ctx, { dpos, g: p.g });
  await ctx.prepare([{ shader: SHADER, entry: 'position_grad' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'position_grad',
      params: { N, D, T, P },
      bindings: [p.g, dpos],
      workgroups: groups(P * D),
      label: `position grad ${P}x${D}`,
    }),
  );
  return dpos;
}

// ------------------------------------------------------------------------- activation

/**
 * y = f(x) elementwise, f = GELU (tanh approximation, the default) or tanh. With `b`, the bias is
 * added first IN PLACE (x ← x + b, the pre-activation the backward needs) in the same pass.
 */
export async function activationForward(
  ctx: Context,
  p: { x: Tensor; b?: Tensor; y?: Tensor; fn?: Activation },
  opts: NnEncodeOptions = {},
): Promise<Tensor> {
  const where = 'nn.activation';
  checkLayerCall(where, ctx, p, opts);
  const constants = actConstants(where, p.fn);
  const [T, n] = matrix(where, 'x', p.x, '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  if (p.b) checkTensor(where, 'b', p.b, [n], '[n]');
  const y = p.y ? checkTensor(where, 'y', p.y, [T, n], '[T, n]') : ctx.tensor([T, n], 'f32', 'nn.activation.y');
  checkDistinctOwned(where, ctx, { y, x: p.x, b: p.b });
  const entry = p.b ? 'bias_activation_forward' : 'activation_forward';
  await ctx.prepare([{ shader: SHADER, entry, constants }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry,
      constants,
      params: { T, n },
      bindings: p.b ? [p.x, p.b, y] : [p.x, y],
      workgroups: groups(T * n),
      label: `${p.fn ?? 'gelu'} ${T}x${n}`,
    }),
  );
  return y;
}

/**
 * dx = g ⊙ f'(x) for the pre-activation x. With `bias: true` (or a `db` given) it also returns
 * db = Σ_t dx[t] from the same pass: the gradient of the bias that was added before f.
 */
export async function activationBackward(
  ctx: Context,
  p: { x: Tensor; g: Tensor; dx?: Tensor; db?: Tensor; fn?: Activation },
  opts: NnEncodeOptions & { bias?: boolean } = {},
): Promise<{ dx: Tensor; db?: Tensor }> {
  const where = 'nn.activationBackward';
  checkLayerCall(where, ctx, p, opts);
  const constants = actConstants(where, p.fn);
  const [T, n] = matrix(where, 'x', p.x, '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'g', p.g, [T, n], '[T, n]');
  const withBias = opts.bias === true || p.db !== undefined;
  // Both caller outputs are checked before either is made, so a refused call allocates nothing.
  if (p.dx) checkTensor(where, 'dx', p.dx, [T, n], '[T, n]');
  if (withBias && p.db) checkTensor(where, 'db', p.db, [n], '[n]');
  const dx = p.dx ?? ctx.tensor([T, n], 'f32', 'nn.activation.dx');
  const db = withBias ? (p.db ?? ctx.tensor([n], 'f32', 'nn.activation.db')) : undefined;
  checkDistinctOwned(where, ctx, { dx, db, x: p.x, g: p.g });
  const entry = withBias ? 'activation_backward_bias' : 'activation_backward';
  await ctx.prepare([{ shader: SHADER, entry, constants }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry,
      constants,
      params: { T, n },
      bindings: db ? [p.x, p.g, dx, db] : [p.x, p.g, dx],
      workgroups: withBias ? rowGroups(n) : groups(T * n),
      label: `${p.fn ?? 'gelu'} backward ${T}x${n}`,
    }),
  );
  return { dx, db };
}

// ------------------------------------------------------------------------- layer norm

/**
 * y = (x − μ)/√(σ² + eps) ⊙ γ + β per row (biased variance, as PyTorch). Returns y and the row
 * statistics mean [T] and rstd = 1/√(σ² + eps) [T] that the backward takes.
 */
export async function layerNormForward(
  ctx: Context,
  p: { x: Tensor; gamma: Tensor; beta: Tensor; eps?: number; y?: Tensor; mean?: Tensor; rstd?: Tensor },
  opts: NnEncodeOptions = {},
): Promise<{ y: Tensor; mean: Tensor; rstd: Tensor }> {
  const where = 'nn.layerNorm';
  checkLayerCall(where, ctx, p, opts);
  const [T, n] = matrix(where, 'x', p.x, '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'gamma', p.gamma, [n], '[n]');
  checkTensor(where, 'beta', p.beta, [n], '[n]');
  const eps = p.eps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps))
    throw new PeftError(`${where}: 'eps' must be a positive finite number, got ${String(eps)}`);
  const y = p.y ? checkTensor(where, 'y', p.y, [T, n], '[T, n]') : ctx.tensor([T, n], 'f32', 'nn.layerNorm.y');
  const mean = p.mean ? checkTensor(where, 'mean', p.mean, [T], '[T]') : ctx.tensor([T], 'f32', 'nn.layerNorm.mean');
  const rstd = p.rstd ? checkTensor(where, 'rstd', p.rstd, [T], '[T]') : ctx.tensor([T], 'f32', 'nn.layerNorm.rstd');
  checkDistinctOwned(where, ctx, { y, mean, rstd, x: p.x, gamma: p.gamma, beta: p.beta });
  await ctx.prepare([{ shader: SHADER, entry: 'layer_norm_forward' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'layer_norm_forward',
      params: { T, n, eps },
      bindings: [p.x, p.gamma, p.beta, y, mean, rstd],
      workgroups: rowGroups(T),
      label: `layer norm ${T}x${n}`,
    }),
  );
  return { y, mean, rstd };
}

/**
 * dx, dγ, dβ of layer norm given g = ∂L/∂y and the forward's mean and rstd. With
 * `params: false` (frozen γ, β) only dx is computed: 1 dispatch instead of 2.
 */
export async function layerNormBackward(
  ctx: Context,
  p: { x: Tensor; gamma: Tensor; g: Tensor; mean: Tensor; rstd: Tensor; dx?: Tensor; dgamma?: Tensor; dbeta?: Tensor },
  opts: NnEncodeOptions & { params?: boolean } = {},
): Promise<{ dx: Tensor; dgamma?: Tensor; dbeta?: Tensor }> {
  const where = 'nn.layerNormBackward';
  checkLayerCall(where, ctx, p, opts);
  const [T, n] = matrix(where, 'x', p.x, '[T, n]');
  checkTensor(where, 'x', p.x, [T, n], '[T, n]');
  checkTensor(where, 'gamma', p.gamma, [n], '[n]');
  checkTensor(where, 'g', p.g, [T, n], '[T, n]');
  checkTensor(where, 'mean', p.mean, [T], '[T]');
  checkTensor(where, 'rstd', p.rstd, [T], '[T]');
  const dx = p.dx ? checkTensor(where, 'dx', p.dx, [T, n], '[T, n]') : ctx.tensor([T, n], 'f32', 'nn.layerNorm.dx');
  const withParams = opts.params !== false;
  const dgamma = withParams
    ? p.dgamma
      ? checkTensor(where, 'dgamma', p.dgamma, [n], '[n]')
      : ctx.tensor([n], 'f32', 'nn.layerNorm.dgamma')
    : undefined;
  const dbeta = withParams ? (p.dbeta ? checkTensor(where, 'dbeta', p.dbeta, [n], '[n]') : ctx.tensor([n], 'f32', 'nn.layerNorm.dbeta')) : undefined;
  checkDistinctOwned(where, ctx, { dx, dgamma, dbeta, x: p.x, gamma: p.gamma, g: p.g, mean: p.mean, rstd: p.rstd });
  await ctx.prepare([
    { shader: SHADER, entry: 'layer_norm_backward_dx' },
    ...(withParams ? [{ shader: SHADER, entry: 'layer_norm_backward_params' }] : []),
  ]);
  await ctx.encode(opts.encoder, (enc) => {
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'layer_norm_backward_dx',
      params: { T, n },
      bindings: [p.x, p.gamma, p.g, p.mean, p.rstd, dx],
      workgroups: rowGroups(T),
      label: `layer norm backward ${T}x${n}`,
    });
    if (dgamma && dbeta) {
      ctx.dispatch(enc, {
        shader: SHADER,
        entry: 'layer_norm_backward_params',
        params: { T, n },
        bindings: [p.x, p.g, p.mean, p.rstd, dgamma, dbeta],
        workgroups: rowGroups(n),
        label: `layer norm dγ dβ ${T}x${n}`,
      });
    }
  });
  return { dx, dgamma, dbeta };
}

// ------------------------------------------------------------------------- softmax cross-entropy

/**
 * loss = mean over rows of −log softmax(logits[t])[targets[t]] (max-subtracted), written to a
 * 1-element tensor, and dlogits = (softmax − onehot) / T, its gradient. logits [T, V], targets
 * u32 [T] (check them with `uploadIds`; a target ≥ V makes the loss NaN). 1 dispatch (one
 * workgroup: the batch's rows are few).
 */
export async function softmaxCrossEntropy(
  ctx: Context,
  p: { logits: Tensor; targets: Tensor; loss?: Tensor; dlogits?: Tensor },
  opts: NnEncodeOptions = {},
): Promise<{ loss: Tensor; dlogits: Tensor }> {
  const where = 'nn.softmaxCrossEntropy';
  checkLayerCall(where, ctx, p, opts);
  const [T, V] = matrix(where, 'logits', p.logits, '[T, V]');
  checkTensor(where, 'logits', p.logits, [T, V], '[T, V]');
  checkTensor(where, 'targets', p.targets, [T], '[T]', 'u32');
  const loss = p.loss ? checkTensor(where, 'loss', p.loss, [1], '[1]') : ctx.tensor([1], 'f32', 'nn.loss');
  const dlogits = p.dlogits ? checkTensor(where, 'dlogits', p.dlogits, [T, V], '[T, V]') : ctx.tensor([T, V], 'f32', 'nn.dlogits');
  checkDistinctOwned(where, ctx, { loss, dlogits, logits: p.logits, targets: p.targets });
  await ctx.prepare([{ shader: SHADER, entry: 'softmax_cross_entropy' }]);
  await ctx.encode(opts.encoder, (enc) =>
    ctx.dispatch(enc, {
      shader: SHADER,
      entry: 'softmax_cross_entropy',
      params: { T, V, inv_T: 1 / T },
      bindings: [p.logits, p.targets, dlogits, loss],
      workgroups: 1,
      label: `softmax ce ${T}x${V}`,
    }),
  );
  return { loss, dlogits };
}
