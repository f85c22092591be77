/**
 * The PaxosQuorum CRD against a real kube-apiserver: validation messages and the scale
 * subresource.
 */
import { quorumManifest, startCluster, stopCluster, type Cluster } from './harness.js';

describe('PaxosQuorum CRD', () => {
  let cluster: Cluster | undefined;
  const ns = 'crd';

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.cp.kubectl(['create', 'namespace', ns]);
  }, 180_000);

  afterAll(async () => stopCluster(cluster), 60_000);

  const apply = (spec: Record<string, unknown>, name = 'q'): Promise<string> =>
    (cluster as Cluster).cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, name, spec) });

  it.each([
    [0, /spec\.replicas.*(should be greater than or equal to 1|between 1 and 15)/],
    [-1, /spec\.replicas.*(should be greater than or equal to 1|between 1 and 15)/],
    ['five', /spec\.replicas.*(must be of type integer|Invalid value: "string")/],
    [100, /spec\.replicas.*(should be less than or equal to 15|between 1 and 15)/],
  ])('rejects replicas %p with a readable message', async (replicas, message) => {
    const rejected = await apply({ replicas, image: 'paxosquorum/node:0.1.0' }, `bad-${String(replicas).replace('-', 'm')}`)
      .then(() => undefined, (error: Error) => error.message);
    expect(rejected).toBeDefined();
    expect(rejected).toMatch(message);
  });

  it('accepts a valid quorum and fills defaults', async () => {
    await apply({ replicas: 3 });
    const object = JSON.parse(await (cluster as Cluster).cp.kubectl(['get', 'paxosquorum', 'q', '-n', ns, '-o', 'json'])) as {
      spec: { replicas: number; reconfiguration: { mode: string; stepTimeoutSeconds: number }; storage: { size: string } };
    };
    expect(object.spec.replicas).toBe(3);
    expect(object.spec.reconfiguration.mode).toBe('Transfer');
    expect(object.spec.storage.size).toBe('1Gi');
  });

  it('scales through the scale subresource (kubectl scale)', async () => {
    const cp = (cluster as Cluster).cp;
    await cp.kubectl(['scale', 'paxosquorum/q', '-n', ns, '--replicas=5']);
    expect(await cp.kubectl(['get', 'paxosquorum', 'q', '-n', ns, '-o', 'jsonpath={.spec.replicas}'])).toBe('5');
    const scale = JSON.parse(await cp.kubectl(['get', '--raw', `/apis/paxos.quorum.dev/v1alpha1/namespaces/${ns}/paxosquorums/q/scale`])) as {
      kind: string; spec: { replicas: number };
    };
    expect(scale.kind).toBe('Scale');
    expect(scale.spec.replicas).toBe(5);
    const tooMany = await cp.kubectl(['scale', 'paxosquorum/q', '-n', ns, '--replicas=100']).then(() => '', (error: Error) => error.message);
    expect(tooMany).toMatch(/replicas/);
  });
});
