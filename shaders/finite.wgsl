// Non-finite checks on the device (host: src/ops/finite.ts): safeMerge (src/methods/common.ts)
// counts the NaN and ±Inf values of a merged weight before anything of the caller's is replaced.
//
// Values are tested by their exponent bits, not by `x != x` or comparisons with infinity: WGSL
// lets an implementation assume float values are finite, so such tests may be folded away; a bit
// pattern cannot be.

const WG: u32 = 64u;
// Elements per invocation, WG apart so that neighbouring lanes read neighbouring words.
const PER: u32 = 16u;

struct FiniteParams {
  n: u32,   // elements to check
}

@group(0) @binding(0) var<uniform> FC: FiniteParams;
@group(0) @binding(1) var<storage, read> fc_x: array<f32>;
// [count of non-finite values, 0xffffffff − the lowest index holding one]; cleared by the host.
// The index is stored complemented so that atomicMax over a zero-cleared buffer finds the minimum.
@group(0) @binding(2) var<storage, read_write> fc_out: array<atomic<u32>>;

fn non_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u; }

@compute @workgroup_size(WG)
fn count_non_finite(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lidx: u32) {
  let base = linear_workgroup(wid, nwg) * WG * PER + lidx;
  var count = 0u;
  var first = 0xffffffffu;
  for (var k = 0u; k < PER; k++) {
    let i = base + k * WG;
    if (i < FC.n && non_finite(fc_x[i])) {
      count += 1u;
      first = min(first, i);
    }
  }
  // Atomics only where something was found: a finite weight costs one read per element.
  if (count > 0u) {
    atomicAdd(&fc_out[0], count);
    atomicMax(&fc_out[1], 0xffffffffu - first);
  }
}
