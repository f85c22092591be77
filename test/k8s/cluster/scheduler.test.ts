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

  beforeAll(async () => {
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl']);
    if (process.getuid?.() !== 0) throw new Error('This test needs root (network namespaces); run it as root.');
    await cp.start({ scheduler: true });
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
  }, 180_000);

  afterAll(async () => {
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
    expect(pods.items.every((p) => p.spec.nodeName === 'local')).toBe(true);
    const events = JSON.parse(await cp.kubectl(['get', 'events', '-o', 'json'])) as EventList;
    const scheduled = events.items.filter((e) => e.reason === 'Scheduled');
    expect(scheduled.length).toBeGreaterThanOrEqual(2);
    expect(scheduled.every((e) => (e.reportingComponent ?? e.source?.component) === 'default-scheduler')).toBe(true);
    const nowhere = JSON.parse(await cp.kubectl(['get', 'pod', 'nowhere', '-o', 'json'])) as PodList['items'][number];
    expect(nowhere.spec.nodeName).toBeUndefined();
    expect(nowhere.status?.phase).toBe('Pending');
  }, 90_000);
});
