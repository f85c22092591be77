/**
 * One simulated node process: the real `Driver` (node/src/io/driver.ts) around the core, on the
 * real `Storage` and `Wal` over a simulated disk (`SimFs`), its messages encoded by the real
 * codec (`wire.ts`), its admin calls answered by the real admin-service handlers. Only the
 * edges are simulated: the file system, the network, the clock and the scheduler of deferred
 * work, all driven by the world's ticks, so a run stays a function of its seed.
 *
 * The process starts as `NodeServer.start` does: it opens the data directory, recovers from it
 * or initialises it with the bootstrap state, and refuses to start on a damaged one. A crash
 * (or an fsync failure, on which the driver stops the process as main.ts does) throws the
 * process away with whatever the disk had not made durable; a restart opens the disk again.
 */
import pino from 'pino';
import type { KvResult } from '../../node/src/core/kv.js';
import type { Entry, HardState, KvOp, Message, NodeId, PersistedState, ProposeRefusal, Ready, ReplicaApi, ReplicaOptions, ReplicaStatus, SnapshotMeta, Command, Config, AdminResult } from '../../node/src/core/types.js';
import { adminHandlers } from '../../node/src/io/admin-service.js';
import { encodeConfig } from '../../node/src/io/codec.js';
import { Driver, type DriverScheduler, type DriverStorage } from '../../node/src/io/driver.js';
import { BusyError, NotLeaderError } from '../../node/src/io/errors.js';
import { CorruptLogError, CorruptSnapshotError, IncompleteDataDirError, Storage, type PersistBatch, type SnapshotToSave } from '../../node/src/io/storage.js';
import { SimFs } from './fs.js';
import type { Rng } from './rng.js';
import { encode, type Envelope } from './wire.js';

/** Builds a replica; the world injects the real `Replica` (or a fake in tests). */
export type ReplicaFactory = (options: ReplicaOptions, state: PersistedState) => ReplicaApi;

/** What the node reports to the checkers and the trace. */
export interface NodeObserver {
  /** `entry` was handed to the state machine of `node` as chosen. */
  committed(node: NodeId, entry: Entry): void;
  /** `node`'s state machine serialised itself at `index` (a compaction or an installed snapshot). */
  stateAt(node: NodeId, index: number, data: string): void;
  /** The node saw the core break its contract (e.g. a gap in committed entries). */
  contractViolation(node: NodeId, what: string): void;
}

/** The answer to a client request sent to one node. */
export type NodeReply =
  | { readonly kind: 'result'; readonly result: KvResult }
  | { readonly kind: 'refused'; readonly refusal: ProposeRefusal }
  /** The read was dropped (lost leadership): retry elsewhere. */
  | { readonly kind: 'dropped' }
  /** Any other error of the request path (timeout, outcome unknown, shutting down): retry. */
  | { readonly kind: 'failed'; readonly error: string };

/** The answer to an admin call: what the gRPC handler passed to its callback. */
export type AdminReply = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** Tunables of one simulated node. */
export interface SimNodeOptions {
  readonly replica: Omit<ReplicaOptions, 'id' | 'random' | 'joining' | 'snapshotData'>;
  /** The driver's snapshot threshold in applied slots (small, so that snapshots get exercised). */
  readonly compactEverySlots: number;
  /**
   * Test-only mutation: answer reads at once from the local store, on any node, skipping read
   * index. Stale reads follow, and the linearizability checker must catch them.
   */
  readonly unsafeLocalReads?: boolean;
  /** Probability that an fdatasync returns only after 1..3 ticks (the write stays in flight). */
  readonly slowFsyncChance?: number;
  /** Log segments roll at this size (small, so that rolls and segment deletion get exercised). */
  readonly segmentBytesMax?: number;
}

/** What a node needs of the world. */
export interface NodeHost {
  /** The world's tick. */
  readonly now: number;
  /** Hands an encoded message to the network. */
  send(envelope: Envelope): void;
  /** The process stopped on its own (the driver's `onFatal`): main.ts exits. */
  exited(id: NodeId, err: unknown): void;
  /** A client-answer or admin callback threw: a bug of the harness, reported as a violation. */
  harnessError(id: NodeId, err: unknown): void;
  /** The driver took `rd` from the core (scenarios print it). */
  readied?(id: NodeId, rd: Ready): void;
}

/** Milliseconds per tick, for the driver's clock (request deadlines). */
export const TICK_MS = 10;
const DATA_DIR = '/data';
const silent = pino({ level: 'silent' });

/** Why a start did not give a running process. */
export type StartFailure =
  /** The data directory is damaged: main.ts exits 3 and the node stays down. */
  | { readonly kind: 'refused'; readonly error: Error }
  /** Opening failed otherwise (an injected disk error): the container is restarted later. */
  | { readonly kind: 'failed'; readonly error: Error };

/** A process's queues of deferred work (the scheduler's and the disk's completions). */
interface Queues {
  readonly soon: Array<() => void>;
  readonly timed: Array<{ readonly at: number; readonly fn: () => void }>;
  /** False once the process died: nothing it still has in flight may act. */
  alive: boolean;
}

interface Running extends Queues {
  readonly driver: Driver;
  readonly handlers: ReturnType<typeof adminHandlers>;
}

/**
 * A node: its disk, which outlives processes, and the process running on it, if any.
 */
export class SimNode {
  private proc: Running | undefined;
  /** Why the last start failed, if it did. */
  startFailure: StartFailure | undefined;

  constructor(
    readonly id: NodeId,
    readonly disk: SimFs,
    /** What an empty data directory is initialised with (the bootstrap ConfigMap's state). */
    private readonly bootstrap: HardState,
    /** Started as a new member of an expansion: the core must catch up before it campaigns. */
    readonly joining: boolean,
    private readonly options: SimNodeOptions,
    private readonly factory: ReplicaFactory,
    private readonly rng: Rng,
    private readonly observer: NodeObserver,
    private readonly host: NodeHost,
  ) {
    this.disk.faults.slowSyncChance = options.slowFsyncChance ?? 0;
  }

  /** True while the process runs. */
  get up(): boolean {
    return this.proc !== undefined;
  }

  /** The running driver; throws when down. */
  get driver(): Driver {
    if (this.proc === undefined) throw new Error(`node ${this.id} is down`);
    return this.proc.driver;
  }

  /** The status the admin service reports (as of the driver's last drain). */
  status(): ReplicaStatus {
    return this.driver.status;
  }

  /** The last slot applied to the state machine. */
  get applied(): number {
    return this.driver.store.applied;
  }

  /** The state machine's serialised state (for convergence checks). */
  stateData(): string {
    return this.driver.store.snapshot();
  }

  /** Kills the process: memory and unsynced writes are lost; waiting clients never hear back. */
  crash(): { lostWrites: number; torn: boolean } {
    this.stop();
    return this.disk.crash();
  }

  /** Kills the process without touching the disk (the disk is being deleted). */
  stop(): void {
    if (this.proc === undefined) return;
    this.proc.alive = false;
    this.proc = undefined;
  }

  /**
   * Starts the process from the disk, as `NodeServer.start` does. Returns false (and sets
   * `startFailure`) when it does not come up.
   */
  start(): boolean {
    this.startFailure = undefined;
    const proc: Queues = { soon: [], timed: [], alive: true };
    const view = this.disk.view((fn, ticks) => {
      if (ticks <= 0) proc.soon.push(fn);
      else proc.timed.push({ at: this.host.now + ticks, fn });
    });
    let storage: Storage;
    let state: PersistedState;
    try {
      const opened = Storage.open(DATA_DIR, {
        fs: view.asWalFs(),
        // A snapshot is encoded a part per turn: here a turn is a round of the node's queue.
        nextTurn: () => new Promise<void>((resolve) => proc.soon.push(resolve)),
        ...(this.options.segmentBytesMax === undefined ? {} : { segmentBytesMax: this.options.segmentBytesMax }),
      });
      storage = opened.storage;
      state = opened.state ?? storage.initialize(this.bootstrap);
    } catch (error) {
      view.kill();
      const err = error instanceof Error ? error : new Error(String(error));
      const damaged = err instanceof CorruptLogError || err instanceof CorruptSnapshotError || err instanceof IncompleteDataDirError;
      this.startFailure = { kind: damaged ? 'refused' : 'failed', error: err };
      return false;
    }
    // main.ts passes --joining on every start; the core needs it only until it holds something.
    const joining = this.joining && state.hard.commit === 0 && state.snapshot === undefined;
    const random = this.rng.fork(this.id);
    const replica = this.factory({ ...this.options.replica, id: this.id, joining, random: () => random.float(), snapshotData: (index) => storage.snapshotData(index) }, state);
    const observed = new ObservedReplica(replica, this.id, this.observer, state.snapshot?.index ?? 0, () => proc.alive, (rd) => this.host.readied?.(this.id, rd));
    const scheduler: DriverScheduler = {
      afterCallback: (fn) => proc.soon.push(fn),
      endOfTurn: (fn) => proc.soon.push(fn),
      after: (ms, fn) => proc.timed.push({ at: this.host.now + Math.max(1, Math.ceil(ms / TICK_MS)), fn }),
    };
    const driver = new Driver({
      replica: observed,
      storage: new ObservedStorage(storage, (index, data) => {
        if (proc.alive) this.observer.stateAt(this.id, index, data);
      }),
      state,
      sink: {
        send: (messages) => {
          if (!proc.alive) return;
          for (const m of messages) if (m.to !== this.id) this.host.send(encode(m));
        },
      },
      logger: silent,
      limits: { maxPendingRequests: 256, requestTimeoutMs: 100 * TICK_MS, snapshotThreshold: this.options.compactEverySlots },
      clientAddress: (id) => `node-${id}`,
      onFatal: (err) => {
        if (proc.alive) this.host.exited(this.id, err);
      },
      now: () => this.host.now * TICK_MS,
      scheduler,
    });
    this.proc = Object.assign(proc, { driver, handlers: adminHandlers(driver, silent, (id) => `node-${id}`) });
    return true;
  }

  /** Moves deferred work that is due by `now` to the run queue. */
  due(now: number): void {
    const proc = this.proc;
    if (proc === undefined || proc.timed.length === 0) return;
    const later: Running['timed'] = [];
    for (const t of proc.timed) {
      if (t.at <= now) proc.soon.push(t.fn);
      else later.push(t);
    }
    proc.timed.splice(0, proc.timed.length, ...later);
  }

  /** Runs the work queued so far; true if there was any. */
  runQueued(): boolean {
    const proc = this.proc;
    if (proc === undefined || proc.soon.length === 0) return false;
    const batch = proc.soon.splice(0);
    for (const fn of batch) {
      if (!proc.alive) break;
      fn();
    }
    return true;
  }

  /** Whether work is queued to run now. */
  get hasQueued(): boolean {
    return (this.proc?.soon.length ?? 0) > 0;
  }

  /** A message from the network (already decoded). */
  receive(message: Message): void {
    this.driver.receive(message);
  }

  /** One tick of the driver (and so of the core). */
  tick(): void {
    this.driver.tick();
  }

  /** Client write: `Driver.submit`, as the KV service calls it. */
  propose(client: string, seq: number, op: KvOp, reply: (r: NodeReply) => void): void {
    const proc = this.proc as Running;
    proc.driver.submit(client, seq, op).then(
      (result) => this.answer(proc, reply, { kind: 'result', result }),
      (err: unknown) => this.answer(proc, reply, replyOf(err)),
    );
  }

  /** Client read through read index (`Driver.get`). */
  read(key: string, reply: (r: NodeReply) => void): void {
    const proc = this.proc as Running;
    if (this.options.unsafeLocalReads === true) {
      reply({ kind: 'result', result: { ok: true, value: proc.driver.store.get(key) ?? null } });
      return;
    }
    proc.driver.get(key).then(
      (value) => this.answer(proc, reply, { kind: 'result', result: { ok: true, value } }),
      (err: unknown) => this.answer(proc, reply, replyOf(err)),
    );
  }

  /**
   * An admin call through the admin service's gRPC handler (the operator's entry point);
   * `answer` gets what the handler hands to its callback. A dead process never answers.
   */
  admin(method: 'Convert' | 'TransferLeadership' | 'Finalize' | 'Register', request: { config?: Config; target?: NodeId }, answer: (r: AdminReply) => void): void {
    const proc = this.proc as Running;
    const wire = method === 'Convert' && request.config !== undefined ? { config: encodeConfig(request.config) } : method === 'TransferLeadership' ? { target: request.target } : {};
    const handler = proc.handlers[method] as unknown as (call: { request: object }, cb: (err: { details?: string } | null) => void) => void;
    handler({ request: wire }, (err) => this.answer(proc, answer, err === null ? { ok: true } : { ok: false, error: err.details ?? 'refused' }));
  }

  private answer<T>(proc: Running, to: (r: T) => void, r: T): void {
    if (!proc.alive) return;
    try {
      to(r);
    } catch (err) {
      this.host.harnessError(this.id, err);
    }
  }
}

function replyOf(err: unknown): NodeReply {
  if (err instanceof NotLeaderError) return { kind: 'refused', refusal: err.leader === undefined ? { reason: 'notLeader' } : { reason: 'notLeader', leader: err.leader } };
  if (err instanceof BusyError) return { kind: 'refused', refusal: { reason: 'busy' } };
  return { kind: 'failed', error: err instanceof Error ? err.message : String(err) };
}

/**
 * The core as the driver sees it, reporting what the driver applied (each Ready's committed
 * entries and installed snapshot, once the driver acknowledges it with `advance`).
 */
class ObservedReplica implements ReplicaApi {
  constructor(
    private readonly inner: ReplicaApi,
    private readonly id: NodeId,
    private readonly observer: NodeObserver,
    /** The highest slot the state machine holds (applied or restored from a snapshot). */
    private applied: number,
    private readonly alive: () => boolean,
    private readonly onReady: (rd: Ready) => void,
  ) {}

  tick(): void {
    this.inner.tick();
  }
  step(message: Message): void {
    this.inner.step(message);
  }
  propose(commands: readonly Command[]): ReturnType<ReplicaApi['propose']> {
    return this.inner.propose(commands);
  }
  read(id: number): ReturnType<ReplicaApi['read']> {
    return this.inner.read(id);
  }
  transferLeadership(target: NodeId): AdminResult {
    return this.inner.transferLeadership(target);
  }
  convert(config: Config): AdminResult {
    return this.inner.convert(config);
  }
  register(): AdminResult {
    return this.inner.register();
  }
  finalize(): AdminResult {
    return this.inner.finalize();
  }
  compact(index: number): SnapshotMeta | undefined {
    return this.inner.compact(index);
  }
  hasReady(): boolean {
    return this.inner.hasReady();
  }
  ready(): Ready {
    const rd = this.inner.ready();
    this.onReady(rd);
    return rd;
  }
  status(): ReplicaStatus {
    return this.inner.status();
  }
  advance(rd: Ready): void {
    if (this.alive()) this.observe(rd);
    this.inner.advance(rd);
  }

  private observe(rd: Ready): void {
    if (rd.snapshot !== undefined && rd.snapshot.index > this.applied) {
      this.applied = rd.snapshot.index;
      this.observer.stateAt(this.id, rd.snapshot.index, rd.snapshot.data);
    }
    for (const entry of rd.committed) {
      this.observer.committed(this.id, entry);
      if (entry.slot <= this.applied) continue;
      if (entry.slot !== this.applied + 1) {
        this.observer.contractViolation(this.id, `committed slot ${entry.slot} after applied ${this.applied}`);
        return;
      }
      this.applied = entry.slot;
    }
  }
}

/** Storage as the driver sees it, reporting each local snapshot's state to the checker. */
class ObservedStorage implements DriverStorage {
  constructor(
    private readonly inner: Storage,
    private readonly onSnapshot: (index: number, data: string) => void,
  ) {}

  persist(batch: PersistBatch): Promise<void> {
    return this.inner.persist(batch);
  }
  saveSnapshot(snapshot: SnapshotToSave): Promise<void> {
    if (typeof snapshot.data === 'string') {
      this.onSnapshot(snapshot.index, snapshot.data);
      return this.inner.saveSnapshot(snapshot);
    }
    // Storage takes the parts at its own pace (a frozen store's, a part per turn): pass them
    // through as they are taken and report the whole once the last one is.
    const source = snapshot.data[Symbol.iterator]();
    const seen: string[] = [];
    const parts: IterableIterator<string> = {
      next: () => {
        const r = source.next();
        if (r.done === true) this.onSnapshot(snapshot.index, seen.join(''));
        else seen.push(r.value);
        return r;
      },
      return: (value?: unknown) => {
        source.return?.(value);
        return { done: true, value: undefined };
      },
      [Symbol.iterator]: () => parts,
    };
    return this.inner.saveSnapshot({ ...snapshot, data: parts });
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  get snapshotAt(): number {
    return this.inner.snapshotAt;
  }
  get snapshotBytes(): number {
    return this.inner.snapshotBytes;
  }
  get logBytesSinceSnapshot(): number {
    return this.inner.logBytesSinceSnapshot;
  }
  get syncCount(): number {
    return this.inner.syncCount;
  }
}
