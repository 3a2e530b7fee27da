// Past the storage-binding limit: tensors may be as large as maxBufferSize, matmul cuts a product
// whose operand passes maxStorageBufferBindingSize into blocks bound as buffer ranges, and a
// kernel that must bind such a tensor whole refuses it by name. The blocks are checked on small
// tensors under a lowered limit (`bindingLimit`) for every transpose, variant, fused second
// product and beta, then once for real: a LoRA layer whose W0 is twice lavapipe's 128 MiB limit,
// against the float64 reference on sampled rows and columns.

import { expect } from 'chai';
import { matmul, matmulBlocks } from '../src/ops/matmul.js';
import { loraBackward, loraForward, loraMerge } from '../src/methods/lora/kernels.js';
import { boraMerge } from '../src/methods/bora/kernels.js';
import * as loraRef from '../src/methods/lora/reference.js';
import type { Context, Tuning } from '../src/runtime.js';
import type { Tensor } from '../src/tensor.js';
import { expectClose, expectMatmul, expectThrows, gpu, rand, TRANSPOSES } from './helpers.js';

describe('matmul past the binding limit (blocks under a lowered limit)', () => {
  // 4 KiB bindings: every operand below passes it, so each product runs as several blocks.
  const LIMIT = 4096;
  let saved: Tuning['matmul'];
  before(async () => {
    saved = (await gpu()).tuning.matmul;
  });
  after(async () => {
    (await gpu()).tuning.matmul = saved;
  });

  // [M, N, K]: ragged (scalar loads) and multiples of 4 (direct4 where the blocks stay aligned).
  const SHAPES: [number, number, number][] = [
    [70, 130, 33],
    [72, 136, 40],
  ];
  for (const variant of ['direct', 'tiled'] as Tuning['matmul'][]) {
    // 'tiled' has no vec4 entry, so the ragged shape covers it.
    for (const [M, N, K] of variant === 'tiled' ? SHAPES.slice(0, 1) : SHAPES) {
      for (const [transA, transB] of TRANSPOSES) {
        it(`${variant}: C[${M}x${N}] += op(A) op(B) + op(A2) op(B2), K=${K}, transA=${transA}, transB=${transB}`, async () => {
          const ctx = await gpu();
          ctx.tuning.matmul = variant;
          const second = { K: 5, alpha: -1.5 };
          await expectMatmul(ctx, { M, N, K, transA, transB, alpha: 0.75, beta: 0.5, bindingLimit: LIMIT, second });
        });
      }
    }
  }

  it('plans blocks along the dimension that indexes the large operand’s stored rows', () => {
    const fake = (bytes: number, label: string) => ({ buffer: { size: bytes }, label, shape: [bytes / 4] }) as unknown as Tensor;
    const dims = { M: 5, N: 8200, K: 8192, K2: 4 };
    const w0 = fake(8200 * 8192 * 4, 'w0');
    const plan = (ops: Parameters<typeof matmulBlocks>[1], beta = 0, second = false) =>
      matmulBlocks('matmul', ops, dims, 128 << 20, 256, beta, second).map((b) => ({ ...b.ranges, second: b.second, beta: b.beta }));
    // X W0ᵀ: W0 stored [N, K] is cut along N; each block adds the fused term once.
    const nt = plan(
      [
        { name: 'a', t: fake(5 * 8192 * 4, 'x'), rows: 'M', cols: 'K' },
        { name: 'b', t: w0, rows: 'N', cols: 'K' },
        { name: 'c', t: fake(5 * 8200 * 4, 'y'), rows: 'M', cols: 'N' },
      ],
      0,
      true,
    );
    expect(nt.map((b) => b.N)).to.deep.equal([
      [0, 4032],
      [4032, 8064],
      [8064, 8200],
    ]);
    expect(nt.every((b) => b.second && b.beta === 0)).to.equal(true);
    // G W0 with W0 stored [K, N]: cut along K, so the blocks after the first accumulate.
    const nn = plan(
      [
        { name: 'a', t: fake(5 * 8192 * 4, 'g'), rows: 'M', cols: 'K' },
        { name: 'b', t: fake(8192 * 8200 * 4, 'w0'), rows: 'K', cols: 'N' },
        { name: 'c', t: fake(5 * 8200 * 4, 'dx'), rows: 'M', cols: 'N' },
      ],
      0,
      true,
    );
    expect(nn.map((b) => [b.K, b.second, b.beta])).to.deep.equal([
      [[0, 4032], true, 0],
      [[4032, 8064], false, 1],
      [[8064, 8192], false, 1],
    ]);
  });

  it('refuses an operand whose one row passes the limit, naming it', async () => {
    const ctx = await gpu();
    const A = ctx.upload(rand(2 * 2000), [2, 2000], 'f32', 'wide');
    const B = ctx.upload(rand(2000), [2000, 1], 'f32', 'B');
    const C = ctx.tensor([2, 1], 'f32', 'C');
    await expectThrows(
      () => matmul(ctx, { a: A, b: B, c: C, M: 2, N: 1, K: 2000, bindingLimit: 4096 }),
      /matmul: 'a' \('wide', shape \[2, 2000\]\) is 16000 bytes, past this device's maxStorageBufferBindingSize of 4096 bytes/,
      /one row is 8000 bytes/,
    );
    await expectThrows(
      () => matmul(ctx, { a: A, b: B, c: C, M: 2, N: 1, K: 2000, bindingLimit: ctx.limits.maxStorageBufferBindingSize + 4 }),
      /matmul: 'bindingLimit' is \d+, past this device's maxStorageBufferBindingSize/,
    );
    for (const t of [A, B, C]) t.destroy();
  });
});

describe('tensors past the binding limit', () => {
  it('allocates up to maxBufferSize and refuses past it, naming the tensor', async () => {
    const ctx = await gpu();
    const huge = Math.floor(ctx.limits.maxBufferSize / 4) + 1024;
    expect(() => ctx.tensor([huge], 'f32', 'big')).to.throw(/'big' needs \d+ bytes, past this device's maxBufferSize of \d+ bytes \(shape \[\d+\]\)/);
  });

  // One layer, sized minimally: W0 [8200, 8192] f32 is 269 MB, twice lavapipe's 128 MiB binding;
  // m = 8200 leaves a ragged last block. The host keeps W0 (269 MB) and the device one copy.
  it('runs a LoRA layer whose W0 is twice the binding limit: forward, backward dX and merge on sampled rows', async function () {
    this.timeout(600_000);
    const ctx = await gpu();
    const [T, n, m, r, s] = [5, 8192, 8200, 4, 1.5];
    expect(m * n * 4).to.be.above(2 * ctx.limits.maxStorageBufferBindingSize - 1);
    const w0h = rand(m * n, 0.05);
    const [xh, ah, bh, gh] = [rand(T * n), rand(r * n, 0.1), rand(m * r, 0.1), rand(T * m)];
    const w0 = ctx.upload(w0h, [m, n], 'f32', 'w0');
    const [x, a, b, g] = [
      ctx.upload(xh, [T, n], 'f32', 'x'),
      ctx.upload(ah, [r, n], 'f32', 'a'),
      ctx.upload(bh, [m, r], 'f32', 'b'),
      ctx.upload(gh, [T, m], 'f32', 'g'),
    ];
    const tensors: Tensor[] = [w0, x, a, b, g];
    try {
      // Output rows of W0 (columns of Y) at both ends of each block, and columns of W0 (of dX).
      const rows = [0, 1, 4031, 4032, 4033, 8063, 8064, 8199];
      const cols = [0, 3, 2047, 4095, 4096, 8191];
      const pickRows = (v: Float32Array, width: number, idx: number[]) => {
        const out = new Float32Array(idx.length * width);
        idx.forEach((i, k) => out.set(v.subarray(i * width, (i + 1) * width), k * width));
        return out;
      };
      const pickCols = (v: Float32Array, height: number, width: number, idx: number[]) => {
        const out = new Float32Array(height * idx.length);
        for (let i = 0; i < height; i++) idx.forEach((j, k) => (out[i * idx.length + k] = v[i * width + j]));
        return out;
      };

      const { y, z } = await loraForward(ctx, { x, w0, a, b, scale: s });
      tensors.push(y, z);
      const wantY = loraRef.loraForward({ T, n, m: rows.length, r, scale: s, x: xh, w0: pickRows(w0h, n, rows), a: ah, b: pickRows(bh, r, rows) });
      expectClose(pickCols(await ctx.readF32(y), T, m, rows), wantY, 'y on sampled columns');

      // dX's column k needs W0's column k, all m rows: the reference on those columns alone.
      const { dx, da, db } = await loraBackward(ctx, { x, w0, a, b, scale: s, g, z });
      tensors.push(dx, da, db);
      const sub = {
        T,
        n: cols.length,
        m,
        r,
        scale: s,
        x: pickCols(xh, T, n, cols),
        w0: pickCols(w0h, m, n, cols),
        a: pickCols(ah, r, n, cols),
        b: bh,
        g: gh,
      };
      expectClose(pickCols(await ctx.readF32(dx), T, n, cols), loraRef.loraBackward(sub).dx, 'dX on sampled columns');

      // In place, so the device never holds a second 269 MB matrix; rows are read back alone.
      await loraMerge(ctx, { w0, a, b, scale: s }, { inPlace: true });
      const merged = await readRows(ctx, w0, n, rows);
      const wantW = loraRef.loraMerge({ n, m: rows.length, r, scale: s, w0: pickRows(w0h, n, rows), a: ah, b: pickRows(bh, r, rows) });
      expectClose(merged, wantW, 'merged W0 on sampled rows');

      // MELoRA's merge kernel reads its target whole: refused by name rather than left to Dawn.
      await expectThrows(
        () => boraMerge(ctx, { variant: 'melora', w0, a, b, blocks: 4, scale: s }, { inPlace: true }),
        /'w0' \(shape \[8200, 8192\]\), 268697600 bytes, past this device's maxStorageBufferBindingSize of 134217728 bytes/,
        /reads the tensor whole and cannot split it/,
      );
    } finally {
      for (const t of tensors) t.destroy();
    }
  });
});

/** Rows `rows` of a [*, width] f32 tensor, copied out one by one so no full-size staging is made. */
async function readRows(ctx: Context, t: Tensor, width: number, rows: number[]): Promise<Float32Array> {
  const rowBytes = width * 4;
  const staging = ctx.device.createBuffer({ size: rows.length * rowBytes, usage: 0x0001 | 0x0008, label: 'rows' });
  try {
    const enc = ctx.device.createCommandEncoder();
    rows.forEach((i, k) => enc.copyBufferToBuffer(t.buffer, i * rowBytes, staging, k * rowBytes, rowBytes));
    ctx.submit(enc);
    await ctx.sync();
    await staging.mapAsync(0x0001);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}
