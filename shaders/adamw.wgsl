// AdamW with global-norm gradient clipping (docs/nn.md). Host side: src/optim.ts; float64
// reference: src/reference/optim.ts.
//
// The host packs every trainable buffer into one flat parameter / gradient arena (buffer copies,
// which cost far less than dispatches), so a whole step is three dispatches:
//   sum_squares   partial[c] = (e, Σ (g·2^−e)², NaNs, Infs) over chunk c of the arena
//   clip_scale    state = [‖g‖, clip scale, its exponent shift, non-finite gradients, skipped steps]
//   adamw_update  reads the state: the norm never visits the host
// (or, for arenas past the binding limit, one sum_squares and one adamw_update per buffer).
// Partial sums are added in slot order by one invocation, so the norm is deterministic.
//
// The sum of squares is scaled by a power of two per invocation (LAPACK's nrm2 does the same with
// the running maximum), so a finite gradient of 1e20 no longer overflows f32 (its square does):
// scaling by 2^−e is exact, so the result is the unscaled sum wherever that one did not overflow.
// NaN and ±Inf are found by their exponent bits (WGSL lets compilers assume floats are finite, so
// `x != x` may be folded away) and counted apart from the sum, which stays finite.

const WG: u32 = 64u;
// Elements per sum_squares workgroup: each invocation strides over CHUNK / WG of them.
const CHUNK: u32 = 4096u;
// Floats per partial-sum slot: exponent, scaled sum, NaN count, Inf count.
const SLOT: u32 = 4u;
// The exponent of an all-zero chunk: below any other, so it never sets a combined exponent.
const E_ZERO: i32 = -100000;

fn non_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u; }
fn is_nan(x: f32) -> bool { return non_finite(x) && (bitcast<u32>(x) & 0x007fffffu) != 0u; }

// The exponent e with max / 2^e in [0.5, 1), clamped to ±126 so that ldexp(·, −e) stays defined
// (max ≥ 2^126 then scales to at most 4, and subnormal maxima to at most 1).
fn scale_exponent(max_abs: f32) -> i32 {
  if (max_abs == 0.0) { return E_ZERO; }
  return clamp(frexp(max_abs).exp, -126, 126);
}

// q·2^(2(e − to)): a sum of squares scaled by 2^−e, rescaled to 2^−to (to ≥ e).
fn rescale(q: f32, e: i32, to: i32) -> f32 {
  if (e == to) { return q; }
  return ldexp(q, max(2 * (e - to), -300));
}

struct SumSquaresParams {
  n: u32,     // gradient elements in this binding
  slot: u32,  // the first partial-sum slot this binding writes (one per CHUNK elements)
}

@group(0) @binding(0) var<uniform> SQ: SumSquaresParams;
@group(0) @binding(1) var<storage, read> sq_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_partial: array<f32>;   // [slot][SLOT]

var<workgroup> sq_e: array<i32, WG>;
var<workgroup> sq_q: array<f32, WG>;
var<workgroup> sq_nan: array<u32, WG>;
var<workgroup> sq_inf: array<u32, WG>;

// Workgroup c reduces elements [c·CHUNK, (c + 1)·CHUNK) into slot `slot + c`: each invocation
// finds the largest finite |g| of its elements, sums their squares scaled by its own 2^−e, and
// pairs of (e, q) are merged up the tree at the larger exponent.
@compute @workgroup_size(WG)
fn sum_squares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let c = linear_workgroup(wid, nwg);
  let start = c * CHUNK;
  // Uniform across the workgroup, so the return cannot split a barrier.
  if (start >= SQ.n) { return; }
  let end = min(start + CHUNK, SQ.n);
  var mx = 0.0;
  var nans = 0u;
  var infs = 0u;
  for (var i = start + lidx; i < end; i += WG) {
    let g = sq_g[i];
    if (non_finite(g)) {
      if (is_nan(g)) { nans += 1u; } else { infs += 1u; }
    } else {
      mx = max(mx, abs(g));
    }
  }
  let e = scale_exponent(mx);
  var s = 0.0;
  if (mx > 0.0) {
    for (var i = start + lidx; i < end; i += WG) {
      let g = sq_g[i];
      if (!non_finite(g)) {
        let h = ldexp(g, -e);
        s += h * h;
      }
    }
  }
  sq_e[lidx] = e;
  sq_q[lidx] = s;
  sq_nan[lidx] = nans;
  sq_inf[lidx] = infs;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lidx < stride) {
      let e1 = sq_e[lidx];
      let e2 = sq_e[lidx + stride];
      let to = max(e1, e2);
      sq_q[lidx] = rescale(sq_q[lidx], e1, to) + rescale(sq_q[lidx + stride], e2, to);
      sq_e[lidx] = to;
      sq_nan[lidx] += sq_nan[lidx + stride];
      sq_inf[lidx] += sq_inf[lidx + stride];
    }
    workgroupBarrier();
  }
  if (lidx == 0u) {
    let at = (SQ.slot + c) * SLOT;
    sq_partial[at] = f32(sq_e[0]);
    sq_partial[at + 1u] = sq_q[0];
    sq_partial[at + 2u] = f32(sq_nan[0]);
    sq_partial[at + 3u] = f32(sq_inf[0]);
  }
}

struct ClipParams {
  slots: u32,      // partial sums to add
  max_norm: f32,   // L2 norm to clip to (3.4e38 when only tracking the norm)
  nan_bits: u32,   // 0x7fc00000: a NaN or Inf literal is a shader-creation error in WGSL
  skip: u32,       // 1: skipNonFinite, count the steps skipped in state[4]
}

@group(0) @binding(0) var<uniform> CP: ClipParams;
@group(0) @binding(1) var<storage, read> cl_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> cl_state: array<f32>;

// state[0] ‖g‖: NaN when any gradient is NaN, +Inf when any is ±Inf or the norm passes f32.
// state[1] the clip scale, as torch.nn.utils.clip_grad_norm_: min(1, max_norm / (‖g‖ + 1e-6)),
//          so NaN for a NaN norm (every update becomes NaN, as in PyTorch and the reference;
//          never the unclipped update) and 0 for an infinite one.
// state[2] a power-of-two shift the update applies before state[1]: 0, except when the norm of
//          finite gradients passes f32 (‖g‖ > 3.4e38), where g·max_norm/‖g‖ = 2^−e·g·max_norm/√q.
// state[3] non-finite gradients this step; state[4] steps skipped so far (skipNonFinite).
@compute @workgroup_size(1)
fn clip_scale(@builtin(workgroup_id) wid: vec3<u32>) {
  var e = E_ZERO;
  var nans = 0.0;
  var infs = 0.0;
  for (var i = 0u; i < CP.slots; i++) {
    e = max(e, i32(cl_partial[i * SLOT]));
    nans += cl_partial[i * SLOT + 2u];
    infs += cl_partial[i * SLOT + 3u];
  }
  var q = 0.0;
  for (var i = 0u; i < CP.slots; i++) { q += rescale(cl_partial[i * SLOT + 1u], i32(cl_partial[i * SLOT]), e); }
  let nan = bitcast<f32>(CP.nan_bits);
  let root = sqrt(q);
  var norm = 0.0;
  var scale = 1.0;
  var shift = 0.0;
  if (nans > 0.0) {
    norm = nan;
    scale = nan;
  } else if (infs > 0.0) {
    norm = bitcast<f32>(CP.nan_bits & 0x7f800000u);   // +Inf
    scale = 0.0;
  } else if (q > 0.0) {
    let big = ldexp(root, e);
    if (non_finite(big)) {
      norm = big;
      scale = CP.max_norm / root;
      shift = f32(-e);
    } else {
      norm = big;
      scale = min(1.0, CP.max_norm / (big + 1e-6));
    }
  }
  cl_state[0] = norm;
  cl_state[1] = scale;
  cl_state[2] = shift;
  cl_state[3] = nans + infs;
  if (CP.skip == 1u && nans + infs > 0.0) { cl_state[4] += 1.0; }
}

struct AdamWParams {
  n: u32,          // elements in this binding
  clip: u32,       // 1: multiply gradients by state[1] (after the shift state[2])
  skip: u32,       // 1: skipNonFinite, change nothing when state[3] counts a non-finite gradient
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
  // The skipped step of mixed-precision trainers: parameters, moments and decay all untouched.
  if (AP.skip == 1u && ad_state[3] > 0.0) { return; }
  var g = ad_grad[i];
  if (AP.clip == 1u) {
    let shift = i32(ad_state[2]);
    if (shift != 0) { g = ldexp(g, shift); }
    g *= ad_state[1];
  }
  let m = AP.beta1 * ad_m[i] + AP.omb1 * g;
  let v = AP.beta2 * ad_v[i] + AP.omb2 * g * g;
  ad_m[i] = m;
  ad_v[i] = v;
  let mhat = m / AP.bc1;
  let vhat = v / AP.bc2;
  ad_param[i] = ad_param[i] * select(1.0, 1.0 - AP.decay, i < AP.decay_end) - AP.lr * mhat / (sqrt(vhat) + AP.eps);
}
