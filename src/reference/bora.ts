export * from '../methods/bora/reference.js';
