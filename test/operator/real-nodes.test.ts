/**
 * The operator against a real API server AND real Paxos node processes (node/src/main.ts on
 * 127.0.0.1, one per pod; see process-nodes.ts): a 3-node quorum is created, grown to 5 and
 * shrunk back to 3 while a client keeps writing, with the production NodeAdmin (the node
 * client library over gRPC).
 */
import { PaxosClient } from '../../node/src/client/index.js';
import { ClientNodeAdmin, type NodeStatus } from '../../operator/src/controller/node-admin.js';
import { emptyStartIsLoss, parseBootstrap } from '../../operator/src/controller/resources.js';
import { Reconciler } from '../../operator/src/controller/reconciler.js';
import { MemoryEventRecorder } from '../../operator/src/k8s/events.js';
import { PAXOSQUORUMS, type PaxosQuorum } from '../../operator/src/k8s/paxosquorum.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';
import { eventually, quiet, quorumManifest, sleep, startCluster, stopCluster, type Cluster } from './harness.js';
import { ProcessKubelet } from './process-nodes.js';

/**
 * The operator's loop for one quorum, driven by the test: each round syncs the process kubelet,
 * runs one reconcile (a failed step is retried next round, as the queue would) and reads the
 * quorum back. A timeout reports the status, the Events and the nodes' logs.
 */
function operatorLoop(clients: Cluster['clients'], admin: AuditedNodeAdmin, k: ProcessKubelet, ns: string, name: string) {
  const events = new MemoryEventRecorder();
  const reconciler = new Reconciler({
    clients, admin, events, log: quiet, defaultImage: 'paxosquorum/node:0.1.0', addressOf: () => k.addressOf,
    statusDeadlineMs: 2_000,
  });
  const get = (): Promise<PaxosQuorum> => clients.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, name));
  let last: PaxosQuorum | undefined;
  const converge = async (what: string, done: (q: PaxosQuorum) => boolean | Promise<boolean>): Promise<PaxosQuorum> => {
    try {
      await eventually(what, async () => {
        await k.sync();
        await reconciler.reconcile(`${ns}/${name}`).catch(() => undefined);
        last = await get();
        return (await done(last)) ? true : undefined;
      }, 120_000);
      return last as PaxosQuorum;
    } catch (error) {
      throw new Error(`${String(error)}\nstatus: ${JSON.stringify(last?.status)}\nevents:\n${events.events.map((e) => `${e.type} ${e.reason}: ${e.note}`).join('\n')}\n${k.logs()}`);
    }
  };
  return { events, get, converge };
}

/**
 * The production NodeAdmin, watched: which new servers reported themselves unregistered, and
 * whether each Register came only once the bootstrap ConfigMap made an empty restart of that
 * server a recognised loss (the invariant that closes the window of ADR 0007).
 */
class AuditedNodeAdmin extends ClientNodeAdmin {
  readonly seenUnregistered = new Set<number>();
  readonly registered: { ordinal: number | undefined; recordedFirst: boolean }[] = [];
  watch: { clients: Cluster['clients']; kubelet: ProcessKubelet; configMapPath: string } | undefined;

  override async status(address: string, deadlineMs: number): Promise<NodeStatus> {
    const status = await super.status(address, deadlineMs);
    const ordinal = this.watch?.kubelet.ordinalOf(address);
    if (status.unregistered === true && ordinal !== undefined) this.seenUnregistered.add(ordinal);
    return status;
  }

  override async register(address: string, deadlineMs: number): Promise<void> {
    if (this.watch !== undefined) {
      const ordinal = this.watch.kubelet.ordinalOf(address);
      const stored = parseBootstrap((await this.watch.clients.rest.get<{ data?: Record<string, string> }>(this.watch.configMapPath)).data);
      this.registered.push({ ordinal, recordedFirst: ordinal !== undefined && stored !== undefined && emptyStartIsLoss(stored, ordinal) });
    }
    await super.register(address, deadlineMs);
  }
}

describe('resize with real node processes', () => {
  let cluster: Cluster | undefined;
  let kubelet: ProcessKubelet | undefined;
  const admin = new AuditedNodeAdmin();
  const ns = 'real';

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.cp.kubectl(['create', 'namespace', ns]);
  }, 180_000);

  afterAll(async () => {
    admin.close();
    await kubelet?.stop();
    await stopCluster(cluster);
  }, 60_000);

  it('creates 3 nodes, expands to 5 and shrinks to 3 while a client writes', async () => {
    const { clients, cp } = cluster as Cluster;
    kubelet = new ProcessKubelet(clients, ns, 'kv', 5);
    await kubelet.init();
    admin.watch = { clients, kubelet, configMapPath: resourcePath(Resources.configMaps, ns, 'kv-bootstrap') };
    const { events, converge } = operatorLoop(clients, admin, kubelet, ns, 'kv');
    const settled = (size: number, epoch: number) => (q: PaxosQuorum): boolean =>
      q.status?.phase === 'Available' && q.status.configEpoch === epoch && q.status.readyReplicas === size
      && q.status.replicas === size && q.status.operation == null
      && (q.status.members ?? []).every((m) => m.epoch === epoch && m.healthy);

    await cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'kv', { replicas: 3 }) });
    await converge('3 nodes with a leader', settled(3, 1));

    // A client writes throughout the resizes; every acknowledged write must be readable at the end.
    const client = new PaxosClient({ endpoints: kubelet.endpoints(), deadlineMs: 20_000 });
    const acknowledged = new Map<string, string>();
    let writing = true;
    let failures = 0;
    const writer = (async () => {
      for (let i = 0; writing; i += 1) {
        try {
          await client.put(`k${i % 50}`, `v${i}`);
          acknowledged.set(`k${i % 50}`, `v${i}`);
        } catch {
          failures += 1;
        }
        await sleep(20);
      }
    })();

    try {
      await cp.kubectl(['scale', 'paxosquorum/kv', '-n', ns, '--replicas=5']);
      await converge('expansion to 5', settled(5, 2));
      await cp.kubectl(['scale', 'paxosquorum/kv', '-n', ns, '--replicas=3']);
      await converge('shrink to 3', settled(3, 3));
    } finally {
      writing = false;
      await writer;
    }
    expect(acknowledged.size).toBeGreaterThan(0);
    const reader = new PaxosClient({ endpoints: kubelet.endpoints(), deadlineMs: 20_000 });
    try {
      for (const [key, value] of acknowledged) expect([key, await reader.get(key)]).toEqual([key, value]);
    } finally {
      reader.close();
      client.close();
    }
    const reasons = events.events.map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['PodStarting', 'NodeConverted', 'LeadershipTransferred', 'Finalized', 'PodStopping']));
    expect(failures).toBeLessThan(acknowledged.size);
    // The new servers 3 and 4 started unregistered, and each was registered only after the
    // ConfigMap named it: a volume lost at any moment before is a fresh join, after it a loss.
    expect([...admin.seenUnregistered].sort()).toEqual([3, 4]);
    expect(admin.registered.map((r) => r.ordinal).sort()).toEqual(expect.arrayContaining([3, 4]));
    expect(admin.registered.every((r) => r.recordedFirst)).toBe(true);
  }, 400_000);

  it('repairs a member that lost its volume: it votes for nobody until a repair reconfiguration', async () => {
    const { clients } = cluster as Cluster;
    const k = kubelet as ProcessKubelet;
    const { events, get, converge } = operatorLoop(clients, admin, k, ns, 'kv');
    const before = await get();
    const epoch = before.status?.configEpoch ?? 0;
    const client = new PaxosClient({ endpoints: k.endpoints(), deadlineMs: 20_000 });
    try {
      for (let i = 0; i < 20; i += 1) await client.put(`lost/${i}`, `v${i}`);
      await k.wipe(1);
      const seen = { suspended: false, repair: false };
      await converge('the repair of pod 1', (q) => {
        if (q.status?.members?.find((m) => m.id === 1)?.dataLoss === 'suspended') seen.suspended = true;
        if (q.status?.operation?.kind === 'Repair') seen.repair = true;
        return q.status?.phase === 'Available' && q.status.configEpoch === epoch + 1 && q.status.operation == null
          && (q.status.members ?? []).every((m) => m.healthy && m.dataLoss === undefined && m.epoch === epoch + 1);
      });
      expect(seen).toEqual({ suspended: true, repair: true });
      expect(events.events.map((e) => e.reason)).toEqual(expect.arrayContaining(['NodeConverted', 'Finalized']));
      for (let i = 0; i < 20; i += 1) expect(await client.get(`lost/${i}`)).toBe(`v${i}`);
      // Pod 1 counts again: with pod 2 down, {0, 1} still commit.
      await k.crash([2]);
      await client.put('after-repair', 'ok');
      expect(await client.get('after-repair')).toBe('ok');
      await k.wipe(2); // back to three running processes for the next test (pod 2 repairs itself later)
    } finally {
      client.close();
    }
  }, 200_000);

  it('recognises a new server that loses its volume in the middle of an expansion, and repairs it after', async () => {
    const { clients, cp } = cluster as Cluster;
    const k = kubelet as ProcessKubelet;
    const { events, converge } = operatorLoop(clients, admin, k, ns, 'kv');
    const healthy = (q: PaxosQuorum, size: number): boolean => q.status?.phase === 'Available' && q.status.operation == null
      && q.status.replicas === size && (q.status.members ?? []).every((m) => m.healthy && m.dataLoss === undefined);
    // The previous test left pod 2 on an empty volume: its repair comes first.
    const epoch = (await converge('3 healthy members', (q) => healthy(q, 3))).status?.configEpoch ?? 0;
    await cp.kubectl(['scale', 'paxosquorum/kv', '-n', ns, '--replicas=5']);
    // Pod 3 (the first new server) has run on the joint configuration and the ConfigMap says so.
    const configMapPath = resourcePath(Resources.configMaps, ns, 'kv-bootstrap');
    await converge('pod 3 recorded as started', async () => {
      const data = (await clients.rest.get<{ data?: Record<string, string> }>(configMapPath)).data;
      return parseBootstrap(data)?.started?.includes(3) === true;
    });
    await k.wipe(3);
    const seen = { suspended: false };
    await converge('5 healthy members after the expansion and the repair of pod 3', (q) => {
      if (q.status?.members?.find((m) => m.id === 3)?.dataLoss === 'suspended') seen.suspended = true;
      return healthy(q, 5) && (q.status?.configEpoch ?? 0) >= epoch + 2;
    });
    expect(seen.suspended).toBe(true);
    const kinds = events.events.filter((e) => e.reason === 'OperationStarted').map((e) => e.note.split(' ')[0]);
    expect(kinds).toEqual(expect.arrayContaining(['Expand', 'Repair']));
    await cp.kubectl(['scale', 'paxosquorum/kv', '-n', ns, '--replicas=3']);
    await converge('back to 3 healthy members', (q) => healthy(q, 3));
  }, 400_000);

  it('keeps status truthful after the quorum loses its majority', async () => {
    const { clients } = cluster as Cluster;
    const k = kubelet as ProcessKubelet;
    const reconciler = new Reconciler({
      clients, admin, events: new MemoryEventRecorder(), log: quiet, defaultImage: 'paxosquorum/node:0.1.0',
      addressOf: () => k.addressOf, statusDeadlineMs: 1_000,
    });
    const get = (): Promise<PaxosQuorum> => clients.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, 'kv'));
    // Two of the three members die; their pods still look Running, so only the nodes can tell.
    await k.crash([1, 2]);
    const q = await eventually('status reporting the lost majority', async () => {
      await reconciler.reconcile(`${ns}/kv`).catch(() => undefined);
      const quorum = await get();
      const available = quorum.status?.conditions?.find((c) => c.type === 'Available');
      const unhealthy = (quorum.status?.members ?? []).filter((m) => !m.healthy).map((m) => m.id);
      return available?.status === 'False' && unhealthy.includes(1) && unhealthy.includes(2) ? quorum : undefined;
    }, 60_000);
    expect(q.status?.phase).not.toBe('Available');
    expect(q.status?.members?.find((m) => m.id === 0)?.healthy).toBe(true);
    // No reconfiguration is started on a quorum that cannot commit.
    expect(q.status?.operation ?? undefined).toBeUndefined();
    expect(q.spec.replicas).toBe(3);
  }, 120_000);
});
