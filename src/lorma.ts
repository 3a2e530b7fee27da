export * from './methods/lorma/index.js';
// Old names src/index.ts still exports until the lead moves it to the new ones.
export type { LormaVariant as Inflation, LormaOrder as Order } from './methods/lorma/index.js';
