// BoRA (KERNELS.md, "BoRA"): block-diversified low-rank adapter kernels.
//
// `fused`  one workgroup owns TT tokens and runs three phases with the intermediates in
//          workgroup memory only:
//            1. down  D[t, k, q] = a_down · Σ_c Wd(k·w_in + c, q) · In[t, k·w_in + c]
//            2. mix   S[t, j, q] = Σ_k Σ[j, k, q] · D[t, k, q]      (MIX_T: Σ[k, j, q])
//            3. up    Out[t, j·w_out + i] (+)= a_out · Σ_q Wu(j·w_out + i, q) · S[t, j, q]
//          Forward: In = X, Wd = A, Wu = B (Z = D, S = S). Backward: In = G, Wd = B, Σ transposed,
//          Wu = A (dS = D, dZ = S, Out = dX). SAVE also writes D and S for the backward;
//          inference leaves it off, so Z and S never reach device memory.
// `fused4` the same with 16-byte loads and stores and vec4 tiles, when n, m, n/b, m/b, r are
//          multiples of 4.
// `wgrad`  Out(col, q) = alpha · Σ_t M[t, col] · V[t, blk(col)·R + q]: dB (M = G, V = S) and
//          dA (M = X, V = dZ); the block of each column selects its slice of V.
// `dsig`   dΣ[j, k, q] = Σ_t dS[t, j, q] · Z[t, k, q].
// `sigma`  Σ = f(σ) once per step (one workgroup: μ = mean|σ| is a reduction over all b²r).
// `sigma_grad`  dσ from dΣ through f, μ not detached (one workgroup, same reduction).
// `delta`  ΔW block (j, k) = B_j diag(Σ[j, k]) A_k, into Out = beta·Out + alpha·ΔW (merge/unmerge).

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
override ACCUM: bool = true;   // phase 3 adds into Out (the base product is already there)
override OUT_QC: bool = false; // `wgrad` output stored [R, cols]; else [cols, R]
override TRANSFORM: u32 = 0u;  // 0 exp-mav, 1 exp, 2 mav, 3 raw
override BR: u32 = BLOCKS * R;
override BUF: u32 = TT * BLOCKS * R;

const QC: u32 = 8u;            // rank chunk held in registers by `wgrad`
const RED: u32 = 256u;         // invocations of the one-workgroup reductions

struct Params {
  T: u32, n_in: u32, n_out: u32, w_in: u32,
  w_out: u32, a_down: f32, a_out: f32, groups: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> In: array<f32>;
@group(0) @binding(2) var<storage, read> Wd: array<f32>;
@group(0) @binding(3) var<storage, read> Sig: array<f32>;
@group(0) @binding(4) var<storage, read> Wu: array<f32>;
@group(0) @binding(5) var<storage, read_write> Out: array<f32>;
@group(0) @binding(6) var<storage, read_write> Dsave: array<f32>;
@group(0) @binding(7) var<storage, read_write> Ssave: array<f32>;

// vec4 views for `fused4` (an entry point uses one view of a binding).
@group(0) @binding(1) var<storage, read> In4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> Wd4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> Sig4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> Wu4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> Out4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> Ssave4: array<vec4<f32>>;

// Bindings of `wgrad` and `dsig` (an entry point's bindings must be numbered 1, 2, ... in the
// order the host passes them, so each kernel family declares its own).
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> GOut: array<f32>;
// Bindings of `sigma`.
@group(0) @binding(1) var<storage, read> SigmaIn: array<f32>;
@group(0) @binding(2) var<storage, read_write> SigmaOut: array<f32>;
@group(0) @binding(3) var<storage, read_write> MuOut: array<f32>;
// Bindings of `delta`.
@group(0) @binding(1) var<storage, read> DA: array<f32>;
@group(0) @binding(2) var<storage, read> DSig: array<f32>;
@group(0) @binding(3) var<storage, read> DB: array<f32>;
@group(0) @binding(4) var<storage, read_write> DOut: array<f32>;

var<workgroup> dbuf: array<f32, BUF>;
var<workgroup> sbuf: array<f32, BUF>;
// `fused4`'s tiles: the same [TT, b, r] layout, 4 ranks per element (r % 4 == 0).
var<workgroup> dbuf4: array<vec4<f32>, BUF / 4u>;
var<workgroup> sbuf4: array<vec4<f32>, BUF / 4u>;

fn wd_at(col: u32, q: u32) -> f32 {
  if (DOWN_QC) { return Wd[q * P.n_in + col]; }
  return Wd[col * R + q];
}
fn wu_at(col: u32, q: u32) -> f32 {
  if (UP_QC) { return Wu[q * P.n_out + col]; }
  return Wu[col * R + q];
}

fn s_at(i: u32) -> f32 {
  if (MIX) { return sbuf[i]; }
  return dbuf[i];
}
fn s4_at(i: u32) -> vec4<f32> {
  if (MIX) { return sbuf4[i]; }
  return dbuf4[i];
}

// Register tiles, sized for the host's TT ≤ TT_MAX: every phase keeps all TT tokens of its
// entry in registers, so one weight load feeds TT multiply-adds. Token loops run to the constant
// TT_MAX and break at TT, so the compiler can unroll them and keep the tiles in registers (a
// tile indexed by a loop it cannot unroll lives in per-lane scratch memory on lavapipe).
const TT_MAX: u32 = 8u;

@compute @workgroup_size(WG)
fn fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let g = linear_workgroup(wid, nwg);
  // Uniform across the workgroup, so the early return cannot split a barrier.
  if (g >= P.groups) { return; }
  let t0 = g * TT;
  down_phase(t0, lidx);
  workgroupBarrier();
  mix_phase(t0, lidx);
  project_phase(t0, lidx);
}

// `fused` with 16-byte loads and stores, when n, m, n / b, m / b and r are multiples of 4.
// Phase 1 reads the input (X, or G) as vec4 along its columns and the down weight 4 columns at a
// time: 10 loads (forward) or 12 (backward) per 64 multiply-adds, where `fused` needs 10 per 16.
// Phase 2 mixes 4 ranks at a time from vec4 tiles in workgroup memory (dbuf4, sbuf4) and a vec4
// view of Σ. Phase 3 reads the up weight as vec4 (B's rows along the ranks, A's along the
// columns) and updates Y or dX 4 columns at a time. Loads are what cost on lavapipe, as
// matmul.wgsl's direct4 found; docs/bora.md has the measurements.
@compute @workgroup_size(WG)
fn fused4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lidx: u32) {
  let g = linear_workgroup(wid, nwg);
  if (g >= P.groups) { return; }
  let t0 = g * TT;
  down_phase4(t0, lidx);
  workgroupBarrier();
  mix_phase4(t0, lidx);
  if (PROJECT) { project_phase4(t0, lidx); }
}

// Phase 1's result for tokens t0 .. t0 + TT − 1, ranks q0 and q0 + 1 (has1) of block k: into
// dbuf, and to Dsave when SAVE.
fn store_down(t0: u32, k: u32, q0: u32, has1: bool, acc: ptr<function, array<f32, 16>>) {
  for (var tt = 0u; tt < TT_MAX; tt++) {
    if (tt >= TT) { break; }
    let t = t0 + tt;
    let d0 = P.a_down * (*acc)[2u * tt];
    let d1 = P.a_down * (*acc)[2u * tt + 1u];
    let o = tt * BR + k * R + q0;
    dbuf[o] = d0;
    if (has1) { dbuf[o + 1u] = d1; }
    if (SAVE && t < P.T) {
      Dsave[t * BR + k * R + q0] = d0;
      if (has1) { Dsave[t * BR + k * R + q0 + 1u] = d1; }
    }
  }
}

// store_down for `fused4`: the pair lies in one vec4 of dbuf4 (q0 even, r % 4 == 0).
fn store_down4(t0: u32, k: u32, q0: u32, acc: ptr<function, array<f32, 16>>) {
  for (var tt = 0u; tt < TT_MAX; tt++) {
    if (tt >= TT) { break; }
    let t = t0 + tt;
    let d0 = P.a_down * (*acc)[2u * tt];
    let d1 = P.a_down * (*acc)[2u * tt + 1u];
    let o = tt * BR + k * R + q0;
    dbuf4[o / 4u][o % 4u] = d0;
    dbuf4[o / 4u][o % 4u + 1u] = d1;
    if (SAVE && t < P.T) {
      Dsave[t * BR + k * R + q0] = d0;
      Dsave[t * BR + k * R + q0 + 1u] = d1;
    }
  }
}

fn down_phase(t0: u32, lidx: u32) {
  // Phase 1: one invocation per (block k, pair of ranks), all TT tokens. Rows past T read the
  // last token (never stored) so the inner loop has no branch.
  let qh = (R + 1u) / 2u;
  for (var e = lidx; e < BLOCKS * qh; e += WG) {
    let k = e / qh;
    let q0 = (e % qh) * 2u;
    let has1 = q0 + 1u < R;
    let q1 = min(q0 + 1u, R - 1u);
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
    let c0 = k * P.w_in;
    for (var c = 0u; c < P.w_in; c++) {
      let w0 = wd_at(c0 + c, q0);
      let w1 = wd_at(c0 + c, q1);
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        let xv = In[min(t0 + tt, P.T - 1u) * P.n_in + c0 + c];
        acc[2u * tt] += w0 * xv;
        acc[2u * tt + 1u] += w1 * xv;
      }
    }
    store_down(t0, k, q0, has1, &acc);
  }
}

fn down_phase4(t0: u32, lidx: u32) {
  let qh = (R + 1u) / 2u;
  let n4 = P.n_in / 4u;
  let w4 = P.w_in / 4u;
  for (var e = lidx; e < BLOCKS * qh; e += WG) {
    let k = e / qh;
    let q0 = (e % qh) * 2u;
    let has1 = q0 + 1u < R;
    let q1 = min(q0 + 1u, R - 1u);
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
    let c0 = k * w4;
    for (var c = 0u; c < w4; c++) {
      var w0: vec4<f32>;
      var w1: vec4<f32>;
      if (DOWN_QC) {
        w0 = Wd4[q0 * n4 + c0 + c];
        w1 = Wd4[q1 * n4 + c0 + c];
      } else {
        // Wd stored [cols, R] (B in the backward): ranks q0 and q0 + 1 of a column sit in one
        // vec4 (R % 4 == 0, q0 even), so 4 loads give both ranks of the 4 columns.
        let lo = q0 % 4u;
        for (var i = 0u; i < 4u; i++) {
          let v = Wd4[(4u * (c0 + c) + i) * (R / 4u) + q0 / 4u];
          w0[i] = v[lo];
          w1[i] = v[lo + 1u];
        }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        let xv = In4[min(t0 + tt, P.T - 1u) * n4 + c0 + c];
        acc[2u * tt] += dot(w0, xv);
        acc[2u * tt + 1u] += dot(w1, xv);
      }
    }
    store_down4(t0, k, q0, &acc);
  }
}

// Phase 2, shared by `fused` and `fused4` (its barrier included).
fn mix_phase(t0: u32, lidx: u32) {
  // Phase 2: one invocation per (j, q), all TT tokens; b multiply-adds each. MELoRA skips it.
  if (MIX) {
    for (var e = lidx; e < BR; e += WG) {
      let j = e / R;
      let q = e % R;
      var acc: array<f32, TT_MAX>;
      for (var tt = 0u; tt < TT_MAX; tt++) { acc[tt] = 0.0; }
      for (var k = 0u; k < BLOCKS; k++) {
        var sig: f32;
        if (MIX_T) { sig = Sig[(k * BLOCKS + j) * R + q]; } else { sig = Sig[(j * BLOCKS + k) * R + q]; }
        for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; } acc[tt] += sig * dbuf[tt * BR + k * R + q]; }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        sbuf[tt * BR + e] = acc[tt];
        let t = t0 + tt;
        if (SAVE && t < P.T) { Ssave[t * BR + e] = acc[tt]; }
      }
    }
    workgroupBarrier();
  } else if (SAVE) {
    for (var e = lidx; e < BUF; e += WG) {
      let t = t0 + e / BR;
      if (t < P.T) { Ssave[t * BR + e % BR] = dbuf[e]; }
    }
  }
}

// Phase 2 of `fused4`: one invocation per (j, 4 ranks), Σ and the tiles read 4 ranks per load
// (9 loads per 32 multiply-adds, not 9 per 8).
fn mix_phase4(t0: u32, lidx: u32) {
  let br4 = BR / 4u;
  let r4 = R / 4u;
  if (MIX) {
    for (var e = lidx; e < br4; e += WG) {
      let j = e / r4;
      let q4 = e % r4;
      var acc: array<vec4<f32>, TT_MAX>;
      for (var tt = 0u; tt < TT_MAX; tt++) { acc[tt] = vec4<f32>(0.0); }
      for (var k = 0u; k < BLOCKS; k++) {
        var sig: vec4<f32>;
        if (MIX_T) { sig = Sig4[(k * BLOCKS + j) * r4 + q4]; } else { sig = Sig4[(j * BLOCKS + k) * r4 + q4]; }
        for (var tt = 0u; tt < TT_MAX; tt++) {
          if (tt >= TT) { break; }
          acc[tt] += sig * dbuf4[tt * br4 + k * r4 + q4];
        }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        sbuf4[tt * br4 + e] = acc[tt];
        let t = t0 + tt;
        if (SAVE && t < P.T) { Ssave4[t * br4 + e] = acc[tt]; }
      }
    }
    workgroupBarrier();
  } else if (SAVE) {
    for (var e = lidx; e < BUF / 4u; e += WG) {
      let t = t0 + e / br4;
      if (t < P.T) { Ssave4[t * br4 + e % br4] = dbuf4[e]; }
    }
  }
}

fn project_phase(t0: u32, lidx: u32) {
  // Phase 3: one invocation per 4 adjacent output columns, all TT tokens (a 4 x TT register
  // tile). When the block width is a multiple of 4 the 4 columns share one block, so each
  // S value feeds 4 multiply-adds.
  if (PROJECT) {
    let same_block = P.w_out % 4u == 0u;
    for (var c4 = lidx; c4 * 4u < P.n_out; c4 += WG) {
      let col0 = c4 * 4u;
      var acc: array<f32, 32>;
      for (var i = 0u; i < 32u; i++) { acc[i] = 0.0; }
      for (var q = 0u; q < R; q++) {
        var u: array<f32, 4>;
        var sb: array<u32, 4>;
        for (var i = 0u; i < 4u; i++) {
          let col = min(col0 + i, P.n_out - 1u);
          u[i] = select(0.0, wu_at(col, q), col0 + i < P.n_out);
          sb[i] = (col / P.w_out) * R + q;
        }
        if (same_block) {
          for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
            let sv = s_at(tt * BR + sb[0]);
            for (var i = 0u; i < 4u; i++) { acc[tt * 4u + i] += u[i] * sv; }
          }
        } else {
          for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
            for (var i = 0u; i < 4u; i++) { acc[tt * 4u + i] += u[i] * s_at(tt * BR + sb[i]); }
          }
        }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        let t = t0 + tt;
        if (t >= P.T) { break; }
        for (var i = 0u; i < 4u; i++) {
          let col = col0 + i;
          if (col >= P.n_out) { break; }
          let o = t * P.n_out + col;
          if (ACCUM) { Out[o] += P.a_out * acc[tt * 4u + i]; } else { Out[o] = P.a_out * acc[tt * 4u + i]; }
        }
      }
    }
  }
}

// Phase 3 of `fused4`: 4 adjacent output columns of one block per invocation (the block width a
// multiple of 4), all TT tokens, the output updated with 16-byte accesses.
fn project_phase4(t0: u32, lidx: u32) {
  let n4 = P.n_out / 4u;
  for (var c4 = lidx; c4 < n4; c4 += WG) {
    let col0 = c4 * 4u;
    let sb = (col0 / P.w_out) * R;
    var acc: array<vec4<f32>, TT_MAX>;  // acc[tt]: the 4 columns of token t0 + tt
    for (var tt = 0u; tt < TT_MAX; tt++) { acc[tt] = vec4<f32>(0.0); }
    for (var q4 = 0u; q4 < R / 4u; q4++) {
      var u: array<vec4<f32>, 4>;  // u[qq]: the 4 columns' weights for rank 4·q4 + qq
      if (UP_QC) {
        // Wu stored [R, cols] (A in the backward): one load per rank.
        for (var qq = 0u; qq < 4u; qq++) { u[qq] = Wu4[(q4 * 4u + qq) * n4 + c4]; }
      } else {
        // Wu stored [cols, R] (B in the forward): b[i] = Wu[col0 + i, 4·q4 .. 4·q4 + 3].
        var b: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) { b[i] = Wu4[(col0 + i) * (R / 4u) + q4]; }
        for (var qq = 0u; qq < 4u; qq++) { u[qq] = vec4<f32>(b[0][qq], b[1][qq], b[2][qq], b[3][qq]); }
      }
      for (var tt = 0u; tt < TT_MAX; tt++) {
        if (tt >= TT) { break; }
        let sv = s4_at((tt * BR + sb) / 4u + q4);
        acc[tt] += u[0] * sv.x + u[1] * sv.y + u[2] * sv.z + u[3] * sv.w;
      }
    }
    for (var tt = 0u; tt < TT_MAX; tt++) {
      if (tt >= TT) { break; }
      let t = t0 + tt;
      if (t >= P.T) { break; }
      let o = t * n4 + c4;
      if (ACCUM) { Out4[o] += P.a_out * acc[tt]; } else { Out4[o] = P.a_out * acc[tt]; }
    }
  }
}

// Weight gradient: M [T, cols], V [T, BR]; one invocation per (4 adjacent columns, chunk of QC
// ranks), a 4 x QC register tile over all T tokens. When the block width is a multiple of 4 the
// 4 columns share one slice of V, so each V load feeds 4 multiply-adds.
// Params: T, n_in = cols, w_in = cols per block, a_down = alpha.
@compute @workgroup_size(WG)
fn wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let idx = linear_workgroup(wid, nwg) * WG + lidx;
  let chunks = (R + QC - 1u) / QC;
  let cols4 = (P.n_in + 3u) / 4u;
  if (idx >= cols4 * chunks) { return; }
  let col0 = (idx % cols4) * 4u;
  let q0 = (idx / cols4) * QC;
  let same_block = P.w_in % 4u == 0u;
  var vb: array<u32, 4>;
  var cl: array<u32, 4>;
  for (var i = 0u; i < 4u; i++) {
    cl[i] = min(col0 + i, P.n_in - 1u);
    vb[i] = (cl[i] / P.w_in) * R + q0;
  }
  var acc: array<f32, 32>; // [column i][rank q]
  for (var e = 0u; e < 32u; e++) { acc[e] = 0.0; }
  // Constant trip counts with guards, so the tile stays in registers (see TT_MAX).
  for (var t = 0u; t < P.T; t++) {
    let mrow = t * P.n_in;
    let vrow = t * BR;
    var mv: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) { mv[i] = M[mrow + cl[i]]; }
    if (same_block) {
      for (var q = 0u; q < QC; q++) {
        if (q0 + q >= R) { break; }
        let v = V[vrow + vb[0] + q];
        for (var i = 0u; i < 4u; i++) { acc[i * QC + q] += mv[i] * v; }
      }
    } else {
      for (var q = 0u; q < QC; q++) {
        if (q0 + q >= R) { break; }
        for (var i = 0u; i < 4u; i++) { acc[i * QC + q] += mv[i] * V[vrow + vb[i] + q]; }
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let col = col0 + i;
    if (col >= P.n_in) { break; }
    for (var q = 0u; q < QC; q++) {
      if (q0 + q >= R) { break; }
      let v = P.a_down * acc[i * QC + q];
      if (OUT_QC) { GOut[(q0 + q) * P.n_in + col] = v; } else { GOut[col * R + q0 + q] = v; }
    }
  }
}

// dΣ: M = dS [T, BR], V = Z [T, BR]; one invocation per (j, k, q). Params: T.
@compute @workgroup_size(WG)
fn dsig(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lidx: u32) {
  let idx = linear_workgroup(wid, nwg) * WG + lidx;
  if (idx >= BLOCKS * BR) { return; }
  let q = idx % R;
  let j = idx / BR;
  let k = (idx / R) % BLOCKS;
  var acc = 0.0;
  for (var t = 0u; t < P.T; t++) { acc += M[t * BR + j * R + q] * V[t * BR + k * R + q]; }
  GOut[idx] = acc;
}

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

// Σ = f(σ): SigmaIn = σ [b, b, R]; SigmaOut = Σ; MuOut[0] = μ = mean|σ|. Params: T = b²R.
// When the transform divides by μ and μ = 0, Σ is filled with NaN so the error cannot pass
// silently (the host checks μ whenever it knows σ; see boraCheckSigma in src/bora.ts).
@compute @workgroup_size(RED)
fn sigma(@builtin(local_invocation_index) lidx: u32) {
  let N = P.T;
  var part = 0.0;
  for (var l = lidx; l < N; l += RED) { part += abs(SigmaIn[l]); }
  let mu = reduce_sum(lidx, part) / f32(N);
  if (lidx == 0u) { MuOut[0] = mu; }
  let bad = mu == 0.0 && (TRANSFORM == 0u || TRANSFORM == 2u);
  for (var l = lidx; l < N; l += RED) {
    let s = SigmaIn[l];
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

// dσ: In = dΣ, Wd = Σ, Sig = μ (one value), Wu = σ; Out = dσ. Params: T = N = b²R.
//   exp-mav  dσ_l = dΣ_l Σ_l / μ − sign(σ_l) / (N μ²) · Σ_p dΣ_p Σ_p σ_p
//   mav      dσ_l = dΣ_l / μ − sign(σ_l) / (N μ²) · Σ_p dΣ_p σ_p
//   exp      dσ_l = dΣ_l Σ_l;   raw  dσ_l = dΣ_l
@compute @workgroup_size(RED)
fn sigma_grad(@builtin(local_invocation_index) lidx: u32) {
  let N = P.T;
  let mu = Sig[0];
  var part = 0.0;
  if (TRANSFORM == 0u || TRANSFORM == 2u) {
    for (var l = lidx; l < N; l += RED) {
      var d = In[l];
      if (TRANSFORM == 0u) { d *= Wd[l]; }
      part += d * Wu[l];
    }
  }
  let c = reduce_sum(lidx, part) / (f32(N) * mu * mu);
  for (var l = lidx; l < N; l += RED) {
    var d = In[l];
    if (TRANSFORM == 0u || TRANSFORM == 1u) { d *= Wd[l]; }
    if (TRANSFORM == 0u || TRANSFORM == 2u) { d = d / mu - sign(Wu[l]) * c; }
    Out[l] = d;
  }
}

// ΔW: DA = A [R, n], DSig = Σ, DB = B [m, R]; DOut [m, n] = a_down·ΔW + a_out·DOut (a_out = 0
// does not read DOut). Params: n_in = n, n_out = m, w_in = n/b, w_out = m/b.
@compute @workgroup_size(WG)
fn delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lidx: u32) {
  let idx = linear_workgroup(wid, nwg) * WG + lidx;
  if (idx >= P.n_in * P.n_out) { return; }
  let row = idx / P.n_in;
  let col = idx % P.n_in;
  let j = row / P.w_out;
  let k = col / P.w_in;
  var acc = 0.0;
  if (MIX || j == k) {
    for (var q = 0u; q < R; q++) {
      var term = DB[row * R + q] * DA[q * P.n_in + col];
      if (MIX) { term *= DSig[(j * BLOCKS + k) * R + q]; }
      acc += term;
    }
  }
  var v = P.a_down * acc;
  if (P.a_out != 0.0) { v += P.a_out * DOut[idx]; }
  DOut[idx] = v;
}
