/**
 * The reconcile pass deadline against a real API server: a pass stuck in a call — a Kubernetes
 * request to an API server that stopped answering (a stalling TCP proxy), or an admin call to a
 * node that never answers and ignores cancellation — is aborted at the deadline, frees its key,
 * and the key is retried; once the call can complete, the quorum converges.
 */
import { Controller } from '../../operator/src/controller/controller.js';
import type { NodeAdmin } from '../../operator/src/controller/node-admin.js';
import { Reconciler } from '../../operator/src/controller/reconciler.js';
import { makeClients, type KubeClients } from '../../operator/src/k8s/client.js';
import { MemoryEventRecorder } from '../../operator/src/k8s/events.js';
import { makeInformers } from '../../operator/src/k8s/informers.js';
import { PAXOSQUORUMS, type PaxosQuorum } from '../../operator/src/k8s/paxosquorum.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';
import type { NodeConfig } from '../../operator/src/plan/config.js';
import { eventually, quiet, quorumManifest, sleep, startCluster, stopCluster, type Cluster } from './harness.js';
import { FakeKubelet, SimNodes } from './sim-nodes.js';
import { StallProxy } from './stall-proxy.js';

const PASS_TIMEOUT_MS = 1_000;

describe('reconcile pass deadline', () => {
  let cluster: Cluster | undefined;
  let proxy: StallProxy | undefined;
  const ns = 'deadline';

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

  /**
   * A controller whose reconciler talks to the API server through `reconcilerClients` and to
   * the nodes through `admin`; informers use the direct connection. Records each pass's result.
   */
  function start(reconcilerClients: KubeClients, admin: NodeAdmin) {
    const direct = (cluster as Cluster).clients;
    const passes: { result: 'success' | 'error'; seconds: number; at: number }[] = [];
    const reconciler = new Reconciler({
      clients: reconcilerClients, admin, events: new MemoryEventRecorder(), log: quiet, defaultImage: 'paxosquorum/node:0.1.0',
      addressOf: () => (pod) => pod.metadata?.name,
    });
    const informerClients = makeClients(direct.rest.connection);
    const controller = new Controller(makeInformers(informerClients, quiet, ns), (key, signal) => reconciler.reconcile(key, signal), quiet,
      { reconcileDone: (seconds, result) => passes.push({ result, seconds, at: Date.now() }) },
      { concurrency: 2, passTimeoutMs: PASS_TIMEOUT_MS });
    return {
      passes, controller,
      stop: async () => {
        await controller.stop();
        informerClients.rest.close();
      },
    };
  }

  it('aborts a pass whose Kubernetes request hangs, frees the key, and converges once the API server answers', async () => {
    const { cp, clients: direct } = cluster as Cluster;
    const sim = new SimNodes('stuckapi');
    const kubelet = new FakeKubelet(direct, ns, 'stuckapi', sim);
    const proxied = makeClients({ ...direct.rest.connection, server: new URL(`https://127.0.0.1:${(proxy as StallProxy).port}`) });
    const op = start(proxied, sim);
    let running = true;
    const kubeletLoop = (async () => {
      while (running) {
        await kubelet.sync().catch(() => undefined);
        await sleep(200);
      }
    })();
    try {
      await cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'stuckapi', { replicas: 1 }) });
      await op.controller.startInformers();
      op.controller.startLeading();
      await eventually('Available', async () => {
        const q = await direct.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, 'stuckapi'));
        return q.status?.phase === 'Available' ? true : undefined;
      }, 30_000);

      (proxy as StallProxy).stall();
      const stalledAt = Date.now();
      await direct.rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'stuckapi'), { spec: { image: 'paxosquorum/node:9.9.9' } });
      // The pass the change triggers hangs on its first request; the deadline aborts it.
      const failed = await eventually('an aborted pass', async () => op.passes.find((p) => p.at > stalledAt && p.result === 'error'), 10_000);
      expect(failed.seconds).toBeGreaterThanOrEqual(PASS_TIMEOUT_MS / 1000 - 0.05);
      expect(failed.seconds).toBeLessThan(PASS_TIMEOUT_MS / 1000 + 1);
      // Retried with backoff, each retry aborted at its deadline too: the key is never held.
      await eventually('a second aborted pass', async () =>
        (op.passes.filter((p) => p.at > stalledAt && p.result === 'error').length >= 2 ? true : undefined), 10_000);
      (proxy as StallProxy).resume();
      await eventually('the new image in the pod template once the API server answers', async () => {
        const sts = await direct.rest.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>(
          resourcePath(Resources.statefulSets, ns, 'stuckapi'));
        return sts.spec.template.spec.containers[0]?.image === 'paxosquorum/node:9.9.9' ? true : undefined;
      }, 20_000);
    } finally {
      (proxy as StallProxy).resume();
      running = false;
      await kubeletLoop;
      await op.stop();
      proxied.rest.close();
    }
  }, 120_000);

  it('abandons an admin call that never answers and ignores cancellation; the step is retried until the node answers', async () => {
    const { cp, clients: direct } = cluster as Cluster;
    const sim = new SimNodes('stucknode');
    const kubelet = new FakeKubelet(direct, ns, 'stucknode', sim);
    let hang = true;
    const converts: { at: number; signal: AbortSignal | undefined; abortedAt?: number }[] = [];
    const admin: NodeAdmin = {
      status: (address) => sim.status(address),
      convert: async (address: string, config: NodeConfig, _deadlineMs: number, signal?: AbortSignal) => {
        const entry: (typeof converts)[number] = { at: Date.now(), signal };
        signal?.addEventListener('abort', () => (entry.abortedAt = Date.now()));
        converts.push(entry);
        if (hang) await new Promise<void>(() => undefined); // neither answers nor honours the signal
        return sim.convert(address, config);
      },
      transferLeadership: (address, target) => sim.transferLeadership(address, target),
      finalize: (address) => sim.finalize(address),
      register: (address) => sim.register(address),
      close: () => undefined,
    };
    const reconcilerClients = makeClients(direct.rest.connection);
    const op = start(reconcilerClients, admin);
    let running = true;
    const kubeletLoop = (async () => {
      while (running) {
        await kubelet.sync().catch(() => undefined);
        await sleep(200);
      }
    })();
    try {
      await cp.kubectl(['apply', '-f', '-'], { input: quorumManifest(ns, 'stucknode', { replicas: 1 }) });
      await op.controller.startInformers();
      op.controller.startLeading();
      await eventually('Available', async () => {
        const q = await direct.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, 'stucknode'));
        return q.status?.phase === 'Available' ? true : undefined;
      }, 30_000);
      await direct.rest.mergePatch(resourcePath(PAXOSQUORUMS, ns, 'stucknode'), { spec: { replicas: 3 } });
      await eventually('two Convert attempts', async () => (converts.length >= 2 ? true : undefined), 30_000);
      const [first, second] = converts;
      expect(first?.signal?.aborted).toBe(true);
      // The second attempt came once the first pass was cut off at its deadline (+ backoff), not
      // never. (The call itself starts some time into the pass, after the pass's reads.)
      expect(first?.abortedAt).toBeDefined();
      expect(second?.at as number).toBeGreaterThanOrEqual(first?.abortedAt as number);
      expect(op.passes.some((p) => p.result === 'error' && p.seconds >= PASS_TIMEOUT_MS / 1000 - 0.05)).toBe(true);
      hang = false;
      await eventually('3 members', async () => {
        const q = await direct.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, ns, 'stucknode'));
        return q.status?.phase === 'Available' && q.status.members?.length === 3 && q.status.operation == null ? true : undefined;
      }, 60_000);
    } finally {
      running = false;
      await kubeletLoop;
      await op.stop();
      reconcilerClients.rest.close();
    }
  }, 150_000);
});
