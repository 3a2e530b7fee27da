export * from './methods/bora/index.js';
