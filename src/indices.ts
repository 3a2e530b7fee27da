export * from './methods/sbora/indices.js';
