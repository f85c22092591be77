/**
 * The reconciler against a real kube-apiserver and kube-controller-manager. The node side is a
 * test double (sim-nodes.ts); everything Kubernetes is real: owned objects, owner references,
 * the StatefulSet controller creating and deleting pods, the status subresource.
 */
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { Reconciler } from '../../operator/src/controller/reconciler.js';
import { KubeRest, Resources, resourcePath, type RequestOptions } from '../../operator/src/k8s/rest.js';
import { MemoryEventRecorder } from '../../operator/src/k8s/events.js';
import { PAXOSQUORUMS, type PaxosQuorum } from '../../operator/src/k8s/paxosquorum.js';
import type { KubeClients } from '../../operator/src/k8s/client.js';
import type { NodeAdmin } from '../../operator/src/controller/node-admin.js';
import { eventually, quiet, quorumManifest, startCluster, stopCluster, type Cluster } from './harness.js';
import { FakeKubelet, SimNodes } from './sim-nodes.js';

/** A REST client that records every write, so a test can count what one pass wrote. */
class RecordingRest extends KubeRest {
  readonly writes: string[] = [];
  override request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    if (method !== 'GET') this.writes.push(`${method} ${path}`);
    return super.request<T>(method, path, options);
  }
}

/** A node side where no node answers: there is no kubelet, so no pod ever runs. */
const unreachableNodes: NodeAdmin = {
  status: () => Promise.reject(new Error('unreachable')),
  convert: () => Promise.reject(new Error('unreachable')),
  transferLeadership: () => Promise.reject(new Error('unreachable')),
  finalize: () => Promise.reject(new Error('unreachable')),
  register: () => Promise.reject(new Error('unreachable')),
  close: () => undefined,
};

describe('Reconciler against a real API server', () => {
  let cluster: Cluster | undefined;
  let rest: RecordingRest;
  let clients: KubeClients;
  const ns = 'rec';

  beforeAll(async () => {
    cluster = await startCluster();
    rest = new RecordingRest(cluster.clients.rest.connection);
    clients = { rest };
    await cluster.cp.kubectl(['create', 'namespace', ns]);
  }, 180_000);

  afterAll(async () => {
    rest?.close();
    await stopCluster(cluster);
  }, 60_000);

  const getQuorum = (name: string): Promise<PaxosQuorum> => rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, name));
  const get = <T extends KubernetesObject>(resource: (typeof Resources)[keyof typeof Resources], name: string): Promise<T> =>
    rest.get<T>(resourcePath(resource, ns, name));
  const listPods = async (name: string): Promise<V1Pod[]> =>
    (await rest.get<{ items: V1Pod[] }>(resourcePath(Resources.pods, ns), { labelSelector: `app.kubernetes.io/instance=${name}` })).items;

  /**
   * A quorum on simulated nodes, created with `spec`, and `drive`: kubelet sync and one pass,
   * repeated until `done` holds for the stored PaxosQuorum.
   */
  async function simQuorum(name: string, spec: Parameters<typeof quorumManifest>[2], timeoutMs = 60_000) {
    const sim = new SimNodes(name);
    const kubelet = new FakeKubelet(clients, ns, name, sim);
    const events = new MemoryEventRecorder();
    await cluster?.cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, name, spec) });
    const drive = (what: string, done: (quorum: PaxosQuorum) => boolean): Promise<unknown> => eventually(what, async () => {
      await kubelet.sync();
      await pass(name, sim, events);
      return done(await getQuorum(name)) ? true : undefined;
    }, timeoutMs);
    return { sim, kubelet, events, drive };
  }

  /** One pass with a fresh reconciler (no memory between passes: as if the operator restarted). */
  async function pass(name: string, admin: NodeAdmin, events = new MemoryEventRecorder(), clock?: () => Date): Promise<string[]> {
    const reconciler = new Reconciler({
      clients, admin, events, log: quiet, defaultImage: 'paxosquorum/node:0.1.0', addressOf: () => (pod) => pod.metadata?.name, clock,
    });
    const before = rest.writes.length;
    await reconciler.reconcile(`${ns}/${name}`);
    return rest.writes.slice(before);
  }

  it('creates the owned objects with owner references, then changes nothing; status stays truthful with no pods running', async () => {
    await cluster?.cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'alpha', { replicas: 3 }) });
    const firstWrites = await pass('alpha', unreachableNodes);
    expect(firstWrites.filter((write) => write.endsWith('/status'))).toHaveLength(1);

    const quorum = await getQuorum('alpha');
    expect(quorum.metadata.finalizers).toContain('paxos.quorum.dev/finalizer');
    const owned: [string, KubernetesObject][] = [
      ['StatefulSet', await get(Resources.statefulSets, 'alpha')],
      ['Service', await get(Resources.services, 'alpha-peers')],
      ['Service', await get(Resources.services, 'alpha')],
      ['ConfigMap', await get(Resources.configMaps, 'alpha-bootstrap')],
      ['PodDisruptionBudget', await get(Resources.pdbs, 'alpha')],
    ];
    for (const [kind, object] of owned) {
      expect([kind, object.metadata?.ownerReferences]).toEqual([kind, [expect.objectContaining({
        kind: 'PaxosQuorum', name: 'alpha', uid: quorum.metadata.uid, controller: true, blockOwnerDeletion: true,
      })]]);
    }
    const sts = owned[0]?.[1] as unknown as { spec: Record<string, unknown> & { replicas: number } };
    expect(sts.spec).toMatchObject({
      replicas: 3, serviceName: 'alpha-peers', podManagementPolicy: 'Parallel', updateStrategy: { type: 'OnDelete' },
      persistentVolumeClaimRetentionPolicy: { whenScaled: 'Delete', whenDeleted: 'Delete' },
    });
    const configMap = owned[3]?.[1] as unknown as { data: Record<string, string> };
    expect(JSON.parse(configMap.data.config ?? '')).toEqual({ epoch: 1, members: [0, 1, 2] });
    expect(configMap.data.joining).toBe('false');
    expect((owned[4]?.[1] as unknown as { spec: { minAvailable: number } }).spec.minAvailable).toBe(2);

    expect(quorum.status?.observedGeneration).toBe(quorum.metadata.generation);
    expect(quorum.status?.selector).toBe('app.kubernetes.io/name=paxos,app.kubernetes.io/instance=alpha');
    const available = quorum.status?.conditions?.find((condition) => condition.type === 'Available');
    expect(available).toMatchObject({ status: 'False', reason: 'PodsNotReady', observedGeneration: quorum.metadata.generation });

    // The StatefulSet controller creates the pods; without a kubelet they stay Pending.
    await eventually('3 pods', async () => ((await listPods('alpha')).length === 3 ? true : undefined));
    await pass('alpha', unreachableNodes);
    const settled = await getQuorum('alpha');
    const versions = await Promise.all(owned.slice(1).map(async ([, object]) =>
      (await get(kindResource(object), object.metadata?.name ?? '')).metadata?.resourceVersion));
    const stsGeneration = (await get(Resources.statefulSets, 'alpha')).metadata?.generation;

    const idleWrites = await pass('alpha', unreachableNodes);
    expect(idleWrites).toEqual([]);
    expect((await getQuorum('alpha')).metadata.resourceVersion).toBe(settled.metadata.resourceVersion);
    expect(await Promise.all(owned.slice(1).map(async ([, object]) =>
      (await get(kindResource(object), object.metadata?.name ?? '')).metadata?.resourceVersion))).toEqual(versions);
    expect((await get(Resources.statefulSets, 'alpha')).metadata?.generation).toBe(stsGeneration);

    expect(settled.status).toMatchObject({ phase: 'Pending', replicas: 3, readyReplicas: 0 });
    const stillUnavailable = settled.status?.conditions?.find((condition) => condition.type === 'Available');
    expect(stillUnavailable?.status).toBe('False');
    expect(stillUnavailable?.reason).toBe('PodsNotReady');
    expect(stillUnavailable?.message).toMatch(/0 of 3 pods are ready.*Pending/);
    expect(stillUnavailable?.lastTransitionTime).toBe(available?.lastTransitionTime);
  }, 120_000);

  it('acts on a spec change: a new image is written to the pod template', async () => {
    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'alpha'), { spec: { image: 'paxosquorum/node:0.2.0' } });
    const writes = await pass('alpha', unreachableNodes);
    expect(writes.some((write) => write.includes('/statefulsets/alpha'))).toBe(true);
    const sts = await get<KubernetesObject & { spec: { template: { spec: { containers: { image: string }[] } } } }>(Resources.statefulSets, 'alpha');
    expect(sts.spec.template.spec.containers[0]?.image).toBe('paxosquorum/node:0.2.0');
    const quorum = await getQuorum('alpha');
    expect(quorum.status?.observedGeneration).toBe(quorum.metadata.generation);
  }, 60_000);

  it('expands 3 -> 5 and shrinks back to 3 through the planner, one step per pass, resuming from status alone', async () => {
    const sim = new SimNodes('beta');
    const kubelet = new FakeKubelet(clients, ns, 'beta', sim);
    const events = new MemoryEventRecorder();
    await cluster?.cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'beta', { replicas: 3 }) });

    const converge = async (what: string, done: (quorum: PaxosQuorum) => boolean): Promise<void> => {
      let last: PaxosQuorum | undefined;
      try {
        await eventually(what, async () => {
          await kubelet.sync();
          const writes = await pass('beta', sim, events);
          expect(writes.filter((write) => write.endsWith('/status')).length).toBeLessThanOrEqual(1);
          last = await getQuorum('beta');
          return done(last) ? true : undefined;
        }, 60_000);
      } catch (error) {
        throw new Error(`${String(error)}\nlast status: ${JSON.stringify(last?.status, null, 1)}\nnodes: ${JSON.stringify([...sim.nodes])} leader ${sim.leader}\ncalls: ${sim.calls.join(', ')}\nevents: ${events.events.map((e) => e.note).join('\n')}`);
      }
    };
    const settledOn = (size: number, epoch: number) => (quorum: PaxosQuorum): boolean =>
      quorum.status?.phase === 'Available' && quorum.status.configEpoch === epoch && quorum.status.members?.length === size
      && quorum.status.operation == null && [...sim.nodes.values()].every((node) => node.config.prior === undefined);

    await converge('a running 3-node quorum', settledOn(3, 1));
    expect(sim.leader).toBe(0);

    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'beta'), { spec: { replicas: 5 } });
    await converge('expansion to 5', settledOn(5, 2));
    expect([...sim.nodes.entries()].map(([ordinal, node]) => [ordinal, node.config])).toEqual(
      [0, 1, 2, 3, 4].map((ordinal) => [ordinal, { epoch: 2, members: [0, 1, 2, 3, 4] }]));
    // The planner's order: one new pod first (registered once the ConfigMap names it), then the
    // original followers, then the leader hands over, then the rest.
    expect(sim.calls).toEqual(['register 3', 'convert 1 e2', 'convert 2 e2', 'transfer 0->1', 'convert 0 e2', 'register 4', 'finalize 1']);
    const reasons = events.events.map((event) => event.reason);
    expect(reasons).toEqual(expect.arrayContaining(['OperationStarted', 'PodStarting', 'NodeConverted', 'LeadershipTransferred', 'Finalized', 'OperationCompleted']));

    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'beta'), { spec: { replicas: 3 } });
    await converge('shrink to 3', (quorum) => settledOn(3, 3)(quorum) && quorum.status?.replicas === 3);
    expect(await listPods('beta')).toHaveLength(3);
    expect([...sim.nodes.values()].map((node) => node.config)).toEqual([0, 1, 2].map(() => ({ epoch: 3, members: [0, 1, 2] })));
    const pdb = await get<KubernetesObject & { spec: { minAvailable: number } }>(Resources.pdbs, 'beta');
    expect(pdb.spec.minAvailable).toBe(2);
  }, 240_000);

  it('expands in Election mode: the leader converts in place, with no transfer', async () => {
    const { sim, drive } = await simQuorum('zeta', { replicas: 3, reconfiguration: { mode: 'Election' } });
    await drive('3 running nodes', (quorum) => quorum.status?.phase === 'Available');
    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'zeta'), { spec: { replicas: 5 } });
    await drive('5 nodes on epoch 2', (quorum) => quorum.status?.phase === 'Available' && quorum.status.configEpoch === 2
      && quorum.status.members?.length === 5 && quorum.status.operation == null);
    expect(sim.calls.filter((call) => call.startsWith('transfer'))).toEqual([]);
    expect(sim.calls.filter((call) => call.startsWith('convert'))).toEqual(['convert 1 e2', 'convert 2 e2', 'convert 0 e2']);
    expect([...sim.nodes.values()].every((node) => node.config.epoch === 2 && node.config.prior === undefined)).toBe(true);
    const configMap = await get<KubernetesObject & { data: Record<string, string> }>(Resources.configMaps, 'zeta-bootstrap');
    // Once the change is done, a recreated pod boots on the configuration in force.
    expect(JSON.parse(configMap.data.config ?? '')).toEqual({ epoch: 2, members: [0, 1, 2, 3, 4] });
    expect(configMap.data.joining).toBe('true');
  }, 120_000);

  it('retargets a change before finalization (3 -> 5 becomes 3 -> 4) and records why', async () => {
    const { sim, events, drive } = await simQuorum('eta', { replicas: 3 });
    await drive('3 running nodes', (quorum) => quorum.status?.phase === 'Available');
    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'eta'), { spec: { replicas: 5 } });
    await drive('the first converted follower', () => sim.calls.includes('convert 1 e2'));
    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'eta'), { spec: { replicas: 4 } });
    await drive('4 nodes on the retargeted epoch', (quorum) => quorum.status?.phase === 'Available' && quorum.status.configEpoch === 3
      && quorum.status.members?.length === 4 && quorum.status.operation == null);
    expect([...sim.nodes.values()].map((node) => node.config)).toEqual([0, 1, 2, 3].map(() => ({ epoch: 3, members: [0, 1, 2, 3] })));
    expect(events.events.filter((event) => event.reason === 'OperationRetargeted')).toHaveLength(1);
  }, 120_000);

  it('retargets right after a new server started, before it was registered, and still registers it', async () => {
    const { sim, kubelet, events, drive } = await simQuorum('theta', { replicas: 3 }, 30_000);
    await drive('3 running nodes', (quorum) => quorum.status?.phase === 'Available');
    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'theta'), { spec: { replicas: 5 } });
    // Passes until the StatefulSet is scaled for pod 3; the kubelet then starts it unregistered.
    await eventually('pod 3 started', async () => {
      await pass('theta', sim, events);
      await kubelet.sync();
      return sim.nodes.get(3) !== undefined ? true : undefined;
    }, 30_000);
    expect(sim.nodes.get(3)?.unregistered).toBe(true);
    expect(sim.calls).not.toContain('register 3');
    // The target changes before the operator has named pod 3 in the ConfigMap.
    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'theta'), { spec: { replicas: 4 } });
    await drive('4 nodes on the retargeted epoch', (quorum) => quorum.status?.phase === 'Available' && quorum.status.configEpoch === 3
      && quorum.status.members?.length === 4 && quorum.status.operation == null);
    expect(sim.calls).toContain('register 3');
    expect([...sim.nodes.values()].every((node) => !node.unregistered)).toBe(true);
    expect([...sim.nodes.values()].map((node) => node.config)).toEqual([0, 1, 2, 3].map(() => ({ epoch: 3, members: [0, 1, 2, 3] })));
  }, 120_000);

  it('rolls a new image pod by pod: followers first, the leader last after a transfer', async () => {
    const sim = new SimNodes('eps');
    const kubelet = new FakeKubelet(clients, ns, 'eps', sim);
    const events = new MemoryEventRecorder();
    await cluster?.cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'eps', { replicas: 3, image: 'paxosquorum/node:0.1.0' }) });
    const drive = async (what: string, done: (quorum: PaxosQuorum) => Promise<boolean>): Promise<void> => {
      await eventually(what, async () => {
        await kubelet.sync();
        const writes = await pass('eps', sim, events);
        expect(writes.filter((write) => write.endsWith('/status')).length).toBeLessThanOrEqual(1);
        return (await done(await getQuorum('eps'))) ? true : undefined;
      }, 60_000);
    };
    const available = async (quorum: PaxosQuorum): Promise<boolean> => quorum.status?.phase === 'Available';
    await drive('3 running nodes', available);
    expect(sim.leader).toBe(0);

    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'eps'), { spec: { image: 'paxosquorum/node:0.2.0' } });
    await drive('every pod on the new revision', async (quorum) => {
      const sts = await get<KubernetesObject & { status?: { updateRevision?: string; observedGeneration?: number } }>(Resources.statefulSets, 'eps');
      const pods = await listPods('eps');
      // Until the StatefulSet controller has seen the new template, updateRevision is still the
      // old one and every pod "matches" it: wait for it (slow on a loaded machine).
      const seen = (sts.status?.observedGeneration ?? 0) >= (sts.metadata?.generation ?? 1) && (sts.metadata?.generation ?? 1) > 1;
      return seen && (await available(quorum)) && pods.length === 3 && quorum.status?.currentImage === 'paxosquorum/node:0.2.0'
        && pods.every((pod) => pod.metadata?.labels?.['controller-revision-hash'] === sts.status?.updateRevision);
    });
    const steps = events.events.filter((event) => event.reason === 'PodRolled' || event.reason === 'LeadershipTransferred').map((event) => event.note);
    expect(steps).toEqual([
      expect.stringMatching(/^Delete pod 1/), expect.stringMatching(/^Delete pod 2/),
      expect.stringMatching(/^Transfer leadership from pod 0 to pod 1/), expect.stringMatching(/^Delete pod 0/),
    ]);
    expect(sim.leader).toBe(1);
  }, 120_000);

  it('reports ReconfigurationBlocked with an Event when a started pod does not come up in time, and recovers when it does', async () => {
    const sim = new SimNodes('gamma');
    const kubelet = new FakeKubelet(clients, ns, 'gamma', sim);
    const events = new MemoryEventRecorder();
    let offsetMs = 0;
    const clock = (): Date => new Date(Date.now() + offsetMs);
    await cluster?.cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'gamma', { replicas: 3, reconfiguration: { stepTimeoutSeconds: 30 } }) });
    const drive = async (what: string, done: (quorum: PaxosQuorum) => boolean, runKubelet = true): Promise<PaxosQuorum> =>
      eventually(what, async () => {
        if (runKubelet) await kubelet.sync();
        await pass('gamma', sim, events, clock);
        const quorum = await getQuorum('gamma');
        return done(quorum) ? quorum : undefined;
      }, 60_000);
    await drive('3 running nodes', (quorum) => quorum.status?.phase === 'Available' && quorum.status.configEpoch === 1);

    await rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'gamma'), { spec: { replicas: 4 } });
    // No kubelet: pod 3 is created by the StatefulSet controller but never runs.
    await drive('pod 3 started', (quorum) => quorum.status?.operation?.lastAction?.startsWith('start pod 3') === true, false);
    const notYet = await drive('a wait within the timeout', () => true, false);
    expect(notYet.status?.conditions?.find((c) => c.type === 'ReconfigurationBlocked')?.status).toBe('False');

    offsetMs = 31_000;
    const blocked = await drive('blocked', (quorum) => quorum.status?.phase === 'Blocked', false);
    const condition = blocked.status?.conditions?.find((c) => c.type === 'ReconfigurationBlocked');
    expect(condition).toMatchObject({ status: 'True', reason: 'StepTimeout' });
    expect(condition?.message).toMatch(/No progress for more than 30 s.*pod 3/);
    expect(events.events.filter((event) => event.reason === 'StepTimeout' && event.type === 'Warning')).toHaveLength(1);

    // The pod comes up: the change goes on and the condition clears.
    const healed = await drive('recovered', (quorum) => quorum.status?.phase === 'Available' && quorum.status.configEpoch === 2);
    expect(healed.status?.conditions?.find((c) => c.type === 'ReconfigurationBlocked')?.status).toBe('False');
    expect([...sim.nodes.values()].map((node) => node.config)).toEqual([0, 1, 2, 3].map(() => ({ epoch: 2, members: [0, 1, 2, 3] })));
  }, 180_000);
});

function kindResource(object: KubernetesObject): (typeof Resources)[keyof typeof Resources] {
  switch (object.kind) {
    case 'Service': return Resources.services;
    case 'ConfigMap': return Resources.configMaps;
    case 'PodDisruptionBudget': return Resources.pdbs;
    default: return Resources.statefulSets;
  }
}
