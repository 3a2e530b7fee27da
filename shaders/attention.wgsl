// Fused multi-head scaled dot-product attention, causal or full (docs/attention.md). Host side:
// src/attention.ts; float64 reference: src/reference/attention.ts.
//
// Q, K, V, Y and their gradients are rows [batch·T, heads·headDim]: head h of token t of sequence b
// is the HD floats from ((b·T + t)·heads + h)·HD. LSE and D are [batch·heads·T], index
// (b·heads + h)·T + t.
//
// No T×T score matrix exists anywhere. An invocation owns ROWS consecutive rows of one (b, h) and
// streams the other side's rows past them, KB at a time:
//   forward    query rows; keys stream; running max m, sum l and unnormalised output per row
//              (online softmax), rescaled once per KB keys; saves lse = m + log l;
//   backward   pass 1 (dq): query rows; D = rowsum(dY ⊙ Y) first, then P = exp(S − lse) recomputed,
//              dS = P ⊙ (dY·V − D), dQ += dS K;
//              pass 2 (dkv): key rows; queries stream; dV += Pᵀ dY, dK += dSᵀ Q.
// Column loops run to the uniform P.hd, not the constant HD (see AttnParams.hd).
// Every output has exactly one writer, so no atomics and no barriers: on lavapipe a barrier splits
// the workgroup loop, and the ROWS rows an invocation holds share each streamed row's loads.
//
// The rows an invocation holds (up to 128 floats each) live in its own slice of workgroup memory,
// not in private arrays: lavapipe turns a private array indexed by a loop counter it cannot unroll
// into a ladder of compares per access (minutes of compilation at HD = 128), while workgroup
// memory is plain memory. No invocation reads another's slice, so no barrier is needed. Slice
// element e of invocation l sits at e·WG + l, so the lanes of one SIMD batch touch adjacent words.

override HD: u32 = 32u;    // head width, floats; 1 … 128
override ROWS: u32 = 4u;   // rows per invocation, 1 … 4 (the host's attentionRows)
override KB: u32 = 4u;     // streamed rows per step (keys, or queries in the dk/dv pass); ROWS·KB ≤ 32
override WG: u32 = 8u;     // invocations per workgroup: the host fits WG·ROWS·HD·(2, 3 or 4) floats in workgroup memory
override E: u32 = ROWS * HD;   // floats of one held block of rows
const NEG: f32 = -3.0e38;  // stands for −∞: exp(NEG − m) is 0 for every finite m

struct AttnParams {
  T: u32,        // tokens per sequence
  heads: u32,    // heads per token
  causal: u32,   // 1: row t sees keys 0 … t; 0: every key
  scale: f32,    // multiplier of q·k (dimensionless)
  groups: u32,   // ceil(T / (WG·ROWS)): workgroups per (b, h)
  count: u32,    // batch·heads·groups: workgroups with work
  // HD again, as a value the compiler cannot see: every column loop runs to it. With the constant
  // HD as bound, LLVM on lavapipe unrolls those loops and the first dispatch of a new HD spends
  // 30 s to minutes compiling (118 s against 0.7 s for the forward at HD = 24, ROWS = 1).
  hd: u32,
}

@group(0) @binding(0) var<uniform> P: AttnParams;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;

// A workgroup owns WG·ROWS consecutive rows of one (b, h). bh and the workgroup's first and last
// rows are the same in every lane, so the streamed rows' addresses are too: lavapipe then loads
// each streamed float once for all lanes instead of gathering it lane by lane, and the loops over
// streamed rows run to a bound that is the same in every lane (the causal mask is a select).
struct Slot {
  bh: u32,     // b·heads + h; 0xffffffff past the last workgroup
  row0: u32,   // this invocation's first row
  first: u32,  // the workgroup's first row
  last: u32,   // the workgroup's last row below T
}

fn slot(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> Slot {
  let w = linear_workgroup(wid, nwg);
  if (w >= P.count) { return Slot(0xffffffffu, 0u, 0u, 0u); }
  let first = (w % P.groups) * WG * ROWS;
  return Slot(w / P.groups, first + lid.x * ROWS, first, min(first + WG * ROWS, P.T) - 1u);
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
    for (var c = 0u; c < P.hd; c++) {
      W0[el(r * HD + c, lane)] = P.scale * Q[at + c];
      W1[el(r * HD + c, lane)] = 0.0;
    }
  }
  let keys = select(P.T, s.last + 1u, P.causal == 1u);
  for (var j0 = 0u; j0 < keys; j0 += KB) {
    var kat = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    for (var kb = 0u; kb < KB; kb++) { kat[kb] = head_at(s.bh, min(j0 + kb, keys - 1u)); }
    // Scores of the KB keys, [ROWS][KB]; masked ones (the future, or past the last key) are NEG.
    var sc = array<f32, 32>();
    // Column-outer, so the row and key loops inside unroll and every private index is constant.
    for (var c = 0u; c < P.hd; c++) {
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
    for (var c = 0u; c < P.hd; c++) {
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
    for (var c = 0u; c < P.hd; c++) { F_y[at + c] = W1[el(r * HD + c, lane)] * inv; }
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
// Keys stream KB at a time, so each dq element is read and written once per KB keys.
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
    for (var c = 0u; c < P.hd; c++) {
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
  let keys = select(P.T, s.last + 1u, P.causal == 1u);
  for (var j0 = 0u; j0 < keys; j0 += KB) {
    var kat = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    for (var kb = 0u; kb < KB; kb++) { kat[kb] = head_at(s.bh, min(j0 + kb, keys - 1u)); }
    // [ROWS][KB]: scores, then dY·V, then dS.
    var sc = array<f32, 32>();
    var dp = array<f32, 32>();
    for (var c = 0u; c < P.hd; c++) {
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        let qc = W0[e];
        let gc = W1[e];
        for (var kb = 0u; kb < KB; kb++) {
          sc[r * KB + kb] += qc * K[kat[kb] + c];
          dp[r * KB + kb] += gc * V[kat[kb] + c];
        }
      }
    }
    for (var kb = 0u; kb < KB; kb++) {
      let j = j0 + kb;
      for (var r = 0u; r < ROWS; r++) {
        let masked = j >= keys || (P.causal == 1u && j > s.row0 + r);
        let i = r * KB + kb;
        // A select, not a product: exp of a masked score may overflow.
        sc[i] = select(exp(sc[i] - lse[r]) * (dp[i] - dd[r]), 0.0, masked);
      }
    }
    for (var c = 0u; c < P.hd; c++) {
      var add = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      for (var kb = 0u; kb < KB; kb++) {
        let kc = K[kat[kb] + c];
        for (var r = 0u; r < ROWS; r++) { add[r] += sc[r * KB + kb] * kc; }
      }
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        W2[e] += add[r];
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    let t = s.row0 + r;
    if (t >= P.T) { break; }
    let at = head_at(s.bh, t);
    for (var c = 0u; c < P.hd; c++) { Q_dq[at + c] = P.scale * W2[el(r * HD + c, lane)]; }
  }
}

// Pass 2, per key row j: dv_j = Σ_i P_ij dy_i, dk_j = scale · Σ_i P_ij (dy_i · v_j − D_i) q_i.
// Queries stream KB at a time, so each dk and dv element is read and written once per KB queries.
@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
  let s = slot(wid, nwg, lid);
  if (s.bh == 0xffffffffu) { return; }
  let lane = lid.x;
  for (var r = 0u; r < ROWS; r++) {
    let at = head_at(s.bh, min(s.row0 + r, P.T - 1u));
    for (var c = 0u; c < P.hd; c++) {
      let e = el(r * HD + c, lane);
      W0[e] = P.scale * K[at + c];
      W1[e] = V[at + c];
      W2[e] = 0.0;
      W3[e] = 0.0;
    }
  }
  // Causal: query rows before the workgroup's first key see none of its keys.
  let first = select(0u, s.first, P.causal == 1u);
  for (var i0 = first; i0 < P.T; i0 += KB) {
    var qat = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    var li = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    var di = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var kb = 0u; kb < KB; kb++) {
      let i = min(i0 + kb, P.T - 1u);
      qat[kb] = head_at(s.bh, i);
      li[kb] = B_lse[s.bh * P.T + i];
      di[kb] = KV_D[s.bh * P.T + i];
    }
    // [ROWS][KB]: scores, then P; dY·V, then dS.
    var sc = array<f32, 32>();
    var dp = array<f32, 32>();
    for (var c = 0u; c < P.hd; c++) {
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        let kc = W0[e];
        let vc = W1[e];
        for (var kb = 0u; kb < KB; kb++) {
          sc[r * KB + kb] += kc * Q[qat[kb] + c];
          dp[r * KB + kb] += vc * B_dy[qat[kb] + c];
        }
      }
    }
    for (var kb = 0u; kb < KB; kb++) {
      let i = i0 + kb;
      for (var r = 0u; r < ROWS; r++) {
        let masked = i >= P.T || (P.causal == 1u && i < s.row0 + r);
        let x = r * KB + kb;
        let p = select(exp(sc[x] - li[kb]), 0.0, masked);
        sc[x] = p;
        dp[x] = p * (dp[x] - di[kb]);
      }
    }
    for (var c = 0u; c < P.hd; c++) {
      var ak = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      var av = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      for (var kb = 0u; kb < KB; kb++) {
        let qc = Q[qat[kb] + c];
        let gc = B_dy[qat[kb] + c];
        for (var r = 0u; r < ROWS; r++) {
          av[r] += sc[r * KB + kb] * gc;
          ak[r] += dp[r * KB + kb] * qc;
        }
      }
      for (var r = 0u; r < ROWS; r++) {
        let e = el(r * HD + c, lane);
        W3[e] += av[r];
        W2[e] += ak[r];
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    let t = s.row0 + r;
    if (t >= P.T) { break; }
    let at = head_at(s.bh, t);
    for (var c = 0u; c < P.hd; c++) {
      let e = el(r * HD + c, lane);
      KV_dk[at + c] = P.scale * W2[e];
      KV_dv[at + c] = W3[e];
    }
  }
}
