// SBoRA kernels (docs/sbora.md; the math in docs/math.md): the frozen standard-basis factor is a
// list of r distinct u32 indices, so the products with it become gathers (FA's projection-down,
// FB's gradient) and index_adds (FB's projection-up, FA's input gradient). No one-hot matrix
// exists anywhere.
//
//   gather_mm      OUT[t, j] = scale · Σ_q TOKENS[t, IDX[q]] · DENSE(j, q) + beta · OUT[t, j]
//                  FA forward  (TOKENS = X, DENSE = B [m, r]; beta = 1 on top of X W0ᵀ from matmul.wgsl)
//                  FB backward dX (TOKENS = G, DENSE = A stored [r, n]; beta = 1 on top of G W0)
//   index_add_mm   OUT[t, IDX[q]] += scale · Σ_k TOKENS[t, k] · DENSE(q, k)
//                  FB forward  (TOKENS = X, DENSE = A [r, n]);  FA backward dX (TOKENS = G, DENSE = B stored [m, r])
//   gather_outer   OUT(j, q) = scale · Σ_t DENSE[t, j] · TOKENS[t, IDX[q]]
//                  FA dB [m, r] (DENSE = G, TOKENS = X);  FB dA [r, n] (DENSE = X, TOKENS = G)
//   merge_cols     W[j, IDX[q]] += scale · B[j, q]     FA regional merge, O(m·r)
//   merge_rows     W[IDX[q], k] += scale · A[q, k]     FB regional merge, O(r·n)
//
// The index sets are validated on the host to be distinct and in range, which is what makes
// the scatters race-free: every output element has exactly one writer.
//
// Layout of index_add_mm and gather_outer (the "strip" layout): a workgroup of LANES invocations
// owns SR "uniform" ranks, the same for every lane, and each lane owns SC per-lane items (token
// rows, or the output's columns) strided by LANES. lavapipe runs a workgroup's invocations as the
// lanes of one SIMD vector: a load whose address is uniform becomes one scalar load and a
// broadcast, a per-lane address a gather. So the gathers through IDX are put on the uniform side
// wherever the math allows (IDX[q] is the same in every lane), and nothing uses workgroup memory
// or barriers, which are dear on CPUs. On GPUs LANES is larger (64) and the per-lane loads of
// consecutive columns coalesce.

// gather_mm, index_add_mm: the factor (DENSE) is stored rank-major, [r, ·] (FB's A), rather than
// [·, r] (FA's B).
override FACTOR_RANK_MAJOR: bool = false;
// gather_outer: the output (a factor's gradient) is stored rank-major, [r, ·] (FB's dA), rather
// than [·, r] (FA's dB).
override OUT_RANK_MAJOR: bool = false;
override LANES: u32 = 8u;
// Adapter dropout: 0 none; otherwise which operand carries the mask of X, per entry:
//   gather_mm     1: the gathered TOKENS = X (FA forward)   2: the adapter term of OUT = dX (FB backward)
//   index_add_mm  1: TOKENS = X (FB forward)                 2: the written elements of OUT = dX (FA backward)
//   gather_outer  1: the gathered TOKENS = X (FA dB)        2: DENSE = X (FB dA)
// In every case the mask index is the element's row-major position in the [T, n] input.
override DROP: u32 = 0u;
const SR: u32 = 8u;  // uniform ranks per workgroup (strip layout)
const SC: u32 = 4u;  // per-lane items: 4 gathers and SR broadcasts feed 32 multiply-adds

// Storage bindings mean the same in every entry; each entry uses a prefix of them (layout 'auto'
// keeps only the bindings an entry uses, and the dispatcher binds in order).
@group(0) @binding(1) var<storage, read> IDX: array<u32>;               // the r indices
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;         // what the entry writes
@group(0) @binding(2) var<storage, read_write> OUT4: array<vec4<f32>>;  // the same, 16 bytes at a time
// The operand read as stored, never through IDX: the trained factor (B or A), or, in
// gather_outer, which computes that factor's gradient, the token-major tensor TOKENS is
// multiplied with.
@group(0) @binding(3) var<storage, read> DENSE: array<f32>;
// X or G, [T, ·] row-major: the entry gathers its columns IDX (gather_mm, gather_outer) or reads
// whole rows of it (index_add_mm).
@group(0) @binding(4) var<storage, read> TOKENS: array<f32>;

// ------------------------------------------------------------------------------ dropout

// PCG's output permutation, bit for bit as in shaders/dropout.wgsl and src/reference/dropout.ts.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// An entry's dropout parameters, with pcg(seed) hoisted once per invocation. Elements whose hash
// is below threshold are dropped, the others scaled by keep_scale = 1 / (1 − p); the same mask
// as shaders/dropout.wgsl.
struct Dropout { mixed: u32, threshold: u32, keep_scale: f32 }

fn dropout(seed: u32, threshold: u32, keep_scale: f32) -> Dropout {
  return Dropout(pcg(seed), threshold, keep_scale);
}

// The keep factor of element i of X: 0 or 1 / (1 − p).
fn keep(i: u32, d: Dropout) -> f32 {
  return select(0.0, d.keep_scale, pcg(i ^ d.mixed) >= d.threshold);
}

// The mask at elements e .. e + 3.
fn keep4(e: u32, d: Dropout) -> vec4<f32> {
  return vec4<f32>(keep(e, d), keep(e + 1u, d), keep(e + 2u, d), keep(e + 3u, d));
}

// ------------------------------------------------------------------------------ gather_mm

// gather_mm / gather_mm4: the adapter path alone (beta = 0), or its term added to a base product
// matmul.wgsl wrote (beta = 1).
//
// Its own layout (not the strip layout): every one of the T·cols outputs is an r-deep dot
// product, so at small r the cost is the loads and stores around the multiply-adds. A workgroup
// owns ROWS rows and 4·LANES columns; each lane owns 4 consecutive columns j0..j0+3 and walks the
// rows. Its 4 × r values of s·DENSE and the r indices are loaded once into registers (QB ranks at
// a time) and reused for every row, where the strip layout reloaded the factor for every block
// of 8 rows; per row a lane reads the r gathered X[t, IDX[q]] (the same address in every lane),
// does r 4-wide multiply-adds and writes its 4 outputs with one 16-byte store (gather_mm4,
// cols % 4 == 0) or up to 4 scalar stores (gather_mm). RANK is an override so the rank loops have
// constant trip counts and unroll (guarded by `if`, not `break`), keeping fq in registers: a
// register array indexed by a loop that does not unroll lives in per-lane scratch memory on
// lavapipe. Ranks past QB take further passes that add into OUT. QB = 16 measured best on
// lavapipe: 32 was slower at r = 32 (the 32 vec4 spill), 8 slower at r = 16 to 32 (twice the
// passes over OUT).
struct GatherParams {
  rows: u32,        // T: rows of TOKENS and OUT
  cols: u32,        // row length of OUT, elements (m for FA's Y, n for FB's dX)
  token_cols: u32,  // row length of TOKENS, elements (n for X, m for G)
  col_tiles: u32,   // workgroups across OUT's columns, 4·LANES columns each
  scale: f32,       // s = alpha / r
  beta: f32,        // 0: OUT gets the adapter term alone; 1: the term is added to OUT
  seed: u32,        // dropout (DROP != 0): mask seed, u32 threshold, 1 / (1 − p)
  threshold: u32,
  keep_scale: f32,
}
@group(0) @binding(0) var<uniform> PG: GatherParams;

override RANK: u32 = 1u;
override ROWS: u32 = 32u;      // rows per workgroup
const QB: u32 = 16u;           // ranks held in registers per pass

var<private> fq: array<vec4<f32>, QB>;  // s·DENSE(j0 + c, q0 + q) in component c
var<private> iq: array<u32, QB>;        // IDX[q0 + q]

fn factor_jq(j: u32, q: u32) -> f32 {
  if (FACTOR_RANK_MAJOR) { return DENSE[q * PG.cols + j]; }
  return DENSE[j * RANK + q];
}

// Loads ranks q0 .. q0 + qn of the factor for columns j0 .. j0 + 3 (clamped to cols − 1: such
// columns are never stored) and their indices.
fn load_ranks(q0: u32, qn: u32, j0: u32) {
  var cols: array<u32, 4>;
  for (var c = 0u; c < 4u; c++) { cols[c] = min(j0 + c, PG.cols - 1u); }
  for (var q = 0u; q < QB; q++) {
    if (q < qn) {
      iq[q] = IDX[q0 + q];
      var f: vec4<f32>;
      for (var c = 0u; c < 4u; c++) { f[c] = factor_jq(cols[c], q0 + q); }
      fq[q] = PG.scale * f;
    }
  }
}

// s · Σ_q X[t, IDX[q]] · DENSE(j0 + c, q) over the loaded ranks (FA's dropout masks the gathered X).
fn gather_row(t: u32, qn: u32, d: Dropout) -> vec4<f32> {
  let row = t * PG.token_cols;
  var acc = vec4<f32>(0.0);
  for (var q = 0u; q < QB; q++) {
    if (q < qn) {
      var a = TOKENS[row + iq[q]];
      if (DROP == 1u) { a *= keep(row + iq[q], d); }
      acc = fma(vec4<f32>(a), fq[q], acc);
    }
  }
  return acc;
}

// The workgroup's first row and the lane's first column; z = 1 past the grid (the dispatcher
// may round the grid up). Uniform across the workgroup, so returning on it is safe.
fn gather_tile(wid: vec3<u32>, nwg: vec3<u32>, lane: u32) -> vec3<u32> {
  let tile = linear_workgroup(wid, nwg);
  let row_tiles = (PG.rows + ROWS - 1u) / ROWS;
  return vec3<u32>((tile / PG.col_tiles) * ROWS, (tile % PG.col_tiles) * (4u * LANES) + 4u * lane,
                   select(0u, 1u, tile >= row_tiles * PG.col_tiles));
}

// Row t's outputs at columns j0 .. j0 + 3, one scalar store each: lanes past cols keep going
// (with clamped loads) and only skip their stores. `later_pass`: ranks past the first QB add
// into what the first pass wrote.
fn store_row(t: u32, j0: u32, v: vec4<f32>, later_pass: bool, d: Dropout) {
  for (var c = 0u; c < 4u; c++) {
    let col = j0 + c;
    if (col < PG.cols) {
      let at = t * PG.cols + col;
      var w = v[c];
      if (DROP == 2u) { w *= keep(at, d); }
      if (later_pass) { w += OUT[at]; } else if (PG.beta != 0.0) { w += PG.beta * OUT[at]; }
      OUT[at] = w;
    }
  }
}

// The same with one 16-byte store: cols % 4 == 0, so all four columns exist or none.
fn store_row4(t: u32, j0: u32, v: vec4<f32>, later_pass: bool, d: Dropout) {
  var w = v;
  if (DROP == 2u) { w *= keep4(t * PG.cols + j0, d); }
  if (j0 < PG.cols) {
    let at = (t * PG.cols + j0) / 4u;
    if (later_pass) { w += OUT4[at]; } else if (PG.beta != 0.0) { w += PG.beta * OUT4[at]; }
    OUT4[at] = w;
  }
}

//#each S= | S=4
@compute @workgroup_size(LANES)
fn gather_mm$S(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lane: u32) {
  let o = gather_tile(wid, nwg, lane);
  if (o.z != 0u) { return; }
  let t1 = min(o.x + ROWS, PG.rows);
  let d = dropout(PG.seed, PG.threshold, PG.keep_scale);
  for (var q0 = 0u; q0 < RANK; q0 += QB) {
    let qn = min(QB, RANK - q0);
    load_ranks(q0, qn, o.y);
    for (var t = o.x; t < t1; t++) { store_row$S(t, o.y, gather_row(t, qn, d), q0 > 0u, d); }
  }
}
//#end

// ------------------------------------------------------------------------------ strip layout

// The workgroup's block of uniform ranks (SR each) and per-lane item block (LANES·SC each);
// z = 1 past the grid. Uniform across the workgroup, so returning on it is safe.
fn strip_tile(wid: vec3<u32>, nwg: vec3<u32>, rank: u32, lane_tiles: u32) -> vec3<u32> {
  let tile = linear_workgroup(wid, nwg);
  let blocks = (rank + SR - 1u) / SR;
  return vec3<u32>((tile / lane_tiles) * SR, (tile % lane_tiles) * (LANES * SC), select(0u, 1u, tile >= blocks * lane_tiles));
}

// index_add_mm: the result for (token row t, rank q) lands in column IDX[q] of OUT. Distinct
// indices give every written element one writer. Token rows are per lane, ranks uniform.
struct IndexAddParams {
  rows: u32,        // T: rows of TOKENS and OUT
  out_cols: u32,    // row length of OUT, elements (m for FB's Y, n for FA's dX)
  depth: u32,       // row length of TOKENS, the dot products' length (n for X, m for G)
  rank: u32,        // r
  lane_tiles: u32,  // workgroups across the token rows, LANES·SC rows each
  scale: f32,       // s = alpha / r
  seed: u32,        // dropout, as in GatherParams
  threshold: u32,
  keep_scale: f32,
}
@group(0) @binding(0) var<uniform> PI: IndexAddParams;

fn factor_qk(q: u32, k: u32) -> f32 {
  if (FACTOR_RANK_MAJOR) { return DENSE[q * PI.depth + k]; }
  return DENSE[k * PI.rank + q];
}

@compute @workgroup_size(LANES)
fn index_add_mm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
  let o = strip_tile(wid, nwg, PI.rank, PI.lane_tiles);
  if (o.z != 0u) { return; }
  let d = dropout(PI.seed, PI.threshold, PI.keep_scale);
  var qs: array<u32, SR>;
  for (var i = 0u; i < SR; i++) { qs[i] = min(o.x + i, PI.rank - 1u); }
  var row_starts: array<u32, SC>;
  for (var j = 0u; j < SC; j++) { row_starts[j] = min(o.y + lane + j * LANES, PI.rows - 1u) * PI.depth; }
  var acc: array<f32, SR * SC>;
  for (var k = 0u; k < PI.depth; k++) {
    var s: array<f32, SC>;
    for (var j = 0u; j < SC; j++) { s[j] = TOKENS[row_starts[j] + k]; }
    if (DROP == 1u) { for (var j = 0u; j < SC; j++) { s[j] *= keep(row_starts[j] + k, d); } }
    for (var i = 0u; i < SR; i++) {
      let f = factor_qk(qs[i], k);
      for (var j = 0u; j < SC; j++) { acc[i * SC + j] = fma(f, s[j], acc[i * SC + j]); }
    }
  }
  for (var i = 0u; i < SR; i++) {
    let q = o.x + i;
    if (q >= PI.rank) { break; }
    let col = IDX[q];
    for (var j = 0u; j < SC; j++) {
      let row = o.y + lane + j * LANES;
      if (row < PI.rows) {
        var v = PI.scale * acc[i * SC + j];
        if (DROP == 2u) { v *= keep(row * PI.out_cols + col, d); }
        OUT[row * PI.out_cols + col] += v;
      }
    }
  }
}

// gather_outer: OUT(j, q) = scale · Σ_t DENSE[t, j] · TOKENS[t, IDX[q]]. The output's columns j
// are per lane, ranks uniform.
struct OuterParams {
  cols: u32,        // row length of DENSE = the output's other dimension (m for dB, n for dA)
  tokens: u32,      // T: rows of DENSE and TOKENS, the dot products' length
  rank: u32,        // r
  token_cols: u32,  // row length of TOKENS, elements (n for X, m for G)
  lane_tiles: u32,  // workgroups across the output's columns, LANES·SC columns each
  scale: f32,       // s = alpha / r
  seed: u32,        // dropout, as in GatherParams
  threshold: u32,
  keep_scale: f32,
}
@group(0) @binding(0) var<uniform> PO: OuterParams;

@compute @workgroup_size(LANES)
fn gather_outer(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
  let o = strip_tile(wid, nwg, PO.rank, PO.lane_tiles);
  if (o.z != 0u) { return; }
  let d = dropout(PO.seed, PO.threshold, PO.keep_scale);
  var picked: array<u32, SR>;
  for (var i = 0u; i < SR; i++) { picked[i] = IDX[min(o.x + i, PO.rank - 1u)]; }
  var js: array<u32, SC>;
  for (var j = 0u; j < SC; j++) { js[j] = min(o.y + lane + j * LANES, PO.cols - 1u); }
  var acc: array<f32, SR * SC>;
  for (var t = 0u; t < PO.tokens; t++) {
    var f: array<f32, SC>;
    for (var j = 0u; j < SC; j++) { f[j] = DENSE[t * PO.cols + js[j]]; }
    if (DROP == 2u) { for (var j = 0u; j < SC; j++) { f[j] *= keep(t * PO.cols + js[j], d); } }
    for (var i = 0u; i < SR; i++) {
      var s = TOKENS[t * PO.token_cols + picked[i]];
      if (DROP == 1u) { s *= keep(t * PO.token_cols + picked[i], d); }
      for (var j = 0u; j < SC; j++) { acc[i * SC + j] = fma(s, f[j], acc[i * SC + j]); }
    }
  }
  for (var i = 0u; i < SR; i++) {
    let q = o.x + i;
    if (q >= PO.rank) { break; }
    for (var j = 0u; j < SC; j++) {
      let jr = o.y + lane + j * LANES;
      if (jr < PO.cols) {
        let v = PO.scale * acc[i * SC + j];
        if (OUT_RANK_MAJOR) { OUT[q * PO.cols + jr] = v; } else { OUT[jr * PO.rank + q] = v; }
      }
    }
  }
}

// ------------------------------------------------------------------------------ regional merge

// merge_cols / merge_rows: W (OUT, [m, n]) += scale · the factor (DENSE) in the region, one
// invocation per factor element. The factor is walked in storage order: element e is
// (major, minor) = (e / minor_len, e % minor_len), i.e. (j, q) of B [m, r] for columns,
// (q, k) of A [r, n] for rows.
struct MergeParams {
  rows: u32,   // m: rows of W
  cols: u32,   // n: row length of W, elements
  rank: u32,   // r
  scale: f32,  // ±s: negative to unmerge
}
@group(0) @binding(0) var<uniform> PM: MergeParams;

const MERGE_WG: u32 = 64u;

//#each SIDE=cols; COUNT=PM.rows * PM.rank; MINOR=PM.rank; AT=major * PM.cols + IDX[minor] | SIDE=rows; COUNT=PM.rank * PM.cols; MINOR=PM.cols; AT=IDX[major] * PM.cols + minor
@compute @workgroup_size(MERGE_WG)
fn merge_$SIDE(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * MERGE_WG + lidx;
  if (e >= $COUNT) { return; }
  let major = e / $MINOR;
  let minor = e % $MINOR;
  OUT[$AT] += PM.scale * DENSE[e];
}
//#end
