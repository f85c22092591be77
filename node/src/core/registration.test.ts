/**
 * A new server started on an empty disk by the operator votes for nobody until registered
 * (HardState.unregistered, AdminService.Register): it learns, but no quorum can count it.
 */
import { MiniCluster } from '../../../test/core/mini-cluster.js';
import type { Config } from './types.js';

const joint: Config = { epoch: 2, members: [0, 1, 2], prior: [0] };

/**
 * 1 -> 3: node 0 leads alone; new servers 1 and 2 start unregistered and catch up; then 0
 * converts to the joint configuration and, a leader that converts, gives up its role.
 */
function expandFromOne(): MiniCluster {
  const c = MiniCluster.bootstrap([0]);
  c.put('before', '1');
  c.add(1, joint, true, true);
  c.add(2, joint, true, true);
  c.tick(30);
  expect(c.node(0).replica.convert(joint).ok).toBe(true);
  return c;
}

describe('registration of new servers', () => {
  test('unregistered new servers learn but do not vote: no joint quorum forms without them', () => {
    const c = expandFromOne();
    for (const id of [1, 2]) {
      expect(c.node(id).replica.status().unregistered).toBe(true);
      expect(c.node(id).disk.hard.unregistered).toBe(true);
      expect(c.node(id).kv.get('before')).toBe('1'); // caught up by pulling
    }
    // Electing under {0, 1, 2} with prior {0} needs a promise from 1 or 2: none comes.
    c.tick(300);
    expect(c.leader()).toBeUndefined();
    for (const id of [1, 2]) expect(c.node(id).replica.status().role).toBe('follower'); // never campaigns
    c.assertAgreement();
  });

  test('registering one new server lets the joint quorum work, and the flag leaves its disk', () => {
    const c = expandFromOne();
    expect(c.node(1).replica.register().ok).toBe(true);
    c.tick(1);
    expect(c.node(1).replica.status().unregistered).toBe(false);
    expect(c.node(1).disk.hard.unregistered).toBeUndefined();
    expect(c.waitLeader().id).toBe(0);
    c.put('k', 'v');
    c.tick(20);
    expect(c.node(1).kv.get('k')).toBe('v');
    expect(c.node(2).kv.get('k')).toBe('v'); // 2 still learns
    expect(c.node(2).replica.status().unregistered).toBe(true);
    // Both the registration and the flag survive a restart.
    c.node(1).restart();
    c.node(2).restart();
    expect(c.node(1).replica.status().unregistered).toBe(false);
    expect(c.node(2).replica.status().unregistered).toBe(true);
    expect(c.node(2).replica.register().ok).toBe(true);
    expect(c.node(2).replica.register().ok).toBe(true); // idempotent
    c.tick(5);
    c.put('k2', 'v2');
    c.assertAgreement();
  });
});
