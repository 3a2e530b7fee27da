// Peer: the same math composed from TensorFlow.js ops on its WebGPU backend, on the same Dawn
// adapter as ours. Timed with tf.time(), whose kernelMs sums the GPU timestamp-query time of every
// kernel tfjs dispatches (so gaps between its kernels are not counted: a conservative peer time).

import { workerCpuMs } from '../timing.js';
import { ensureNavigatorGpu, summarize, type Peer, type PeerInputs, type PeerMethod, type PeerPhase, type PeerRun } from './common.js';

type TF = typeof import('@tensorflow/tfjs-core');
type T = import('@tensorflow/tfjs-core').Tensor;

export async function createTfjsPeer(): Promise<Peer> {
  await ensureNavigatorGpu();
  const tf: TF = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") returned false');
  await tf.ready();
  const backend = tf.backend() as unknown as { device: GPUDevice; adapterInfo?: { description?: string; vendor?: string; architecture?: string } };
  const timestamps = backend.device.features.has('timestamp-query');
  // tfjs keeps only vendor/architecture; ask the same navigator.gpu for the adapter's description.
  const nav = (globalThis as unknown as { navigator: { gpu: GPU } }).navigator;
  const adapter = await nav.gpu.requestAdapter({ powerPreference: 'high-performance' });
  const device = (adapter as (GPUAdapter & { info?: GPUAdapterInfo }) | null)?.info?.description || backend.adapterInfo?.vendor || 'unknown';

  return {
    impl: 'tfjs-webgpu',
    device,
    async run(method: PeerMethod, phase: PeerPhase, inp: PeerInputs, opts): Promise<PeerRun> {
      const { T: Tn, n, m, r, b, s } = inp;
      const nb = n / b;
      const mb = m / b;
      const X = tf.tensor2d(inp.x, [Tn, n]);
      const W0 = tf.tensor2d(inp.w0, [m, n]);
      const A = tf.tensor2d(inp.a, [r, n]);
      const B = tf.tensor2d(inp.bm, [m, r]);
      const G = tf.tensor2d(inp.g, [Tn, m]);
      const sig = tf.tensor3d(inp.sigma, [b, b, r]);
      const held: T[] = [X, W0, A, B, G, sig];
      const keep = <U extends T>(t: U): U => (held.push(t), t);

      // BoRA pieces that do not depend on the phase being timed: the block views of X, A, B, G.
      const boraViews = () => {
        const Xk = tf.transpose(tf.reshape(X, [Tn, b, nb]), [1, 0, 2]); // [b, T, nb]
        const Ak = tf.transpose(tf.reshape(A, [r, b, nb]), [1, 0, 2]); // [b, r, nb]
        const B3 = tf.reshape(B, [b, mb, r]); // [b, mb, r]
        const mu = tf.mean(tf.abs(sig));
        const Sig = tf.exp(tf.div(sig, mu)); // [bj, bk, r]
        const Sq = tf.transpose(Sig, [2, 0, 1]); // [r, bj, bk]
        return { Xk, Ak, B3, mu, Sig, Sq };
      };
      const boraForward = () => {
        const v = boraViews();
        const Zk = tf.matMul(v.Xk, v.Ak, false, true); // [bk, T, r]
        const Zq = tf.transpose(Zk, [2, 1, 0]); // [r, T, bk]
        const Sj = tf.transpose(tf.matMul(Zq, v.Sq, false, true), [2, 1, 0]); // [bj, T, r]
        const Yj = tf.matMul(Sj, v.B3, false, true); // [bj, T, mb]
        const Yad = tf.reshape(tf.transpose(Yj, [1, 0, 2]), [Tn, m]);
        const Y = tf.add(tf.matMul(X, W0, false, true), tf.mul(Yad, s));
        return { Y, Zq, Sj };
      };

      let f: () => Record<string, T>;
      if (method === 'matmul') {
        f = () => ({ y: tf.matMul(X, W0, false, true) });
      } else if (method === 'lora' && phase === 'forward') {
        f = () => {
          const Z = tf.matMul(X, A, false, true);
          return { y: tf.add(tf.matMul(X, W0, false, true), tf.mul(tf.matMul(Z, B, false, true), s)) };
        };
      } else if (method === 'lora') {
        const Z = keep(tf.matMul(X, A, false, true)); // the forward's Z, as ours is handed it
        f = () => {
          const H = tf.matMul(G, B);
          const dx = tf.add(tf.matMul(G, W0), tf.mul(tf.matMul(H, A), s));
          const db = tf.mul(tf.matMul(G, Z, true, false), s);
          const da = tf.mul(tf.matMul(H, X, true, false), s);
          return { dx, da, db };
        };
      } else if (phase === 'forward') {
        f = () => ({ y: boraForward().Y });
      } else {
        const fw = tf.tidy(() => {
          const o = boraForward();
          return { Zq: o.Zq, Sj: o.Sj };
        });
        keep(fw.Zq);
        keep(fw.Sj);
        f = () => {
          const v = boraViews();
          const G3 = tf.transpose(tf.reshape(G, [Tn, b, mb]), [1, 0, 2]); // [bj, T, mb]
          const dSj = tf.mul(tf.matMul(G3, v.B3), s); // [bj, T, r]
          const db = tf.reshape(tf.mul(tf.matMul(G3, fw.Sj, true, false), s), [m, r]);
          const dSq = tf.transpose(dSj, [2, 0, 1]); // [r, bj, T]
          const dSig = tf.transpose(tf.matMul(dSq, fw.Zq), [1, 2, 0]); // [bj, bk, r]
          const dZk = tf.transpose(tf.matMul(dSq, v.Sq, true, false), [2, 1, 0]); // [bk, T, r]
          const da = tf.reshape(tf.transpose(tf.matMul(dZk, v.Xk, true, false), [1, 0, 2]), [r, n]);
          const dXad = tf.reshape(tf.transpose(tf.matMul(dZk, v.Ak), [1, 0, 2]), [Tn, n]);
          const dx = tf.add(tf.matMul(G, W0), dXad);
          // exp-mav: dσ = dΣ·Σ/μ − sign(σ)/(N μ²) · Σ_p dΣ_p Σ_p σ_p
          const dSS = tf.mul(dSig, v.Sig);
          const N = b * b * r;
          const corr = tf.div(tf.sum(tf.mul(dSS, sig)), tf.mul(tf.square(v.mu), N));
          const dsigma = tf.sub(tf.div(dSS, v.mu), tf.mul(tf.sign(sig), corr));
          return { dx, da, db, dsigma };
        };
      }

      const once = () => tf.tidy(f);
      try {
        for (let i = 0; i < opts.warmup; i++) {
          const o = once();
          await Promise.all(Object.values(o).map((t) => t.data()));
          tf.dispose(Object.values(o));
        }
        const samples: number[] = [];
        const cpu: number[] = [];
        let last: Record<string, T> = {};
        for (let i = 0; i < opts.reps; i++) {
          let out: Record<string, T> = {};
          const t0 = performance.now();
          const c0 = workerCpuMs();
          const info = await tf.time(() => {
            out = once();
          });
          await Promise.all(Object.values(out).map((t) => t.data()));
          const wall = performance.now() - t0;
          const c1 = workerCpuMs();
          if (c0 !== null && c1 !== null) cpu.push(c1 - c0);
          samples.push(timestamps && info.kernelMs && typeof info.kernelMs === 'number' ? info.kernelMs : wall);
          tf.dispose(Object.values(last));
          last = out;
        }
        const outputs: Record<string, Float32Array> = {};
        for (const [k, t] of Object.entries(last)) outputs[k] = (await t.data()) as Float32Array;
        tf.dispose(Object.values(last));
        return { timing: summarize(samples, timestamps ? 'timestamp-query (sum of kernels)' : 'wall-clock', cpu), outputs };
      } finally {
        tf.dispose(held);
      }
    },
    async dispose() {
      tf.disposeVariables();
      // The backend's device stays with tfjs; the process exits after the run.
    },
  };
}
