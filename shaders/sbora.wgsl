// SBoRA kernels (KERNELS.md, "SBoRA"): the frozen standard-basis factor is a list of r distinct
// u32 indices, so the products with it become gathers (FA's projection-down, FB's gradient) and
// index_adds (FB's projection-up, FA's input gradient). No one-hot matrix exists anywhere.
//
//   gather_mm      C[i, j] = scale · Σ_q SRC[i, IDX[q]] · F(j, q) + beta · C
//                  FA forward  (SRC = X, F = B [N, R]; beta = 1 on top of X W0ᵀ from matmul.wgsl)
//                  FB backward dX (SRC = G, F = A stored [R, N]; beta = 1 on top of G W0)
//   index_add_mm   C[i, IDX[q]] += scale · Σ_k SRC[i, k] · F(q, k)
//                  FB forward  (SRC = X, F = A [R, K]);  FA backward dX (SRC = G, F = B stored [K, R])
//   gather_outer   D(j, q) = scale · Σ_t F[t, j] · SRC[t, IDX[q]]
//                  FA dB [N, R] (F = G, SRC = X);  FB dA [R, N] (F = X, SRC = G)
//   merge_cols     C[j, IDX[q]] += scale · SRC[j, q]     FA regional merge, O(m·r)
//   merge_rows     C[IDX[q], k] += scale · SRC[q, k]     FB regional merge, O(r·n)
//
// The index sets are validated on the host to be distinct and in range, which is what makes
// the scatters race-free: every output element has exactly one writer.
//
// Layout of the adapter kernels: a workgroup of LANES invocations owns SR "uniform" rows, the
// same for every lane, and each lane owns SC columns strided by LANES. lavapipe runs a
// workgroup's invocations as the lanes of one SIMD vector: a load whose address is uniform becomes
// one scalar load and a broadcast, a per-lane address a gather. So the gathers through IDX are put
// on the uniform side wherever the math allows (IDX[q] is the same in every lane), and nothing
// uses workgroup memory or barriers, which are dear on CPUs. On GPUs LANES is larger (64) and the
// per-lane loads of consecutive columns coalesce.

override F_RN: bool = false;     // gather_mm: F stored [R, N] rather than [N, R]
override F_RK: bool = true;      // index_add_mm: F stored [R, K] rather than [K, R]
override D_RN: bool = false;     // gather_outer: D stored [R, N] rather than [N, R]
override LANES: u32 = 8u;
// Adapter dropout: 0 none; otherwise which operand carries the mask of X, per entry:
//   gather_mm     1: the gathered SRC = X (FA forward)   2: the adapter term of C = dX (FB backward)
//   index_add_mm  1: SRC = X (FB forward)                 2: the written elements of C = dX (FA backward)
//   gather_outer  1: the gathered SRC = X (FA dB)        2: F = X (FB dA)
// In every case the mask index is the element's row-major position in the [T, n] input.
override DROP: u32 = 0u;
const SR: u32 = 8u;
const SC: u32 = 4u;  // 4 columns per lane: 4 gathers and SR broadcasts feed 32 multiply-adds

// One layout for every entry; each entry documents what its fields mean. tiles_n counts the
// per-lane column blocks (LANES * SC wide); the uniform rows come in blocks of SR.
struct Params {
  M: u32, N: u32, K: u32, R: u32,
  ld: u32, scale: f32, beta: f32, tiles_n: u32,
  // Adapter dropout (DROP != 0): elements whose hash is below threshold are dropped, the others
  // scaled by keep_scale = 1 / (1 − p); the same mask as shaders/dropout.wgsl.
  seed: u32, threshold: u32, keep_scale: f32, pad: u32,
}

// Binding order suits every entry: each uses a prefix of 1..4 (layout 'auto' keeps only the
// bindings an entry uses, and the dispatcher binds in order).
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> IDX: array<u32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<storage, read> SRC: array<f32>;
@group(0) @binding(4) var<storage, read> F: array<f32>;

// The workgroup's uniform-row block and per-lane column block; z = 1 past the grid (the
// dispatcher may round the grid up). Uniform across the workgroup, so returning on it is safe.
fn strip_tile(wid: vec3<u32>, nwg: vec3<u32>, uniform_rows: u32) -> vec3<u32> {
  let tile = linear_workgroup(wid, nwg);
  let blocks = (uniform_rows + SR - 1u) / SR;
  return vec3<u32>((tile / P.tiles_n) * SR, (tile % P.tiles_n) * (LANES * SC), select(0u, 1u, tile >= blocks * P.tiles_n));
}

// PCG's output permutation, bit for bit as in shaders/dropout.wgsl and src/reference/dropout.ts.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// The keep factor of element i of X (0 or 1 / (1 − p)); `mixed` = pcg(seed), hoisted per invocation.
fn keep(i: u32, mixed: u32) -> f32 {
  return select(0.0, P.keep_scale, pcg(i ^ mixed) >= P.threshold);
}

// gather_mm / gather_mm4: M rows, N columns, K = row length of SRC, RANK = r. The adapter path
// alone (beta = 0), or its term added to a base product matmul.wgsl wrote (beta = 1).
//
// Its own layout (not the strip layout): every one of the M·N outputs is an r-deep dot product,
// so at small r the cost is the loads and stores around the multiply-adds. A workgroup owns ROWS
// rows and 4·LANES columns; each lane owns 4 consecutive columns j0..j0+3 and walks the rows. Its
// 4 × r values of s·F and the r indices are loaded once into registers (QB ranks at a time) and
// reused for every row, where the strip layout reloaded F for every block of 8 rows; per row a
// lane reads the r gathered X[t, IDX[q]] (the same address in every lane), does r 4-wide
// multiply-adds and writes its 4 outputs with one 16-byte store (gather_mm4, N % 4 == 0) or up
// to 4 scalar stores (gather_mm). RANK is an override so the rank loops have constant trip counts
// and unroll (guarded by `if`, not `break`), keeping fq in registers: a register array indexed by
// a loop that does not unroll lives in per-lane scratch memory on lavapipe. Ranks past QB take
// further passes that add into C. QB = 16 measured best on lavapipe: 32 was slower at r = 32
// (the 32 vec4 spill), 8 slower at r = 16 to 32 (twice the passes over C).
override RANK: u32 = 1u;
override ROWS: u32 = 32u;      // rows per workgroup
const QB: u32 = 16u;           // ranks held in registers per pass

var<private> fq: array<vec4<f32>, QB>;  // s·F(j0 + c, q0 + q) in component c
var<private> iq: array<u32, QB>;        // IDX[q0 + q]

fn f_jq(j: u32, q: u32) -> f32 {
  if (F_RN) { return F[q * P.N + j]; }
  return F[j * RANK + q];
}

// Loads ranks q0 .. q0 + qn of F for columns j0 .. j0 + 3 (clamped to N − 1: such columns are
// never stored) and their indices.
fn load_ranks(q0: u32, qn: u32, j0: u32) {
  var cols: array<u32, 4>;
  for (var c = 0u; c < 4u; c++) { cols[c] = min(j0 + c, P.N - 1u); }
  for (var q = 0u; q < QB; q++) {
    if (q < qn) {
      iq[q] = IDX[q0 + q];
      var f: vec4<f32>;
      for (var c = 0u; c < 4u; c++) { f[c] = f_jq(cols[c], q0 + q); }
      fq[q] = P.scale * f;
    }
  }
}

// s · Σ_q X[t, IDX[q]] · F(j0 + c, q) over the loaded ranks (FA's dropout masks the gathered X).
fn gather_row(t: u32, qn: u32, mixed: u32) -> vec4<f32> {
  let row = t * P.K;
  var acc = vec4<f32>(0.0);
  for (var q = 0u; q < QB; q++) {
    if (q < qn) {
      var a = SRC[row + iq[q]];
      if (DROP == 1u) { a *= keep(row + iq[q], mixed); }
      acc = fma(vec4<f32>(a), fq[q], acc);
    }
  }
  return acc;
}

// The mask of the adapter term of C = dX (FB backward), at elements e .. e + 3.
fn keep4(e: u32, mixed: u32) -> vec4<f32> {
  return vec4<f32>(keep(e, mixed), keep(e + 1u, mixed), keep(e + 2u, mixed), keep(e + 3u, mixed));
}

// The workgroup's first row and the lane's first column; z = 1 past the grid.
fn gather_tile(wid: vec3<u32>, nwg: vec3<u32>, lane: u32) -> vec3<u32> {
  let tile = linear_workgroup(wid, nwg);
  let row_tiles = (P.M + ROWS - 1u) / ROWS;
  return vec3<u32>((tile / P.tiles_n) * ROWS, (tile % P.tiles_n) * (4u * LANES) + 4u * lane,
                   select(0u, 1u, tile >= row_tiles * P.tiles_n));
}

@compute @workgroup_size(LANES)
fn gather_mm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lane: u32) {
  let o = gather_tile(wid, nwg, lane);
  if (o.z != 0u) { return; }
  let t1 = min(o.x + ROWS, P.M);
  let mixed = pcg(P.seed);
  for (var q0 = 0u; q0 < RANK; q0 += QB) {
    let qn = min(QB, RANK - q0);
    load_ranks(q0, qn, o.y);
    for (var t = o.x; t < t1; t++) {
      var v = gather_row(t, qn, mixed);
      // Lanes past N keep going (with clamped loads) and only skip their stores.
      for (var c = 0u; c < 4u; c++) {
        let col = o.y + c;
        if (col < P.N) {
          let at = t * P.N + col;
          var w = v[c];
          if (DROP == 2u) { w *= keep(at, mixed); }
          if (q0 > 0u) { w += C[at]; } else if (P.beta != 0.0) { w += P.beta * C[at]; }
          C[at] = w;
        }
      }
    }
  }
}

@group(0) @binding(2) var<storage, read_write> C4: array<vec4<f32>>;

@compute @workgroup_size(LANES)
fn gather_mm4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
  let o = gather_tile(wid, nwg, lane);
  if (o.z != 0u) { return; }
  let t1 = min(o.x + ROWS, P.M);
  let live = o.y < P.N;  // N % 4 == 0: all four columns or none
  let n4 = P.N / 4u;
  let mixed = pcg(P.seed);
  for (var q0 = 0u; q0 < RANK; q0 += QB) {
    let qn = min(QB, RANK - q0);
    load_ranks(q0, qn, o.y);
    for (var t = o.x; t < t1; t++) {
      var v = gather_row(t, qn, mixed);
      if (DROP == 2u) { v *= keep4(t * P.N + o.y, mixed); }
      if (live) {
        let at = t * n4 + o.y / 4u;
        if (q0 > 0u) { v += C4[at]; } else if (P.beta != 0.0) { v += P.beta * C4[at]; }
        C4[at] = v;
      }
    }
  }
}

fn f_qk(q: u32, k: u32) -> f32 {
  if (F_RK) { return F[q * P.K + k]; }
  return F[k * P.R + q];
}

// index_add_mm: M rows of SRC and C (per lane), N = row length of C, K = depth (row length of
// SRC), R = rank (uniform); the result for (row, q) lands in column IDX[q] of C. Distinct indices
// give every written element one writer.
@compute @workgroup_size(LANES)
fn index_add_mm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
  let o = strip_tile(wid, nwg, P.R);
  if (o.z != 0u) { return; }
  var qs: array<u32, SR>;
  for (var i = 0u; i < SR; i++) { qs[i] = min(o.x + i, P.R - 1u); }
  var rows: array<u32, SC>;
  for (var j = 0u; j < SC; j++) { rows[j] = min(o.y + lane + j * LANES, P.M - 1u) * P.K; }
  let mixed = pcg(P.seed);
  var acc: array<f32, SR * SC>;
  for (var k = 0u; k < P.K; k++) {
    var s: array<f32, SC>;
    for (var j = 0u; j < SC; j++) { s[j] = SRC[rows[j] + k]; }
    if (DROP == 1u) { for (var j = 0u; j < SC; j++) { s[j] *= keep(rows[j] + k, mixed); } }
    for (var i = 0u; i < SR; i++) {
      let f = f_qk(qs[i], k);
      for (var j = 0u; j < SC; j++) { acc[i * SC + j] = fma(f, s[j], acc[i * SC + j]); }
    }
  }
  for (var i = 0u; i < SR; i++) {
    let q = o.x + i;
    if (q >= P.R) { break; }
    let col = IDX[q];
    for (var j = 0u; j < SC; j++) {
      let row = o.y + lane + j * LANES;
      if (row < P.M) {
        var v = P.scale * acc[i * SC + j];
        if (DROP == 2u) { v *= keep(row * P.N + col, mixed); }
        C[row * P.N + col] += v;
      }
    }
  }
}

// gather_outer: D(j, q) = scale · Σ_t F[t, j] · SRC[t, IDX[q]]. M = rows j of D (columns of F,
// per lane), K = depth T, R = rank (uniform), ld = row length of SRC.
@compute @workgroup_size(LANES)
fn gather_outer(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
  let o = strip_tile(wid, nwg, P.R);
  if (o.z != 0u) { return; }
  var cols: array<u32, SR>;
  for (var i = 0u; i < SR; i++) { cols[i] = IDX[min(o.x + i, P.R - 1u)]; }
  var js: array<u32, SC>;
  for (var j = 0u; j < SC; j++) { js[j] = min(o.y + lane + j * LANES, P.M - 1u); }
  let mixed = pcg(P.seed);
  var acc: array<f32, SR * SC>;
  for (var t = 0u; t < P.K; t++) {
    var f: array<f32, SC>;
    for (var j = 0u; j < SC; j++) { f[j] = F[t * P.M + js[j]]; }
    if (DROP == 2u) { for (var j = 0u; j < SC; j++) { f[j] *= keep(t * P.M + js[j], mixed); } }
    for (var i = 0u; i < SR; i++) {
      var s = SRC[t * P.ld + cols[i]];
      if (DROP == 1u) { s *= keep(t * P.ld + cols[i], mixed); }
      for (var j = 0u; j < SC; j++) { acc[i * SC + j] = fma(s, f[j], acc[i * SC + j]); }
    }
  }
  for (var i = 0u; i < SR; i++) {
    let q = o.x + i;
    if (q >= P.R) { break; }
    for (var j = 0u; j < SC; j++) {
      let jr = o.y + lane + j * LANES;
      if (jr < P.M) {
        let v = P.scale * acc[i * SC + j];
        if (D_RN) { C[q * P.M + jr] = v; } else { C[jr * P.R + q] = v; }
      }
    }
  }
}

const MERGE_WG: u32 = 64u;

// merge_cols: M rows of W (m), N = row length of W (n), R = rank; SRC = B [M, R].
@compute @workgroup_size(MERGE_WG)
fn merge_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * MERGE_WG + lidx;
  if (e >= P.M * P.R) { return; }
  let j = e / P.R;
  let q = e % P.R;
  let at = j * P.N + IDX[q];
  C[at] += P.scale * SRC[e];
}

// merge_rows: N = row length of W (n), R = rank; SRC = A [R, N].
@compute @workgroup_size(MERGE_WG)
fn merge_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * MERGE_WG + lidx;
  if (e >= P.R * P.N) { return; }
  let q = e / P.N;
  let k = e % P.N;
  let at = IDX[q] * P.N + k;
  C[at] += P.scale * SRC[e];
}
