/**
 * The core keeps a snapshot's index and configuration, never its data: that stays in storage
 * and is asked for (`ReplicaOptions.snapshotData`) only when a peer needs it to catch up.
 */
import { AcceptorLog } from './log.js';
import { Replica, freshState, replicaOptions } from './replica.js';
import type { Message, Snapshot } from './types.js';

const config = { epoch: 1, members: [0, 1, 2] };
const snapshot: Snapshot = { index: 7, config, data: '{"the":"whole state"}' };

describe('snapshot data stays out of the core', () => {
  test('the log keeps index and configuration of a recovered, compacted or installed snapshot', () => {
    const recovered = new AcceptorLog(snapshot, []);
    expect(recovered.snapshot).toEqual({ index: 7, config });
    recovered.compact({ ...snapshot, index: 9 });
    expect(recovered.snapshot).toEqual({ index: 9, config });
    recovered.installSnapshot({ ...snapshot, index: 12 });
    expect(recovered.snapshot).toEqual({ index: 12, config });
    expect(recovered.snapshot).not.toHaveProperty('data');
  });

  test('a catch-up below the snapshot is answered with the data storage holds for its index', () => {
    const asked: number[] = [];
    const replica = new Replica(
      replicaOptions({ id: 0, random: () => 0.5, snapshotData: (index) => (asked.push(index), `data at ${index}`) }),
      { ...freshState(config), snapshot, entries: [] },
    );
    const request: Message = { type: 'catchupRequest', from: 1, to: 0, epoch: 1, fromSlot: 3 };
    replica.step(request);
    const reply = replica.ready().messages.find((m) => m.type === 'catchupReply');
    expect(asked).toEqual([7]);
    expect(reply).toMatchObject({ snapshot: { index: 7, config, data: 'data at 7' } });
  });

  test('no reply when storage does not hold the snapshot; the requester asks again', () => {
    const replica = new Replica(replicaOptions({ id: 0, random: () => 0.5, snapshotData: () => undefined }), { ...freshState(config), snapshot, entries: [] });
    replica.step({ type: 'catchupRequest', from: 1, to: 0, epoch: 1, fromSlot: 3 });
    expect(replica.hasReady() ? replica.ready().messages : []).toEqual([]);
  });

  test('a snapshot installed from a peer is served from memory until its Ready is taken', () => {
    const replica = new Replica(replicaOptions({ id: 1, random: () => 0.5, snapshotData: () => undefined }), freshState(config));
    replica.step({ type: 'catchupReply', from: 0, to: 1, epoch: 1, entries: [], snapshot, commit: 7 });
    replica.step({ type: 'catchupRequest', from: 2, to: 1, epoch: 1, fromSlot: 1 });
    const rd = replica.ready();
    expect(rd.snapshot).toEqual(snapshot);
    expect(rd.messages.find((m) => m.to === 2)).toMatchObject({ type: 'catchupReply', snapshot });
  });
});
