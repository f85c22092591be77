import { MiniCluster } from '../../../test/core/mini-cluster.js';

describe('Replica', () => {
  test('elects one leader and commits a put on every node', () => {
    const c = MiniCluster.bootstrap([0, 1, 2]);
    const leader = c.waitLeader();
    const slot = c.put('a', '1');
    c.tick(5);
    for (const n of c.nodes.values()) {
      expect(n.kv.get('a')).toBe('1');
      expect(n.replica.status().commit).toBeGreaterThanOrEqual(slot);
    }
    expect([...c.nodes.values()].filter((n) => n.replica.status().role === 'leader')).toEqual([leader]);
    c.assertAgreement();
  });

  test('a single-node quorum commits on its own', () => {
    const c = MiniCluster.bootstrap([0]);
    c.put('k', 'v');
    expect(c.node(0).kv.get('k')).toBe('v');
  });

  test('fails over when the leader dies and keeps chosen values', () => {
    const c = MiniCluster.bootstrap([0, 1, 2, 3, 4], 7);
    const first = c.waitLeader();
    c.put('x', '1');
    c.down.add(first.id);
    const second = c.waitLeader(500, [...c.nodes.keys()].filter((id) => id !== first.id));
    expect(second.id).not.toBe(first.id);
    c.put('y', '2');
    expect(second.kv.get('x')).toBe('1');
    c.down.delete(first.id);
    c.tick(30);
    expect(first.kv.get('y')).toBe('2');
    c.assertAgreement();
  });

  test('read index serves a read after a quorum round', () => {
    const c = MiniCluster.bootstrap([0, 1, 2]);
    const l = c.waitLeader();
    c.put('r', 'v');
    expect(l.replica.read(42).ok).toBe(true);
    c.deliverAll();
    expect(l.readsDone).toContain(42);
  });

  test('a partitioned leader cannot confirm reads and steps down', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 3);
    const l = c.waitLeader();
    c.put('a', '1');
    const others = [...c.nodes.keys()].filter((id) => id !== l.id);
    c.partition([l.id], others);
    expect(l.replica.read(7).ok).toBe(true);
    c.tick(40);
    expect(l.readsDone).not.toContain(7);
    expect(l.readsDropped).toContain(7);
    expect(l.replica.status().role).not.toBe('leader');
  });

  test('leadership transfer hands over to the named node', () => {
    const c = MiniCluster.bootstrap([0, 1, 2]);
    const l = c.waitLeader();
    c.put('a', '1');
    const target = (l.id + 1) % 3;
    expect(l.replica.transferLeadership(target)).toEqual({ ok: true });
    c.tick(3);
    expect(c.leader()?.id).toBe(target);
  });

  test('a lagging node catches up from the log, and through a snapshot after compaction', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 5);
    const l = c.waitLeader();
    const lagger = [...c.nodes.keys()].find((id) => id !== l.id) as number;
    c.down.add(lagger);
    for (let i = 0; i < 20; i++) c.put(`k${i}`, `${i}`);
    c.down.delete(lagger);
    c.tick(20);
    expect(c.node(lagger).kv.get('k19')).toBe('19');
    c.down.add(lagger);
    for (let i = 20; i < 40; i++) c.put(`k${i}`, `${i}`);
    for (const n of c.nodes.values()) if (n.id !== lagger) n.compact();
    c.down.delete(lagger);
    c.tick(20);
    expect(c.node(lagger).kv.get('k39')).toBe('39');
    expect(c.node(lagger).replica.status().snapshotIndex).toBeGreaterThan(0);
    c.assertAgreement();
  });
});
