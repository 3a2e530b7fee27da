export * from '../methods/lorma/reference.js';
