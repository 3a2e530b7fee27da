// LoRMA_π kernels (KERNELS.md, "LoRMA"): the multiplicative matrix M = s·π(B A) is applied,
// differentiated and merged without ever being stored. B is [d, r], A is [r, d], P = B A and
//
//   M'[i, c] = π(P)[i, c] = P[i, (c − i) mod d]      (row i of P rotated right by i)
//
// so M = s·M'. Every element of M' is generated where it is used, from one row of B and one
// column of A (r multiply-adds); the extra memory is O(d·r) (the dP partial sums), never d×d.
//
// `mix`    out = s·op(In)·M'ᵀ (TRANS, the forward) or s·op(In)·M' (the backward dIn), plus beta·out.
//          A matmul whose right operand is a BK×BN tile of M' generated into workgroup memory once
//          per k-slice and shared by the BM tokens of the workgroup (generation costs r/BM of the
//          product). IN_T / OUT_T read In and write out transposed, for the merge W' = M·W0.
// `dp`     dP[i, j] = s·Σ_t dOut[t, i]·In[t, (i + j) mod d], one 64×64 tile at a time in registers
//          and workgroup memory, contracted at once into dB = dP Aᵀ and dA = Bᵀ dP partial sums.
//          Workgroup (gi, gj) of an S×S grid owns the row tiles ≡ gi and column tiles ≡ gj (mod S),
//          so each partial entry has exactly one writer and no atomics are needed.
// `reduce` sums the S partial slices into dB and dA.

override TRANS: bool = true;
override IN_T: bool = false;
override OUT_T: bool = false;
override WG_M: u32 = 8;
override WG_N: u32 = 8;
const TM: u32 = 8u;
const TN: u32 = 8u;
const BK: u32 = 64u;
override BM: u32 = WG_M * TM;
override BN: u32 = WG_N * TN;

struct MixParams {
  M: u32,        // tokens (rows of out)
  d: u32,
  r: u32,
  tiles_n: u32,
  s: f32,
  beta: f32,
}

@group(0) @binding(0) var<uniform> MP: MixParams;
@group(0) @binding(1) var<storage, read> In: array<f32>;
@group(0) @binding(2) var<storage, read> Bm: array<f32>;   // B [d, r]
@group(0) @binding(3) var<storage, read> Am: array<f32>;   // A [r, d]
@group(0) @binding(4) var<storage, read_write> Out: array<f32>;

var<workgroup> Ms: array<f32, BK * BN>;

// M'[row, col] = Σ_q B[row, q]·A[q, (col − row) mod d]; row, col < d.
fn mprime(row: u32, col: u32) -> f32 {
  let j = select(col + MP.d - row, col - row, col >= row);
  var acc = 0.0;
  for (var q = 0u; q < MP.r; q++) { acc += Bm[row * MP.r + q] * Am[q * MP.d + j]; }
  return acc;
}

fn in_at(t: u32, k: u32) -> f32 {
  if (IN_T) { return In[k * MP.M + t]; }
  return In[t * MP.d + k];
}

@compute @workgroup_size(WG_N, WG_M)
fn mix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tile = linear_workgroup(wid, nwg);
  let tiles_m = (MP.M + BM - 1u) / BM;
  if (tile >= tiles_m * MP.tiles_n) { return; }
  let tile_m0 = (tile / MP.tiles_n) * BM;
  let tile_n0 = (tile % MP.tiles_n) * BN;
  let row0 = tile_m0 + lid.y * TM;
  // Columns col0 + 8j: neighbouring invocations read neighbouring words of Ms.
  let col0 = tile_n0 + lid.x;
  let threads = WG_M * WG_N;
  var acc: array<f32, 64>;
  // When BN divides threads, the generation loop gives invocation lidx tile column n = tile_n0 + lidx % BN
  // at every k. In the forward that element is M'[n, k], always from row n of B: kept in
  // registers (r ≤ 16) instead of gathered again for every k.
  let gen_n = tile_n0 + lidx % BN;
  let cached = TRANS && threads % BN == 0u && MP.r <= 16u && gen_n < MP.d;
  var brow: array<f32, 16>;
  if (cached) {
    for (var q = 0u; q < MP.r; q++) { brow[q] = Bm[gen_n * MP.r + q]; }
  }
  for (var k0 = 0u; k0 < MP.d; k0 += BK) {
    for (var e = lidx; e < BK * BN; e += threads) {
      let k = k0 + e / BN;
      let n = tile_n0 + e % BN;
      var v = 0.0;
      if (k < MP.d && n < MP.d) {
        if (cached) {
          let j = select(k + MP.d - n, k - n, k >= n);
          for (var q = 0u; q < MP.r; q++) { v += brow[q] * Am[q * MP.d + j]; }
        } else if (TRANS) {
          v = mprime(n, k);
        } else {
          v = mprime(k, n);
        }
      }
      Ms[e] = v;
    }
    workgroupBarrier();
    let kmax = min(BK, MP.d - k0);
    for (var kk = 0u; kk < kmax; kk++) {
      var a: array<f32, 8>;
      var b: array<f32, 8>;
      for (var i = 0u; i < TM; i++) { a[i] = select(0.0, in_at(row0 + i, k0 + kk), row0 + i < MP.M); }
      for (var j = 0u; j < TN; j++) { b[j] = Ms[kk * BN + lid.x + WG_N * j]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i * TN + j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let row = row0 + i;
    if (row >= MP.M) { break; }
    for (var j = 0u; j < TN; j++) {
      let col = col0 + WG_N * j;
      if (col >= MP.d) { break; }
      var idx = row * MP.d + col;
      if (OUT_T) { idx = col * MP.M + row; }
      var v = MP.s * acc[i * TN + j];
      if (MP.beta != 0.0) { v += MP.beta * Out[idx]; }
      Out[idx] = v;
    }
  }
}

// ---------------------------------------------------------------- dP → dB, dA

struct DpParams {
  T: u32,
  d: u32,
  r: u32,
  S: u32,       // partial slices per side
  s: f32,
}

@group(0) @binding(0) var<uniform> DP: DpParams;
@group(0) @binding(1) var<storage, read> Gd: array<f32>;            // dOut [T, d]
@group(0) @binding(2) var<storage, read> Xd: array<f32>;            // In [T, d]
@group(0) @binding(3) var<storage, read> Bd: array<f32>;            // B [d, r]
@group(0) @binding(4) var<storage, read> Ad: array<f32>;            // A [r, d]
@group(0) @binding(5) var<storage, read_write> dBp: array<f32>;     // [S, d, r], zeroed
@group(0) @binding(6) var<storage, read_write> dAp: array<f32>;     // [S, r, d], zeroed

const DI: u32 = 64u;  // dP tile rows: 8 invocations × 8
const DJ: u32 = 64u;  // dP tile columns: 8 invocations × 8
var<workgroup> Ps: array<f32, 4096>;  // one DI×DJ tile of dP

@compute @workgroup_size(8, 8)
fn dp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
      @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let w = linear_workgroup(wid, nwg);
  if (w >= DP.S * DP.S) { return; }
  let gi = w / DP.S;
  let gj = w % DP.S;
  let d = DP.d;
  let tiles_i = (d + DI - 1u) / DI;
  let tiles_j = (d + DJ - 1u) / DJ;
  for (var ib = gi; ib < tiles_i; ib += DP.S) {
    for (var jb = gj; jb < tiles_j; jb += DP.S) {
      // Invocation (x, y) owns rows i0 + x + 8a (a < 4) and columns j0 + y + 8b (b < 8):
      // neighbouring invocations read neighbouring addresses, and dP[i, j] reads In[t, i + j],
      // so 11 distinct columns i0 + j0 + x + y + 8e (a Hankel pattern) serve all 32 products.
      let i0 = ib * DI;
      let j0 = jb * DJ;
      var cols: array<u32, 15>;
      for (var e = 0u; e < 15u; e++) { cols[e] = (i0 + j0 + lid.x + lid.y + 8u * e) % d; }
      var rows: array<u32, 8>;
      for (var a = 0u; a < 8u; a++) { rows[a] = min(i0 + lid.x + 8u * a, d - 1u); }
      var acc: array<f32, 64>;
      // Zeroed by hand: on Dawn + lavapipe a declaration inside a loop body kept the previous
      // iteration's values (WGSL says it starts at zero), which summed tiles into each other.
      for (var e = 0u; e < 64u; e++) { acc[e] = 0.0; }
      for (var t = 0u; t < DP.T; t++) {
        var g: array<f32, 8>;
        var u: array<f32, 15>;
        for (var a = 0u; a < 8u; a++) { g[a] = Gd[t * d + rows[a]]; }
        for (var e = 0u; e < 15u; e++) { u[e] = Xd[t * d + cols[e]]; }
        for (var a = 0u; a < 8u; a++) {
          for (var b = 0u; b < 8u; b++) { acc[a * 8u + b] += g[a] * u[a + b]; }
        }
      }
      for (var a = 0u; a < 8u; a++) {
        for (var b = 0u; b < 8u; b++) {
          let ii = lid.x + 8u * a;
          let jj = lid.y + 8u * b;
          let ok = i0 + ii < d && j0 + jj < d;
          Ps[ii * DJ + jj] = select(0.0, DP.s * acc[a * 8u + b], ok);
        }
      }
      workgroupBarrier();
      let r = DP.r;
      let jend = min(DJ, d - j0);
      let iend = min(DI, d - i0);
      // dB[i, q] += Σ_j dP[i, j]·A[q, j] over this tile's columns.
      for (var e = lidx; e < DI * r; e += 64u) {
        let row = e / r;
        let q = e % r;
        if (row < iend) {
          var sum = 0.0;
          for (var jj = 0u; jj < jend; jj++) { sum += Ps[row * DJ + jj] * Ad[q * d + j0 + jj]; }
          dBp[(gj * d + i0 + row) * r + q] += sum;
        }
      }
      // dA[q, j] += Σ_i B[i, q]·dP[i, j] over this tile's rows.
      for (var e = lidx; e < DJ * r; e += 64u) {
        let q = e / DJ;
        let col = e % DJ;
        if (col < jend) {
          var sum = 0.0;
          for (var ii = 0u; ii < iend; ii++) { sum += Bd[(i0 + ii) * r + q] * Ps[ii * DJ + col]; }
          dAp[(gi * r + q) * d + j0 + col] += sum;
        }
      }
      workgroupBarrier();
    }
  }
}

struct ReduceParams {
  count: u32,   // d·r
  S: u32,
}

@group(0) @binding(0) var<uniform> RP: ReduceParams;
@group(0) @binding(1) var<storage, read> Rb: array<f32>;            // [S, d, r]
@group(0) @binding(2) var<storage, read> Ra: array<f32>;            // [S, r, d]
@group(0) @binding(3) var<storage, read_write> Ob: array<f32>;      // dB [d, r]
@group(0) @binding(4) var<storage, read_write> Oa: array<f32>;      // dA [r, d]

@compute @workgroup_size(64)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * 64u + lidx;
  if (e >= RP.count) { return; }
  var sb = 0.0;
  var sa = 0.0;
  for (var g = 0u; g < RP.S; g++) {
    sb += Rb[g * RP.count + e];
    sa += Ra[g * RP.count + e];
  }
  Ob[e] = sb;
  Oa[e] = sa;
}
