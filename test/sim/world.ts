import { ZERO_BALLOT, type Config, type Message, type NodeId, type PersistedState, type ReplicaStatus } from '../../node/src/core/types.js';
import { AgreementChecker } from './agreement.js';
import { Network } from './network.js';
import { SimNode, type ReplicaFactory, type SimNodeOptions } from './node.js';
import type { Rng } from './rng.js';
import { Trace } from './trace.js';

/** Tunables of a world. */
export interface WorldOptions {
  readonly node: Omit<SimNodeOptions, 'genesis'>;
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
    // A quarter of the synced writes stay in flight for a few ticks, as with the real asynchronous
    // group commit: early-sent accepts and a crash before the write lands are then exercised.
    slowFsyncChance: 0.25,
  },
  maxInFlightMessages: 5_000,
};

/** Messages a paused node's socket buffer holds; the rest are lost. */
const PAUSE_BUFFER_MESSAGES = 1_000;

/** Compares two configs by value. */
export function sameConfig(a: Config, b: Config): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The durable state of a node that bootstraps a new cluster, or joins one as a new member. */
export function initialState(config: Config, fenceEpoch: number): PersistedState {
  return { hard: { promised: ZERO_BALLOT, config, fenceEpoch, commit: 0 }, entries: [] };
}

/**
 * The simulated cluster: nodes, the network between them, the agreement checker watching every
 * apply, and the trace. Time advances only through {@link World.tick}; every random choice comes
 * from the world's `Rng`, so a run is a function of its seed.
 *
 * Exceptions thrown by the core are caught and recorded as violations (the driver keeps going
 * with the node crashed, so that one bug does not hide the next).
 */
export class World {
  now = 0;
  readonly network: Network<Message>;
  readonly agreement: AgreementChecker;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly roles = new Map<NodeId, string>();
  /** Paused processes (a long GC pause, a stopped VM): the tick until which, and what arrived meanwhile. */
  private readonly paused = new Map<NodeId, { until: number; held: Message[] }>();
  readonly genesis: Config;

  constructor(
    private readonly rng: Rng,
    genesisSize: number,
    private readonly factory: ReplicaFactory,
    readonly trace: Trace = new Trace(),
    private readonly options: WorldOptions = DEFAULT_WORLD_OPTIONS,
    private readonly unsafePlainMajorities = false,
  ) {
    this.network = new Network<Message>(rng.fork(1000), options.maxInFlightMessages);
    this.agreement = new AgreementChecker(() => this.now);
    this.genesis = { epoch: 1, members: range(genesisSize) };
    for (const id of this.genesis.members) this.addNode(id, initialState(this.genesis, 1), false);
  }

  /** Ids of every node that exists (running or crashed), ascending. */
  ids(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  /** The node with `id`, running or crashed. */
  node(id: NodeId): SimNode | undefined {
    return this.nodes.get(id);
  }

  /** The status of a running node; undefined when it is down or gone (an unreachable pod). */
  status(id: NodeId): ReplicaStatus | undefined {
    const n = this.nodes.get(id);
    return n?.up ? n.replica.status() : undefined;
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

  /**
   * Starts a brand-new node with an empty disk holding `config` (a new pod of an expansion);
   * `unregistered`, as the operator starts one: it votes for nobody until registered.
   */
  startNew(id: NodeId, config: Config, fenceEpoch: number, unregistered = false): void {
    if (this.nodes.has(id)) return;
    this.trace.log(this.now, `start node ${id} on ${describeConfig(config)}${unregistered ? ' (unregistered)' : ''}`);
    const fresh = initialState(config, fenceEpoch);
    this.addNode(id, unregistered ? { ...fresh, hard: { ...fresh.hard, unregistered: true } } : fresh, true);
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
    this.nodes.delete(id);
    this.roles.delete(id);
    this.paused.delete(id);
    const fresh = initialState(config, fence);
    this.addNode(id, protect ? { ...fresh, hard: { ...fresh.hard, dataLoss: {} } } : fresh, true);
    this.trace.log(this.now, `node ${id} restarts on an empty disk${protect ? '' : ' (unprotected)'}`);
  }

  /** Stops a node for good and deletes its disk (a removed pod and its volume). */
  remove(id: NodeId): void {
    if (!this.nodes.delete(id)) return;
    this.roles.delete(id);
    this.trace.log(this.now, `remove node ${id} and its disk`);
  }

  /** Crashes a running node. */
  crash(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n?.up) return;
    const lost = n.crash();
    this.roles.delete(id);
    this.paused.delete(id);
    this.trace.log(this.now, `crash node ${id} (lost ${lost} unsynced writes)`);
  }

  /** Restarts a crashed node from its disk. */
  restart(id: NodeId): void {
    const n = this.nodes.get(id);
    if (n === undefined || n.up) return;
    this.guard(id, () => n.start());
    this.trace.log(this.now, `restart node ${id}`);
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
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.agreement.violations.push({ kind: 'exception', tick: this.now, message: `node ${id}: ${message}` });
      const n = this.nodes.get(id);
      if (n?.up) n.crash();
    }
  }

  /** One tick: deliver due messages, tick every running node, drain their Ready batches. */
  tick(): void {
    this.now++;
    this.step(this.network.due(this.now), true);
  }

  /** Delivers every queued message at once, without ticking (scenarios' `deliver-msgs`). */
  deliverAll(): number {
    const messages = this.network.drain();
    this.step(messages, false);
    return messages.length;
  }

  private step(messages: readonly Message[], tick: boolean): void {
    const inbox = new Map<NodeId, Message[]>();
    for (const m of messages) {
      let list = inbox.get(m.to);
      if (list === undefined) inbox.set(m.to, (list = []));
      list.push(m);
    }
    const send = (m: Message): void => this.network.send(m, this.now);
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
      this.guard(id, () => n.run(delivered, tick, send));
    }
    this.noteRoles();
  }

  /** Drains every running node without ticking or delivering (after client calls in scenarios). */
  drainAll(): void {
    const send = (m: Message): void => this.network.send(m, this.now);
    for (const id of this.ids()) {
      const n = this.nodes.get(id) as SimNode;
      if (n.up) this.guard(id, () => n.drain(send));
    }
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

  private addNode(id: NodeId, state: PersistedState, joining: boolean): void {
    const options: SimNodeOptions = {
      ...this.options.node,
      replica: { ...this.options.node.replica, unsafePlainMajorities: this.unsafePlainMajorities },
      genesis: this.genesis,
    };
    let node: SimNode | undefined;
    this.guard(id, () => {
      node = SimNode.create(id, state, joining, options, this.factory, this.rng.fork(id), this.agreement);
    });
    if (node !== undefined) this.nodes.set(id, node);
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
