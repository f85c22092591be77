/**
 * The control plane with kube-scheduler, and the process kubelet leaving binding to it.
 * Needs `npm run tools:build` and root; fails with a clear message otherwise.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalControlPlane } from './control-plane.js';
import { ProcessKubelet } from './kubelet.js';
import { requireTools } from './tools.js';

const ECHO = fileURLToPath(new URL('./fixtures/echo-server.mjs', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface EventList {
  items: { reason: string; source?: { component?: string }; reportingComponent?: string; involvedObject: { name: string } }[];
}
interface PodList {
  items: { metadata: { name: string }; spec: { nodeName?: string }; status?: { phase?: string } }[];
}

describe('LocalControlPlane with kube-scheduler', () => {
  const cp = new LocalControlPlane();
  let kubelet: ProcessKubelet | undefined;
  let kubelet1: ProcessKubelet | undefined;

  beforeAll(async () => {
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl']);
    if (process.getuid?.() !== 0) throw new Error('This test needs root (network namespaces); run it as root.');
    // Fast node-failure detection for the last test.
    await cp.start({ scheduler: true, controllerManagerArgs: ['--node-monitor-period=1s', '--node-monitor-grace-period=8s'] });
    const pki = cp.pki;
    if (!pki) throw new Error('no PKI');
    kubelet = new ProcessKubelet({
      endpoint: { server: cp.server, caFile: pki.ca.cert, certFile: pki.admin.cert, keyFile: pki.admin.key },
      runDir: join(cp.runDir, 'kubelet'),
      slot: cp.network?.slot,
      bindPods: false,
      images: { 'example/echo': { entrypoint: [process.execPath, ECHO] } },
    });
    await kubelet.start();
    // A second node on the same bridge.
    kubelet1 = ProcessKubelet.forControlPlane(cp, {
      nodeName: 'local-1',
      nodeIndex: 1,
      bindPods: false,
      images: { 'example/echo': { entrypoint: [process.execPath, ECHO] } },
    });
    await kubelet1.start();
  }, 180_000);

  afterAll(async () => {
    await kubelet1?.stop();
    await kubelet?.stop();
    await cp.stop();
  }, 60_000);

  it('schedules a Deployment onto the process kubelet and runs it', async () => {
    await cp.kubectl(['create', 'deployment', 'echo', '--image=example/echo:1', '--replicas=2']);
    // A nodeSelector nothing matches: the scheduler must leave this one Pending.
    await cp.kubectl(['apply', '-f', '-'], {
      input: `
apiVersion: v1
kind: Pod
metadata: { name: nowhere }
spec:
  nodeSelector: { disk: ssd }
  containers: [{ name: main, image: example/echo:1 }]
`,
    });
    const deadline = Date.now() + 60_000;
    let pods: PodList = { items: [] };
    for (;;) {
      pods = JSON.parse(await cp.kubectl(['get', 'pods', '-l', 'app=echo', '-o', 'json'])) as PodList;
      if (pods.items.length === 2 && pods.items.every((p) => p.status?.phase === 'Running')) break;
      if (Date.now() > deadline) throw new Error(`pods not running: ${JSON.stringify(pods.items.map((p) => p.status))}`);
      await sleep(500);
    }
    expect(pods.items.every((p) => p.spec.nodeName === 'local' || p.spec.nodeName === 'local-1')).toBe(true);
    const events = JSON.parse(await cp.kubectl(['get', 'events', '-o', 'json'])) as EventList;
    const scheduled = events.items.filter((e) => e.reason === 'Scheduled');
    expect(scheduled.length).toBeGreaterThanOrEqual(2);
    expect(scheduled.every((e) => (e.reportingComponent ?? e.source?.component) === 'default-scheduler')).toBe(true);
    const nowhere = JSON.parse(await cp.kubectl(['get', 'pod', 'nowhere', '-o', 'json'])) as PodList['items'][number];
    expect(nowhere.spec.nodeName).toBeUndefined();
    expect(nowhere.status?.phase).toBe('Pending');
  }, 90_000);

  it('spreads a StatefulSet over two nodes with anti-affinity; pods resolve and reach each other', async () => {
    await cp.kubectl(['apply', '-f', '-'], {
      input: `
apiVersion: v1
kind: Service
metadata: { name: peers }
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: { app: peer }
  ports: [{ port: 8080 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: peer }
spec:
  serviceName: peers
  replicas: 2
  podManagementPolicy: Parallel
  selector: { matchLabels: { app: peer } }
  template:
    metadata: { labels: { app: peer } }
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: { matchLabels: { app: peer } }
      containers:
      - name: main
        image: example/echo:1
        readinessProbe: { httpGet: { path: /readyz, port: 8080 }, periodSeconds: 1 }
`,
    });
    interface P { metadata: { name: string }; spec: { nodeName?: string }; status?: { podIP?: string; hostIP?: string; conditions?: { type: string; status: string }[] } }
    const deadline = Date.now() + 60_000;
    let pods: P[] = [];
    for (;;) {
      pods = (JSON.parse(await cp.kubectl(['get', 'pods', '-l', 'app=peer', '-o', 'json'])) as { items: P[] }).items;
      const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      if (ready.length === 2) break;
      if (Date.now() > deadline) throw new Error(`peers not ready: ${JSON.stringify(pods.map((p) => [p.spec.nodeName, p.status]))}`);
      await sleep(500);
    }
    pods.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const [p0, p1] = pods as [P, P];
    expect(new Set(pods.map((p) => p.spec.nodeName))).toEqual(new Set(['local', 'local-1']));
    expect(p0.status?.hostIP).not.toBe(p1.status?.hostIP);
    const get = async (ip: string | undefined, path: string): Promise<unknown> => (await fetch(`http://${ip}:8080${path}`)).json();
    expect(await get(p0.status?.podIP, '/lookup?name=peer-1.peers')).toEqual([p1.status?.podIP]);
    expect(await get(p1.status?.podIP, '/lookup?name=peer-0.peers')).toEqual([p0.status?.podIP]);
    const cross = (await get(p1.status?.podIP, `/fetch?url=${encodeURIComponent('http://peer-0.peers:8080/healthz')}`)) as { status: number };
    expect(cross.status).toBe(200);
    // kubectl logs reaches the second node's kubelet API too.
    const node1Pod = pods.find((p) => p.spec.nodeName === 'local-1') as P;
    expect(await cp.kubectl(['logs', node1Pod.metadata.name])).toContain('echo-server listening');
  }, 90_000);

  it('marks a node and its pods not ready when its kubelet stops (node failure)', async () => {
    interface N { status: { conditions: { type: string; status: string }[] } }
    interface P { metadata: { name: string }; spec: { nodeName?: string }; status?: { conditions?: { type: string; status: string }[] } }
    const pods = (JSON.parse(await cp.kubectl(['get', 'pods', '-l', 'app=peer', '-o', 'json'])) as { items: P[] }).items;
    const victim = pods.find((p) => p.spec.nodeName === 'local-1');
    expect(victim).toBeDefined();
    await kubelet1?.stop();
    kubelet1 = undefined;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const node = JSON.parse(await cp.kubectl(['get', 'node', 'local-1', '-o', 'json'])) as N;
      const pod = JSON.parse(await cp.kubectl(['get', 'pod', victim?.metadata.name ?? '', '-o', 'json'])) as P;
      const nodeReady = node.status.conditions.find((c) => c.type === 'Ready')?.status;
      const podReady = pod.status?.conditions?.find((c) => c.type === 'Ready')?.status;
      if (nodeReady === 'Unknown' && podReady === 'False') break;
      if (Date.now() > deadline) throw new Error(`node Ready=${nodeReady}, pod Ready=${podReady}`);
      await sleep(500);
    }
  }, 90_000);
});
