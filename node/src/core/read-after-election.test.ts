/**
 * A new leader's read index must cover everything chosen before its term. Phase 1 recovers a
 * range of slots and re-proposes each in the new ballot; each is chosen on its own, so the
 * first one chosen says nothing about the later ones. (Found by the simulator: seeds 6654 and
 * 8292 of 10,000 returned a value overwritten before the read began.)
 */
import { MiniCluster } from '../../../test/core/mini-cluster.js';
import type { Message } from './types.js';

describe('read index after an election', () => {
  test('a new leader serves no read until every slot it recovered is chosen again', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 3);
    const old = c.waitLeader();
    const a = [0, 1, 2].find((id) => id !== old.id) as number;
    c.put('k', '0');
    c.tick(5);

    // k=1 and k=2 are chosen; a accepts both but does not hear that they were (the commit
    // index the leader sends it stays where it was).
    const frozen = old.replica.status().commit;
    let stage: 'freeze' | 'hold back' = 'freeze';
    let second = Number.POSITIVE_INFINITY;
    c.intercept = (m: Message): Message | undefined => {
      if (stage === 'freeze') {
        if (m.from === old.id && m.to === a && (m.type === 'accept' || m.type === 'heartbeat')) return { ...m, commit: Math.min(m.commit, frozen) };
        return m;
      }
      // The new leader's re-proposal of the second slot (and what follows) does not get through.
      if (m.type !== 'accept' || m.from !== a) return m;
      const entries = m.entries.filter((e) => e.slot < second);
      return entries.length === 0 ? undefined : { ...m, entries };
    };
    const first = c.put('k', '1');
    second = c.put('k', '2');
    expect(second).toBe(first + 1);
    expect(c.node(a).replica.status().commit).toBe(frozen);
    expect(c.node(a).replica.status().lastSlot).toBeGreaterThanOrEqual(second);

    // Leadership moves to a, whose phase 1 recovers both slots and re-proposes them.
    stage = 'hold back';
    expect(old.replica.transferLeadership(a).ok).toBe(true);
    c.tick(3);
    const leader = c.node(a);
    expect(leader.replica.status().role).toBe('leader');
    expect(leader.replica.status().commit).toBe(first);
    expect(leader.kv.get('k')).toBe('1'); // the state is behind what was chosen...

    expect(leader.replica.read(99).ok).toBe(true);
    c.tick(20);
    expect(leader.readsDone).not.toContain(99); // ...so the read waits

    c.intercept = undefined;
    c.tick(20);
    expect(leader.readsDone).toContain(99);
    expect(leader.kv.get('k')).toBe('2');
    c.assertAgreement();
  });
});
