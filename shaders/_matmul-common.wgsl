// Fragment (`//#include _matmul-common`, src/runtime/wgsl.ts) of every matmul kernel file
// (matmul.wgsl, matmul-vec4.wgsl, matmul-subgroups.wgsl): the uniform parameters, the bindings of
// C and of the second product, and the epilogue of a 4×4 block. Each file binds A and B itself
// (as f32, vec4 or packed arrays); the including file declares TRANS_A and TRANS_B.
//
//   C[M, N] = alpha * op(A) op(B) + alpha2 * op(A2) op(B2) + beta * C

struct MatmulParams {
  M: u32,         // rows of C and of op(A), in elements
  N: u32,         // columns of C and of op(B), in elements
  K: u32,         // depth of the first product, in elements
  K2: u32,        // depth of the second product, in elements (unused without SECOND)
  alpha: f32,     // multiplier of the first product (dimensionless)
  alpha2: f32,    // multiplier of the second product (dimensionless)
  beta: f32,      // multiplier of C's old values; 0 skips reading C, so NaNs there vanish
  tiles_n: u32,   // workgroup tiles along N = ceil(N / BN), in tiles
  lda: u32,       // row stride of A as stored ([M, K], or [K, M] with TRANS_A), in elements
  ldb: u32,       // row stride of B as stored ([K, N], or [N, K] with TRANS_B), in elements
  ldc: u32,       // row stride of C, in elements
  lda2: u32,      // row stride of A2 as stored, in elements
  ldb2: u32,      // row stride of B2 as stored, in elements
  off_a: u32,     // index of op(A)[0, 0] in the A binding, in elements
  off_b: u32,     // index of op(B)[0, 0] in the B binding, in elements
  off_c: u32,     // index of C[0, 0] in the C binding, in elements
  off_a2: u32,    // index of op(A2)[0, 0] in the A2 binding, in elements
  off_b2: u32,    // index of op(B2)[0, 0] in the B2 binding, in elements
  q_base: u32,    // packed base weight (matmul.wgsl's *_qa, *_qb entries): index of its binding's
                  // first value in the whole weight, in elements, so a row block finds its absmax; 0 otherwise
}

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> A2: array<f32>;
@group(0) @binding(5) var<storage, read> B2: array<f32>;

// The first row and column of the workgroup's bm × bn tile of C (tiles_n tiles to a row of tiles),
// or NO_TILE in x past the last tile. The same in every invocation of the workgroup, so an early
// return on it cannot split a barrier.
const NO_TILE: u32 = 0xffffffffu;
fn tile_origin(wid: vec3<u32>, nwg: vec3<u32>, bm: u32, bn: u32) -> vec2<u32> {
  let tile = linear_workgroup(wid, nwg);
  if (tile >= ((P.M + bm - 1u) / bm) * P.tiles_n) { return vec2<u32>(NO_TILE, 0u); }
  return vec2<u32>((tile / P.tiles_n) * bm, (tile % P.tiles_n) * bn);
}

fn a2_at(i: u32, k: u32) -> f32 {
  if (TRANS_A) { return A2[P.off_a2 + k * P.lda2 + i]; }
  return A2[P.off_a2 + i * P.lda2 + k];
}
fn b2_at(k: u32, j: u32) -> f32 {
  if (TRANS_B) { return B2[P.off_b2 + j * P.ldb2 + k]; }
  return B2[P.off_b2 + k * P.ldb2 + j];
}

// C = acc + beta·C for the 4×4 block at (row0, col0), within the matrix.
fn store(row0: u32, col0: u32, acc: ptr<function, array<f32, 16>>) {
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + i;
    if (row >= P.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col >= P.N) { break; }
      let at = P.off_c + row * P.ldc + col;
      var v = (*acc)[i * 4u + j];
      if (P.beta != 0.0) { v += P.beta * C[at]; }
      C[at] = v;
    }
  }
}

// The second product, read straight from memory: its depth is a rank (at most a few dozen), so
// staging it would cost more barriers than it saves.
fn add_second(row0: u32, col0: u32, acc: ptr<function, array<f32, 16>>) {
  for (var k = 0u; k < P.K2; k++) {
    var a: array<f32, 4>;
    var b: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) { a[i] = select(0.0, a2_at(row0 + i, k), row0 + i < P.M); }
    for (var j = 0u; j < 4u; j++) { b[j] = select(0.0, b2_at(k, col0 + j), col0 + j < P.N); }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { (*acc)[i * 4u + j] += P.alpha2 * a[i] * b[j]; }
    }
  }
}
