// Command-line helpers the example scripts share: `--name value` flags, and `--help` printing the
// script's header comment (each script documents its flags in its first lines).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The value after `--name` in `argv`, or undefined when the flag is absent. */
export function flagIn(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** `--name value` from the command line: a number (checked) or a string, else `fallback`. */
export function flag(name: string, fallback: number): number;
export function flag(name: string, fallback: string): string;
export function flag(name: string, fallback: number | string): number | string {
  const v = flagIn(process.argv, name);
  if (v === undefined) return fallback;
  if (typeof fallback === 'string') return v;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} needs a number, got ${v}`);
  return n;
}

/** With `--help` or `-h`, prints the first `lines` lines of the script at `url` without their `//` and exits. */
export function helpFromHeader(argv: readonly string[], url: string, lines = 16): void {
  if (!argv.includes('--help') && !argv.includes('-h')) return;
  console.log(
    readFileSync(fileURLToPath(url), 'utf8')
      .split('\n')
      .slice(0, lines)
      .join('\n')
      .replace(/^\/\/ ?/gm, ''),
  );
  process.exit(0);
}
