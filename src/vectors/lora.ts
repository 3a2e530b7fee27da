export * from '../methods/lora/vectors.js';
