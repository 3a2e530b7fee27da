// Command-line helpers the example scripts share: `--name value` flags, and `--help` printing the
// script's header comment (each script documents its flags in its first lines).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The value after `--name` in `argv`, or undefined when the flag is absent. */
export function flagIn(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
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
