export * from '../methods/lora/reference.js';
