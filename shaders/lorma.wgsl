// LoRMA_π kernels (docs/lorma.md; the math in docs/math.md): the multiplicative matrix M = s·π(B A) is applied,
// differentiated and merged without ever being stored. B is [d, r], A is [r, d], P = B A and
//
//   M'[i, c] = π(P)[i, c] = P[i, (c − i) mod d]      (row i of P rotated right by i)
//
// so M = s·M'. Two ways to apply it (src/methods/lorma/kernels.ts, lormaPiPath):
//
// Tiles (any d; also every merge): every element of M' is generated where it is used, from one row
// of B and one column of A (r multiply-adds); the extra memory is a d×w strip (w ≤ 64, w < d),
// never d×d.
//
// `mix`    out = s·op(In)·M'ᵀ (TRANS, the forward) or s·op(In)·M' (the backward dIn), plus beta·out.
//          A matmul whose right operand is a BK×BN tile of M' generated into workgroup memory once
//          per k-slice and shared by the BM tokens of the workgroup (generation costs r/BM of the
//          product). IN_T / OUT_T read In and write out transposed, for the merge W' = M·W0.
// `strip`, `contract`   dB = dP Aᵀ and dA = Bᵀ dP, with dP[i, j] = s·Σ_t dOut[t, i]·In[t, (i + j) mod d]
//          = dM'[i, (i + j) mod d], dM' = s·dOutᵀ In: dM' is made w ≤ 64 columns at a time by the
//          package's matmul and folded into dB and dA at once (2·d·r·w multiply-adds per strip).
//
// FFT (d a power of two): the `fft_*` entries at the end, the pointwise steps between the batched
// transforms of shaders/fft.wgsl; O(T·r·d log d) work, O(T·r·d) extra memory (the spectra).

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
  rows: u32,        // rows of In and out: tokens (or W0's columns / rows in the merge)
  d: u32,           // size of M (columns of In and out)
  r: u32,           // rank
  col_tiles: u32,   // ⌈d / BN⌉ tiles across out's columns
  scale: f32,       // s
  beta: f32,        // out = s·(product) + beta·out
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
  if (IN_T) { return In[k * MP.rows + t]; }
  return In[t * MP.d + k];
}

@compute @workgroup_size(WG_N, WG_M)
fn mix(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tile = linear_workgroup(wid, nwg);
  let tiles_m = (MP.rows + BM - 1u) / BM;
  if (tile >= tiles_m * MP.col_tiles) { return; }
  let tile_m0 = (tile / MP.col_tiles) * BM;
  let tile_n0 = (tile % MP.col_tiles) * BN;
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
      for (var i = 0u; i < TM; i++) { a[i] = select(0.0, in_at(row0 + i, k0 + kk), row0 + i < MP.rows); }
      for (var j = 0u; j < TN; j++) { b[j] = Ms[kk * BN + lid.x + WG_N * j]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i * TN + j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let row = row0 + i;
    if (row >= MP.rows) { break; }
    for (var j = 0u; j < TN; j++) {
      let col = col0 + WG_N * j;
      if (col >= MP.d) { break; }
      var idx = row * MP.d + col;
      if (OUT_T) { idx = col * MP.rows + row; }
      var v = MP.scale * acc[i * TN + j];
      if (MP.beta != 0.0) { v += MP.beta * Out[idx]; }
      Out[idx] = v;
    }
  }
}

// ---------------------------------------------------------------- dA, dB by column strips
//
// dP is never stored: a strip dM'[:, col0 : col0 + width] = s·dOutᵀ In[:, col0 : col0 + width]
// comes from the package's matmul (In's strip copied contiguous by `strip` first), and
// `contract` folds it into dB and dA: with c = col0 + cc and j = (c − i) mod d,
//   dB[i, q] += Σ_cc S[i, cc]·A[q, (c − i) mod d]
//   dA[q, j] += Σ_cc B[(c − j) mod d, q]·S[(c − j) mod d, cc]
// Strips run one after another, so each entry has one writer per dispatch.

// `strip` copies In's columns col0 .. col0 + width − 1 into a contiguous [tokens, width] matrix.
struct StripParams {
  tokens: u32,   // rows of In
  d: u32,        // columns of In
  col0: u32,     // first column of the strip
  width: u32,    // columns in this strip
}

@group(0) @binding(0) var<uniform> SP: StripParams;
@group(0) @binding(1) var<storage, read> strip_in: array<f32>;           // In [tokens, d]
@group(0) @binding(2) var<storage, read_write> strip_out: array<f32>;    // [tokens, width]

@compute @workgroup_size(64)
fn strip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * 64u + lidx;
  if (e >= SP.tokens * SP.width) { return; }
  let t = e / SP.width;
  strip_out[e] = strip_in[t * SP.d + SP.col0 + e % SP.width];
}

// `contract` folds the strip dM'[:, col0 .. col0 + width − 1] into dB and dA.
struct ContractParams {
  d: u32,          // size of M
  r: u32,          // rank
  col0: u32,       // first column of the strip
  width: u32,      // columns in this strip
  overwrite: u32,  // 1 (the first strip): dB, dA = the strip's share; 0: add to them
}

@group(0) @binding(0) var<uniform> CP: ContractParams;
@group(0) @binding(1) var<storage, read> ct_dm: array<f32>;          // dM' strip [d, width]
@group(0) @binding(2) var<storage, read> ct_b: array<f32>;           // B [d, r]
@group(0) @binding(3) var<storage, read> ct_a: array<f32>;           // A [r, d]
@group(0) @binding(4) var<storage, read_write> ct_db: array<f32>;    // dB [d, r]
@group(0) @binding(5) var<storage, read_write> ct_da: array<f32>;    // dA [r, d]

@compute @workgroup_size(64)
fn contract(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lidx: u32) {
  let e = linear_workgroup(wid, nwg) * 64u + lidx;
  let d = CP.d;
  let r = CP.r;
  let w = CP.width;
  if (e < d * r) {
    let i = e / r;
    let q = e % r;
    // j = (col0 + cc − i) mod d, stepping by one with cc.
    var j = (CP.col0 + d - i) % d;
    var sum = 0.0;
    for (var cc = 0u; cc < w; cc++) {
      sum += ct_dm[i * w + cc] * ct_a[q * d + j];
      j = select(j + 1u, 0u, j + 1u == d);
    }
    ct_db[e] = select(ct_db[e], 0.0, CP.overwrite == 1u) + sum;
  } else if (e < 2u * d * r) {
    let e2 = e - d * r;
    let q = e2 / d;
    let jj = e2 % d;
    // i = (col0 + cc − j) mod d, stepping by one with cc.
    var i = (CP.col0 + d - jj) % d;
    var sum = 0.0;
    for (var cc = 0u; cc < w; cc++) {
      sum += ct_b[i * r + q] * ct_dm[i * w + cc];
      i = select(i + 1u, 0u, i + 1u == d);
    }
    ct_da[e2] = select(ct_da[e2], 0.0, CP.overwrite == 1u) + sum;
  }
}

// ---------------------------------------------------------------- the FFT path (power-of-two d)
//
// π(BA) is a sum of r diagonally scaled circulants, M' = Σ_q diag(B[:, q])·C(A[q, :]), so with
// C_q[t, i] = Σ_j A[q, j]·In[t, (i + j) mod d] (a cyclic correlation of In's row t with A's row q)
//   mixᵀ    Out[t, i] = s·Σ_q B[i, q]·C_q[t, i]
//   mix     Out[t, :] = s·Σ_q conv(H_q[t, :], A[q, :]),  H_q[t, i] = dOut[t, i]·B[i, q]
//   dB[i, q] = s·Σ_t dOut[t, i]·C_q[t, i]     dA[q, :] = s·Σ_t corr(H_q[t, :], In[t, :])
// and in the frequency domain (F the DFT of shaders/fft.wgsl, real rows):
//   F(C_q,t) = conj(F A_q)·F In_t      F(dOut_t) = Σ_q F(H_q,t)·F A_q      F(dA_q) = Σ_t conj(F H_q,t)·F In_t
// These entries are the pointwise steps between batched FFTs (src/methods/lorma/kernels.ts, piFft*). Spectra are
// [bin][batch] complex, bins in the bit-reversed order the forward FFT leaves them in. Two real
// rows share one complex transform (x + i·y); `split` separates their spectra:
//   F x[k] = (Z[k] + conj Z[−k]) / 2,   F y[k] = (Z[k] − conj Z[−k]) / 2i.
// Pairs of factor rows: p = 0 .. pairs − 1 holds q = 2p (real part) and 2p + 1 (imaginary, zero when
// 2p + 1 = r). The big spectra W are [bin][p·T + t]. Every buffer the FFT transforms has rows of a
// padded stride (w_stride for W, packed_stride for the packed rows; src/ops/fft.ts fftStride).
//
// NaN and ±Inf. A transform mixes every value of its input into every output, and two real rows
// share each transform, so one non-finite value would reach its partner row too (token 2 into
// token 3, A's row 0 into C_1). The reference keeps it to the outputs that depend on it; so do
// these kernels: the entries that feed transforms (fft_pack, fft_pack_h) write non-finite inputs
// as 0 and flag their row in `bad`, and the entries that write outputs (fft_mix_out, fft_unpack,
// fft_db) write NaN exactly where the reference depends on a flagged input:
//   forward   Out[t, i]  In's row t, any of A         (B[i, :] reaches it by arithmetic)
//   backward  dIn[t, :]  dOut's row t, any of A or B
//             dA[q, :]   B's column q, any of dOut or In
//             dB[i, q]   A's row q, any of In           (dOut[:, i] by arithmetic)
// A finite call pays one bit test per value read and one flag read per output row.

// Every fft_* entry reads the same struct: the sizes of one layer's spectra, plus `rows`,
// `row_pairs` and `scale`, which only some entries use (the host passes 0 or 1 to the others).
struct SpectraParams {
  tokens: u32,          // T: rows of In and dOut
  d: u32,               // transform length, a power of two
  r: u32,               // rank
  log2d: u32,           // log2(d)
  pairs: u32,           // ⌈r/2⌉: factor rows, two per complex transform
  rows: u32,            // pack / split / unpack / du_spec / da_spec: rows of the real matrix
  row_pairs: u32,       // ⌈rows/2⌉: its complex transforms
  scale: f32,           // mix_out / unpack / db: factor on the outputs (s / d)
  w_stride: u32,        // row stride of W, complex values (fftStride(pairs·tokens))
  packed_stride: u32,   // row stride of packed rows, complex values (fftStride(row_pairs))
  flags: u32,           // fft_pack, fft_scan: the section flagged (IN or A); fft_unpack: its output (DIN or DA)
  nan_bits: u32,        // 0x7fc00000: a NaN literal is a shader-creation error in WGSL
  t0: u32,              // the token chunk's first token (even)
  chunk: u32,           // tokens in the chunk: W holds [bin][p·chunk + t − t0]
  in_stride: u32,       // row stride of In's packed spectra Z_u = F(In_2u + i·In_2u+1) (fftStride(⌈T/2⌉))
  accumulate: u32,      // da_spec, db: 1 adds onto the output (chunks after the first)
}

@group(0) @binding(0) var<uniform> SPEC: SpectraParams;

fn bin_rev(x: u32) -> u32 { return reverseBits(x) >> (32u - SPEC.log2d); }

// Storage position of bin −k, where position pos holds bin k = rev(pos).
fn partner_pos(pos: u32) -> u32 { return bin_rev((SPEC.d - bin_rev(pos)) & (SPEC.d - 1u)); }

fn times_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(-a.y, a.x); }
fn conj(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x, -a.y); }
// The spectrum of a real row is Hermitian, X[−k] = conj X[k]: kernels that make one compute bins
// 0 ≤ k ≤ d/2 only, h = 0 .. d/2, stored at position 2h (k = rev(2h) < d/2) or 1 (k = d/2), and
// write bin −k (the partner position) as the conjugate.
fn half_pos(h: u32) -> u32 { return select(2u * h, 1u, 2u * h == SPEC.d); }
// The spectra of x and y from Z = F(x + i·y) at k and −k.
fn split_re(z: vec2<f32>, zm: vec2<f32>) -> vec2<f32> { return 0.5 * vec2<f32>(z.x + zm.x, z.y - zm.y); }
fn split_im(z: vec2<f32>, zm: vec2<f32>) -> vec2<f32> { return 0.5 * vec2<f32>(z.y + zm.y, zm.x - z.x); }

// F In_t at position pos from In's packed spectra Z (two rows per transform; fft_corr_spec's
// binding), split on the fly:
// only Z is kept (half of F In's floats; the forward's `c`).
fn in_spec(pos: u32, pm: u32, t: u32) -> vec2<f32> {
  let u = t >> 1u;
  let a = cs_zin[pos * SPEC.in_stride + u];
  let am = cs_zin[pm * SPEC.in_stride + u];
  return select(split_re(a, am), split_im(a, am), (t & 1u) == 1u);
}

// Indices come from the workgroup grid or from shifts by log2 d (llvmpipe has no vector integer
// division: one by a uniform value is eight scalar ones per SIMD instruction), and every
// invocation makes several outputs: it walks bins (pos += number of y workgroups) or a block of
// ROW_BLOCK rows, so a dispatch has hundreds of workgroups, not tens of thousands (llvmpipe pays for
// each). Lanes run along the dimension that is contiguous in the row-major matrices (d) or in the
// spectra (tokens); never along a power-of-two stride.
const ROW_BLOCK: u32 = 16u;

fn lane_index(wid: vec3<u32>, nwg: vec3<u32>, lidx: u32) -> u32 { return linear_workgroup(wid, nwg) * 64u + lidx; }

// Three kernels also run the transform's whole-length radix-8 stage (block length d: three radix-2
// stages, dif8/dit8 of shaders/common.wgsl), which the batched FFT then leaves out (`partial`,
// src/ops/fft.ts): fft_pack_h makes H and runs the forward's first stage before storing W, and
// fft_mix_out and fft_db run the inverse's last stage on the values they load. That saves a store
// and a load of every element of W per kernel. Group j (< E = d/8) is the eight points j + k·E;
// its twiddles are read from the FFT's table, tw[m] = exp(−2πi·m/d).
@group(0) @binding(5) var<storage, read> ftw: array<vec2<f32>>;

fn whole_twiddles(j: u32, E: u32) -> array<vec2<f32>, 7> {
  return array<vec2<f32>, 7>(ftw[j], ftw[j + E], ftw[j + 2u * E], ftw[j + 3u * E], ftw[2u * j], ftw[2u * (j + E)], ftw[4u * j]);
}

// W as fft_mix_out and fft_db read it: the inverse transform but for its last stage.
@group(0) @binding(1) var<storage, read> lw: array<vec2<f32>>;

// Group j of W's transform column `col` (E = d/8, w its twiddles), after that last stage.
fn last_stage(col: u32, j: u32, E: u32, w: array<vec2<f32>, 7>) -> array<vec2<f32>, 8> {
  let c0 = j * SPEC.w_stride + col;
  var x: array<vec2<f32>, 8>;
  for (var k = 0u; k < 8u; k++) { x[k] = lw[c0 + k * E * SPEC.w_stride]; }
  dit8(&x, w);
  return x;
}

// The flags `bad` (u32, cleared by the host before fft_pack): a section per input, a word per row
// (per column of B) then one word for "any row": IN [T + 1], A [r + 1], G (dOut) [T + 1], B [r + 1].
const SEC_IN: u32 = 0u;
const SEC_A: u32 = 1u;
const SEC_G: u32 = 2u;
const SEC_B: u32 = 3u;
// fft_unpack's outputs.
const OUT_DIN: u32 = 0u;
const OUT_DA: u32 = 1u;

fn sec_rows(sec: u32) -> u32 { return select(SPEC.r, SPEC.tokens, sec == SEC_IN || sec == SEC_G); }
fn sec_base(sec: u32) -> u32 {
  let T = SPEC.tokens;
  let r = SPEC.r;
  return select(select(2u * T + r + 3u, T + r + 2u, sec == SEC_G), select(T + 1u, 0u, sec == SEC_IN), sec <= SEC_A);
}
fn sec_any(sec: u32) -> u32 { return sec_base(sec) + sec_rows(sec); }
fn non_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u; }
fn nan_f32() -> f32 { return bitcast<f32>(SPEC.nan_bits); }

// Z[j][u] = (R[2u, j], R[2u + 1, j]): rows of a real [rows, d] matrix, two per complex transform.
// Grid (⌈d/64⌉, ⌈row_pairs/ROW_BLOCK⌉): lanes along j.
// Non-finite values are written as 0 and their rows flagged in section SPEC.flags of `bad`.
@group(0) @binding(1) var<storage, read> pk_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> pk_dst: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> pk_bad: array<atomic<u32>>;

fn pk_flag(row: u32) {
  atomicOr(&pk_bad[sec_base(SPEC.flags) + row], 1u);
  atomicOr(&pk_bad[sec_any(SPEC.flags)], 1u);
}

@compute @workgroup_size(64)
fn fft_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let j = wid.x * 64u + lidx;
  if (j >= SPEC.d) { return; }
  let u1 = min(wid.y * ROW_BLOCK + ROW_BLOCK, SPEC.row_pairs);
  for (var u = wid.y * ROW_BLOCK; u < u1; u++) {
    let r1 = 2u * u + 1u;
    var z = vec2<f32>(pk_src[2u * u * SPEC.d + j], select(0.0, pk_src[r1 * SPEC.d + j], r1 < SPEC.rows));
    if (non_finite(z.x)) {
      z.x = 0.0;
      pk_flag(2u * u);
    }
    if (non_finite(z.y)) {
      z.y = 0.0;
      pk_flag(r1);
    }
    pk_dst[j * SPEC.packed_stride + u] = z;
  }
}

// Flags the non-finite rows of a real [rows, d] matrix in section SPEC.flags, as fft_pack would,
// for a backward that takes In's spectra from the forward. Grid (⌈d/64⌉, ⌈rows/ROW_BLOCK⌉).
@group(0) @binding(1) var<storage, read> sc_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> sc_bad: array<atomic<u32>>;

@compute @workgroup_size(64)
fn fft_scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let j = wid.x * 64u + lidx;
  if (j >= SPEC.d) { return; }
  let r1 = min(wid.y * ROW_BLOCK + ROW_BLOCK, SPEC.rows);
  for (var row = wid.y * ROW_BLOCK; row < r1; row++) {
    if (non_finite(sc_src[row * SPEC.d + j])) {
      atomicOr(&sc_bad[sec_base(SPEC.flags) + row], 1u);
      atomicOr(&sc_bad[sec_any(SPEC.flags)], 1u);
    }
  }
}

// S[bin][row] from the packed spectra Z[bin][u]. Grid (⌈row_pairs/64⌉, half-bins in steps).
@group(0) @binding(1) var<storage, read> sp_src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> sp_dst: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lidx: u32) {
  let u = wid.x * 64u + lidx;
  if (u >= SPEC.row_pairs) { return; }
  let odd = 2u * u + 1u < SPEC.rows;
  for (var h = wid.y; 2u * h <= SPEC.d; h += nwg.y) {
    let pos = half_pos(h);
    let pm = partner_pos(pos);
    let z = sp_src[pos * SPEC.packed_stride + u];
    let zm = sp_src[pm * SPEC.packed_stride + u];
    let x = split_re(z, zm);
    let y = split_im(z, zm);
    sp_dst[pos * SPEC.rows + 2u * u] = x;
    if (odd) { sp_dst[pos * SPEC.rows + 2u * u + 1u] = y; }
    if (pm != pos) {
      sp_dst[pm * SPEC.rows + 2u * u] = conj(x);
      if (odd) { sp_dst[pm * SPEC.rows + 2u * u + 1u] = conj(y); }
    }
  }
}

// Out[t0 + row, j] = scale·(Re or Im) Z[j][row / 2]: the inverse of fft_pack after an inverse FFT
// (t0 = 0 for dA; dIn's rows come a token chunk at a time).
// Grid (⌈d/64⌉, ⌈rows/ROW_BLOCK⌉): lanes along j.
// SPEC.flags names the output (OUT_DIN: rows are tokens; OUT_DA: rows are factor rows q), and so
// which flags make a row NaN (see the table above).
@group(0) @binding(1) var<storage, read> up_src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> up_dst: array<f32>;
@group(0) @binding(3) var<storage, read> up_bad: array<u32>;

@compute @workgroup_size(64)
fn fft_unpack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let j = wid.x * 64u + lidx;
  if (j >= SPEC.d) { return; }
  let din = SPEC.flags == OUT_DIN;
  let row_sec = select(SEC_B, SEC_G, din);
  let all_bad = select(up_bad[sec_any(SEC_G)] | up_bad[sec_any(SEC_IN)], up_bad[sec_any(SEC_A)] | up_bad[sec_any(SEC_B)], din);
  let row1 = min(wid.y * ROW_BLOCK + ROW_BLOCK, SPEC.rows);
  for (var row = wid.y * ROW_BLOCK; row < row1; row++) {
    let z = up_src[j * SPEC.packed_stride + (row >> 1u)];
    var v = SPEC.scale * select(z.x, z.y, (row & 1u) == 1u);
    if ((all_bad | up_bad[sec_base(row_sec) + SPEC.t0 + row]) != 0u) { v = nan_f32(); }
    up_dst[(SPEC.t0 + row) * SPEC.d + j] = v;
  }
}

// W[bin][p·chunk + t − t0] = conj(F A_2p)·F In_t + i·conj(F A_2p+1)·F In_t for the chunk's tokens:
// after an inverse FFT, d·(C_2p[t, :] + i·C_2p+1[t, :]). Grid (⌈chunk/64⌉, bins in steps): lanes along t.
@group(0) @binding(1) var<storage, read> cs_fa: array<vec2<f32>>;    // [d][r]
@group(0) @binding(2) var<storage, read> cs_zin: array<vec2<f32>>;   // In's packed spectra
@group(0) @binding(3) var<storage, read_write> cs_w: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_corr_spec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lidx: u32) {
  let tl = wid.x * 64u + lidx;
  if (tl >= SPEC.chunk) { return; }
  for (var pos = wid.y; pos < SPEC.d; pos += nwg.y) {
    let su = in_spec(pos, partner_pos(pos), SPEC.t0 + tl);
    for (var p = 0u; p < SPEC.pairs; p++) {
      var w = cmulc(su, cs_fa[pos * SPEC.r + 2u * p]);
      if (2u * p + 1u < SPEC.r) { w += times_i(cmulc(su, cs_fa[pos * SPEC.r + 2u * p + 1u])); }
      cs_w[pos * SPEC.w_stride + p * SPEC.chunk + tl] = w;
    }
  }
}

// Out[t, i] = scale·Σ_q B[i, q]·C_q[t, i] for the chunk's tokens, from W = d·(C_2p + i·C_2p+1)
// before the inverse FFT's last stage, which this runs (scale = s / d). Grid (⌈E/64⌉,
// ⌈chunk/ROW_BLOCK⌉): lanes along bin groups j, so the outputs j + k·E are contiguous across lanes
// (lanes along t wrote d floats apart, 4 KiB at d = 1024: 10–20 % slower on llvmpipe).
@group(0) @binding(2) var<storage, read> mo_b: array<f32>;          // B [d, r]
@group(0) @binding(3) var<storage, read_write> mo_out: array<f32>;  // [T, d]
@group(0) @binding(4) var<storage, read> mo_bad: array<u32>;

@compute @workgroup_size(64)
fn fft_mix_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let E = SPEC.d >> 3u;
  let j = wid.x * 64u + lidx;
  if (j >= E) { return; }
  let a_bad = mo_bad[sec_any(SEC_A)];
  let w = whole_twiddles(j, E);
  let t1 = min(wid.y * ROW_BLOCK + ROW_BLOCK, SPEC.chunk);
  for (var tl = wid.y * ROW_BLOCK; tl < t1; tl++) {
    let t = SPEC.t0 + tl;
    var acc = array<f32, 8>();
    for (var p = 0u; p < SPEC.pairs; p++) {
      let x = last_stage(p * SPEC.chunk + tl, j, E, w);
      let q1 = 2u * p + 1u;
      for (var k = 0u; k < 8u; k++) {
        let bi = (j + k * E) * SPEC.r;
        acc[k] += mo_b[bi + 2u * p] * x[k].x;
        if (q1 < SPEC.r) { acc[k] += mo_b[bi + q1] * x[k].y; }
      }
    }
    let bad = (a_bad | mo_bad[sec_base(SEC_IN) + t]) != 0u;
    for (var k = 0u; k < 8u; k++) {
      mo_out[t * SPEC.d + j + k * E] = select(SPEC.scale * acc[k], nan_f32(), bad);
    }
  }
}

// W[bin][p·chunk + t − t0] = H_2p + i·H_2p+1 of the chunk's tokens, H_q[t, i] = dOut[t, i]·B[i, q],
// after the forward FFT's first stage, which this runs. Grid (⌈E/64⌉, ⌈chunk/ROW_BLOCK⌉): lanes
// along bin groups j, so dOut's rows are read contiguously, as fft_mix_out writes.
@group(0) @binding(1) var<storage, read> ph_g: array<f32>;           // dOut [T, d]
@group(0) @binding(2) var<storage, read> ph_b: array<f32>;           // B [d, r]
@group(0) @binding(3) var<storage, read_write> ph_w: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> ph_bad: array<atomic<u32>>;

fn ph_flag(sec: u32, row: u32) {
  atomicOr(&ph_bad[sec_base(sec) + row], 1u);
  atomicOr(&ph_bad[sec_any(sec)], 1u);
}

// Non-finite values of dOut and B are written as 0 and flagged: dOut by token, B by column q.
@compute @workgroup_size(64)
fn fft_pack_h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lidx: u32) {
  let E = SPEC.d >> 3u;
  let j = wid.x * 64u + lidx;
  if (j >= E) { return; }
  let es = E * SPEC.w_stride;
  let w = whole_twiddles(j, E);
  let t1 = min(wid.y * ROW_BLOCK + ROW_BLOCK, SPEC.chunk);
  for (var tl = wid.y * ROW_BLOCK; tl < t1; tl++) {
    let t = SPEC.t0 + tl;
    var g: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
      g[k] = ph_g[t * SPEC.d + j + k * E];
      if (non_finite(g[k])) {
        g[k] = 0.0;
        ph_flag(SEC_G, t);
      }
    }
    for (var p = 0u; p < SPEC.pairs; p++) {
      let q1 = 2u * p + 1u;
      var x: array<vec2<f32>, 8>;
      for (var k = 0u; k < 8u; k++) {
        let bi = (j + k * E) * SPEC.r;
        var b = vec2<f32>(ph_b[bi + 2u * p], select(0.0, ph_b[bi + q1], q1 < SPEC.r));
        if (non_finite(b.x)) {
          b.x = 0.0;
          ph_flag(SEC_B, 2u * p);
        }
        if (non_finite(b.y)) {
          b.y = 0.0;
          ph_flag(SEC_B, q1);
        }
        x[k] = g[k] * b;
      }
      dif8(&x, w);
      let c0 = j * SPEC.w_stride + p * SPEC.chunk + tl;
      for (var k = 0u; k < 8u; k++) { ph_w[c0 + k * es] = x[k]; }
    }
  }
}

// From W = F(H_2p + i·H_2p+1) [bin][p·chunk + t − t0], a token chunk:
//   du_spec  Z[bin][u] = D_2u + i·D_2u+1, D_t = Σ_q F H_q,t·F A_q (F of row t0 + t of s⁻¹·dIn)
//   da_spec  Z[bin][p] (+)= E_2p + i·E_2p+1, E_q = Σ_t conj(F H_q,t)·F In_t (F of s⁻¹·dA[q, :]),
//            summed over the chunks
@group(0) @binding(1) var<storage, read> ds_w: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> ds_f: array<vec2<f32>>;     // du: F A [d][r]; da: In's packed spectra
@group(0) @binding(3) var<storage, read_write> ds_out: array<vec2<f32>>;

fn du_at(pos: u32, pm: u32, t: u32) -> vec2<f32> {
  let nb = SPEC.w_stride;
  var acc = vec2<f32>(0.0, 0.0);
  for (var p = 0u; p < SPEC.pairs; p++) {
    let z = ds_w[pos * nb + p * SPEC.chunk + t];
    let zm = ds_w[pm * nb + p * SPEC.chunk + t];
    acc += cmul(split_re(z, zm), ds_f[pos * SPEC.r + 2u * p]);
    if (2u * p + 1u < SPEC.r) { acc += cmul(split_im(z, zm), ds_f[pos * SPEC.r + 2u * p + 1u]); }
  }
  return acc;
}

// Grid (⌈row_pairs/64⌉, half-bins in steps), rows = chunk, row_pairs = ⌈chunk/2⌉: lanes along token pairs.
@compute @workgroup_size(64)
fn fft_du_spec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let u = wid.x * 64u + lidx;
  if (u >= SPEC.row_pairs) { return; }
  for (var h = wid.y; 2u * h <= SPEC.d; h += nwg.y) {
    let pos = half_pos(h);
    let pm = partner_pos(pos);
    let d0 = du_at(pos, pm, 2u * u);
    var d1 = vec2<f32>(0.0, 0.0);
    if (2u * u + 1u < SPEC.rows) { d1 = du_at(pos, pm, 2u * u + 1u); }
    ds_out[pos * SPEC.packed_stride + u] = d0 + times_i(d1);
    if (pm != pos) { ds_out[pm * SPEC.packed_stride + u] = conj(d0) + times_i(conj(d1)); }
  }
}

// Grid (⌈(d/2 + 1)/64⌉, pairs): lanes along half-bins; each sums over the chunk's tokens, two at a
// time (t0 and chunk are even but for the last chunk, so In's packed spectra split once per pair).
@compute @workgroup_size(64)
fn fft_da_spec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let h = wid.x * 64u + lidx;
  if (2u * h > SPEC.d) { return; }
  let nb = SPEC.w_stride;
  let pos = half_pos(h);
  let p = wid.y;
  let pm = partner_pos(pos);
  let base = p * SPEC.chunk;
  var e0 = vec2<f32>(0.0, 0.0);
  var e1 = vec2<f32>(0.0, 0.0);
  for (var tl = 0u; tl < SPEC.chunk; tl += 2u) {
    let u = (SPEC.t0 + tl) >> 1u;
    let a = ds_f[pos * SPEC.in_stride + u];
    let am = ds_f[pm * SPEC.in_stride + u];
    var su = split_re(a, am);
    var z = ds_w[pos * nb + base + tl];
    var zm = ds_w[pm * nb + base + tl];
    e0 += cmulc(su, split_re(z, zm));
    e1 += cmulc(su, split_im(z, zm));
    if (tl + 1u < SPEC.chunk) {
      su = split_im(a, am);
      z = ds_w[pos * nb + base + tl + 1u];
      zm = ds_w[pm * nb + base + tl + 1u];
      e0 += cmulc(su, split_re(z, zm));
      e1 += cmulc(su, split_im(z, zm));
    }
  }
  var v = e0 + times_i(e1);
  var vm = conj(e0) + times_i(conj(e1));
  if (SPEC.accumulate != 0u) {
    v += ds_out[pos * SPEC.packed_stride + p];
    vm += ds_out[pm * SPEC.packed_stride + p];
  }
  ds_out[pos * SPEC.packed_stride + p] = v;
  if (pm != pos) { ds_out[pm * SPEC.packed_stride + p] = vm; }
}

// dB[i, q] (+)= scale·Σ_t dOut[t, i]·C_q[t, i] over the chunk's tokens, from W = d·(C_2p + i·C_2p+1)
// before the inverse FFT's last stage, which this runs (scale = s / d). Grid (⌈E/64⌉, pairs):
// lanes along bin groups j, each summing its eight outputs i = j + k·E over the tokens (one writer
// per entry).
@group(0) @binding(2) var<storage, read> db_g: array<f32>;           // dOut [T, d]
@group(0) @binding(3) var<storage, read_write> db_out: array<f32>;   // dB [d, r]
@group(0) @binding(4) var<storage, read> db_bad: array<u32>;

@compute @workgroup_size(64)
fn fft_db(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let E = SPEC.d >> 3u;
  let j = wid.x * 64u + lidx;
  if (j >= E) { return; }
  let p = wid.y;
  let w = whole_twiddles(j, E);
  var a0 = array<f32, 8>();
  var a1 = array<f32, 8>();
  for (var tl = 0u; tl < SPEC.chunk; tl++) {
    let x = last_stage(p * SPEC.chunk + tl, j, E, w);
    let g0 = (SPEC.t0 + tl) * SPEC.d + j;
    for (var k = 0u; k < 8u; k++) {
      let g = db_g[g0 + k * E];
      a0[k] += g * x[k].x;
      a1[k] += g * x[k].y;
    }
  }
  let in_bad = db_bad[sec_any(SEC_IN)];
  let a_rows = sec_base(SEC_A);
  let q1 = 2u * p + 1u;
  for (var k = 0u; k < 8u; k++) {
    let o0 = (j + k * E) * SPEC.r + 2u * p;
    var v0 = SPEC.scale * a0[k];
    if (SPEC.accumulate != 0u) { v0 += db_out[o0]; }
    db_out[o0] = select(v0, nan_f32(), (in_bad | db_bad[a_rows + 2u * p]) != 0u);
    if (q1 < SPEC.r) {
      var v1 = SPEC.scale * a1[k];
      if (SPEC.accumulate != 0u) { v1 += db_out[o0 + 1u]; }
      db_out[o0 + 1u] = select(v1, nan_f32(), (in_bad | db_bad[a_rows + q1]) != 0u);
    }
  }
}
