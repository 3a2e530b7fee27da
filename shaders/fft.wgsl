// Batched complex FFT of a power-of-two length n (host: src/ops/fft.ts; used by LoRMA_π,
// docs/lorma.md). The data is laid out [element][batch]: element k of transform b is
// fx[k·stride + b], stride ≥ nb. Each invocation runs one whole transform in place, so there is
// no workgroup memory and no barrier; at every step all invocations touch the same element of
// neighbouring transforms (contiguous words: vector loads on llvmpipe, coalesced on GPUs) and read
// the same twiddle (uniform). On llvmpipe a stride of a power of two (2048 transforms: 16 KiB) costs 1.7×
// the time of a padded one (2056): the four points of a butterfly then fall on the same cache sets
// and alias in the store buffer; src/ops/fft.ts pads (fftStride).
//
//   forward (INVERSE = false)  decimation in frequency: natural order in, bit-reversed order out,
//                              X[k] = Σ_j x[j]·exp(−2πi·jk/n)
//   inverse (INVERSE = true)   decimation in time: bit-reversed order in, natural order out,
//                              x[j] = Σ_k X[k]·exp(+2πi·jk/n)  (not divided by n)
//
// So a forward transform, a pointwise product of spectra (all in the same bit-reversed order)
// and an inverse transform need no permutation pass. Stages are radix 8 (three radix-2 stages
// fused, in registers) from the whole length down, then radix 4, and radix 2 only at n = 2 and 16,
// so the outputs come in the order of the radix-2 algorithm (bit-reversed). The transform is bound
// by its loads and stores on llvmpipe (dropping every twiddle product left its time unchanged), so
// what counts is passes over the data: 4 at n = 1024 (radix 8 took 0.69–0.87 of the radix-4
// time; radix 16 and 32 were slower, their points spill the registers).
// Within a stage the butterflies run twiddle by twiddle (j outer, blocks inner), so each twiddle
// is read once per stage, not once per block (measured: 15 % less time at n = 1024).
// Both directions share the stage loops; only the butterflies differ, picked by the INVERSE
// override, which is fixed per pipeline, so each pipeline compiles one kind.

override INVERSE: bool = false;
const WG: u32 = 64u;

struct FftParams {
  n: u32,        // transform length, a power of two
  nb: u32,       // transforms
  stride: u32,   // complex values from one element of a transform to the next (≥ nb)
  partial: u32,  // 1: the forward leaves out its first stage, the inverse its last (a caller's kernel
                 // runs that radix-8 stage itself, fused with its own products; log2(n) ≥ 3)
}

@group(0) @binding(0) var<uniform> FP: FftParams;
@group(0) @binding(1) var<storage, read> tw: array<vec2<f32>>;           // tw[m] = exp(−2πi·m/n), m < n
@group(0) @binding(2) var<storage, read_write> fx: array<vec2<f32>>;   // [n][stride]

fn radix2(n: u32, stride: u32, b: u32) {
  for (var s = 0u; s < n; s += 2u) {
    let i0 = s * stride + b;
    let x0 = fx[i0];
    let x1 = fx[i0 + stride];
    fx[i0] = x0 + x1;
    fx[i0 + stride] = x0 - x1;
  }
}

// Three radix-2 stages (block lengths L, L/2, L/4) fused: the eight points j + k·L/8 of each block
// stay in registers (dif8/dit8, shaders/common.wgsl). Twiddle w_L^m = tw[m·step], step = n/L.
fn radix8_stage(L: u32, step: u32, n: u32, stride: u32, b: u32) {
  let E = L / 8u;
  let es = E * stride;
  for (var j = 0u; j < E; j++) {
    let w = array<vec2<f32>, 7>(tw[j * step], tw[(j + E) * step], tw[(j + 2u * E) * step], tw[(j + 3u * E) * step],
                                tw[2u * j * step], tw[2u * (j + E) * step], tw[4u * j * step]);
    for (var s = 0u; s < n; s += L) {
      let i0 = (s + j) * stride + b;
      var x = array<vec2<f32>, 8>(fx[i0], fx[i0 + es], fx[i0 + 2u * es], fx[i0 + 3u * es],
                                  fx[i0 + 4u * es], fx[i0 + 5u * es], fx[i0 + 6u * es], fx[i0 + 7u * es]);
      if (!INVERSE) { dif8(&x, w); } else { dit8(&x, w); }
      for (var k = 0u; k < 8u; k++) { fx[i0 + k * es] = x[k]; }
    }
  }
}

// One radix-4 stage over blocks of length L (quarter Q = L/4, its elements qs = Q·stride words
// apart); twiddle w_L^m = tw[m·step], step = n/L.
fn radix4_stage(L: u32, step: u32, n: u32, stride: u32, b: u32) {
  let Q = L / 4u;
  let qs = Q * stride;
  for (var j = 0u; j < Q; j++) {
    let w1 = tw[j * step];
    let w2 = tw[2u * j * step];
    let w3 = tw[3u * j * step];
    for (var s = 0u; s < n; s += L) {
      let i0 = (s + j) * stride + b;
      if (!INVERSE) {
        // Decimation in frequency: sums and differences first, twiddles on the way out.
        let a0 = fx[i0];
        let a1 = fx[i0 + qs];
        let a2 = fx[i0 + 2u * qs];
        let a3 = fx[i0 + 3u * qs];
        let b0 = a0 + a2;
        let b1 = a0 - a2;
        let b2 = a1 + a3;
        let d3 = a1 - a3;
        let md3 = vec2<f32>(d3.y, -d3.x);   // −i·(a1 − a3)
        fx[i0] = b0 + b2;
        fx[i0 + qs] = cmul(b0 - b2, w2);
        fx[i0 + 2u * qs] = cmul(b1 + md3, w1);
        fx[i0 + 3u * qs] = cmul(b1 - md3, w3);
      } else {
        // Decimation in time: conjugate twiddles on the way in, then sums and differences.
        let x0 = fx[i0];
        let t1 = cmulc(fx[i0 + qs], w2);
        let t2 = cmulc(fx[i0 + 2u * qs], w1);
        let t3 = cmulc(fx[i0 + 3u * qs], w3);
        let a0 = x0 + t1;
        let a1 = x0 - t1;
        let p = t2 + t3;
        let m = t2 - t3;
        let im = vec2<f32>(-m.y, m.x);      // i·(t2 − t3)
        fx[i0] = a0 + p;
        fx[i0 + qs] = a1 + im;
        fx[i0 + 2u * qs] = a0 - p;
        fx[i0 + 3u * qs] = a1 - im;
      }
    }
  }
}

@compute @workgroup_size(WG)
fn fft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lidx: u32) {
  let b = linear_workgroup(wid, nwg) * WG + lidx;
  let n = FP.n;
  let stride = FP.stride;
  if (b >= FP.nb) { return; }
  // log2(n) = 3·r8 + 2·r4 + r2: radix-8 stages at the large block lengths (so that the first
  // forward stage and the last inverse one are radix-8 whenever n ≥ 8), then radix 4, then 2.
  let lg = countTrailingZeros(n);
  var r8 = lg / 3u;
  var r4 = 0u;
  var r2 = 0u;
  if (lg % 3u == 2u) { r4 = 1u; }
  if (lg % 3u == 1u) {
    if (lg >= 7u) { r8 -= 1u; r4 = 2u; } else { r2 = 1u; }
  }
  let skip = select(0u, 1u, FP.partial != 0u && r8 > 0u);
  // L: the block length of the next stage (its largest); each stage's twiddle step is n / L.
  if (!INVERSE) {
    var L = n >> (3u * skip);
    for (var k = skip; k < r8; k++) { radix8_stage(L, n / L, n, stride, b); L /= 8u; }
    for (var k = 0u; k < r4; k++) { radix4_stage(L, n / L, n, stride, b); L /= 4u; }
    if (r2 == 1u) { radix2(n, stride, b); }
  } else {
    // The mirror image, block lengths from the smallest up.
    if (r2 == 1u) { radix2(n, stride, b); }
    var L = select(4u, 8u, r2 == 1u);
    for (var k = 0u; k < r4; k++) { radix4_stage(L, n / L, n, stride, b); L *= 4u; }
    L *= 2u;
    for (var k = skip; k < r8; k++) { radix8_stage(L, n / L, n, stride, b); L *= 8u; }
  }
}
