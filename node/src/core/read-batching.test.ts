/**
 * Linearizable reads are confirmed by heartbeat rounds. One round is in flight at a time: reads
 * that arrive while it is share the next one, sent once it is confirmed. (Before, every drain
 * with a new read sent a round of its own: about three peer messages per read at 64 clients.)
 */
import { MiniCluster } from '../../../test/core/mini-cluster.js';
import type { Message } from './types.js';

type Heartbeat = Extract<Message, { type: 'heartbeat' }>;

describe('read rounds', () => {
  test('reads that arrive while a round is unconfirmed share the next round', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 3);
    const leader = c.waitLeader();
    c.put('k', 'v');
    c.tick(3);
    const held: Heartbeat[] = [];
    c.intercept = (m: Message): Message | undefined => {
      if (m.type === 'heartbeat' && m.from === leader.id) {
        held.push(m);
        return undefined;
      }
      return m;
    };
    const deliver = (ms: Heartbeat[]): void => {
      for (const m of ms) c.node(m.to).replica.step(m);
      c.deliverAll();
    };

    expect(leader.replica.read(1).ok).toBe(true);
    c.deliverAll();
    expect(held).toHaveLength(2);
    expect(leader.replica.read(2).ok).toBe(true);
    expect(leader.replica.read(3).ok).toBe(true);
    c.deliverAll();
    expect(held).toHaveLength(2); // no second round while the first is unconfirmed
    expect(leader.readsDone).toEqual([]);

    const first = held.splice(0);
    deliver(first);
    expect(leader.readsDone).toEqual([1]);
    expect(held).toHaveLength(2); // the next round, for reads 2 and 3 together
    expect(held.every((m) => m.readId > (first[0] as Heartbeat).readId)).toBe(true);

    deliver(held.splice(0));
    expect(leader.readsDone).toEqual([1, 2, 3]);
    expect(held).toHaveLength(0);
  });

  test('a lost round does not stall later reads: the periodic heartbeat carries the newest round', () => {
    const c = MiniCluster.bootstrap([0, 1, 2], 3);
    const leader = c.waitLeader();
    c.tick(3);
    let drop = true;
    c.intercept = (m: Message): Message | undefined => (drop && m.type === 'heartbeat' && m.from === leader.id ? undefined : m);
    expect(leader.replica.read(1).ok).toBe(true);
    c.deliverAll();
    expect(leader.replica.read(2).ok).toBe(true);
    c.deliverAll();
    drop = false;
    c.tick(10);
    expect(leader.readsDone).toEqual([1, 2]);
  });
});
