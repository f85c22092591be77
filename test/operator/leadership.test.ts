/**
 * Two operators, one Lease, a real API server: the holder's Lease traffic goes through a TCP
 * proxy that stalls (the API server stops answering it, nothing is closed), while its
 * reconciler and the nodes stay reachable — the worst case for overlap, since the old leader
 * could go on acting for as long as it believes it leads. Meanwhile the quorum is resized back
 * and forth, so whoever leads keeps calling the nodes' admin API.
 *
 * Shown with the timestamp of every admin call of both operators: the old leader steps down
 * within the renew deadline of its last renewal (its stalled renew attempt is aborted, not left
 * to the REST client's 30 s timeout), makes no admin call after that, and the standby takes the
 * Lease only a lease duration after it last saw it renewed, then acts.
 */
import { Controller } from '../../operator/src/controller/controller.js';
import type { NodeAdmin, NodeStatus } from '../../operator/src/controller/node-admin.js';
import { Reconciler } from '../../operator/src/controller/reconciler.js';
import { makeClients, type KubeClients } from '../../operator/src/k8s/client.js';
import { MemoryEventRecorder } from '../../operator/src/k8s/events.js';
import { makeInformers } from '../../operator/src/k8s/informers.js';
import { LeaderElector } from '../../operator/src/k8s/leader-election.js';
import { PAXOSQUORUMS, type PaxosQuorum } from '../../operator/src/k8s/paxosquorum.js';
import { resourcePath } from '../../operator/src/k8s/rest.js';
import type { NodeConfig } from '../../operator/src/plan/config.js';
import { eventually, quiet, quorumManifest, sleep, startCluster, stopCluster, type Cluster } from './harness.js';
import { FakeKubelet, SimNodes } from './sim-nodes.js';
import { StallProxy } from './stall-proxy.js';

const LEASE_SECONDS = 6;
const RENEW_DEADLINE_MS = 3_000;
const RENEW_INTERVAL_MS = 500;

interface AdminCall {
  readonly operator: 'A' | 'B';
  readonly method: string;
  readonly at: number;
}

/** The shared simulated nodes, seen through one operator: every call is timestamped. */
function recordingAdmin(sim: SimNodes, operator: 'A' | 'B', calls: AdminCall[]): NodeAdmin {
  const note = (method: string): void => {
    calls.push({ operator, method, at: Date.now() });
  };
  return {
    status: (address: string): Promise<NodeStatus> => { note('Status'); return sim.status(address); },
    convert: (address: string, config: NodeConfig): Promise<void> => { note('Convert'); return sim.convert(address, config); },
    transferLeadership: (address: string, target: number): Promise<void> => { note('TransferLeadership'); return sim.transferLeadership(address, target); },
    finalize: (address: string): Promise<void> => { note('Finalize'); return sim.finalize(address); },
    register: (address: string): Promise<void> => { note('Register'); return sim.register(address); },
    close: () => undefined,
  };
}

describe('leader election under a stalled API server', () => {
  let cluster: Cluster | undefined;
  let proxy: StallProxy | undefined;
  const ns = 'lead';

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.cp.kubectl(['create', 'namespace', ns]);
    const server = cluster.clients.rest.connection.server;
    proxy = await new StallProxy({ host: server.hostname, port: Number(server.port) }).start();
  }, 180_000);

  afterAll(async () => {
    await proxy?.stop();
    await stopCluster(cluster);
  }, 60_000);

  it('the old leader stops acting before the standby starts, with the admin calls of both timestamped', async () => {
    const { cp, clients: direct } = cluster as Cluster;
    const sim = new SimNodes('lq');
    const kubelet = new FakeKubelet(direct, ns, 'lq', sim);
    const calls: AdminCall[] = [];
    const led: { operator: 'A' | 'B'; started: number; stopped?: number }[] = [];
    const proxied = makeClients({ ...direct.rest.connection, server: new URL(`https://127.0.0.1:${(proxy as StallProxy).port}`) });
    const owned: KubeClients[] = [proxied];

    const operator = (name: 'A' | 'B', electorClients: KubeClients) => {
      const clients = makeClients(direct.rest.connection);
      owned.push(clients);
      const holder: { elector?: LeaderElector } = {};
      const reconciler = new Reconciler({
        clients, admin: recordingAdmin(sim, name, calls), events: new MemoryEventRecorder(), log: quiet,
        defaultImage: 'paxosquorum/node:0.1.0', addressOf: () => (pod) => pod.metadata?.name,
        mayAct: () => holder.elector?.isLeader === true,
      });
      const controller = new Controller(makeInformers(clients, quiet, ns), (key, signal) => reconciler.reconcile(key, signal), quiet, undefined,
        { concurrency: 2, passTimeoutMs: 10_000 });
      const elector = new LeaderElector(electorClients, quiet, {
        namespace: ns, name: 'operator', identity: name,
        leaseDurationSeconds: LEASE_SECONDS, renewIntervalMs: RENEW_INTERVAL_MS, renewDeadlineMs: RENEW_DEADLINE_MS,
        onStartedLeading: () => {
          led.push({ operator: name, started: Date.now() });
          controller.startLeading();
        },
        onStoppedLeading: () => {
          const term = [...led].reverse().find((entry) => entry.operator === name);
          if (term !== undefined) term.stopped = Date.now();
          void controller.stopLeading();
        },
      });
      holder.elector = elector;
      return { controller, elector };
    };

    // The world around the operators: a kubelet for the simulated nodes, and a user who resizes
    // the quorum 3 -> 5 -> 3 ... each time the previous change completed.
    let running = true;
    const background = (async () => {
      while (running) {
        await kubelet.sync().catch(() => undefined);
        const quorum = await direct.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, 'lq')).catch(() => undefined);
        const status = quorum?.status;
        const replicas = (quorum?.spec as { replicas?: number } | undefined)?.replicas;
        if (status?.phase === 'Available' && status.operation == null && status.members?.length === replicas) {
          await direct.rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'lq'), { spec: { replicas: replicas === 3 ? 5 : 3 } }).catch(() => undefined);
        }
        await sleep(150);
      }
    })();

    const a = operator('A', proxied);
    const b = operator('B', direct);
    try {
      await cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'lq', { replicas: 3 }) });
      await a.controller.startInformers();
      await b.controller.startInformers();
      a.elector.start();
      await eventually('A leads', async () => (a.elector.isLeader ? true : undefined), 15_000);
      b.elector.start();
      // A is acting: it has changed nodes, and goes on doing so.
      await eventually('A converts a node', async () => (calls.some((c) => c.operator === 'A' && c.method === 'Convert') ? true : undefined), 60_000);

      const stalledAt = Date.now();
      (proxy as StallProxy).stall();
      await eventually('B leads', async () => (b.elector.isLeader ? true : undefined), 30_000);
      const tookOver = Date.now();
      await eventually('B changes a node', async () =>
        (calls.some((c) => c.operator === 'B' && c.method !== 'Status') ? true : undefined), 60_000);
      (proxy as StallProxy).resume();
      await sleep(2 * RENEW_INTERVAL_MS + 500);

      const termA = led.find((entry) => entry.operator === 'A');
      const termB = led.find((entry) => entry.operator === 'B');
      const lastA = Math.max(...calls.filter((c) => c.operator === 'A').map((c) => c.at));
      const firstB = Math.min(...calls.filter((c) => c.operator === 'B').map((c) => c.at));
      const rel = (t: number | undefined): string => (t === undefined ? '-' : `${t - stalledAt} ms`);
      const timeline = [
        `relative to the stall of A's Lease traffic:`,
        `A leads ${rel(termA?.started)} .. ${rel(termA?.stopped)}; B leads from ${rel(termB?.started)}`,
        `A's last admin call ${rel(lastA)}; B's first admin call ${rel(firstB)}`,
        `A's admin calls while stalled: ${calls.filter((c) => c.operator === 'A' && c.at >= stalledAt).map((c) => `${c.method}@${c.at - stalledAt}`).join(' ')}`,
        `B's first admin calls: ${calls.filter((c) => c.operator === 'B').slice(0, 8).map((c) => `${c.method}@${c.at - stalledAt}`).join(' ')}`,
      ].join('\n');
      process.stdout.write(`${timeline}\n`);

      expect(termA?.stopped).toBeDefined();
      expect(termB).toBeDefined();
      // A's stalled renewal was cut off by its renew deadline, not by the 30 s request timeout.
      expect((termA?.stopped as number) - stalledAt).toBeLessThanOrEqual(RENEW_DEADLINE_MS + 500);
      // A kept acting while it still held a valid leadership, which the stall did not end early...
      expect(calls.some((c) => c.operator === 'A' && c.at >= stalledAt)).toBe(true);
      // ...and made no admin call after stepping down.
      expect(lastA).toBeLessThanOrEqual(termA?.stopped as number);
      // B started only after A had stopped, by at least lease duration - renew deadline (minus slack).
      expect((termB?.started as number) - (termA?.stopped as number)).toBeGreaterThanOrEqual(LEASE_SECONDS * 1000 - RENEW_DEADLINE_MS - 1_000);
      expect(firstB).toBeGreaterThanOrEqual(termB?.started as number);
      expect(lastA).toBeLessThan(firstB);
      expect(tookOver).toBeGreaterThanOrEqual(termB?.started as number);
      // After the stall ends, A sees B's Lease and stays a standby.
      expect(a.elector.isLeader).toBe(false);
      expect(b.elector.isLeader).toBe(true);
    } finally {
      running = false;
      await background;
      await a.elector.stop();
      await b.elector.stop();
      await a.controller.stop();
      await b.controller.stop();
      for (const clients of owned) clients.rest.close();
    }
  }, 180_000);
});
