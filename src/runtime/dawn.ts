// Dawn's Node bindings (the `webgpu` package) as the GPU provider in Node. Node-only: browser
// bundles never reach this module (src/node.ts registers it; src/runtime/device.ts loads it in a
// Node host through an import specifier that bundlers do not follow).

import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { ContextOptions } from './device.js';
import { noWebGpuMessage } from './device.js';
import { PeftError } from '../validate.js';

// Dawn's create() result must outlive every device it made: if it is collected the process
// segfaults. It is also heavy (a Dawn instance with its adapters and Vulkan instance: about 2 MiB
// of RSS each, never returned while it is kept), and one per process serves every context: each
// context requests its own adapter and device from it. So there is one per distinct `dawnOptions`,
// made on first use and kept for the life of the process.
const dawnInstances = new Map<string, GPU>();

type DawnModule = { create: (opts: string[]) => GPU; globals: Record<string, unknown> };

/** Mesa's Vulkan drivers want a writable runtime folder; any will do. */
function ensureRuntimeDir(): void {
  if (process.env.XDG_RUNTIME_DIR) return;
  const dir = `${tmpdir()}/peft-wgsl-xdg-${process.pid}`;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}

/** A GPU object from Dawn, with `options.dawnOptions` passed to its create(). */
export async function dawnGpu(options: ContextOptions): Promise<{ gpu: GPU; root: unknown }> {
  ensureRuntimeDir();
  let mod: DawnModule;
  try {
    mod = (await import('webgpu')) as unknown as DawnModule;
  } catch (e) {
    throw new PeftError(noWebGpuMessage({ node: true }, (e as Error).message));
  }
  const dawnOptions = options.dawnOptions ?? [];
  const key = JSON.stringify(dawnOptions);
  let gpu = dawnInstances.get(key);
  if (!gpu) {
    gpu = mod.create(dawnOptions);
    dawnInstances.set(key, gpu);
    // Dawn's classes (GPUBufferUsage, GPUShaderStage, ...) for code that expects browser globals.
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
  }
  return { gpu, root: gpu };
}
