// Prelude: prepended to every shader module by the runtime (src/runtime.ts), which subtracts its
// lines when it reports a compilation message, so line numbers name the kernel's own file.

// The dispatcher splits a 1-D workgroup count over x and y when it passes
// maxComputeWorkgroupsPerDimension; kernels recover the linear index with this and return when
// it is past their own count.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}
