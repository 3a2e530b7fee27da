// Fused multi-head scaled dot-product attention, causal or full (docs/attention.md). Host side:
// src/attention.ts; float64 reference: src/reference/attention.ts.
//
// Q, K, V, Y and their gradients are rows [batch·T, heads·headDim]: head h of token t of sequence b
// is the HD floats from ((b·T + t)·heads + h)·HD. LSE and D are [batch·heads·T], index
// (b·heads + h)·T + t.
//
// No T×T score matrix exists anywhere. An invocation owns ROWS consecutive rows of one (b, h) and
// streams the other side's rows past them:
//   forward    query rows; keys stream; running max m, sum l and unnormalised output per row
//              (online softmax), rescaled once per KB keys; saves lse = m + log l;
//   backward   pass 1 (dq): query rows; D = rowsum(dY ⊙ Y) first, then P = exp(S − lse) recomputed,
//              dS = P ⊙ (dY·V − D), dQ += dS K;
//              pass 2 (dkv): key rows; queries stream; dV += Pᵀ dY, dK += dSᵀ Q.
// Every output has exactly one writer, so no atomics and no barriers: on lavapipe a barrier splits
// the workgroup loop, and the ROWS rows an invocation holds share each streamed row's loads.
//
// The rows an invocation holds (up to 128 floats each) live in its own slice of workgroup memory,
// not in private arrays: lavapipe turns a private array indexed by a loop counter it cannot unroll
// into a ladder of compares per access (minutes of compilation at HD = 128), while workgroup
// memory is plain memory. No invocation reads another's slice, so no barrier is needed. Slice
// element e of invocation l sits at e·WG + l, so the lanes of one SIMD batch touch adjacent words.

override HD: u32 = 32u;    // head width, floats; 1 … 128
override ROWS: u32 = 1u;   // rows per invocation, 1 … 4
override KB: u32 = 4u;     // keys per online-softmax rescale in the forward; ≤ 8
override WG: u32 = 16u;    // invocations per workgroup: the host fits WG·ROWS·HD·(2, 3 or 4) floats in workgroup memory
override E: u32 = ROWS * HD;   // floats of one held block of rows
const NEG: f32 = -3.0e38;  // stands for −∞: exp(NEG − m) is 0 for every finite m

struct AttnParams {
  T: u32,        // tokens per sequence
  heads: u32,    // heads per token
  causal: u32,   // 1: row t sees keys 0 … t; 0: every key
  scale: f32,    // multiplier of q·k (dimensionless)
  blocks: u32,   // ceil(T / ROWS): row blocks per (b, h)
  count: u32,    // batch·heads·blocks: invocations with work
}

@group(0) @binding(0) var<uniform> P: AttnParams;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;

// The invocation's (b·heads + h) and first row, or false past the last block.
struct Slot {
  bh: u32,
  row0: u32,
}

fn slot(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> Slot {
  let g = linear_workgroup(wid, nwg) * WG + lid.x;
  if (g >= P.count) { return Slot(0xffffffffu, 0u); }
  return Slot(g / P.blocks, (g % P.blocks) * ROWS);
}

// Index of head bh's first float in row t.
fn head_at(bh: u32, t: u32) -> u32 {
  let b = bh / P.heads;
  let h = bh % P.heads;
  return ((b * P.T + t) * P.heads + h) * HD;
}

// Each invocation's slices: forward   W0 scale·q, W1 the unnormalised output;
//                          dq pass   W0 scale·q, W1 dy, W2 dq;
//                          dkv pass  W0 scale·k, W1 v, W2 dk, W3 dv.
var<workgroup> W0: array<f32, WG * E>;
var<workgroup> W1: array<f32, WG * E>;
var<workgroup> W2: array<f32, WG * E>;
var<workgroup> W3: array<f32, WG * E>;

// Where element e of the invocation's block (row e / HD, column e % HD) sits in a slice array.
fn el(e: u32, lane: u32) -> u32 {
  return e * WG + lane;
}

// ------------------------------------------------------------------------- forward

@group(0) @binding(4) var<storage, read_write> F_lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> F_y: array<f32>;

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
  let s = slot(wid, nwg, lid);
  if (s.bh == 0xffffffffu) { return; }
  let lane = lid.x;
  // Rows past T (the last block's tail) repeat row T − 1: computed, never stored.
  var m = array<f32, 4>(NEG, NEG, NEG, NEG);   // running max of each row's scores
  var l = array<f32, 4>(0.0, 0.0, 0.0, 0.0);   // running Σ exp(score − m)
  for (var r = 0u; r < ROWS; r++) {
    let at = head_at(s.bh, min(s.row0 + r, P.T - 1u));
    for (var c = 0u; c < HD; c++) {
      W0[el(r * HD + c, lane)] = P.scale * Q[at + c];
      W1[el(r * HD + c, lane)] = 0.0;
    }
  }
  let last = s.row0 + ROWS - 1u;   // the block's last row
  let keys = select(P.T, min(last + 1u, P.T), P.causal == 1u);
  for (var j0 = 0u; j0 < keys; j0 += KB) {
    var kat = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    for (var kb = 0u; kb < KB; kb++) { kat[kb] = head_at(s.bh, min(j0 + kb, keys - 1u)); }
    // Scores of the KB keys, [ROWS][KB]; masked ones (the future, or past the last key) are NEG.
    var sc = array<f32, 32>();
    // Column-outer, so the row and key loops inside unroll and every private index is constant.
    for (var c = 0u; c < HD; c++) {
      for (var kb = 0u; kb < KB; kb++) {
        let kc = K[kat[kb] + c];
        for (var r = 0u; r < ROWS; r++) { sc[r * KB + kb] += W0[el(r * HD + c, lane)] * kc; }
      }
    }
    for (var kb = 0u; kb < KB; kb++) {
      let j = j0 + kb;
      for (var r = 0u; r < ROWS; r++) {
        let masked = j >= keys || (P.causal == 1u && j > s.row0 + r);
        sc[r * KB + kb] = select(sc[r * KB + kb], NEG, masked);
      }
    }
    // One rescale of the output per KB keys: m moves to the block's max, old terms shrink by corr.
    var corr = array<f32, 4>(1.0, 1.0, 1.0, 1.0);
    for (var r = 0u; r < ROWS; r++) {
      var mx = m[r];
      for (var kb = 0u; kb < KB; kb++) { mx = max(mx, sc[r * KB + kb]); }
      corr[r] = exp(m[r] - mx);
      var sum = l[r] * corr[r];
      for (var kb = 0u; kb < KB; kb++) {
        let p = exp(sc[r * KB + kb] - mx);
        sc[r * KB + kb] = p;
        sum += p;
      }
      m[r] = mx;
      l[r] = sum;
    }
    for (var c = 0u; c < HD; c++) {
      var add = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      for (var kb = 0u; kb < KB; kb++) {
        let vc = V[kat[kb] + c];
        for (var r = 0u; r < ROWS; r++) { add[r] += sc[r * KB + kb] * vc; }
      }
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        W1[e] = W1[e] * corr[r] + add[r];
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    let t = s.row0 + r;
    if (t >= P.T) { break; }
    let at = head_at(s.bh, t);
    let inv = 1.0 / l[r];
    for (var c = 0u; c < HD; c++) { F_y[at + c] = W1[el(r * HD + c, lane)] * inv; }
    F_lse[s.bh * P.T + t] = m[r] + log(l[r]);
  }
}

// ------------------------------------------------------------------------- backward

@group(0) @binding(4) var<storage, read> B_lse: array<f32>;
@group(0) @binding(5) var<storage, read> B_dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> Q_D: array<f32>;   // pass 1 writes D
@group(0) @binding(6) var<storage, read> KV_D: array<f32>;        // pass 2 reads it
@group(0) @binding(7) var<storage, read> Q_y: array<f32>;
@group(0) @binding(8) var<storage, read_write> Q_dq: array<f32>;
@group(0) @binding(7) var<storage, read_write> KV_dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> KV_dv: array<f32>;

// Pass 1, per query row i: D_i = dy_i · y_i, then dq_i = scale · Σ_j P_ij (dy_i · v_j − D_i) k_j.
@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
  let s = slot(wid, nwg, lid);
  if (s.bh == 0xffffffffu) { return; }
  let lane = lid.x;
  var lse = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  var dd = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var r = 0u; r < ROWS; r++) {
    let t = min(s.row0 + r, P.T - 1u);
    let at = head_at(s.bh, t);
    var d = 0.0;
    for (var c = 0u; c < HD; c++) {
      let e = el(r * HD + c, lane);
      W0[e] = P.scale * Q[at + c];
      let g = B_dy[at + c];
      W1[e] = g;
      W2[e] = 0.0;
      d += g * Q_y[at + c];
    }
    dd[r] = d;
    lse[r] = B_lse[s.bh * P.T + t];
    if (s.row0 + r < P.T) { Q_D[s.bh * P.T + t] = d; }
  }
  let last = s.row0 + ROWS - 1u;
  let keys = select(P.T, min(last + 1u, P.T), P.causal == 1u);
  for (var j = 0u; j < keys; j++) {
    let at = head_at(s.bh, j);
    var sc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var dp = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var c = 0u; c < HD; c++) {
      let kc = K[at + c];
      let vc = V[at + c];
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        sc[r] += W0[e] * kc;
        dp[r] += W1[e] * vc;
      }
    }
    var ds = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var r = 0u; r < ROWS; r++) {
      let masked = P.causal == 1u && j > s.row0 + r;
      ds[r] = select(exp(sc[r] - lse[r]) * (dp[r] - dd[r]), 0.0, masked);
    }
    for (var c = 0u; c < HD; c++) {
      let kc = K[at + c];
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        W2[e] += ds[r] * kc;
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    let t = s.row0 + r;
    if (t >= P.T) { break; }
    let at = head_at(s.bh, t);
    for (var c = 0u; c < HD; c++) { Q_dq[at + c] = P.scale * W2[el(r * HD + c, lane)]; }
  }
}

// Pass 2, per key row j: dv_j = Σ_i P_ij dy_i, dk_j = scale · Σ_i P_ij (dy_i · v_j − D_i) q_i.
@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
  let s = slot(wid, nwg, lid);
  if (s.bh == 0xffffffffu) { return; }
  let lane = lid.x;
  for (var r = 0u; r < ROWS; r++) {
    let at = head_at(s.bh, min(s.row0 + r, P.T - 1u));
    for (var c = 0u; c < HD; c++) {
      let e = el(r * HD + c, lane);
      W0[e] = P.scale * K[at + c];
      W1[e] = V[at + c];
      W2[e] = 0.0;
      W3[e] = 0.0;
    }
  }
  // Causal: query rows before the block's first key see none of its keys.
  let first = select(0u, s.row0, P.causal == 1u);
  for (var i = first; i < P.T; i++) {
    let at = head_at(s.bh, i);
    let li = B_lse[s.bh * P.T + i];
    let di = KV_D[s.bh * P.T + i];
    var sc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var dp = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var c = 0u; c < HD; c++) {
      let qc = Q[at + c];
      let gc = B_dy[at + c];
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        sc[r] += W0[e] * qc;
        dp[r] += W1[e] * gc;
      }
    }
    var p = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var ds = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var r = 0u; r < ROWS; r++) {
      let masked = P.causal == 1u && i < s.row0 + r;
      p[r] = select(exp(sc[r] - li), 0.0, masked);
      ds[r] = p[r] * (dp[r] - di);
    }
    for (var c = 0u; c < HD; c++) {
      let qc = Q[at + c];
      let gc = B_dy[at + c];
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        W3[e] += p[r] * gc;
        W2[e] += ds[r] * qc;
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    let t = s.row0 + r;
    if (t >= P.T) { break; }
    let at = head_at(s.bh, t);
    for (var c = 0u; c < HD; c++) {
      let e = el(r * HD + c, lane);
      KV_dk[at + c] = P.scale * W2[e];
      KV_dv[at + c] = W3[e];
    }
  }
}
