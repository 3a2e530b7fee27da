// Adapter dropout (docs/math.md, "Dropout on the adapter"). The keep mask is a counter-based
// hash of (seed, element index), so the backward regenerates it and no mask is ever stored. The
// index is the element's row-major position in the [T, n] input, the same in every kernel that
// uses it.

struct DropoutParams {
  count: u32,        // elements of src and dst
  seed: u32,         // mask seed: one per step, the same for its forward and backward
  threshold: u32,    // floor(p · 2³²), on the hash's 32-bit scale: an element hashing below it is dropped
  keep_scale: f32,   // 1 / (1 − p): kept elements are scaled so the expectation is unchanged
  alpha: f32,        // multiplier of masked_add's addend (dimensionless; unused by apply)
}

@group(0) @binding(0) var<uniform> P: DropoutParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

override WG: u32 = 256;
// Elements per invocation: lavapipe pays per invocation, GPUs do not mind.
override PER: u32 = 4;

// PCG's output permutation (O'Neill, "PCG: A Family of ... Random Number Generation"): a cheap
// 32-bit mix with good avalanche, matched bit for bit by src/reference/dropout.ts.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn keep_factor(i: u32) -> f32 {
  return select(0.0, P.keep_scale, pcg(i ^ pcg(P.seed)) >= P.threshold);
}

// dst = src ⊙ mask / (1 − p)
@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let base = (linear_workgroup(wid, nwg) * WG + lid) * PER;
  for (var e = 0u; e < PER; e++) {
    let i = base + e;
    if (i >= P.count) { return; }
    dst[i] = src[i] * keep_factor(i);
  }
}

// dst += alpha · src ⊙ mask / (1 − p): the adapter's share of dX, through the same mask.
@compute @workgroup_size(WG)
fn masked_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let base = (linear_workgroup(wid, nwg) * WG + lid) * PER;
  for (var e = 0u; e < PER; e++) {
    let i = base + e;
    if (i >= P.count) { return; }
    dst[i] += P.alpha * src[i] * keep_factor(i);
  }
}
