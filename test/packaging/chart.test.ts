/**
 * The Helm chart and what is generated from it, checked without a cluster: lint, drift of the
 * generated files, the values schema rejecting bad values readably, and the rendered objects
 * (exact RBAC, restricted pod security, images, optional objects).
 *
 * Needs helm from `npm run tools:build`; without it every test fails saying so.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  CHART_CRD, CHART_DIR, CRD_SOURCE, DEPLOY_CRD, REPO_ROOT, helmTemplate, one, packagingTools, readText, renderChart, run,
  runScript, type K8sObject,
} from './packaging.js';

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}

interface PodSpec {
  serviceAccountName: string;
  securityContext?: Record<string, unknown>;
  containers: Container[];
  volumes?: { name: string; emptyDir?: object }[];
}

function podSpec(deployment: K8sObject): PodSpec {
  return (deployment as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

function rulesOf(role: K8sObject): PolicyRule[] {
  return (role as unknown as { rules: PolicyRule[] }).rules;
}

/** `group/resource: verb` for every permission of a role, resourceNames noted. */
function permissions(role: K8sObject): string[] {
  const out: string[] = [];
  for (const rule of rulesOf(role)) {
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? []) {
        for (const verb of rule.verbs) {
          const names = rule.resourceNames ? ` [${rule.resourceNames.join(',')}]` : '';
          out.push(`${group === '' ? 'core' : group}/${resource}: ${verb}${names}`);
        }
      }
    }
  }
  return out.sort();
}

const expand = (group: string, resources: string[], verbs: string[]): string[] =>
  resources.flatMap((resource) => verbs.map((verb) => `${group}/${resource}: ${verb}`));

/** What the operator does through the API, as fixed by the lead (see templates/rbac.yaml). */
const OPERATOR_PERMISSIONS = [
  ...expand('paxos.quorum.dev', ['paxosquorums'], ['get', 'list', 'watch', 'update', 'patch']),
  ...expand('paxos.quorum.dev', ['paxosquorums/status'], ['get', 'update', 'patch']),
  ...expand('paxos.quorum.dev', ['paxosquorums/finalizers'], ['update']),
  ...expand('apps', ['statefulsets'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']),
  ...expand('core', ['services', 'configmaps'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']),
  ...expand('policy', ['poddisruptionbudgets'], ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']),
  ...expand('core', ['pods'], ['get', 'list', 'watch', 'delete']),
  ...expand('core', ['persistentvolumeclaims'], ['get', 'list', 'watch', 'delete']),
  ...expand('events.k8s.io', ['events'], ['create', 'patch']),
  ...expand('core', ['events'], ['create', 'patch']),
].sort();

const LEADER_ELECTION_PERMISSIONS = [
  // Its own Deployment, the owner of the Lease (garbage-collected on uninstall).
  'apps/deployments: get [paxos-operator]',
  'coordination.k8s.io/leases: create',
  'coordination.k8s.io/leases: get [paxos-operator]',
  'coordination.k8s.io/leases: update [paxos-operator]',
].sort();

let helm = '';
beforeAll(() => {
  helm = packagingTools(['helm']).helm;
});

describe('chart metadata', () => {
  test('chart version, appVersion and package.json version agree', () => {
    const chart = parse(readText(join(CHART_DIR, 'Chart.yaml'))) as { version: string; appVersion: string; apiVersion: string; kubeVersion: string };
    const pkg = JSON.parse(readText(join(REPO_ROOT, 'package.json'))) as { version: string };
    expect(chart.apiVersion).toBe('v2');
    expect(chart.appVersion).toBe(pkg.version);
    expect(chart.kubeVersion).toBe('>=1.29.0-0');
  });

  test('helm lint --strict is clean, with the defaults and with every optional object on', () => {
    for (const args of [[], ['--set', 'watchNamespace=team-a,metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,grafana.dashboard.enabled=true']]) {
      const r = run(helm, ['lint', '--strict', CHART_DIR, ...args]);
      if (r.status !== 0) throw new Error(`helm lint --strict ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
      expect(r.stdout).toContain('0 chart(s) failed');
    }
  });
});

describe('generated files are up to date', () => {
  test('the chart CRD is a copy of operator/crd/paxosquorums.yaml', () => {
    if (!existsSync(CRD_SOURCE)) throw new Error('operator/crd/paxosquorums.yaml does not exist yet: the chart has no CRD to ship.');
    for (const copy of [CHART_CRD, DEPLOY_CRD]) {
      if (!existsSync(copy) || readText(copy) !== readText(CRD_SOURCE)) {
        throw new Error(`${copy} differs from operator/crd/paxosquorums.yaml: run \`npm run manifests\`.`);
      }
    }
  });

  test('deploy/ equals a fresh render of the chart', () => {
    const r = runScript('scripts/render-manifests.mjs', ['--check']);
    if (r.status !== 0) throw new Error(`deploy/ is stale (run \`npm run manifests\`):\n${r.stderr}`);
  });

  test('docs/configuration.md equals a fresh generation', () => {
    const r = runScript('scripts/gen-config-reference.mjs', ['--check']);
    if (r.status !== 0) throw new Error(`${r.stderr} (\`npm run manifests\` regenerates it too)`);
  });
});

describe('bad values fail at template time with a readable message', () => {
  const cases: [string, string[], RegExp][] = [
    ['negative replicaCount', ['--set', 'replicaCount=-1'], /at '\/replicaCount': minimum: got -1, want 1/],
    ['zero replicaCount', ['--set', 'replicaCount=0'], /\/replicaCount': minimum/],
    ['fractional replicaCount', ['--set', 'replicaCount=1.5'], /\/replicaCount': got (number|string), want integer/],
    ['unknown logLevel', ['--set', 'logLevel=loud'], /\/logLevel': value must be one of 'trace', 'debug', 'info', 'warn', 'error', 'fatal'/],
    ['numeric image tag', ['--set', 'image.tag=1'], /\/image\/tag': got number, want string/],
    ['resources not an object', ['--set', 'resources=lots'], /\/resources': got string, want object/],
    ['bad resource quantity', ['--set', 'resources.limits.memory=lots'], /\/resources\/limits\/memory/],
    ['misspelt key', ['--set', 'replicaCont=3'], /additional properties 'replicaCont' not allowed/],
    ['bad pull policy', ['--set', 'image.pullPolicy=Sometimes'], /\/image\/pullPolicy': value must be one of/],
    ['bad watchNamespace', ['--set', 'watchNamespace=Team_A'], /\/watchNamespace/],
    ['several replicas without leader election', ['--set', 'replicaCount=2,leaderElection.enabled=false'],
      /leaderElection.enabled=false needs replicaCount=1/],
    ['PDB that blocks every eviction', ['--set', 'replicaCount=2,podDisruptionBudget.minAvailable=2'],
      /podDisruptionBudget.minAvailable must be less than replicaCount/],
  ];
  test.each(cases)('%s', (_name, args, message) => {
    const r = helmTemplate(helm, args);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    // One short message, not a template stack trace.
    expect(r.stderr.split('\n').length).toBeLessThan(8);
  });
});

describe('rendered with default values', () => {
  let objects: K8sObject[] = [];
  beforeAll(() => {
    objects = renderChart(helm);
  });

  test('has the expected objects and no optional ones', () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual([
      'ClusterRole/paxos-operator',
      'ClusterRoleBinding/paxos-operator',
      'Deployment/paxos-operator',
      'PodDisruptionBudget/paxos-operator',
      'Role/paxos-operator-leader-election',
      'RoleBinding/paxos-operator-leader-election',
      'Service/paxos-operator-metrics',
      'ServiceAccount/paxos-operator',
    ]);
  });

  test('every object carries the recommended labels', () => {
    for (const o of objects) {
      expect(o.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'paxos-operator',
        'app.kubernetes.io/instance': 'paxos-operator',
        'app.kubernetes.io/version': '0.1.0',
        'app.kubernetes.io/managed-by': 'Helm',
        'helm.sh/chart': 'paxos-operator-0.1.0',
      });
    }
  });

  test('RBAC grants exactly what the operator uses, with no wildcards', () => {
    for (const role of objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')) {
      for (const rule of rulesOf(role)) {
        for (const field of [rule.apiGroups ?? [], rule.resources ?? [], rule.verbs]) expect(field).not.toContain('*');
      }
    }
    expect(permissions(one(objects, 'ClusterRole'))).toEqual(OPERATOR_PERMISSIONS);
    const leaderElection = one(objects, 'Role', 'paxos-operator-leader-election');
    expect(leaderElection.metadata.namespace).toBe('paxos-system');
    expect(permissions(leaderElection)).toEqual(LEADER_ELECTION_PERMISSIONS);
    const binding = one(objects, 'ClusterRoleBinding') as unknown as { subjects: { kind: string; name: string; namespace: string }[] };
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'paxos-operator', namespace: 'paxos-system' }]);
  });

  test('the Deployment runs two replicas with leader election and the lead\'s flags', () => {
    const deployment = one(objects, 'Deployment');
    expect((deployment as unknown as { spec: { replicas: number } }).spec.replicas).toBe(2);
    const container = podSpec(deployment).containers[0]!;
    expect(container.image).toBe('paxosquorum/operator:0.1.0');
    expect(container.args).toEqual([
      '--metrics-port=8080',
      '--leader-elect=true',
      '--lease-name=paxos-operator',
      '--lease-namespace=$(POD_NAMESPACE)',
      '--owner-deployment=paxos-operator',
      '--node-image=$(PAXOS_NODE_IMAGE)',
      '--workers=4',
      '--reconcile-timeout-seconds=60',
      '--log-level=info',
    ]);
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({ POD_NAMESPACE: 'metadata.namespace', PAXOS_NODE_IMAGE: 'paxosquorum/node:0.1.0' });
    expect(container.ports).toEqual([{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(Object.keys(container.resources?.requests ?? {}).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(container.resources?.limits ?? {}).sort()).toEqual(['cpu', 'memory']);
  });

  test('the operator pod meets the restricted Pod Security Standard', () => {
    const spec = podSpec(one(objects, 'Deployment'));
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    const container = spec.containers[0]!;
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(spec.volumes?.[0]).toMatchObject({ name: 'tmp', emptyDir: {} });
  });
});

describe('rendered with non-default values', () => {
  test('watchNamespace turns the ClusterRole into a Role in that namespace and passes --namespace', () => {
    const objects = renderChart(helm, ['--set', 'watchNamespace=team-a']);
    expect(objects.filter((o) => o.kind.startsWith('Cluster'))).toEqual([]);
    const role = one(objects, 'Role', 'paxos-operator');
    expect(role.metadata.namespace).toBe('team-a');
    expect(permissions(role)).toEqual(OPERATOR_PERMISSIONS);
    expect(one(objects, 'RoleBinding', 'paxos-operator').metadata.namespace).toBe('team-a');
    expect(one(objects, 'Role', 'paxos-operator-leader-election').metadata.namespace).toBe('paxos-system');
    expect(podSpec(one(objects, 'Deployment')).containers[0]!.args).toContain('--namespace=team-a');
  });

  test('image tags and digests', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const objects = renderChart(helm, ['--set', `image.tag=1.2.3,nodeImage.repository=reg.example:5000/paxos/node,nodeImage.digest=${digest}`]);
    const container = podSpec(one(objects, 'Deployment')).containers[0]!;
    expect(container.image).toBe('paxosquorum/operator:1.2.3');
    expect(container.env?.find((e) => e.name === 'PAXOS_NODE_IMAGE')?.value).toBe(`reg.example:5000/paxos/node@${digest}`);
  });

  test('a single replica without leader election has no PDB and no Lease permissions', () => {
    const objects = renderChart(helm, ['--set', 'replicaCount=1,leaderElection.enabled=false']);
    expect(objects.filter((o) => o.kind === 'PodDisruptionBudget' || o.metadata.name.endsWith('leader-election'))).toEqual([]);
    expect(podSpec(one(objects, 'Deployment')).containers[0]!.args).toContain('--leader-elect=false');
  });

  test('ServiceMonitor and PodMonitor', () => {
    const objects = renderChart(helm, ['--set', 'metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,metrics.serviceMonitor.labels.release=prom']);
    const serviceMonitor = one(objects, 'ServiceMonitor') as unknown as { metadata: { labels: Record<string, string> }; spec: { endpoints: { port: string }[] } };
    expect(serviceMonitor.metadata.labels.release).toBe('prom');
    expect(serviceMonitor.spec.endpoints[0]!.port).toBe('metrics');
    const podMonitor = one(objects, 'PodMonitor') as unknown as { spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string }[] } };
    // The labels and port name the operator puts on node pods (operator/src/controller/resources.ts).
    expect(podMonitor.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'paxos', 'app.kubernetes.io/managed-by': 'paxos-operator' });
    expect(podMonitor.spec.podMetricsEndpoints[0]!.port).toBe('metrics');
  });

  test('the Grafana dashboard is valid JSON over metrics that exist', () => {
    const objects = renderChart(helm, ['--set', 'grafana.dashboard.enabled=true']);
    const configMap = one(objects, 'ConfigMap') as unknown as { metadata: { labels: Record<string, string> }; data: Record<string, string> };
    expect(configMap.metadata.labels.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse(configMap.data['paxos-operator.json']!) as { uid: string; panels: { targets?: { expr: string }[] }[] };
    expect(dashboard.uid).toBe('paxos-operator');
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    for (const metric of ['paxos_operator_reconcile_duration_seconds_bucket', 'paxos_operator_reconcile_errors_total', 'paxos_operator_steps_total',
      'paxos_operator_quorum_members', 'paxos_commit_index', 'paxos_is_leader', 'paxos_wal_persist_seconds_bucket']) {
      expect(exprs).toContain(metric);
    }
    // Every node metric the dashboard uses is one the node exports (node/src/io/metrics.ts).
    const nodeMetrics = readFileSync(join(REPO_ROOT, 'node', 'src', 'io', 'metrics.ts'), 'utf8');
    const used = new Set([...exprs.matchAll(/\b(paxos_(?!operator_)[a-z_]+?)(?:_bucket|_sum|_count)?\b/g)].map((m) => m[1]!));
    for (const metric of used) expect(nodeMetrics).toContain(`'${metric}'`);
    // And every operator metric is one the operator exports (operator/src/metrics.ts).
    const operatorMetrics = readFileSync(join(REPO_ROOT, 'operator', 'src', 'metrics.ts'), 'utf8');
    const usedByOperator = new Set([...exprs.matchAll(/\b(paxos_operator_[a-z_]+?)(?:_bucket|_sum|_count)?\b/g)].map((m) => m[1]!));
    expect(usedByOperator.size).toBeGreaterThan(3);
    for (const metric of usedByOperator) expect(operatorMetrics).toContain(`'${metric}'`);
  });
});
