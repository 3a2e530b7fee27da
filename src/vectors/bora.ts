export * from '../methods/bora/vectors.js';
