// `tiled_vec4`: a register-blocked GPU matmul in the manner of TF.js's MatMulPackedVec4 program,
// for the f32 products of src/ops/matmul.ts ('tiled-vec4' and 'tiled-vec4-128' in ctx.tuning).
//
//   C[M, N] = alpha * op(A) op(B) + alpha2 * op(A2) op(B2) + beta * C
//
// with the same Params struct, bindings and transposes as `main` in matmul.wgsl (read that file's
// header for the operand layout); the struct, C's and the second product's bindings and the
// epilogue come from the fragment `_matmul-common` that all three files include.
//
// 16×16 invocations; each owns TM rows × one vec4 of columns, so a workgroup covers (16·TM) × 64
// outputs: TM = 4 gives 64×64, TM = 8 gives 128×64. Both operands are staged k-major in workgroup
// memory as vec4s along the output dimension, so the inner loop is, per k, one vec4 of B shared by
// the 16 invocations of a row and TM / 4 vec4s of A shared by all 16 invocations of a column: TM·4
// fused multiply-adds for 1 + TM / 4 workgroup loads. Global loads are 16 bytes; an operand stored
// along k (A untransposed, B transposed) is scattered into four slice rows as it is staged, and
// each slice row is padded by one vec4 so that the scatter's rows do not all start on one bank.
//
// The next slice is fetched into registers before the current one is multiplied, so its global
// latency hides behind the arithmetic (the register prefetch of the "fast WebGPU matmul"
// write-ups); the barrier pair per slice stays, since the slice buffer is single.
//
// The host uses it only when each operand's contiguous dimension (K for A, M for Aᵀ, N for B, K for
// Bᵀ), row stride and offset are multiples of 4, so a vec4 lies wholly inside or outside the
// matrix; otherwise it falls back to `main`.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override SECOND: bool = false;
override TM: u32 = 4u;            // rows per invocation: 4 or 8
const WG: u32 = 16u;              // invocations along M and along N
const BN: u32 = 64u;              // tile columns: WG vec4s
const BK: u32 = 16u;              // slice depth, in elements
override BM: u32 = WG * TM;       // tile rows
override SA: u32 = BM / 4u + 1u;  // one A slice row in vec4s, padded
const SB: u32 = BN / 4u + 1u;     // one B slice row in vec4s, padded

//#include _matmul-common

@group(0) @binding(1) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B4: array<vec4<f32>>;

var<workgroup> As: array<vec4<f32>, BK * SA>;  // [kk][i / 4]: op(A)[tile_m0 + i, k0 + kk]
var<workgroup> Bs: array<vec4<f32>, BK * SB>;  // [kk][j / 4]: op(B)[k0 + kk, tile_n0 + j]

// The vec4 of op(A)'s slice that staging element e (of BM·BK / 4) loads; zero past the edges.
fn fetch_a(e: u32, tile_m0: u32, k0: u32) -> vec4<f32> {
  if (TRANS_A) {
    let kk = e / (BM / 4u);
    let i = tile_m0 + (e % (BM / 4u)) * 4u;
    if (k0 + kk < P.K && i < P.M) { return A4[(P.off_a + (k0 + kk) * P.lda + i) / 4u]; }
  } else {
    let i = tile_m0 + e / (BK / 4u);
    let k = k0 + (e % (BK / 4u)) * 4u;
    if (i < P.M && k < P.K) { return A4[(P.off_a + i * P.lda + k) / 4u]; }
  }
  return vec4<f32>(0.0);
}

fn put_a(e: u32, v: vec4<f32>) {
  if (TRANS_A) {
    As[(e / (BM / 4u)) * SA + e % (BM / 4u)] = v;
  } else {
    let ii = e / (BK / 4u);
    let kk = (e % (BK / 4u)) * 4u;
    for (var c = 0u; c < 4u; c++) { As[(kk + c) * SA + ii / 4u][ii % 4u] = v[c]; }
  }
}

// The same for op(B), staging element e of BK·BN / 4 = 256, one per invocation.
fn fetch_b(e: u32, tile_n0: u32, k0: u32) -> vec4<f32> {
  if (TRANS_B) {
    let j = tile_n0 + e / (BK / 4u);
    let k = k0 + (e % (BK / 4u)) * 4u;
    if (j < P.N && k < P.K) { return B4[(P.off_b + j * P.ldb + k) / 4u]; }
  } else {
    let kk = e / (BN / 4u);
    let j = tile_n0 + (e % (BN / 4u)) * 4u;
    if (k0 + kk < P.K && j < P.N) { return B4[(P.off_b + (k0 + kk) * P.ldb + j) / 4u]; }
  }
  return vec4<f32>(0.0);
}

fn put_b(e: u32, v: vec4<f32>) {
  if (TRANS_B) {
    let jj = e / (BK / 4u);
    let kk = (e % (BK / 4u)) * 4u;
    for (var c = 0u; c < 4u; c++) { Bs[(kk + c) * SB + jj / 4u][jj % 4u] = v[c]; }
  } else {
    Bs[(e / (BN / 4u)) * SB + e % (BN / 4u)] = v;
  }
}

@compute @workgroup_size(16, 16)
fn tiled_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let origin = tile_origin(wid, nwg, BM, BN);
  if (origin.x == NO_TILE) { return; }
  let tile_m0 = origin.x;
  let tile_n0 = origin.y;
  let a_per = TM / 4u;  // A staging vec4s per invocation: BM·BK / 4 / 256
  var acc: array<vec4<f32>, 8>;  // acc[i]: row tile_m0 + lid.y·TM + i, its four columns
  var ra: array<vec4<f32>, 2>;
  var rb = fetch_b(lidx, tile_n0, 0u);
  for (var s = 0u; s < a_per; s++) { ra[s] = fetch_a(lidx + s * 256u, tile_m0, 0u); }
  for (var k0 = 0u; k0 < P.K; k0 += BK) {
    for (var s = 0u; s < a_per; s++) { put_a(lidx + s * 256u, ra[s]); }
    put_b(lidx, rb);
    workgroupBarrier();
    if (k0 + BK < P.K) {
      rb = fetch_b(lidx, tile_n0, k0 + BK);
      for (var s = 0u; s < a_per; s++) { ra[s] = fetch_a(lidx + s * 256u, tile_m0, k0 + BK); }
    }
    for (var kk = 0u; kk < BK; kk++) {
      let b = Bs[kk * SB + lid.x];
      for (var q = 0u; q < a_per; q++) {
        let a = As[kk * SA + lid.y * a_per + q];
        acc[q * 4u] += a.x * b;
        acc[q * 4u + 1u] += a.y * b;
        acc[q * 4u + 2u] += a.z * b;
        acc[q * 4u + 3u] += a.w * b;
      }
    }
    workgroupBarrier();
  }
  let col0 = tile_n0 + lid.x * 4u;
  for (var q = 0u; q < a_per; q++) {
    let row0 = tile_m0 + lid.y * TM + q * 4u;
    if (row0 >= P.M || col0 >= P.N) { continue; }
    var out: array<f32, 16>;
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { out[i * 4u + j] = P.alpha * acc[q * 4u + i][j]; }
    }
    if (SECOND) { add_second(row0, col0, &out); }
    store(row0, col0, &out);
  }
}
