/**
 * Helpers for the packaging tests: running helm and kubectl, and reading their YAML.
 *
 * The binaries come from `npm run tools:build` (see scripts/tools.mjs); without them
 * {@link packagingTools} throws ToolsMissingError, whose message says how to build them.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, requireTools, type ToolName } from '../k8s/cluster/tools.js';

export { REPO_ROOT };
export const CHART_DIR = join(REPO_ROOT, 'charts', 'paxos-operator');
export const CRD_SOURCE = join(REPO_ROOT, 'operator', 'crd', 'paxosquorums.yaml');
export const CHART_CRD = join(CHART_DIR, 'crds', 'paxosquorums.yaml');
export const DEPLOY_CRD = join(REPO_ROOT, 'deploy', 'crds', 'paxosquorums.yaml');
export const DEPLOY_MANIFEST = join(REPO_ROOT, 'deploy', 'paxos-operator.yaml');
/** Same as scripts/render-manifests.mjs: render for the oldest supported Kubernetes. */
export const KUBE_VERSION = '1.29.0';
export const RELEASE = 'paxos-operator';
export const NAMESPACE = 'paxos-system';

/** A Kubernetes object as far as these tests look at it. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Absolute paths of the given tools, or a ToolsMissingError saying `npm run tools:build`. */
export function packagingTools<N extends ToolName>(names: readonly N[]): Record<N, string> {
  return requireTools(names);
}

/** Runs a binary to completion. */
export function run(bin: string, args: readonly string[], input?: string): RunResult {
  const r = spawnSync(bin, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a node script of the repository (e.g. scripts/render-manifests.mjs --check). */
export function runScript(script: string, args: readonly string[] = []): RunResult {
  return run(process.execPath, [join(REPO_ROOT, script), ...args]);
}

/** `helm template paxos-operator charts/paxos-operator -n paxos-system` with extra arguments. */
export function helmTemplate(helm: string, args: readonly string[] = [], namespace = NAMESPACE): RunResult {
  return run(helm, ['template', RELEASE, CHART_DIR, '--namespace', namespace, '--kube-version', KUBE_VERSION, ...args]);
}

/** Like {@link helmTemplate}, but throws with helm's stderr on failure and parses the objects. */
export function renderChart(helm: string, args: readonly string[] = [], namespace = NAMESPACE): K8sObject[] {
  const r = helmTemplate(helm, args, namespace);
  if (r.status !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return parseObjects(r.stdout);
}

/** Every object of a multi-document YAML stream (empty documents skipped). */
export function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
      return doc.toJS() as unknown;
    })
    .filter((doc): doc is K8sObject => doc !== null && typeof doc === 'object');
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

/** The single object of `kind` (and `name`, if given); throws when there is not exactly one. */
export function one(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  }
  return found[0]!;
}
