/**
 * The data the Paxos core exchanges with its environment: ballots, configurations, commands,
 * log entries, messages, the persisted state and the Ready batch.
 *
 * Everything here is plain data (JSON-serialisable), so that the simulator can copy it, the
 * write-ahead log can store it and the gRPC transport can carry it without a separate schema.
 */

/** A member's id: the StatefulSet ordinal of its pod. */
export type NodeId = number;

/** A Paxos ballot. Ordered by round, then by node id, so two proposers never share one. */
export interface Ballot {
  readonly round: number;
  readonly node: NodeId;
}

/** The ballot below every real ballot (round 0 is never used by a proposer). */
export const ZERO_BALLOT: Ballot = { round: 0, node: -1 };

/**
 * A node's membership configuration. While `prior` is set the node is in the middle of a
 * reconfiguration and, as a proposer, needs a majority of `members` and a majority of `prior`.
 */
export interface Config {
  readonly epoch: number;
  readonly members: readonly NodeId[];
  readonly prior?: readonly NodeId[];
}

/** A key-value operation of the replicated state machine. Values are UTF-8 strings. */
export type KvOp =
  | { readonly type: 'put'; readonly key: string; readonly value: string }
  | { readonly type: 'delete'; readonly key: string }
  /** Compare-and-swap: `expected: null` means "the key must not exist". */
  | { readonly type: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string }
  /** A read through the log (the slow path; reads normally use read index). */
  | { readonly type: 'get'; readonly key: string }
  | { readonly type: 'range'; readonly prefix: string; readonly limit: number };

/** A command chosen into one slot of the replicated log. */
export type Command =
  /** Fills a slot the new leader found empty, and commits its first entry in its own ballot. */
  | { readonly kind: 'noop' }
  /** A client's request; `client` + `seq` make retries idempotent (see the KV sessions). */
  | { readonly kind: 'kv'; readonly client: string; readonly seq: number; readonly op: KvOp }
  /** Ends a reconfiguration: once chosen, every node drops `prior` and adopts this config. */
  | { readonly kind: 'finalize'; readonly config: Config };

/** One accepted (or chosen) value of one slot. */
export interface Entry {
  readonly slot: number;
  readonly ballot: Ballot;
  readonly command: Command;
}

/**
 * What the core keeps in memory of a snapshot: its index and the finalized configuration in
 * force there. The data lives in storage (see `ReplicaOptions.snapshotData`).
 */
export interface SnapshotMeta {
  readonly index: number;
  /** The last finalized configuration at `index` (never has `prior`). */
  readonly config: Config;
}

/** A snapshot of the state machine at `index`, with the finalized configuration in force there. */
export interface Snapshot extends SnapshotMeta {
  /** The state machine's serialised state; opaque to the core. */
  readonly data: string;
}

/** What the core needs persisted, besides accepted entries, before messages are sent. */
export interface HardState {
  /** The highest ballot this acceptor promised. */
  readonly promised: Ballot;
  /** This node's configuration (set by conversion, or by applying a finalize entry). */
  readonly config: Config;
  /**
   * The epoch of the newest finalize entry this node accepted or learned chosen. Proposers
   * whose configuration epoch is below it are fenced off.
   */
  readonly fenceEpoch: number;
  /** The highest slot known chosen, a hint that saves work on restart (not needed for safety). */
  readonly commit: number;
  /**
   * Present when this node started on an empty disk although it was already a member: the
   * promises and votes it made before are forgotten, so counting it in a quorum could let a
   * chosen value be overwritten (acceptor amnesia). See `DataLoss`.
   */
  readonly dataLoss?: DataLoss;
  /**
   * Present on a new server that started on an empty disk and has not been registered yet (see
   * `Replica.register`): it votes for nobody, so that losing its disk before whoever runs the
   * change has recorded that it ran cannot make it forget a vote.
   */
  readonly unregistered?: true;
}

/**
 * How a node that lost its disk may vote again. Until a repair, it votes for nobody and only
 * learns chosen values (it behaves as a crashed acceptor to everyone else, which Paxos
 * tolerates). A repair converts every member to `{epoch: e, members: M, prior: M without this
 * node}`: each quorum of that configuration contains a majority of the others, which intersects
 * every earlier quorum in a node that remembers; from then on this node answers proposers whose
 * configuration epoch is at least `votesFromEpoch` (older proposers could count it in quorums
 * that meet other old quorums only in its forgotten votes). The record is dropped once a
 * finalize of that epoch is known, when every older proposer is fenced off anyway.
 */
export interface DataLoss {
  /** Set by the repair conversion; absent while the node must not vote at all. */
  readonly votesFromEpoch?: number;
}

/** What a node loads from disk on start. */
export interface PersistedState {
  readonly hard: HardState;
  readonly snapshot?: Snapshot;
  /** Accepted entries above the snapshot, in slot order. */
  readonly entries: readonly Entry[];
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's configuration epoch: acceptors fence proposers below their fence epoch. */
  readonly epoch: number;
}

/** Messages between replicas. Batches (`entries`) are bounded by the core's limits. */
export type Message =
  | (MessageBase & { readonly type: 'prevote'; readonly round: number; readonly commit: number })
  | (MessageBase & { readonly type: 'prevoteReply'; readonly round: number; readonly granted: boolean })
  | (MessageBase & { readonly type: 'prepare'; readonly ballot: Ballot; readonly fromSlot: number })
  | (MessageBase & {
      readonly type: 'promise';
      readonly ballot: Ballot;
      readonly ok: boolean;
      /** On refusal: the ballot that beat it. */
      readonly promised: Ballot;
      /** Accepted entries at or above `fromSlot` (only when ok). */
      readonly accepted: readonly Entry[];
      /** The acceptor's commit index; entries at or below it in `accepted` are chosen. */
      readonly commit: number;
      /** The acceptor's snapshot index: when above `fromSlot - 1` the candidate must catch up. */
      readonly snapshotIndex: number;
    })
  | (MessageBase & { readonly type: 'accept'; readonly ballot: Ballot; readonly entries: readonly Entry[]; readonly commit: number })
  | (MessageBase & {
      readonly type: 'accepted';
      readonly ballot: Ballot;
      readonly ok: boolean;
      readonly promised: Ballot;
      /** The slot range acknowledged, inclusive. */
      readonly fromSlot: number;
      readonly toSlot: number;
      readonly commit: number;
    })
  | (MessageBase & { readonly type: 'heartbeat'; readonly ballot: Ballot; readonly commit: number; readonly readId: number })
  | (MessageBase & {
      readonly type: 'heartbeatReply';
      readonly ballot: Ballot;
      readonly ok: boolean;
      readonly promised: Ballot;
      readonly readId: number;
      readonly commit: number;
    })
  | (MessageBase & { readonly type: 'catchupRequest'; readonly fromSlot: number })
  | (MessageBase & {
      readonly type: 'catchupReply';
      /** Chosen entries from the requested slot, bounded in count and bytes. */
      readonly entries: readonly Entry[];
      readonly snapshot?: Snapshot;
      readonly commit: number;
      readonly leaderHint?: NodeId;
    })
  | (MessageBase & { readonly type: 'timeoutNow' })
  | (MessageBase & { readonly type: 'fenced'; readonly fenceEpoch: number; readonly config: Config });

/** The type tag of a message. */
export type MessageType = Message['type'];

/** A linearizable read that may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly id: number;
  readonly index: number;
}

/**
 * One batch of work for the caller, in the order it must be done: persist `hardState`,
 * `snapshot` and `entries` (fsync when `mustSync`), then send `messages`, then apply
 * `committed`, then report `readStates` once applied, then call `advance(ready)`.
 *
 * One exception to "persist, then send": the messages for which `sendableBeforePersist` is
 * true (the leader's `accept` and `heartbeat`) may be sent before or while the Ready is
 * persisted, so that followers write in parallel with the leader. Every other message must
 * wait until the Ready is durable.
 *
 * While a Ready is outstanding (between `ready()` and `advance()`), `step`, `tick`, `propose`
 * and `read` may still be called; their effects go into the next Ready.
 */
export interface Ready {
  readonly hardState?: HardState;
  /** A snapshot received from a peer, to persist and restore the state machine from. */
  readonly snapshot?: Snapshot;
  /** Accepted entries to append (an entry for a slot already stored replaces it). */
  readonly entries: readonly Entry[];
  readonly mustSync: boolean;
  readonly messages: readonly Message[];
  /** Chosen entries to apply, in slot order, contiguous after the last applied one. */
  readonly committed: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** Reads that can no longer be served here (lost leadership); the caller retries elsewhere. */
  readonly droppedReads: readonly number[];
}

/**
 * Whether `m` may be sent before the Ready that carries it is persisted: true only for the
 * leader's `accept` and `heartbeat`.
 *
 * Why this is safe: an accept asks followers to store entries the leader has not yet made
 * durable itself, but the leader's own acceptance is only counted in `advance()`, i.e. after
 * its write, so a slot is never reported chosen on the strength of a vote that a crash could
 * still erase; if the leader dies before its write lands, the followers' copies are simply
 * accepted-but-unchosen values that the next leader's prepare phase recovers (any value a
 * quorum accepted is found, others may be replaced, exactly as if the accept were lost).
 * The ballot these messages carry was made durable before the leader's prepares went out
 * (a candidate persists its own promise before sending prepares), so a restarted node can
 * never reuse that ballot for a different value. A heartbeat asserts only that ballot and a
 * commit index that a quorum of durable acknowledgements already established.
 *
 * Every other message reports or depends on this node's durable state — `promise`,
 * `accepted` and `heartbeatReply` are votes, `prepare` and `prevote` ride on a promise the
 * node must not forget, catch-up, `timeoutNow` and `fenced` carry state the receiver may act
 * on — so it must wait until the Ready is persisted.
 */
export function sendableBeforePersist(m: Message): boolean {
  return m.type === 'accept' || m.type === 'heartbeat';
}

/** A node's role. */
export type Role = 'follower' | 'candidate' | 'leader';

/** What an operator or client may ask about a node (see the admin service). */
export interface ReplicaStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly leader?: NodeId;
  readonly ballot: Ballot;
  readonly config: Config;
  readonly fenceEpoch: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastSlot: number;
  readonly snapshotIndex: number;
  /** True once this node has heard from a leader and holds everything the leader had chosen then. */
  readonly caughtUp: boolean;
  /** On the leader: how far each peer is behind its commit index, in slots. */
  readonly lag: Readonly<Record<number, number>>;
  /** True while a transfer of leadership is in flight. */
  readonly transferring: boolean;
  /**
   * `suspended`: the node lost its disk and votes for nobody until repaired; `repairing`: it
   * votes only for proposers of the repair configuration; `none` otherwise.
   */
  readonly dataLoss: DataLossState;
  /** True while this new server waits to be registered and votes for nobody (`HardState.unregistered`). */
  readonly unregistered: boolean;
}

/** See `ReplicaStatus.dataLoss`. */
export type DataLossState = 'none' | 'suspended' | 'repairing';

/** Tunables, counted in ticks and entries. */
export interface ReplicaOptions {
  readonly id: NodeId;
  /** A follower campaigns after this many ticks without a leader, randomised up to twice it. */
  readonly electionTimeoutTicks: number;
  readonly heartbeatTicks: number;
  /** Upper bound on entries in one accept or catch-up message. */
  readonly maxBatchEntries: number;
  /**
   * Upper bound on the estimated payload bytes of one accept or catch-up message (one entry is
   * always sent, however large), so that batches stay well inside the transport's message limit.
   */
  readonly maxBatchBytes: number;
  /** Upper bound on accept messages in flight to one peer. */
  readonly maxInflightPerPeer: number;
  /** Upper bound on proposals queued at the leader before it refuses more. */
  readonly maxPendingProposals: number;
  /** Upper bound on reads waiting for a quorum round. */
  readonly maxPendingReads: number;
  /** A node that joins an existing quorum: it must catch up before it may campaign. */
  readonly joining: boolean;
  /** Randomness in [0, 1), injected so that runs are reproducible. */
  readonly random: () => number;
  /**
   * The data of the snapshot at `index`, from storage: the one handed to it last, by a `Ready`
   * or after `compact` (from memory while it is still being written, else read back from its
   * file); undefined if storage does not hold it. Called only when a peer needs the snapshot
   * to catch up. The core does not keep snapshot data in memory: it would double the memory
   * of the state machine for the sake of a rare catch-up.
   */
  readonly snapshotData: (index: number) => string | undefined;
  /**
   * Test-only switch: count plain majorities of `members`, ignoring `prior`. It recreates the
   * split brain the design note describes, so the simulator can show it finds it.
   */
  readonly unsafePlainMajorities?: boolean;
}

/** Why a proposal was refused. */
export type ProposeRefusal =
  | { readonly reason: 'notLeader'; readonly leader?: NodeId }
  | { readonly reason: 'busy' }
  | { readonly reason: 'transferring' }
  | { readonly reason: 'reconfiguring' };

/**
 * Why the core refused an admin operation. Callers branch on this code, never on `error`
 * (a message for people: logs, the admin API's status details).
 */
export type AdminRefusalReason =
  /** The operation needs the leader and this node does not lead. */
  | 'notLeader'
  /** `transferLeadership`: the target is neither a member nor a learner here. */
  | 'unknownTarget'
  /** `convert`: the configuration is malformed. */
  | 'invalidConfig'
  /** `convert`: the epoch is not above the current (or the finalized) epoch. */
  | 'staleEpoch'
  /** `finalize`: no joint configuration is in force. */
  | 'noReconfiguration'
  /** `finalize`: the leader cannot propose now (see `ProposeRefusal`). */
  | 'cannotPropose';

/** The result of an admin operation on the core. */
export type AdminResult = { readonly ok: true } | { readonly ok: false; readonly reason: AdminRefusalReason; readonly error: string };

/**
 * The Paxos replica as its driver sees it. It never does I/O: the driver feeds it ticks and
 * messages, then drains `ready()` (persist, send, apply) and calls `advance()`.
 */
export interface ReplicaApi {
  /** One unit of logical time: elections and heartbeats are counted in ticks. */
  tick(): void;
  /** Delivers a message from a peer. Messages for another node or from a fenced epoch are handled safely. */
  step(message: Message): void;
  /** Leader only: queues commands for consecutive slots. Returns the first slot assigned. */
  propose(commands: readonly Command[]): { readonly ok: true; readonly firstSlot: number } | ({ readonly ok: false } & ProposeRefusal);
  /** Leader only: starts a read-index round; `id` comes back in `Ready.readStates` or `droppedReads`. */
  read(id: number): { readonly ok: true } | ({ readonly ok: false } & ProposeRefusal);
  /** Leader only: hands leadership to `target` once it has caught up. */
  transferLeadership(target: NodeId): AdminResult;
  /**
   * The expansion operation on this node: persist `config` and rejoin as a follower (a leader
   * steps down). Repeating it with the same config changes nothing.
   */
  convert(config: Config): AdminResult;
  /** Lets this new server vote (`HardState.unregistered`); a no-op otherwise. */
  register(): AdminResult;
  /** Leader only: proposes the finalize entry for the current joint configuration. */
  finalize(): AdminResult;
  /**
   * The state machine has applied up to `index` and is being serialised into a snapshot: drop
   * the log below. Returns what the snapshot to persist records besides the data (`index` and
   * the finalized configuration in force there), or undefined when the log is already compacted
   * that far. The caller must hand the snapshot to storage before it next calls into the core,
   * so that `snapshotData(index)` can serve it from then on.
   */
  compact(index: number): SnapshotMeta | undefined;
  hasReady(): boolean;
  ready(): Ready;
  /** Acknowledges that `ready` was persisted, sent and applied. */
  advance(ready: Ready): void;
  status(): ReplicaStatus;
}
