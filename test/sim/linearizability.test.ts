import { describe, expect, it } from '@jest/globals';
import type { KvCall, KvOutput, Operation } from './history.js';
import { checkLinearizable, stepRegister, type RegisterState } from './linearizability.js';
import { Rng } from './rng.js';

/** A compact history builder: `op(client, call, invoke, ret?, output?)` with explicit event positions. */
function op(id: number, call: KvCall, invoke: number, ret?: number, output?: KvOutput): Operation {
  const o: Operation = { id, client: `c${id}`, call, invoke, invokeTick: invoke };
  if (ret !== undefined) {
    o.ret = ret;
    o.output = output;
    o.returnTick = ret;
  }
  return o;
}
const put = (value: string, key = 'k'): KvCall => ({ type: 'put', key, value });
const get = (key = 'k'): KvCall => ({ type: 'get', key });
const del = (key = 'k'): KvCall => ({ type: 'delete', key });
const cas = (expected: string | null, value: string, key = 'k'): KvCall => ({ type: 'cas', key, expected, value });
const ok = (value: string | null = null): KvOutput => ({ ok: true, value });
const mismatch = (current: string | null): KvOutput => ({ ok: false, code: 'casMismatch', current });

describe('linearizability checker', () => {
  it('accepts a sequential history', () => {
    const h = [op(0, put('a'), 0, 1, ok(null)), op(1, get(), 2, 3, ok('a')), op(2, del(), 4, 5, ok('a')), op(3, get(), 6, 7, ok(null))];
    expect(checkLinearizable(h).ok).toBe(true);
  });

  it('rejects a stale read after a completed write', () => {
    const h = [op(0, put('a'), 0, 1, ok(null)), op(1, get(), 2, 3, ok(null))];
    const r = checkLinearizable(h);
    expect(r.ok).toBe(false);
    if (r.ok === false) expect(r.explanation).toContain('key k');
  });

  it('accepts either value for a read overlapping a write', () => {
    for (const seen of [null, 'a']) {
      const h = [op(0, put('a'), 0, 3, ok(null)), op(1, get(), 1, 2, ok(seen))];
      expect(checkLinearizable(h).ok).toBe(true);
    }
  });

  it('rejects two reads that see concurrent writes in opposite orders', () => {
    // put a || put b, then read b then read a: a was overwritten by b, so a cannot reappear.
    const h = [
      op(0, put('a'), 0, 4, ok(null)),
      op(1, put('b'), 1, 5, ok('a')),
      op(2, get(), 6, 7, ok('b')),
      op(3, get(), 8, 9, ok('a')),
    ];
    expect(checkLinearizable(h).ok).toBe(false);
  });

  it('checks the previous value returned by put', () => {
    const good = [op(0, put('a'), 0, 1, ok(null)), op(1, put('b'), 2, 3, ok('a'))];
    const bad = [op(0, put('a'), 0, 1, ok(null)), op(1, put('b'), 2, 3, ok(null))];
    expect(checkLinearizable(good).ok).toBe(true);
    expect(checkLinearizable(bad).ok).toBe(false);
  });

  it('lets a write that never returned take effect late, or never', () => {
    const late = [op(0, put('a'), 0), op(1, get(), 1, 2, ok(null)), op(2, get(), 3, 4, ok('a'))];
    const never = [op(0, put('a'), 0), op(1, get(), 1, 2, ok(null)), op(2, get(), 3, 4, ok(null))];
    expect(checkLinearizable(late).ok).toBe(true);
    expect(checkLinearizable(never).ok).toBe(true);
  });

  it('does not let a write that never returned take effect twice', () => {
    // Only one pending put of a; the value is seen, then gone (no delete), then back.
    const h = [op(0, put('a'), 0), op(1, get(), 1, 2, ok('a')), op(2, put('b'), 3, 4, ok('a')), op(3, get(), 5, 6, ok('a'))];
    expect(checkLinearizable(h).ok).toBe(false);
  });

  it('rejects two compare-and-swaps that both succeed from the same value', () => {
    const h = [op(0, cas(null, 'a'), 0, 3, ok()), op(1, cas(null, 'b'), 1, 2, ok())];
    expect(checkLinearizable(h).ok).toBe(false);
  });

  it('accepts one winning compare-and-swap and one mismatch that saw the winner', () => {
    const h = [op(0, cas(null, 'a'), 0, 3, ok()), op(1, cas(null, 'b'), 1, 2, mismatch('a'))];
    expect(checkLinearizable(h).ok).toBe(true);
  });

  it('rejects a mismatch that reports a value the key never had', () => {
    const h = [op(0, put('a'), 0, 1, ok(null)), op(1, cas('x', 'b'), 2, 3, mismatch('z'))];
    expect(checkLinearizable(h).ok).toBe(false);
  });

  it('checks keys independently', () => {
    const h = [op(0, put('a', 'x'), 0, 1, ok(null)), op(1, get('y'), 2, 3, ok(null)), op(2, get('x'), 4, 5, ok('a'))];
    expect(checkLinearizable(h)).toEqual({ ok: true, keys: 2, operations: 3 });
  });

  it('ignores reads that never returned', () => {
    const h = [op(0, put('a'), 0, 1, ok(null)), op(1, get(), 2)];
    expect(checkLinearizable(h)).toEqual({ ok: true, keys: 1, operations: 1 });
  });

  it('reports unknown when the step budget runs out', () => {
    const h = Array.from({ length: 12 }, (_, i) => op(i, put(`v${i}`), i));
    h.push(op(12, get(), 20, 21, ok('nope')));
    expect(checkLinearizable(h, 50).ok).toBe('unknown');
  });

  it('agrees with a brute-force search on random small histories', () => {
    const rng = new Rng(7);
    let linearizable = 0;
    for (let trial = 0; trial < 600; trial++) {
      const h = randomHistory(rng, rng.range(1, 6));
      const fast = checkLinearizable(h).ok;
      const slow = bruteForce(h);
      expect({ trial, fast }).toEqual({ trial, fast: slow });
      if (slow) linearizable++;
    }
    // Both outcomes must be well represented for the comparison to mean anything.
    expect(linearizable).toBeGreaterThan(60);
    expect(linearizable).toBeLessThan(500);
  });
});

/** Random operations with random (often wrong) outputs and random overlapping intervals. */
function randomHistory(rng: Rng, n: number): Operation[] {
  const values = [null, 'a', 'b'];
  const points = rng.shuffle(Array.from({ length: 2 * n }, (_, i) => i));
  const ops: Operation[] = [];
  for (let i = 0; i < n; i++) {
    const [x, y] = [points[2 * i] as number, points[2 * i + 1] as number];
    const v = () => rng.pick(values);
    const s = () => rng.pick(['a', 'b']);
    const kind = rng.int(4);
    const call: KvCall = kind === 0 ? put(s()) : kind === 1 ? get() : kind === 2 ? del() : cas(v(), s());
    const pending = rng.chance(0.15);
    const output: KvOutput = call.type === 'cas' && rng.chance(0.5) ? mismatch(v()) : ok(v());
    ops.push(pending ? op(i, call, Math.min(x, y)) : op(i, call, Math.min(x, y), Math.max(x, y), output));
  }
  return ops;
}

/** The obvious check: try every order that respects real time; pending operations may be left out. */
function bruteForce(ops: readonly Operation[]): boolean {
  const relevant = ops.filter((o) => !(o.ret === undefined && o.call.type === 'get'));
  const search = (done: Set<number>, state: RegisterState): boolean => {
    if (relevant.every((o) => done.has(o.id) || o.ret === undefined)) return true;
    for (const o of relevant) {
      if (done.has(o.id)) continue;
      // o can go next only if no other remaining operation returned before o was invoked.
      const blocked = relevant.some((p) => !done.has(p.id) && p !== o && p.ret !== undefined && p.ret < o.invoke);
      if (blocked) continue;
      const next = stepRegister(state, o.call, o.output);
      if (next === undefined) continue;
      if (search(new Set([...done, o.id]), next)) return true;
    }
    return false;
  };
  return search(new Set(), null);
}
