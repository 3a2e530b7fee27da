// A page that uses the packed package the way a browser app would: test/e2e/package.test.ts
// installs the tarball without `webgpu`, bundles this page with Vite, opens it in Chromium and
// reads window.__result. The expected Y is computed here in float64, with plain loops.

import { createContext, loraForward } from 'peft-wgsl';

// No dimension is a tile multiple.
const [T, n, m, r, s] = [5, 37, 29, 3, 0.75];

const fill = (len, seed) => Float32Array.from({ length: len }, (_, i) => Math.sin(seed + 0.37 * i) * 0.5);

/** Y = X W0ᵀ + s·(X Aᵀ) Bᵀ in float64. */
function expectedY(x, w0, a, b) {
  const y = new Float64Array(T * m);
  for (let t = 0; t < T; t++) {
    const z = new Float64Array(r);
    for (let k = 0; k < r; k++) for (let j = 0; j < n; j++) z[k] += x[t * n + j] * a[k * n + j];
    for (let i = 0; i < m; i++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc += x[t * n + j] * w0[i * n + j];
      for (let k = 0; k < r; k++) acc += s * z[k] * b[i * r + k];
      y[t * m + i] = acc;
    }
  }
  return y;
}

async function main() {
  const x = fill(T * n, 1);
  const w0 = fill(m * n, 2);
  const a = fill(r * n, 3);
  const b = fill(m * r, 4);
  const ctx = await createContext();
  const { y } = await loraForward(ctx, {
    x: ctx.upload(x, [T, n]),
    w0: ctx.upload(w0, [m, n]),
    a: ctx.upload(a, [r, n]),
    b: ctx.upload(b, [m, r]),
    scale: s,
  });
  const got = await ctx.read(y);
  const result = { status: 'done', adapter: ctx.adapterInfo.description, y: Array.from(got), expected: Array.from(expectedY(x, w0, a, b)) };
  ctx.destroy();
  return result;
}

window.__result = { status: 'running' };
main().then(
  (result) => {
    window.__result = result;
  },
  (e) => {
    window.__result = { status: 'error', message: String(e && e.stack ? e.stack : e) };
  },
);
