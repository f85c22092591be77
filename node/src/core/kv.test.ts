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

describe('a frozen store (snapshots taken a part at a time)', () => {
  /** A small deterministic generator (tests stay reproducible). */
  const lcg = (seed: number): (() => number) => {
    let x = seed >>> 0;
    return () => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return x / 2 ** 32;
    };
  };
  const randomOps = (random: () => number, n: number): KvOp[] =>
    Array.from({ length: n }, (): KvOp => {
      const key = `k${Math.floor(random() * 40)}`;
      const r = random();
      if (r < 0.5) return { type: 'put', key, value: `v${Math.floor(random() * 1000)}` };
      if (r < 0.75) return { type: 'delete', key };
      return { type: 'cas', key, expected: random() < 0.5 ? null : `v${Math.floor(random() * 1000)}`, value: 'c' };
    });
  const applier = (kv: KvStore): ((op: KvOp) => void) => {
    let slot = kv.applied;
    let seq = 0;
    return (op) => void kv.apply({ slot: ++slot, ballot: { round: 1, node: 0 }, command: { kind: 'kv', client: `c${seq % 5}`, seq: ++seq, op } });
  };

  test.each([1, 2, 3, 4, 5, 6, 7, 8])('seed %i: the parts are the state at the freeze; reads see every change; the merge keeps the order direct writes make', (seed) => {
    const random = lcg(seed);
    const before = randomOps(random, 200);
    const during = randomOps(random, 200);
    const kv = new KvStore();
    const direct = new KvStore();
    const [a, b] = [applier(kv), applier(direct)];
    for (const op of before) {
      a(op);
      b(op);
    }
    const atFreeze = direct.snapshot();
    const parts = kv.freeze(64);
    const taken: string[] = [];
    for (const op of during) {
      const next = parts.next();
      if (!next.done) taken.push(next.value);
      a(op);
      b(op);
      expect(kv.frozen || next.done).toBe(true);
      expect(kv.size).toBe(direct.size);
      const key = 'key' in op ? op.key : '';
      expect(kv.get(key)).toBe(direct.get(key));
    }
    expect(kv.range('k', 1000)).toEqual(direct.range('k', 1000));
    expect(kv.range('k1', 3)).toEqual(direct.range('k1', 3));
    for (let next = parts.next(); !next.done; next = parts.next()) taken.push(next.value);
    expect(taken.join('')).toBe(atFreeze);
    expect(kv.frozen).toBe(false);
    expect(kv.snapshot()).toBe(direct.snapshot());
  });

  test('abandoning the parts merges the overlay too; one freeze at a time; no plain snapshot while frozen', () => {
    const kv = new KvStore();
    const apply = applier(kv);
    apply({ type: 'put', key: 'a', value: '1' });
    const parts = kv.freeze();
    expect(() => kv.freeze()).toThrow(/already frozen/);
    expect(() => kv.snapshot()).toThrow(/frozen/);
    parts.next();
    apply({ type: 'put', key: 'b', value: '2' });
    parts.return(undefined);
    expect(kv.frozen).toBe(false);
    expect(kv.get('b')).toBe('2');
    expect(KvStore.restore(kv.snapshot()).get('b')).toBe('2');
  });
});
