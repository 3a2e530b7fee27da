export * from './methods/lora/index.js';
