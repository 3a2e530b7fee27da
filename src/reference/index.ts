// Float64 CPU reference of every kernel, for tests and for users checking their own work:
// import from 'peft-wgsl/reference'. Each method's reference sits in its family's folder
// (src/methods/<family>/reference.ts), beside the kernels it checks.

export * from './linalg.js';
export * as lora from '../methods/lora/reference.js';
export * as bora from '../methods/bora/reference.js';
export * as sbora from '../methods/sbora/reference.js';
export * as lorma from '../methods/lorma/reference.js';
export * as dropout from './dropout.js';
export * as quant from '../quant/reference.js';
export * as nn from './nn.js';
export * as optim from './optim.js';
export * as attention from './attention.js';
