// Device acquisition and loss: finds a GPUDevice in any host (a device the caller passes, a GPU
// object, a browser's navigator.gpu, or a registered provider such as Dawn in Node), describes its
// adapter, and tracks whether it is still usable.
//
// Nothing here imports a `node:` module or the `webgpu` package, so a browser bundle can include
// this file. Dawn lives in ./dawn.ts: `src/node.ts` registers it as the provider, and when nothing
// was registered a Node host loads it through an import whose specifier bundlers cannot follow.

import { matmulVariantFor } from '../ops/matmul.js';
import { PeftError } from '../validate.js';

export interface ContextOptions {
  /** Use this device: the caller keeps ownership, `destroy()` will not destroy it. */
  device?: GPUDevice;
  /** Use this adapter to request a device. */
  adapter?: GPUAdapter;
  /** Use this GPU object (navigator.gpu, or the result of Dawn's `create()`). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Options passed to Dawn's `create()` in Node, e.g. ['enable-dawn-features=...']. */
  dawnOptions?: string[];
  /** Features to request when the adapter has them. Defaults to shader-f16, subgroups, timestamp-query. */
  features?: GPUFeatureName[];
  /** Kernel choices; by default picked from the adapter (see Tuning). */
  tuning?: Partial<Tuning>;
}

/**
 * Kernel variants. CPU WebGPU (lavapipe, SwiftShader) pays a lot for workgroup barriers and little
 * for re-reading memory, so it gets the barrier-free kernels; GPUs get the workgroup-tiled ones.
 * Settings that belong to one method live with that method, not here.
 */
export interface Tuning {
  /**
   * 'direct-scalar' is 'direct' without 16-byte loads, kept to compare the two in bench/;
   * 'tiled4' is 'tiled' with 16-byte staging loads and larger register blocks; 'tiled-vec4' and
   * 'tiled-vec4-128' are the TF.js-style register-blocked kernels (64×64 and 128×64 tiles);
   * 'subgroup' shares A through subgroup shuffles where the adapter offers `subgroups`, else it is
   * 'tiled' (src/ops/matmul.ts).
   */
  matmul: 'tiled' | 'tiled4' | 'tiled-vec4' | 'tiled-vec4-128' | 'subgroup' | 'direct' | 'direct-scalar';
}

/** Every name ctx.tuning.matmul accepts. */
export const MATMUL_VARIANTS: readonly Tuning['matmul'][] = [
  'tiled',
  'tiled4',
  'tiled-vec4',
  'tiled-vec4-128',
  'subgroup',
  'direct',
  'direct-scalar',
];

/**
 * Rejects a tuning that is not an object of known settings with known values (checked before a
 * device is requested, so a typo costs nothing).
 */
export function checkTuning(tuning: unknown): asserts tuning is Partial<Tuning> | undefined {
  if (tuning === undefined) return;
  if (tuning === null || typeof tuning !== 'object') {
    throw new PeftError(`Context.create: options.tuning must be an object, got ${tuning === null ? 'null' : typeof tuning}`);
  }
  for (const k of Object.keys(tuning)) {
    if (k !== 'matmul') throw new PeftError(`Context.create: options.tuning.${k} is not a setting (options.tuning takes matmul)`);
  }
  const variant = (tuning as Partial<Tuning>).matmul;
  if (variant !== undefined && !MATMUL_VARIANTS.includes(variant)) {
    throw new PeftError(
      `Context.create: options.tuning.matmul is '${variant}', expected 'tiled', 'tiled4', 'direct' or 'direct-scalar', or a GPU variant: 'tiled-vec4', 'tiled-vec4-128' or 'subgroup'`,
    );
  }
}

/** The adapter's default kernel choices (MATMUL_BY_ADAPTER) with the caller's (checked) `tuning` over them. */
export function defaultTuning(info: DeviceDescription, tuning: Partial<Tuning> | undefined): Tuning {
  return { matmul: tuning?.matmul ?? matmulVariantFor(info) };
}

export interface DeviceDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Software rasterisers (lavapipe, SwiftShader) run the WGSL on the CPU. */
  isCpu: boolean;
}

export function describe(info: GPUAdapterInfo | undefined): DeviceDescription {
  const vendor = info?.vendor ?? '';
  const architecture = info?.architecture ?? '';
  const device = info?.device ?? '';
  const description = info?.description ?? '';
  const all = `${vendor} ${architecture} ${device} ${description}`.toLowerCase();
  const isCpu = /llvmpipe|lavapipe|swiftshader|software|cpu/.test(all);
  return { vendor, architecture, device, description, isCpu };
}

// ------------------------------------------------------------------ where the GPU object comes from

/**
 * Makes a GPU object when the host has no navigator.gpu. `root` is whatever must stay referenced
 * while the GPU's devices live (Dawn's create() result); the context holds it.
 */
export type GpuProvider = (options: ContextOptions) => Promise<{ gpu: GPU; root: unknown }>;

let provider: GpuProvider | undefined;

/** Registers the GPU provider used when there is no navigator.gpu (src/node.ts registers Dawn). */
export function setGpuProvider(p: GpuProvider | undefined): void {
  provider = p;
}

/** What the no-WebGPU message depends on, read off a global object. */
export interface HostKind {
  /** Node.js (or a runtime that presents itself as Node). */
  node: boolean;
  /** window.isSecureContext: navigator.gpu exists only in secure contexts (https, localhost). */
  secureContext?: boolean;
  userAgent?: string;
}

type HostGlobal = {
  navigator?: { gpu?: GPU; userAgent?: string };
  process?: { versions?: { node?: string } };
  isSecureContext?: boolean;
};

export function hostKind(g: object = globalThis): HostKind {
  const h = g as HostGlobal;
  return {
    node: typeof h.process?.versions?.node === 'string',
    secureContext: typeof h.isSecureContext === 'boolean' ? h.isSecureContext : undefined,
    userAgent: h.navigator?.userAgent,
  };
}

/** The error text for a host that has no WebGPU, worded for that host. */
export function noWebGpuMessage(host: HostKind, detail?: string): string {
  if (host.node) {
    return (
      `no WebGPU found: this host has no navigator.gpu and the 'webgpu' package (Dawn for Node) could not be loaded` +
      (detail ? ` (${detail})` : '') +
      ". Install it with 'npm install webgpu', or pass { device } from a host that has WebGPU."
    );
  }
  if (host.secureContext === false) {
    return (
      'no WebGPU: navigator.gpu exists only in secure contexts; serve this page over https or from localhost ' +
      '(or pass { device } from a context that has WebGPU).'
    );
  }
  const ua = host.userAgent ? ` (this browser: ${host.userAgent})` : '';
  return (
    `no WebGPU: this browser has no navigator.gpu${ua}. WebGPU is on by default in Chrome and Edge 113+ on ` +
    'Windows, macOS and ChromeOS, Chrome 121+ on Android, Safari 26+, and Firefox 141+ on Windows; elsewhere ' +
    'enable it (Chrome on Linux: chrome://flags/#enable-unsafe-webgpu, with Vulkan; Firefox: dom.webgpu.enabled ' +
    'in about:config; older Safari: Develop > Feature Flags > WebGPU), or pass { device } from a host that has WebGPU.'
  );
}

// The Dawn module's path relative to this one, in a variable: bundlers only follow literal
// specifiers, so a browser bundle never pulls in Node's modules through here.
const DAWN_MODULE = './dawn.js';

/** The GPU object for `options`: the given one, navigator.gpu, the provider, or Dawn in Node. */
export async function findGpu(options: ContextOptions, g: object = globalThis): Promise<{ gpu: GPU; root: unknown }> {
  if (options.gpu) return { gpu: options.gpu, root: null };
  const nav = (g as HostGlobal).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, root: null };
  if (provider) return provider(options);
  const host = hostKind(g);
  if (!host.node) throw new PeftError(noWebGpuMessage(host));
  let dawn: { dawnGpu: GpuProvider };
  try {
    dawn = (await import(/* @vite-ignore */ /* webpackIgnore: true */ DAWN_MODULE)) as { dawnGpu: GpuProvider };
  } catch (e) {
    // A bundle for Node that moved this file away from dawn.js: the 'webgpu' package is not the issue.
    throw new PeftError(
      `no WebGPU found: no navigator.gpu, and the Dawn loader (${DAWN_MODULE} beside this module) could not be loaded ` +
        `(${(e as Error).message}). Import the package's Node entry ('peft-wgsl/node'), or register a GPU with setGpuProvider, or pass { device }.`,
    );
  }
  return dawn.dawnGpu(options);
}

const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export interface AcquiredDevice {
  device: GPUDevice;
  info: DeviceDescription;
  /** Keep referenced while the device lives (Dawn's create() result), or null. */
  root: unknown;
  /** True when the context made the device and so destroys it. */
  owns: boolean;
}

/**
 * The device for `options`: the caller's, or one requested from the given adapter, or from the
 * host's GPU with the adapter's limits and the wanted features it offers.
 */
export async function acquireDevice(options: ContextOptions): Promise<AcquiredDevice> {
  if (options.device) {
    const info = describe((options.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo);
    return { device: options.device, info, root: null, owns: false };
  }
  let root: unknown = null;
  let adapter = options.adapter;
  if (!adapter) {
    const found = await findGpu(options);
    root = found.root;
    const a = await found.gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    if (!a) {
      throw new PeftError(
        'no WebGPU adapter: the host has WebGPU but offered no adapter. On Linux without a GPU install ' +
          "Mesa's lavapipe (Debian: mesa-vulkan-drivers from bookworm-backports, see DEVELOPERS.md); in a browser, enable WebGPU.",
      );
    }
    adapter = a;
  }
  const wanted = options.features ?? (['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[]);
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'peft-wgsl' });
  } catch (e) {
    throw new PeftError(`requestDevice failed: ${(e as Error).message}`);
  }
  const info = describe((adapter as GPUAdapter & { info?: GPUAdapterInfo }).info);
  return { device, info, root, owns: true };
}

// ------------------------------------------------------------------ loss

/** Whether the device is lost or the context destroyed; every operation asks first. */
export class DeviceHealth {
  /** Resolves when the device is lost; the context is unusable after that. */
  readonly lost: Promise<GPUDeviceLostInfo>;
  #lostInfo: GPUDeviceLostInfo | null = null;
  #destroyed = false;

  constructor(device: GPUDevice) {
    this.lost = device.lost.then((info) => {
      this.#lostInfo = info;
      return info;
    });
  }

  get isLost(): boolean {
    return this.#lostInfo !== null;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  markDestroyed(): void {
    this.#destroyed = true;
  }

  /** The error for `what` on a destroyed context or lost device; null while it is alive. */
  deadError(what: string): PeftError | null {
    if (this.#destroyed) return new PeftError(`${what}: this context was destroyed`);
    if (this.#lostInfo) {
      return new PeftError(`${what}: the GPU device was lost (${this.#lostInfo.reason}: ${this.#lostInfo.message}); create a new context`);
    }
    return null;
  }

  /** Throws when the device is lost or the context destroyed. */
  assertAlive(what = 'operation'): void {
    const e = this.deadError(what);
    if (e) throw e;
  }

  /**
   * What a failed operation of `what` should throw: the loss, when the device went away under it
   * (Dawn rejects a pending map with a bare AbortError, and the loss is reported a task later, so
   * a non-PeftError waits briefly for it), else the error itself.
   */
  async explain(what: string, e: unknown): Promise<unknown> {
    let dead = this.deadError(what);
    if (!dead && !(e instanceof PeftError)) {
      await Promise.race([this.lost, new Promise((resolve) => setTimeout(resolve, 50))]);
      dead = this.deadError(what);
    }
    if (!dead) return e;
    if (e instanceof PeftError && / (was destroyed|device was lost)/.test(e.message) && e.message.startsWith(`${what}:`)) return e;
    return dead;
  }
}
