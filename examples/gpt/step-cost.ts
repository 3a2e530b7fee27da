// Issue 16's goal: "a GPT fine-tuning step with LoRA on q and v within 1.15× the step of the same
// model with adapters switched off". Times, interleaved round by round so that the load of a shared
// machine falls on both alike, a step of the frozen model (forward, backward to the input of
// every layer) against a LoRA step (the same plus the adapters' products, their gradients and
// AdamW on them), and prints the ratio per round and its median.
//
//   npx tsx examples/gpt/step-cost.ts [--rounds 7] [--steps 5] [--batch 8] [--T 64] [--targets q_proj,v_proj] [--rank 4]

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Context } from '../../src/runtime.js';
import { AdamW } from '../../src/optim.js';
import { GPT } from './model.js';
import { installAdapters, parseTargets, removeAdapters } from './session.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : d;
};
const rounds = Number(flag('rounds', '7'));
const steps = Number(flag('steps', '5'));
const B = Number(flag('batch', '8'));
const targets = parseTargets(flag('targets', 'q_proj,v_proj'));
const rank = Number(flag('rank', '4'));

const ctx = await Context.create();
const bytes = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'weights', 'gpt.safetensors'));
const { model } = GPT.fromSafetensors(ctx, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
const T = Number(flag('T', String(model.config.context)));
const b = model.batch(B, T);
const ids = Uint32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % model.config.vocab);
model.setBatch(b, ids, ids);

const lora = installAdapters(model, { method: 'lora', rank, scale: 2, blocks: 8, targets, seed: 1 });
const adapters = Object.fromEntries(lora.modules.map((m, i) => [m, lora.layers[i]]));
const opt = new AdamW(
  ctx,
  lora.layers.flatMap((l) => l.trainables.map((t) => ({ ...t, decay: false }))),
  { lr: 1e-3 },
);
const setAdapters = (on: boolean) => {
  for (const m of lora.modules) model.adapters[m] = on ? adapters[m] : undefined;
};
async function time(on: boolean): Promise<number> {
  setAdapters(on);
  await ctx.sync();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    await ctx.encode(undefined, async (enc) => {
      await model.forward(enc, b);
      await model.backward(enc, b);
      if (on) await opt.step({ encoder: enc });
    });
  }
  await ctx.sync();
  return (performance.now() - t0) / steps;
}
// Warm-up: compile every pipeline of both paths.
await time(false);
await time(true);
const ratios: number[] = [];
const offs: number[] = [];
const ons: number[] = [];
for (let r = 0; r < rounds; r++) {
  // Alternate which goes first, so a load change within a round does not favour one side.
  let o: number;
  let n: number;
  if (r % 2 === 0) {
    o = await time(false);
    n = await time(true);
  } else {
    n = await time(true);
    o = await time(false);
  }
  offs.push(o);
  ons.push(n);
  ratios.push(n / o);
  console.log(`round ${r + 1}: off ${o.toFixed(1)} ms, LoRA ${n.toFixed(1)} ms, ratio ${(n / o).toFixed(3)}`);
}
const median = (xs: number[]) => [...xs].sort((a, c) => a - c)[Math.floor(xs.length / 2)];
const device = ctx.adapterInfo.description || ctx.adapterInfo.device || 'unknown';
console.log(
  `${new Date().toISOString()}, ${device}: batch ${B} × T ${T}, LoRA r${rank} on ${targets.join(', ')} (${lora.trainable} trainable): ` +
    `median step off ${median(offs).toFixed(1)} ms, LoRA ${median(ons).toFixed(1)} ms; median of the per-round ratios ${median(ratios).toFixed(3)}, ratio of the medians ${(median(ons) / median(offs)).toFixed(3)} (goal ≤ 1.15)`,
);
setAdapters(true);
opt.destroy();
removeAdapters(model, lora);
model.destroy();
ctx.destroy();
