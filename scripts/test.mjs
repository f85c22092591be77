#!/usr/bin/env node
// The README's test command. Type-checks, lints, runs the planner's exhaustive check, then jest,
// and closes with one plain "N passed, N failed" line that CI can read.
import { spawnSync } from 'node:child_process';

const steps = [
  // A fresh clone has neither the npm packages nor the Go-built Kubernetes tools: get both first
  // (each is a no-op when already current).
  ['dependencies', 'node', ['scripts/ensure-deps.mjs']],
  ['tools:build', 'node', ['scripts/tools.mjs', 'build']],
  // The images the local cluster's nodes run, from the Dockerfiles (cached; seconds when current).
  ['images', 'npx', ['tsx', 'scripts/images.ts']],
  ['typecheck', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
  ['lint', 'npx', ['eslint', '.']],
  // The planner's exhaustive check for every n -> m in 1..9 and every change of target midway.
  ['plan --check-all --max 9', 'npx', ['tsx', 'operator/bin/plan.ts', '--check-all', '--max', '9']],
  ['jest', 'node', ['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '--json', '--outputFile=.jest-results.json', '--forceExit', ...process.argv.slice(2)]],
];
/** Steps that prepare the run rather than test anything. */
const SETUP = new Set(['dependencies', 'tools:build', 'images']);
let passed = 0;
let failed = 0;
for (const [name, cmd, args] of steps) {
  const started = Date.now();
  console.log(`\n=== ${name} ===`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  const ok = r.status === 0;
  console.log(`=== ${name}: ${ok ? 'ok' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s ===`);
  if (name === 'jest') {
    try {
      const { readFileSync, rmSync } = await import('node:fs');
      const res = JSON.parse(readFileSync('.jest-results.json', 'utf8'));
      rmSync('.jest-results.json');
      passed += res.numPassedTests;
      failed += res.numFailedTests + (res.numRuntimeErrorTestSuites ?? 0);
      if (!ok && res.numFailedTests === 0 && !res.numRuntimeErrorTestSuites) failed += 1;
    } catch {
      if (!ok) failed += 1;
    }
  } else if (SETUP.has(name)) {
    // Preparation, not a test: nothing to count, and nothing after it can run without it.
    if (!ok) {
      console.log(`\n0 passed, 1 failed`);
      process.exit(1);
    }
  } else if (ok) passed += 1;
  else failed += 1;
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
