// `--methods all` for the kit's compare: every row the bundled bench knows, so run.sh never lists
// methods by hand and a method added to the registry is compared without touching the kit. LoRA
// comes first because bench/compare.ts takes the first method as the baseline of its ratios.

import { ORDER } from '../../../bench/methods/index.js';

const at = process.argv.indexOf('--methods');
if (at >= 0 && process.argv[at + 1] === 'all') process.argv[at + 1] = ['lora', ...ORDER.filter((m) => m !== 'lora')].join(',');
