enable subgroups;

// `subgroup`: a matmul with no workgroup memory and no barriers, in which the invocations of a
// subgroup share A through register shuffles ('subgroup' in ctx.tuning, on adapters that offer the
// `subgroups` feature; src/ops/matmul.ts falls back to `main` elsewhere). A separate module,
// because a device without the feature rejects the `enable` above.
//
//   C[M, N] = alpha * op(A) op(B) + alpha2 * op(A2) op(B2) + beta * C
//
// with the Params struct, bindings and transposes of `main` in matmul.wgsl; the epilogue helpers
// are repeated here, each .wgsl file being its own module.
//
// A workgroup of 64 invocations covers TM = 8 rows and 256 columns: invocation t owns the 8 × 4
// block at columns 4t … 4t + 3, so every invocation of a subgroup needs the same A values. Instead
// of staging them in workgroup memory, each lane loads a different stretch of k (lane l of an
// n-lane subgroup: k0 + 4l … k0 + 4l + 3, as 8 vec4s: one per row or, for Aᵀ, one per k and row quad),
// and the subgroup then walks its lanes with subgroupShuffle, so A is read from memory once per
// subgroup and handed around in registers. B is read straight from memory in 16-byte loads, the
// lanes of a subgroup reading neighbouring vec4s of one row of B (or, for Bᵀ, one vec4 of k from
// each of four rows): the caches do the staging, as in `direct`.
//
// Nothing depends on the subgroup size: a round covers 4·n values of k, where n is the number of
// lanes present (subgroupAdd(1)), so sizes from 4 to 128 and partly filled subgroups all work; an
// NVIDIA subgroup of 32 walks 128 values of k per round. The lanes are assumed numbered 0 … n-1,
// which every driver does for the subgroups of a one-dimensional workgroup. Invocations past N
// still load (clamped) and shuffle, so that every lane a shuffle names is present.
//
// The host uses it only when each operand's contiguous dimension (K for A, M for Aᵀ, N for B, K for
// Bᵀ), row stride and offset are multiples of 4; otherwise it falls back to `main`.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override SECOND: bool = false;
const TM: u32 = 8u;    // rows per workgroup (and per invocation)
const WG: u32 = 64u;   // invocations per workgroup
const BN: u32 = 256u;  // columns per workgroup: WG vec4s

struct MatmulParams {
  M: u32,         // rows of C and of op(A), in elements
  N: u32,         // columns of C and of op(B), in elements
  K: u32,         // depth of the first product, in elements
  K2: u32,        // depth of the second product, in elements (unused without SECOND)
  alpha: f32,     // multiplier of the first product (dimensionless)
  alpha2: f32,    // multiplier of the second product (dimensionless)
  beta: f32,      // multiplier of C's old values; 0 skips reading C, so NaNs there vanish
  tiles_n: u32,   // workgroup tiles along N = ceil(N / BN), in tiles
  lda: u32,       // row stride of A as stored ([M, K], or [K, M] with TRANS_A), in elements
  ldb: u32,       // row stride of B as stored ([K, N], or [N, K] with TRANS_B), in elements
  ldc: u32,       // row stride of C, in elements
  lda2: u32,      // row stride of A2 as stored, in elements
  ldb2: u32,      // row stride of B2 as stored, in elements
  off_a: u32,     // index of op(A)[0, 0] in the A binding, in elements
  off_b: u32,     // index of op(B)[0, 0] in the B binding, in elements
  off_c: u32,     // index of C[0, 0] in the C binding, in elements
  off_a2: u32,    // index of op(A2)[0, 0] in the A2 binding, in elements
  off_b2: u32,    // index of op(B2)[0, 0] in the B2 binding, in elements
}

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(1) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> A2: array<f32>;
@group(0) @binding(5) var<storage, read> B2: array<f32>;

fn a2_at(i: u32, k: u32) -> f32 {
  if (TRANS_A) { return A2[P.off_a2 + k * P.lda2 + i]; }
  return A2[P.off_a2 + i * P.lda2 + k];
}
fn b2_at(k: u32, j: u32) -> f32 {
  if (TRANS_B) { return B2[P.off_b2 + j * P.ldb2 + k]; }
  return B2[P.off_b2 + k * P.ldb2 + j];
}

// The epilogue of `main`, for one 4×4 block.
fn store(row0: u32, col0: u32, acc: ptr<function, array<f32, 16>>) {
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= P.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= P.N) { break; }
      let at = P.off_c + row * P.ldc + col;
      var v = (*acc)[i * 4u + j];
      if (P.beta != 0.0) { v += P.beta * C[at]; }
      C[at] = v;
    }
  }
}

fn add_second(row0: u32, col0: u32, acc: ptr<function, array<f32, 16>>) {
  for (var k = 0u; k < P.K2; k++) {
    var a: array<f32, 4>;
    var b: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) { a[i] = select(0.0, a2_at(row0 + i, k), row0 + i < P.M); }
    for (var j = 0u; j < 4u; j++) { b[j] = select(0.0, b2_at(k, col0 + j), col0 + j < P.N); }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { (*acc)[i * 4u + j] += P.alpha2 * a[i] * b[j]; }
    }
  }
}

@compute @workgroup_size(64)
fn subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lidx: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let tile = linear_workgroup(wid, nwg);
  let tiles_m = (P.M + TM - 1u) / TM;
  if (tile >= tiles_m * P.tiles_n) { return; }
  let row0 = (tile / P.tiles_n) * TM;
  let col0 = (tile % P.tiles_n) * BN + lidx * 4u;
  let n = subgroupAdd(1u);
  // Columns past the edge read the last vec4 of the row: computed, shuffled, never stored.
  let col = min(col0, ((P.N - 1u) / 4u) * 4u);
  var acc: array<vec4<f32>, 8>;  // acc[i]: row row0 + i, columns col0 … col0 + 3
  for (var k0 = 0u; k0 < P.K; k0 += 4u * n) {
    // This lane's stretch of A: mine[i] = A[row0 + i, k .. k + 3] or, for Aᵀ,
    // mine[2c + q] = Aᵀ[k + c, row0 + 4q .. row0 + 4q + 3].
    let k = k0 + 4u * lane;
    // Initialised explicitly: the masked loads below leave entries unwritten, and an
    // uninitialised `var` in a loop body kept the previous round's values on lavapipe.
    var mine = array<vec4<f32>, 8>();
    if (TRANS_A) {
      for (var c = 0u; c < 4u; c++) {
        for (var q = 0u; q < 2u; q++) {
          let i = row0 + 4u * q;
          if (k + c < P.K && i < P.M) { mine[2u * c + q] = A4[(P.off_a + (k + c) * P.lda + i) / 4u]; }
        }
      }
    } else {
      for (var i = 0u; i < TM; i++) {
        if (k < P.K && row0 + i < P.M) { mine[i] = A4[(P.off_a + (row0 + i) * P.lda + k) / 4u]; }
      }
    }
    let lanes = min(n, (P.K - k0 + 3u) / 4u);
    for (var s = 0u; s < lanes; s++) {
      let ks = k0 + 4u * s;
      // a[i] = A[row0 + i, ks .. ks + 3], from lane s.
      var a: array<vec4<f32>, 8>;
      if (TRANS_A) {
        var t: array<vec4<f32>, 8>;
        for (var e = 0u; e < 8u; e++) { t[e] = subgroupShuffle(mine[e], s); }
        for (var i = 0u; i < TM; i++) {
          let q = i / 4u;
          let r = i % 4u;
          a[i] = vec4<f32>(t[q][r], t[2u + q][r], t[4u + q][r], t[6u + q][r]);
        }
      } else {
        for (var i = 0u; i < TM; i++) { a[i] = subgroupShuffle(mine[i], s); }
      }
      if (TRANS_B) {
        // Bᵀ is stored [N, K]: bt[j] = B[ks .. ks + 3, col + j].
        var bt = array<vec4<f32>, 4>();
        for (var j = 0u; j < 4u; j++) {
          let cj = min(col + j, P.N - 1u);
          if (ks < P.K) { bt[j] = B4[(P.off_b + cj * P.ldb + ks) / 4u]; }
        }
        for (var i = 0u; i < TM; i++) {
          acc[i] += vec4<f32>(dot(a[i], bt[0]), dot(a[i], bt[1]), dot(a[i], bt[2]), dot(a[i], bt[3]));
        }
      } else {
        var b = array<vec4<f32>, 4>();
        for (var c = 0u; c < 4u; c++) {
          if (ks + c < P.K) { b[c] = B4[(P.off_b + (ks + c) * P.ldb + col) / 4u]; }
        }
        for (var i = 0u; i < TM; i++) {
          acc[i] += a[i].x * b[0] + a[i].y * b[1] + a[i].z * b[2] + a[i].w * b[3];
        }
      }
    }
  }
  if (col0 >= P.N) { return; }
  for (var q = 0u; q < 2u; q++) {
    let r0 = row0 + q * 4u;
    if (r0 >= P.M) { break; }
    var out: array<f32, 16>;
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { out[i * 4u + j] = P.alpha * acc[q * 4u + i][j]; }
    }
    if (SECOND) { add_second(r0, col0, &out); }
    store(r0, col0, &out);
  }
}
