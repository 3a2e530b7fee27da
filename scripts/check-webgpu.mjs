#!/usr/bin/env node
// Checks that this machine has a WebGPU adapter for Node (Dawn through the `webgpu` package) and
// says what to do when it has none. Run before the tests and the benchmark.
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';

const quiet = process.argv.includes('--quiet');
if (!process.env.XDG_RUNTIME_DIR) {
  process.env.XDG_RUNTIME_DIR = `${tmpdir()}/peft-wgsl-xdg-${process.pid}`;
  mkdirSync(process.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
}

function advice(reason) {
  process.stderr.write(
    `peft-wgsl: no usable WebGPU adapter in Node (${reason}).\n` +
      '  Debian/Ubuntu without a GPU: run `bash scripts/setup.sh` (installs Mesa >= 24 lavapipe;\n' +
      '  on Debian bookworm from bookworm-backports, see DEVELOPERS.md).\n' +
      '  Other systems: install a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver that Dawn\n' +
      '  accepts; on a Linux machine without a GPU, Mesa 24 or newer with its lavapipe Vulkan driver.\n',
  );
  process.exit(1);
}

let webgpu;
try {
  webgpu = await import('webgpu');
} catch (e) {
  advice(`the 'webgpu' package could not be loaded: ${e.message}; run npm ci`);
}
const gpu = webgpu.create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) advice('requestAdapter() returned null');
try {
  const device = await adapter.requestDevice();
  const info = adapter.info ?? {};
  if (!quiet) process.stdout.write(`WebGPU adapter: ${info.description || info.vendor || 'unknown'} (${info.architecture || 'n/a'})\n`);
  device.destroy();
} catch (e) {
  advice(`requestDevice failed: ${e.message}`);
}
// Keep `gpu` referenced until here: Dawn crashes if it is collected while devices live.
process.exit(gpu ? 0 : 1);
