// Moved to src/methods/sbora/; this shim and its pre-variant names go once the lead integrates.
export * from './methods/sbora/index.js';
export type { MergeOptions } from './methods/common.js';
import type { Tensor } from './tensor.js';
import type { Dropout } from './ops/dropout.js';
import type { Context } from './runtime.js';
import type { ForwardOptions, MergeOptions } from './methods/common.js';
import { sboraBackward, sboraForward, sboraMerge, type SboraFaArgs, type SboraFbArgs } from './methods/sbora/index.js';
/** @deprecated sboraForward/sboraBackward/sboraMerge with variant 'fa' | 'fb'. */
export type SboraFaParams = Omit<SboraFaArgs, 'variant'>;
/** @deprecated */
export type SboraFbParams = Omit<SboraFbArgs, 'variant'>;
type Act = { x: Tensor; dropout?: Dropout };
/** @deprecated sboraForward({ variant: 'fa', ... }). */
export const sboraFaForward = (ctx: Context, p: SboraFaParams & Act & { y?: Tensor }, o?: ForwardOptions) => sboraForward(ctx, { ...p, variant: 'fa' }, o);
/** @deprecated sboraForward({ variant: 'fb', ... }). */
export const sboraFbForward = (ctx: Context, p: SboraFbParams & Act & { y?: Tensor }, o?: ForwardOptions) => sboraForward(ctx, { ...p, variant: 'fb' }, o);
/** @deprecated sboraBackward({ variant: 'fa', ... }). */
export const sboraFaBackward = (ctx: Context, p: SboraFaParams & Act & { g: Tensor; dx?: Tensor; db?: Tensor }, o?: ForwardOptions) => sboraBackward(ctx, { ...p, variant: 'fa' as const }, o);
/** @deprecated sboraBackward({ variant: 'fb', ... }). */
export const sboraFbBackward = (ctx: Context, p: SboraFbParams & Act & { g: Tensor; dx?: Tensor; da?: Tensor }, o?: ForwardOptions) => sboraBackward(ctx, { ...p, variant: 'fb' as const }, o);
/** @deprecated sboraMerge({ variant: 'fa', ... }). */
export const sboraFaMerge = (ctx: Context, p: SboraFaParams & { out?: Tensor }, o?: MergeOptions) => sboraMerge(ctx, { ...p, variant: 'fa' }, o);
/** @deprecated sboraMerge({ variant: 'fb', ... }). */
export const sboraFbMerge = (ctx: Context, p: SboraFbParams & { out?: Tensor }, o?: MergeOptions) => sboraMerge(ctx, { ...p, variant: 'fb' }, o);
