/**
 * `npm start`: the whole product on this machine.
 *
 * 1. builds the Kubernetes binaries if missing (`node scripts/tools.mjs build`);
 * 2. builds the node and operator images from their Dockerfiles (BuildKit, cached) and starts a
 *    local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and three
 *    nodes of containerd + kubelet, with kube-proxy, CoreDNS and a volume provisioner;
 * 3. `helm install paxos-operator charts/paxos-operator -n paxos-system --create-namespace --wait`;
 * 4. `kubectl apply -f examples/quorum.yaml` and waits until the PaxosQuorum is Available;
 * 5. prints how to use it, and keeps running until Ctrl-C, then stops everything it started.
 *
 * `npm start -- --kubeconfig FILE` installs into an existing cluster instead (the images must be
 * available to it); Ctrl-C then leaves the installation in place.
 *
 * Flags: --kubeconfig FILE, --namespace NS (of the quorum, default `default`),
 * --no-quorum (operator only), --timeout SECONDS (for Available, default 300), --help.
 * Bad flags: a message and exit status 2.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { CHART_DIR, KubeTools, LocalCluster, REPO_ROOT } from '../test/k8s/local-cluster.js';
import { ToolsMissingError, requireTools, toolsBinDir } from '../test/k8s/cluster/tools.js';

const USAGE = `Usage: npm start [-- [--kubeconfig FILE] [--namespace NS] [--no-quorum] [--timeout SECONDS]]

Without --kubeconfig: starts a local Kubernetes (needs root), installs the operator with Helm and
creates the sample quorum (examples/quorum.yaml); runs until Ctrl-C, then stops everything.
With --kubeconfig: installs into that existing cluster instead.
`;

function fail(message: string, code = 2): never {
  process.stderr.write(`start: ${message}\n\n${USAGE}`);
  process.exit(code);
}

let values: { kubeconfig?: string; namespace?: string; 'no-quorum'?: boolean; timeout?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      'no-quorum': { type: 'boolean' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const timeoutS = values.timeout === undefined ? 300 : Number(values.timeout);
if (!Number.isInteger(timeoutS) || timeoutS <= 0) fail(`--timeout must be a positive whole number of seconds, got ${JSON.stringify(values.timeout)}`);
if (values.kubeconfig !== undefined && (values.kubeconfig === '' || !existsSync(values.kubeconfig))) {
  fail(`--kubeconfig ${JSON.stringify(values.kubeconfig)}: no such file`);
}
const namespace = values.namespace ?? 'default';
if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace)) fail(`--namespace ${JSON.stringify(namespace)} is not a valid namespace name`);

const t0 = Date.now();
const log = pino({ level: process.env.LOCAL_CLUSTER_LOG ?? 'warn' });
const say = (msg: string): void => {
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
};

function ensureTools(): string {
  const binDir = toolsBinDir();
  const needed = values.kubeconfig ? (['kubectl', 'helm'] as const) : (['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'helm', 'kubelet', 'kube-proxy', 'coredns', 'crictl', 'buildkitd', 'buildctl'] as const);
  try {
    requireTools(needed, binDir);
    return binDir;
  } catch (e) {
    if (!(e instanceof ToolsMissingError)) throw e;
    say(`building missing tools (${e.missing.join(', ')}) with \`node scripts/tools.mjs build\` — several minutes on a cold Go cache`);
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'tools.mjs'), 'build'], { stdio: 'inherit' });
    if (r.status !== 0) {
      process.stderr.write('start: `node scripts/tools.mjs build` failed (see above)\n');
      process.exit(1);
    }
    requireTools(needed, binDir);
    return binDir;
  }
}

const binDir = ensureTools();
let cluster: LocalCluster | undefined;
let tools: KubeTools;
let stopping = false;

async function shutdown(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  if (cluster) {
    say('stopping the local cluster (pods, nodes, control plane) and restoring the host…');
    const problems = await cluster.stop().catch((e: unknown) => [`stop failed: ${String(e)}`]);
    for (const p of problems) process.stderr.write(`start: ${p}\n`);
    say(problems.length ? 'stopped, with the problems above' : 'stopped; iptables, sysctls and links are as before');
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  if (values.kubeconfig) {
    tools = new KubeTools(values.kubeconfig, { binDir });
    say(`using the existing cluster of ${values.kubeconfig}`);
  } else {
    say('building the images (BuildKit, cached) and starting the local cluster (control plane, 3 nodes of containerd + kubelet)…');
    cluster = new LocalCluster();
    await cluster.start({ logger: log, imageLog: (l) => say(`  ${l}`) });
    if (!cluster.tools) throw new Error('cluster has no tools');
    tools = cluster.tools;
    const built = cluster.built;
    say(`cluster up: ${cluster.controlPlane.server}; nodes ${cluster.nodes?.nodeNames.join(', ') ?? ''}`);
    if (built) for (const img of [built.operator, built.node]) say(`  image ${img.ref} ${img.digest}`);
  }

  say('helm install paxos-operator charts/paxos-operator -n paxos-system --create-namespace --wait');
  await tools.helm(
    ['upgrade', '--install', 'paxos-operator', CHART_DIR, '-n', 'paxos-system', '--create-namespace', '--wait', '--timeout', '5m'],
    { timeoutMs: 330_000 },
  );
  say('operator installed and ready');

  if (!values['no-quorum']) {
    say(`kubectl apply -f examples/quorum.yaml -n ${namespace}`);
    await tools.kubectl(['apply', '-n', namespace, '-f', join(REPO_ROOT, 'examples', 'quorum.yaml')]);
    say(`waiting for paxosquorum/demo to be Available (up to ${timeoutS} s)…`);
    const deadline = Date.now() + timeoutS * 1000;
    let last = '';
    for (;;) {
      const out = await tools
        .kubectl(['get', 'paxosquorum', 'demo', '-n', namespace, '-o', 'json'])
        .catch(() => '{}');
      const pq = JSON.parse(out) as { status?: { phase?: string; readyReplicas?: number; conditions?: { type: string; status: string }[] } };
      const line = `phase=${pq.status?.phase ?? '-'} ready=${pq.status?.readyReplicas ?? 0}`;
      if (line !== last) say(`  ${line}`);
      last = line;
      if (pq.status?.conditions?.some((c) => c.type === 'Available' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`paxosquorum/demo not Available after ${timeoutS} s (${line})`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    say(`paxosquorum/demo is Available (${((Date.now() - t0) / 1000).toFixed(1)} s after start)`);
    process.stdout.write(`\n${await tools.kubectl(['get', 'pq,pods', '-n', namespace, '-o', 'wide'])}\n`);
  }

  // The leader's IP: the nodes' NOT_LEADER hints name peers by their in-cluster DNS names, which
  // this machine cannot resolve, so point paxosctl at the leader itself (see test/e2e/FINDINGS.md).
  const leader = values['no-quorum']
    ? ''
    : await tools.kubectl(['get', 'pq', 'demo', '-n', namespace, '-o', 'jsonpath={.status.leader}']).catch(() => '');
  const ip = (leader && (await tools.kubectl(['get', 'pod', leader, '-n', namespace, '-o', 'jsonpath={.status.podIP}']).catch(() => ''))) || '<leader-pod-ip>';
  const ns = namespace === 'default' ? '' : ` -n ${namespace}`;
  process.stdout.write(`
Point kubectl (and helm) at it, in another shell:

  export KUBECONFIG=${tools.kubeconfigPath}
  export PATH=${binDir}:$PATH

Watch the quorum and expand it online:

  kubectl get pq${ns} -w
  kubectl scale paxosquorum/demo${ns} --replicas=5
  kubectl describe pq demo${ns}

Talk to it (pod IPs are reachable from this machine${cluster ? ' through the cluster bridge' : ' only if your network routes them'};
writes must go to the leader's IP — kubectl get pq shows the leader — because the nodes' leader hints
are in-cluster DNS names this machine cannot resolve):

  kubectl get pods${ns} -o wide
  npm run paxosctl -- --endpoints ${ip}:7000 put greeting hello
  npm run paxosctl -- --endpoints ${ip}:7000 get greeting
  npm run paxosctl -- --endpoints ${ip}:7000 status

${cluster ? `Logs: kubectl logs${ns} demo-0; kubectl logs -n paxos-system deploy/paxos-operator. Control plane logs: ${join(cluster.runDir, 'logs')}\n\nCtrl-C stops everything.` : 'Ctrl-C exits (the installation stays; `helm uninstall paxos-operator -n paxos-system` removes it).'}
`);
  if (!cluster) process.exit(0);
  // Keep running until Ctrl-C.
  setInterval(() => undefined, 1 << 30);
} catch (e) {
  process.stderr.write(`start: ${e instanceof Error ? e.message : String(e)}\n`);
  if (cluster) process.stderr.write(`start: control plane logs are in ${join(cluster.runDir, 'logs')} (kept: set LOCAL_CLUSTER_KEEP=1 to keep them after stop)\n`);
  await shutdown(1);
}
