/**
 * Rolling upgrades under write load, on the real nodes: `spec.image` is set to the node image
 * built under a second tag, and the operator must replace the pods one at a time, followers
 * first and the leader last after a transfer, with one change of leader. Then a tag that cannot
 * run (it exists nowhere, so the kubelet cannot pull it) must stop the roll after one pod, and
 * setting the good image back must roll that pod back.
 */
import { NS, QUORUM, sleep, type E2eEnv, type Writer } from './harness.js';

interface PodItem {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { containers: { image: string }[] };
  status?: { conditions?: { type: string; status: string }[]; containerStatuses?: { state?: { waiting?: { reason?: string } } }[] };
}

async function pods(env: E2eEnv): Promise<PodItem[]> {
  const raw = await env.kubectl(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${QUORUM}`, '-o', 'json']);
  return (JSON.parse(raw) as { items: PodItem[] }).items.filter((p) => !p.metadata.deletionTimestamp);
}

const ready = (p: PodItem): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** Watches pods and the leader while a roll runs: the order in which pods came back on `image`, and leader changes. */
class RollTracker {
  readonly order: string[] = [];
  readonly leaders: string[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly env: E2eEnv, private readonly image: string) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          for (const p of await pods(this.env)) {
            if (p.spec.containers[0]?.image === this.image && !this.order.includes(p.metadata.name)) this.order.push(p.metadata.name);
          }
          const leader = (await this.env.pq()).status?.leader;
          if (leader && this.leaders[this.leaders.length - 1] !== leader) this.leaders.push(leader);
        } catch {
          // A failed poll is retried; the API server is not what this measures.
        }
        await sleep(200);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** What a rolling upgrade did. */
export interface RollResult {
  image: string;
  wall_ms: number;
  max_stall_ms: number;
  failed_ops: number;
  lost_writes: number;
  linearizable: boolean;
  /** Pods in the order they came back on the new image. */
  order: string[];
  leader_before: string;
  leader_changes: number;
  /** The original leader was replaced last. */
  leader_last: boolean;
}

async function setImage(env: E2eEnv, image: string): Promise<void> {
  await env.kubectl(['patch', 'paxosquorum', QUORUM, '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { image } })]);
}

/** Waits until every pod runs `image`, is ready, and the quorum has converged. */
async function waitRolled(env: E2eEnv, image: string, size: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ps = await pods(env);
    const onImage = ps.filter((p) => p.spec.containers[0]?.image === image && ready(p)).length;
    if (onImage === size && (await env.notConverged(size)) === undefined) return;
    if (Date.now() > deadline) throw new Error(`roll to ${image} not done after ${timeoutMs / 1000} s: ${onImage}/${size} pods on it; ${await env.notConverged(size)}`);
    await sleep(500);
  }
}

/** Sets `spec.image` and measures the roll. */
export async function rollingUpgrade(env: E2eEnv, writer: Writer, image: string): Promise<RollResult> {
  const before = await env.pq();
  const size = before.spec.replicas;
  const leaderBefore = before.status?.leader ?? '';
  const failedBefore = writer.failed;
  const tracker = new RollTracker(env, image);
  tracker.start();
  const t0 = Date.now();
  await setImage(env, image);
  try {
    await waitRolled(env, image, size, 420_000);
  } finally {
    await tracker.stop();
  }
  const t1 = Date.now();
  const lost = await writer.readBack();
  return {
    image,
    wall_ms: t1 - t0,
    max_stall_ms: writer.maxStall(t0, t1),
    failed_ops: writer.failed - failedBefore,
    lost_writes: lost.length,
    linearizable: writer.checkLinearizable().ok,
    order: tracker.order,
    leader_before: leaderBefore,
    leader_changes: Math.max(0, tracker.leaders.length - 1),
    leader_last: tracker.order[tracker.order.length - 1] === leaderBefore,
  };
}

/** What happened with a tag that cannot run. */
export interface BadImageResult {
  bad_image: string;
  /** Pods that got the bad image while it was set (must be 1). */
  pods_on_bad_image: number;
  /** What the operator said it waited for. */
  operator_waits_for: string;
  /** Setting the good image back replaced that pod, and the quorum converged. */
  rolled_back: boolean;
  rollback_ms: number;
  failed_ops: number;
}

/** Sets a tag that cannot be pulled, checks the roll stops after one pod, then sets `good` back. */
export async function badImageAndBack(env: E2eEnv, writer: Writer, good: string, holdMs = 20_000): Promise<BadImageResult> {
  const bad = 'paxosquorum/node:0.0.0-does-not-exist';
  const size = (await env.pq()).spec.replicas;
  const failedBefore = writer.failed;
  await setImage(env, bad);
  // Until one pod is on the bad image, then hold: the roll must not go further.
  const deadline = Date.now() + 120_000;
  while ((await pods(env)).filter((p) => p.spec.containers[0]?.image === bad).length === 0) {
    if (Date.now() > deadline) throw new Error(`no pod got ${bad} within 120 s`);
    await sleep(500);
  }
  let most = 0;
  const holdUntil = Date.now() + holdMs;
  while (Date.now() < holdUntil) {
    most = Math.max(most, (await pods(env)).filter((p) => p.spec.containers[0]?.image === bad).length);
    await sleep(500);
  }
  const pq = await env.pq();
  const waitsFor = pq.status?.conditions?.find((c) => c.type === 'Progressing')?.message ?? '';
  const t0 = Date.now();
  await setImage(env, good);
  await waitRolled(env, good, size, 300_000);
  return {
    bad_image: bad,
    pods_on_bad_image: most,
    operator_waits_for: waitsFor,
    rolled_back: true,
    rollback_ms: Date.now() - t0,
    failed_ops: writer.failed - failedBefore,
  };
}
