#!/usr/bin/env node
// Installs the npm dependencies when they are missing or older than the lockfile, so that the
// README's two commands (`npm start`, `npm test`) work on a fresh clone with nothing run first.
// Uses `npm ci`, so the installed tree is exactly the lockfile's (a test fails when the two drift).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs;
if (stale) {
  console.log('--- installing npm dependencies (npm ci)');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('npm ci failed; see the output above');
    process.exit(r.status ?? 1);
  }
}
