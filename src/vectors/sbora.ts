export * from '../methods/sbora/vectors.js';
