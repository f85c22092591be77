/**
 * The local cluster on real nodes: three kubelets under containerd register and get Ready, pods
 * of the image built from node/Dockerfile run with volumes bound by the provisioner, reach each
 * other by cluster DNS names and through a ClusterIP Service (kube-proxy), a pod is spread by
 * anti-affinity, and after stop the host is as it was (iptables, sysctls, links).
 *
 * Needs root, the Debian packages that .ci/run installs and `npm run tools:build`; fails (never
 * skips) without them.
 */
import { LocalCluster } from '../local-cluster.js';
import { diffHost, snapshotHost, type HostSnapshot } from './host-state.js';

const NS = 'default';

interface PodList {
  items: { metadata: { name: string }; spec: { nodeName?: string }; status: { phase?: string; podIP?: string; containerStatuses?: { imageID?: string; ready?: boolean }[] } }[];
}

/** A tiny HTTP server in the node image, answering with its hostname. */
const SERVER = "require('http').createServer((q,s)=>s.end(require('os').hostname())).listen(8080)";

const manifests = (image: string): string => `
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ port: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: web-vip }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: web }
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - labelSelector: { matchLabels: { app: web } }
              topologyKey: kubernetes.io/hostname
      securityContext: { runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, runAsNonRoot: true }
      containers:
        - name: web
          image: ${image}
          command: [node, -e, "${SERVER}"]
          readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }
          volumeMounts: [{ name: data, mountPath: /data }]
  volumeClaimTemplates:
    - metadata: { name: data }
      spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 16Mi } } }
`;

describe('local cluster on real nodes (containerd + kubelet)', () => {
  const cluster = new LocalCluster();
  let before: HostSnapshot;
  let stopped = false;

  beforeAll(async () => {
    before = await snapshotHost();
    // Quick node-failure detection for the node-loss test (the default grace is 50 s).
    await cluster.start({ imageLog: () => undefined, controlPlane: { controllerManagerArgs: ['--node-monitor-period=1s', '--node-monitor-grace-period=10s'] } });
  }, 1_500_000);

  afterAll(async () => {
    if (!stopped) await cluster.stop();
  }, 300_000);

  const kubectl = (args: string[], input?: string): Promise<string> => cluster.kubectl(args, { input, timeoutMs: 60_000 });

  it('three Ready nodes of kubelet v1.35.4 with the containerd runtime', async () => {
    const nodes = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as {
      items: { status: { conditions: { type: string; status: string }[]; nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } } }[];
    };
    expect(nodes.items).toHaveLength(3);
    for (const n of nodes.items) {
      expect(n.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
      expect(n.status.nodeInfo.kubeletVersion).toBe('v1.35.4');
      expect(n.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\//);
    }
  });

  it('runs pods of the built image, one per node, with bound volumes, reachable by DNS name and Service', async () => {
    const image = cluster.built!.node;
    await kubectl(['apply', '-n', NS, '-f', '-'], manifests(image.ref.replace(/^docker\.io\//, '')));
    await kubectl(['rollout', 'status', 'statefulset/web', '-n', NS, '--timeout=240s'], undefined).catch(async (e: unknown) => {
      throw new Error(`${String(e)}\n${await kubectl(['get', 'pods,pvc,events', '-n', NS, '-o', 'wide'])}`);
    });
    const pods = JSON.parse(await kubectl(['get', 'pods', '-n', NS, '-l', 'app=web', '-o', 'json'])) as PodList;
    expect(pods.items).toHaveLength(3);
    expect(new Set(pods.items.map((p) => p.spec.nodeName)).size).toBe(3);
    for (const p of pods.items) expect(p.status.containerStatuses?.[0]?.imageID).toContain(image.imageId);
    const pvcs = JSON.parse(await kubectl(['get', 'pvc', '-n', NS, '-o', 'json'])) as { items: { status: { phase: string } }[] };
    expect(pvcs.items.map((c) => c.status.phase)).toEqual(['Bound', 'Bound', 'Bound']);
    // From pod web-0: web-2 by its headless-service DNS name, and the ClusterIP Service.
    const fetch = (url: string): Promise<string> =>
      kubectl(['exec', '-n', NS, 'web-0', '--', 'node', '-e', `require('http').get('${url}',r=>{let b='';r.on('data',d=>b+=d);r.on('end',()=>console.log(b))}).on('error',e=>{console.error(e.message);process.exit(1)})`]);
    // kube-proxy and CoreDNS follow the endpoints within a few seconds of the pods being ready.
    const eventually = async (url: string): Promise<string> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          return (await fetch(url)).trim();
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    };
    expect(await eventually('http://web-2.web.default.svc.cluster.local:8080/')).toBe('web-2');
    expect(await eventually('http://web-vip.default.svc:80/')).toMatch(/^web-[012]$/);
    // The volume is writable by the pod's non-root user.
    await kubectl(['exec', '-n', NS, 'web-1', '--', 'node', '-e', "require('fs').writeFileSync('/data/x','1')"]);
  }, 400_000);

  it('a stopped node goes NotReady, its pod is unreachable, and it comes back', async () => {
    const ready = async (): Promise<string | undefined> =>
      (JSON.parse(await kubectl(['get', 'node', 'local-2', '-o', 'json'])) as { status: { conditions: { type: string; status: string }[] } }).status.conditions.find(
        (c) => c.type === 'Ready',
      )?.status;
    const waitFor = async (want: (s: string | undefined) => boolean, what: string): Promise<void> => {
      const deadline = Date.now() + 90_000;
      while (!want(await ready())) {
        if (Date.now() > deadline) throw new Error(`local-2 not ${what} after 90 s`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    const pods = JSON.parse(await kubectl(['get', 'pods', '-n', NS, '-l', 'app=web', '-o', 'json'])) as PodList;
    const onNode = pods.items.find((p) => p.spec.nodeName === 'local-2')!;
    const elsewhere = pods.items.find((p) => p.spec.nodeName !== 'local-2')!;
    const connect = `require('net').connect({host:'${onNode.status.podIP}',port:8080,timeout:2000}).on('connect',()=>process.exit(0)).on('timeout',()=>process.exit(3)).on('error',()=>process.exit(3))`;
    const probe = (): Promise<string> => kubectl(['exec', '-n', NS, elsewhere.metadata.name, '--', 'node', '-e', connect]).then(() => 'reachable', () => 'unreachable');
    expect(await probe()).toBe('reachable');
    await cluster.nodes!.stopNode('local-2');
    await waitFor((s) => s !== 'True', 'NotReady');
    expect(await probe()).toBe('unreachable');
    await cluster.nodes!.startNode('local-2');
    await waitFor((s) => s === 'True', 'Ready');
  }, 300_000);

  it('after stop the host is as it was: iptables, sysctls, links', async () => {
    stopped = true;
    const problems = await cluster.stop();
    expect(problems).toEqual([]);
    expect(diffHost(before, await snapshotHost())).toEqual([]);
  }, 300_000);
});
