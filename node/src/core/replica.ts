/**
 * A Multi-Paxos replica with joint-quorum reconfiguration. Pure: it never sends, writes, sleeps
 * or reads a clock. The driver feeds it ticks and messages and drains `ready()` batches.
 *
 * Roles:
 * - follower: an acceptor that follows the leader of the highest ballot it has seen, and pulls
 *   chosen entries it misses (catch-up) from whoever answers.
 * - candidate: runs pre-vote, then phase 1 for every slot above its commit index.
 * - leader: runs phase 2 for new commands, pipelined and batched per peer.
 *
 * Safety rules from docs/design (online-reconfiguration.md):
 * - a proposer holding `prior` needs a majority of `members` and of `prior` in both phases;
 * - acceptors do not look at configurations, except to fence proposers whose epoch is below
 *   the newest finalized epoch they know;
 * - a finalize entry is a barrier: nothing is proposed above it until it is chosen, and a
 *   leader whose phase-1 quorum is not a quorum of the finalized configuration steps down.
 */
import { compareBallots, sameBallot } from './ballot.js';
import { AcceptorLog } from './log.js';
import { acknowledge, creditCommit, newProgress, type PeerProgress } from './progress.js';
import { ReadIndex } from './read-index.js';
import { PendingReady } from './ready.js';
import { configProblem, isQuorum, quorumIndex, sameConfig, voters } from './quorum.js';
import type {
  DataLoss,
  AdminResult,
  Ballot,
  Command,
  Config,
  Entry,
  HardState,
  Message,
  NodeId,
  PersistedState,
  ProposeRefusal,
  Ready,
  ReplicaApi,
  ReplicaOptions,
  ReplicaStatus,
  Role,
  Snapshot,
  SnapshotMeta,
} from './types.js';
import { ZERO_BALLOT } from './types.js';

/** Sensible defaults for the tunables that have them. */
export const DEFAULT_REPLICA_OPTIONS = {
  electionTimeoutTicks: 10,
  heartbeatTicks: 2,
  maxBatchEntries: 512,
  maxBatchBytes: 4 * 1024 * 1024,
  maxInflightPerPeer: 8,
  maxPendingProposals: 8192,
  maxPendingReads: 4096,
  joining: false,
} as const;

/** Learners (nodes outside the configuration that pull from the leader) kept at most. */
const MAX_LEARNERS = 16;

type Body<T extends Message['type']> = Omit<Extract<Message, { type: T }>, 'from' | 'to' | 'epoch'>;

interface Candidacy {
  readonly ballot: Ballot;
  readonly fromSlot: number;
  readonly promisers: Set<NodeId>;
  /** Per slot: the value to re-propose (chosen if any acceptor knew it chosen, else highest ballot). */
  readonly recovered: Map<number, { ballot: Ballot; command: Command; chosen: boolean }>;
}

/** The replica. See the module comment. */
export class Replica implements ReplicaApi {
  private readonly id: NodeId;
  private readonly opts: ReplicaOptions;

  // Persistent state (mirrored to HardState).
  private promised: Ballot;
  private config: Config;
  private fenceEpoch: number;
  private commit: number;
  private dataLoss: DataLoss | undefined;
  /** See `HardState.unregistered`. */
  private unregistered: boolean;
  /** The configuration of the newest hard state known durable (advanced with mustSync). */
  private durableConfig: Config;
  private readonly log: AcceptorLog;

  // Volatile state.
  private role: Role = 'follower';
  private leader: NodeId | undefined;
  /** The ballot of the leader followed, or our own while candidate or leader. */
  private ballot: Ballot = ZERO_BALLOT;
  private maxRoundSeen: number;
  private now = 0;
  private electionElapsed = 0;
  private ticksSinceLeader: number;
  private randomizedTimeout: number;
  private heartbeatElapsed = 0;
  private joining: boolean;
  private leaderCommitSeen = 0;
  /** Highest fence epoch any acceptor told us about: below it we must not campaign. */
  private knownFence: number;
  private lastFinalized: Config;

  private prevoteRound = 0;
  private prevoteGrants = new Set<NodeId>();
  private candidacy: Candidacy | undefined;

  // Leader state.
  private progress = new Map<NodeId, PeerProgress>();
  private learners = new Set<NodeId>();
  private electedWith = new Set<NodeId>();
  private firstSlotOfTerm = 0;
  /**
   * The commit index a read index needs in this term: the first slot of our ballot, and the top
   * of the range phase 1 recovered (every value chosen before the term is at or below it, or it
   * would be in a promise; each re-proposed slot is chosen on its own).
   */
  private readFloor = 0;
  private nextSlot = 1;
  /** Slot of a proposed finalize entry not yet chosen: nothing is proposed above it meanwhile. */
  private barrierSlot: number | undefined;
  /** Recovered commands above a barrier, proposed once it is chosen. */
  private deferred: Array<[number, Command]> = [];
  private transferTarget: NodeId | undefined;
  private transferElapsed = 0;
  /** The read index of the current leadership. */
  private readonly reads = new ReadIndex();

  // Catch-up state.
  private catchupInflightTicks = 0;

  /** Output accumulated for the next Ready. */
  private readonly out: PendingReady;

  constructor(options: ReplicaOptions, state: PersistedState) {
    this.id = options.id;
    this.opts = options;
    const problem = configProblem(state.hard.config);
    if (problem !== undefined) throw new Error(`invalid persisted configuration: ${problem}`);
    this.promised = state.hard.promised;
    this.config = state.hard.config;
    this.fenceEpoch = state.hard.fenceEpoch;
    this.knownFence = state.hard.fenceEpoch;
    this.dataLoss = state.hard.dataLoss;
    this.unregistered = state.hard.unregistered === true;
    this.durableConfig = state.hard.config;
    this.maxRoundSeen = state.hard.promised.round;
    this.log = new AcceptorLog(state.snapshot, state.entries);
    // The commit hint is trusted only over entries actually present: the WAL writes entries
    // before the hard state that names them, so a torn write cannot leave a hint without them.
    this.commit = Math.max(this.log.snapshotIndex, Math.min(state.hard.commit, this.log.contiguousFrom(this.log.snapshotIndex)));
    this.out = new PendingReady(this.log.snapshotIndex);
    this.lastFinalized = this.deriveLastFinalized(state);
    this.joining = options.joining;
    this.ticksSinceLeader = options.electionTimeoutTicks;
    this.randomizedTimeout = this.newTimeout();
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.now++;
    this.ticksSinceLeader++;
    if (this.catchupInflightTicks > 0) this.catchupInflightTicks--;
    if (this.role === 'leader') this.tickLeader();
    else this.tickFollowerOrCandidate();
  }

  step(m: Message): void {
    if (m.to !== this.id) return;
    if (this.muted() && !this.mayVoteFor(m)) return;
    switch (m.type) {
      case 'prevote': return this.onPrevote(m);
      case 'prevoteReply': return this.onPrevoteReply(m);
      case 'prepare': return this.onPrepare(m);
      case 'promise': return this.onPromise(m);
      case 'accept': return this.onAccept(m);
      case 'accepted': return this.onAccepted(m);
      case 'heartbeat': return this.onHeartbeat(m);
      case 'heartbeatReply': return this.onHeartbeatReply(m);
      case 'catchupRequest': return this.onCatchupRequest(m);
      case 'catchupReply': return this.onCatchupReply(m);
      case 'timeoutNow': return this.onTimeoutNow(m);
      case 'fenced': return this.onFenced(m);
    }
  }

  propose(commands: readonly Command[]): { readonly ok: true; readonly firstSlot: number } | ({ readonly ok: false } & ProposeRefusal) {
    const refusal = this.proposalRefusal(commands.length);
    if (refusal !== undefined) return { ok: false, ...refusal };
    const firstSlot = this.nextSlot;
    for (const command of commands) this.appendOwn(command);
    return { ok: true, firstSlot };
  }

  read(id: number): { readonly ok: true } | ({ readonly ok: false } & ProposeRefusal) {
    if (this.role !== 'leader') return { ok: false, reason: 'notLeader', ...this.leaderHint() };
    if (this.reads.size >= this.opts.maxPendingReads) return { ok: false, reason: 'busy' };
    // Until everything phase 1 recovered and the first entry of our own ballot are chosen, our
    // commit index may be below what earlier leaders had chosen: a read there could be stale.
    if (!this.termCommitKnown()) {
      this.reads.waitForTermCommit(id);
      return { ok: true };
    }
    this.enqueueRead(id);
    return { ok: true };
  }

  /**
   * Lets a new server that started on an empty disk vote (`HardState.unregistered`). Whoever
   * runs the change calls it only after recording durably that this server has run, so that a
   * later start on an empty disk is known to be a loss. Idempotent.
   */
  register(): AdminResult {
    if (!this.unregistered) return { ok: true };
    this.unregistered = false;
    this.out.hardDirty = true;
    this.out.mustSync = true;
    return { ok: true };
  }

  transferLeadership(target: NodeId): AdminResult {
    if (this.role !== 'leader') return { ok: false, reason: 'notLeader', error: 'not the leader' };
    if (target === this.id) return { ok: true };
    // The target may be a new server outside our configuration that already replicates from us.
    if (!this.progress.has(target)) return { ok: false, reason: 'unknownTarget', error: `node ${target} is neither a member nor a learner here` };
    this.transferTarget = target;
    this.transferElapsed = 0;
    this.maybeSendTimeoutNow();
    return { ok: true };
  }

  convert(config: Config): AdminResult {
    const problem = configProblem(config);
    if (problem !== undefined) return { ok: false, reason: 'invalidConfig', error: `invalid configuration: ${problem}` };
    if (sameConfig(config, this.config)) return { ok: true };
    if (config.epoch <= this.config.epoch) {
      return { ok: false, reason: 'staleEpoch', error: `configuration epoch ${config.epoch} is not above the current epoch ${this.config.epoch}` };
    }
    if (config.epoch <= this.fenceEpoch) {
      return { ok: false, reason: 'staleEpoch', error: `configuration epoch ${config.epoch} is not above the finalized epoch ${this.fenceEpoch}` };
    }
    this.config = config;
    if (this.dataLoss !== undefined && config.members.includes(this.id) && config.prior !== undefined && !config.prior.includes(this.id)) {
      // The repair conversion (see `DataLoss`): vote again, for its proposers only.
      this.dataLoss = { votesFromEpoch: config.epoch };
    }
    this.out.hardDirty = true;
    this.out.mustSync = true;
    // The expansion operation restarts the service: a leader gives up its role, and everyone
    // rejoins as a follower that follows a live leader if there is one.
    this.becomeFollower(this.role === 'leader' ? undefined : this.leader);
    // ... and then initiates leader election. A node that knows no live leader (above all the
    // leader that just stepped down, which nothing replaces until someone campaigns) starts its
    // pre-vote now instead of waiting out an election timeout: that timeout was the whole write
    // stall of a shrink to one node, whose leader is the only survivor and must convert itself.
    // The pre-vote goes out after the new configuration is persisted (it is not sendable before).
    if (!this.hasLiveLeader()) this.startPrevote();
    return { ok: true };
  }

  finalize(): AdminResult {
    if (this.role !== 'leader') return { ok: false, reason: 'notLeader', error: 'not the leader' };
    if (this.config.prior === undefined) return { ok: false, reason: 'noReconfiguration', error: 'no reconfiguration in progress' };
    if (this.barrierSlot !== undefined) return { ok: true };
    const refusal = this.proposalRefusal(1);
    if (refusal !== undefined) return { ok: false, reason: 'cannotPropose', error: `cannot propose: ${refusal.reason}` };
    this.appendOwn({ kind: 'finalize', config: { epoch: this.config.epoch, members: [...this.config.members] } });
    return { ok: true };
  }

  compact(index: number): SnapshotMeta | undefined {
    if (index <= this.log.snapshotIndex) return undefined;
    if (index > this.out.emitted) throw new Error(`cannot compact to ${index}: only ${this.out.emitted} applied`);
    const snapshot: SnapshotMeta = { index, config: this.finalizedAt(index) };
    this.log.compact(snapshot);
    return snapshot;
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    if (this.out.outstanding !== undefined) return false;
    if (this.role === 'leader') this.flushReplication();
    return this.out.hasOutput(this.commit);
  }

  ready(): Ready {
    if (this.out.outstanding !== undefined) throw new Error('ready() called twice without advance()');
    if (this.role === 'leader') this.flushReplication();
    return this.out.take(this.commit, (slot) => this.log.get(slot), () => this.hardState());
  }

  advance(rd: Ready): void {
    this.out.acknowledge(rd);
    if (rd.hardState !== undefined && rd.mustSync) this.durableConfig = rd.hardState.config;
    if (this.role !== 'leader') return;
    // Our own acceptance counts once it is durable: this is what lets the driver send this
    // Ready's accepts before persisting it (see `sendableBeforePersist`).
    const self = this.progress.get(this.id);
    if (self === undefined) return;
    for (const e of rd.entries) {
      if (sameBallot(e.ballot, this.ballot) && e.slot === self.matched + 1) self.matched = e.slot;
    }
    this.advanceLeaderCommit();
  }

  status(): ReplicaStatus {
    const lag: Record<number, number> = {};
    if (this.role === 'leader') {
      for (const [id, p] of this.progress) if (id !== this.id) lag[id] = Math.max(0, this.commit - Math.max(p.matched, 0));
    }
    return {
      id: this.id,
      role: this.role,
      leader: this.leader,
      ballot: this.ballot,
      // Only a durable configuration is reported: whoever acts on it (the operator deleting a
      // removed member's volume after a finalize) must not see one a crash could take back.
      config: this.durableConfig,
      fenceEpoch: this.fenceEpoch,
      commit: this.commit,
      applied: this.out.emitted,
      lastSlot: this.log.lastSlot,
      snapshotIndex: this.log.snapshotIndex,
      caughtUp: this.isCaughtUp(),
      lag,
      transferring: this.transferTarget !== undefined,
      dataLoss: this.dataLoss === undefined ? 'none' : this.dataLoss.votesFromEpoch === undefined ? 'suspended' : 'repairing',
      unregistered: this.unregistered,
    };
  }

  // ---------------------------------------------------------------- timing

  private tickFollowerOrCandidate(): void {
    this.electionElapsed++;
    if (this.isCaughtUp()) this.joining = false;
    // A node that does not hear from a leader keeps pulling from its peers: this is how a new
    // node learns from a leader whose configuration does not list it yet.
    // A node that lost its disk ignores (some of) the leader's messages until repaired, and an
    // unregistered one all of them until registered: it pulls.
    const pulling = this.leader === undefined || this.ticksSinceLeader > this.opts.electionTimeoutTicks || this.muted();
    if (pulling && this.catchupInflightTicks === 0) {
      const peers = voters(this.config).filter((id) => id !== this.id);
      if (peers.length > 0) {
        // Alternate between the hinted leader (which also starts streaming to us) and a random
        // peer, so that a stale hint cannot starve us.
        const random = peers[Math.floor(this.opts.random() * peers.length)] as NodeId;
        const target = this.leader !== undefined && this.opts.random() < 0.5 ? this.leader : random;
        this.requestCatchup(target);
      }
    }
    if (this.electionElapsed >= this.randomizedTimeout) {
      this.electionElapsed = 0;
      this.randomizedTimeout = this.newTimeout();
      this.startPrevote();
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.transferTarget !== undefined && ++this.transferElapsed >= this.opts.electionTimeoutTicks) {
      this.transferTarget = undefined; // the target did not take over in time: serve again
    }
    if (this.electionElapsed >= this.opts.electionTimeoutTicks) {
      this.electionElapsed = 0;
      // Check quorum: a leader cut off from a quorum steps down so that clients go elsewhere.
      const since = this.now - this.opts.electionTimeoutTicks;
      const live = (id: NodeId): boolean => id === this.id || (this.progress.get(id)?.lastReplyTick ?? -1) >= since;
      if (!isQuorum(this.config, live, this.opts.unsafePlainMajorities)) {
        this.becomeFollower(undefined);
        return;
      }
    }
    if (this.heartbeatElapsed >= this.opts.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
      this.maybeSendTimeoutNow(); // in case the previous one was lost
      // Retransmit to peers whose pipeline made no progress since the last beat (lost messages).
      for (const [id, p] of this.progress) {
        if (id === this.id) continue;
        if (p.matched === p.matchedAtLastBeat && p.matched < this.log.lastSlot) {
          p.next = p.matched + 1;
          p.inflight = 0;
          p.ahead = [];
        }
        p.matchedAtLastBeat = p.matched;
      }
    }
  }

  private newTimeout(): number {
    const t = this.opts.electionTimeoutTicks;
    return t + Math.floor(this.opts.random() * t);
  }

  // ---------------------------------------------------------------- election

  /**
   * For a node that lost its disk: whether to handle `m` at all. Requests from proposers and
   * candidates are dropped unread (no promise, vote, heartbeat acknowledgement or pre-vote that a
   * quorum could count) unless their configuration is the repair's or newer; what only serves
   * learning (catch-up, fencing news) is handled as usual.
   */
  private mayVoteFor(m: Message): boolean {
    switch (m.type) {
      case 'prevote':
      case 'prepare':
      case 'accept':
      case 'heartbeat':
      case 'timeoutNow': {
        if (this.unregistered) return false;
        const from = this.dataLoss?.votesFromEpoch;
        return from !== undefined && m.epoch >= from;
      }
      default:
        return true;
    }
  }

  /** Whether this node may try to lead at all. */
  private mayCampaign(): boolean {
    if (!voters(this.config).includes(this.id)) return false;
    if (!this.config.members.includes(this.id)) return false;
    if (this.config.epoch < this.knownFence) return false;
    // Not before the repair is finalized: until then this node may be deaf to the live leader
    // (older epoch) and would depose it for nothing.
    if (this.muted()) return false;
    return !this.joining;
  }

  private startPrevote(): void {
    if (!this.mayCampaign()) return;
    this.role = 'candidate';
    this.candidacy = undefined;
    this.prevoteRound = this.maxRoundSeen + 1;
    this.prevoteGrants = new Set([this.id]);
    for (const id of voters(this.config)) {
      if (id !== this.id) this.send(id, { type: 'prevote', round: this.prevoteRound, commit: this.commit });
    }
    this.maybeWinPrevote();
  }

  private onPrevote(m: Extract<Message, { type: 'prevote' }>): void {
    if (this.fencedOff(m)) return;
    // Grant only if we have no live leader and the candidate knows at least as much as we do:
    // a node that is behind must not disrupt a working quorum. The leader we follow asking for
    // a vote is no live leader any more (a leader never campaigns): it stepped down, typically to
    // convert itself, and stickiness must not make us wait out a timeout before re-electing it.
    const granted =
      m.commit >= this.commit &&
      this.role !== 'leader' &&
      (this.ticksSinceLeader >= this.opts.electionTimeoutTicks || (this.role === 'follower' && m.from === this.leader));
    this.send(m.from, { type: 'prevoteReply', round: m.round, granted });
  }

  private onPrevoteReply(m: Extract<Message, { type: 'prevoteReply' }>): void {
    if (this.role !== 'candidate' || this.candidacy !== undefined || m.round !== this.prevoteRound || !m.granted) return;
    this.prevoteGrants.add(m.from);
    this.maybeWinPrevote();
  }

  private maybeWinPrevote(): void {
    if (isQuorum(this.config, (id) => this.prevoteGrants.has(id), this.opts.unsafePlainMajorities)) this.startPhase1();
  }

  /** Phase 1 for every slot above our commit index, under a fresh ballot. */
  private startPhase1(): void {
    const round = Math.max(this.maxRoundSeen, this.promised.round) + 1;
    const ballot: Ballot = { round, node: this.id };
    this.maxRoundSeen = round;
    this.role = 'candidate';
    this.leader = undefined;
    this.ballot = ballot;
    this.electionElapsed = 0;
    this.promised = ballot;
    this.out.hardDirty = true;
    this.out.mustSync = true;
    const fromSlot = this.commit + 1;
    this.candidacy = { ballot, fromSlot, promisers: new Set(), recovered: new Map() };
    for (const id of voters(this.config)) {
      if (id !== this.id) this.send(id, { type: 'prepare', ballot, fromSlot });
    }
    // Our own promise: the hard state above is persisted before the prepares are sent.
    this.recordPromise(this.id, this.log.entriesFrom(fromSlot), this.commit);
  }

  private onPrepare(m: Extract<Message, { type: 'prepare' }>): void {
    if (this.fencedOff(m)) return;
    this.maxRoundSeen = Math.max(this.maxRoundSeen, m.ballot.round);
    if (compareBallots(m.ballot, this.promised) < 0) {
      this.send(m.from, { type: 'promise', ballot: m.ballot, ok: false, promised: this.promised, accepted: [], commit: this.commit, snapshotIndex: this.log.snapshotIndex });
      return;
    }
    if (compareBallots(m.ballot, this.promised) > 0) {
      this.promised = m.ballot;
      this.out.hardDirty = true;
      this.out.mustSync = true;
      if (m.from !== this.id && this.role !== 'follower') this.becomeFollower(undefined);
    }
    // A candidate far behind gets no entries, only the news that it must catch up first.
    const tooFar = this.commit - m.fromSlot >= 4 * this.opts.maxBatchEntries;
    const cannotReport = tooFar ? this.commit : this.log.snapshotIndex;
    const accepted = cannotReport >= m.fromSlot ? [] : this.log.entriesFrom(m.fromSlot);
    this.send(m.from, { type: 'promise', ballot: m.ballot, ok: true, promised: this.promised, accepted, commit: this.commit, snapshotIndex: cannotReport });
  }

  private onPromise(m: Extract<Message, { type: 'promise' }>): void {
    const c = this.candidacy;
    if (this.role !== 'candidate' || c === undefined || !sameBallot(m.ballot, c.ballot)) return;
    if (!m.ok) {
      this.maxRoundSeen = Math.max(this.maxRoundSeen, m.promised.round);
      this.becomeFollower(undefined);
      return;
    }
    if (m.snapshotIndex >= c.fromSlot) {
      // The acceptor cannot report slots we need: fetch what was chosen, then try again.
      this.becomeFollower(undefined);
      this.requestCatchup(m.from);
      return;
    }
    this.recordPromise(m.from, m.accepted, m.commit);
  }

  private recordPromise(from: NodeId, accepted: readonly Entry[], acceptorCommit: number): void {
    const c = this.candidacy as Candidacy;
    c.promisers.add(from);
    for (const e of accepted) {
      if (e.slot < c.fromSlot) continue;
      const chosen = e.slot <= acceptorCommit;
      const known = c.recovered.get(e.slot);
      if (known === undefined || (chosen && !known.chosen) || (!known.chosen && compareBallots(e.ballot, known.ballot) > 0)) {
        c.recovered.set(e.slot, { ballot: e.ballot, command: e.command, chosen });
      }
    }
    if (isQuorum(this.config, (id) => c.promisers.has(id), this.opts.unsafePlainMajorities)) this.becomeLeader(c);
  }

  private becomeLeader(c: Candidacy): void {
    this.role = 'leader';
    this.leader = this.id;
    this.candidacy = undefined;
    this.joining = false;
    this.electedWith = new Set(c.promisers);
    this.ticksSinceLeader = 0;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.transferTarget = undefined;
    this.barrierSlot = undefined;
    this.deferred = [];
    this.progress = new Map();
    this.learners = new Set();
    this.firstSlotOfTerm = c.fromSlot;
    this.nextSlot = c.fromSlot;
    for (const id of this.replicationTargets()) this.progress.set(id, this.newProgress(c.fromSlot));
    this.progress.set(this.id, this.newProgress(c.fromSlot));
    // Re-propose every recovered value in our ballot, fill holes with no-ops, and end with a
    // no-op so that the first entry of our ballot gets chosen even when nothing was recovered.
    const top = Math.max(c.fromSlot - 1, ...c.recovered.keys());
    this.readFloor = Math.max(c.fromSlot, top);
    for (let s = c.fromSlot; s <= top; s++) {
      const command = c.recovered.get(s)?.command ?? { kind: 'noop' as const };
      if (this.barrierSlot !== undefined) this.deferred.push([s, command]);
      else this.appendOwn(command);
    }
    if (this.barrierSlot === undefined) this.appendOwn({ kind: 'noop' });
    this.broadcastHeartbeat();
  }

  private onTimeoutNow(m: Extract<Message, { type: 'timeoutNow' }>): void {
    if (m.from !== this.leader || this.role === 'leader' || !this.mayCampaign()) return;
    // The leader handed over: campaign at once, without pre-vote (the others still see a live
    // leader and would refuse it), so the handover costs a few round trips, not a timeout.
    this.startPhase1();
  }

  private becomeFollower(leader: NodeId | undefined): void {
    if (this.role === 'leader') {
      this.out.droppedReads.push(...this.reads.dropAll());
      this.progress = new Map();
      this.transferTarget = undefined;
      this.barrierSlot = undefined;
      this.deferred = [];
    }
    this.role = 'follower';
    this.candidacy = undefined;
    this.leader = leader;
    this.electionElapsed = 0;
    this.randomizedTimeout = this.newTimeout();
  }

  // ---------------------------------------------------------------- phase 2

  private proposalRefusal(count: number): ProposeRefusal | undefined {
    if (this.role !== 'leader') return { reason: 'notLeader', ...this.leaderHint() };
    if (this.transferTarget !== undefined) return { reason: 'transferring' };
    if (this.barrierSlot !== undefined) return { reason: 'reconfiguring' };
    if (this.nextSlot - 1 - this.commit + count > this.opts.maxPendingProposals) return { reason: 'busy' };
    return undefined;
  }

  private appendOwn(command: Command): void {
    const entry: Entry = { slot: this.nextSlot++, ballot: this.ballot, command };
    this.log.put(entry);
    this.out.unstable.push(entry);
    // A finalize we re-propose after an election may already be chosen (learned while we were a
    // candidate, and applied then): it is no barrier, or nothing would ever clear it.
    if (command.kind === 'finalize' && entry.slot > this.commit) this.barrierSlot = entry.slot;
  }

  /** Sends each peer what it has not been sent, within the per-peer window. */
  private flushReplication(): void {
    // One read round in flight at a time: reads that arrive meanwhile share the next one, sent
    // when this one is confirmed (or by the next periodic heartbeat, which carries the newest
    // round, should its messages be lost). Without this every drain with a new read sent its
    // own round: about three peer messages per read at 64 clients.
    if (this.reads.roundDue) this.broadcastHeartbeat();
    const last = this.log.lastSlot;
    for (const [id, p] of this.progress) {
      if (id === this.id) continue;
      // Slots below our snapshot cannot be sent as entries: the peer pulls the snapshot through
      // catch-up, and its reported commit index moves `matched` past it (see creditCommit).
      if (p.next <= this.log.snapshotIndex) continue;
      while (p.next <= last && p.inflight < this.opts.maxInflightPerPeer) {
        const entries = this.batchFrom(p.next, last);
        if (entries.length === 0) break;
        this.send(id, { type: 'accept', ballot: this.ballot, entries, commit: this.commit });
        p.next = (entries[entries.length - 1] as Entry).slot + 1;
        p.inflight++;
      }
    }
  }

  private onAccept(m: Extract<Message, { type: 'accept' }>): void {
    if (this.fencedOff(m)) return;
    const first = m.entries[0]?.slot ?? 0;
    const last = m.entries[m.entries.length - 1]?.slot ?? 0;
    if (!this.acceptLeader(m.from, m.ballot)) {
      this.send(m.from, { type: 'accepted', ballot: m.ballot, ok: false, promised: this.promised, fromSlot: first, toSlot: last, commit: this.commit });
      return;
    }
    for (const e of m.entries) {
      // A chosen slot keeps its value; anything else takes the newer ballot's value.
      if (e.slot <= this.commit) continue;
      this.log.put(e);
      this.out.unstable.push(e);
      if (e.command.kind === 'finalize') this.raiseFence(e.command.config.epoch);
    }
    this.followLeaderCommit(m.commit);
    this.send(m.from, { type: 'accepted', ballot: m.ballot, ok: true, promised: this.promised, fromSlot: first, toSlot: last, commit: this.commit });
  }

  /**
   * Accepts `ballot` as the leader's if it is not below our promise; follows its sender.
   * Returns false when the ballot is stale.
   */
  private acceptLeader(from: NodeId, ballot: Ballot): boolean {
    this.maxRoundSeen = Math.max(this.maxRoundSeen, ballot.round);
    const cmp = compareBallots(ballot, this.promised);
    if (cmp < 0) return false;
    if (cmp > 0) {
      this.promised = ballot;
      this.out.hardDirty = true;
      this.out.mustSync = true;
    }
    if (from !== this.id && (this.role !== 'follower' || this.leader !== from || !sameBallot(this.ballot, ballot))) {
      this.becomeFollower(from);
    }
    this.ballot = ballot;
    this.leader = from;
    this.ticksSinceLeader = 0;
    this.electionElapsed = 0;
    return true;
  }

  private onAccepted(m: Extract<Message, { type: 'accepted' }>): void {
    if (this.role !== 'leader') return;
    if (!m.ok) return this.onRejected(m.promised);
    if (!sameBallot(m.ballot, this.ballot)) return;
    const p = this.progressOf(m.from);
    p.lastReplyTick = this.now;
    p.inflight = Math.max(0, p.inflight - 1);
    this.acknowledge(p, m.fromSlot, m.toSlot);
    this.creditCommit(p, m.commit);
    this.advanceLeaderCommit();
    this.maybeSendTimeoutNow();
  }

  private acknowledge(p: PeerProgress, from: number, to: number): void {
    acknowledge(p, from, to, this.opts.maxInflightPerPeer * 2);
  }

  /** See `creditCommit` in progress.ts. */
  private creditCommit(p: PeerProgress, peerCommit: number): boolean {
    return creditCommit(p, peerCommit, this.commit, this.opts.maxInflightPerPeer * 2);
  }

  private onRejected(promised: Ballot): void {
    this.maxRoundSeen = Math.max(this.maxRoundSeen, promised.round);
    if (compareBallots(promised, this.ballot) > 0) this.becomeFollower(undefined);
  }

  private advanceLeaderCommit(): void {
    if (this.role !== 'leader') return;
    const matched = (id: NodeId): number => this.progress.get(id)?.matched ?? 0;
    const index = quorumIndex(this.config, matched, this.opts.unsafePlainMajorities);
    if (index > this.commit) this.setCommit(index);
  }

  private maybeSendTimeoutNow(): void {
    const target = this.transferTarget;
    if (this.role !== 'leader' || target === undefined) return;
    const p = this.progress.get(target);
    if (p !== undefined && p.matched >= this.log.lastSlot) this.send(target, { type: 'timeoutNow' });
  }

  // ---------------------------------------------------------------- heartbeats and reads

  private broadcastHeartbeat(): void {
    for (const id of this.progress.keys()) {
      if (id !== this.id) this.send(id, { type: 'heartbeat', ballot: this.ballot, commit: this.commit, readId: this.reads.round });
    }
    this.reads.roundSent();
  }

  private onHeartbeat(m: Extract<Message, { type: 'heartbeat' }>): void {
    if (this.fencedOff(m)) return;
    if (!this.acceptLeader(m.from, m.ballot)) {
      this.send(m.from, { type: 'heartbeatReply', ballot: m.ballot, ok: false, promised: this.promised, readId: m.readId, commit: this.commit });
      return;
    }
    this.followLeaderCommit(m.commit);
    this.send(m.from, { type: 'heartbeatReply', ballot: m.ballot, ok: true, promised: this.promised, readId: m.readId, commit: this.commit });
  }

  private onHeartbeatReply(m: Extract<Message, { type: 'heartbeatReply' }>): void {
    if (this.role !== 'leader') return;
    if (!m.ok) return this.onRejected(m.promised);
    if (!sameBallot(m.ballot, this.ballot)) return;
    const p = this.progressOf(m.from);
    p.lastReplyTick = this.now;
    p.readAck = Math.max(p.readAck, m.readId);
    if (this.creditCommit(p, m.commit)) this.maybeSendTimeoutNow();
    this.confirmReads();
  }

  private enqueueRead(id: number): void {
    // Reads arriving before the next heartbeat round share it: one quorum round confirms many.
    this.reads.enqueue(id, this.commit);
    this.confirmReads();
  }

  private confirmReads(): void {
    if (!this.reads.confirmable) return;
    const round = this.reads.round;
    const acked = (id: NodeId): number => (id === this.id ? round : (this.progress.get(id)?.readAck ?? 0));
    const confirmed = quorumIndex(this.config, acked, this.opts.unsafePlainMajorities);
    this.out.readyReads.push(...this.reads.confirm(confirmed));
  }

  // ---------------------------------------------------------------- commit and catch-up

  /** Advances our commit index over slots the leader chose that we hold in its ballot. */
  private followLeaderCommit(leaderCommit: number): void {
    this.leaderCommitSeen = Math.max(this.leaderCommitSeen, leaderCommit);
    let s = this.commit;
    while (s < leaderCommit) {
      const e = this.log.get(s + 1);
      if (e === undefined || !sameBallot(e.ballot, this.ballot)) break;
      s++;
    }
    if (s > this.commit) this.setCommit(s);
    if (this.commit < leaderCommit && this.leader !== undefined && this.catchupInflightTicks === 0) {
      this.requestCatchup(this.leader);
    }
  }

  private requestCatchup(target: NodeId): void {
    this.catchupInflightTicks = this.opts.heartbeatTicks * 2;
    this.send(target, { type: 'catchupRequest', fromSlot: this.commit + 1 });
  }

  private onCatchupRequest(m: Extract<Message, { type: 'catchupRequest' }>): void {
    if (this.role === 'leader' && !voters(this.config).includes(m.from) && !this.learners.has(m.from) && this.learners.size < MAX_LEARNERS) {
      // A node outside our configuration (a new server) pulls from us: stream to it from now on.
      this.learners.add(m.from);
      this.progress.set(m.from, this.newProgress(Math.max(this.commit + 1, this.firstSlotOfTerm)));
    }
    const hint = this.leaderHint().leader;
    const base = { commit: this.commit, ...(hint === undefined ? {} : { leaderHint: hint }) };
    const snap = this.log.snapshot;
    if (snap !== undefined && m.fromSlot <= snap.index) {
      // Until the Ready that installs a peer's snapshot is taken, storage has not seen it.
      const pending = this.out.pendingSnapshot;
      const data = pending?.index === snap.index ? pending.data : this.opts.snapshotData(snap.index);
      // Storage lost it (a damaged file): no reply; the requester asks again, perhaps elsewhere.
      if (data === undefined) return;
      this.send(m.from, { type: 'catchupReply', entries: [], snapshot: { index: snap.index, config: snap.config, data }, ...base });
      return;
    }
    this.send(m.from, { type: 'catchupReply', entries: this.batchFrom(m.fromSlot, this.commit), ...base });
  }

  private onCatchupReply(m: Extract<Message, { type: 'catchupReply' }>): void {
    this.catchupInflightTicks = 0;
    // A leader already holds every chosen value (phase 1 recovered them); a late reply to a
    // request it made as a follower must not replace its own ballot's entries.
    if (this.role === 'leader') return;
    if (m.snapshot !== undefined && m.snapshot.index > this.commit) this.installSnapshot(m.snapshot);
    let s = this.commit;
    for (const e of m.entries) {
      if (e.slot !== s + 1) continue;
      this.log.put(e);
      this.out.unstable.push(e);
      s = e.slot;
    }
    if (s > this.commit) this.setCommit(s);
    this.leaderCommitSeen = Math.max(this.leaderCommitSeen, m.commit);
    if (this.leader === undefined && m.leaderHint !== undefined && m.leaderHint !== this.id) this.leader = m.leaderHint;
    // A node that lost its disk may hear the leader only through these replies: they count as
    // contact, so that its status says when it has caught up.
    if (this.muted() && m.leaderHint === m.from) {
      this.leader = m.from;
      this.ticksSinceLeader = 0;
    }
    if (this.commit < m.commit && (m.entries.length > 0 || m.snapshot !== undefined)) this.requestCatchup(m.from);
  }

  private installSnapshot(snap: Snapshot): void {
    this.log.installSnapshot(snap);
    this.out.pendingSnapshot = snap;
    this.commit = snap.index;
    this.out.emitted = snap.index;
    this.out.hardDirty = true;
    this.applyFinalized(snap.config);
  }

  /** Marks slots up to `index` chosen and applies the configuration entries among them. */
  private setCommit(index: number): void {
    for (let s = this.commit + 1; s <= index; s++) {
      const e = this.log.get(s);
      if (e?.command.kind === 'finalize') {
        this.commit = s; // the barrier is crossed before we look at the next slot
        this.applyFinalized(e.command.config);
      }
    }
    this.commit = Math.max(this.commit, index);
    this.out.hardDirty = true;
    if (this.role === 'leader' && this.reads.awaitingCommit && this.termCommitKnown()) {
      for (const id of this.reads.release()) this.enqueueRead(id);
    }
  }

  /** A finalize entry was chosen (or a snapshot carried one): drop `prior`, raise the fence. */
  private applyFinalized(finalized: Config): void {
    if (finalized.epoch > this.lastFinalized.epoch) this.lastFinalized = finalized;
    this.raiseFence(finalized.epoch);
    if (finalized.epoch >= this.config.epoch) this.config = finalized;
    this.out.hardDirty = true;
    this.out.mustSync = true;
    if (this.role !== 'leader') return;
    if (this.barrierSlot !== undefined && this.barrierSlot <= this.commit) this.barrierSlot = undefined;
    // Our phase 1 must also have been a quorum of the new configuration, or values chosen by
    // its quorums above the barrier may be unknown to us.
    const stillLeads =
      this.config.members.includes(this.id) &&
      isQuorum(this.config, (id) => this.electedWith.has(id), this.opts.unsafePlainMajorities);
    if (!stillLeads) {
      this.becomeFollower(undefined);
      return;
    }
    // Members that were removed are no longer replicated to; new ones are.
    for (const id of this.learners) if (voters(this.config).includes(id)) this.learners.delete(id);
    const targets = new Set(this.replicationTargets());
    for (const id of [...this.progress.keys()]) if (id !== this.id && !targets.has(id)) this.progress.delete(id);
    for (const id of targets) if (!this.progress.has(id)) this.progress.set(id, this.newProgress(this.commit + 1));
    const deferred = this.deferred;
    this.deferred = [];
    for (const [, command] of deferred) {
      if (this.barrierSlot !== undefined) this.deferred.push([this.nextSlot, command]);
      else this.appendOwn(command);
    }
  }

  // ---------------------------------------------------------------- fencing

  /**
   * An acceptor that has voted for a finalize entry refuses proposers from older epochs at
   * once, not only after learning the entry was chosen: a stale proposer then cannot gather a
   * quorum that overlaps the finalizing one, even before the news spreads.
   */
  private raiseFence(epoch: number): void {
    if (epoch <= this.fenceEpoch) return;
    this.fenceEpoch = epoch;
    this.knownFence = Math.max(this.knownFence, epoch);
    // Every proposer older than the repair is fenced off now: the forgotten votes no longer matter.
    const repairedAt = this.dataLoss?.votesFromEpoch;
    if (repairedAt !== undefined && epoch >= repairedAt) this.dataLoss = undefined;
    this.out.hardDirty = true;
    this.out.mustSync = true;
  }

  /** Fences off a proposer whose configuration predates the newest finalized one. */
  private fencedOff(m: Message): boolean {
    if (m.epoch >= this.fenceEpoch) return false;
    this.send(m.from, { type: 'fenced', fenceEpoch: this.fenceEpoch, config: this.lastFinalized });
    return true;
  }

  private onFenced(m: Extract<Message, { type: 'fenced' }>): void {
    if (m.fenceEpoch <= this.knownFence && this.config.epoch >= m.fenceEpoch) return;
    this.knownFence = Math.max(this.knownFence, m.fenceEpoch);
    if (this.config.epoch < m.fenceEpoch) {
      // Our configuration is stale: stop leading, and learn the finalize entry from the log.
      if (this.role !== 'follower') this.becomeFollower(undefined);
      this.requestCatchup(m.from);
    }
  }

  // ---------------------------------------------------------------- helpers

  /** Contiguous entries from `from` to at most `to`, within the batch limits (at least one). */
  private batchFrom(from: number, to: number): Entry[] {
    const entries: Entry[] = [];
    let bytes = 0;
    for (let s = from; s <= to && entries.length < this.opts.maxBatchEntries; s++) {
      const e = this.log.get(s);
      if (e === undefined) break;
      bytes += estimateBytes(e.command);
      if (entries.length > 0 && bytes > this.opts.maxBatchBytes) break;
      entries.push(e);
    }
    return entries;
  }

  private replicationTargets(): NodeId[] {
    return [...voters(this.config), ...this.learners].filter((id) => id !== this.id);
  }

  private newProgress(fromSlot: number): PeerProgress {
    return newProgress(fromSlot, this.now);
  }

  private progressOf(id: NodeId): PeerProgress {
    let p = this.progress.get(id);
    if (p === undefined) {
      p = this.newProgress(this.firstSlotOfTerm);
      this.progress.set(id, p);
    }
    return p;
  }

  private leaderHint(): { leader?: NodeId } {
    return this.leader === undefined ? {} : { leader: this.leader };
  }

  /** Whether we follow a leader we heard from within an election timeout. */
  private hasLiveLeader(): boolean {
    return this.leader !== undefined && this.leader !== this.id && this.ticksSinceLeader <= this.opts.electionTimeoutTicks;
  }

  private isCaughtUp(): boolean {
    if (this.role === 'leader') return true;
    return this.leader !== undefined && this.ticksSinceLeader <= this.opts.electionTimeoutTicks && this.commit >= this.leaderCommitSeen;
  }

  private send<T extends Message['type']>(to: NodeId, body: Body<T> & { type: T }): void {
    this.out.outbox.push({ ...body, from: this.id, to, epoch: this.config.epoch } as Message);
  }

  private hardState(): HardState {
    const hard = { promised: this.promised, config: this.config, fenceEpoch: this.fenceEpoch, commit: this.commit };
    return {
      ...hard,
      ...(this.dataLoss === undefined ? {} : { dataLoss: this.dataLoss }),
      ...(this.unregistered ? { unregistered: true as const } : {}),
    };
  }

  /** Whether this leader's commit index covers everything chosen before its term (`readFloor`). */
  private termCommitKnown(): boolean {
    return this.commit >= this.readFloor;
  }

  /** Whether this node ignores some proposers' messages: it lost its disk, or is unregistered. */
  private muted(): boolean {
    return this.dataLoss !== undefined || this.unregistered;
  }

  /** The newest finalized configuration at or below `index`. */
  private finalizedAt(index: number): Config {
    let found: Config | undefined;
    for (let s = this.log.snapshotIndex + 1; s <= index; s++) {
      const c = this.log.get(s)?.command;
      if (c?.kind === 'finalize') found = c.config;
    }
    return found ?? this.log.snapshot?.config ?? this.lastFinalized;
  }

  private deriveLastFinalized(state: PersistedState): Config {
    let found: Config | undefined = state.snapshot?.config;
    for (const e of state.entries) if (e.slot <= this.commit && e.command.kind === 'finalize') found = e.command.config;
    if (found !== undefined) return found;
    const c = state.hard.config;
    return c.prior === undefined ? c : { epoch: state.hard.fenceEpoch, members: c.prior };
  }
}

/** A cheap estimate of a command's encoded size: its strings plus a fixed overhead. */
function estimateBytes(command: Command): number {
  const overhead = 48;
  if (command.kind !== 'kv') return command.kind === 'finalize' ? overhead + 8 * command.config.members.length : overhead;
  const op = command.op;
  const value = op.type === 'put' || op.type === 'cas' ? op.value.length + (op.type === 'cas' ? (op.expected?.length ?? 0) : 0) : 0;
  const key = op.type === 'range' ? op.prefix.length : op.key.length;
  return overhead + command.client.length + key + value;
}

/** Convenience: the persisted state of a node that has never run. */
export function freshState(config: Config, fenceEpoch = config.prior === undefined ? config.epoch : config.epoch - 1): PersistedState {
  return { hard: { promised: ZERO_BALLOT, config, fenceEpoch, commit: 0 }, entries: [] };
}

/** Builds full options from the required ones and the defaults. */
export function replicaOptions(
  partial: Pick<ReplicaOptions, 'id' | 'random' | 'snapshotData'> & Partial<ReplicaOptions>,
): ReplicaOptions {
  return { ...DEFAULT_REPLICA_OPTIONS, ...partial };
}
