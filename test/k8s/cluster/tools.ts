/**
 * Finds the test binaries built by `scripts/tools.mjs` (or supplied via KUBEBUILDER_ASSETS /
 * TEST_ASSET_* overrides, which that script symlinks into the same folder).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the repository (three levels above this file). */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Names of binaries `scripts/tools.mjs` can provide. */
export type ToolName =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubectl'
  | 'helm'
  | 'kubelet'
  | 'kube-proxy'
  | 'coredns'
  | 'buildkitd'
  | 'buildctl'
  | 'crictl';

/** Thrown when binaries are missing; the message says how to build them. */
export class ToolsMissingError extends Error {
  /** The binaries that were not found. */
  readonly missing: readonly string[];
  constructor(binDir: string, missing: readonly string[]) {
    super(
      `Kubernetes test binaries missing from ${binDir}: ${missing.join(', ')}.\n` +
        'Run `npm run tools:build` first (builds them from the pinned Go modules in test/k8s/tools; ' +
        'or set KUBEBUILDER_ASSETS / TEST_ASSET_* to existing binaries).',
    );
    this.name = 'ToolsMissingError';
    this.missing = missing;
  }
}

/** Returns the folder holding the tools, as printed by `node scripts/tools.mjs path`. */
export function toolsBinDir(): string {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'tools.mjs'), 'path'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`node scripts/tools.mjs path failed: ${r.stderr || String(r.error)}`);
  }
  return r.stdout.trim();
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves the given tools to absolute paths.
 *
 * @throws ToolsMissingError if any is missing or not executable.
 */
export function requireTools<N extends ToolName>(names: readonly N[], binDir = toolsBinDir()): Record<N, string> {
  const out = {} as Record<N, string>;
  const missing: string[] = [];
  for (const n of names) {
    const p = join(binDir, n);
    if (isExecutable(p)) out[n] = p;
    else missing.push(n);
  }
  if (missing.length) throw new ToolsMissingError(binDir, missing);
  return out;
}
