import { ZERO_BALLOT, type Config, type HardState, type Message, type NodeId, type PersistedState, type Ready, type ReplicaStatus } from '../../node/src/core/types.js';
import { DiskFullError, FRAME_HEADER_BYTES, SEGMENT_MAGIC } from '../../node/src/io/wal.js';
import { AgreementChecker } from './agreement.js';
import { SimDiskError, SimFs, type FaultCounts, type SimFsFaults } from './fs.js';
import { Network } from './network.js';
import { SimNode, type NodeHost, type ReplicaFactory, type SimNodeOptions } from './process.js';
import type { Rng } from './rng.js';
import { Trace } from './trace.js';
import { decode, type Envelope } from './wire.js';

/** Tunables of a world. */
export interface WorldOptions {
  readonly node: SimNodeOptions;
  /** Upper bound on messages in flight in the network. */
  readonly maxInFlightMessages: number;
}

/** Default replica and node tunables for simulation: short timeouts so that runs stay short. */
export const DEFAULT_WORLD_OPTIONS: WorldOptions = {
  node: {
    replica: {
      electionTimeoutTicks: 20,
      heartbeatTicks: 4,
      maxBatchEntries: 16,
      // Small enough that multi-entry batches get split by size too.
      maxBatchBytes: 1024,
      maxInflightPerPeer: 8,
      maxPendingProposals: 64,
      maxPendingReads: 64,
    },
    compactEverySlots: 40,
    // A quarter of the fdatasyncs return only after a few ticks, as with the real asynchronous
    // group commit: early-sent accepts and a crash before the write lands are then exercised.
    slowFsyncChance: 0.25,
    // Small segments, so that rolls and the deletion of compacted segments happen in every run.
    segmentBytesMax: 16 * 1024,
  },
  maxInFlightMessages: 5_000,
};

/** Messages a paused node's socket buffer holds; the rest are lost. */
const PAUSE_BUFFER_MESSAGES = 1_000;
/** Rounds of deferred work one settle may take before the run calls it a livelock. */
const SETTLE_ROUNDS_MAX = 10_000;
/** A process that stopped on its own (fsync failure) is restarted after this many ticks. */
const EXIT_RESTART_TICKS: readonly [number, number] = [5, 40];

/** Lets every pending promise continuation run (nothing else schedules macrotasks during a run). */
const flushMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Compares two configs by value. */
export function sameConfig(a: Config, b: Config): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The durable state of a node that bootstraps a new cluster, or joins one as a new member. */
export function initialState(config: Config, fenceEpoch: number): PersistedState {
  return { hard: { promised: ZERO_BALLOT, config, fenceEpoch, commit: 0 }, entries: [] };
}

/** Offsets of the frames of a log segment (for bit flips that must land in front of one). */
function frameOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  let at = SEGMENT_MAGIC.length;
  while (at + FRAME_HEADER_BYTES <= buf.length) {
    out.push(at);
    at += FRAME_HEADER_BYTES + buf.readUInt32LE(at);
  }
  return out;
}

/** What the disks went through in a run (for the summary: `disk_faults`). */
export interface DiskFaultCounts extends FaultCounts {
  /** Starts refused on a damaged data directory (each after a bit flip). */
  refusedStarts: number;
}

/**
 * The simulated cluster: nodes, the network between them, the agreement checker watching every
 * apply, and the trace. Time advances only through {@link World.tick}; every random choice comes
 * from the world's `Rng`, so a run is a function of its seed.
 *
 * Each node runs the real driver and storage (see process.ts), whose promise continuations run
 * between the simulated events: every step ends with `settle`, which runs the nodes' deferred
 * work and the continuations it causes until nothing is left. Nothing else is asynchronous
 * during a run, so the order is the same on every run of a seed.
 *
 * Exceptions thrown by the core are caught and recorded as violations (the node is crashed and
 * the run goes on, so that one bug does not hide the next).
 */
export class World implements NodeHost {
  now = 0;
  readonly network: Network<Envelope>;
  readonly agreement: AgreementChecker;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly roles = new Map<NodeId, string>();
  /** Paused processes (a long GC pause, a stopped VM): the tick until which, and what arrived meanwhile. */
  private readonly paused = new Map<NodeId, { until: number; held: Envelope[] }>();
  /** Processes that stopped on their own, and the tick at which their container restarts. */
  private readonly exits = new Map<NodeId, number>();
  /** Nodes whose log had a bit flipped: their next start must be refused. */
  private readonly corrupted = new Set<NodeId>();
  /** The fault knobs of every disk (the injector changes them between phases). */
  private diskFaults: Omit<SimFsFaults, 'slowSyncChance'> = { syncFailRate: 0 };
  readonly diskFaultCounts: DiskFaultCounts = { lostWrites: 0, tornWrites: 0, syncFailures: 0, enospc: 0, bitFlips: 0, refusedStarts: 0 };
  readonly genesis: Config;
  /** Drawn from only once a process exits on its own, so that calm runs draw as before. */
  private exitRng: Rng | undefined;

  constructor(
    private readonly rng: Rng,
    genesisSize: number,
    private readonly factory: ReplicaFactory,
    readonly trace: Trace = new Trace(),
    private readonly options: WorldOptions = DEFAULT_WORLD_OPTIONS,
    private readonly unsafePlainMajorities = false,
  ) {
    this.network = new Network<Envelope>(rng.fork(1000), options.maxInFlightMessages);
    this.agreement = new AgreementChecker(() => this.now);
    this.genesis = { epoch: 1, members: range(genesisSize) };
    for (const id of this.genesis.members) this.addNode(id, initialState(this.genesis, 1).hard, false);
  }

  /** Ids of every node that exists (running or crashed), ascending. */
  ids(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  /** The node with `id`, running or crashed. */
  node(id: NodeId): SimNode | undefined {
    return this.nodes.get(id);
  }

  /** The status of a running node as its admin service reports it; undefined when it is down or gone. */
  status(id: NodeId): ReplicaStatus | undefined {
    const n = this.nodes.get(id);
    return n?.up ? n.status() : undefined;
  }

  /** The running node that claims leadership with the highest ballot, if any. */
  leader(): ReplicaStatus | undefined {
    let best: ReplicaStatus | undefined;
    for (const id of this.ids()) {
      const s = this.status(id);
      if (s?.role !== 'leader') continue;
      if (best === undefined || s.ballot.round > best.ballot.round || (s.ballot.round === best.ballot.round && s.ballot.node > best.ballot.node)) best = s;
    }
    return best;
  }

  /** Sets the fsync failure rate of every disk (the fault phase turns it on, the liveness phase off). */
  setDiskFaults(faults: Omit<SimFsFaults, 'slowSyncChance'>): void {
    this.diskFaults = faults;
    for (const n of this.nodes.values()) n.disk.faults.syncFailRate = faults.syncFailRate;
  }

  /** Fills or frees the disk of `id` (ENOSPC on every write while full). */
  setDiskFull(id: NodeId, full: boolean): void {
    const n = this.nodes.get(id);
    if (n === undefined || n.disk.full === full) return;
    n.disk.full = full;
    this.trace.log(this.now, `disk of node ${id} ${full ? 'is full' : 'has space again'}`);
  }

  /**
   * Flips a bit in the log of a crashed node, in front of an intact record: its next start must
   * be refused (and it then loses its disk, as an operator replaces a damaged volume).
   */
  flipBit(id: NodeId): boolean {
    const n = this.nodes.get(id);
    if (n === undefined || n.up) return false;
    const file = n.disk.flipBit('/data/wal', frameOffsets);
    if (file === undefined) return false;
    this.corrupted.add(id);
    this.trace.log(this.now, `bit flip in ${file} of node ${id}`);
    return true;
  }

  /**
   * Starts a brand-new node with an empty disk holding `config` (a new pod of an expansion);
   * `unregistered`, as the operator starts one: it votes for nobody until registered.
   */
  startNew(id: NodeId, config: Config, fenceEpoch: number, unregistered = false): void {
    if (this.nodes.has(id)) return;
    this.trace.log(this.now, `start node ${id} on ${describeConfig(config)}${unregistered ? ' (unregistered)' : ''}`);
    const fresh = initialState(config, fenceEpoch).hard;
    this.addNode(id, unregistered ? { ...fresh, unregistered: true } : fresh, true);
  }

  /**
   * The node loses its disk and comes back empty under its old id, on the configuration it held
   * (what the operator's bootstrap ConfigMap gives a restarted pod). `protect` marks the fresh
   * disk as lost data, as the node does when it starts empty as an existing member; without it
   * the node votes with forgotten promises (acceptor amnesia, for the scenarios that show why).
   */
  wipe(id: NodeId, protect: boolean): void {
    const config = this.status(id)?.config ?? this.leader()?.config ?? this.genesis;
    const fence = config.prior === undefined ? config.epoch : config.epoch - 1;
    this.nodes.get(id)?.stop();
    this.nodes.delete(id);
    this.roles.delete(id);
    this.paused.delete(id);
    this.exits.delete(id);
    this.corrupted.delete(id);
    const fresh = initialState(config, fence).hard;
    this.addNode(id, protect ? { ...fresh, dataLoss: {} } : fresh, true);
    this.trace.log(this.now, `node ${id} restarts on an empty disk${protect ? '' : ' (unprotected)'}`);
  }

  /** Stops a node for good and deletes its disk (a removed pod and its volume). */
  remove(id: NodeId): void {
    const n = this.nodes.get(id);
    if (n === undefined) return;
    n.stop();
    this.nodes.delete(id);
    this.roles.delete(id);
    this.exits.delete(id);
    this.corrupted.delete(id);
    this.trace.log(this.now, `remove node ${id} and its disk`);
  }

  /** Crashes a running node. */
  crash(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n?.up) return;
    this.crashNode(id, n, 'crash');
  }

  private crashNode(id: NodeId, n: SimNode, why: string): void {
    const damage = n.crash();
    this.roles.delete(id);
    this.paused.delete(id);
    this.trace.log(this.now, `${why} node ${id} (lost ${damage.lostWrites} unsynced writes${damage.torn ? ', the last one kept torn' : ''})`);
  }

  /** Restarts a crashed node from its disk; a damaged disk makes it refuse, as the real node does. */
  restart(id: NodeId, quiet = false): void {
    const n = this.nodes.get(id);
    if (n === undefined || n.up) return;
    this.exits.delete(id);
    let started = false;
    this.guard(id, () => {
      started = n.start();
    });
    const failure = n.startFailure;
    if (started) {
      if (this.corrupted.delete(id)) this.violation('storage', `node ${id} started on a log with a flipped bit`);
      if (!quiet) this.trace.log(this.now, `restart node ${id}`);
      return;
    }
    if (failure === undefined) return; // an exception: already a violation
    if (failure.kind === 'refused' && this.corrupted.delete(id)) {
      this.diskFaultCounts.refusedStarts++;
      this.trace.log(this.now, `node ${id} refuses to start: ${failure.error.message}`);
      // The operator replaces the damaged volume: the member comes back empty, protected.
      this.wipe(id, true);
      return;
    }
    if (failure.kind === 'failed' && (failure.error instanceof SimDiskError || failure.error instanceof DiskFullError)) {
      this.trace.log(this.now, `node ${id} failed to start: ${failure.error.message}`);
      this.exits.set(id, this.now + 1);
      return;
    }
    this.violation('storage', `node ${id} cannot start: ${failure.error.stack ?? failure.error.message}`);
  }

  /**
   * Freezes a running node until tick `until`: it neither ticks nor handles messages, which wait
   * in its socket buffer (bounded) and all arrive at once when it resumes. A paused leader wakes
   * up believing it still leads: the classic trap for leases and read shortcuts.
   */
  pause(id: NodeId, until: number): void {
    if (!this.nodes.get(id)?.up || this.paused.has(id)) return;
    this.paused.set(id, { until, held: [] });
    this.trace.log(this.now, `pause node ${id} until ${until}`);
  }

  /** Runs `fn` against a node, turning an exception from the core into a violation. */
  guard(id: NodeId, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.exception(id, error);
    }
  }

  private exception(id: NodeId, error: unknown): void {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.violation('exception', `node ${id}: ${message}`);
    const n = this.nodes.get(id);
    if (n?.up) n.crash();
  }

  private violation(kind: 'exception' | 'storage' | 'contract', message: string): void {
    if (this.agreement.violations.length < 20) this.agreement.violations.push({ kind, tick: this.now, message });
  }

  // ---------------------------------------------------------------- NodeHost

  /** @internal */
  send(envelope: Envelope): void {
    this.network.send(envelope, this.now);
  }

  /** @internal The driver stopped its process (main.ts's onFatal): an injected disk error, or a bug. */
  exited(id: NodeId, err: unknown): void {
    const n = this.nodes.get(id);
    if (!n?.up) return;
    if (err instanceof SimDiskError) {
      this.crashNode(id, n, `storage failure (${err.message}): exit`);
      this.exitRng ??= this.rng.fork(1001);
      this.exits.set(id, this.now + this.exitRng.range(...EXIT_RESTART_TICKS));
      return;
    }
    this.exception(id, err);
  }

  /** Scenarios: sees every message delivered and every Ready a driver takes, as they happen. */
  watcher: { delivered(to: NodeId, m: Message): void; readied(id: NodeId, rd: Ready): void } | undefined;

  /** @internal */
  readied(id: NodeId, rd: Ready): void {
    this.watcher?.readied(id, rd);
  }

  /** @internal */
  harnessError(id: NodeId, err: unknown): void {
    this.violation('exception', `harness callback of node ${id}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }

  // ---------------------------------------------------------------- time

  /** One tick: restart exited processes, deliver due messages, tick every running node, settle. */
  async tick(): Promise<void> {
    this.now++;
    for (const [id, at] of [...this.exits]) if (at <= this.now) this.restart(id);
    await this.step(this.network.due(this.now), true);
  }

  /** Delivers every queued message at once, without ticking (scenarios' `deliver-msgs`). */
  async deliverAll(): Promise<number> {
    const messages = this.network.drain();
    await this.step(messages, false);
    return messages.length;
  }

  private async step(messages: readonly Envelope[], tick: boolean): Promise<void> {
    const inbox = new Map<NodeId, Envelope[]>();
    for (const m of messages) {
      let list = inbox.get(m.to);
      if (list === undefined) inbox.set(m.to, (list = []));
      list.push(m);
    }
    for (const id of this.ids()) {
      const n = this.nodes.get(id) as SimNode;
      const pause = this.paused.get(id);
      if (!n.up) {
        this.paused.delete(id);
        continue;
      }
      let delivered = inbox.get(id) ?? [];
      if (pause !== undefined) {
        if (this.now < pause.until) {
          for (const m of delivered) if (pause.held.length < PAUSE_BUFFER_MESSAGES) pause.held.push(m);
          continue;
        }
        this.paused.delete(id);
        delivered = [...pause.held, ...delivered];
        this.trace.log(this.now, `node ${id} resumes with ${pause.held.length} buffered messages`);
      }
      this.guard(id, () => {
        n.due(this.now);
        for (const m of delivered) {
          let message: Message;
          try {
            message = decode(m);
          } catch (error) {
            this.violation('contract', `node ${id} could not decode a message from ${m.from}: ${String(error)}`);
            continue;
          }
          this.watcher?.delivered(id, message);
          n.receive(message);
        }
        if (tick) n.tick();
      });
    }
    await this.settle();
    this.noteRoles();
  }

  /**
   * Runs the nodes' deferred work (drains, storage completions) and the promise continuations
   * it causes, round after round, until none is left. Paused nodes wait.
   */
  async settle(): Promise<void> {
    for (let round = 0; round < SETTLE_ROUNDS_MAX; round++) {
      await flushMicrotasks();
      let ran = false;
      for (const id of this.ids()) {
        if (this.paused.has(id)) continue;
        const n = this.nodes.get(id) as SimNode;
        if (!n.hasQueued) continue;
        ran = true;
        this.guard(id, () => n.runQueued());
      }
      if (!ran) return;
    }
    this.violation('contract', `deferred work did not settle within ${SETTLE_ROUNDS_MAX} rounds`);
  }

  /** Settles every running node without ticking or delivering (after client calls in scenarios). */
  drainAll(): Promise<void> {
    return this.settle();
  }

  private noteRoles(): void {
    for (const id of this.ids()) {
      const s = this.status(id);
      if (s === undefined) continue;
      const role = s.role === 'leader' ? `leader b${s.ballot.round}.${s.ballot.node}` : s.role;
      if (this.roles.get(id) === role) continue;
      this.roles.set(id, role);
      if (s.role === 'leader' || this.rolesVerbose) this.trace.log(this.now, `node ${id} is ${role} (commit ${s.commit}, ${describeConfig(s.config)})`);
    }
  }

  /** Log every role change, not only elections (verbose runs). */
  rolesVerbose = false;

  private addNode(id: NodeId, bootstrap: HardState, joining: boolean): void {
    const options: SimNodeOptions = {
      ...this.options.node,
      replica: { ...this.options.node.replica, unsafePlainMajorities: this.unsafePlainMajorities },
    };
    const rng = this.rng.fork(id);
    // The disk draws from the node's stream: with no disk fault on, it draws nothing.
    const disk = new SimFs(rng, this.diskFaultCounts);
    disk.faults.syncFailRate = this.diskFaults.syncFailRate;
    const node = new SimNode(id, disk, bootstrap, joining, options, this.factory, rng, this.agreement, this);
    this.nodes.set(id, node);
    this.restart(id, true);
  }
}

/** `e2 [0,1,2,3,4] prior [0,1,2]` */
export function describeConfig(c: Config): string {
  return `e${c.epoch} [${c.members.join(',')}]${c.prior === undefined ? '' : ` prior [${c.prior.join(',')}]`}`;
}

/** [0, 1, ..., n-1] */
export function range(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => i);
}
