/**
 * The running parts against a real API server: Lease leader election, informers feeding the
 * work queue, and the controller acting on a spec change within about a second.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { Controller } from '../../operator/src/controller/controller.js';
import type { NodeAdmin } from '../../operator/src/controller/node-admin.js';
import { Reconciler } from '../../operator/src/controller/reconciler.js';
import { MemoryEventRecorder } from '../../operator/src/k8s/events.js';
import { makeInformers } from '../../operator/src/k8s/informers.js';
import { LeaderElector } from '../../operator/src/k8s/leader-election.js';
import { PAXOSQUORUMS } from '../../operator/src/k8s/paxosquorum.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';
import { eventually, quiet, quorumManifest, sleep, startCluster, stopCluster, type Cluster } from './harness.js';

const noNodes: NodeAdmin = {
  status: () => Promise.reject(new Error('unreachable')),
  convert: () => Promise.reject(new Error('unreachable')),
  transferLeadership: () => Promise.reject(new Error('unreachable')),
  finalize: () => Promise.reject(new Error('unreachable')),
  register: () => Promise.reject(new Error('unreachable')),
  close: () => undefined,
};

describe('controller wiring against a real API server', () => {
  let cluster: Cluster | undefined;
  const ns = 'ctl';

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.cp.kubectl(['create', 'namespace', ns]);
  }, 180_000);

  afterAll(async () => stopCluster(cluster), 60_000);

  it('elects one leader per Lease and hands over on release', async () => {
    const clients = (cluster as Cluster).clients;
    const leading = { a: false, b: false };
    const elector = (id: 'a' | 'b'): LeaderElector => new LeaderElector(clients, quiet, {
      namespace: ns, name: 'operator-lease', identity: id, leaseDurationSeconds: 6, renewIntervalMs: 300, renewDeadlineMs: 4_000,
      onStartedLeading: () => { leading[id] = true; },
      onStoppedLeading: () => { leading[id] = false; },
    });
    const a = elector('a');
    const b = elector('b');
    a.start();
    await eventually('a leads', async () => (leading.a ? true : undefined), 10_000);
    b.start();
    await sleep(1_500);
    expect(leading).toEqual({ a: true, b: false });
    const lease = await clients.rest.get<{ spec: { holderIdentity: string; leaseDurationSeconds: number } }>(resourcePath(Resources.leases, ns, 'operator-lease'));
    expect(lease.spec).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 6 });
    await a.stop();
    expect(leading.a).toBe(false);
    // Released, so b need not wait for expiry: it takes over on its next round.
    await eventually('b leads', async () => (leading.b ? true : undefined), 5_000);
    await b.stop();
  }, 60_000);

  it('gives the Lease an owner, when created and when an ownerless Lease is taken over', async () => {
    const clients = (cluster as Cluster).clients;
    const owner = await clients.rest.create<{ metadata: { uid: string } }>(resourcePath(Resources.configMaps, ns), {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'lease-owner', namespace: ns },
    });
    const ownerRef = { apiVersion: 'v1', kind: 'ConfigMap', name: 'lease-owner', uid: owner.metadata.uid };
    type OwnedLease = { metadata: { ownerReferences?: unknown[] } };
    const run = async (name: string): Promise<OwnedLease> => {
      let leads = false;
      const elector = new LeaderElector(clients, quiet, {
        namespace: ns, name, identity: 'x', leaseDurationSeconds: 6, renewIntervalMs: 300, renewDeadlineMs: 4_000, owner: ownerRef,
        onStartedLeading: () => { leads = true; },
        onStoppedLeading: () => { leads = false; },
      });
      elector.start();
      await eventually(`x leads ${name}`, async () => (leads ? true : undefined), 10_000);
      await elector.stop();
      return clients.rest.get<OwnedLease>(resourcePath(Resources.leases, ns, name));
    };
    expect((await run('owned-new')).metadata.ownerReferences).toEqual([expect.objectContaining(ownerRef)]);
    // A Lease left by an operator version that set no owner gets one on the next renewal.
    await clients.rest.create(resourcePath(Resources.leases, ns), {
      apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'owned-old', namespace: ns }, spec: {},
    });
    expect((await run('owned-old')).metadata.ownerReferences).toEqual([expect.objectContaining(ownerRef)]);
  }, 60_000);

  it('reconciles a new PaxosQuorum from informer events and acts on a spec change within a second', async () => {
    const clients = (cluster as Cluster).clients;
    const reconciler = new Reconciler({ clients, admin: noNodes, events: new MemoryEventRecorder(), log: quiet, defaultImage: 'paxosquorum/node:0.1.0' });
    const informers = makeInformers(clients, quiet, ns);
    const controller = new Controller(informers, (key) => reconciler.reconcile(key), quiet);
    try {
      await controller.startInformers();
      // Right after a CRD is established its storage may still answer 429 "(re)initializing":
      // the informer restarts with backoff, and /readyz waits for this.
      await eventually('informers synced', async () => (controller.synced ? true : undefined), 20_000);
      controller.startLeading();
      await cluster?.cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'delta', { replicas: 3 }) });
      await eventually('the StatefulSet', async () =>
        clients.rest.get<KubernetesObject>(resourcePath(Resources.statefulSets, ns, 'delta')), 10_000);

      const changedAt = Date.now();
      await clients.rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'delta'), { spec: { image: 'paxosquorum/node:9.9.9' } });
      await eventually('the new image in the pod template', async () => {
        const sts = await clients.rest.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>(
          resourcePath(Resources.statefulSets, ns, 'delta'));
        return sts.spec.template.spec.containers[0]?.image === 'paxosquorum/node:9.9.9' ? true : undefined;
      }, 10_000);
      expect(Date.now() - changedAt).toBeLessThan(1_500);

      const quorum = await eventually('status of generation 2', async () => {
        const q = await clients.rest.get<{ metadata: { generation: number }; status?: { observedGeneration?: number } }>(
          resourcePath(PAXOSQUORUMS, ns, 'delta'));
        return q.status?.observedGeneration === q.metadata.generation ? q : undefined;
      }, 10_000);
      expect(quorum.metadata.generation).toBe(2);

      // Deletion: the finalizer is removed after the StatefulSet is deleted.
      await clients.rest.delete(resourcePath(PAXOSQUORUMS, ns, 'delta'));
      await eventually('the PaxosQuorum gone', async () =>
        clients.rest.get(resourcePath(PAXOSQUORUMS, ns, 'delta')).then(() => undefined, () => true), 15_000);
    } finally {
      await controller.stop();
    }
  }, 90_000);
});
