// BoRA and MELoRA (docs/bora.md; math in docs/math.md): block-diversified low-rank adapter kernels.
//
// σ is the trained tensor (SigmaRaw), Σ = f(σ) the mix weights the kernels apply (Sigma).
//
// `fused`  one workgroup owns TT tokens and runs three phases with the intermediates in
//          workgroup memory only:
//            1. down  D[t, k, q] = scale_down · Σ_c DownW(k·block_in + c, q) · Input[t, k·block_in + c]
//            2. mix   S[t, j, q] = Σ_k Σ[j, k, q] · D[t, k, q]      (MIX_T: Σ[k, j, q])
//            3. up    Output[t, j·block_out + i] = scale_up · Σ_q UpW(j·block_out + i, q) · S[t, j, q]
//          Forward: Input = X, DownW = A, UpW = B (D = Z, S = S). Backward: Input = G, DownW = B,
//          Σ transposed, UpW = A (D = dS, S = dZ, Output = dX). SAVE also writes D and S for the
//          backward; inference leaves it off, so Z and S never reach device memory. Phase 3 only
//          stores: the host runs the base product afterwards with beta = 1, adding X W0ᵀ (G W0)
//          in its epilogue, so Y is never re-read here after the base product evicted it.
// `fused4` the same with 16-byte loads and stores and vec4 tiles, when n, m, n/b, m/b, r are
//          multiples of 4. Phases 1 and 2 and the entry point are written once for both (the
//          `//#each` blocks); phase 3 is two functions, because the vec4 one is a different
//          algorithm (a transposed 4×4 weight tile), not a wider type.
// `wgrad`  WeightGrad(col, q) = scale · Σ_t Cols[t, col] · Ranks[t, blk(col)·R + q]: dB (Cols = G,
//          Ranks = S) and dA (Cols = X, Ranks = dZ); the block of each column selects its slice.
// `mix_grad`        dΣ[j, k, q] = Σ_t dS[t, j, q] · Z[t, k, q]; `mix_grad4` the same 4 ranks per load.
// `sigma`           Σ = f(σ) once per step (one workgroup: μ = mean|σ| is a reduction over all b²r).
// `sigma_raw_grad`  dσ from dΣ through f, μ not detached (one workgroup, same reduction).
// `delta`  Merged += scale · ΔW with ΔW block (j, k) = B_j diag(Σ[j, k]) A_k (merge, unmerge, ΔW).
//
// Each kernel reads its own uniform struct and declares its own bindings, numbered 1, 2, ... in
// the order the host passes them; two declarations share a binding number only when no entry
// point uses both.

override R: u32 = 8u;          // rank
override BLOCKS: u32 = 1u;     // b
override TT: u32 = 8u;         // tokens per workgroup in `fused`
override WG: u32 = 64u;        // invocations per workgroup (1-D kernels)
override MIX: bool = true;     // false: MELoRA's block identity Σ (S = D), Σ is not read
override MIX_T: bool = false;  // mix with Σ[k, j] (the backward's transpose)
override DOWN_QC: bool = true; // down weight stored [R, cols] (A); else [cols, R] (B)
override UP_QC: bool = false;  // up weight stored [R, cols] (A); else [cols, R] (B)
override SAVE: bool = false;   // write D and S to device memory
override PROJECT: bool = true; // run phase 3
override OUT_QC: bool = false; // `wgrad` output stored [R, cols]; else [cols, R]
override TRANSFORM: u32 = 0u;  // 0 exp-mav, 1 exp, 2 mav, 3 raw
override BR: u32 = BLOCKS * R;
override BUF: u32 = TT * BLOCKS * R;

const QC: u32 = 8u;            // rank chunk held in registers by `wgrad`
const RED: u32 = 256u;         // invocations of the one-workgroup reductions

// ------------------------------------------------------------------ fused, fused4

struct FusedParams {
  tokens: u32,     // T
  n_in: u32,       // input features: n forward, m backward
  n_out: u32,      // output features: m forward, n backward
  block_in: u32,   // input features per block: n_in / b
  block_out: u32,  // output features per block: n_out / b
  scale_down: f32, // factor on phase 1: 1 forward, s backward
  scale_up: f32,   // factor on phase 3: s forward, 1 backward
  groups: u32,     // workgroups with work: ⌈T / TT⌉ (the dispatch may round up)
}

@group(0) @binding(0) var<uniform> FP: FusedParams;

// A scalar and a vec4 view of each binding; an entry point uses one view of a binding.
//#each S=; T=f32 | S=4; T=vec4<f32>
@group(0) @binding(1) var<storage, read> Input$S: array<$T>;           // X [T, n] forward, G [T, m] backward
@group(0) @binding(2) var<storage, read> DownW$S: array<$T>;           // A [R, n] forward, B [m, R] backward
@group(0) @binding(3) var<storage, read> SigmaMix$S: array<$T>;        // Σ [b, b, R] (unread by MELoRA)
@group(0) @binding(4) var<storage, read> UpW$S: array<$T>;             // B [m, R] forward, A [R, n] backward
@group(0) @binding(5) var<storage, read_write> Output$S: array<$T>;    // Y [T, m] forward, dX [T, n] backward
@group(0) @binding(7) var<storage, read_write> MixSave$S: array<$T>;   // S forward, dZ backward [T, b·R]
//#end
@group(0) @binding(6) var<storage, read_write> DownSave: array<f32>;  // Z forward, dS backward [T, b·R]

// The [TT, b, R] tiles of phases 1 and 2; `fused4` views them 4 ranks per element (R % 4 == 0).
//#each S=; T=f32; W=1u | S=4; T=vec4<f32>; W=4u
var<workgroup> dbuf$S: array<$T, BUF / $W>;
var<workgroup> sbuf$S: array<$T, BUF / $W>;

// What phase 3 projects: S, or D itself when MELoRA skips the mix.
fn mixed_at$S(i: u32) -> $T {
  if (MIX) { return sbuf$S[i]; }
  return dbuf$S[i];
}
//#end

fn wd_at(col: u32, q: u32) -> f32 {
  if (DOWN_QC) { return DownW[q * FP.n_in + col]; }
  return DownW[col * R + q];
}
fn wu_at(col: u32, q: u32) -> f32 {
  if (UP_QC) { return UpW[q * FP.n_out + col]; }
  return UpW[col * R + q];
}

// Phase 1's weights of one input column (or 4 adjacent ones) for ranks q0 and q1.
fn down_weights(col: u32, q0: u32, q1: u32, w0: ptr<function, f32>, w1: ptr<function, f32>) {
  *w0 = wd_at(col, q0);
  *w1 = wd_at(col, q1);
}
fn down_weights4(c4: u32, q0: u32, q1: u32, w0: ptr<function, vec4<f32>>, w1: ptr<function, vec4<f32>>) {
  if (DOWN_QC) {
    let n4 = FP.n_in / 4u;
    *w0 = DownW4[q0 * n4 + c4];
    *w1 = DownW4[q1 * n4 + c4];
  } else {
    // DownW stored [cols, R] (B in the backward): ranks q0 and q0 + 1 of a column sit in one
    // vec4 (R % 4 == 0, q0 even), so 4 loads give both ranks of the 4 columns.
    let lo = q0 % 4u;
    for (var i = 0u; i < 4u; i++) {
      let v = DownW4[(4u * c4 + i) * (R / 4u) + q0 / 4u];
      (*w0)[i] = v[lo];
      (*w1)[i] = v[lo + 1u];
    }
  }
}

// A weight times an input: one product, or the sum of 4.
fn inner(w: f32, x: f32) -> f32 { return w * x; }
fn inner4(w: vec4<f32>, x: vec4<f32>) -> f32 { return dot(w, x); }

// Phase 1's pair of ranks q0, q0 + 1 of one token into dbuf. In `fused4` the pair lies in one
// vec4 of dbuf4 (q0 even, R % 4 == 0) and always exists.
fn put_down_pair(o: u32, d0: f32, d1: f32, has1: bool) {
  dbuf[o] = d0;
  if (has1) { dbuf[o + 1u] = d1; }
}
fn put_down_pair4(o: u32, d0: f32, d1: f32, has1: bool) {
  dbuf4[o / 4u][o % 4u] = d0;
  dbuf4[o / 4u][o % 4u + 1u] = d1;
}

// Register tiles, sized for the host's TT ≤ TT_MAX: every phase keeps all TT tokens of its
// entry in registers, so one weight load feeds TT multiply-adds. Token loops run to the constant
// TT_MAX and break at TT, so the compiler can unroll them and keep the tiles in registers (a
// tile indexed by a loop it cannot unroll lives in per-lane scratch memory on lavapipe).
const TT_MAX: u32 = 8u;

// `fused4` (S=4): phase 1 reads the input (X, or G) as vec4 along its columns and the down weight
// 4 columns at a time: 10 loads (forward) or 12 (backward) per 64 multiply-adds, where `fused`
// needs 10 per 16. Phase 2 mixes 4 ranks at a time from vec4 tiles in workgroup memory (dbuf4,
// sbuf4) and a vec4 view of Σ (9 loads per 32 multiply-adds, not 9 per 8). Phase 3 reads the up
// weight as vec4 (B's rows along the ranks, A's along the columns) and updates Y or dX 4 columns
// at a time. Loads are what cost on lavapipe, as matmul.wgsl's direct4 found; docs/bora.md has
// the measurements. HAS1 is `true` there: R % 4 == 0 gives every even q0 its q0 + 1.
//#each S=; T=f32; W=1u; HAS1=has1 | S=4; T=vec4<f32>; W=4u; HAS1=true
@compute @workgroup_size(WG)
fn fused$S(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lidx: u32) {
  let g = linear_workgroup(wid, nwg);
  // Uniform across the workgroup, so the early return cannot split a barrier.
  if (g >= FP.groups) { return; }
  let t0 = g * TT;
  down_phase$S(t0, lidx);
  workgroupBarrier();
  mix_phase$S(t0, lidx);
  if (PROJECT) { project_phase$S(t0, lidx); }
}

// Phase 1's result for tokens t0 .. t0 + TT − 1, ranks q0 and q0 + 1 (has1) of block k: into
// dbuf, and to DownSave when SAVE.
fn store_down$S(t0: u32, k: u32, q0: u32, has1: bool, acc: ptr<function, array<f32, 16>>) {
  for (var tt = 0u; tt < TT_MAX; tt++) {
    if (tt >= TT) { break; }
    let t = t0 + tt;
    let d0 = FP.scale_down * (*acc)[2u * tt];
    let d1 = FP.scale_down * (*acc)[2u * tt + 1u];
    let o = tt * BR + k * R + q0;
    put_down_pair$S(o, d0, d1, has1);
    if (SAVE && t < FP.tokens) {
      DownSave[t * BR + k * R + q0] = d0;
      if (has1) { DownSave[t * BR + k * R + q0 + 1u] = d1; }
    }
  }
}

// Phase 1: one invocation per (block k, pair of ranks), all TT tokens. Rows past T read the
// last token (never stored) so the inner loop has no branch.
fn down_phase$S(t0: u32, lidx: u32) {
  let qh = (R + 1u) / 2u;
  let row = FP.n_in / $W;
  let width = FP.block_in / $W;
  for (var e = lidx; e < BLOCKS * qh; e += WG) {
    let k = e / qh;
    let q0 = (e % qh) * 2u;
    let has1 = q0 + 1u < R;
    let q1 = min(q0 + 1u, R - 1u);
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
    let c0 = k * width;
    for (var c = 0u; c < width; c++) {
      var w0: $T;
      var w1: $T;
      down_weights$S(c0 + c, q0, q1, &w0, &w1);
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        let xv = Input$S[min(t0 + tt, FP.tokens - 1u) * row + c0 + c];
        acc[2u * tt] += inner$S(w0, xv);
        acc[2u * tt + 1u] += inner$S(w1, xv);
      }
    }
    store_down$S(t0, k, q0, $HAS1, &acc);
  }
}

// Phase 2: one invocation per (j, rank) or (j, 4 ranks), all TT tokens; b multiply-adds each (its
// barrier included). MELoRA skips the mix and, when saving, copies D as S.
fn mix_phase$S(t0: u32, lidx: u32) {
  let br = BR / $W;
  let rw = R / $W;
  if (MIX) {
    for (var e = lidx; e < br; e += WG) {
      let j = e / rw;
      let q = e % rw;
      var acc: array<$T, TT_MAX>;
      for (var tt = 0u; tt < TT_MAX; tt++) { acc[tt] = $T(0.0); }
      for (var k = 0u; k < BLOCKS; k++) {
        var sig: $T;
        if (MIX_T) { sig = SigmaMix$S[(k * BLOCKS + j) * rw + q]; } else { sig = SigmaMix$S[(j * BLOCKS + k) * rw + q]; }
        for (var tt = 0u; tt < TT_MAX; tt++) {
          if (tt >= TT) { break; }
          acc[tt] += sig * dbuf$S[tt * br + k * rw + q];
        }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        sbuf$S[tt * br + e] = acc[tt];
        let t = t0 + tt;
        if (SAVE && t < FP.tokens) { MixSave$S[t * br + e] = acc[tt]; }
      }
    }
    workgroupBarrier();
  } else if (SAVE) {
    for (var e = lidx; e < BUF / $W; e += WG) {
      let t = t0 + e / br;
      if (t < FP.tokens) { MixSave$S[t * br + e % br] = dbuf$S[e]; }
    }
  }
}
//#end

// Phase 3: one invocation per 4 adjacent output columns, all TT tokens (a 4 x TT register
// tile). When the block width is a multiple of 4 the 4 columns share one block, so each
// S value feeds 4 multiply-adds.
fn project_phase(t0: u32, lidx: u32) {
  let same_block = FP.block_out % 4u == 0u;
  for (var c4 = lidx; c4 * 4u < FP.n_out; c4 += WG) {
    let col0 = c4 * 4u;
    var acc: array<f32, 32>;
    for (var i = 0u; i < 32u; i++) { acc[i] = 0.0; }
    for (var q = 0u; q < R; q++) {
      var u: array<f32, 4>;
      var sb: array<u32, 4>;
      for (var i = 0u; i < 4u; i++) {
        let col = min(col0 + i, FP.n_out - 1u);
        u[i] = select(0.0, wu_at(col, q), col0 + i < FP.n_out);
        sb[i] = (col / FP.block_out) * R + q;
      }
      if (same_block) {
        for (var tt = 0u; tt < TT_MAX; tt++) {
          if (tt >= TT) { break; }
          let sv = mixed_at(tt * BR + sb[0]);
          for (var i = 0u; i < 4u; i++) { acc[tt * 4u + i] += u[i] * sv; }
        }
      } else {
        for (var tt = 0u; tt < TT_MAX; tt++) {
          if (tt >= TT) { break; }
          for (var i = 0u; i < 4u; i++) { acc[tt * 4u + i] += u[i] * mixed_at(tt * BR + sb[i]); }
        }
      }
    }
    for (var tt = 0u; tt < TT_MAX; tt++) {
      if (tt >= TT) { break; }
      let t = t0 + tt;
      if (t >= FP.tokens) { break; }
      for (var i = 0u; i < 4u; i++) {
        let col = col0 + i;
        if (col >= FP.n_out) { break; }
        let o = t * FP.n_out + col;
        Output[o] = FP.scale_up * acc[tt * 4u + i];
      }
    }
  }
}

// Phase 3 of `fused4`: 4 adjacent output columns of one block per invocation (the block width a
// multiple of 4), all TT tokens, the output updated with 16-byte accesses.
fn project_phase4(t0: u32, lidx: u32) {
  let n4 = FP.n_out / 4u;
  for (var c4 = lidx; c4 < n4; c4 += WG) {
    let col0 = c4 * 4u;
    let sb = (col0 / FP.block_out) * R;
    var acc: array<vec4<f32>, TT_MAX>;  // acc[tt]: the 4 columns of token t0 + tt
    for (var tt = 0u; tt < TT_MAX; tt++) { acc[tt] = vec4<f32>(0.0); }
    for (var q4 = 0u; q4 < R / 4u; q4++) {
      var u: array<vec4<f32>, 4>;  // u[qq]: the 4 columns' weights for rank 4·q4 + qq
      if (UP_QC) {
        // UpW stored [R, cols] (A in the backward): one load per rank.
        for (var qq = 0u; qq < 4u; qq++) { u[qq] = UpW4[(q4 * 4u + qq) * n4 + c4]; }
      } else {
        // UpW stored [cols, R] (B in the forward): b[i] = UpW[col0 + i, 4·q4 .. 4·q4 + 3].
        var b: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) { b[i] = UpW4[(col0 + i) * (R / 4u) + q4]; }
        for (var qq = 0u; qq < 4u; qq++) { u[qq] = vec4<f32>(b[0][qq], b[1][qq], b[2][qq], b[3][qq]); }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        let sv = mixed_at4((tt * BR + sb) / 4u + q4);
        acc[tt] += u[0] * sv.x + u[1] * sv.y + u[2] * sv.z + u[3] * sv.w;
      }
    }
    for (var tt = 0u; tt < TT_MAX; tt++) {
      if (tt >= TT) { break; }
      let t = t0 + tt;
      if (t >= FP.tokens) { break; }
      let o = t * n4 + c4;
      Output4[o] = FP.scale_up * acc[tt];
    }
  }
}

// ------------------------------------------------------------------ wgrad

struct WgradParams {
  tokens: u32,     // T
  cols: u32,       // the weight's features: m for dB, n for dA
  block_cols: u32, // features per block: cols / b
  scale: f32,      // s for dB, 1 for dA
}

@group(0) @binding(0) var<uniform> WP: WgradParams;
@group(0) @binding(1) var<storage, read> Cols: array<f32>;               // G [T, m] for dB, X [T, n] for dA
@group(0) @binding(2) var<storage, read> Ranks: array<f32>;              // S for dB, dZ for dA [T, b·R]
@group(0) @binding(3) var<storage, read_write> WeightGrad: array<f32>;   // dB [m, R] or dA [R, n] (OUT_QC)

// One invocation per (4 adjacent columns, chunk of QC ranks), a 4 x QC register tile over all T
// tokens. When the block width is a multiple of 4 the 4 columns share one slice of Ranks, so
// each load of it feeds 4 multiply-adds.
@compute @workgroup_size(WG)
fn wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let idx = linear_workgroup(wid, nwg) * WG + lidx;
  let chunks = (R + QC - 1u) / QC;
  let cols4 = (WP.cols + 3u) / 4u;
  if (idx >= cols4 * chunks) { return; }
  let col0 = (idx % cols4) * 4u;
  let q0 = (idx / cols4) * QC;
  let same_block = WP.block_cols % 4u == 0u;
  var vb: array<u32, 4>;
  var cl: array<u32, 4>;
  for (var i = 0u; i < 4u; i++) {
    cl[i] = min(col0 + i, WP.cols - 1u);
    vb[i] = (cl[i] / WP.block_cols) * R + q0;
  }
  var acc: array<f32, 32>; // [column i][rank q]
  for (var e = 0u; e < 32u; e++) { acc[e] = 0.0; }
  // Constant trip counts with guards, so the tile stays in registers (see TT_MAX).
  for (var t = 0u; t < WP.tokens; t++) {
    let mrow = t * WP.cols;
    let vrow = t * BR;
    var mv: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) { mv[i] = Cols[mrow + cl[i]]; }
    if (same_block) {
      for (var q = 0u; q < QC; q++) {
        if (q0 + q >= R) { break; }
        let v = Ranks[vrow + vb[0] + q];
        for (var i = 0u; i < 4u; i++) { acc[i * QC + q] += mv[i] * v; }
      }
    } else {
      for (var q = 0u; q < QC; q++) {
        if (q0 + q >= R) { break; }
        for (var i = 0u; i < 4u; i++) { acc[i * QC + q] += mv[i] * Ranks[vrow + vb[i] + q]; }
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let col = col0 + i;
    if (col >= WP.cols) { break; }
    for (var q = 0u; q < QC; q++) {
      if (q0 + q >= R) { break; }
      let v = WP.scale * acc[i * QC + q];
      if (OUT_QC) { WeightGrad[(q0 + q) * WP.cols + col] = v; } else { WeightGrad[col * R + q0 + q] = v; }
    }
  }
}

// ------------------------------------------------------------------ mix_grad, mix_grad4 (dΣ)

struct MixGradParams {
  tokens: u32, // T
}

const KC: u32 = 4u; // blocks k per invocation of `mix_grad`

@group(0) @binding(0) var<uniform> MP: MixGradParams;
//#each S=; T=f32 | S=4; T=vec4<f32>
@group(0) @binding(1) var<storage, read> MixedGrad$S: array<$T>;         // dS [T, b·R]
@group(0) @binding(2) var<storage, read> Down$S: array<$T>;              // Z [T, b·R]
//#end
@group(0) @binding(3) var<storage, read_write> SigmaGradOut: array<f32>;  // dΣ [b, b, R]

fn put_mix_grad(o: u32, v: f32) { SigmaGradOut[o] = v; }
fn put_mix_grad4(o: u32, v: vec4<f32>) {
  for (var i = 0u; i < 4u; i++) { SigmaGradOut[o + i] = v[i]; }
}

// One invocation per (j, chunk of KC blocks k, rank or 4 ranks q): each token's dS value (or vec4)
// is loaded once for KC multiply-adds against Z, so a token costs 1 + KC loads for KC·W products
// (5 loads per 16 in `mix_grad4`) where one invocation per (j, k, q) paid 2 per product. T-long
// dots were what was left of BoRA's step over LoRA's (docs/bora.md).
//#each S=; T=f32; W=1u | S=4; T=vec4<f32>; W=4u
@compute @workgroup_size(WG)
fn mix_grad$S(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lidx: u32) {
  let idx = linear_workgroup(wid, nwg) * WG + lidx;
  let rw = R / $W;
  let br = BR / $W;
  let chunks = (BLOCKS + KC - 1u) / KC;
  if (idx >= BLOCKS * chunks * rw) { return; }
  let q = idx % rw;
  let k0 = ((idx / rw) % chunks) * KC;
  let j = idx / (rw * chunks);
  var kk: array<u32, KC>;
  for (var i = 0u; i < KC; i++) { kk[i] = min(k0 + i, BLOCKS - 1u) * rw + q; }
  var acc: array<$T, KC>;
  for (var i = 0u; i < KC; i++) { acc[i] = $T(0.0); }
  for (var t = 0u; t < MP.tokens; t++) {
    let row = t * br;
    let gv = MixedGrad$S[row + j * rw + q];
    for (var i = 0u; i < KC; i++) { acc[i] += gv * Down$S[row + kk[i]]; }
  }
  for (var i = 0u; i < KC; i++) {
    if (k0 + i >= BLOCKS) { break; }
    put_mix_grad$S((j * BLOCKS + k0 + i) * R + q * $W, acc[i]);
  }
}
//#end

// ------------------------------------------------------------------ sigma, sigma_raw_grad

struct SigmaParams {
  count: u32, // N = b²R entries of σ
}

@group(0) @binding(0) var<uniform> SP: SigmaParams;
// Both kernels read σ at binding 1.
@group(0) @binding(1) var<storage, read> SigmaRaw: array<f32>;            // σ [b, b, R]
// `sigma`'s outputs.
@group(0) @binding(2) var<storage, read_write> SigmaOut: array<f32>;      // Σ = f(σ)
@group(0) @binding(3) var<storage, read_write> MeanAbsOut: array<f32>;    // μ = mean|σ| [1]
// `sigma_raw_grad`'s further inputs and output.
@group(0) @binding(2) var<storage, read> Sigma: array<f32>;               // Σ from `sigma`
@group(0) @binding(3) var<storage, read> MeanAbs: array<f32>;             // μ from `sigma`
@group(0) @binding(4) var<storage, read> SigmaGrad: array<f32>;           // dΣ from `mix_grad`
@group(0) @binding(5) var<storage, read_write> SigmaRawGrad: array<f32>;  // dσ

var<workgroup> red: array<f32, RED>;

// Sum over the workgroup of each invocation's `v`; every invocation gets the total.
fn reduce_sum(lidx: u32, v: f32) -> f32 {
  red[lidx] = v;
  workgroupBarrier();
  for (var stride = RED / 2u; stride > 0u; stride /= 2u) {
    if (lidx < stride) { red[lidx] += red[lidx + stride]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

// A quiet NaN built from a runtime value (a constant NaN is a shader-creation error).
fn nan_from(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | 0x7fc00000u); }

// Σ = f(σ) and μ. When the transform divides by μ and μ = 0, Σ is filled with NaN so the error
// cannot pass silently (the host checks μ whenever it knows σ; see boraCheckSigma in
// src/methods/bora/kernels.ts).
@compute @workgroup_size(RED)
fn sigma(@builtin(local_invocation_index) lidx: u32) {
  let N = SP.count;
  var part = 0.0;
  for (var l = lidx; l < N; l += RED) { part += abs(SigmaRaw[l]); }
  let mu = reduce_sum(lidx, part) / f32(N);
  if (lidx == 0u) { MeanAbsOut[0] = mu; }
  let bad = mu == 0.0 && (TRANSFORM == 0u || TRANSFORM == 2u);
  for (var l = lidx; l < N; l += RED) {
    let s = SigmaRaw[l];
    var v: f32;
    switch TRANSFORM {
      case 0u: { v = exp(s / mu); }
      case 1u: { v = exp(s); }
      case 2u: { v = s / mu; }
      default: { v = s; }
    }
    if (bad) { v = nan_from(mu); }
    SigmaOut[l] = v;
  }
}

// dσ from dΣ:
//   exp-mav  dσ_l = dΣ_l Σ_l / μ − sign(σ_l) / (N μ²) · Σ_p dΣ_p Σ_p σ_p
//   mav      dσ_l = dΣ_l / μ − sign(σ_l) / (N μ²) · Σ_p dΣ_p σ_p
//   exp      dσ_l = dΣ_l Σ_l;   raw  dσ_l = dΣ_l
@compute @workgroup_size(RED)
fn sigma_raw_grad(@builtin(local_invocation_index) lidx: u32) {
  let N = SP.count;
  let mu = MeanAbs[0];
  var part = 0.0;
  if (TRANSFORM == 0u || TRANSFORM == 2u) {
    for (var l = lidx; l < N; l += RED) {
      var d = SigmaGrad[l];
      if (TRANSFORM == 0u) { d *= Sigma[l]; }
      part += d * SigmaRaw[l];
    }
  }
  let c = reduce_sum(lidx, part) / (f32(N) * mu * mu);
  for (var l = lidx; l < N; l += RED) {
    var d = SigmaGrad[l];
    if (TRANSFORM == 0u || TRANSFORM == 1u) { d *= Sigma[l]; }
    if (TRANSFORM == 0u || TRANSFORM == 2u) { d = d / mu - sign(SigmaRaw[l]) * c; }
    SigmaRawGrad[l] = d;
  }
}

// ------------------------------------------------------------------ delta (merge)

struct DeltaParams {
  n: u32,       // in-features (columns of W)
  m: u32,       // out-features (rows of W)
  block_n: u32, // n / b
  block_m: u32, // m / b
  scale: f32,   // ±s: merge adds ΔW, unmerge subtracts it
}

@group(0) @binding(0) var<uniform> DP: DeltaParams;
@group(0) @binding(1) var<storage, read> MergeA: array<f32>;           // A [R, n]
@group(0) @binding(2) var<storage, read> MergeSigma: array<f32>;       // Σ [b, b, R] (unread by MELoRA)
@group(0) @binding(3) var<storage, read> MergeB: array<f32>;           // B [m, R]
@group(0) @binding(4) var<storage, read_write> Merged: array<f32>;     // [m, n]: W0 (or 0), += scale·ΔW

// One invocation per element of W.
@compute @workgroup_size(WG)
fn delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let idx = linear_workgroup(wid, nwg) * WG + lidx;
  if (idx >= DP.n * DP.m) { return; }
  let row = idx / DP.n;
  let col = idx % DP.n;
  let j = row / DP.block_m;
  let k = col / DP.block_n;
  var acc = 0.0;
  if (MIX || j == k) {
    for (var q = 0u; q < R; q++) {
      var term = MergeB[row * R + q] * MergeA[q * DP.n + col];
      if (MIX) { term *= MergeSigma[(j * BLOCKS + k) * R + q]; }
      acc += term;
    }
  }
  Merged[idx] += DP.scale * acc;
}
