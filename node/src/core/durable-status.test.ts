/**
 * A node reports a configuration only once it is durable. The operator acts on what nodes
 * report: once the survivors of a shrink report the finalized configuration, it deletes the
 * removed members and their volumes. Reported before the write was synced, a crash could take
 * the configuration back, and the survivor would need the deleted members to learn again that
 * the finalize was chosen (a stall found by the simulator, seed 31313 of 20,000).
 */
import { MiniCluster } from '../../../test/core/mini-cluster.js';
import type { Config, Message } from './types.js';

describe('reported configuration', () => {
  test('a conversion is reported once its Ready is advanced, not before', () => {
    const c = MiniCluster.bootstrap([0, 1, 2]);
    c.waitLeader();
    const joint: Config = { epoch: 2, members: [0, 1], prior: [0, 1, 2] };
    const node = c.node(1).replica;
    expect(node.convert(joint).ok).toBe(true);
    expect(node.status().config.epoch).toBe(1);
    c.process();
    expect(node.status().config).toEqual(joint);
  });

  test('the finalized configuration is reported once it is durable, not when the finalize is learned chosen', () => {
    const c = MiniCluster.bootstrap([0, 1], 5);
    c.waitLeader();
    const joint: Config = { epoch: 2, members: [0], prior: [0, 1] };
    for (const id of [0, 1]) expect(c.node(id).replica.convert(joint).ok).toBe(true);
    c.tick(1);
    const leader = c.waitLeader(500, [0]);
    c.tick(5);
    // Hold back node 1's acceptance of the finalize, then hand it to the leader by hand.
    let held: Message | undefined;
    c.intercept = (m) => {
      if (m.type === 'accepted' && m.from === 1 && held === undefined && c.node(0).replica.status().config.prior !== undefined) {
        held = m;
        return undefined;
      }
      return m;
    };
    expect(leader.replica.finalize().ok).toBe(true);
    c.deliverAll();
    c.intercept = undefined;
    expect(held).toBeDefined();
    leader.replica.step(held as Message); // the finalize is chosen: the core knows it now...
    expect(leader.replica.status().config).toEqual(joint); // ...but its new configuration is not on disk yet
    c.process(); // persisted (synced) and advanced
    expect(leader.replica.status().config).toEqual({ epoch: 2, members: [0] });
  });
});
