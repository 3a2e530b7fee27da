// AdamW with global-norm gradient clipping (docs/nn.md). Host side: src/optim.ts; float64
// reference: src/reference/optim.ts.
//
// The host packs every trainable buffer into one flat parameter / gradient arena (buffer copies,
// which cost far less than dispatches), so a whole step is three dispatches:
//   sum_squares   partial[c] = Σ g² over chunk c of the arena
//   clip_scale    state = [‖g‖, min(1, max_norm / (‖g‖ + 1e-6))]
//   adamw_update  reads state[1]: the norm never visits the host
// (or, for arenas past the binding limit, one sum_squares and one adamw_update per buffer).
// Partial sums are added in slot order by one invocation, so the norm is deterministic.

const WG: u32 = 64u;
// Elements per sum_squares workgroup: each invocation strides over CHUNK / WG of them.
const CHUNK: u32 = 4096u;

struct SumSquaresParams {
  n: u32,     // gradient elements in this binding
  slot: u32,  // the first partial-sum slot this binding writes (one per CHUNK elements)
}

@group(0) @binding(0) var<uniform> SQ: SumSquaresParams;
@group(0) @binding(1) var<storage, read> sq_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_partial: array<f32>;

var<workgroup> sq_acc: array<f32, WG>;

// Workgroup c sums g² over elements [c·CHUNK, (c + 1)·CHUNK) into partial[slot + c].
@compute @workgroup_size(WG)
fn sum_squares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let c = linear_workgroup(wid, nwg);
  let start = c * CHUNK;
  // Uniform across the workgroup, so the return cannot split a barrier.
  if (start >= SQ.n) { return; }
  let end = min(start + CHUNK, SQ.n);
  var s = 0.0;
  for (var i = start + lidx; i < end; i += WG) {
    let g = sq_g[i];
    s += g * g;
  }
  sq_acc[lidx] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lidx < stride) { sq_acc[lidx] += sq_acc[lidx + stride]; }
    workgroupBarrier();
  }
  if (lidx == 0u) { sq_partial[SQ.slot + c] = sq_acc[0]; }
}

struct ClipParams {
  slots: u32,      // partial sums to add
  max_norm: f32,   // L2 norm to clip to (3.4e38 when only tracking the norm)
}

@group(0) @binding(0) var<uniform> CP: ClipParams;
@group(0) @binding(1) var<storage, read> cl_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> cl_state: array<f32>;

// As torch.nn.utils.clip_grad_norm_: scale = min(1, max_norm / (‖g‖ + 1e-6)).
@compute @workgroup_size(1)
fn clip_scale(@builtin(workgroup_id) wid: vec3<u32>) {
  var s = 0.0;
  for (var i = 0u; i < CP.slots; i++) { s += cl_partial[i]; }
  let norm = sqrt(s);
  cl_state[0] = norm;
  cl_state[1] = min(1.0, CP.max_norm / (norm + 1e-6));
}

struct AdamWParams {
  n: u32,          // elements in this binding
  clip: u32,       // 1: multiply gradients by state[1]
  lr: f32,         // this step's learning rate (parameter units per normalised gradient)
  beta1: f32,
  beta2: f32,
  // 1 − β from the host's float64: 1.0 − f32(0.999) is off by 1.3e-5 relative, which v would keep.
  omb1: f32,
  omb2: f32,
  eps: f32,        // added to √v̂ (gradient units)
  decay: f32,      // lr · weight_decay, the fraction of each weight removed this step
  decay_end: u32,  // elements [0, decay_end) decay; the host puts buffers without decay last
  bc1: f32,        // 1 − β1^t
  bc2: f32,        // 1 − β2^t
}

@group(0) @binding(0) var<uniform> AP: AdamWParams;
@group(0) @binding(1) var<storage, read_write> ad_param: array<f32>;
@group(0) @binding(2) var<storage, read> ad_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> ad_v: array<f32>;
@group(0) @binding(5) var<storage, read> ad_state: array<f32>;

// Decoupled weight decay (Loshchilov & Hutter): the decay shrinks the weight directly and never
// enters the moments. p ← p·(1 − lr·λ) − lr·m̂/(√v̂ + ε), m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t).
@compute @workgroup_size(WG)
fn adamw_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear_workgroup(wid, nwg) * WG + lid.x;
  if (i >= AP.n) { return; }
  var g = ad_grad[i];
  if (AP.clip == 1u) { g *= ad_state[1]; }
  let m = AP.beta1 * ad_m[i] + AP.omb1 * g;
  let v = AP.beta2 * ad_v[i] + AP.omb2 * g * g;
  ad_m[i] = m;
  ad_v[i] = v;
  let mhat = m / AP.bc1;
  let vhat = v / AP.bc2;
  ad_param[i] = ad_param[i] * select(1.0, 1.0 - AP.decay, i < AP.decay_end) - AP.lr * mhat / (sqrt(vhat) + AP.eps);
}
