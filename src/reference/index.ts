// Float64 CPU reference of every kernel, for tests and for users checking their own work:
// import from 'peft-wgsl/reference'.

export * from './linalg.js';
export * as lora from './lora.js';
export * as dropout from './dropout.js';
export * as nn from './nn.js';
export * as optim from './optim.js';
export * as sbora from './sbora.js';
export * as lorma from './lorma.js';
export * as bora from './bora.js';
