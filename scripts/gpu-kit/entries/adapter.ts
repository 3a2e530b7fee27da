// Prints the adapter the kit runs on, its limits and features, and the kernel choices the runtime
// makes for it, and writes them to --json FILE: the first thing to read in a kit's report.

import './dawn.js';
import { writeFileSync } from 'node:fs';
import { Context } from '../../../src/runtime.js';

async function main(argv: string[]): Promise<void> {
  const at = argv.indexOf('--json');
  const json = at >= 0 ? argv[at + 1] : undefined;
  if (at >= 0 && !json) throw new Error('adapter: --json needs a file name');
  const ctx = await Context.create();
  try {
    const limits: Record<string, number> = {};
    // GPUSupportedLimits keeps its fields as prototype getters, so Object.keys sees none of them.
    for (
      let proto = Object.getPrototypeOf(ctx.limits) as object | null;
      proto && proto !== Object.prototype;
      proto = Object.getPrototypeOf(proto) as object | null
    ) {
      for (const k of Object.getOwnPropertyNames(proto)) {
        const v = (ctx.limits as unknown as Record<string, unknown>)[k];
        if (typeof v === 'number') limits[k] = v;
      }
    }
    const info = {
      adapter: ctx.adapterInfo,
      defaultTuning: ctx.tuning,
      features: [...ctx.features].sort(),
      limits,
      node: process.version,
      date: new Date().toISOString(),
    };
    const a = ctx.adapterInfo;
    console.log(
      `adapter: ${a.description || '(no description)'}; vendor ${a.vendor || '?'}, architecture ${a.architecture || '?'}, device ${a.device || '?'}`,
    );
    console.log(`  runs on the ${a.isCpu ? 'CPU (a software rasteriser)' : 'GPU'}; default matmul kernels: ${ctx.tuning.matmul}`);
    console.log(`  features: ${info.features.join(', ') || 'none'}`);
    console.log(
      `  maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}, maxComputeWorkgroupStorageSize ${limits.maxComputeWorkgroupStorageSize}, maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup}`,
    );
    if (json) writeFileSync(json, JSON.stringify(info, null, 2));
  } finally {
    ctx.destroy();
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(`adapter: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
