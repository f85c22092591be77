/**
 * Write stalls of online reconfiguration, counted in ticks: how long no node would take a
 * proposal while the planner's Transfer-mode steps run (docs: online-reconfiguration.md, "The
 * planner's order"; the e2e's stall target is what this is about). Deterministic: the mini
 * cluster delivers every message within the tick that caused it, so any gap longer than a tick
 * or two is waiting on a timer.
 */
import { MiniCluster } from '../../../test/core/mini-cluster.js';
import type { Config, NodeId } from './types.js';

const ELECTION_TIMEOUT_TICKS = 10; // the mini cluster's

/** Ticks the cluster and records the longest run of ticks without a leader that takes proposals. */
class GapMeter {
  longest = 0;
  private current = 0;
  readonly leaders: Array<NodeId | undefined> = [];

  constructor(private readonly c: MiniCluster) {}

  /** A leader that would take a proposal now (not handing over, not behind a finalize barrier). */
  serving(): NodeId | undefined {
    for (const n of this.c.nodes.values()) {
      if (this.c.down.has(n.id)) continue;
      const s = n.replica.status();
      if (s.role === 'leader' && !s.transferring) return n.id;
    }
    return undefined;
  }

  /** Samples now (after an admin call) without ticking. */
  sample(): void {
    const l = this.serving();
    this.leaders.push(l);
    if (l === undefined) this.current++;
    else this.current = 0;
    this.longest = Math.max(this.longest, this.current);
  }

  tick(times = 1): void {
    for (let i = 0; i < times; i++) {
      this.c.tick();
      this.sample();
    }
  }

  /** Ticks until `cond` holds (sampling every tick); fails after `max` ticks. */
  until(what: string, cond: () => boolean, max = 200): void {
    for (let i = 0; i < max; i++) {
      if (cond()) return;
      this.tick();
    }
    throw new Error(`timed out waiting for ${what}`);
  }
}

const joint = (members: number[], prior: number[], epoch = 2): Config => ({ epoch, members, prior });

function leadWith(c: MiniCluster, id: NodeId): void {
  const l = c.waitLeader();
  if (l.id === id) return;
  expect(l.replica.transferLeadership(id)).toEqual({ ok: true });
  c.tick(3);
  expect(c.waitLeader().id).toBe(id);
}

describe('write stalls of the Transfer-mode plans', () => {
  test('3 -> 1: the leader that converts itself leads again at once, without waiting out an election timeout', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const c = MiniCluster.bootstrap([0, 1, 2], seed);
      leadWith(c, 0);
      c.put('before', '1');
      const g = new GapMeter(c);
      // The planner's step 1: convert pod 0 (the leader and only survivor) to {0} prior {0,1,2}.
      expect(c.node(0).replica.convert(joint([0], [0, 1, 2]))).toEqual({ ok: true });
      c.deliverAll();
      g.sample();
      g.until('a leader', () => g.serving() !== undefined, 100);
      // Pre-vote and phase 1 ride on messages, not on timers: no tick should be needed at all.
      expect(g.longest).toBeLessThanOrEqual(1);
      expect(c.leader()?.id).toBe(0);
      // Then finalize through it, and stop the removed pods.
      expect(c.node(0).replica.finalize()).toEqual({ ok: true });
      g.tick(3);
      c.down.add(2);
      c.down.add(1);
      c.put('after', '2');
      g.tick(3 * ELECTION_TIMEOUT_TICKS);
      expect(c.leader()?.id).toBe(0);
      expect(c.node(0).replica.status().config).toEqual({ epoch: 2, members: [0] });
      c.assertAgreement();
    }
  });

  test('a follower grants a pre-vote to the leader it follows, which stepped down; not to anyone else', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 5);
    leadWith(c, 0);
    c.put('k', 'v');
    // Node 1 is a live leader's follower: node 2's pre-vote is refused (leader stickiness), so a
    // follower cannot disrupt the quorum by converting without a live leader in view.
    c.partition([2], [0]);
    c.tick(ELECTION_TIMEOUT_TICKS * 3);
    expect(c.leader()?.id).toBe(0);
    c.heal();
    c.tick(2);
    expect(c.leader()?.id).toBe(0);
    // The leader itself converting: its followers grant at once.
    expect(c.node(0).replica.convert(joint([0, 1, 2], [0, 1, 2]))).toEqual({ ok: true });
    c.deliverAll();
    expect(c.leader()?.id).toBe(0);
  });

  test('a converted follower with a live leader keeps following it (no campaign)', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 6);
    leadWith(c, 0);
    const before = c.node(0).replica.status().ballot;
    expect(c.node(1).replica.convert(joint([0, 1, 2, 3], [0, 1, 2]))).toEqual({ ok: true });
    c.deliverAll();
    c.tick(2);
    expect(c.leader()?.id).toBe(0);
    expect(c.node(0).replica.status().ballot).toEqual(before);
  });

  test('1 -> 3 with transfer: never more than a couple of ticks without a leader that takes proposals', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const c = MiniCluster.bootstrap([0], seed);
      c.waitLeader();
      c.put('before', '1');
      const N = joint([0, 1, 2], [0]);
      const g = new GapMeter(c);
      for (const id of [1, 2]) {
        c.add(id, N, true);
        g.until(`node ${id} caught up`, () => c.node(id).replica.status().caughtUp);
        c.put(`after-${id}`, 'v');
      }
      expect(c.node(0).replica.transferLeadership(1)).toEqual({ ok: true });
      g.sample();
      g.until('node 1 leads', () => g.serving() === 1);
      expect(c.node(0).replica.convert(N)).toEqual({ ok: true });
      g.sample();
      g.tick(5);
      expect(g.serving()).toBe(1);
      expect(c.node(1).replica.finalize()).toEqual({ ok: true });
      g.until('finalized', () => [0, 1, 2].every((id) => c.node(id).replica.status().config.prior === undefined));
      g.tick(3 * ELECTION_TIMEOUT_TICKS);
      expect(g.serving()).toBe(1);
      expect(g.longest).toBeLessThanOrEqual(2);
      c.put('done', 'yes');
      c.assertAgreement();
    }
  });

  test('3 -> 5 in Election mode: the old leader converting last is re-elected at once when no one else campaigns first', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 4);
    leadWith(c, 0);
    const N = joint([0, 1, 2, 3, 4], [0, 1, 2]);
    const g = new GapMeter(c);
    c.add(3, N, true);
    g.until('node 3 caught up', () => c.node(3).replica.status().caughtUp);
    for (const id of [1, 2]) {
      expect(c.node(id).replica.convert(N)).toEqual({ ok: true });
      g.tick(3);
    }
    expect(g.serving()).toBe(0);
    expect(c.node(0).replica.convert(N)).toEqual({ ok: true });
    c.deliverAll();
    g.sample();
    g.until('a leader', () => g.serving() !== undefined);
    expect(g.longest).toBeLessThanOrEqual(1);
    c.add(4, N, true);
    g.until('node 4 caught up', () => c.node(4).replica.status().caughtUp);
    expect(c.waitLeader().replica.finalize()).toEqual({ ok: true });
    g.tick(5);
    c.put('done', 'yes');
    c.assertAgreement();
  });
});
