/**
 * `npm run bench:operator [-- options]`: the operator with many quorums at once, against a real
 * kube-apiserver and kube-controller-manager (the local control plane of test/k8s/cluster).
 *
 * N small PaxosQuorums (one replica each) and R quorums of three replicas are created; once all
 * are Available, the R quorums are resized 3 -> 5 -> 3 -> ... continuously, each change issued
 * as soon as the previous one completed, while the image of every small quorum is changed one
 * after the other, `--rounds` times. The reaction time of a change is from the PATCH of the
 * PaxosQuorum to the operator's update of its StatefulSet's pod template, seen through a watch.
 *
 * The operator is the production Controller, Reconciler, informers and work queue, run in this
 * process with `--workers` workers. The node side is simulated (test/operator/sim-nodes.ts:
 * one SimNodes per quorum, and one kubelet for every quorum that marks pods Running and boots
 * their simulated node from the bootstrap ConfigMap), so operator_rss_mb is the RSS of this
 * process: an upper bound of the operator's, since the simulated nodes, the kubelet and the
 * measuring code live in it too. api_requests_per_min counts the operator's requests only
 * (reads, writes and watch opens of its own client) during the measured phase.
 *
 * Options:
 *   --quorums N      small quorums (default 30)
 *   --resizing R     quorums of three replicas resizing meanwhile (default 3)
 *   --workers W      operator workers (default 4, the operator's default)
 *   --rounds K       image changes per small quorum (default 3)
 *   --gap-ms G       pause between two image changes (default 100)
 *   --json           progress on stderr; one JSON line on stdout
 *   --no-write       do not write bench/results/operator.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import { Controller } from '../operator/src/controller/controller.js';
import type { NodeAdmin, NodeStatus } from '../operator/src/controller/node-admin.js';
import { Reconciler } from '../operator/src/controller/reconciler.js';
import { BOOTSTRAP_CONFIG_KEY, emptyStartIsLoss, parseBootstrap, podOrdinal } from '../operator/src/controller/resources.js';
import { MemoryEventRecorder } from '../operator/src/k8s/events.js';
import { makeInformers } from '../operator/src/k8s/informers.js';
import { PAXOSQUORUMS, type PaxosQuorum } from '../operator/src/k8s/paxosquorum.js';
import { KubeRest, Resources, resourcePath, type Query, type RequestOptions, type WatchEvent, type WatchHandle } from '../operator/src/k8s/rest.js';
import type { NodeConfig } from '../operator/src/plan/config.js';
import { quiet, quorumManifest, sleep, startCluster, stopCluster, type Cluster } from '../test/operator/harness.js';
import { SimNodes } from '../test/operator/sim-nodes.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NS = 'bench';
const IMAGE = (round: number): string => `paxosquorum/node:bench-${round}`;

const { values: args } = parseArgs({
  options: {
    quorums: { type: 'string', default: '30' },
    resizing: { type: 'string', default: '3' },
    workers: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    'gap-ms': { type: 'string', default: '100' },
    json: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
});

function positive(name: string, value: string | undefined, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, not ${value}`);
  return n;
}

const QUORUMS = positive('quorums', args.quorums, 0);
const RESIZING = positive('resizing', args.resizing, 0);
const WORKERS = positive('workers', args.workers);
const ROUNDS = positive('rounds', args.rounds);
const GAP_MS = positive('gap-ms', args['gap-ms'], 0);
const log = (line: string): void => {
  process.stderr.write(`[bench:operator] ${line}\n`);
};

/** The operator's client, counting every request and watch it makes. */
class CountingRest extends KubeRest {
  requests = 0;
  /** Requests by `METHOD resource`, e.g. `GET pods`. */
  readonly byKind = new Map<string, number>();
  override request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    this.requests += 1;
    const resource = path.split('?')[0]?.replace(/\/namespaces\/[^/]+/, '').split('/').slice(3).filter((part, i) => i === 0 || part === 'status').join('/') ?? path;
    const kind = `${method} ${resource}`;
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    return super.request<T>(method, path, options);
  }

  override watch<T>(path: string, query: Query, onEvent: (event: WatchEvent<T>) => void): WatchHandle {
    this.requests += 1;
    return super.watch(path, query, onEvent);
  }
}

/** Routes each admin call to the simulated nodes of the quorum the pod belongs to. */
class SimRouter implements NodeAdmin {
  readonly quorums = new Map<string, SimNodes>();

  sim(name: string): SimNodes {
    let sim = this.quorums.get(name);
    if (sim === undefined) {
      sim = new SimNodes(name);
      this.quorums.set(name, sim);
    }
    return sim;
  }

  private route(address: string): SimNodes {
    return this.sim(address.replace(/-\d+$/, ''));
  }

  status(address: string): Promise<NodeStatus> { return this.route(address).status(address); }
  convert(address: string, config: NodeConfig): Promise<void> { return this.route(address).convert(address, config); }
  transferLeadership(address: string, target: number): Promise<void> { return this.route(address).transferLeadership(address, target); }
  finalize(address: string): Promise<void> { return this.route(address).finalize(address); }
  register(address: string): Promise<void> { return this.route(address).register(address); }
  close(): void {}
}

/**
 * One kubelet for every quorum of the namespace, as test/operator/sim-nodes.ts's FakeKubelet
 * does for one: two lists per sync, then per new pod its bootstrap ConfigMap and a status patch.
 */
async function kubeletSync(rest: KubeRest, router: SimRouter): Promise<void> {
  const [pods, sets] = await Promise.all([
    rest.get<{ items: V1Pod[] }>(resourcePath(Resources.pods, NS), { labelSelector: 'app.kubernetes.io/name=paxos' }),
    rest.get<{ items: { metadata?: { name?: string }; spec?: { replicas?: number } }[] }>(resourcePath(Resources.statefulSets, NS)),
  ]);
  const present = new Map<string, Set<number>>();
  await Promise.all(pods.items.map(async (pod) => {
    const name = pod.metadata?.labels?.['app.kubernetes.io/instance'] ?? '';
    const ordinal = podOrdinal(name, pod.metadata?.name ?? '');
    if (ordinal === undefined || pod.metadata?.deletionTimestamp !== undefined) return;
    const seen = present.get(name) ?? new Set<number>();
    seen.add(ordinal);
    present.set(name, seen);
    if (pod.status?.phase === 'Running') return;
    const configMap = await rest.get<V1ConfigMap>(resourcePath(Resources.configMaps, NS, `${name}-bootstrap`));
    const bootstrap = parseBootstrap(configMap.data);
    if (bootstrap === undefined) return;
    const asked = (JSON.parse(configMap.data?.[BOOTSTRAP_CONFIG_KEY] ?? '{}') as { register?: unknown }).register === true;
    router.sim(name).boot(ordinal, bootstrap.config, asked && bootstrap.joining && !emptyStartIsLoss(bootstrap, ordinal));
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    await rest.mergePatch(resourcePath(Resources.pods, NS, pod.metadata?.name, 'status'), {
      status: {
        phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }],
        conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }, { type: 'ContainersReady', status: 'True', lastTransitionTime: now }],
      },
    });
  }));
  for (const set of sets.items) {
    const name = set.metadata?.name ?? '';
    const sim = router.quorums.get(name);
    if (sim === undefined) continue;
    const replicas = set.spec?.replicas ?? 0;
    const alive = present.get(name) ?? new Set<number>();
    for (const ordinal of [...sim.nodes.keys()]) if (!alive.has(ordinal) && ordinal >= replicas) sim.remove(ordinal);
  }
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

async function main(): Promise<void> {
  const started = Date.now();
  const rssAtStartMb = process.memoryUsage().rss / 1024 / 1024;
  log(`starting the control plane (${QUORUMS} quorums of 1, ${RESIZING} of 3 resizing, ${WORKERS} workers)`);
  let cluster: Cluster | undefined;
  let running = true;
  const loops: Promise<void>[] = [];
  try {
    cluster = await startCluster();
    const { cp, clients: bench } = cluster;
    await cp.kubectl(['create', 'namespace', NS]);

    const rest = new CountingRest(bench.rest.connection);
    const clients = { rest };
    const router = new SimRouter();
    const reconciler = new Reconciler({
      clients, admin: router, events: new MemoryEventRecorder(), log: quiet, defaultImage: IMAGE(0), addressOf: () => (pod) => pod.metadata?.name,
    });
    const controller = new Controller(makeInformers(clients, quiet, NS), (key, signal) => reconciler.reconcile(key, signal), quiet, undefined,
      { concurrency: WORKERS });

    let rssMaxMb = 0;
    loops.push((async () => {
      while (running) {
        rssMaxMb = Math.max(rssMaxMb, process.memoryUsage().rss / 1024 / 1024);
        await sleep(500);
      }
    })());
    const kubeletRest = new KubeRest(bench.rest.connection);
    loops.push((async () => {
      while (running) {
        await kubeletSync(kubeletRest, router).catch(() => undefined);
        await sleep(150);
      }
    })());

    const small = Array.from({ length: QUORUMS }, (_, i) => `s${i}`);
    const big = Array.from({ length: RESIZING }, (_, i) => `r${i}`);
    const manifests = [...small.map((name) => quorumManifest(NS, name, { replicas: 1 })), ...big.map((name) => quorumManifest(NS, name, { replicas: 3 }))];
    await controller.startInformers();
    controller.startLeading();
    for (const manifest of manifests) await bench.rest.create(resourcePath(PAXOSQUORUMS, NS), JSON.parse(manifest));

    const getAll = async (): Promise<Map<string, PaxosQuorum>> => {
      const list = await bench.rest.get<{ items: PaxosQuorum[] }>(resourcePath(PAXOSQUORUMS, NS));
      return new Map(list.items.map((q) => [q.metadata.name, q]));
    };
    const settled = (q: PaxosQuorum | undefined): boolean => {
      const replicas = (q?.spec as { replicas?: number } | undefined)?.replicas;
      return q?.status?.phase === 'Available' && q.status.operation == null && q.status.members?.length === replicas;
    };
    const setupDeadline = Date.now() + 300_000;
    for (;;) {
      const all = await getAll();
      const waiting = [...small, ...big].filter((name) => !settled(all.get(name)));
      if (waiting.length === 0) break;
      if (Date.now() > setupDeadline) throw new Error(`quorums not Available after 300 s: ${waiting.join(', ')}`);
      await sleep(500);
    }
    log(`all ${small.length + big.length} quorums Available after ${round1((Date.now() - started) / 1000)} s; measuring`);

    // Watch the StatefulSets: when does each one's template get the new image.
    const pending = new Map<string, { image: string; at: number }>();
    const reactions: { quorum: string; ms: number }[] = [];
    const watch = bench.rest.watch<{ metadata?: { name?: string }; spec?: { template?: { spec?: { containers?: { image?: string }[] } } } }>(
      resourcePath(Resources.statefulSets, NS), {}, (event) => {
        const name = event.object.metadata?.name ?? '';
        const want = pending.get(name);
        if (want !== undefined && event.object.spec?.template?.spec?.containers?.[0]?.image === want.image) {
          reactions.push({ quorum: name, ms: Date.now() - want.at });
          pending.delete(name);
        }
      });
    watch.done.catch(() => undefined);

    const requestsBefore = rest.requests;
    rest.byKind.clear();
    const measuredFrom = Date.now();
    // The resizing quorums: 3 -> 5 -> 3 ... as long as the measurement runs.
    const resizes: { quorum: string; from: number; to: number; wallS: number }[] = [];
    let resizing = true;
    const resizer = Promise.all(big.map(async (name) => {
      let from = 3;
      while (resizing) {
        const to = from === 3 ? 5 : 3;
        const t0 = Date.now();
        await bench.rest.mergePatch(resourcePath(PAXOSQUORUMS, NS, name), { spec: { replicas: to } });
        const deadline = t0 + 120_000;
        for (;;) {
          await sleep(100);
          const q = await bench.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, NS, name)).catch(() => undefined);
          if (settled(q) && q?.status?.members?.length === to) break;
          if (Date.now() > deadline) throw new Error(`${name}: ${from} -> ${to} did not complete in 120 s`);
        }
        resizes.push({ quorum: name, from, to, wallS: (Date.now() - t0) / 1000 });
        from = to;
      }
    }));

    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const name of small) {
        const image = IMAGE(round);
        pending.set(name, { image, at: Date.now() });
        await bench.rest.mergePatch(resourcePath(PAXOSQUORUMS, NS, name), { spec: { image } });
        await sleep(GAP_MS);
      }
    }
    const waitUntil = Date.now() + 30_000;
    while (pending.size > 0 && Date.now() < waitUntil) await sleep(100);
    const missed = [...pending.keys()];
    // Let every resizing quorum finish at least one change.
    while (resizes.length < big.length && Date.now() < waitUntil + 120_000) await sleep(200);
    resizing = false;
    await resizer;
    const measuredS = (Date.now() - measuredFrom) / 1000;
    const requests = rest.requests - requestsBefore;
    watch.abort();

    const ms = reactions.map((r) => r.ms);
    const perQuorumMax = new Map<string, number>();
    for (const r of reactions) perQuorumMax.set(r.quorum, Math.max(perQuorumMax.get(r.quorum) ?? 0, r.ms));
    const summary = {
      quorums: small.length + big.length,
      reaction_p99_ms: Math.round(percentile(ms, 99)),
      resize_wall_s: resizes.map((r) => round1(r.wallS)),
      operator_rss_mb: Math.round(rssMaxMb),
      api_requests_per_min: Math.round(requests / (measuredS / 60)),
      // Details
      workers: WORKERS,
      rss_at_start_mb: Math.round(rssAtStartMb),
      reaction_samples: ms.length,
      reaction_p50_ms: Math.round(percentile(ms, 50)),
      reaction_max_ms: Math.round(Math.max(...ms)),
      quorums_slowest_reaction_over_1s: [...perQuorumMax.entries()].filter(([, v]) => v > 1000).map(([k]) => k),
      reactions_missed: missed,
      resizes: resizes.map((r) => ({ quorum: r.quorum, from: r.from, to: r.to, wall_s: round1(r.wallS) })),
      measured_s: round1(measuredS),
      api_requests_by_kind: Object.fromEntries([...rest.byKind.entries()].sort((a, b) => b[1] - a[1])),
      targets: { reaction_p99_ms: 1000, operator_rss_mb: 150 },
      at: new Date().toISOString(),
    };
    if (!args['no-write']) {
      const dir = join(ROOT, 'bench', 'results');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'operator.json'), `${JSON.stringify(summary, null, 2)}\n`);
    }
    if (args.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);

    running = false;
    await controller.stop();
    rest.close();
    kubeletRest.close();
  } finally {
    running = false;
    await Promise.all(loops);
    await stopCluster(cluster);
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`bench:operator failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
