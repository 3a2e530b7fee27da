// Tiled matrix multiply for the frozen-weight and weight-gradient products.
//
//   C[M, N] = alpha * op(A) op(B) + alpha2 * op(A2) op(B2) + beta * C
//
// op(A) is A [M, K] or, with TRANS_A, A stored [K, M]; op(B) is B [K, N] or, with TRANS_B,
// B stored [N, K]. The second product (SECOND) shares the transposes and has its own depth K2:
// it fuses a low-rank adapter term such as s * Z Bᵀ into the base product X W0ᵀ, so the layer
// output is written once.
//
// Every operand is read at an element offset with its own row stride rather than as a whole
// packed matrix: an operand larger than one storage binding (maxStorageBufferBindingSize) is cut
// by the host into blocks of rows, each bound as a buffer range whose aligned start leaves a
// remainder, and the blocks of the other operands and of C then sit inside larger matrices.
//
// Each invocation owns a TM x TN block of C in registers. `main` stages BK-deep slices of A and B
// in workgroup memory (one barrier pair per slice: good where barriers are cheap, as on GPUs);
// `direct` and `direct4` (below) read them straight from memory.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override SECOND: bool = false;
override WG_M: u32 = 8;   // invocations along M
override WG_N: u32 = 8;   // invocations along N
const TM: u32 = 4u;
const TN: u32 = 4u;
const BK: u32 = 16u;
override BM: u32 = WG_M * TM;
override BN: u32 = WG_N * TN;

//#include _matmul-common

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;

var<workgroup> As: array<f32, BK * BM>;
var<workgroup> Bs: array<f32, BK * BN>;

fn a_at(i: u32, k: u32) -> f32 {
  if (TRANS_A) { return A[P.off_a + k * P.lda + i]; }
  return A[P.off_a + i * P.lda + k];
}
fn b_at(k: u32, j: u32) -> f32 {
  if (TRANS_B) { return B[P.off_b + j * P.ldb + k]; }
  return B[P.off_b + k * P.ldb + j];
}

//#each ENTRY=main; A_AT=a_at; B_AT=b_at | ENTRY=main_qa; A_AT=qa_at; B_AT=b_at | ENTRY=main_qb; A_AT=a_at; B_AT=qb_at
@compute @workgroup_size(WG_N, WG_M)
fn $ENTRY(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let origin = tile_origin(wid, nwg, BM, BN);
  if (origin.x == NO_TILE) { return; }
  let tile_m0 = origin.x;
  let tile_n0 = origin.y;
  let threads = WG_M * WG_N;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < P.K; k0 += BK) {
    for (var e = lidx; e < BK * BM; e += threads) {
      let kk = e / BM;
      let ii = e % BM;
      let i = tile_m0 + ii;
      let k = k0 + kk;
      As[e] = select(0.0, $A_AT(i, k), i < P.M && k < P.K);
    }
    for (var e = lidx; e < BK * BN; e += threads) {
      let kk = e / BN;
      let jj = e % BN;
      let j = tile_n0 + jj;
      let k = k0 + kk;
      Bs[e] = select(0.0, $B_AT(k, j), j < P.N && k < P.K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < TM; i++) { a[i] = As[kk * BM + lid.y * TM + i]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[kk * BN + lid.x * TN + j]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i * TN + j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  for (var e = 0u; e < 16u; e++) { acc[e] *= P.alpha; }
  let row0 = tile_m0 + lid.y * TM;
  let col0 = tile_n0 + lid.x * TN;
  if (SECOND) { add_second(row0, col0, &acc); }
  store(row0, col0, &acc);
}
//#end

// `direct` and `direct4` read A and B from memory with no workgroup memory and no barriers (good
// on lavapipe, where a barrier splits the workgroup loop and the CPU caches do the staging). They
// differ only in how the 4×4 block's products are read, so the entry point is written once and
// emitted twice: `direct` with scalar loads (products_scalar), `direct4` with 16-byte loads
// (products_vec4).

// alpha · op(A) op(B) for the TM × TN block at (row0, col0), one load per operand element (the
// packed twins decode a value per load: any size, offset and stride).
//#each NAME=products_scalar; A_AT=a_at; B_AT=b_at | NAME=products_qa; A_AT=qa_at; B_AT=b_at | NAME=products_qb; A_AT=a_at; B_AT=qb_at
fn $NAME(row0: u32, col0: u32) -> array<f32, 16> {
  var acc: array<f32, 16>;
  for (var k = 0u; k < P.K; k++) {
    var a: array<f32, 4>;
    var b: array<f32, 4>;
    for (var i = 0u; i < TM; i++) { a[i] = select(0.0, $A_AT(row0 + i, k), row0 + i < P.M); }
    for (var j = 0u; j < TN; j++) { b[j] = select(0.0, $B_AT(k, col0 + j), col0 + j < P.N); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) { acc[i * TN + j] += a[i] * b[j]; }
    }
  }
  for (var e = 0u; e < 16u; e++) { acc[e] *= P.alpha; }
  return acc;
}
//#end

// The same block with 16-byte loads. On lavapipe every storage load is costly whatever its width
// (a per-lane loop with bounds checks), so reading four floats per load cuts the loads per fused
// multiply-add by four. A and B are viewed as vec4 arrays along their contiguous dimension:
// X W0ᵀ (NT) reads both along k, G W0 (NN) reads A along k and B along n, Gᵀ Z (TN) reads both
// along the output dimensions. The host uses it only when those dimensions, the row strides and
// the offsets are multiples of 4.
@group(0) @binding(1) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B4: array<vec4<f32>>;

fn products_vec4(row0: u32, col0: u32) -> array<f32, 16> {
  var acc: array<vec4<f32>, 4>;  // acc[i][j]: row row0 + i, column col0 + j
  if (!TRANS_A && TRANS_B) {
    let K4 = P.K / 4u;
    // Rows past the edge are clamped to the last one: their products are computed and never stored.
    var a_row_start: array<u32, 4>;   // in vec4s
    var b_row_start: array<u32, 4>;   // in vec4s
    for (var i = 0u; i < 4u; i++) { a_row_start[i] = P.off_a / 4u + min(row0 + i, P.M - 1u) * (P.lda / 4u); }
    for (var j = 0u; j < 4u; j++) { b_row_start[j] = P.off_b / 4u + min(col0 + j, P.N - 1u) * (P.ldb / 4u); }
    for (var k4 = 0u; k4 < K4; k4++) {
      var b: array<vec4<f32>, 4>;
      for (var j = 0u; j < 4u; j++) { b[j] = B4[b_row_start[j] + k4]; }
      for (var i = 0u; i < 4u; i++) {
        let a = A4[a_row_start[i] + k4];
        acc[i] += vec4<f32>(dot(a, b[0]), dot(a, b[1]), dot(a, b[2]), dot(a, b[3]));
      }
    }
  } else if (!TRANS_A && !TRANS_B) {
    let K4 = P.K / 4u;
    let ldb4 = P.ldb / 4u;
    var a_row_start: array<u32, 4>;   // in vec4s
    for (var i = 0u; i < 4u; i++) { a_row_start[i] = P.off_a / 4u + min(row0 + i, P.M - 1u) * (P.lda / 4u); }
    let b_col4 = P.off_b / 4u + col0 / 4u;
    for (var k4 = 0u; k4 < K4; k4++) {
      var b: array<vec4<f32>, 4>;
      for (var kk = 0u; kk < 4u; kk++) { b[kk] = B4[(k4 * 4u + kk) * ldb4 + b_col4]; }
      for (var i = 0u; i < 4u; i++) {
        let a = A4[a_row_start[i] + k4];
        acc[i] += a.x * b[0] + a.y * b[1] + a.z * b[2] + a.w * b[3];
      }
    }
  } else if (TRANS_A && !TRANS_B) {
    let lda4 = P.lda / 4u;
    let ldb4 = P.ldb / 4u;
    let a_col4 = P.off_a / 4u + row0 / 4u;
    let b_col4 = P.off_b / 4u + col0 / 4u;
    for (var k = 0u; k < P.K; k++) {
      let a = A4[k * lda4 + a_col4];
      let b = B4[k * ldb4 + b_col4];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
  }
  var out: array<f32, 16>;
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) { out[i * 4u + j] = P.alpha * acc[i][j]; }
  }
  return out;
}

//#each ENTRY=direct; PRODUCTS=products_scalar | ENTRY=direct4; PRODUCTS=products_vec4 | ENTRY=direct_qa; PRODUCTS=products_qa | ENTRY=direct_qb; PRODUCTS=products_qb | ENTRY=direct_qb_f16; PRODUCTS=products_qb_f16 | ENTRY=direct_qb_nf4; PRODUCTS=products_qb_nf4
@compute @workgroup_size(WG_N, WG_M)
fn $ENTRY(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
  let origin = tile_origin(wid, nwg, BM, BN);
  if (origin.x == NO_TILE) { return; }
  let row0 = origin.x + lid.y * TM;
  let col0 = origin.y + lid.x * TN;
  if (row0 >= P.M || col0 >= P.N) { return; }
  var acc = $PRODUCTS(row0, col0);
  if (SECOND) { add_second(row0, col0, &acc); }
  store(row0, col0, &acc);
}
//#end

// `tiled4`: the GPU recipe of the fast public WebGPU matmuls (TF.js's matmul_packed, ONNX Runtime
// Web's, the "1 TFLOP/s" write-ups): workgroup tiles staged with 16-byte loads, and a register
// block large enough that each workgroup-memory load feeds several fused multiply-adds.
//
// 8×8 invocations each own an 8×8 block, so a workgroup covers 64×64 outputs, as `main` does on
// GPUs, but with 4 multiply-adds per workgroup-memory load instead of 2, and a quarter of the
// invocations to synchronise. A 128×128 tile would halve the traffic again but leave LoRA's
// products (T = 256–512 rows) with only 8–32 workgroups, too few to fill a GPU. BK = 32 doubles
// `main`'s slice depth, halving the barriers: two 32×64 f32 slices are 16 KiB, exactly the
// maxComputeWorkgroupStorageSize every WebGPU device offers.
//
// The host uses it only when the contiguous dimension of each operand (K for A, M for Aᵀ, N for
// B, K for Bᵀ), the row strides and the offsets are multiples of 4, so a 16-byte load lies wholly
// inside or wholly outside the matrix; otherwise it falls back to `main`. All four transpose
// combinations are served: a load along the tile's contiguous workgroup dimension is stored as is,
// one across it is scattered into four rows of the slice.
const T4: u32 = 8u;        // outputs per invocation along M and along N
const T4_WG: u32 = 8u;     // invocations along M and along N
const T4_BM: u32 = 64u;    // T4_WG * T4: tile rows (and columns), in elements
const T4_BK: u32 = 32u;    // slice depth, in elements
const T4_ROW4: u32 = 16u;  // T4_BM / 4: one slice row, in vec4s

var<workgroup> As4: array<vec4<f32>, 512>;  // [T4_BK][T4_BM / 4]: op(A)[tile_m0 + i, k0 + kk]
var<workgroup> Bs4: array<vec4<f32>, 512>;  // [T4_BK][T4_BM / 4]: op(B)[k0 + kk, tile_n0 + j]

// Stages the k0 slice of both operands; every invocation makes 8 loads of each.
fn stage_tiled4(lidx: u32, tile_m0: u32, tile_n0: u32, k0: u32) {
  for (var e = lidx; e < 512u; e += T4_WG * T4_WG) {
    if (TRANS_A) {
      // Aᵀ is stored [K, M]: 16 vec4s along M per k.
      let kk = e / T4_ROW4;
      let i4 = e % T4_ROW4;
      var v = vec4<f32>(0.0);
      if (k0 + kk < P.K && tile_m0 + i4 * 4u < P.M) { v = A4[(P.off_a + (k0 + kk) * P.lda + tile_m0) / 4u + i4]; }
      As4[kk * T4_ROW4 + i4] = v;
    } else {
      // A is stored [M, K]: 8 vec4s along K per row, each scattered over four slice rows.
      let ii = e / (T4_BK / 4u);
      let k4 = e % (T4_BK / 4u);
      var v = vec4<f32>(0.0);
      if (tile_m0 + ii < P.M && k0 + k4 * 4u < P.K) { v = A4[(P.off_a + (tile_m0 + ii) * P.lda + k0) / 4u + k4]; }
      for (var c = 0u; c < 4u; c++) { As4[(k4 * 4u + c) * T4_ROW4 + ii / 4u][ii % 4u] = v[c]; }
    }
    if (TRANS_B) {
      // Bᵀ is stored [N, K]: as A above.
      let jj = e / (T4_BK / 4u);
      let k4 = e % (T4_BK / 4u);
      var v = vec4<f32>(0.0);
      if (tile_n0 + jj < P.N && k0 + k4 * 4u < P.K) { v = B4[(P.off_b + (tile_n0 + jj) * P.ldb + k0) / 4u + k4]; }
      for (var c = 0u; c < 4u; c++) { Bs4[(k4 * 4u + c) * T4_ROW4 + jj / 4u][jj % 4u] = v[c]; }
    } else {
      let kk = e / T4_ROW4;
      let j4 = e % T4_ROW4;
      var v = vec4<f32>(0.0);
      if (k0 + kk < P.K && tile_n0 + j4 * 4u < P.N) { v = B4[(P.off_b + (k0 + kk) * P.ldb + tile_n0) / 4u + j4]; }
      Bs4[kk * T4_ROW4 + j4] = v;
    }
  }
}

@compute @workgroup_size(8, 8)
fn tiled4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let origin = tile_origin(wid, nwg, T4_BM, T4_BM);
  if (origin.x == NO_TILE) { return; }
  let tile_m0 = origin.x;
  let tile_n0 = origin.y;
  // acc[i * 2 + h]: row i of the block, columns 4h … 4h + 3.
  var acc: array<vec4<f32>, 16>;
  for (var k0 = 0u; k0 < P.K; k0 += T4_BK) {
    stage_tiled4(lidx, tile_m0, tile_n0, k0);
    workgroupBarrier();
    for (var kk = 0u; kk < T4_BK; kk++) {
      let a0 = As4[kk * T4_ROW4 + lid.y * 2u];
      let a1 = As4[kk * T4_ROW4 + lid.y * 2u + 1u];
      let b0 = Bs4[kk * T4_ROW4 + lid.x * 2u];
      let b1 = Bs4[kk * T4_ROW4 + lid.x * 2u + 1u];
      for (var i = 0u; i < 4u; i++) {
        acc[i * 2u] += a0[i] * b0;
        acc[i * 2u + 1u] += a0[i] * b1;
        acc[(i + 4u) * 2u] += a1[i] * b0;
        acc[(i + 4u) * 2u + 1u] += a1[i] * b1;
      }
    }
    workgroupBarrier();
  }
  // The epilogue is `main`'s, run on the four 4×4 quarters of the block, so the second product,
  // alpha/beta and the store are one code path for every variant.
  let row0 = tile_m0 + lid.y * T4;
  let col0 = tile_n0 + lid.x * T4;
  for (var qi = 0u; qi < 2u; qi++) {
    for (var qj = 0u; qj < 2u; qj++) {
      let r0 = row0 + qi * 4u;
      let c0 = col0 + qj * 4u;
      if (r0 >= P.M || c0 >= P.N) { continue; }
      var q: array<f32, 16>;
      for (var i = 0u; i < 4u; i++) {
        let v = acc[(qi * 4u + i) * 2u + qj];
        for (var j = 0u; j < 4u; j++) { q[i * 4u + j] = P.alpha * v[j]; }
      }
      if (SECOND) { add_second(r0, c0, &q); }
      store(r0, c0, &q);
    }
  }
}

// Base weights in f16 or NF4 (src/base.ts): one operand, A or B, is a packed u32 tensor holding
// the logical row-major matrix the f32 operand would be, and every product decodes it in
// registers and accumulates in f32, so W0 is never widened in memory. The `_qa` / `_qb` entries
// read A / B packed, FORMAT says how. Element e of the packed binding (op offsets and strides
// count values, exactly as for f32):
//   f16: word e / 2, low half for even e, through unpack2x16float (core WGSL: no shader-f16);
//   nf4: word e / 8, byte (e / 2) % 4, high nibble for even e; value = NF4[code] · absmax of
//        block (q_base + e) / Q_BLOCK of the whole weight.
override FORMAT: u32 = 1u;    // 1: f16, 2: nf4
override Q_BLOCK: u32 = 64u;  // NF4 values per absmax, a power of two (the division is a shift)

@group(0) @binding(1) var<storage, read> AQ: array<u32>;
@group(0) @binding(2) var<storage, read> BQ: array<u32>;
@group(0) @binding(2) var<storage, read> BQ2: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> QS: array<f32>;  // NF4 absmax; the f16 entries bind a placeholder

var<private> NF4: array<f32, 16> = array<f32, 16>(
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0);

// Bits of value e % 8 within its word: byte (e % 8) / 2, high nibble (+4) for even e.
fn nf4_shift(e: u32) -> u32 { return ((e & 7u) ^ 1u) * 4u; }

//#each S=a; Q=AQ | S=b; Q=BQ
fn decode_$S(e: u32) -> f32 {
  if (FORMAT == 2u) {
    let code = ($Q[e >> 3u] >> nf4_shift(e)) & 15u;
    return NF4[code] * QS[(P.q_base + e) / Q_BLOCK];
  }
  let pair = unpack2x16float($Q[e >> 1u]);
  return select(pair.x, pair.y, (e & 1u) == 1u);
}
//#end

fn qa_at(i: u32, k: u32) -> f32 {
  if (TRANS_A) { return decode_a(P.off_a + k * P.lda + i); }
  return decode_a(P.off_a + i * P.lda + k);
}
fn qb_at(k: u32, j: u32) -> f32 {
  if (TRANS_B) { return decode_b(P.off_b + j * P.ldb + k); }
  return decode_b(P.off_b + k * P.ldb + j);
}

// Four / eight consecutive values of packed B from element e (a multiple of 4 / 8). An NF4 word
// never straddles two blocks (blocks are ≥ 32 values and q_base is a multiple of 8), so one
// absmax load scales the whole word.
fn b4_f16(e: u32) -> vec4<f32> {
  let w = BQ2[e >> 2u];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn b8_f16(e: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(b4_f16(e), b4_f16(e + 4u));
}
fn b4_nf4(e: u32) -> vec4<f32> {
  let h = BQ[e >> 3u] >> ((e & 4u) * 4u);
  let s = QS[(P.q_base + e) / Q_BLOCK];
  return s * vec4<f32>(NF4[(h >> 4u) & 15u], NF4[h & 15u], NF4[(h >> 12u) & 15u], NF4[(h >> 8u) & 15u]);
}
fn b8_nf4(e: u32) -> array<vec4<f32>, 2> {
  let w = BQ[e >> 3u];
  let s = QS[(P.q_base + e) / Q_BLOCK];
  return array<vec4<f32>, 2>(
    s * vec4<f32>(NF4[(w >> 4u) & 15u], NF4[w & 15u], NF4[(w >> 12u) & 15u], NF4[(w >> 8u) & 15u]),
    s * vec4<f32>(NF4[(w >> 20u) & 15u], NF4[(w >> 16u) & 15u], NF4[w >> 28u], NF4[(w >> 24u) & 15u]));
}

// products_vec4 with B packed, for the two products a layer makes with W0 as B:
//   Y = X W0ᵀ (NT): W0's rows run along K, so each step reads eight values of each of the four
//     rows (one NF4 word, two f16 word pairs) and two vec4s of each row of A;
//   dX = G W0 (NN): W0's rows run along N, so each k reads the invocation's four columns (half
//     an NF4 word, one f16 word pair), decoded once for the four rows of A.
// The host uses it only where those reads are whole: NT needs K, B's offset and stride multiples
// of 8; NN needs N, K and B's offset and stride multiples of 4; A is read as for direct4.
//#each FMT=f16 | FMT=nf4
fn products_qb_$FMT(row0: u32, col0: u32) -> array<f32, 16> {
  var acc: array<vec4<f32>, 4>;  // acc[i][j]: row row0 + i, column col0 + j
  var a_row_start: array<u32, 4>;   // in vec4s
  for (var i = 0u; i < 4u; i++) { a_row_start[i] = P.off_a / 4u + min(row0 + i, P.M - 1u) * (P.lda / 4u); }
  if (!TRANS_A && TRANS_B) {
    var b_row_start: array<u32, 4>;   // in elements
    for (var j = 0u; j < 4u; j++) { b_row_start[j] = P.off_b + min(col0 + j, P.N - 1u) * P.ldb; }
    for (var k8 = 0u; k8 < P.K / 8u; k8++) {
      var b: array<array<vec4<f32>, 2>, 4>;
      for (var j = 0u; j < 4u; j++) { b[j] = b8_$FMT(b_row_start[j] + k8 * 8u); }
      for (var i = 0u; i < 4u; i++) {
        let a0 = A4[a_row_start[i] + k8 * 2u];
        let a1 = A4[a_row_start[i] + k8 * 2u + 1u];
        acc[i] += vec4<f32>(dot(a0, b[0][0]) + dot(a1, b[0][1]), dot(a0, b[1][0]) + dot(a1, b[1][1]),
                            dot(a0, b[2][0]) + dot(a1, b[2][1]), dot(a0, b[3][0]) + dot(a1, b[3][1]));
      }
    }
  } else if (!TRANS_A && !TRANS_B) {
    let b_col = P.off_b + col0;
    for (var k4 = 0u; k4 < P.K / 4u; k4++) {
      var b: array<vec4<f32>, 4>;
      for (var kk = 0u; kk < 4u; kk++) { b[kk] = b4_$FMT(b_col + (k4 * 4u + kk) * P.ldb); }
      for (var i = 0u; i < 4u; i++) {
        let a = A4[a_row_start[i] + k4];
        acc[i] += a.x * b[0] + a.y * b[1] + a.z * b[2] + a.w * b[3];
      }
    }
  }
  var out: array<f32, 16>;
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) { out[i * 4u + j] = P.alpha * acc[i][j]; }
  }
  return out;
}
//#end
