export * from '../methods/sbora/reference.js';
