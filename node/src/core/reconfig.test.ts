import { MiniCluster } from '../../../test/core/mini-cluster.js';
import type { Config } from './types.js';

const O: Config = { epoch: 1, members: [0, 1, 2] };
const joint = (members: number[], prior: number[], epoch = 2): Config => ({ epoch, members, prior });

describe('online reconfiguration', () => {
  test('3 -> 5 in the design order keeps serving and ends on the new configuration', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 11);
    const L = c.waitLeader();
    c.put('before', '1');
    const N = joint([0, 1, 2, 3, 4], [0, 1, 2]);
    // 1. one new server first, caught up as a learner of a leader that does not list it.
    c.add(3, N, true);
    c.tick(20);
    expect(c.node(3).kv.get('before')).toBe('1');
    expect(c.node(3).replica.status().caughtUp).toBe(true);
    // 2. original followers, in ordinal order.
    for (const id of [0, 1, 2].filter((i) => i !== L.id)) {
      expect(c.node(id).replica.convert(N)).toEqual({ ok: true });
      c.tick(5);
      c.put(`after-${id}`, 'v');
    }
    // 3. the leader's turn: transfer, then convert.
    expect(L.replica.transferLeadership(3)).toEqual({ ok: true });
    c.tick(5);
    const newLeader = c.waitLeader();
    expect(newLeader.id).toBe(3);
    expect(L.replica.convert(N)).toEqual({ ok: true });
    c.tick(5);
    // 4. remaining new servers.
    c.add(4, N, true);
    c.tick(20);
    // 5. finalize.
    expect(c.waitLeader().replica.finalize()).toEqual({ ok: true });
    c.tick(5);
    c.put('done', 'yes');
    c.tick(5);
    for (const n of c.nodes.values()) {
      expect(n.replica.status().config).toEqual({ epoch: 2, members: [0, 1, 2, 3, 4] });
      expect(n.replica.status().fenceEpoch).toBe(2);
      expect(n.kv.get('done')).toBe('yes');
    }
    c.assertAgreement();
  });

  test('5 -> 3 with the leader among the removed: transfer, convert survivors, finalize, then stop', () => {
    const c = MiniCluster.bootstrap([0, 1, 2, 3, 4], 3);
    let L = c.waitLeader();
    if (L.id < 3) {
      L.replica.transferLeadership(4);
      c.tick(5);
      L = c.waitLeader();
    }
    expect(L.id).toBeGreaterThanOrEqual(3);
    const N = joint([0, 1, 2], [0, 1, 2, 3, 4]);
    L.replica.transferLeadership(0);
    c.tick(5);
    expect(c.waitLeader().id).toBe(0);
    for (const id of [1, 2, 0]) {
      expect(c.node(id).replica.convert(N)).toEqual({ ok: true });
      c.tick(15);
      c.put(`k${id}`, 'v');
    }
    expect(c.waitLeader(500, [0, 1, 2]).replica.finalize()).toEqual({ ok: true });
    c.tick(5);
    for (const id of [0, 1, 2]) expect(c.node(id).replica.status().config).toEqual({ epoch: 2, members: [0, 1, 2] });
    // The removed servers learned the finalize entry too and will not campaign.
    for (const id of [3, 4]) expect(c.node(id).replica.status().config).toEqual({ epoch: 2, members: [0, 1, 2] });
    c.down.add(3);
    c.down.add(4);
    c.put('after-shrink', 'ok');
    c.assertAgreement();
  });

  test('a removed member whose old disk comes back is fenced and never leads again', () => {
    const c = MiniCluster.bootstrap([0, 1, 2, 3, 4], 9);
    const L = c.waitLeader();
    if (L.id >= 3) { L.replica.transferLeadership(0); c.tick(5); }
    // Node 4 is cut off before the shrink and never hears of it.
    c.down.add(4);
    const N = joint([0, 1, 2], [0, 1, 2, 3, 4]);
    const leader = c.waitLeader();
    for (const id of [0, 1, 2].filter((i) => i !== leader.id)) { c.node(id).replica.convert(N); c.tick(15); }
    leader.replica.transferLeadership([0, 1, 2].find((i) => i !== leader.id) as number);
    c.tick(5);
    leader.replica.convert(N);
    c.tick(15);
    c.waitLeader(500, [0, 1, 2]).replica.finalize();
    c.tick(10);
    c.down.add(3);
    // Node 4 returns with its stale configuration {epoch 1, 0..4} and campaigns.
    c.down.delete(4);
    c.partition([4], [3]);
    c.tick(100);
    expect(c.node(4).replica.status().role).not.toBe('leader');
    const survivors = c.waitLeader(500, [0, 1, 2]);
    expect([0, 1, 2]).toContain(survivors.id);
    c.put('still', 'fine');
    c.assertAgreement();
  });

  test('convert rejects a stale or malformed configuration', () => {
    const c = MiniCluster.bootstrap([0, 1, 2]);
    const n = c.node(0).replica;
    expect(n.convert({ epoch: 1, members: [0, 1] }).ok).toBe(false);
    expect(n.convert({ epoch: 2, members: [] }).ok).toBe(false);
    expect(n.convert({ epoch: 2, members: [0, 0] }).ok).toBe(false);
    expect(n.convert(O)).toEqual({ ok: true });
  });
});
