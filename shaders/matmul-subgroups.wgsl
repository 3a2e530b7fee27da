enable subgroups;

// `subgroup`: a matmul with no workgroup memory and no barriers, in which the invocations of a
// subgroup share A through register shuffles ('subgroup' in ctx.tuning, on adapters that offer the
// `subgroups` feature; src/ops/matmul.ts falls back to `main` elsewhere). A separate module,
// because a device without the feature rejects the `enable` above.
//
//   C[M, N] = alpha * op(A) op(B) + alpha2 * op(A2) op(B2) + beta * C
//
// with the Params struct, bindings and transposes of `main` in matmul.wgsl (the struct, C's and
// the second product's bindings and the epilogue from the fragment `_matmul-common`).
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

//#include _matmul-common

@group(0) @binding(1) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lidx: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let origin = tile_origin(wid, nwg, TM, BN);
  if (origin.x == NO_TILE) { return; }
  let row0 = origin.x;
  let col0 = origin.y + lidx * 4u;
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
