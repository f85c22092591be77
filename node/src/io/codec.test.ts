import type { Entry, Message } from '../core/types.js';
import { decodeMessage, encodeMessage, type WireMessage } from './codec.js';
import { loadProtos } from './proto.js';

const ballot = { round: 7, node: 2 };
const entries: Entry[] = [
  { slot: 1, ballot, command: { kind: 'noop' } },
  { slot: 2, ballot, command: { kind: 'kv', client: 'c1', seq: 9, op: { type: 'put', key: 'k', value: '' } } },
  { slot: 3, ballot, command: { kind: 'kv', client: 'c1', seq: 10, op: { type: 'delete', key: 'k' } } },
  { slot: 4, ballot, command: { kind: 'kv', client: 'c2', seq: 1, op: { type: 'cas', key: 'k', expected: null, value: 'v' } } },
  { slot: 5, ballot, command: { kind: 'kv', client: 'c2', seq: 2, op: { type: 'cas', key: 'k', expected: '', value: 'w' } } },
  { slot: 6, ballot, command: { kind: 'kv', client: 'c2', seq: 3, op: { type: 'get', key: 'k' } } },
  { slot: 7, ballot, command: { kind: 'kv', client: 'c2', seq: 4, op: { type: 'range', prefix: 'p/', limit: 10 } } },
  { slot: 8, ballot, command: { kind: 'finalize', config: { epoch: 3, members: [0, 1, 2, 3, 4] } } },
];
const base = { from: 1, to: 2, epoch: 3 };
const zero = { round: 0, node: -1 };

/** One of every variant, with optional fields both set and unset where they exist. */
const messages: Message[] = [
  { ...base, type: 'prevote', round: 4, commit: 10 },
  { ...base, type: 'prevoteReply', round: 4, granted: true },
  { ...base, type: 'prepare', ballot, fromSlot: 11 },
  { ...base, type: 'promise', ballot, ok: true, promised: zero, accepted: entries, commit: 3, snapshotIndex: 0 },
  { ...base, type: 'promise', ballot, ok: false, promised: { round: 9, node: 0 }, accepted: [], commit: 0, snapshotIndex: 5 },
  { ...base, type: 'accept', ballot, entries, commit: 2 },
  { ...base, type: 'accepted', ballot, ok: true, promised: ballot, fromSlot: 1, toSlot: 8, commit: 2 },
  { ...base, type: 'heartbeat', ballot, commit: 8, readId: 42 },
  { ...base, type: 'heartbeatReply', ballot, ok: true, promised: ballot, readId: 42, commit: 8 },
  { ...base, type: 'catchupRequest', fromSlot: 100 },
  { ...base, type: 'catchupReply', entries, commit: 8, leaderHint: 0 },
  { ...base, type: 'catchupReply', entries: [], commit: 8 },
  { ...base, type: 'timeoutNow' },
  { ...base, type: 'fenced', fenceEpoch: 4, config: { epoch: 4, members: [0, 1, 2], prior: [0, 1, 2, 3, 4] } },
];

describe('codec', () => {
  const method = loadProtos().peer.Stream as unknown as {
    requestSerialize: (v: unknown) => Buffer;
    requestDeserialize: (b: Buffer) => { items: { message: WireMessage }[] };
  };
  const viaWire = (m: Message, data?: string): Message => {
    const bytes = method.requestSerialize({ items: [{ message: encodeMessage(m) }] });
    const decoded = method.requestDeserialize(bytes).items[0]?.message as WireMessage;
    return decodeMessage(decoded, data);
  };

  it.each(messages.map((m) => [m.type, m] as const))('round-trips %s through protobuf', (_type, message) => {
    expect(viaWire(message)).toEqual(message);
  });

  it('carries catch-up snapshot metadata and takes the data from the chunks', () => {
    const m: Message = {
      ...base,
      type: 'catchupReply',
      entries: [],
      commit: 50,
      snapshot: { index: 50, config: { epoch: 2, members: [0, 1, 2] }, data: '{"x":1}' },
    };
    expect(viaWire(m, '{"x":1}')).toEqual(m);
    expect(() => viaWire(m)).toThrow('without its data');
  });
});
