// The one list of methods. Everything that needs to know which methods exist — the public API,
// adapter files, the `vectors` command, the benchmark and its report, the examples and the demo —
// reads METHODS; adding a method is a folder under src/methods/ and one row here
// (docs/adding-a-method.md).

import { PeftError } from '../validate.js';
import type { MethodDescriptor } from './types.js';
import { lora } from './lora/index.js';
import { bora, melora } from './bora/index.js';
import { sboraFa, sboraFb } from './sbora/index.js';
import { lormaPlus, lormaPi } from './lorma/index.js';

/** Every method, in the order tables and charts show them. */
export const METHODS: readonly MethodDescriptor[] = [lora, bora, melora, sboraFa, sboraFb, lormaPlus, lormaPi];

/** The method with this id or alias; a PeftError that lists the ids otherwise. */
export function methodById(id: string, where = 'method'): MethodDescriptor {
  const found = METHODS.find((m) => m.id === id || m.aliases.includes(id));
  if (!found) throw new PeftError(`${where}: unknown method ${JSON.stringify(id)}; expected one of ${METHODS.map((m) => m.id).join(', ')}`);
  return found;
}

/** The ids of every method, in table order. */
export const METHOD_IDS: readonly string[] = METHODS.map((m) => m.id);
