/**
 * The operator's pure parts, without a cluster: the work queue's guarantees, condition
 * transition times, the status patch, the roll order, leader detection, the pod contract with
 * the node, and flag parsing.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { mergeConditions } from '../../operator/src/controller/conditions.js';
import type { NodeView } from '../../operator/src/controller/observe.js';
import { findLeader } from '../../operator/src/controller/observe.js';
import { PassTimeoutError, QueueStoppedError, URGENT_BURST, WorkQueue } from '../../operator/src/controller/queue.js';
import { NotLeaderError, PassAbortedError, PassScopes } from '../../operator/src/controller/pass-scope.js';
import type { NodeAdmin } from '../../operator/src/controller/node-admin.js';
import { KubeRest, type RequestOptions } from '../../operator/src/k8s/rest.js';
import { MemoryEventRecorder } from '../../operator/src/k8s/events.js';
import { nodeContainer, podDisruptionBudget, statefulSet } from '../../operator/src/controller/resources.js';
import { nextRollStep } from '../../operator/src/controller/roll.js';
import { statusPatch } from '../../operator/src/controller/status.js';
import { parseSpec, type PaxosQuorum } from '../../operator/src/k8s/paxosquorum.js';
import { ConfigError, parseConfig } from '../../operator/src/main.js';
import { quiet as quietLog, sleep } from './harness.js';
import { REPO_ROOT } from '../k8s/cluster/tools.js';

describe('WorkQueue', () => {
  it('de-duplicates, never runs one key twice at once, and re-runs a key added while it was running', async () => {
    const running = new Set<string>();
    const runs: string[] = [];
    let overlap = false;
    const queue = new WorkQueue(async (key) => {
      if (running.has(key)) overlap = true;
      running.add(key);
      runs.push(key);
      await sleep(30);
      running.delete(key);
      return {};
    }, () => undefined, { concurrency: 4 });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.start();
    await sleep(5);
    queue.add('a'); // while a runs: one more run afterwards
    queue.add('a');
    await sleep(150);
    expect(overlap).toBe(false);
    expect(runs.filter((key) => key === 'a')).toHaveLength(2);
    expect(runs.filter((key) => key === 'b')).toHaveLength(1);
    await queue.stop();
  });

  it('retries a failing key with exponential backoff and forgets failures after a success', async () => {
    const times: number[] = [];
    const attempts: number[] = [];
    const queue = new WorkQueue(async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error('boom');
      return {};
    }, (_key, _error, attempt) => attempts.push(attempt), { backoffBaseMs: 20, backoffMaxMs: 1_000 });
    expect([1, 2, 3, 10].map((attempt) => queue.backoffMs(attempt))).toEqual([20, 40, 80, 1_000]);
    queue.start();
    queue.add('k');
    await sleep(400);
    expect(attempts).toEqual([1, 2, 3]);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    expect(gaps[1] as number).toBeGreaterThanOrEqual(35);
    expect(gaps[2] as number).toBeGreaterThanOrEqual(75);
    await queue.stop();
  });

  it('requeues after the delay a pass asks for, and stop() waits for the pass in flight', async () => {
    let runs = 0;
    const queue = new WorkQueue(async () => {
      runs += 1;
      await sleep(20);
      return { requeueAfterMs: 30 };
    }, () => undefined);
    queue.start();
    queue.add('k');
    await sleep(130);
    expect(runs).toBeGreaterThanOrEqual(2);
    await queue.stop();
    const after = runs;
    await sleep(100);
    expect(runs).toBe(after);
  });
});

describe('WorkQueue pass deadline', () => {
  it('aborts a pass that outlives its deadline, frees its key at once and retries it, while other keys keep flowing', async () => {
    const signals: AbortSignal[] = [];
    const done: string[] = [];
    const errors: unknown[] = [];
    let stuckRuns = 0;
    const queue = new WorkQueue(async (key, signal) => {
      if (key === 'stuck') {
        stuckRuns += 1;
        signals.push(signal);
        // A call that ignores its signal: the queue must free the key anyway.
        await new Promise<void>(() => undefined);
      }
      done.push(key);
      return {};
    }, (_key, error) => errors.push(error), { concurrency: 1, passTimeoutMs: 100, backoffBaseMs: 10, backoffMaxMs: 10 });
    queue.start();
    queue.add('stuck');
    queue.add('other');
    await sleep(60);
    // One worker, held by the stuck pass: nothing else ran yet.
    expect(done).toEqual([]);
    expect(queue.activeKeys).toEqual(['stuck']);
    await sleep(120);
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[0]?.reason).toBeInstanceOf(PassTimeoutError);
    expect(errors[0]).toBeInstanceOf(PassTimeoutError);
    expect(done).toContain('other');
    await sleep(150);
    expect(stuckRuns).toBeGreaterThanOrEqual(2); // retried with backoff
    await queue.stop();
  });

  it('stop() aborts the passes in flight and resolves without waiting for handlers that ignore the signal', async () => {
    let signal: AbortSignal | undefined;
    const queue = new WorkQueue(async (_key, s) => {
      signal = s;
      await new Promise<void>(() => undefined);
      return {};
    }, () => undefined, { passTimeoutMs: 60_000 });
    queue.start();
    queue.add('k');
    await sleep(20);
    const started = Date.now();
    await queue.stop();
    expect(Date.now() - started).toBeLessThan(100);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(QueueStoppedError);
    expect(queue.activeKeys).toEqual([]);
  });

  it('refuses a zero worker count or deadline', () => {
    expect(() => new WorkQueue(async () => ({}), () => undefined, { concurrency: 0 })).toThrow(RangeError);
    expect(() => new WorkQueue(async () => ({}), () => undefined, { passTimeoutMs: 0 })).toThrow(RangeError);
  });
});

describe('WorkQueue lanes', () => {
  it('takes an urgent key on the reserved worker while every worker is busy, and before waiting polls', async () => {
    const order: string[] = [];
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const queue = new WorkQueue(async (key) => {
      order.push(key);
      if (key.startsWith('busy')) await gate;
      return {};
    }, () => undefined, { concurrency: 2 });
    queue.start();
    queue.add('busy1');
    queue.add('busy2');
    queue.add('poll1');
    queue.add('poll2');
    await sleep(10);
    expect(order).toEqual(['busy1', 'busy2']);
    queue.add('change', true);
    await sleep(10);
    // The reserved worker ran it at once, ahead of the polls that waited before it.
    expect(order).toEqual(['busy1', 'busy2', 'change']);
    release();
    await sleep(20);
    expect(order.slice(3).sort()).toEqual(['poll1', 'poll2']);
    await queue.stop();
  });

  it('moves a waiting key to the urgent lane, and starves no key: one poll after every burst of urgent keys', async () => {
    const order: string[] = [];
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const queue = new WorkQueue(async (key) => {
      order.push(key);
      if (key === 'busy' || key === 'hold') await gate;
      return {};
    }, () => undefined, { concurrency: 1 });
    queue.start();
    queue.add('busy');
    await sleep(5);
    // Hold the reserved worker too, so the lanes are seen in order.
    queue.add('hold', true);
    queue.add('p1');
    queue.add('p2');
    queue.add('p2', true); // moved to the urgent lane
    const urgentKeys = Array.from({ length: 3 * URGENT_BURST }, (_, i) => `u${i}`);
    for (const key of urgentKeys) queue.add(key, true);
    await sleep(5);
    release();
    await sleep(30);
    expect(order.slice(0, 2)).toEqual(['busy', 'hold']);
    const after = order.slice(2);
    expect(after[0]).toBe('p2');
    // p1 waited behind urgent keys, but only one burst of them on the shared worker (the
    // reserved worker drains urgent keys meanwhile): not behind all of them.
    expect(after.indexOf('p1')).toBeGreaterThan(0);
    expect(after.indexOf('p1')).toBeLessThanOrEqual(2 * URGENT_BURST);
    expect([...after].sort()).toEqual(['p1', 'p2', ...urgentKeys].sort());
    await queue.stop();
  });
});

describe('PassScopes', () => {
  /** A client that never sends anything: records what reaches it, with the signal it carries. */
  class NullRest extends KubeRest {
    readonly sent: { what: string; signal?: AbortSignal }[] = [];
    override request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
      this.sent.push({ what: `${method} ${path}`, signal: options.signal });
      return Promise.resolve({} as T);
    }
  }
  const setup = (leading: { value: boolean }) => {
    const rest = new NullRest({ server: new URL('https://127.0.0.1:1') });
    const adminCalls: string[] = [];
    const admin: NodeAdmin = {
      status: async () => { adminCalls.push('status'); return {} as never; },
      convert: async () => { adminCalls.push('convert'); },
      transferLeadership: async () => { adminCalls.push('transfer'); },
      finalize: async () => { adminCalls.push('finalize'); },
      register: async () => { adminCalls.push('register'); },
      close: () => undefined,
    };
    const events = new MemoryEventRecorder();
    const scopes = new PassScopes(() => leading.value);
    const bound = scopes.bind({ clients: { rest }, admin, events });
    return { rest, adminCalls, events, scopes, bound };
  };
  const quorum = { metadata: { name: 'q', namespace: 'n' } } as PaxosQuorum;

  it('gives every request of a pass its signal, and refuses writes, node changes and Events after the signal fires', async () => {
    const { rest, adminCalls, events, scopes, bound } = setup({ value: true });
    const controller = new AbortController();
    await scopes.run(controller.signal, async () => {
      await bound.clients.rest.get('/api/v1/pods');
      await bound.clients.rest.mergePatch('/api/v1/namespaces/n/configmaps/c', {});
      await bound.admin.convert('a:1', { epoch: 2, members: [0] }, 1000);
      await bound.events.record(quorum, 'Normal', 'R', 'A', 'note');
      controller.abort(new Error('deadline'));
      await expect(bound.clients.rest.get('/api/v1/pods')).rejects.toMatchObject({ reason: 'Aborted' });
      await expect(bound.clients.rest.mergePatch('/api/v1/namespaces/n/configmaps/c', {})).rejects.toThrow();
      await expect(bound.admin.status('a:1', 1000)).rejects.toBeInstanceOf(PassAbortedError);
      await expect(bound.admin.convert('a:1', { epoch: 2, members: [0] }, 1000)).rejects.toBeInstanceOf(PassAbortedError);
      await bound.events.record(quorum, 'Normal', 'R', 'A', 'late');
    });
    expect(rest.sent.map((s) => s.what)).toEqual(['GET /api/v1/pods', 'PATCH /api/v1/namespaces/n/configmaps/c']);
    expect(rest.sent.every((s) => s.signal !== undefined)).toBe(true);
    expect(adminCalls).toEqual(['convert']);
    expect(events.events.map((e) => e.note)).toEqual(['note']);
  });

  it('refuses writes and node changes once leadership is lost, but still reads', async () => {
    const leading = { value: true };
    const { rest, adminCalls, scopes, bound } = setup(leading);
    await scopes.run(new AbortController().signal, async () => {
      leading.value = false;
      await bound.clients.rest.get('/api/v1/pods');
      await bound.admin.status('a:1', 1000);
      await expect(bound.clients.rest.create('/api/v1/namespaces/n/configmaps', {})).rejects.toBeInstanceOf(NotLeaderError);
      for (const call of [
        () => bound.admin.convert('a:1', { epoch: 2, members: [0] }, 1000), () => bound.admin.finalize('a:1', 1000),
        () => bound.admin.transferLeadership('a:1', 1, 1000), () => bound.admin.register('a:1', 1000),
      ]) await expect(call()).rejects.toBeInstanceOf(NotLeaderError);
    });
    expect(rest.sent.map((s) => s.what)).toEqual(['GET /api/v1/pods']);
    expect(adminCalls).toEqual(['status']);
  });

  it('keeps concurrent passes apart: each request carries its own pass\'s signal', async () => {
    const { rest, scopes, bound } = setup({ value: true });
    const one = new AbortController();
    const two = new AbortController();
    await Promise.all([
      scopes.run(one.signal, async () => { await sleep(5); await bound.clients.rest.get('/one'); }),
      scopes.run(two.signal, async () => { await bound.clients.rest.get('/two'); }),
    ]);
    one.abort();
    const byPath = new Map(rest.sent.map((s) => [s.what, s.signal]));
    expect(byPath.get('GET /one')?.aborted).toBe(true);
    expect(byPath.get('GET /two')?.aborted).toBe(false);
  });
});

describe('conditions and status', () => {
  const t0 = new Date('2026-01-01T00:00:00.123Z');
  const t1 = new Date('2026-01-01T00:05:00Z');
  it('changes lastTransitionTime only when the status flips, and stamps observedGeneration', () => {
    const first = mergeConditions(undefined, [{ type: 'Available', status: 'False', reason: 'PodsNotReady', message: 'a' }], 1, t0);
    expect(first[0]).toMatchObject({ lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 1 });
    const same = mergeConditions(first, [{ type: 'Available', status: 'False', reason: 'NoLeader', message: 'b' }], 2, t1);
    expect(same[0]).toMatchObject({ lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 2, reason: 'NoLeader' });
    const flipped = mergeConditions(same, [{ type: 'Available', status: 'True', reason: 'QuorumAvailable', message: 'c' }], 2, t1);
    expect(flipped[0]?.lastTransitionTime).toBe('2026-01-01T00:05:00Z');
  });

  it('patches only the fields that changed, deleting with null', () => {
    expect(statusPatch({ phase: 'Pending', replicas: 3, operation: null }, { phase: 'Pending', replicas: 3, operation: null })).toEqual({});
    expect(statusPatch({ phase: 'Pending', leader: 'x-0' }, { phase: 'Available' })).toEqual({ phase: 'Available', leader: null });
  });
});

function view(ordinal: number, role: 'leader' | 'follower', options: { leader?: number; revision?: string; ready?: boolean; commit?: number } = {}): NodeView {
  const pod: V1Pod = { metadata: { name: `q-${ordinal}`, labels: { 'controller-revision-hash': options.revision ?? 'new' } } };
  return {
    ordinal, pod, podReady: options.ready ?? true, terminating: false, address: `q-${ordinal}`,
    status: {
      id: ordinal, role, leader: options.leader, config: { epoch: 1, members: [0, 1, 2] }, fenceEpoch: 1,
      commit: options.commit ?? 10, applied: 10, caughtUp: true, lag: [], transferring: false, ready: true,
    },
  };
}

describe('roll order and leader detection', () => {
  it('rolls followers in ordinal order, then hands leadership over, then replaces the old leader', () => {
    const views = [view(0, 'follower', { revision: 'old' }), view(1, 'leader', { revision: 'old' }), view(2, 'follower', { revision: 'old' })];
    expect(nextRollStep(views, 1, 'new')).toEqual({ kind: 'DeletePod', ordinal: 0 });
    const leaderLeft = [view(0, 'follower', { commit: 9 }), view(1, 'leader', { revision: 'old' }), view(2, 'follower', { commit: 10 })];
    expect(nextRollStep(leaderLeft, 1, 'new')).toEqual({ kind: 'TransferLeadership', from: 1, to: 2 });
    const handedOver = [view(0, 'follower'), view(1, 'follower', { revision: 'old' }), view(2, 'leader')];
    expect(nextRollStep(handedOver, 2, 'new')).toEqual({ kind: 'DeletePod', ordinal: 1 });
    expect(nextRollStep([view(0, 'follower'), view(1, 'leader'), view(2, 'follower')], 1, 'new')).toEqual({ kind: 'None' });
  });

  it('waits while any pod is not ready, and before the StatefulSet controller has seen the template', () => {
    const views = [view(0, 'follower', { revision: 'old' }), view(1, 'leader'), view(2, 'follower', { ready: false })];
    expect(nextRollStep(views, 1, 'new').kind).toBe('WaitRoll');
    expect(nextRollStep(views, 1, undefined).kind).toBe('None');
  });

  it('replaces the one pod that is down on an outdated revision (the way back from a bad image), and only that case', () => {
    // The template was set back to 'new' while pod 0 sits on the bad revision, not ready.
    const back = [view(0, 'follower', { revision: 'bad', ready: false }), view(1, 'leader'), view(2, 'follower')];
    expect(nextRollStep(back, 1, 'new')).toEqual({ kind: 'DeletePod', ordinal: 0 });
    // Still on the bad template: the broken pod is current, so the roll just waits.
    const stuck = [view(0, 'follower', { ready: false }), view(1, 'leader', { revision: 'old' }), view(2, 'follower', { revision: 'old' })];
    expect(nextRollStep(stuck, 1, 'new').kind).toBe('WaitRoll');
    // Two pods down, or no leader: never.
    const two = [view(0, 'follower', { revision: 'bad', ready: false }), view(1, 'leader'), view(2, 'follower', { ready: false })];
    expect(nextRollStep(two, 1, 'new').kind).toBe('WaitRoll');
    expect(nextRollStep(back, undefined, 'new').kind).toBe('WaitRoll');
  });

  it('takes the leader most nodes agree on when two claim it, and none on a tie', () => {
    expect(findLeader([view(0, 'leader', { leader: 0 }), view(1, 'leader', { leader: 1 }), view(2, 'follower', { leader: 1 })])).toBe(1);
    expect(findLeader([view(0, 'leader', { leader: 0 }), view(1, 'leader', { leader: 1 })])).toBeUndefined();
  });
});

describe('the pod contract with the node', () => {
  const quorum: PaxosQuorum = { apiVersion: 'paxos.quorum.dev/v1alpha1', kind: 'PaxosQuorum', metadata: { name: 'q', namespace: 'ns', uid: 'u', generation: 1 }, spec: {} };
  const spec = parseSpec({ replicas: 3, tuning: { electionTimeoutMs: 1500, heartbeatMs: 150, snapshotThresholdEntries: 500 } });

  it('passes identity, data dir, peers, bootstrap and tuning through the environment and flags', () => {
    const container = nodeContainer(quorum, spec, 'img:1');
    expect(container.command).toBeUndefined();
    expect(container.args).toEqual(['--election-timeout-ms=1500', '--heartbeat-ms=150']);
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    expect(env).toMatchObject({
      POD_NAME: { fieldRef: { fieldPath: 'metadata.name' } },
      POD_NAMESPACE: { fieldRef: { fieldPath: 'metadata.namespace' } },
      PAXOS_DATA_DIR: '/var/lib/paxos',
      PAXOS_PEER_TEMPLATE: 'q-{i}.q-peers.ns.svc:7001',
      PAXOS_BOOTSTRAP_CONFIG: { configMapKeyRef: { name: 'q-bootstrap', key: 'config' } },
      PAXOS_JOINING: { configMapKeyRef: { name: 'q-bootstrap', key: 'joining' } },
      PAXOS_ELECTION_TIMEOUT_MS: '1500', PAXOS_HEARTBEAT_MS: '150', PAXOS_SNAPSHOT_THRESHOLD: '500',
      PAXOS_CLIENT_PORT: '7000', PAXOS_PEER_PORT: '7001', PAXOS_METRICS_PORT: '9090',
    });
    expect(container.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 9090 });
    expect(container.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 9090 });
    expect(container.volumeMounts).toEqual([{ name: 'data', mountPath: '/var/lib/paxos' }]);
  });

  it('keeps the selector labels even if the user sets pod labels of the same name', () => {
    const custom = parseSpec({ replicas: 3, pod: { labels: { 'app.kubernetes.io/instance': 'evil', team: 'a' } } });
    const sts = statefulSet(quorum, custom, 'img:1', 3);
    expect(sts.spec?.template.metadata?.labels).toMatchObject({ 'app.kubernetes.io/instance': 'q', team: 'a' });
  });

  it('allows no voluntary disruption during a membership change, a majority otherwise', () => {
    expect(podDisruptionBudget(quorum, 5, false).spec?.minAvailable).toBe(3);
    expect(podDisruptionBudget(quorum, 5, true).spec?.minAvailable).toBe(5);
  });
});

describe('leader election options', () => {
  it('refuses timings that would let two holders overlap', async () => {
    const { LeaderElector, LeaderElectionConfigError } = await import('../../operator/src/k8s/leader-election.js');
    const base = { namespace: 'n', name: 'l', identity: 'a', onStartedLeading: () => undefined, onStoppedLeading: () => undefined };
    const clients = {} as ConstructorParameters<typeof LeaderElector>[0];
    const make = (options: Partial<ConstructorParameters<typeof LeaderElector>[2]>) => () => new LeaderElector(clients, quietLog, { ...base, ...options });
    expect(make({ leaseDurationSeconds: 10, renewDeadlineMs: 10_000 })).toThrow(LeaderElectionConfigError);
    expect(make({ leaseDurationSeconds: 15, renewDeadlineMs: 10_000, renewIntervalMs: 10_000 })).toThrow(/renew interval/);
    expect(make({})).not.toThrow();
  });
});

describe('operator flags', () => {
  it('merges flags over the environment with defaults', () => {
    const config = parseConfig(['--namespace=a', '--leader-elect=false'], { PAXOS_NODE_IMAGE: 'x/node:2', POD_NAMESPACE: 'ops' });
    expect(config).toMatchObject({ namespace: 'a', leaderElect: false, nodeImage: 'x/node:2', leaseNamespace: 'ops', metricsPort: 8080, leaseName: 'paxos-operator' });
    expect(parseConfig([], { POD_NAMESPACE: 'ops' }).nodeImage).toBe('paxosquorum/node:0.1.0');
    expect(parseConfig([], { POD_NAMESPACE: 'ops' })).toMatchObject({ workers: 4, reconcileTimeoutSeconds: 60 });
    expect(parseConfig(['--workers=8'], { POD_NAMESPACE: 'ops', RECONCILE_TIMEOUT_SECONDS: '30' })).toMatchObject({ workers: 8, reconcileTimeoutSeconds: 30 });
  });

  it('explains what is wrong', () => {
    expect(() => parseConfig(['--metrics-port=-1'], { POD_NAMESPACE: 'x' })).toThrow(ConfigError);
    expect(() => parseConfig([], {})).toThrow(/--lease-namespace/);
    expect(() => parseConfig(['--workers=0'], { POD_NAMESPACE: 'x' })).toThrow(/--workers/);
    expect(() => parseConfig(['--reconcile-timeout-seconds=1'], { POD_NAMESPACE: 'x' })).toThrow(/--reconcile-timeout-seconds/);
  });
});

describe('ADR 0004 guard', () => {
  it('loads @kubernetes/client-node\'s runtime only lazily, for kubeconfig credential plugins; type imports elsewhere', async () => {
    const { readdirSync, readFileSync, statSync } = await import('node:fs');
    const { join } = await import('node:path');
    const root = join(REPO_ROOT, 'operator', 'src');
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts')) files.push(path);
      }
    };
    walk(root);
    const offenders = files.filter((file) => /^import (?!type\b)[^;]*from '@kubernetes\/client-node'/m.test(readFileSync(file, 'utf8')));
    expect(offenders).toEqual([]);
    // The one dynamic import: exec and auth-provider kubeconfigs (ADR 0004, amendment 1).
    const dynamic = files.filter((file) => /import\('@kubernetes\/client-node/.test(readFileSync(file, 'utf8')));
    expect(dynamic.map((file) => file.slice(root.length + 1))).toEqual(['k8s/kubeconfig-plugins.ts']);
  });
});
