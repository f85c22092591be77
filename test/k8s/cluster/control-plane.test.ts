/**
 * Smoke test for the local control plane. Needs the binaries from `npm run tools:build`; without
 * them it fails (on purpose) with a message saying so.
 */
import { LocalControlPlane } from './control-plane.js';
import { requireTools } from './tools.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface PodList {
  items: { metadata: { name: string }; status?: { phase?: string } }[];
}

const statefulSet = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: x }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ name: http, port: 80 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: web, namespace: x }
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
`;

describe('LocalControlPlane', () => {
  const cp = new LocalControlPlane();

  beforeAll(async () => {
    // Throws ToolsMissingError ("Run `npm run tools:build` first ...") if the binaries are absent.
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl']);
    await cp.start();
  }, 180_000);

  afterAll(async () => {
    await cp.stop();
  }, 60_000);

  it('serves the pinned Kubernetes version', async () => {
    const out = JSON.parse(await cp.kubectl(['version', '-o', 'json'])) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string; major: string; minor: string };
    };
    expect(out.serverVersion.gitVersion).toMatch(/^v1\.\d+\.\d+/);
    expect(out.clientVersion.gitVersion).toBe(out.serverVersion.gitVersion);
    expect(out.serverVersion.major).toBe('1');
  });

  it('creates a namespace and a StatefulSet whose Pods the controller-manager creates', async () => {
    await cp.kubectl(['create', 'namespace', 'x']);
    await cp.kubectl(['apply', '-f', '-'], { input: statefulSet });
    const deadline = Date.now() + 60_000;
    let pods: PodList = { items: [] };
    while (Date.now() < deadline) {
      pods = JSON.parse(await cp.kubectl(['get', 'pods', '-n', 'x', '-l', 'app=web', '-o', 'json'])) as PodList;
      if (pods.items.length >= 2) break;
      await sleep(500);
    }
    expect(pods.items.map((p) => p.metadata.name).sort()).toEqual(['web-0', 'web-1']);
    // No kubelet/scheduler: they stay Pending.
    for (const p of pods.items) expect(p.status?.phase).toBe('Pending');
  }, 90_000);
});
