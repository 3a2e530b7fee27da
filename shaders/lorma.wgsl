// LoRMA_π kernels (KERNELS.md, "LoRMA"): the multiplicative matrix M = s·π(B A) is applied,
// differentiated and merged without ever being stored. B is [d, r], A is [r, d], P = B A and
//
//   M'[i, c] = π(P)[i, c] = P[i, (c − i) mod d]      (row i of P rotated right by i)
//
// so M = s·M'. Two ways to apply it (src/lorma.ts, lormaPiPath):
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

// ---------------------------------------------------------------- the FFT path (power-of-two d)
//
// π(BA) is a sum of r diagonally scaled circulants, M' = Σ_q diag(B[:, q])·C(A[q, :]), so with
// C_q[t, i] = Σ_j A[q, j]·In[t, (i + j) mod d] (a cyclic correlation of In's row t with A's row q)
//   mixᵀ    Out[t, i] = s·Σ_q B[i, q]·C_q[t, i]
//   mix     Out[t, :] = s·Σ_q conv(H_q[t, :], A[q, :]),  H_q[t, i] = dOut[t, i]·B[i, q]
//   dB[i, q] = s·Σ_t dOut[t, i]·C_q[t, i]     dA[q, :] = s·Σ_t corr(H_q[t, :], In[t, :])
// and in the frequency domain (F the DFT of shaders/fft.wgsl, real rows):
//   F(C_q,t) = conj(F A_q)·F In_t      F(dOut_t) = Σ_q F(H_q,t)·F A_q      F(dA_q) = Σ_t conj(F H_q,t)·F In_t
// These entries are the pointwise steps between batched FFTs (src/lorma.ts, piFft*). Spectra are
// [bin][batch] complex, bins in the bit-reversed order the forward FFT leaves them in. Two real
// rows share one complex transform (x + i·y); `split` separates their spectra:
//   F x[k] = (Z[k] + conj Z[−k]) / 2,   F y[k] = (Z[k] − conj Z[−k]) / 2i.
// Pairs of factor rows: p = 0 .. np − 1 holds q = 2p (real part) and 2p + 1 (imaginary, zero when
// 2p + 1 = r). The big spectra W are [bin][p·T + t]. Every buffer the FFT transforms has rows of a
// padded stride (ws for W, ps for the packed rows; src/ops/fft.ts fftStride).

struct FftLormaParams {
  T: u32,       // tokens (rows of In / dOut)
  d: u32,
  r: u32,
  log2d: u32,
  np: u32,      // ⌈r/2⌉
  rows: u32,    // pack / split / unpack: rows of the real matrix
  nbp: u32,     // pack / split / unpack: ⌈rows/2⌉ transforms
  scale: f32,
  ws: u32,      // row stride of W (complex values)
  ps: u32,      // row stride of the packed rows (pack, split, unpack, du_spec's and da_spec's outputs)
}

@group(0) @binding(0) var<uniform> FQ: FftLormaParams;

fn fq_rev(x: u32) -> u32 { return reverseBits(x) >> (32u - FQ.log2d); }

// Storage position of bin −k, where position pos holds bin k = rev(pos).
fn fq_partner(pos: u32) -> u32 { return fq_rev((FQ.d - fq_rev(pos)) & (FQ.d - 1u)); }

fn fq_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
// a·conj(b)
fn fq_mulc(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y); }
fn fq_i(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(-a.y, a.x); }
fn fq_conj(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x, -a.y); }
// The spectrum of a real row is Hermitian, X[−k] = conj X[k]: kernels that make one compute bins
// 0 ≤ k ≤ d/2 only, h = 0 .. d/2, stored at position 2h (k = rev(2h) < d/2) or 1 (k = d/2), and
// write bin −k (the partner position) as the conjugate.
fn fq_half_pos(h: u32) -> u32 { return select(2u * h, 1u, 2u * h == FQ.d); }
// The spectra of x and y from Z = F(x + i·y) at k and −k.
fn fq_re(z: vec2<f32>, zm: vec2<f32>) -> vec2<f32> { return 0.5 * vec2<f32>(z.x + zm.x, z.y - zm.y); }
fn fq_im(z: vec2<f32>, zm: vec2<f32>) -> vec2<f32> { return 0.5 * vec2<f32>(z.y + zm.y, zm.x - z.x); }

// Indices come from the workgroup grid or from shifts by log2 d (llvmpipe has no vector integer
// division: one by a uniform value is eight scalar ones per SIMD instruction), and every
// invocation makes several outputs: it walks bins (pos += number of y workgroups) or a block of
// FQ_TB rows, so a dispatch has hundreds of workgroups, not tens of thousands (llvmpipe pays for
// each). Lanes run along the dimension that is contiguous in the row-major matrices (d) or in the
// spectra (tokens); never along a power-of-two stride.
const FQ_TB: u32 = 16u;

fn fq_lin(wid: vec3<u32>, nwg: vec3<u32>, lidx: u32) -> u32 { return linear_workgroup(wid, nwg) * 64u + lidx; }

// Z[j][u] = (R[2u, j], R[2u + 1, j]): rows of a real [rows, d] matrix, two per complex transform.
// Grid (⌈d/64⌉, ⌈nbp/FQ_TB⌉): lanes along j.
@group(0) @binding(1) var<storage, read> pk_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> pk_dst: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let j = wid.x * 64u + lidx;
  if (j >= FQ.d) { return; }
  let u1 = min(wid.y * FQ_TB + FQ_TB, FQ.nbp);
  for (var u = wid.y * FQ_TB; u < u1; u++) {
    let r1 = 2u * u + 1u;
    pk_dst[j * FQ.ps + u] = vec2<f32>(pk_src[2u * u * FQ.d + j], select(0.0, pk_src[r1 * FQ.d + j], r1 < FQ.rows));
  }
}

// S[bin][row] from the packed spectra Z[bin][u]. Grid (⌈nbp/64⌉, half-bins in steps).
@group(0) @binding(1) var<storage, read> sp_src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> sp_dst: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lidx: u32) {
  let u = wid.x * 64u + lidx;
  if (u >= FQ.nbp) { return; }
  let odd = 2u * u + 1u < FQ.rows;
  for (var h = wid.y; 2u * h <= FQ.d; h += nwg.y) {
    let pos = fq_half_pos(h);
    let pm = fq_partner(pos);
    let z = sp_src[pos * FQ.ps + u];
    let zm = sp_src[pm * FQ.ps + u];
    let x = fq_re(z, zm);
    let y = fq_im(z, zm);
    sp_dst[pos * FQ.rows + 2u * u] = x;
    if (odd) { sp_dst[pos * FQ.rows + 2u * u + 1u] = y; }
    if (pm != pos) {
      sp_dst[pm * FQ.rows + 2u * u] = fq_conj(x);
      if (odd) { sp_dst[pm * FQ.rows + 2u * u + 1u] = fq_conj(y); }
    }
  }
}

// Out[row, j] = scale·(Re or Im) Z[j][row / 2]: the inverse of fft_pack after an inverse FFT.
// Grid (⌈d/64⌉, ⌈rows/FQ_TB⌉): lanes along j.
@group(0) @binding(1) var<storage, read> up_src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> up_dst: array<f32>;

@compute @workgroup_size(64)
fn fft_unpack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let j = wid.x * 64u + lidx;
  if (j >= FQ.d) { return; }
  let row1 = min(wid.y * FQ_TB + FQ_TB, FQ.rows);
  for (var row = wid.y * FQ_TB; row < row1; row++) {
    let z = up_src[j * FQ.ps + (row >> 1u)];
    up_dst[row * FQ.d + j] = FQ.scale * select(z.x, z.y, (row & 1u) == 1u);
  }
}

// W[bin][p·T + t] = conj(F A_2p)·F In_t + i·conj(F A_2p+1)·F In_t: after an inverse FFT,
// d·(C_2p[t, :] + i·C_2p+1[t, :]). Grid (⌈T/64⌉, bins in steps): lanes along t.
@group(0) @binding(1) var<storage, read> cs_fa: array<vec2<f32>>;    // [d][r]
@group(0) @binding(2) var<storage, read> cs_su: array<vec2<f32>>;    // [d][T]
@group(0) @binding(3) var<storage, read_write> cs_w: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_corr_spec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lidx: u32) {
  let T = FQ.T;
  let t = wid.x * 64u + lidx;
  if (t >= T) { return; }
  for (var pos = wid.y; pos < FQ.d; pos += nwg.y) {
    let su = cs_su[pos * T + t];
    for (var p = 0u; p < FQ.np; p++) {
      var w = fq_mulc(su, cs_fa[pos * FQ.r + 2u * p]);
      if (2u * p + 1u < FQ.r) { w += fq_i(fq_mulc(su, cs_fa[pos * FQ.r + 2u * p + 1u])); }
      cs_w[pos * FQ.ws + p * T + t] = w;
    }
  }
}

// Out[t, i] = scale·Σ_q B[i, q]·C_q[t, i] from W = d·(C_2p + i·C_2p+1) (scale = s / d).
// Grid (⌈d/64⌉, ⌈T/FQ_TB⌉): lanes along i.
@group(0) @binding(1) var<storage, read> mo_w: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> mo_b: array<f32>;          // B [d, r]
@group(0) @binding(3) var<storage, read_write> mo_out: array<f32>;  // [T, d]

@compute @workgroup_size(64)
fn fft_mix_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let T = FQ.T;
  let i = wid.x * 64u + lidx;
  if (i >= FQ.d) { return; }
  let t1 = min(wid.y * FQ_TB + FQ_TB, T);
  for (var t = wid.y * FQ_TB; t < t1; t++) {
    var acc = 0.0;
    for (var p = 0u; p < FQ.np; p++) {
      let w = mo_w[i * FQ.ws + p * T + t];
      acc += mo_b[i * FQ.r + 2u * p] * w.x;
      if (2u * p + 1u < FQ.r) { acc += mo_b[i * FQ.r + 2u * p + 1u] * w.y; }
    }
    mo_out[t * FQ.d + i] = FQ.scale * acc;
  }
}

// W[i][p·T + t] = dOut[t, i]·(B[i, 2p] + i·B[i, 2p + 1]): H_2p + i·H_2p+1, to be transformed.
// Grid (⌈d/64⌉, ⌈T/FQ_TB⌉): lanes along i.
@group(0) @binding(1) var<storage, read> ph_g: array<f32>;           // dOut [T, d]
@group(0) @binding(2) var<storage, read> ph_b: array<f32>;           // B [d, r]
@group(0) @binding(3) var<storage, read_write> ph_w: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_pack_h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let T = FQ.T;
  let i = wid.x * 64u + lidx;
  if (i >= FQ.d) { return; }
  let t1 = min(wid.y * FQ_TB + FQ_TB, T);
  for (var t = wid.y * FQ_TB; t < t1; t++) {
    let g = ph_g[t * FQ.d + i];
    for (var p = 0u; p < FQ.np; p++) {
      let q1 = 2u * p + 1u;
      ph_w[i * FQ.ws + p * T + t] = g * vec2<f32>(ph_b[i * FQ.r + 2u * p], select(0.0, ph_b[i * FQ.r + q1], q1 < FQ.r));
    }
  }
}

// From W = F(H_2p + i·H_2p+1) [bin][p·T + t]:
//   du_spec  Z[bin][u] = D_2u + i·D_2u+1, D_t = Σ_q F H_q,t·F A_q (F of row t of s⁻¹·dIn)
//   da_spec  Z[bin][p] = E_2p + i·E_2p+1, E_q = Σ_t conj(F H_q,t)·F In_t (F of s⁻¹·dA[q, :])
@group(0) @binding(1) var<storage, read> ds_w: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> ds_f: array<vec2<f32>>;     // du: F A [d][r]; da: F In [d][T]
@group(0) @binding(3) var<storage, read_write> ds_out: array<vec2<f32>>;

fn du_at(pos: u32, pm: u32, t: u32) -> vec2<f32> {
  let T = FQ.T;
  let nb = FQ.ws;
  var acc = vec2<f32>(0.0, 0.0);
  for (var p = 0u; p < FQ.np; p++) {
    let z = ds_w[pos * nb + p * T + t];
    let zm = ds_w[pm * nb + p * T + t];
    acc += fq_mul(fq_re(z, zm), ds_f[pos * FQ.r + 2u * p]);
    if (2u * p + 1u < FQ.r) { acc += fq_mul(fq_im(z, zm), ds_f[pos * FQ.r + 2u * p + 1u]); }
  }
  return acc;
}

// Grid (⌈nbp/64⌉, half-bins in steps), nbp = ⌈T/2⌉: lanes along token pairs.
@compute @workgroup_size(64)
fn fft_du_spec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let u = wid.x * 64u + lidx;
  if (u >= FQ.nbp) { return; }
  for (var h = wid.y; 2u * h <= FQ.d; h += nwg.y) {
    let pos = fq_half_pos(h);
    let pm = fq_partner(pos);
    let d0 = du_at(pos, pm, 2u * u);
    var d1 = vec2<f32>(0.0, 0.0);
    if (2u * u + 1u < FQ.T) { d1 = du_at(pos, pm, 2u * u + 1u); }
    ds_out[pos * FQ.ps + u] = d0 + fq_i(d1);
    if (pm != pos) { ds_out[pm * FQ.ps + u] = fq_conj(d0) + fq_i(fq_conj(d1)); }
  }
}

// Grid (⌈(d/2 + 1)/64⌉, np): lanes along half-bins; each sums over all tokens.
@compute @workgroup_size(64)
fn fft_da_spec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let h = wid.x * 64u + lidx;
  if (2u * h > FQ.d) { return; }
  let T = FQ.T;
  let nb = FQ.ws;
  let pos = fq_half_pos(h);
  let p = wid.y;
  let pm = fq_partner(pos);
  var e0 = vec2<f32>(0.0, 0.0);
  var e1 = vec2<f32>(0.0, 0.0);
  for (var t = 0u; t < T; t++) {
    let z = ds_w[pos * nb + p * T + t];
    let zm = ds_w[pm * nb + p * T + t];
    let su = ds_f[pos * T + t];
    e0 += fq_mulc(su, fq_re(z, zm));
    e1 += fq_mulc(su, fq_im(z, zm));
  }
  ds_out[pos * FQ.ps + p] = e0 + fq_i(e1);
  if (pm != pos) { ds_out[pm * FQ.ps + p] = fq_conj(e0) + fq_i(fq_conj(e1)); }
}

// dB[i, q] = scale·Σ_t dOut[t, i]·C_q[t, i] from W = d·(C_2p + i·C_2p+1) (scale = s / d).
// One invocation per (p, i), i fastest; each sums over all tokens.
@group(0) @binding(1) var<storage, read> db_w: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> db_g: array<f32>;           // dOut [T, d]
@group(0) @binding(3) var<storage, read_write> db_out: array<f32>;   // dB [d, r]

@compute @workgroup_size(64)
fn fft_db(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lidx: u32) {
  let e = fq_lin(wid, nwg, lidx);
  if (e >= FQ.d * FQ.np) { return; }
  let T = FQ.T;
  let nb = FQ.ws;
  let i = e & (FQ.d - 1u);
  let p = e >> FQ.log2d;
  var a0 = 0.0;
  var a1 = 0.0;
  for (var t = 0u; t < T; t++) {
    let w = db_w[i * nb + p * T + t];
    let g = db_g[t * FQ.d + i];
    a0 += g * w.x;
    a1 += g * w.y;
  }
  db_out[i * FQ.r + 2u * p] = FQ.scale * a0;
  if (2u * p + 1u < FQ.r) { db_out[i * FQ.r + 2u * p + 1u] = FQ.scale * a1; }
}
