/**
 * The packaging against a real API server (etcd + kube-apiserver + kube-controller-manager from
 * test/k8s/cluster): the CRD is accepted, deploy/ applies and its operator pods pass the
 * restricted Pod Security admission, rendered chart variants pass server-side dry-run with
 * strict field validation, `helm install` works, and the examples are valid PaxosQuorums.
 *
 * Needs etcd, kube-apiserver, kube-controller-manager, kubectl and helm from
 * `npm run tools:build`; without them it fails saying so.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LocalControlPlane } from '../k8s/cluster/control-plane.js';
import {
  CHART_CRD, CHART_DIR, DEPLOY_CRD, DEPLOY_MANIFEST, REPO_ROOT, helmTemplate, packagingTools, parseObjects, readText, run,
  type RunResult,
} from './packaging.js';

/** Per test: starting the control plane, and waiting for the controller manager, take a while on 2 cores. */
const TIMEOUT_MS = 180_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const cp = new LocalControlPlane();
let tools: Record<'helm' | 'kubectl', string>;

function kubectl(args: readonly string[], input?: string): RunResult {
  return run(tools.kubectl, [`--kubeconfig=${cp.kubeconfigPath}`, ...args], input);
}

function mustKubectl(args: readonly string[], input?: string): RunResult {
  const r = kubectl(args, input);
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed:\n${r.stderr}`);
  return r;
}

/** Server-side dry-run apply with strict field validation: unknown or duplicate fields fail. */
function dryRunApply(manifest: string, extraArgs: readonly string[] = []): RunResult {
  return mustKubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-', ...extraArgs], manifest);
}

function expectNoPodSecurityWarning(r: RunResult): void {
  expect(r.stderr).not.toMatch(/would violate PodSecurity/);
}

beforeAll(async () => {
  const all = packagingTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'helm']);
  tools = { helm: all.helm, kubectl: all.kubectl };
  await cp.start();
}, TIMEOUT_MS);

afterAll(async () => {
  await cp.stop();
}, TIMEOUT_MS);

test('the chart CRD is accepted and becomes Established', () => {
  expect(readText(CHART_CRD)).toBe(readText(DEPLOY_CRD));
  mustKubectl(['apply', '--server-side', '--field-manager=packaging-test', '-f', CHART_CRD]);
  mustKubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/paxosquorums.paxos.quorum.dev']);
}, TIMEOUT_MS);

test('deploy/paxos-operator.yaml applies, and the operator pods pass restricted Pod Security admission', async () => {
  const manifest = readText(DEPLOY_MANIFEST);
  const namespace = parseObjects(manifest).find((o) => o.kind === 'Namespace');
  expect(namespace?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  expectNoPodSecurityWarning(mustKubectl(['apply', '--validate=strict', '-f', DEPLOY_MANIFEST]));

  // No scheduler runs here, so the pods stay Pending; that they exist at all shows the
  // ReplicaSet controller's create passed the namespace's restricted enforcement.
  const deadline = Date.now() + 60_000;
  let names: string[] = [];
  while (Date.now() < deadline) {
    const r = mustKubectl(['get', 'pods', '-n', 'paxos-system', '-l', 'app.kubernetes.io/name=paxos-operator', '-o', 'name']);
    names = r.stdout.split('\n').filter(Boolean);
    if (names.length === 2) break;
    await sleep(500);
  }
  if (names.length !== 2) {
    const events = kubectl(['get', 'events', '-n', 'paxos-system', '--sort-by=.lastTimestamp']).stdout;
    throw new Error(`expected 2 operator pods, found ${names.length}. Events in paxos-system:\n${events}`);
  }
}, TIMEOUT_MS);

describe('helm template output passes server-side dry-run', () => {
  const variants: [string, string[]][] = [
    ['default values', []],
    ['one replica without leader election', ['--set', 'replicaCount=1,leaderElection.enabled=false']],
    ['Grafana dashboard', ['--set', 'grafana.dashboard.enabled=true']],
    ['watching one namespace', ['--set', 'watchNamespace=team-a']],
    ['custom names and service account', ['--set', 'fullnameOverride=pxo,serviceAccount.name=pxo-sa,metrics.service.type=NodePort']],
  ];
  beforeAll(() => {
    mustKubectl(['create', 'namespace', 'team-a']);
  });
  test.each(variants)('%s', (_name, args) => {
    const r = helmTemplate(tools.helm, args);
    if (r.status !== 0) throw new Error(`helm template failed:\n${r.stderr}`);
    expectNoPodSecurityWarning(dryRunApply(r.stdout));
  }, TIMEOUT_MS);
});

test('helm install and uninstall work against the cluster', () => {
  const kube = [`--kubeconfig=${cp.kubeconfigPath}`];
  const install = run(tools.helm, ['install', 'other', CHART_DIR, '--namespace', 'other', '--create-namespace', '--set', 'watchNamespace=team-a', ...kube]);
  if (install.status !== 0) throw new Error(`helm install failed:\n${install.stderr}`);
  expect(install.stdout).toContain('STATUS: deployed');
  // NOTES.txt tells the user how to create, watch and scale a quorum.
  expect(install.stdout).toContain('kubectl scale paxosquorum demo --replicas=5');
  mustKubectl(['get', 'deployment/other-paxos-operator', '-n', 'other']);
  mustKubectl(['get', 'role/other-paxos-operator', '-n', 'team-a']);
  const uninstall = run(tools.helm, ['uninstall', 'other', '--namespace', 'other', '--wait', ...kube]);
  if (uninstall.status !== 0) throw new Error(`helm uninstall failed:\n${uninstall.stderr}`);
}, TIMEOUT_MS);

describe('examples', () => {
  const dir = join(REPO_ROOT, 'examples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

  test('are the ones this suite knows about', () => {
    expect(files).toEqual(['quorum-5-anti-affinity.yaml', 'quorum.yaml']);
  });

  test.each(files)('%s is a valid PaxosQuorum', (file) => {
    const ns = `ex-${file.replace(/\.yaml$/, '').replace(/[^a-z0-9-]/g, '-')}`;
    mustKubectl(['create', 'namespace', ns]);
    const r = dryRunApply(readText(join(dir, file)), ['-n', ns, '-o', 'json']);
    const applied = JSON.parse(r.stdout) as { kind: string; spec: Record<string, unknown> };
    expect(applied.kind).toBe('PaxosQuorum');
    // Strict validation passed, so nothing was pruned: every field we wrote is kept.
    const written = parseObjects(readText(join(dir, file)))[0] as unknown as { spec: Record<string, unknown> };
    expect(applied.spec).toMatchObject(written.spec);
  }, TIMEOUT_MS);

  test('an invalid quorum is rejected with the CRD\'s message', () => {
    const bad = 'apiVersion: paxos.quorum.dev/v1alpha1\nkind: PaxosQuorum\nmetadata: {name: bad, namespace: team-a}\nspec: {replicas: 0}\n';
    const r = kubectl(['apply', '--dry-run=server', '-f', '-'], bad);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/spec.replicas/);
  });
});
