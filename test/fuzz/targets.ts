// Every fuzz target by the name `--family` takes. Campaigns run them in this order: the families
// whose specialisations compile quickly first, BoRA (tens of seconds per new pipeline on lavapipe)
// last, so a campaign cut short has covered the others.

import { invalidTarget } from './invalid.js';
import { validTargets, type FuzzTarget, type Profile } from './valid.js';

const ORDER = ['matmul', 'dropout', 'lora', 'lorma', 'nn', 'adamw', 'bad-input', 'sbora', 'bora'];

export function targets(profile: Profile): FuzzTarget[] {
  const all = [...validTargets(profile), invalidTarget];
  return ORDER.map((name) => all.find((t) => t.name === name)!);
}
