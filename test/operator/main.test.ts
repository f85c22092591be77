/**
 * The operator binary (operator/src/main.ts) against a real API server: bad flags exit 2 with a
 * readable message; a good configuration serves /healthz, /readyz (after informers sync) and
 * /metrics, takes the Lease, reconciles, and on SIGTERM releases the Lease and exits 0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from '../k8s/cluster/control-plane.js';
import { REPO_ROOT } from '../k8s/cluster/tools.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';
import { eventually, quorumManifest, startCluster, stopCluster, type Cluster } from './harness.js';

const MAIN = join(REPO_ROOT, 'operator', 'src', 'main.ts');

describe('operator main', () => {
  let cluster: Cluster | undefined;
  let operator: ChildProcess | undefined;
  let output = '';
  const ns = 'main';

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.cp.kubectl(['create', 'namespace', ns]);
  }, 180_000);

  afterAll(async () => {
    if (operator !== undefined && operator.exitCode === null) operator.kill('SIGKILL');
    await stopCluster(cluster);
  }, 60_000);

  it('rejects bad configuration with exit code 2 and a readable message', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', MAIN, '--metrics-port', 'eighty', '--log-level', 'loud'], { encoding: 'utf8', cwd: REPO_ROOT });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--metrics-port: .*number/);
    expect(run.stderr).toMatch(/--log-level: /);
    const unknown = spawnSync(process.execPath, ['--import', 'tsx', MAIN, '--frobnicate'], { encoding: 'utf8', cwd: REPO_ROOT });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/frobnicate/);
  }, 60_000);

  it('serves health and metrics, leads, reconciles and shuts down cleanly on SIGTERM', async () => {
    const { cp, clients } = cluster as Cluster;
    const port = await freePort();
    operator = spawn(process.execPath, [
      '--import', 'tsx', MAIN, `--kubeconfig=${cp.kubeconfigPath}`, `--namespace=${ns}`, `--metrics-port=${port}`,
      `--lease-namespace=${ns}`, '--lease-name=op', '--log-level=warn',
    ], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PAXOS_NODE_IMAGE: 'example.invalid/node:1' } });
    operator.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    operator.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const url = (path: string): string => `http://127.0.0.1:${port}${path}`;

    const withOutput = (error: unknown): never => {
      throw new Error(`${String(error)}\noperator output:\n${output.slice(-4000)}`);
    };
    await eventually('/healthz', async () => ((await fetch(url('/healthz'))).status === 200 ? true : undefined), 30_000).catch(withOutput);
    await eventually('/readyz', async () => ((await fetch(url('/readyz'))).status === 200 ? true : undefined), 30_000).catch(withOutput);
    await eventually('the Lease', async () => {
      const lease = await clients.rest.get<{ spec?: { holderIdentity?: string } }>(resourcePath(Resources.leases, ns, 'op'));
      return lease.spec?.holderIdentity ? lease.spec.holderIdentity : undefined;
    }, 20_000);

    await cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'm', { replicas: 1 }) });
    const sts = await eventually('the StatefulSet', async () =>
      clients.rest.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>(resourcePath(Resources.statefulSets, ns, 'm')), 20_000);
    expect(sts.spec.template.spec.containers[0]?.image).toBe('example.invalid/node:1');
    const events = await eventually('an Event about the new quorum', async () => {
      const list = await clients.rest.get<{ items: { reason: string; note: string; regarding: { kind: string; name: string } }[] }>(
        resourcePath(Resources.events, ns));
      const created = list.items.find((event) => event.reason === 'Created' && event.regarding.name === 'm');
      return created;
    }, 10_000);
    expect(events).toMatchObject({ regarding: { kind: 'PaxosQuorum' }, note: expect.stringMatching(/StatefulSet m/) });

    const metrics = await eventually('reconcile metrics', async () => {
      const text = await (await fetch(url('/metrics'))).text();
      return /paxos_operator_reconcile_duration_seconds_count\{result="success"\} [1-9]/.test(text) ? text : undefined;
    }, 20_000);
    expect(metrics).toMatch(/paxos_operator_leader 1/);
    expect(metrics).toMatch(/paxos_operator_steps_total|paxos_operator_reconcile_errors_total/);

    const exited = new Promise<number | null>((resolve) => operator?.once('exit', (code) => resolve(code)));
    operator.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lease = await clients.rest.get<{ spec?: { holderIdentity?: string } }>(resourcePath(Resources.leases, ns, 'op'));
    expect(lease.spec?.holderIdentity).toBeUndefined();
  }, 120_000);
});
