// LoRMA_π kernels (KERNELS.md, "LoRMA"): the multiplicative matrix M = s·π(B A) is applied,
// differentiated and merged without ever being stored. B is [d, r], A is [r, d], P = B A and
//
//   M'[i, c] = π(P)[i, c] = P[i, (c − i) mod d]      (row i of P rotated right by i)
//
// so M = s·M'. Every element of M' is generated where it is used, from one row of B and one
// column of A (r multiply-adds); the extra memory is a d×w strip (w ≤ 64, w < d), never d×d.
//
// `mix`    out = s·op(In)·M'ᵀ (TRANS, the forward) or s·op(In)·M' (the backward dIn), plus beta·out.
//          A matmul whose right operand is a BK×BN tile of M' generated into workgroup memory once
//          per k-slice and shared by the BM tokens of the workgroup (generation costs r/BM of the
//          product). IN_T / OUT_T read In and write out transposed, for the merge W' = M·W0.
// `strip`, `contract`   dB = dP Aᵀ and dA = Bᵀ dP, with dP[i, j] = s·Σ_t dOut[t, i]·In[t, (i + j) mod d]
//          = dM'[i, (i + j) mod d], dM' = s·dOutᵀ In: dM' is made w ≤ 64 columns at a time by the
//          package's matmul and folded into dB and dA at once (2·d·r·w multiply-adds per strip).

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

// ---------------------------------------------------------------- dA, dB by column strips
//
// dP is never stored: a strip dM'[:, c0 : c0 + w] = s·dOutᵀ In[:, c0 : c0 + w]
// comes from the package's matmul (In's strip copied contiguous by `strip` first), and
// `contract` folds it into dB and dA: with c = c0 + cc and j = (c − i) mod d,
//   dB[i, q] += Σ_cc S[i, cc]·A[q, (c − i) mod d]
//   dA[q, j] += Σ_cc B[(c − j) mod d, q]·S[(c − j) mod d, cc]
// Strips run one after another, so each entry has one writer per dispatch.

struct StripParams {
  T: u32,
  d: u32,
  r: u32,
  c0: u32,
  w: u32,       // columns in this strip
  first: u32,   // 1: overwrite dB, dA; 0: accumulate
}

@group(0) @binding(0) var<uniform> SP: StripParams;
@group(0) @binding(1) var<storage, read> Sin: array<f32>;          // In [T, d]
@group(0) @binding(2) var<storage, read_write> Sout: array<f32>;   // [T, w]

@compute @workgroup_size(64)
fn strip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * 64u + lidx;
  if (e >= SP.T * SP.w) { return; }
  let t = e / SP.w;
  Sout[e] = Sin[t * SP.d + SP.c0 + e % SP.w];
}

@group(0) @binding(0) var<uniform> CP: StripParams;
@group(0) @binding(1) var<storage, read> Cs: array<f32>;           // dM' strip [d, w]
@group(0) @binding(2) var<storage, read> Cb: array<f32>;           // B [d, r]
@group(0) @binding(3) var<storage, read> Ca: array<f32>;           // A [r, d]
@group(0) @binding(4) var<storage, read_write> Cdb: array<f32>;    // dB [d, r]
@group(0) @binding(5) var<storage, read_write> Cda: array<f32>;    // dA [r, d]

@compute @workgroup_size(64)
fn contract(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * 64u + lidx;
  let d = CP.d;
  let r = CP.r;
  let w = CP.w;
  if (e < d * r) {
    let i = e / r;
    let q = e % r;
    // j = (c0 + cc − i) mod d, stepping by one with cc.
    var j = (CP.c0 + d - i) % d;
    var sum = 0.0;
    for (var cc = 0u; cc < w; cc++) {
      sum += Cs[i * w + cc] * Ca[q * d + j];
      j = select(j + 1u, 0u, j + 1u == d);
    }
    Cdb[e] = select(Cdb[e], 0.0, CP.first == 1u) + sum;
  } else if (e < 2u * d * r) {
    let e2 = e - d * r;
    let q = e2 / d;
    let jj = e2 % d;
    // i = (c0 + cc − j) mod d, stepping by one with cc.
    var i = (CP.c0 + d - jj) % d;
    var sum = 0.0;
    for (var cc = 0u; cc < w; cc++) {
      sum += Cb[i * r + q] * Cs[i * w + cc];
      i = select(i + 1u, 0u, i + 1u == d);
    }
    Cda[e2] = select(Cda[e2], 0.0, CP.first == 1u) + sum;
  }
}
