import { KvStore, type KvResult } from '../../node/src/core/kv.js';
import { sendableBeforePersist } from '../../node/src/core/types.js';
import type { Config, Entry, KvOp, Message, NodeId, PersistedState, ProposeRefusal, Ready, ReplicaApi, ReplicaOptions, Snapshot } from '../../node/src/core/types.js';
import { SimDisk } from './disk.js';
import type { Rng } from './rng.js';

/** Builds a replica; the world injects the real `Replica` (or a fake in tests). */
export type ReplicaFactory = (options: ReplicaOptions, state: PersistedState) => ReplicaApi;

/** What the driver reports to the checkers and the trace. */
export interface NodeObserver {
  /** `entry` was handed to the state machine of `node` as chosen. */
  committed(node: NodeId, entry: Entry): void;
  /** `node`'s state machine serialised itself at `index` (a compaction or an installed snapshot). */
  stateAt(node: NodeId, index: number, data: string): void;
  /** The driver saw the core break its contract (e.g. a gap in committed entries). */
  contractViolation(node: NodeId, what: string): void;
}

/** The answer to a client request sent to one node. */
export type NodeReply =
  | { readonly kind: 'result'; readonly result: KvResult }
  | { readonly kind: 'refused'; readonly refusal: ProposeRefusal }
  /** The read was dropped (lost leadership): retry elsewhere. */
  | { readonly kind: 'dropped' };

/** Tunables of one simulated node. */
export interface SimNodeOptions {
  readonly replica: Omit<ReplicaOptions, 'id' | 'random' | 'joining' | 'snapshotData'>;
  /** Compact the log every this many applied slots (small, so that snapshots get exercised). */
  readonly compactEverySlots: number;
  /** The cluster's first configuration: the last finalized config of a node without a snapshot. */
  readonly genesis: Config;
  /**
   * Test-only mutation: answer reads at once from the local store, on any node, skipping read
   * index. Stale reads follow, and the linearizability checker must catch them.
   */
  readonly unsafeLocalReads?: boolean;
  /**
   * Probability that a Ready needing fsync keeps its write in flight for 1..3 ticks, as the real
   * node's asynchronous group commit does: the leader's accepts and heartbeats go out before
   * its own write is durable, and a crash in that window loses the write. Default 0.
   */
  readonly slowFsyncChance?: number;
}

/**
 * The driver of one replica: the loop a real node runs around the pure core. It feeds ticks and
 * messages, persists each `Ready` to its `SimDisk`, sends, applies to a `KvStore`, serves reads,
 * answers the clients that proposed through it, and compacts the log now and then.
 *
 * A crash throws away everything in memory (the replica, the store, the waiting clients) and the
 * unsynced part of the disk; a restart rebuilds the replica from the durable part.
 */
export class SimNode {
  private replicaOrNull: ReplicaApi | undefined;
  private kv = new KvStore();
  /** The last finalized configuration applied here, recorded in local snapshots. */
  private finalized: Config;
  /** Proposals waiting to be applied, by client (a client has at most one request in flight). */
  private readonly writes = new Map<string, { seq: number; reply: (r: NodeReply) => void }>();
  /** Reads started on the core, by read id. */
  private readonly reads = new Map<number, { key: string; index?: number; reply: (r: NodeReply) => void }>();

  constructor(
    readonly id: NodeId,
    readonly disk: SimDisk,
    /** Started as a new member of an expansion: the core must catch up before it campaigns. */
    readonly joining: boolean,
    private readonly options: SimNodeOptions,
    private readonly factory: ReplicaFactory,
    private readonly rng: Rng,
    private readonly observer: NodeObserver,
  ) {
    this.finalized = options.genesis;
    this.start();
  }

  /** Creates a node with a fresh disk holding `state`. */
  static create(id: NodeId, state: PersistedState, joining: boolean, options: SimNodeOptions, factory: ReplicaFactory, rng: Rng, observer: NodeObserver): SimNode {
    return new SimNode(id, new SimDisk(state), joining, options, factory, rng, observer);
  }

  /** True while the process runs. */
  get up(): boolean {
    return this.replicaOrNull !== undefined;
  }

  /** The running core; throws when crashed. */
  get replica(): ReplicaApi {
    if (this.replicaOrNull === undefined) throw new Error(`node ${this.id} is down`);
    return this.replicaOrNull;
  }

  /** The last slot applied to the state machine. */
  get applied(): number {
    return this.kv.applied;
  }

  /** The state machine's serialised state (for convergence checks). */
  stateData(): string {
    return this.kv.snapshot();
  }

  /** Kills the process: memory and unsynced writes are lost; waiting clients never hear back. */
  crash(): number {
    this.replicaOrNull = undefined;
    this.inflight = undefined;
    this.writes.clear();
    this.reads.clear();
    return this.disk.crash(this.rng);
  }

  /** Starts the process from the durable state. */
  start(): void {
    const state = this.disk.load();
    this.kv = state.snapshot === undefined ? new KvStore() : KvStore.restore(state.snapshot.data);
    this.finalized = state.snapshot?.config ?? this.options.genesis;
    // A node started new keeps its "joining" flag until it has something durable from a leader:
    // the pod's arguments do not change across restarts, and a caught-up node loses nothing by it.
    const joining = this.joining && state.hard.commit === 0 && state.snapshot === undefined;
    const random = this.rng.fork(this.id);
    const snapshotData = (index: number): string | undefined => this.disk.snapshotData(index);
    this.replicaOrNull = this.factory({ ...this.options.replica, id: this.id, joining, random: () => random.float(), snapshotData }, state);
  }

  /** Steps delivered messages, ticks once, then drains every Ready. */
  run(messages: readonly Message[], tick: boolean, send: (m: Message) => void): void {
    const replica = this.replica;
    for (const m of messages) replica.step(m);
    if (tick) {
      replica.tick();
      if (this.inflight !== undefined && --this.inflight.ticksLeft <= 0) {
        const rd = this.inflight.rd;
        this.inflight = undefined;
        this.complete(replica, rd, send, true);
      }
    }
    this.drain(send);
  }

  /** A Ready whose write is "in flight" (an fsync not yet returned); the core batches meanwhile. */
  private inflight: { rd: Ready; ticksLeft: number; earlySent: true } | undefined;

  /** Processes Ready batches until the core has nothing more (persist, send, apply, reads, advance). */
  drain(send: (m: Message) => void): void {
    const replica = this.replicaOrNull;
    if (replica === undefined) return;
    let rounds = 0;
    while (replica.hasReady()) {
      if (++rounds > 1000) {
        this.observer.contractViolation(this.id, 'hasReady() stayed true for 1000 rounds');
        return;
      }
      if (this.inflight !== undefined) return;
      const rd = replica.ready();
      this.disk.write({ hardState: rd.hardState, snapshot: rd.snapshot, entries: rd.entries }, false);
      if (rd.mustSync && this.rng.chance(this.options.slowFsyncChance ?? 0)) {
        // As the real driver: the leader's accepts and heartbeats leave before its own write
        // is durable; the rest waits for the write.
        for (const m of rd.messages) if (sendableBeforePersist(m)) send(m);
        this.inflight = { rd, ticksLeft: 1 + this.rng.int(3), earlySent: true };
        return;
      }
      this.complete(replica, rd, send, false);
    }
    this.maybeCompact(replica);
  }

  /** The write of `rd` is durable: send the rest, apply, serve reads, advance. */
  private complete(replica: ReplicaApi, rd: Ready, send: (m: Message) => void, earlySent: boolean): void {
    if (rd.mustSync) this.disk.sync();
    // With an instant write, early or late makes no difference: keep the Ready's order.
    for (const m of rd.messages) if (!earlySent || !sendableBeforePersist(m)) send(m);
    if (rd.snapshot !== undefined) this.install(rd.snapshot);
    for (const entry of rd.committed) this.apply(entry);
    for (const rs of rd.readStates) {
      const read = this.reads.get(rs.id);
      if (read !== undefined) read.index = rs.index;
    }
    for (const id of rd.droppedReads) {
      const read = this.reads.get(id);
      this.reads.delete(id);
      read?.reply({ kind: 'dropped' });
    }
    replica.advance(rd);
    this.serveReads();
  }

  /** Client write: proposes the command here; the reply comes when it is applied here. */
  propose(client: string, seq: number, op: KvOp, reply: (r: NodeReply) => void): void {
    const r = this.replica.propose([{ kind: 'kv', client, seq, op }]);
    if (!r.ok) {
      reply({ kind: 'refused', refusal: refusalOf(r) });
      return;
    }
    this.writes.set(client, { seq, reply });
  }

  /** Client read through read index: answered from the local store once it applied the read's index. */
  read(id: number, key: string, reply: (r: NodeReply) => void): void {
    if (this.options.unsafeLocalReads === true) {
      reply({ kind: 'result', result: { ok: true, value: this.kv.get(key) ?? null } });
      return;
    }
    const r = this.replica.read(id);
    if (!r.ok) {
      reply({ kind: 'refused', refusal: refusalOf(r) });
      return;
    }
    this.reads.set(id, { key, reply });
  }

  private install(snapshot: Snapshot): void {
    // A snapshot at or below what is applied carries nothing new for the state machine.
    if (snapshot.index <= this.kv.applied) return;
    this.kv = KvStore.restore(snapshot.data);
    this.finalized = snapshot.config;
    this.observer.stateAt(this.id, snapshot.index, snapshot.data);
    // Requests waiting here may have been applied inside the snapshot: their clients will retry.
  }

  private apply(entry: Entry): void {
    this.observer.committed(this.id, entry);
    if (entry.slot <= this.kv.applied) return;
    if (entry.slot !== this.kv.applied + 1) {
      this.observer.contractViolation(this.id, `committed slot ${entry.slot} after applied ${this.kv.applied}`);
      return;
    }
    const result = this.kv.apply(entry);
    const command = entry.command;
    if (command.kind === 'finalize') this.finalized = command.config;
    if (command.kind !== 'kv' || result === undefined) return;
    const waiting = this.writes.get(command.client);
    if (waiting !== undefined && waiting.seq === command.seq) {
      this.writes.delete(command.client);
      waiting.reply({ kind: 'result', result });
    }
  }

  private serveReads(): void {
    for (const [id, read] of this.reads) {
      if (read.index === undefined || read.index > this.kv.applied) continue;
      this.reads.delete(id);
      read.reply({ kind: 'result', result: { ok: true, value: this.kv.get(read.key) ?? null } });
    }
  }

  private maybeCompact(replica: ReplicaApi): void {
    const applied = this.kv.applied;
    if (applied - this.disk.snapshotIndex < this.options.compactEverySlots) return;
    replica.compact(applied);
    const data = this.kv.snapshot();
    // The core only drops its in-memory log; the driver owns the snapshot file. Written synced,
    // as a real node writes the snapshot file and fsyncs it before truncating the log.
    this.disk.write({ snapshot: { index: applied, config: this.finalized, data }, entries: [] }, true);
    this.observer.stateAt(this.id, applied, data);
  }
}

function refusalOf(r: { ok: false } & ProposeRefusal): ProposeRefusal {
  const { ok: _ok, ...refusal } = r;
  return refusal as ProposeRefusal;
}
