export * from '../methods/lorma/vectors.js';
