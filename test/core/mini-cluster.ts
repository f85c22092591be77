/**
 * A minimal synchronous, lossless in-process cluster for unit tests and the core benchmark.
 * The seeded simulator (test/sim) is the adversarial one; this one is for readable tests.
 */
import { KvStore, type KvResult } from '../../node/src/core/kv.js';
import { freshState, Replica, replicaOptions } from '../../node/src/core/replica.js';
import type { Command, Config, Entry, HardState, Message, NodeId, PersistedState, ReplicaOptions, Snapshot } from '../../node/src/core/types.js';

/** A small deterministic PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What one node keeps on its "disk" (everything is synced here). */
interface Disk {
  hard: HardState;
  snapshot?: Snapshot;
  entries: Map<number, Entry>;
}

/** One member of the mini cluster. */
export class MiniNode {
  replica: Replica;
  kv = new KvStore();
  disk: Disk;
  results = new Map<number, KvResult | undefined>();
  readsDone: number[] = [];
  readsDropped: number[] = [];
  applied: Entry[] = [];

  constructor(readonly id: NodeId, state: PersistedState, private readonly optionsFor: (id: NodeId, joining: boolean) => ReplicaOptions, joining: boolean) {
    this.disk = { hard: state.hard, snapshot: state.snapshot, entries: new Map(state.entries.map((e) => [e.slot, e])) };
    this.replica = new Replica(optionsFor(id, joining), state);
  }

  /** Snapshots the state machine and compacts the log, as a driver does: the disk gets the snapshot. */
  compact(): void {
    const meta = this.replica.compact(this.kv.applied);
    if (meta === undefined) return;
    this.disk.snapshot = { ...meta, data: this.kv.snapshot() };
    for (const s of [...this.disk.entries.keys()]) if (s <= meta.index) this.disk.entries.delete(s);
  }

  /** Restarts from the disk, as after kill -9 (nothing is lost here: every write is synced). */
  restart(): void {
    const entries = [...this.disk.entries.values()].sort((a, b) => a.slot - b.slot);
    this.replica = new Replica(this.optionsFor(this.id, false), { hard: this.disk.hard, snapshot: this.disk.snapshot, entries });
    this.kv = this.disk.snapshot ? KvStore.restore(this.disk.snapshot.data) : new KvStore();
  }
}

/** A cluster of MiniNodes joined by a perfect network with optional partitions. */
export class MiniCluster {
  readonly nodes = new Map<NodeId, MiniNode>();
  private queue: Message[] = [];
  readonly down = new Set<NodeId>();
  /** Pairs that cannot talk ("a-b"). */
  readonly cut = new Set<string>();
  /** Rewrites (or drops, by returning undefined) each message about to be delivered. */
  intercept: ((m: Message) => Message | undefined) | undefined;
  delivered = 0;
  private readonly random: () => number;

  constructor(seed = 1, private readonly tuning: Partial<ReplicaOptions> = {}) {
    this.random = seededRandom(seed);
  }

  private options = (id: NodeId, joining: boolean): ReplicaOptions =>
    replicaOptions({ id, random: this.random, snapshotData: (index) => this.snapshotData(id, index), electionTimeoutTicks: 10, heartbeatTicks: 2, joining, ...this.tuning });

  private snapshotData(id: NodeId, index: number): string | undefined {
    const snapshot = this.nodes.get(id)?.disk.snapshot;
    return snapshot?.index === index ? snapshot.data : undefined;
  }

  /** Adds a node with a fresh disk; `unregistered` as a new server started by the operator. */
  add(id: NodeId, config: Config, joining = false, unregistered = false): MiniNode {
    const fresh = freshState(config);
    const state = unregistered ? { ...fresh, hard: { ...fresh.hard, unregistered: true as const } } : fresh;
    const node = new MiniNode(id, state, this.options, joining);
    this.nodes.set(id, node);
    return node;
  }

  /** Starts `ids` as a brand-new quorum on {epoch 1, members ids}. */
  static bootstrap(ids: NodeId[], seed = 1, tuning: Partial<ReplicaOptions> = {}): MiniCluster {
    const c = new MiniCluster(seed, tuning);
    for (const id of ids) c.add(id, { epoch: 1, members: ids });
    return c;
  }

  node(id: NodeId): MiniNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** Drains every node's Ready: persist, send, apply. */
  process(): void {
    for (const n of this.nodes.values()) {
      if (this.down.has(n.id)) continue;
      while (n.replica.hasReady()) {
        const rd = n.replica.ready();
        if (rd.hardState) n.disk.hard = rd.hardState;
        if (rd.snapshot) {
          n.disk.snapshot = rd.snapshot;
          for (const s of [...n.disk.entries.keys()]) if (s <= rd.snapshot.index) n.disk.entries.delete(s);
          n.kv = KvStore.restore(rd.snapshot.data);
        }
        for (const e of rd.entries) n.disk.entries.set(e.slot, e);
        this.queue.push(...rd.messages);
        for (const e of rd.committed) {
          n.applied.push(e);
          const r = n.kv.apply(e);
          if (e.command.kind === 'kv') n.results.set(e.slot, r);
        }
        for (const r of rd.readStates) n.readsDone.push(r.id);
        n.readsDropped.push(...rd.droppedReads);
        n.replica.advance(rd);
      }
    }
  }

  /** Delivers all queued messages (and whatever they cause) until the network is quiet. */
  deliverAll(maxRounds = 10_000): void {
    for (let i = 0; i < maxRounds; i++) {
      this.process();
      if (this.queue.length === 0) return;
      const batch = this.queue;
      this.queue = [];
      for (const original of batch) {
        const m = this.intercept === undefined ? original : this.intercept(original);
        if (m === undefined) continue;
        if (this.down.has(m.to) || this.down.has(m.from) || this.cut.has(`${m.from}-${m.to}`)) continue;
        const target = this.nodes.get(m.to);
        if (target === undefined) continue;
        target.replica.step(m);
        this.delivered++;
      }
    }
    throw new Error('network did not go quiet');
  }

  /** Ticks every live node once and delivers everything. */
  tick(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) if (!this.down.has(n.id)) n.replica.tick();
      this.deliverAll();
    }
  }

  /** Ticks until some node leads (and returns it) or gives up. */
  waitLeader(maxTicks = 500, among?: NodeId[]): MiniNode {
    for (let i = 0; i < maxTicks; i++) {
      const l = this.leader(among);
      if (l !== undefined) return l;
      this.tick();
    }
    throw new Error('no leader elected');
  }

  leader(among?: NodeId[]): MiniNode | undefined {
    const leaders = [...this.nodes.values()].filter(
      (n) => !this.down.has(n.id) && n.replica.status().role === 'leader' && (among === undefined || among.includes(n.id)),
    );
    // With several self-declared leaders (a stale one not yet deposed) prefer the highest ballot.
    leaders.sort((a, b) => b.replica.status().ballot.round - a.replica.status().ballot.round);
    return leaders[0];
  }

  partition(a: NodeId[], b: NodeId[]): void {
    for (const x of a) for (const y of b) { this.cut.add(`${x}-${y}`); this.cut.add(`${y}-${x}`); }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Proposes a put on the leader and runs until it is applied there; returns the slot. */
  put(key: string, value: string, client = 'c', seq?: number): number {
    const l = this.waitLeader();
    const command: Command = { kind: 'kv', client, seq: seq ?? this.nextSeq(client), op: { type: 'put', key, value } };
    const r = l.replica.propose([command]);
    if (!r.ok) throw new Error(`propose refused: ${r.reason}`);
    this.deliverAll();
    for (let i = 0; i < 100 && l.kv.applied < r.firstSlot; i++) this.tick();
    if (l.kv.applied < r.firstSlot) throw new Error(`slot ${r.firstSlot} not applied`);
    return r.firstSlot;
  }

  private seqs = new Map<string, number>();
  private nextSeq(client: string): number {
    const s = (this.seqs.get(client) ?? 0) + 1;
    this.seqs.set(client, s);
    return s;
  }

  /** Checks that every pair of nodes applied the same command at every slot both applied. */
  assertAgreement(): void {
    const bySlot = new Map<number, string>();
    for (const n of this.nodes.values()) {
      for (const e of n.applied) {
        const k = JSON.stringify(e.command);
        const seen = bySlot.get(e.slot);
        if (seen !== undefined && seen !== k) throw new Error(`slot ${e.slot}: ${seen} vs ${k} on node ${n.id}`);
        bySlot.set(e.slot, k);
      }
    }
  }
}
