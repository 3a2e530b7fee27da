// Peer: the same math written as gpu.js kernels in its WebGPU mode (`new GPU({ mode: 'webgpu' })`).
//
// gpu.js 2.24's WebGPU backend takes its device from `navigator.gpu` (src/backend/web-gpu/
// context.js: one shared device per process); the nested `webgpu` 0.2.9 package it lists is never
// imported. So in Node it runs on Dawn once `navigator.gpu` is set, on the same lavapipe adapter
// as ours. gpu.js exposes no timestamp queries, so a run is timed on the wall clock from the first
// kernel call to the device's onSubmittedWorkDone(). Inputs are made device-resident first
// (pipeline mode) so uploads are not timed; kernels are fused where a gpu.js user naturally would
// (the base product and the adapter term in one kernel).

import { createRequire } from 'node:module';
import { workerCpuMs } from '../timing.js';
import { ensureNavigatorGpu, summarize, type Peer, type PeerInputs, type PeerMethod, type PeerPhase, type PeerRun } from './common.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Kernel = ((...args: any[]) => Promise<any>) & { destroy?: () => void };
type Handle = { toArray(): Promise<Float32Array>; delete(): void };

export async function createGpujsPeer(): Promise<Peer> {
  await ensureNavigatorGpu();
  const { GPU } = (await import('gpu.js')) as any;
  const require = createRequire(import.meta.url);
  const { WebGPUContext } = require('gpu.js/src/backend/web-gpu/context.js');
  if (!(await GPU.isWebGPUAvailable())) throw new Error('gpu.js: GPU.isWebGPUAvailable() is false (no adapter behind navigator.gpu)');
  const gpu = new GPU({ mode: 'webgpu' });
  const { device, adapter } = await WebGPUContext.acquire();
  const description: string = adapter?.info?.description ?? 'unknown';

  const k = (fn: (...a: any[]) => number, size: number, constants: Record<string, number>): Kernel =>
    gpu.createKernel(fn, { output: [size], constants, pipeline: true, dynamicOutput: false });
  // Device-resident copies of the inputs.
  const resident = async (data: Float32Array): Promise<Handle> => {
    const up = k(
      function (this: any, a: any) {
        return a[this.thread.x];
      },
      data.length,
      {},
    );
    const h = await up(data);
    return h;
  };

  return {
    impl: 'gpujs-webgpu',
    device: description,
    async run(method: PeerMethod, phase: PeerPhase, inp: PeerInputs, opts): Promise<PeerRun> {
      const { T, n, m, r, b, s } = inp;
      const nb = n / b;
      const mb = m / b;
      const X = await resident(inp.x);
      const W0 = await resident(inp.w0);
      const A = await resident(inp.a);
      const B = await resident(inp.bm);
      const G = await resident(inp.g);
      const SG = await resident(inp.sigma);
      const handles: Handle[] = [X, W0, A, B, G, SG];
      const kernels: Kernel[] = [];
      const K = (fn: (...a: any[]) => number, size: number, c: Record<string, number>) => {
        const kk = k(fn, size, c);
        kernels.push(kk);
        return kk;
      };

      // Y[t, j] = Σ_k X[t, k] W0[j, k] (+ s Σ_q Z[t, q] B[j, q])
      const base = K(
        function (this: any, x: any, w: any) {
          const t = Math.floor(this.thread.x / this.constants.m);
          const j = this.thread.x - t * this.constants.m;
          let acc = 0;
          for (let c = 0; c < this.constants.n; c++) acc += x[t * this.constants.n + c] * w[j * this.constants.n + c];
          return acc;
        },
        T * m,
        { n, m },
      );
      const zOf = K(
        function (this: any, x: any, a: any) {
          const t = Math.floor(this.thread.x / this.constants.r);
          const q = this.thread.x - t * this.constants.r;
          let acc = 0;
          for (let c = 0; c < this.constants.n; c++) acc += x[t * this.constants.n + c] * a[q * this.constants.n + c];
          return acc;
        },
        T * r,
        { n, r },
      );
      const loraY = K(
        function (this: any, x: any, w: any, z: any, bb: any) {
          const t = Math.floor(this.thread.x / this.constants.m);
          const j = this.thread.x - t * this.constants.m;
          let acc = 0;
          for (let c = 0; c < this.constants.n; c++) acc += x[t * this.constants.n + c] * w[j * this.constants.n + c];
          let ad = 0;
          for (let q = 0; q < this.constants.r; q++) ad += z[t * this.constants.r + q] * bb[j * this.constants.r + q];
          return acc + this.constants.s * ad;
        },
        T * m,
        { n, m, r, s },
      );
      // H = G B [T, r]
      const hOf = K(
        function (this: any, g: any, bb: any) {
          const t = Math.floor(this.thread.x / this.constants.r);
          const q = this.thread.x - t * this.constants.r;
          let acc = 0;
          for (let i = 0; i < this.constants.m; i++) acc += g[t * this.constants.m + i] * bb[i * this.constants.r + q];
          return acc;
        },
        T * r,
        { m, r },
      );
      // dX = G W0 + s H A
      const loraDx = K(
        function (this: any, g: any, w: any, h: any, a: any) {
          const t = Math.floor(this.thread.x / this.constants.n);
          const c = this.thread.x - t * this.constants.n;
          let acc = 0;
          for (let i = 0; i < this.constants.m; i++) acc += g[t * this.constants.m + i] * w[i * this.constants.n + c];
          let ad = 0;
          for (let q = 0; q < this.constants.r; q++) ad += h[t * this.constants.r + q] * a[q * this.constants.n + c];
          return acc + this.constants.s * ad;
        },
        T * n,
        { n, m, r, s },
      );
      // dB = s Gᵀ Z [m, r]; dA = s Hᵀ X [r, n]
      const loraDb = K(
        function (this: any, g: any, z: any) {
          const i = Math.floor(this.thread.x / this.constants.r);
          const q = this.thread.x - i * this.constants.r;
          let acc = 0;
          for (let t = 0; t < this.constants.T; t++) acc += g[t * this.constants.m + i] * z[t * this.constants.r + q];
          return this.constants.s * acc;
        },
        m * r,
        { T, m, r, s },
      );
      const loraDa = K(
        function (this: any, h: any, x: any) {
          const q = Math.floor(this.thread.x / this.constants.n);
          const c = this.thread.x - q * this.constants.n;
          let acc = 0;
          for (let t = 0; t < this.constants.T; t++) acc += h[t * this.constants.r + q] * x[t * this.constants.n + c];
          return this.constants.s * acc;
        },
        r * n,
        { T, n, r, s },
      );

      // BoRA (docs/math.md): Σ = exp(σ / mean|σ|); Z [T, b, r]; S [T, b, r]; Y = X W0ᵀ + s B_j S_j.
      const sigmaOf = K(
        function (this: any, sg: any) {
          let mu = 0;
          for (let p = 0; p < this.constants.N; p++) mu += Math.abs(sg[p]);
          mu = mu / this.constants.N;
          return Math.exp(sg[this.thread.x] / mu);
        },
        b * b * r,
        { N: b * b * r },
      );
      const boraZ = K(
        function (this: any, x: any, a: any) {
          const br = this.constants.b * this.constants.r;
          const t = Math.floor(this.thread.x / br);
          const kq = this.thread.x - t * br;
          const kb = Math.floor(kq / this.constants.r);
          const q = kq - kb * this.constants.r;
          let acc = 0;
          for (let c = 0; c < this.constants.nb; c++) {
            const col = kb * this.constants.nb + c;
            acc += a[q * this.constants.n + col] * x[t * this.constants.n + col];
          }
          return acc;
        },
        T * b * r,
        { b, r, n, nb },
      );
      const boraS = K(
        function (this: any, z: any, sig: any) {
          const br = this.constants.b * this.constants.r;
          const t = Math.floor(this.thread.x / br);
          const jq = this.thread.x - t * br;
          const j = Math.floor(jq / this.constants.r);
          const q = jq - j * this.constants.r;
          let acc = 0;
          for (let kb = 0; kb < this.constants.b; kb++)
            acc += sig[(j * this.constants.b + kb) * this.constants.r + q] * z[t * br + kb * this.constants.r + q];
          return acc;
        },
        T * b * r,
        { b, r },
      );
      const boraY = K(
        function (this: any, x: any, w: any, sb: any, bb: any) {
          const t = Math.floor(this.thread.x / this.constants.m);
          const col = this.thread.x - t * this.constants.m;
          const j = Math.floor(col / this.constants.mb);
          let acc = 0;
          for (let c = 0; c < this.constants.n; c++) acc += x[t * this.constants.n + c] * w[col * this.constants.n + c];
          let ad = 0;
          for (let q = 0; q < this.constants.r; q++) ad += bb[col * this.constants.r + q] * sb[(t * this.constants.b + j) * this.constants.r + q];
          return acc + this.constants.s * ad;
        },
        T * m,
        { n, m, r, b, mb, s },
      );
      // Backward: dS [T, b, r]; dB [m, r]; dΣ [b, b, r]; dZ [T, b, r]; dA [r, n]; dX [T, n]; dσ.
      const boraDs = K(
        function (this: any, g: any, bb: any) {
          const br = this.constants.b * this.constants.r;
          const t = Math.floor(this.thread.x / br);
          const jq = this.thread.x - t * br;
          const j = Math.floor(jq / this.constants.r);
          const q = jq - j * this.constants.r;
          let acc = 0;
          for (let i = 0; i < this.constants.mb; i++) {
            const row = j * this.constants.mb + i;
            acc += g[t * this.constants.m + row] * bb[row * this.constants.r + q];
          }
          return this.constants.s * acc;
        },
        T * b * r,
        { b, r, m, mb, s },
      );
      const boraDb = K(
        function (this: any, g: any, sb: any) {
          const row = Math.floor(this.thread.x / this.constants.r);
          const q = this.thread.x - row * this.constants.r;
          const j = Math.floor(row / this.constants.mb);
          let acc = 0;
          for (let t = 0; t < this.constants.T; t++) acc += g[t * this.constants.m + row] * sb[(t * this.constants.b + j) * this.constants.r + q];
          return this.constants.s * acc;
        },
        m * r,
        { T, m, r, b, mb, s },
      );
      const boraDsig = K(
        function (this: any, ds: any, z: any) {
          const br = this.constants.b * this.constants.r;
          const j = Math.floor(this.thread.x / br);
          const kq = this.thread.x - j * br;
          const kb = Math.floor(kq / this.constants.r);
          const q = kq - kb * this.constants.r;
          let acc = 0;
          for (let t = 0; t < this.constants.T; t++) acc += ds[t * br + j * this.constants.r + q] * z[t * br + kb * this.constants.r + q];
          return acc;
        },
        b * b * r,
        { T, b, r },
      );
      const boraDz = K(
        function (this: any, ds: any, sig: any) {
          const br = this.constants.b * this.constants.r;
          const t = Math.floor(this.thread.x / br);
          const kq = this.thread.x - t * br;
          const kb = Math.floor(kq / this.constants.r);
          const q = kq - kb * this.constants.r;
          let acc = 0;
          for (let j = 0; j < this.constants.b; j++)
            acc += sig[(j * this.constants.b + kb) * this.constants.r + q] * ds[t * br + j * this.constants.r + q];
          return acc;
        },
        T * b * r,
        { b, r },
      );
      const boraDa = K(
        function (this: any, dz: any, x: any) {
          const q = Math.floor(this.thread.x / this.constants.n);
          const col = this.thread.x - q * this.constants.n;
          const kb = Math.floor(col / this.constants.nb);
          let acc = 0;
          for (let t = 0; t < this.constants.T; t++) acc += dz[(t * this.constants.b + kb) * this.constants.r + q] * x[t * this.constants.n + col];
          return acc;
        },
        r * n,
        { T, n, r, b, nb },
      );
      const boraDx = K(
        function (this: any, g: any, w: any, dz: any, a: any) {
          const t = Math.floor(this.thread.x / this.constants.n);
          const col = this.thread.x - t * this.constants.n;
          const kb = Math.floor(col / this.constants.nb);
          let acc = 0;
          for (let i = 0; i < this.constants.m; i++) acc += g[t * this.constants.m + i] * w[i * this.constants.n + col];
          let ad = 0;
          for (let q = 0; q < this.constants.r; q++) ad += a[q * this.constants.n + col] * dz[(t * this.constants.b + kb) * this.constants.r + q];
          return acc + ad;
        },
        T * n,
        { n, m, r, b, nb },
      );
      const boraDsigma = K(
        function (this: any, dsig: any, sig: any, sg: any) {
          let mu = 0;
          let dot = 0;
          for (let p = 0; p < this.constants.N; p++) {
            mu += Math.abs(sg[p]);
            dot += dsig[p] * sig[p] * sg[p];
          }
          mu = mu / this.constants.N;
          const l = this.thread.x;
          const sgn = sg[l] > 0 ? 1 : sg[l] < 0 ? -1 : 0;
          return (dsig[l] * sig[l]) / mu - (sgn / (this.constants.N * mu * mu)) * dot;
        },
        b * b * r,
        { N: b * b * r },
      );

      // Forward products the backward is handed (as ours is), computed outside the timing.
      let pre: Record<string, Handle> = {};
      if (phase === 'backward' && method === 'lora') pre = { Z: await zOf(X, A) };
      if (phase === 'backward' && method === 'bora') {
        const Sig = await sigmaOf(SG);
        const Z = await boraZ(X, A);
        pre = { Sig, Z, S: await boraS(Z, Sig) };
      }
      handles.push(...Object.values(pre));

      const step = async (): Promise<Record<string, Handle>> => {
        if (method === 'matmul') return { y: await base(X, W0) };
        if (method === 'lora' && phase === 'forward') {
          const Z = await zOf(X, A);
          return { y: await loraY(X, W0, Z, B), _z: Z };
        }
        if (method === 'lora') {
          const H = await hOf(G, B);
          return { dx: await loraDx(G, W0, H, A), db: await loraDb(G, pre.Z), da: await loraDa(H, X), _h: H };
        }
        if (phase === 'forward') {
          const Sig = await sigmaOf(SG);
          const Z = await boraZ(X, A);
          const S = await boraS(Z, Sig);
          return { y: await boraY(X, W0, S, B), _sig: Sig, _z: Z, _s: S };
        }
        const dS = await boraDs(G, B);
        const db = await boraDb(G, pre.S);
        const dSig = await boraDsig(dS, pre.Z);
        const dZ = await boraDz(dS, pre.Sig);
        const da = await boraDa(dZ, X);
        const dx = await boraDx(G, W0, dZ, A);
        const dsigma = await boraDsigma(dSig, pre.Sig, SG);
        return { dx, da, db, dsigma, _ds: dS, _dsig: dSig, _dz: dZ };
      };
      const release = (o: Record<string, Handle>) => Object.values(o).forEach((h) => h.delete());
      try {
        for (let i = 0; i < opts.warmup; i++) {
          const o = await step();
          await device.queue.onSubmittedWorkDone();
          release(o);
        }
        const samples: number[] = [];
        const cpu: number[] = [];
        let last: Record<string, Handle> = {};
        for (let i = 0; i < opts.reps; i++) {
          const t0 = performance.now();
          const c0 = workerCpuMs();
          const o = await step();
          await device.queue.onSubmittedWorkDone();
          samples.push(performance.now() - t0);
          const c1 = workerCpuMs();
          if (c0 !== null && c1 !== null) cpu.push(c1 - c0);
          release(last);
          last = o;
        }
        const outputs: Record<string, Float32Array> = {};
        for (const [name, h] of Object.entries(last)) {
          if (!name.startsWith('_')) outputs[name] = Float32Array.from(await h.toArray());
        }
        release(last);
        return { timing: summarize(samples, 'wall-clock (to onSubmittedWorkDone)', cpu), outputs };
      } finally {
        for (const h of handles) h.delete();
        for (const kk of kernels) kk.destroy?.();
      }
    },
    async dispose() {
      gpu.destroy?.();
    },
  };
}
