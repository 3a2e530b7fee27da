#!/usr/bin/env node
// Run after changing dependencies: node scripts/fix-lock.mjs package-lock.json
// npm records no lock entry for optional platform packages the registry mirror here does
// not carry, and npm ci then refuses the lock. Add the entries, with os/cpu/libc read off the name.
import { readFileSync, writeFileSync } from 'node:fs';
const lockPath = process.argv[2];
const lock = JSON.parse(readFileSync(lockPath, 'utf8'));
const pkgs = lock.packages;
const cpus = ['arm64', 'arm', 'x64', 'ia32', 'loong64', 'ppc64', 'riscv64', 's390x'];
let added = 0;
for (const entry of Object.values(pkgs)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${dep}`;
    if (pkgs[key]) continue;
    const m = /^@rollup\/rollup-([a-z0-9]+)-([a-z0-9]+)(?:-(\w+))?$/.exec(dep);
    if (!m || !cpus.includes(m[2])) throw new Error(`don't know the platform of ${dep}`);
    const e = { version, cpu: [m[2]], dev: entry.dev || undefined, license: 'MIT', optional: true, os: [m[1]] };
    if (m[3] === 'gnu' || m[3] === 'gnueabihf') e.libc = ['glibc'];
    if (m[3] === 'musl' || m[3] === 'musleabihf') e.libc = ['musl'];
    pkgs[key] = e;
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + '\n');
console.log('added', added);
