// Layers of a small model (docs/nn.md): embedding, bias, GELU / tanh, layer norm and softmax
// cross-entropy, forward and backward. Host side: src/nn.ts; float64 reference: src/reference/nn.ts.
//
// Every entry point declares its own bindings (several share a binding number: WGSL allows that
// as long as no single entry point uses both), so each binds exactly the buffers it reads.
//
// No atomics, and one barrier in the whole file (the loss): reductions (bias and γ/β gradients,
// the embedding scatter-add) give one invocation a whole column or row, and the mean loss adds
// fixed per-invocation partials in order, so every result is deterministic run to run. That
// also suits CPU WebGPU (lavapipe), where barriers are the expensive part; the reduced
// dimensions here (batch sizes, layer widths) are small.

override ACT: u32 = 0u;   // 0: GELU (tanh approximation), 1: tanh
const WG: u32 = 64u;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return linear_workgroup(wid, nwg) * WG + lid.x;
}
// Kernels that give an invocation a whole row or column run few invocations (a batch, a layer
// width): small workgroups spread them over more workgroups, which CPU WebGPU runs on separate cores.
const RWG: u32 = 8u;
fn row_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return linear_workgroup(wid, nwg) * RWG + lid.x;
}

// tanh with its argument clamped: some drivers compute tanh from exp and give inf/inf = NaN past
// |x| ≈ 44; at |x| = 10 tanh is already ±1 to f32 precision.
fn tanh_safe(x: f32) -> f32 {
  return tanh(clamp(x, -10.0, 10.0));
}

const GELU_C: f32 = 0.7978845608028654;   // √(2/π)
const GELU_A: f32 = 0.044715;

// GELU's ½(1 + tanh u) is written as the logistic σ(2u) = 1/(1 + e^(−2u)), and 1 − tanh² u as
// 4σ(1 − σ) with 1 − σ = e^(−2u)·σ: the same function without the cancellation of 1 + tanh u
// (x ≪ 0) and 1 − tanh² u (|u| large) in f32. u is clamped so e^(−2u) stays finite.
fn gelu_u(x: f32) -> f32 {
  return clamp(GELU_C * (x + GELU_A * x * x * x), -40.0, 40.0);
}

fn act(x: f32) -> f32 {
  if (ACT == 1u) { return tanh_safe(x); }
  return x / (1.0 + exp(-2.0 * gelu_u(x)));
}

fn act_grad(x: f32) -> f32 {
  if (ACT == 1u) {
    // sech² x = 4e/(1 + e)², e = e^(−2|x|) ≤ 1.
    let e = exp(-2.0 * abs(x));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
  }
  let e = exp(-2.0 * gelu_u(x));
  let s = 1.0 / (1.0 + e);
  return s + 2.0 * x * (e * s) * s * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
}

// ------------------------------------------------------------------------- embedding

struct EmbedParams {
  N: u32,  // tokens: the ids' element count
  D: u32,  // embedding width, floats per table row
  V: u32,  // vocabulary size, table rows
}

@group(0) @binding(0) var<uniform> EP: EmbedParams;
@group(0) @binding(1) var<storage, read> emb_table: array<f32>;
@group(0) @binding(2) var<storage, read> emb_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> emb_out: array<f32>;

// out[t, d] = table[ids[t], d]; an id past the vocabulary gives a zero row (the host checks ids
// it uploads; this guard only keeps a bad device buffer from reading out of bounds).
@compute @workgroup_size(WG)
fn embedding_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= EP.N * EP.D) { return; }
  let t = i / EP.D;
  let id = emb_ids[t];
  emb_out[i] = select(0.0, emb_table[id * EP.D + i % EP.D], id < EP.V);
}

struct EmbedBackParams {
  N: u32,       // tokens
  D: u32,       // embedding width, floats per table row
  V: u32,       // vocabulary size, table rows
  blocks: u32,  // row blocks per column: invocations are D·blocks
  rows: u32,    // table rows per block, ⌈V / blocks⌉
}

@group(0) @binding(0) var<uniform> EB: EmbedBackParams;
@group(0) @binding(1) var<storage, read> embb_dout: array<f32>;
@group(0) @binding(2) var<storage, read> embb_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> embb_dtable: array<f32>;

// dtable[v, d] = Σ_{t: ids[t] = v} dout[t, d]. Invocation (d, b) owns column d of the table rows
// [b·rows, (b + 1)·rows): it zeroes them, then walks the tokens in order and adds those whose id
// falls in its rows. Each entry has exactly one writer and a fixed summation order: deterministic,
// no atomics. Work is blocks·N·D; the host picks blocks so that there are enough invocations.
@compute @workgroup_size(RWG)
fn embedding_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = row_index(wid, nwg, lid);
  if (i >= EB.D * EB.blocks) { return; }
  let d = i % EB.D;
  let v0 = (i / EB.D) * EB.rows;
  let v1 = min(v0 + EB.rows, EB.V);
  for (var v = v0; v < v1; v++) { embb_dtable[v * EB.D + d] = 0.0; }
  for (var t = 0u; t < EB.N; t++) {
    let id = embb_ids[t];
    if (id >= v0 && id < v1) { embb_dtable[id * EB.D + d] += embb_dout[t * EB.D + d]; }
  }
}

// ------------------------------------------------------------------------- bias and activation

struct BiasActParams {
  T: u32,  // rows (tokens)
  n: u32,  // columns (features), the bias length
}

@group(0) @binding(0) var<uniform> RP: BiasActParams;
@group(0) @binding(1) var<storage, read_write> bias_y: array<f32>;
@group(0) @binding(2) var<storage, read> bias_b: array<f32>;

// y[t, j] += b[j]
@compute @workgroup_size(WG)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= RP.T * RP.n) { return; }
  bias_y[i] += bias_b[i % RP.n];
}

@group(0) @binding(1) var<storage, read> col_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> col_db: array<f32>;

// db[j] = Σ_t g[t, j]
@compute @workgroup_size(RWG)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = row_index(wid, nwg, lid);
  if (j >= RP.n) { return; }
  var acc = 0.0;
  for (var t = 0u; t < RP.T; t++) { acc += col_g[t * RP.n + j]; }
  col_db[j] = acc;
}

@group(0) @binding(1) var<storage, read> act_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> act_y: array<f32>;

// y = f(x)
@compute @workgroup_size(WG)
fn activation_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= RP.T * RP.n) { return; }
  act_y[i] = act(act_x[i]);
}

@group(0) @binding(1) var<storage, read_write> bact_x: array<f32>;
@group(0) @binding(2) var<storage, read> bact_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> bact_y: array<f32>;

// x += b (in place: x becomes the pre-activation the backward needs); y = f(x). One pass for a
// layer's bias and activation.
@compute @workgroup_size(WG)
fn bias_activation_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= RP.T * RP.n) { return; }
  let h = bact_x[i] + bact_b[i % RP.n];
  bact_x[i] = h;
  bact_y[i] = act(h);
}

@group(0) @binding(1) var<storage, read> actb_x: array<f32>;
@group(0) @binding(2) var<storage, read> actb_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> actb_dx: array<f32>;

// dx = g ⊙ f'(x)
@compute @workgroup_size(WG)
fn activation_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= RP.T * RP.n) { return; }
  actb_dx[i] = actb_g[i] * act_grad(actb_x[i]);
}

@group(0) @binding(4) var<storage, read_write> actb_db: array<f32>;

// dx = g ⊙ f'(x) and db[j] = Σ_t dx[t, j]: one invocation per column, so the bias gradient of
// the layer comes out of the same pass.
@compute @workgroup_size(RWG)
fn activation_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = row_index(wid, nwg, lid);
  if (j >= RP.n) { return; }
  var acc = 0.0;
  for (var t = 0u; t < RP.T; t++) {
    let i = t * RP.n + j;
    let d = actb_g[i] * act_grad(actb_x[i]);
    actb_dx[i] = d;
    acc += d;
  }
  actb_db[j] = acc;
}

// ------------------------------------------------------------------------- layer norm

struct LayerNormParams {
  T: u32,    // rows (tokens), each normalised on its own
  n: u32,    // features per row
  eps: f32,  // added to the variance (units of x²)
}

@group(0) @binding(0) var<uniform> NP: LayerNormParams;
@group(0) @binding(1) var<storage, read> ln_x: array<f32>;
@group(0) @binding(2) var<storage, read> ln_gamma: array<f32>;
@group(0) @binding(3) var<storage, read> ln_beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> ln_y: array<f32>;
@group(0) @binding(5) var<storage, read_write> ln_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> ln_rstd: array<f32>;

// One invocation per row. The variance is taken about the mean (two passes), not as E[x²] − μ²,
// which cancels badly in f32 when |μ| ≫ σ.
@compute @workgroup_size(RWG)
fn layer_norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = row_index(wid, nwg, lid);
  if (t >= NP.T) { return; }
  let base = t * NP.n;
  var s = 0.0;
  for (var j = 0u; j < NP.n; j++) { s += ln_x[base + j]; }
  let mu = s / f32(NP.n);
  var q = 0.0;
  for (var j = 0u; j < NP.n; j++) {
    let c = ln_x[base + j] - mu;
    q += c * c;
  }
  let r = inverseSqrt(q / f32(NP.n) + NP.eps);
  for (var j = 0u; j < NP.n; j++) {
    ln_y[base + j] = (ln_x[base + j] - mu) * r * ln_gamma[j] + ln_beta[j];
  }
  ln_mean[t] = mu;
  ln_rstd[t] = r;
}

// The backward kernels need no eps: the forward's rstd carries it.
struct LayerNormBackParams {
  T: u32,  // rows (tokens)
  n: u32,  // features per row
}

@group(0) @binding(0) var<uniform> NB: LayerNormBackParams;
@group(0) @binding(1) var<storage, read> lnb_x: array<f32>;
@group(0) @binding(2) var<storage, read> lnb_gamma: array<f32>;
@group(0) @binding(3) var<storage, read> lnb_g: array<f32>;
@group(0) @binding(4) var<storage, read> lnb_mean: array<f32>;
@group(0) @binding(5) var<storage, read> lnb_rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> lnb_dx: array<f32>;

// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)), ĝ = g ⊙ γ, x̂ = (x − μ)·rstd. One invocation per row.
@compute @workgroup_size(RWG)
fn layer_norm_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = row_index(wid, nwg, lid);
  if (t >= NB.T) { return; }
  let base = t * NB.n;
  let mu = lnb_mean[t];
  let r = lnb_rstd[t];
  var s1 = 0.0;
  var s2 = 0.0;
  for (var j = 0u; j < NB.n; j++) {
    let gh = lnb_g[base + j] * lnb_gamma[j];
    s1 += gh;
    s2 += gh * (lnb_x[base + j] - mu) * r;
  }
  let m1 = s1 / f32(NB.n);
  let m2 = s2 / f32(NB.n);
  for (var j = 0u; j < NB.n; j++) {
    let xh = (lnb_x[base + j] - mu) * r;
    lnb_dx[base + j] = r * (lnb_g[base + j] * lnb_gamma[j] - m1 - xh * m2);
  }
}

@group(0) @binding(1) var<storage, read> lnp_x: array<f32>;
@group(0) @binding(2) var<storage, read> lnp_g: array<f32>;
@group(0) @binding(3) var<storage, read> lnp_mean: array<f32>;
@group(0) @binding(4) var<storage, read> lnp_rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> lnp_dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> lnp_dbeta: array<f32>;

// dγ[j] = Σ_t g[t, j]·x̂[t, j], dβ[j] = Σ_t g[t, j]. One invocation per column.
@compute @workgroup_size(RWG)
fn layer_norm_backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = row_index(wid, nwg, lid);
  if (j >= NB.n) { return; }
  var dg = 0.0;
  var db = 0.0;
  for (var t = 0u; t < NB.T; t++) {
    let g = lnp_g[t * NB.n + j];
    dg += g * (lnp_x[t * NB.n + j] - lnp_mean[t]) * lnp_rstd[t];
    db += g;
  }
  lnp_dgamma[j] = dg;
  lnp_dbeta[j] = db;
}

// ------------------------------------------------------------------------- softmax cross-entropy

struct CrossEntropyParams {
  T: u32,      // rows (tokens)
  V: u32,      // classes (vocabulary) per row
  inv_T: f32,  // 1 / T, the mean's weight, from the host's float64
}

@group(0) @binding(0) var<uniform> LP: CrossEntropyParams;
@group(0) @binding(1) var<storage, read> ce_logits: array<f32>;
@group(0) @binding(2) var<storage, read> ce_targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> ce_dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> ce_loss: array<f32>;

var<workgroup> ce_part: array<f32, WG>;

// One workgroup for the whole batch, so the mean needs no second dispatch: invocation i takes rows
// i, i + 64, ..., and invocation 0 adds the 64 partial sums in order (deterministic; one barrier).
// Per row: ℓ = logsumexp(z) − z[target] with the row maximum subtracted before exp, and
// dlogits = (softmax(z) − onehot(target)) / T (the gradient of the mean over rows).
// A target past the vocabulary makes the loss NaN, so it cannot pass unnoticed.
@compute @workgroup_size(WG)
fn softmax_cross_entropy(@builtin(local_invocation_index) lidx: u32) {
  var acc = 0.0;
  for (var t = lidx; t < LP.T; t += WG) {
    let base = t * LP.V;
    var mx = ce_logits[base];
    for (var j = 1u; j < LP.V; j++) { mx = max(mx, ce_logits[base + j]); }
    var s = 0.0;
    for (var j = 0u; j < LP.V; j++) { s += exp(ce_logits[base + j] - mx); }
    let tgt = ce_targets[t];
    let inv_s = 1.0 / s;
    for (var j = 0u; j < LP.V; j++) {
      let p = exp(ce_logits[base + j] - mx) * inv_s;
      ce_dlogits[base + j] = (p - select(0.0, 1.0, j == tgt)) * LP.inv_T;
    }
    if (tgt < LP.V) {
      acc += log(s) + mx - ce_logits[base + tgt];
    } else {
      // Built from a runtime value: WGSL rejects a NaN constant.
      acc += bitcast<f32>(0x7fc00000u | (tgt & 0u));
    }
  }
  ce_part[lidx] = acc;
  workgroupBarrier();
  if (lidx == 0u) {
    var total = 0.0;
    for (var i = 0u; i < WG; i++) { total += ce_part[i]; }
    ce_loss[0] = total * LP.inv_T;
  }
}

// ------------------------------------------------------------------------- residual and positions

struct ResidualParams {
  count: u32,  // elements of y and x
}

@group(0) @binding(0) var<uniform> SP: ResidualParams;
@group(0) @binding(1) var<storage, read_write> res_y: array<f32>;
@group(0) @binding(2) var<storage, read> res_x: array<f32>;

// y += x: a residual connection in the forward, and the sum of a branch's and the skip path's
// gradients in the backward.
@compute @workgroup_size(WG)
fn residual_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= SP.count) { return; }
  res_y[i] += res_x[i];
}

struct PositionParams {
  N: u32,  // rows of x: batch · T
  D: u32,  // embedding width
  T: u32,  // sequence length: row i has position i % T
  P: u32,  // rows of the position table (the model's context), ≥ T
}

@group(0) @binding(0) var<uniform> PP: PositionParams;
@group(0) @binding(1) var<storage, read_write> pos_x: array<f32>;
@group(0) @binding(2) var<storage, read> pos_table: array<f32>;

// x[i, d] += pos[i % T, d]: learned absolute positions added to the token embeddings in place.
@compute @workgroup_size(WG)
fn add_positions(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= PP.N * PP.D) { return; }
  let t = (i / PP.D) % PP.T;
  pos_x[i] += pos_table[t * PP.D + i % PP.D];
}

@group(0) @binding(1) var<storage, read> posg_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> posg_dpos: array<f32>;

// dpos[t, d] = Σ_b g[b·T + t, d] for t < T, 0 for the table rows past T. One invocation per
// table entry, adding the batch rows in order: deterministic, no atomics.
@compute @workgroup_size(WG)
fn position_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= PP.P * PP.D) { return; }
  let t = i / PP.D;
  let d = i % PP.D;
  var acc = 0.0;
  if (t < PP.T) {
    for (var r = t; r < PP.N; r += PP.T) { acc += posg_g[r * PP.D + d]; }
  }
  posg_dpos[i] = acc;
}
