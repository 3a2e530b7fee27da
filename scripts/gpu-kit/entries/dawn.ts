// Imported first by every kit program. src/runtime/device.ts reaches Dawn through a path relative
// to its own file ('./dawn.js', kept out of bundlers' sight so browser bundles never pull in Node's
// modules); inside a bundle that file is gone, so the kit registers Dawn as the GPU provider
// itself, as the package's Node entry (src/node.ts) does.

import { setGpuProvider } from '../../../src/runtime/device.js';
import { dawnGpu } from '../../../src/runtime/dawn.js';

setGpuProvider(dawnGpu);
