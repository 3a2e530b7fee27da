// The repository stands on its own: no file may read, import or point readers to anything outside
// it (a sibling checkout of shared material, or a folder of the machine it was written on), so
// that a fresh clone builds, tests and reads the same everywhere.
//
// The patterns below are written so that they do not match their own source; this file is scanned
// like any other.

import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';

const ROOT = join(import.meta.dirname, '..');

/** Exempt: the lock file records registry URLs and paths npm chose, not ours. */
const EXEMPT = new Set(['package-lock.json']);

/** Files that run: a temporary-folder path there is a real dependency on this machine. */
const CODE = new Set(['.ts', '.tsx', '.js', '.mjs', '.cjs', '.py', '.sh', '.wgsl', '.json', '.html', '.vue']);

interface Rule {
  why: string;
  re: RegExp;
  codeOnly?: boolean;
}

const RULES: Rule[] = [
  { why: 'a sibling folder outside the repository', re: /\.\.[\\/]shared\b/ },
  { why: 'a sibling folder outside the repository', re: /['"]\.\.['"]\s*,\s*['"]shared['"]/ },
  { why: 'an absolute path of the build machine', re: /(?<![\w.~-])\/wor[k]\// },
  { why: 'an absolute temporary path (use os.tmpdir())', re: /(?<![\w.~-])\/tm[p]\//, codeOnly: true },
];

/** The files a clone has: tracked ones, and new ones git would commit (not ignored). */
function repositoryFiles(): string[] {
  try {
    const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
    return [...new Set(out.split('\0').filter(Boolean))];
  } catch {
    // An unpacked archive has no git: walk the tree, skipping what is installed or generated.
    const skip = new Set(['node_modules', '.git', 'dist', 'generated']);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (skip.has(e.name)) continue;
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) files.push(relative(ROOT, p).split(sep).join('/'));
      }
    };
    walk(ROOT);
    return files;
  }
}

function offences(): string[] {
  const found: string[] = [];
  for (const file of repositoryFiles()) {
    if (EXEMPT.has(file)) continue;
    const path = join(ROOT, file);
    // A file deleted in the working tree (moved, not yet committed) has nothing to read.
    if (!existsSync(path) || !statSync(path).isFile()) continue;
    const bytes = readFileSync(path);
    if (bytes.includes(0)) continue; // images and other binaries
    const code = CODE.has(extname(file));
    const lines = bytes.toString('utf8').split('\n');
    for (const [i, line] of lines.entries()) {
      for (const rule of RULES) {
        if (rule.codeOnly && !code) continue;
        if (rule.re.test(line)) {
          found.push(`${file}:${i + 1}: ${rule.why}: ${line.trim().slice(0, 120)}`);
          break;
        }
      }
    }
  }
  return found;
}

describe('standalone', () => {
  it('no file names a path outside the repository', () => {
    const found = offences();
    // The count, not the array: chai's diff would print every line a second time.
    expect(found.length, `${found.length} line(s) point outside the repository:\n${found.join('\n')}\n`).to.equal(0);
  });

  it('the patterns catch what they are meant to', () => {
    const hit = (line: string, code = true) => RULES.some((r) => (!r.codeOnly || code) && r.re.test(line));
    const up = '..';
    expect(hit(`readFileSync('${up}/shared/vectors/examples.json')`)).to.equal(true);
    expect(hit(`join(dir, '${up}', '${up}', 'shared', 'vectors')`)).to.equal(true);
    expect(hit(`see ${up}\\shared\\spec`)).to.equal(true);
    expect(hit(`readFileSync('/${'work'}/main/x.json')`)).to.equal(true);
    expect(hit(`--out /${'tmp'}/r.json`)).to.equal(true);
    expect(hit(`--out /${'tmp'}/r.json`, false)).to.equal(false);
    expect(hit('mkdtempSync(join(tmpdir(), "peft-"))')).to.equal(false);
    expect(hit(`the framework/ folder, ./tmp/x, ~/${'work'}/x and test/vectors/cases.json`)).to.equal(false);
  });
});
