// Prelude: prepended to every shader module by the runtime (src/runtime.ts), which subtracts its
// lines when it reports a compilation message, so line numbers name the kernel's own file.

// The dispatcher splits a 1-D workgroup count over x and y when it passes
// maxComputeWorkgroupsPerDimension; kernels recover the linear index with this and return when
// it is past their own count.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

// Complex numbers as vec2<f32> (re, im): the FFT (fft.wgsl) and LoRMA_π's kernels that fuse their
// products into a transform's first or last stage (lorma.wgsl).
fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
// a·conj(b)
fn cmulc(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y); }

// Three radix-2 FFT stages on eight points in registers: x[k] is element j + k·L/8 of a block of
// length L, whose stages L, L/2 and L/4 mix only these eight. Twiddles w[m] = w_L^(j + m·L/8) for
// m < 4, w_(L/2)^(j + (m − 4)·L/8) for m = 4, 5, and w_(L/4)^j for m = 6 (w_L = exp(−2πi/L)).
// Decimation in frequency runs the stages L, L/2, L/4 with butterflies (a, b) → (a + b, (a − b)·w);
// decimation in time, the mirror image, L/4, L/2, L with (a, b) → (a + b·w̄, a − b·w̄).
fn dif2_at(x: ptr<function, array<vec2<f32>, 8>>, a: u32, b: u32, w: vec2<f32>) {
  let s = (*x)[a] + (*x)[b];
  (*x)[b] = cmul((*x)[a] - (*x)[b], w);
  (*x)[a] = s;
}
fn dit2_at(x: ptr<function, array<vec2<f32>, 8>>, a: u32, b: u32, w: vec2<f32>) {
  let t = cmulc((*x)[b], w);
  (*x)[b] = (*x)[a] - t;
  (*x)[a] = (*x)[a] + t;
}
fn dif8(x: ptr<function, array<vec2<f32>, 8>>, w: array<vec2<f32>, 7>) {
  dif2_at(x, 0u, 4u, w[0]); dif2_at(x, 1u, 5u, w[1]); dif2_at(x, 2u, 6u, w[2]); dif2_at(x, 3u, 7u, w[3]);
  dif2_at(x, 0u, 2u, w[4]); dif2_at(x, 1u, 3u, w[5]); dif2_at(x, 4u, 6u, w[4]); dif2_at(x, 5u, 7u, w[5]);
  dif2_at(x, 0u, 1u, w[6]); dif2_at(x, 2u, 3u, w[6]); dif2_at(x, 4u, 5u, w[6]); dif2_at(x, 6u, 7u, w[6]);
}
fn dit8(x: ptr<function, array<vec2<f32>, 8>>, w: array<vec2<f32>, 7>) {
  dit2_at(x, 0u, 1u, w[6]); dit2_at(x, 2u, 3u, w[6]); dit2_at(x, 4u, 5u, w[6]); dit2_at(x, 6u, 7u, w[6]);
  dit2_at(x, 0u, 2u, w[4]); dit2_at(x, 1u, 3u, w[5]); dit2_at(x, 4u, 6u, w[4]); dit2_at(x, 5u, 7u, w[5]);
  dit2_at(x, 0u, 4u, w[0]); dit2_at(x, 1u, 5u, w[1]); dit2_at(x, 2u, 6u, w[2]); dit2_at(x, 3u, 7u, w[3]);
}
