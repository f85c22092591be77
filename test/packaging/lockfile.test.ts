/**
 * The lockfile is in sync with package.json: `npm ci` (what `.ci/run` and both Dockerfiles run)
 * refuses to install when the two drift, for example when a dependency is added to package.json
 * without `npm install`, or when the lockfile lacks the platform packages of an optional
 * dependency. `npm ci --dry-run` performs the same check without touching node_modules.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './packaging.js';

/** Runs `npm ci --dry-run` in a folder holding only the two files; returns status and output. */
function npmCiDryRun(packageJson: string, lockfile: string): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lockfile-'));
  try {
    writeFileSync(join(dir, 'package.json'), packageJson);
    writeFileSync(join(dir, 'package-lock.json'), lockfile);
    const r = spawnSync('npm', ['ci', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('package-lock.json', () => {
  const pkg = readFileSync(join(REPO_ROOT, 'package.json'), 'utf8');
  const lock = readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8');

  it('is in sync with package.json (npm ci accepts it)', () => {
    const r = npmCiDryRun(pkg, lock);
    if (r.status !== 0) throw new Error(`npm ci refuses the lockfile; run "npm install" and commit package-lock.json:\n${r.output}`);
  });

  it('the check can fail: a dependency missing from the lockfile is refused', () => {
    const drifted = JSON.parse(pkg) as { dependencies: Record<string, string> };
    drifted.dependencies['is-number'] = '7.0.0';
    const r = npmCiDryRun(JSON.stringify(drifted, null, 2), lock);
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/in sync/);
  });
});
