/**
 * The driver loop: feeds the replica ticks, peer messages and client proposals, and drains
 * its Ready batches in the order the core requires — persist (one write, one fdatasync),
 * send, apply, serve reads, advance — except that the leader's accepts and heartbeats are
 * sent before the Ready is persisted (`sendableBeforePersist`), so that followers write in
 * parallel with the leader.
 *
 * Group commit (docs/adr/0006-async-group-commit.md): the write and fdatasync of a Ready run
 * on libuv's thread pool, and exactly one Ready is in flight at a time. While it is, the event
 * loop keeps delivering peer messages, ticks and proposals to the core, which accumulates
 * their effects; when the write completes the driver finishes that Ready and drains the next
 * one, which then holds everything that arrived during the fsync — so the batch per fsync
 * grows with the load instead of being whatever fitted in one event-loop turn. Proposals that
 * arrive together are handed to the core as one `propose([...])`: those of one callback on an
 * idle node (drained right after it, see `schedule`), those of one turn on a busy one.
 */
import type { Logger } from 'pino';
import { KvStore, type KvPair, type KvResult } from '../core/kv.js';
import { sendableBeforePersist, type AdminResult, type Command, type Config, type Entry, type KvOp, type Message, type NodeId, type PersistedState, type ProposeRefusal, type Ready, type ReplicaApi, type ReplicaStatus } from '../core/types.js';
import { BackupUnavailableError, BusyError, NotLeaderError, OutcomeUnknownError, RequestTimeoutError, ShuttingDownError, AdminRefusedError } from './errors.js';
import { DiskFullError } from './wal.js';
import type { NodeMetrics } from './metrics.js';
import type { PersistBatch, SnapshotToSave } from './storage.js';
import { trace, tracing } from './trace.js';

/** Where outgoing messages go (the gRPC transport, or a fake in tests). */
export interface MessageSink {
  send(messages: readonly Message[]): void;
  /**
   * Puts what was sent so far on the wire now rather than at the end of the event-loop turn.
   * The driver calls it once the messages of a drain are all sent, and right after the
   * leader's accepts (before its own write), so no message waits for another loop iteration.
   */
  flush?(): void;
}

/**
 * What the driver uses of storage (`Storage` in storage.ts implements it). The simulator
 * hands the driver the real `Storage` over a simulated file system; tests may wrap it.
 */
export interface DriverStorage {
  /** Makes a Ready's state durable; a rejection is fatal (see `Storage.persist`). */
  persist(batch: PersistBatch): Promise<void>;
  /** Installs a snapshot durably and compacts the log; a rejection is fatal. */
  saveSnapshot(snapshot: SnapshotToSave): Promise<void>;
  /** Waits for what is queued, then closes. */
  close(): Promise<void>;
  /** The index of the newest snapshot on disk (0 if none). */
  readonly snapshotAt: number;
  /** The encoded size of the newest snapshot on disk, in bytes. */
  readonly snapshotBytes: number;
  /** Bytes appended to the log since the newest snapshot. */
  readonly logBytesSinceSnapshot: number;
  /** fdatasync calls so far (metrics). */
  readonly syncCount: number;
}

/**
 * When the driver's deferred work runs. Production uses the event loop's own queues
 * (`eventLoopScheduler`); the simulator passes one that runs everything at simulated times, so
 * that the unchanged driver runs deterministically.
 */
export interface DriverScheduler {
  /** Runs `fn` once the current callback is done (production: a microtask). */
  afterCallback(fn: () => void): void;
  /** Runs `fn` at the end of this turn, after the I/O callbacks already due (production: setImmediate). */
  endOfTurn(fn: () => void): void;
  /** Runs `fn` after `ms` milliseconds (production: setTimeout). */
  after(ms: number, fn: () => void): void;
}

/** The event loop's queues: what a running node uses. */
export const eventLoopScheduler: DriverScheduler = {
  afterCallback: (fn) => queueMicrotask(fn),
  endOfTurn: (fn) => void setImmediate(fn),
  after: (ms, fn) => void setTimeout(fn, ms),
};

/** How long the driver waits before it retries a write that found the disk full. */
export const DISK_FULL_RETRY_MS = 100;

/** Limits and tunables of the driver. */
export interface DriverLimits {
  readonly maxPendingRequests: number;
  readonly requestTimeoutMs: number;
  readonly snapshotThreshold: number;
}

/** What the driver is built from. */
export interface DriverDeps {
  readonly replica: ReplicaApi;
  readonly storage: DriverStorage;
  readonly state: PersistedState;
  readonly sink: MessageSink;
  readonly logger: Logger;
  readonly metrics?: NodeMetrics;
  readonly limits: DriverLimits;
  /** Client address of a node, for NOT_LEADER hints. */
  readonly clientAddress: (id: NodeId) => string | undefined;
  /** Storage failed: the process must stop (an fsync error cannot be retried safely). */
  readonly onFatal: (err: unknown) => void;
  /** The clock of request deadlines, in milliseconds (default `Date.now`). */
  readonly now?: () => number;
  /** Where deferred work runs (default `eventLoopScheduler`). */
  readonly scheduler?: DriverScheduler;
}

interface Waiter<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (err: Error) => void;
  readonly expiresAt: number;
}

interface PendingWrite {
  readonly key: string;
  readonly command: Extract<Command, { kind: 'kv' }>;
  readonly waiters: Waiter<KvResult>[];
  slot?: number;
}

interface PendingRead {
  readonly waiter: Waiter<void>;
  index?: number;
}

interface SnapshotRequest {
  readonly promise: Promise<number>;
  readonly resolve: (index: number) => void;
  readonly reject: (err: unknown) => void;
}

/** What a backup needs to know of a snapshot besides its file: recorded when it is taken. */
export interface SnapshotInfo {
  readonly index: number;
  readonly config: Config;
  /** Keys in the state machine at `index`. */
  readonly keys: number;
}

const sessionKey = (client: string, seq: number): string => `${client}\u0000${seq}`;

/** The driver. Single-threaded: every method runs to completion on the event loop. */
export class Driver {
  private kv: KvStore;
  private readonly pendingByKey = new Map<string, PendingWrite>();
  private readonly pendingBySlot = new Map<number, PendingWrite>();
  private proposalQueue: PendingWrite[] = [];
  private readonly pendingReads = new Map<number, PendingRead>();
  /** Reads whose index is known, waiting for apply to reach it. */
  private readsAwaitingApply: Array<{ id: number; index: number }> = [];
  private readonly finalizeWaiters: Array<Waiter<void> & { epoch: number }> = [];
  private nextReadId = 1;
  private scheduled = false;
  private draining = false;
  /** Messages were handed to the sink since its last flush. */
  private unflushed = false;
  /** The Ready being persisted; no other is taken from the core until it completes. */
  private inflight: Ready | undefined;
  /** Set once storage failed: nothing more is persisted, sent or applied. */
  private broken = false;
  /**
   * Set while the Ready in flight waits for space on a full disk (its write was refused whole,
   * see `DiskFullError`): new requests are refused with that error until a retry succeeds.
   */
  private diskFull: DiskFullError | undefined;
  /** The snapshot being written, if any (one at a time). */
  private snapshotting: Promise<number> | undefined;
  /** An admin snapshot asked for while a Ready was in flight, taken when it completes. */
  private snapshotRequest: SnapshotRequest | undefined;
  /** Snapshots taken, recovered or installed and not yet superseded on disk, by index. */
  private readonly snapshotInfos = new Map<number, SnapshotInfo>();
  private stopped = false;
  private accepting = true;
  private wasLeader = false;
  private wasCandidate = false;
  private lastStatus: ReplicaStatus;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly scheduler: DriverScheduler;

  private readonly deps: Omit<DriverDeps, 'state'>;

  constructor(deps: DriverDeps) {
    // The recovered state is needed only here: kept, its snapshot data and entries would stay
    // in memory for the life of the process.
    const { state, ...rest } = deps;
    this.deps = rest;
    this.log = deps.logger;
    this.now = deps.now ?? Date.now;
    this.scheduler = deps.scheduler ?? eventLoopScheduler;
    this.kv = state.snapshot ? KvStore.restore(state.snapshot.data) : new KvStore();
    if (state.snapshot) this.noteSnapshot({ index: state.snapshot.index, config: state.snapshot.config, keys: this.kv.size });
    this.lastStatus = deps.replica.status();
  }

  /** The state machine (read-only use: reads after a read index, status). */
  get store(): KvStore {
    return this.kv;
  }

  /** The replica's status as of the last drain (cheap; no recomputation). */
  get status(): ReplicaStatus {
    return this.lastStatus;
  }

  /** Requests waiting for a result (a queued write is in `pendingByKey` too: counted once). */
  get pendingCount(): number {
    return this.pendingByKey.size + this.pendingReads.size;
  }

  /** True when this node knows a leader and has caught up: it may serve and report ready. */
  get ready(): boolean {
    const s = this.lastStatus;
    return s.leader !== undefined && s.caughtUp;
  }

  /** One tick of logical time; also expires requests that waited too long. */
  tick(): void {
    if (this.stopped) return;
    this.deps.replica.tick();
    this.expire();
    this.drain();
  }

  /** A message from a peer. Processed with everything else of this event-loop turn. */
  receive(message: Message): void {
    if (this.stopped) return;
    this.deps.replica.step(message);
    this.schedule();
  }

  /**
   * Proposes a client command and resolves with its result once chosen and applied. A retry
   * of a pending (client, seq) joins the pending proposal instead of proposing it twice.
   */
  submit(client: string, seq: number, op: KvOp): Promise<KvResult> {
    return new Promise<KvResult>((resolve, reject) => {
      const refusal = this.admissionError();
      if (refusal) return reject(refusal);
      const waiter = { resolve, reject, expiresAt: this.now() + this.deps.limits.requestTimeoutMs };
      const key = sessionKey(client, seq);
      const existing = this.pendingByKey.get(key);
      if (existing) {
        existing.waiters.push(waiter);
        return;
      }
      const pending: PendingWrite = { key, command: { kind: 'kv', client, seq, op }, waiters: [waiter] };
      this.pendingByKey.set(key, pending);
      this.proposalQueue.push(pending);
      this.deps.metrics?.clientPending.set(this.pendingCount);
      this.schedule();
    });
  }

  /** A linearizable read: runs `read` against the state machine once the read index is applied. */
  read<T>(read: (kv: KvStore) => T): Promise<T> {
    return new Promise<void>((resolve, reject) => {
      const refusal = this.admissionError();
      if (refusal) return reject(refusal);
      const id = this.nextReadId++;
      const result = this.deps.replica.read(id);
      if (!result.ok) return reject(this.refusalError(result));
      this.pendingReads.set(id, { waiter: { resolve, reject, expiresAt: this.now() + this.deps.limits.requestTimeoutMs } });
      this.schedule();
    }).then(() => read(this.kv));
  }

  /** Convenience reads. */
  get(key: string): Promise<string | null> {
    return this.read((kv) => kv.get(key) ?? null);
  }
  range(prefix: string, limit: number): Promise<KvPair[]> {
    return this.read((kv) => kv.range(prefix, limit));
  }

  /** Admin: convert this node to `config`; resolves once the new configuration is durable. */
  convert(config: Config): void {
    this.adminResult(this.deps.replica.convert(config));
    this.drain();
  }

  /** Admin: let this new server vote (see `Replica.register`). */
  register(): void {
    this.adminResult(this.deps.replica.register());
    this.drain();
  }

  /** Admin: hand leadership to `target`. */
  transferLeadership(target: NodeId): void {
    this.adminResult(this.deps.replica.transferLeadership(target));
    this.drain();
  }

  /** Admin: propose the finalize entry; resolves once a finalize entry is applied here. */
  finalize(): Promise<void> {
    const epoch = this.lastStatus.config.epoch;
    const result = this.deps.replica.finalize();
    if (!result.ok) {
      if (this.lastStatus.config.prior === undefined && this.lastStatus.fenceEpoch >= epoch) return Promise.resolve(); // already done: idempotent
      return Promise.reject(this.adminError(result));
    }
    const done = new Promise<void>((resolve, reject) => {
      this.finalizeWaiters.push({ resolve, reject, epoch, expiresAt: this.now() + this.deps.limits.requestTimeoutMs });
    });
    this.drain();
    return done;
  }

  /**
   * Admin or threshold: snapshots the state machine now and compacts the log. Resolves with
   * the snapshot's index once it is durable; the snapshot covers everything applied when it was
   * asked for.
   */
  snapshotNow(): Promise<number> {
    const wanted = this.kv.applied;
    // One snapshot is written at a time. One already in progress may have been started (by the
    // size policy) before the latest entries were applied: then take another once it is done.
    if (this.snapshotting) return this.snapshotting.then((index) => (index >= wanted ? index : this.snapshotNow()));
    if (this.inflight !== undefined) {
      // `compact` is not among the calls the core allows while a Ready is outstanding: take the
      // snapshot in the gap after the write in flight completes (see `persisted`).
      if (!this.snapshotRequest) {
        let settle!: Pick<SnapshotRequest, 'resolve' | 'reject'>;
        const promise = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
        this.snapshotRequest = { promise, ...settle };
      }
      return this.snapshotRequest.promise;
    }
    return this.takeSnapshot();
  }

  /**
   * Admin: the consistent point of a backup. A linearizable read through the leader (refused
   * with `NotLeaderError` elsewhere) gives an index that covers every write acknowledged before
   * this call; then a snapshot at or above the index applied once that read is served (the one
   * on disk if it already covers it). Resolves once that snapshot is durable, with what a
   * backup's metadata needs; its file is `storage.snapshotPath(index)` until a newer one
   * replaces it.
   */
  async backupPoint(): Promise<SnapshotInfo> {
    const readIndex = await this.read((kv) => kv.applied);
    const index = await this.snapshotNow();
    const info = this.snapshotInfos.get(index);
    if (index < readIndex || info === undefined) throw new BackupUnavailableError(`no snapshot at or above the read index ${readIndex} is on disk (snapshot at ${index}); retry`);
    return info;
  }

  private noteSnapshot(info: SnapshotInfo): void {
    this.snapshotInfos.set(info.index, info);
    // Keep the ones that may still be on disk or on their way there.
    const floor = Math.min(this.deps.storage.snapshotAt, info.index);
    for (const index of this.snapshotInfos.keys()) if (index < floor) this.snapshotInfos.delete(index);
  }

  private takeSnapshot(): Promise<number> {
    const storage = this.deps.storage;
    const index = this.kv.applied;
    if (index <= storage.snapshotAt) return Promise.resolve(storage.snapshotAt);
    // The core drops only its in-memory copy of the log; the disk keeps it until the snapshot
    // below is durable, so a crash in between loses nothing.
    const meta = this.deps.replica.compact(index);
    if (meta === undefined) return Promise.resolve(storage.snapshotAt);
    // The store is frozen as of `index` and serialised a part at a time while entries go on
    // being applied (to an overlay, merged once the last part is taken): a large state does not
    // stop the node. Storage has the snapshot from here on, before anything else reaches the
    // core (see `compact`): if a peer needs it before it is encoded, storage finishes it then.
    this.noteSnapshot({ index, config: meta.config, keys: this.kv.size });
    const snapshot = { ...meta, data: this.kv.freeze() };
    // The status is otherwise refreshed only by a drain; an admin caller reads it next.
    this.lastStatus = this.deps.replica.status();
    const started = performance.now();
    const done = storage.saveSnapshot(snapshot).then(
      () => {
        this.snapshotting = undefined;
        this.deps.metrics?.snapshots.inc();
        this.log.info({ index, bytes: storage.snapshotBytes, ms: Math.round(performance.now() - started) }, 'snapshot taken');
        return index;
      },
      (err: unknown) => {
        this.snapshotting = undefined;
        // A full disk: storage keeps the snapshot and writes it once there is room (the log it
        // replaces stays on disk meanwhile); anything else is fatal.
        if (err instanceof DiskFullError) this.log.warn({ index, err: err.message }, 'snapshot waits for space on a full disk');
        else this.fatal(err);
        throw err;
      },
    );
    this.snapshotting = done;
    return done;
  }

  /** Stops admitting requests; existing ones still complete. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Resolves when no request is pending, or after `graceMs`. */
  async settle(graceMs: number): Promise<void> {
    const end = this.now() + graceMs;
    while (this.pendingCount > 0 && this.now() < end) await new Promise<void>((r) => this.scheduler.after(20, r));
  }

  /**
   * Stops the driver, failing whatever is still pending, and closes storage once the write in
   * flight (if any) has finished; resolves when it is closed.
   */
  stop(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.stopped = true;
    this.failAll(() => new ShuttingDownError());
    return this.deps.storage.close().catch((err: unknown) => this.log.error({ err }, 'closing storage failed'));
  }

  // ------------------------------------------------------------------------ internals

  private admissionError(): Error | undefined {
    if (this.stopped || !this.accepting) return new ShuttingDownError();
    if (this.diskFull !== undefined) return this.diskFull;
    if (this.pendingCount >= this.deps.limits.maxPendingRequests) return new BusyError(`${this.pendingCount} requests pending`);
    return undefined;
  }

  private adminResult(result: AdminResult): void {
    if (!result.ok) throw this.adminError(result);
  }

  private adminError(refusal: Extract<AdminResult, { ok: false }>): Error {
    return refusal.reason === 'notLeader' ? this.notLeader() : new AdminRefusedError(refusal.reason, refusal.error);
  }

  private notLeader(): NotLeaderError {
    const leader = this.lastStatus.leader;
    return new NotLeaderError(leader, leader === undefined ? undefined : this.deps.clientAddress(leader));
  }

  private refusalError(refusal: ProposeRefusal): Error {
    switch (refusal.reason) {
      case 'notLeader':
        return new NotLeaderError(refusal.leader, refusal.leader === undefined ? undefined : this.deps.clientAddress(refusal.leader));
      case 'busy':
        return new BusyError('the leader has too many proposals queued');
      case 'transferring':
        return new NotLeaderError(undefined, undefined, 'leadership is being transferred');
      case 'reconfiguring':
        return new BusyError('a reconfiguration is being finalized');
    }
  }

  /**
   * Drains once the current callback is done. With no Ready in flight (an idle node: the
   * single-client case) that is right after it, as a microtask: the drain then runs in the
   * same phase of the event loop as the socket read that caused it, so the HTTP/2 frames it
   * writes (which Node sends from the check phase) leave in this loop iteration, not the next.
   * With a Ready in flight nothing can be taken from the core anyway: the drain waits for the
   * end of the turn (setImmediate), so that everything read in this turn is proposed together.
   */
  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    const run = (): void => {
      this.scheduled = false;
      this.drain();
    };
    if (this.inflight === undefined) this.scheduler.afterCallback(run);
    else this.scheduler.endOfTurn(run);
  }

  private proposeQueued(): void {
    if (this.proposalQueue.length === 0) return;
    const batch = this.proposalQueue;
    this.proposalQueue = [];
    const result = this.deps.replica.propose(batch.map((p) => p.command));
    if (!result.ok) {
      if (result.reason === 'reconfiguring' || result.reason === 'transferring') {
        // A finalize or a leadership handover is in flight: it settles in a few round trips, so
        // the requests wait for it (in order, ahead of newer ones) instead of being refused. The
        // wait is bounded like any other: they count against `maxPendingRequests` and expire
        // after `requestTimeoutMs` (see `expire`). Every drain retries them; the drain that
        // follows the finalize being chosen (or this node losing leadership: then they are
        // refused with a hint to the new leader) settles them.
        this.proposalQueue = batch.concat(this.proposalQueue);
        return;
      }
      const err = this.refusalError(result);
      for (const p of batch) this.settleWrite(p, (w) => w.reject(err));
      return;
    }
    this.deps.metrics?.proposalsBatched.observe(batch.length);
    if (tracing) trace('propose', result.firstSlot);
    batch.forEach((p, i) => {
      p.slot = result.firstSlot + i;
      this.pendingBySlot.set(p.slot, p);
    });
  }

  /**
   * Takes Readies from the replica while none is in flight. A Ready with nothing to persist is
   * finished on the spot; one that needs the disk is handed to storage and finished by
   * `persisted` when the write completes, which drains again. Re-entrant calls are no-ops.
   */
  private drain(): void {
    if (this.draining || this.stopped || this.broken) return;
    this.draining = true;
    try {
      this.proposeQueued();
      const replica = this.deps.replica;
      while (this.inflight === undefined && replica.hasReady()) {
        const rd = replica.ready();
        if (tracing) trace('ready', `e${rd.entries.at(-1)?.slot ?? '-'}:c${rd.committed.at(-1)?.slot ?? '-'}:h${rd.hardState ? 1 : 0}:m${rd.messages.length}`);
        // The leader's accepts and heartbeats go out now, so that followers write in parallel
        // with our own write; everything else waits until the Ready is durable.
        let late = rd.messages;
        if (rd.messages.some(sendableBeforePersist)) {
          this.send(rd.messages.filter(sendableBeforePersist));
          // On the wire before we encode and write our own copy, so that the followers' writes
          // start as early as possible.
          this.flush();
          late = rd.messages.filter((m) => !sendableBeforePersist(m));
        }
        if (!rd.hardState && !rd.snapshot && rd.entries.length === 0) {
          this.finish(rd, late);
        } else {
          this.inflight = rd;
          const started = performance.now();
          const syncsBefore = this.deps.storage.syncCount;
          this.persist(rd, late, started, syncsBefore);
        }
        // Proposals that arrived while applying (callbacks run synchronously) go in the next round.
        this.proposeQueued();
      }
      this.flush();
      this.afterDrain();
    } catch (err) {
      this.fatal(err);
    } finally {
      this.draining = false;
    }
  }

  /**
   * Hands the in-flight Ready to storage. A full disk is not fatal: storage took the write back
   * whole, so the Ready stays in flight (nothing of it is sent late, applied or acknowledged),
   * the requests waiting here fail with `DiskFullError` (their outcome is unknown: retrying with
   * the same client id and seq is safe), and the same Ready is written again later.
   */
  private persist(rd: Ready, late: readonly Message[], started: number, syncsBefore: number): void {
    this.deps.storage.persist(rd).then(
      () => this.persisted(rd, late, started, syncsBefore),
      (err: unknown) => {
        if (!(err instanceof DiskFullError) || this.stopped || this.broken) return this.fatal(err);
        if (this.diskFull === undefined) {
          this.log.warn({ err: err.message, retryMs: DISK_FULL_RETRY_MS }, 'disk full: writes wait for space, requests are refused');
          this.failPending(() => err);
        }
        this.diskFull = err;
        this.scheduler.after(DISK_FULL_RETRY_MS, () => {
          if (!this.stopped && !this.broken) this.persist(rd, late, started, syncsBefore);
        });
      },
    );
  }

  /** The in-flight Ready is durable: send the rest of its messages, apply it, drain the next. */
  private persisted(rd: Ready, late: readonly Message[], started: number, syncsBefore: number): void {
    if (this.stopped || this.broken) return;
    if (this.diskFull !== undefined) {
      this.diskFull = undefined;
      this.log.info({}, 'disk has space again: writes resumed');
    }
    if (tracing) trace('persisted', rd.entries.at(-1)?.slot ?? '-');
    const m = this.deps.metrics;
    if (m) {
      m.walSyncSeconds.observe((performance.now() - started) / 1000);
      m.walSyncs.inc(this.deps.storage.syncCount - syncsBefore);
      if (rd.entries.length > 0) m.readyBatchEntries.observe(rd.entries.length);
    }
    this.inflight = undefined;
    try {
      this.finish(rd, late);
    } catch (err) {
      this.fatal(err);
      return;
    }
    // The only moment under load when no Ready is outstanding: snapshot here if one is due.
    this.maybeSnapshot();
    this.drain();
  }

  /** The rest of a Ready once it is durable: messages, apply, reads, advance. */
  private finish(rd: Ready, late: readonly Message[]): void {
    if (late.length > 0) this.send(late);
    this.apply(rd);
    this.deps.replica.advance(rd);
  }

  private send(messages: readonly Message[]): void {
    this.deps.sink.send(messages);
    this.unflushed = true;
  }

  /** Puts the messages sent so far on the wire (see `MessageSink.flush`). */
  private flush(): void {
    if (!this.unflushed) return;
    this.unflushed = false;
    this.deps.sink.flush?.();
  }

  /** Storage (or the core) failed: stop doing anything and let the process exit. */
  private fatal(err: unknown): void {
    if (this.broken) return;
    this.broken = true;
    this.deps.onFatal(err);
  }

  private apply(rd: Ready): void {
    if (rd.snapshot && rd.snapshot.index > this.kv.applied) {
      this.kv = KvStore.restore(rd.snapshot.data);
      this.noteSnapshot({ index: rd.snapshot.index, config: rd.snapshot.config, keys: this.kv.size });
      // Results of slots inside the snapshot are not known here (the session table has them).
      for (const [slot, p] of this.pendingBySlot) {
        if (slot <= rd.snapshot.index) this.settleWrite(p, (w) => w.reject(new OutcomeUnknownError('state replaced by a snapshot')));
      }
      this.log.info({ index: rd.snapshot.index }, 'state machine restored from a snapshot');
    }
    for (const entry of rd.committed) this.applyEntry(entry);
    for (const rs of rd.readStates) {
      if (rs.index <= this.kv.applied) this.completeRead(rs.id);
      else this.readsAwaitingApply.push({ id: rs.id, index: rs.index });
    }
    if (this.readsAwaitingApply.length > 0) {
      const still: Array<{ id: number; index: number }> = [];
      for (const r of this.readsAwaitingApply) {
        if (r.index <= this.kv.applied) this.completeRead(r.id);
        else still.push(r);
      }
      this.readsAwaitingApply = still;
    }
    for (const id of rd.droppedReads) {
      const read = this.pendingReads.get(id);
      if (read) {
        this.pendingReads.delete(id);
        read.waiter.reject(this.notLeader());
      }
    }
  }

  private applyEntry(entry: Entry): void {
    if (entry.slot <= this.kv.applied) return; // covered by a snapshot installed in this Ready
    const result = this.kv.apply(entry);
    const command = entry.command;
    if (command.kind === 'finalize') {
      for (let i = this.finalizeWaiters.length - 1; i >= 0; i--) {
        const w = this.finalizeWaiters[i] as Waiter<void> & { epoch: number };
        if (command.config.epoch >= w.epoch) {
          this.finalizeWaiters.splice(i, 1);
          w.resolve();
        }
      }
    }
    if (command.kind === 'kv') {
      if (tracing) trace('apply', entry.slot);
      const pending = this.pendingByKey.get(sessionKey(command.client, command.seq));
      if (pending && result) this.settleWrite(pending, (w) => w.resolve(result));
    }
    const atSlot = this.pendingBySlot.get(entry.slot);
    if (atSlot) {
      // Our proposal for this slot lost to another value (a new leader filled it).
      this.settleWrite(atSlot, (w) => w.reject(new OutcomeUnknownError(`slot ${entry.slot} chose another command`)));
    }
  }

  private completeRead(id: number): void {
    const read = this.pendingReads.get(id);
    if (!read) return;
    this.pendingReads.delete(id);
    read.waiter.resolve();
  }

  private settleWrite(p: PendingWrite, settle: (w: Waiter<KvResult>) => void): void {
    this.pendingByKey.delete(p.key);
    if (p.slot !== undefined && this.pendingBySlot.get(p.slot) === p) this.pendingBySlot.delete(p.slot);
    for (const w of p.waiters) settle(w);
  }

  private afterDrain(): void {
    const status = this.deps.replica.status();
    this.lastStatus = status;
    const isLeader = status.role === 'leader';
    if (this.wasLeader && !isLeader) {
      // Proposals of a deposed leader may still be chosen by its successor; the client
      // retries with the same (client, seq) and the session table keeps it exactly-once.
      const err = this.notLeader();
      for (const p of [...this.pendingBySlot.values()]) this.settleWrite(p, (w) => w.reject(err));
      this.log.info({ leader: status.leader }, 'lost leadership; pending requests failed over');
    }
    if (!this.wasLeader && isLeader) this.log.info({ ballot: status.ballot }, 'became leader');
    this.wasLeader = isLeader;
    // Elections are rare and are what write stalls are made of: say when one starts here.
    const isCandidate = status.role === 'candidate';
    if (isCandidate && !this.wasCandidate) this.log.info({ epoch: status.config.epoch, ballot: status.ballot }, 'campaigning');
    this.wasCandidate = isCandidate;
    if (this.inflight === undefined) this.maybeSnapshot();
    const m = this.deps.metrics;
    if (m) {
      m.commitIndex.set(status.commit);
      m.appliedIndex.set(this.kv.applied);
      m.isLeader.set(isLeader ? 1 : 0);
      m.ready.set(this.ready ? 1 : 0);
      m.clientPending.set(this.pendingCount);
    }
  }

  /** Takes a snapshot that was asked for or is due; only call with no Ready outstanding. */
  private maybeSnapshot(): void {
    const request = this.snapshotRequest;
    if (request) {
      this.snapshotRequest = undefined;
      this.takeSnapshot().then(request.resolve, request.reject);
    } else if (this.snapshotDue()) {
      this.takeSnapshot().catch(() => undefined); // a failure is fatal (see takeSnapshot)
    }
  }

  /**
   * A snapshot is due when enough entries were applied since the last one AND the log has
   * grown by at least the last snapshot's size since. The second condition keeps the cost of
   * snapshots (rewriting the whole state) at most that of the log writes they let us drop: the
   * state grows, and a fixed entry threshold alone would rewrite tens of MB every few seconds.
   */
  private snapshotDue(): boolean {
    if (this.snapshotting) return false;
    const storage = this.deps.storage;
    return this.kv.applied - storage.snapshotAt >= this.deps.limits.snapshotThreshold && storage.logBytesSinceSnapshot >= storage.snapshotBytes;
  }

  private expire(): void {
    const now = this.now();
    const timeout = this.deps.limits.requestTimeoutMs;
    for (const p of [...this.pendingByKey.values()]) {
      const expired = p.waiters.filter((w) => w.expiresAt <= now);
      if (expired.length === 0) continue;
      for (const w of expired) w.reject(new RequestTimeoutError(timeout));
      const left = p.waiters.filter((w) => w.expiresAt > now);
      if (left.length === 0) {
        // Forget it: if it is chosen later the session table still records its result.
        this.pendingByKey.delete(p.key);
        if (p.slot !== undefined && this.pendingBySlot.get(p.slot) === p) this.pendingBySlot.delete(p.slot);
        const q = this.proposalQueue.indexOf(p);
        if (q >= 0) this.proposalQueue.splice(q, 1);
      } else {
        p.waiters.splice(0, p.waiters.length, ...left);
      }
    }
    for (const [id, read] of this.pendingReads) {
      if (read.waiter.expiresAt <= now) {
        this.pendingReads.delete(id);
        read.waiter.reject(new RequestTimeoutError(timeout));
      }
    }
    for (let i = this.finalizeWaiters.length - 1; i >= 0; i--) {
      const w = this.finalizeWaiters[i] as Waiter<void>;
      if (w.expiresAt <= now) {
        this.finalizeWaiters.splice(i, 1);
        w.reject(new RequestTimeoutError(timeout));
      }
    }
  }

  /** Fails every waiting client request (not the admin waits: they time out on their own). */
  private failPending(error: () => Error): void {
    for (const p of [...this.pendingByKey.values()]) this.settleWrite(p, (w) => w.reject(error()));
    this.proposalQueue = [];
    for (const read of this.pendingReads.values()) read.waiter.reject(error());
    this.pendingReads.clear();
  }

  private failAll(error: () => Error): void {
    for (const p of [...this.pendingByKey.values()]) this.settleWrite(p, (w) => w.reject(error()));
    this.proposalQueue = [];
    for (const read of this.pendingReads.values()) read.waiter.reject(error());
    this.pendingReads.clear();
    for (const w of this.finalizeWaiters.splice(0)) w.reject(error());
  }
}
