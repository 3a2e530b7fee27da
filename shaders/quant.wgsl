// Base-weight formats (host: src/quant/index.ts; layouts: src/base.ts, docs/quantization.md):
// f32 → f16 packing, bitsandbytes' NF4 quantizer in two passes (block absmax, then codes),
// dequantization to f32, and the error of a requantization.
//
// Every rounding here is done on bit patterns with integer arithmetic: WGSL lets a float division
// be 2.5 ULP off, leaves the rounding of an f32 → f16 conversion to the implementation and lets
// subnormals be flushed, and each of those would make the result depend on the adapter. The one
// float operation left is the NF4 product value · (1/absmax), which WGSL rounds correctly.

const WG: u32 = 64u;

// Read the input as f16 pairs (a BaseWeight's data) instead of f32 words.
override F16_IN: bool = false;
// f16_pack: write the packed words; false checks the range alone (a merge checks before it
// overwrites the caller's weight).
override WRITE: bool = true;

struct QuantParams {
  n: u32,       // values
  block: u32,   // NF4 block size, values (a power of two, 32–4096)
  chunk: u32,   // nf4_absmax: values per invocation (a divisor of block)
  count: u32,   // invocations that have work
}

@group(0) @binding(0) var<uniform> QP: QuantParams;

// The 16 NF4 levels and, for k = 0..14, the largest f32 that still takes code k (the exact
// midpoint of levels k and k+1 rounded down), as f32 bits; src/quant/reference.ts derives both
// and test/quant.test.ts checks these copies against it.
const NF4_BITS = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u);
const NF4_LOWER = array<u32, 15>(
  0xbf591cd9u, 0xbf1c5271u, 0xbeeb8480u, 0xbeadea77u, 0xbe703cedu, 0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu,
  0x3df64862u, 0x3e5067e0u, 0x3e9582d4u, 0x3ec753f9u, 0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u);

// The absmax range the rule is exact in on every adapter: bits of 2^-120 and of 2^126. Below, a
// block's values may be subnormal and flushed; from 2^126 up, 1/absmax is itself subnormal.
const ABSMAX_LOW: u32 = 0x03800000u;
const ABSMAX_HIGH: u32 = 0x7e800000u;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lidx: u32) -> u32 {
  return linear_workgroup(wid, nwg) * WG + lidx;
}

// IEEE half bits → f32 bits, exactly (subnormal halves become normal f32 values).
fn half_to_bits(h: u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 31u) { return s | 0x7f800000u | (m << 13u); }
  if (e == 0u) {
    if (m == 0u) { return s; }
    let p = 31u - countLeadingZeros(m);   // m = 2^p · 1.f, value = m · 2^-24
    return s | ((p + 103u) << 23u) | ((m << (23u - p)) & 0x7fffffu);
  }
  return s | ((e + 112u) << 23u) | (m << 13u);
}

// f32 bits of input value i from the words of an f32 or f16 (F16_IN) input.
fn value_bits(word: u32, i: u32) -> u32 {
  if (F16_IN) { return half_to_bits((word >> ((i & 1u) * 16u)) & 0xffffu); }
  return word;
}
fn word_of(i: u32) -> u32 { return select(i, i >> 1u, F16_IN); }

fn non_finite(bits: u32) -> bool { return (bits & 0x7f800000u) == 0x7f800000u; }

// ------------------------------------------------------------------ f32 → f16

@group(0) @binding(1) var<storage, read> fp_x: array<u32>;          // f32 values as bits
@group(0) @binding(2) var<storage, read_write> fp_out: array<u32>;  // two halves a word, value 2i low
// [values out of range (non-finite or |v| > 65504), 0xffffffff − the lowest index holding one]
@group(0) @binding(3) var<storage, read_write> fp_status: array<atomic<u32>>;

// Round to nearest, ties to even; returns 0x10000 for a value f16 cannot hold.
fn f32_to_half(u: u32) -> u32 {
  let s = (u >> 16u) & 0x8000u;
  let a = u & 0x7fffffffu;
  if (a > 0x477fe000u) { return 0x10000u; }      // past 65504, ±Inf, NaN
  let e = a >> 23u;
  let m = (a & 0x7fffffu) | 0x800000u;
  if (e >= 113u) {                                // normal half: drop 13 bits; a carry may bump the exponent
    let q = ((e - 112u) << 10u) | ((a & 0x7fffffu) >> 13u);
    let rem = a & 0x1fffu;
    return s | (q + select(0u, 1u, rem > 0x1000u || (rem == 0x1000u && (q & 1u) == 1u)));
  }
  if (e < 102u) { return s; }                     // below 2^-25 (f32 subnormals too): rounds to ±0
  let sh = 126u - e;                              // value = m · 2^(e − 150) in units of 2^-24: m >> sh
  let q = m >> sh;
  let rem = m & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  return s | (q + select(0u, 1u, rem > half || (rem == half && (q & 1u) == 1u)));
}

@compute @workgroup_size(WG)
fn f16_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lidx: u32) {
  let w = index(wid, nwg, lidx);
  if (w >= QP.count) { return; }
  var word = 0u;
  for (var k = 0u; k < 2u; k++) {
    let i = 2u * w + k;
    if (i < QP.n) {
      let h = f32_to_half(fp_x[i]);
      if (h == 0x10000u) {
        atomicAdd(&fp_status[0], 1u);
        atomicMax(&fp_status[1], 0xffffffffu - i);
      }
      word |= (h & 0xffffu) << (16u * k);
    }
  }
  if (WRITE) { fp_out[w] = word; }
}

// ------------------------------------------------------------------ NF4 quantizer

@group(0) @binding(1) var<storage, read> qa_x: array<u32>;
// One per block, cleared by the host; |value| bits order as the values do, so atomicMax on bits
// is the largest |value|, exactly.
@group(0) @binding(2) var<storage, read_write> qa_absmax: array<atomic<u32>>;
// [non-finite values, 0xffffffff − lowest index of one, bad blocks, 0xffffffff − lowest bad block]
@group(0) @binding(3) var<storage, read_write> qa_status: array<atomic<u32>>;

// Pass 1: invocation g takes values [g·chunk, (g+1)·chunk), all in block g·chunk / block.
@compute @workgroup_size(WG)
fn nf4_absmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lidx: u32) {
  let g = index(wid, nwg, lidx);
  if (g >= QP.count) { return; }
  let start = g * QP.chunk;
  let end = min(start + QP.chunk, QP.n);
  var amax = 0u;
  var bad = 0u;
  var first = 0xffffffffu;
  for (var i = start; i < end; i++) {
    let b = value_bits(qa_x[word_of(i)], i) & 0x7fffffffu;
    if (non_finite(b)) {
      bad += 1u;
      first = min(first, i);
    }
    amax = max(amax, b);
  }
  if (bad > 0u) {
    atomicAdd(&qa_status[0], bad);
    atomicMax(&qa_status[1], 0xffffffffu - first);
  }
  if (amax > 0u) { atomicMax(&qa_absmax[start / QP.block], amax); }
}

@group(0) @binding(1) var<storage, read> qc_x: array<u32>;
@group(0) @binding(2) var<storage, read> qc_absmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> qc_codes: array<u32>;
@group(0) @binding(4) var<storage, read_write> qc_status: array<atomic<u32>>;

// The f32 nearest 1/a (ties to even) for a positive a in [2^-126, 2^126), from the bits of a:
// a = ma · 2^(e − 150) with ma the 24-bit significand, so 1/a = (2^47 / ma) · 2^(103 − e); the
// quotient's 24 bits come from a long division whose remainder stays below 2^25.
fn recip_bits(a: u32) -> u32 {
  let e = a >> 23u;
  let ma = (a & 0x7fffffu) | 0x800000u;
  if (ma == 0x800000u) { return (254u - e) << 23u; }   // a power of two: exact
  var r = 0x800000u;
  var q = 0u;
  for (var k = 0u; k < 24u; k++) {
    r <<= 1u;
    q <<= 1u;
    if (r >= ma) {
      r -= ma;
      q |= 1u;
    }
  }
  // q in (2^23, 2^24); rounding up to 2^24 carries into the exponent through the addition below.
  q += select(0u, 1u, 2u * r > ma || (2u * r == ma && (q & 1u) == 1u));
  return ((253u - e) << 23u) + (q - 0x800000u);
}

fn nf4_code(x: f32) -> u32 {
  var c = 0u;
  for (var k = 0u; k < 15u; k++) { c += select(0u, 1u, x > bitcast<f32>(NF4_LOWER[k])); }
  return c;
}

// Pass 2: invocation w writes code word w (values 8w … 8w+7, one block: blocks are multiples of 8).
@compute @workgroup_size(WG)
fn nf4_codes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lidx: u32) {
  let w = index(wid, nwg, lidx);
  if (w >= QP.count) { return; }
  let i0 = 8u * w;
  let blk = i0 / QP.block;
  let a = qc_absmax[blk];
  var word = 0u;
  if (a == 0u) {
    // An all-zero block: every code 7, the level 0 (bitsandbytes' own 0 · (1/0) is a NaN).
    for (var k = 0u; k < 8u; k++) {
      if (i0 + k < QP.n) { word |= 7u << (8u * (k >> 1u) + 4u * (1u - (k & 1u))); }
    }
  } else if (a < ABSMAX_LOW || a >= ABSMAX_HIGH) {
    if (i0 % QP.block == 0u) {
      atomicAdd(&qc_status[2], 1u);
      atomicMax(&qc_status[3], 0xffffffffu - blk);
    }
  } else {
    let inv = bitcast<f32>(recip_bits(a));
    for (var k = 0u; k < 8u; k++) {
      let i = i0 + k;
      if (i < QP.n) {
        let c = nf4_code(bitcast<f32>(value_bits(qc_x[word_of(i)], i)) * inv);
        word |= c << (8u * (k >> 1u) + 4u * (1u - (k & 1u)));
      }
    }
  }
  qc_codes[w] = word;
}

// ------------------------------------------------------------------ dequantization

@group(0) @binding(1) var<storage, read> dq_data: array<u32>;
@group(0) @binding(2) var<storage, read_write> dq_out: array<u32>;   // f32 bits

@compute @workgroup_size(WG)
fn dequant_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let w = index(wid, nwg, lidx);
  if (w >= QP.count) { return; }
  let word = dq_data[w];
  dq_out[2u * w] = half_to_bits(word & 0xffffu);
  if (2u * w + 1u < QP.n) { dq_out[2u * w + 1u] = half_to_bits(word >> 16u); }
}

@group(0) @binding(1) var<storage, read> dn_codes: array<u32>;
@group(0) @binding(2) var<storage, read> dn_absmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> dn_out: array<f32>;

fn nf4_value(word: u32, k: u32, amax: f32) -> f32 {
  let c = (word >> (8u * (k >> 1u) + 4u * (1u - (k & 1u)))) & 15u;
  return bitcast<f32>(NF4_BITS[c]) * amax;
}

@compute @workgroup_size(WG)
fn dequant_nf4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lidx: u32) {
  let w = index(wid, nwg, lidx);
  if (w >= QP.count) { return; }
  let word = dn_codes[w];
  let amax = dn_absmax[8u * w / QP.block];
  for (var k = 0u; k < 8u; k++) {
    let i = 8u * w + k;
    if (i < QP.n) { dn_out[i] = nf4_value(word, k, amax); }
  }
}

// ------------------------------------------------------------------ requantization error

@group(0) @binding(1) var<storage, read> qe_exact: array<f32>;
@group(0) @binding(2) var<storage, read> qe_codes: array<u32>;
@group(0) @binding(3) var<storage, read> qe_absmax: array<f32>;
// [bits of max |dequantized − exact|, bits of max |exact|], cleared by the host.
@group(0) @binding(4) var<storage, read_write> qe_out: array<atomic<u32>>;

@compute @workgroup_size(WG)
fn nf4_error(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lidx: u32) {
  let w = index(wid, nwg, lidx);
  if (w >= QP.count) { return; }
  let word = qe_codes[w];
  let amax = qe_absmax[8u * w / QP.block];
  var err = 0.0;
  var scale = 0.0;
  for (var k = 0u; k < 8u; k++) {
    let i = 8u * w + k;
    if (i < QP.n) {
      err = max(err, abs(nf4_value(word, k, amax) - qe_exact[i]));
      scale = max(scale, abs(qe_exact[i]));
    }
  }
  atomicMax(&qe_out[0], bitcast<u32>(err));
  atomicMax(&qe_out[1], bitcast<u32>(scale));
}
