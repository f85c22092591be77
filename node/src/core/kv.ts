/**
 * The replicated key-value state machine, with per-client sessions so that a retried request
 * is applied exactly once.
 *
 * Pure and deterministic: two replicas that apply the same entries hold the same state and
 * produce byte-identical snapshots.
 */
import type { Entry, KvOp } from './types.js';

/** One key and its value, as returned by a range read. */
export interface KvPair {
  readonly key: string;
  readonly value: string;
}

/** The outcome of applying one client command. */
export type KvResult =
  | {
      readonly ok: true;
      /** put/delete: the previous value; get: the value; cas: the previous value. `null` = absent. */
      readonly value?: string | null;
      readonly entries?: readonly KvPair[];
    }
  | {
      readonly ok: false;
      /** `casMismatch`: the current value differs; `staleSequence`: an older request of a session. */
      readonly code: 'casMismatch' | 'staleSequence';
      readonly current?: string | null;
    };

/** Tunables of the store. */
export interface KvOptions {
  /** Sessions kept; the least recently used is forgotten beyond this (its retries then fail as stale). */
  readonly maxSessions: number;
}

const DEFAULT_OPTIONS: KvOptions = { maxSessions: 100_000 };

/** Characters per part of `snapshotParts`: large enough that parts are few, small next to a state. */
const SNAPSHOT_PART_CHARS = 1 << 20;

/** Characters per part of `freeze`: small, so that encoding one part is a short task. */
const FROZEN_PART_CHARS = 1 << 18;

interface Session {
  readonly seq: number;
  readonly result: KvResult;
}

/**
 * A change made while the store is frozen (see `KvStore.freeze`). `value` undefined: deleted.
 * `reordered`: the key was deleted meanwhile, so merging it must move it to the end of the
 * map's order, as deleting and setting it would have.
 */
interface OverlayEntry {
  value: string | undefined;
  reordered: boolean;
}

interface SnapshotShape {
  readonly v: 1;
  readonly applied: number;
  readonly data: ReadonlyArray<readonly [string, string]>;
  readonly sessions: ReadonlyArray<readonly [string, number, KvResult]>;
}

/** Thrown when entries are applied out of order: a bug in the driver, never a client error. */
export class ApplyOrderError extends Error {
  constructor(readonly expected: number, readonly got: number) {
    super(`entries must be applied in order: expected slot ${expected}, got ${got}`);
    this.name = 'ApplyOrderError';
  }
}

/** The parts of a frozen state (see `KvStore.freeze`); `return()` ends the freeze early. */
export interface FrozenParts extends IterableIterator<string> {
  next(): IteratorResult<string, void>;
  return(value?: unknown): IteratorResult<string, void>;
}

/** The key-value store. */
export class KvStore {
  /** The data; while frozen it is not touched, and changes go to `overlay`. */
  private readonly data = new Map<string, string>();
  private overlay: Map<string, OverlayEntry> | undefined;
  private liveSize = 0;
  /** Map order is least- to most-recently used, so eviction takes the first key. */
  private readonly sessions = new Map<string, Session>();
  private appliedSlot = 0;

  constructor(private readonly options: KvOptions = DEFAULT_OPTIONS) {}

  /** The last slot applied. */
  get applied(): number {
    return this.appliedSlot;
  }

  /** Number of keys stored. */
  get size(): number {
    return this.liveSize;
  }

  /** True while a `freeze` snapshot is being taken. */
  get frozen(): boolean {
    return this.overlay !== undefined;
  }

  /**
   * Applies the chosen entry of the next slot. Returns the client's result for `kv` commands
   * and `undefined` for no-ops and configuration entries.
   */
  apply(entry: Entry): KvResult | undefined {
    if (entry.slot !== this.appliedSlot + 1) throw new ApplyOrderError(this.appliedSlot + 1, entry.slot);
    this.appliedSlot = entry.slot;
    const command = entry.command;
    if (command.kind !== 'kv') return undefined;
    const session = this.sessions.get(command.client);
    if (session !== undefined && command.seq <= session.seq) {
      // A retry of the session's last request gets the same answer; anything older was
      // superseded (the client has moved on), so executing it now would reorder its writes.
      return command.seq === session.seq ? session.result : { ok: false, code: 'staleSequence' };
    }
    const result = this.execute(command.op);
    this.sessions.delete(command.client);
    this.sessions.set(command.client, { seq: command.seq, result });
    if (this.sessions.size > this.options.maxSessions) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    return result;
  }

  /** Reads one key from the applied state (for read-index reads). */
  get(key: string): string | undefined {
    const o = this.overlay?.get(key);
    return o === undefined ? this.data.get(key) : o.value;
  }

  /** Keys with `prefix`, in lexicographic order, at most `limit` of them. */
  range(prefix: string, limit: number): KvPair[] {
    const keys: string[] = [];
    const overlay = this.overlay;
    for (const key of this.data.keys()) {
      if (!key.startsWith(prefix)) continue;
      const o = overlay?.get(key);
      if (o === undefined || o.value !== undefined) keys.push(key);
    }
    if (overlay) for (const [key, o] of overlay) if (o.value !== undefined && !this.data.has(key) && key.startsWith(prefix)) keys.push(key);
    keys.sort();
    return keys.slice(0, Math.max(0, limit)).map((key) => ({ key, value: this.get(key) as string }));
  }

  /** Serialises the whole state, sessions included, deterministically. */
  snapshot(): string {
    return [...this.snapshotParts()].join('');
  }

  /**
   * Freezes the state as it is now and returns its serialisation (`snapshot()`'s text) in parts,
   * to be taken one at a time, with other work in between: entries applied meanwhile go to an
   * overlay that reads consult, and are merged into the data, in the order they would have had,
   * once the last part is taken (or the iteration is abandoned with `return()`). So a large
   * state is written without stopping the node for the whole of it. One freeze at a time.
   */
  freeze(partChars = FROZEN_PART_CHARS): FrozenParts {
    if (this.overlay) throw new Error('the store is already frozen for a snapshot');
    this.overlay = new Map();
    const applied = this.appliedSlot;
    // Sessions are few next to the data (at most maxSessions) and change with every write: copied.
    const sessions = [...this.sessions];
    const parts = this.parts(applied, this.data, sessions, partChars);
    const thaw = (): void => this.thaw();
    const it: FrozenParts = {
      next: () => {
        const r = parts.next();
        if (r.done) thaw();
        return r;
      },
      return: () => {
        parts.return(undefined);
        thaw();
        return { done: true, value: undefined };
      },
      [Symbol.iterator]: () => it,
    };
    return it;
  }

  /**
   * `snapshot()` in consecutive pieces of about `partChars` characters, each ending between two
   * JSON values, so that a large state can be encoded and written without ever being one string.
   * The JSON is that of a `SnapshotShape`, byte for byte what `JSON.stringify` makes of it.
   * The store must not change while the parts are taken: iterate them to the end at once.
   */
  snapshotParts(partChars = SNAPSHOT_PART_CHARS): Generator<string, void, undefined> {
    if (this.overlay) throw new Error('the store is frozen for a snapshot: take that one');
    return this.parts(this.appliedSlot, this.data, this.sessions, partChars);
  }

  private *parts(
    applied: number,
    data: ReadonlyMap<string, string>,
    sessions: Iterable<readonly [string, Session]>,
    partChars: number,
  ): Generator<string, void, undefined> {
    let pending: string[] = [];
    let size = 0;
    // Yields a part whenever enough text has piled up.
    function* add(text: string): Generator<string, void, undefined> {
      pending.push(text);
      size += text.length;
      if (size < partChars) return;
      yield pending.join('');
      pending = [];
      size = 0;
    }
    yield* add(`{"v":1,"applied":${JSON.stringify(applied)},"data":[`);
    let separator = '';
    for (const pair of data) {
      yield* add(separator + JSON.stringify(pair));
      separator = ',';
    }
    yield* add('],"sessions":[');
    separator = '';
    for (const [client, s] of sessions) {
      yield* add(separator + JSON.stringify([client, s.seq, s.result]));
      separator = ',';
    }
    yield* add(']}');
    if (pending.length > 0) yield pending.join('');
  }

  /** Rebuilds a store from `snapshot()` output. */
  static restore(serialised: string, options: KvOptions = DEFAULT_OPTIONS): KvStore {
    const shape = JSON.parse(serialised) as SnapshotShape;
    if (shape.v !== 1) throw new Error(`unsupported snapshot version ${String(shape.v)}`);
    const store = new KvStore(options);
    store.appliedSlot = shape.applied;
    for (const [key, value] of shape.data) store.data.set(key, value);
    store.liveSize = store.data.size;
    for (const [client, seq, result] of shape.sessions) store.sessions.set(client, { seq, result });
    return store;
  }

  /** Merges what was applied while frozen into the data (see `freeze`). */
  private thaw(): void {
    const overlay = this.overlay;
    this.overlay = undefined;
    if (!overlay) return;
    for (const [key, o] of overlay) {
      if (o.reordered) this.data.delete(key);
      if (o.value !== undefined) this.data.set(key, o.value);
    }
  }

  private set(key: string, value: string, previous: string | null): void {
    if (previous === null) this.liveSize++;
    const overlay = this.overlay;
    if (!overlay) {
      this.data.set(key, value);
      return;
    }
    const o = overlay.get(key);
    if (o === undefined) overlay.set(key, { value, reordered: false });
    else if (o.value === undefined) {
      // Deleted earlier in this freeze: set again, it goes to the end of the order.
      overlay.delete(key);
      overlay.set(key, { value, reordered: true });
    } else o.value = value;
  }

  private remove(key: string, previous: string | null): void {
    if (previous === null) return;
    this.liveSize--;
    const overlay = this.overlay;
    if (!overlay) {
      this.data.delete(key);
      return;
    }
    const o = overlay.get(key);
    if (o === undefined) overlay.set(key, { value: undefined, reordered: true });
    else {
      o.value = undefined;
      o.reordered = true;
    }
  }

  private execute(op: KvOp): KvResult {
    switch (op.type) {
      case 'put': {
        const previous = this.get(op.key) ?? null;
        this.set(op.key, op.value, previous);
        return { ok: true, value: previous };
      }
      case 'delete': {
        const previous = this.get(op.key) ?? null;
        this.remove(op.key, previous);
        return { ok: true, value: previous };
      }
      case 'cas': {
        const current = this.get(op.key) ?? null;
        if (current !== op.expected) return { ok: false, code: 'casMismatch', current };
        this.set(op.key, op.value, current);
        return { ok: true, value: current };
      }
      case 'get':
        return { ok: true, value: this.get(op.key) ?? null };
      case 'range':
        return { ok: true, entries: this.range(op.prefix, op.limit) };
    }
  }
}
