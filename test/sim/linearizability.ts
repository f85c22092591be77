import { describeOperation, type KvCall, type KvOutput, type Operation } from './history.js';

/**
 * A linearizability checker for the key-value history, after Wing & Gong with Lowe's memoisation
 * (the algorithm of porcupine): depth-first search over the order of operations, pruned by a cache
 * of (set of operations linearized, model state) pairs already explored.
 *
 * Every checked operation touches one key, and linearizability is local (Herlihy & Wing): a history
 * is linearizable iff its restriction to each key is. So the history is split per key and each key is
 * checked on its own against a register that may be absent. Range reads are not recorded in the
 * history and so are not checked.
 *
 * Operations that never returned may have taken effect at any time after their invocation, or never:
 * they get a response at +infinity and accept any output. Reads that never returned are dropped (they
 * have no effect).
 */

/** A key's value; `null` means absent. */
export type RegisterState = string | null;

/** The outcome of a check. */
export type LinearizabilityResult =
  | { readonly ok: true; readonly keys: number; readonly operations: number }
  | { readonly ok: false; readonly key: string; readonly explanation: string }
  /** The search exceeded its step budget: neither proved nor refuted. */
  | { readonly ok: 'unknown'; readonly key: string; readonly steps: number };

/**
 * The register's transition: the state after `call` answered with `output` in `state`, or
 * `undefined` when that answer is impossible in that state. `output` undefined means unknown.
 */
export function stepRegister(state: RegisterState, call: KvCall, output: KvOutput | undefined): RegisterState | undefined {
  switch (call.type) {
    case 'get':
      if (output === undefined) return state;
      return output.ok && (output.value ?? null) === state ? state : undefined;
    case 'put':
      if (output === undefined) return call.value;
      return output.ok && (output.value ?? null) === state ? call.value : undefined;
    case 'delete':
      if (output === undefined) return null;
      return output.ok && (output.value ?? null) === state ? null : undefined;
    case 'cas':
      if (output === undefined) return state === call.expected ? call.value : state;
      if (output.ok) return state === call.expected ? call.value : undefined;
      // A mismatch leaves the value alone and, when it reports the current value, reports this one.
      if (state === call.expected) return undefined;
      return output.current === undefined || output.current === state ? state : undefined;
  }
}

/** Checks a whole history, key by key. `maxSteps` bounds the search per key. */
export function checkLinearizable(operations: readonly Operation[], maxSteps = 2_000_000): LinearizabilityResult {
  const byKey = new Map<string, Operation[]>();
  for (const op of operations) {
    if (op.ret === undefined && op.call.type === 'get') continue;
    let list = byKey.get(op.call.key);
    if (list === undefined) byKey.set(op.call.key, (list = []));
    list.push(op);
  }
  let count = 0;
  for (const key of [...byKey.keys()].sort()) {
    const ops = byKey.get(key) ?? [];
    count += ops.length;
    const result = checkKey(ops, maxSteps);
    if (result.ok === 'unknown') return { ok: 'unknown', key, steps: result.steps };
    if (!result.ok) return { ok: false, key, explanation: explain(key, ops, result.deepest) };
  }
  return { ok: true, keys: byKey.size, operations: count };
}

interface ListNode {
  readonly op: number;
  readonly isCall: boolean;
  match: ListNode | undefined;
  prev: ListNode | undefined;
  next: ListNode | undefined;
}

type KeyResult = { ok: true } | { ok: false; deepest: number[] } | { ok: 'unknown'; steps: number };

/** Checks the operations on one key, all starting from the absent state. */
export function checkKey(ops: readonly Operation[], maxSteps = 2_000_000): KeyResult {
  const head = buildList(ops);
  const words = Math.ceil(ops.length / 32) || 1;
  const linearized = new Uint32Array(words);
  const cache = new Set<string>();
  const calls: { node: ListNode; state: RegisterState }[] = [];
  let deepest: number[] = [];
  let state: RegisterState = null;
  let node = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > maxSteps) return { ok: 'unknown', steps };
    if (node === undefined) throw new Error('linearizability: ran off the event list');
    if (node.isCall) {
      const op = ops[node.op] as Operation;
      const next = stepRegister(state, op.call, op.output);
      if (next !== undefined) {
        setBit(linearized, node.op);
        const key = cacheKey(linearized, next);
        if (!cache.has(key)) {
          cache.add(key);
          calls.push({ node, state });
          state = next;
          lift(node);
          if (calls.length > deepest.length) deepest = calls.map((c) => c.node.op);
          node = head.next;
          continue;
        }
        clearBit(linearized, node.op);
      }
      node = node.next;
    } else {
      // A return whose call is not linearized yet: this branch is dead, backtrack.
      const top = calls.pop();
      if (top === undefined) return { ok: false, deepest };
      state = top.state;
      clearBit(linearized, top.node.op);
      unlift(top.node);
      node = top.node.next;
    }
  }
  return { ok: true };
}

/** The doubly linked list of call and return events in history order; pending returns go last. */
function buildList(ops: readonly Operation[]): ListNode {
  const events: { at: number; node: ListNode }[] = [];
  ops.forEach((op, i) => {
    const call: ListNode = { op: i, isCall: true, match: undefined, prev: undefined, next: undefined };
    const ret: ListNode = { op: i, isCall: false, match: undefined, prev: undefined, next: undefined };
    call.match = ret;
    events.push({ at: op.invoke, node: call });
    events.push({ at: op.ret ?? Number.MAX_SAFE_INTEGER - ops.length + i, node: ret });
  });
  events.sort((x, y) => x.at - y.at);
  const head: ListNode = { op: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  let last = head;
  for (const { node } of events) {
    last.next = node;
    node.prev = last;
    last = node;
  }
  return head;
}

function lift(call: ListNode): void {
  const ret = call.match as ListNode;
  (call.prev as ListNode).next = call.next;
  (call.next as ListNode).prev = call.prev;
  (ret.prev as ListNode).next = ret.next;
  if (ret.next !== undefined) ret.next.prev = ret.prev;
}

function unlift(call: ListNode): void {
  const ret = call.match as ListNode;
  (ret.prev as ListNode).next = ret;
  if (ret.next !== undefined) ret.next.prev = ret;
  (call.prev as ListNode).next = call;
  (call.next as ListNode).prev = call;
}

function setBit(bits: Uint32Array, i: number): void {
  bits[i >>> 5] = (bits[i >>> 5] as number) | (1 << (i & 31));
}

function clearBit(bits: Uint32Array, i: number): void {
  bits[i >>> 5] = (bits[i >>> 5] as number) & ~(1 << (i & 31));
}

function cacheKey(bits: Uint32Array, state: RegisterState): string {
  return `${bits.join(',')}|${state === null ? '-' : `=${state}`}`;
}

/** A readable account of a failed key: the longest order found, and the operations it could not place. */
function explain(key: string, ops: readonly Operation[], deepest: readonly number[]): string {
  const placed = new Set(deepest);
  const lines = [`key ${key}: no linearization of ${ops.length} operations; longest valid order (${deepest.length}):`];
  for (const i of deepest.slice(-8)) lines.push(`  ok   ${describeOperation(ops[i] as Operation)}`);
  const stuck = ops.filter((_, i) => !placed.has(i)).sort((a, b) => a.invoke - b.invoke).slice(0, 6);
  for (const op of stuck) lines.push(`  next ${describeOperation(op)}`);
  return lines.join('\n');
}
