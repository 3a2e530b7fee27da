// The package's entry point for Node (package.json's "node" condition): the same API as
// src/index.ts, with Dawn's `webgpu` package registered as the GPU provider, so createContext()
// finds a device with no navigator.gpu. Browser bundles take src/index.ts and never see Dawn or
// Node's modules.

import { setGpuProvider } from './runtime/device.js';
import { dawnGpu } from './runtime/dawn.js';

export * from './index.js';

setGpuProvider(dawnGpu);
