/**
 * The store's snapshot: byte-identical across replicas and across the two ways of taking it
 * (whole, or in parts that are encoded and written one at a time).
 */
import { KvStore } from './kv.js';
import type { Entry, KvOp } from './types.js';

const awkward = ['plain', 'quote " and \\ backslash', 'new\nline\ttab\u0000nul', 'ünïcödé €', 'emoji 😀 pair', 'lone \ud800 surrogate', '</script>', ''];

function filled(): KvStore {
  const kv = new KvStore({ maxSessions: 4 });
  let slot = 0;
  const apply = (client: string, seq: number, op: KvOp): void => void kv.apply({ slot: ++slot, ballot: { round: 1, node: 0 }, command: { kind: 'kv', client, seq, op } } satisfies Entry);
  awkward.forEach((text, i) => apply(`c${i % 3}`, i + 1, { type: 'put', key: `k/${text}`, value: text.repeat(i + 1) }));
  apply('c0', 100, { type: 'cas', key: 'k/plain', expected: 'nope', value: 'x' });
  apply('c1', 100, { type: 'delete', key: 'k/' });
  kv.apply({ slot: ++slot, ballot: { round: 1, node: 0 }, command: { kind: 'noop' } });
  return kv;
}

/** The serialisation as it was before parts: one JSON.stringify of the whole shape. */
function wholeShape(kv: KvStore): string {
  const internals = kv as unknown as { data: Map<string, string>; sessions: Map<string, { seq: number; result: unknown }> };
  return JSON.stringify({
    v: 1,
    applied: kv.applied,
    data: [...internals.data.entries()],
    sessions: [...internals.sessions.entries()].map(([client, s]) => [client, s.seq, s.result]),
  });
}

describe('KvStore snapshots', () => {
  test('snapshot() is JSON.stringify of the whole state, and restores to the same state', () => {
    const kv = filled();
    expect(kv.snapshot()).toBe(wholeShape(kv));
    expect(KvStore.restore(kv.snapshot()).snapshot()).toBe(kv.snapshot());
  });

  test('parts of any size end between JSON values and concatenate to snapshot()', () => {
    const kv = filled();
    for (const partChars of [1, 7, 64, 1 << 20]) {
      const parts = [...kv.snapshotParts(partChars)];
      expect(parts.join('')).toBe(kv.snapshot());
      if (partChars === 1) expect(parts.length).toBeGreaterThan(10);
      // Each part is whole values: a surrogate pair is never split, so each escapes on its own.
      for (const part of parts) expect(JSON.parse(JSON.stringify(part))).toBe(part);
      expect(parts.map((p) => JSON.stringify(p).slice(1, -1)).join('')).toBe(JSON.stringify(kv.snapshot()).slice(1, -1));
    }
  });

  test('an empty store has one small part', () => {
    expect([...new KvStore().snapshotParts()]).toEqual(['{"v":1,"applied":0,"data":[],"sessions":[]}']);
  });
});
