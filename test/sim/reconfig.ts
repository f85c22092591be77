import type { Config, NodeId, ReplicaStatus } from '../../node/src/core/types.js';
import { nextStep } from '../../operator/src/plan/next-step.js';
import type { ObservedState, OperationRecord, PodObservation } from '../../operator/src/plan/types.js';
import type { AdminReply, SimNode } from './process.js';
import { describeConfig, range, type World } from './world.js';

/** How the old leader's turn is taken (the design note keeps both to compare them). */
export type LeaderTurn = 'transfer' | 'election';

/** Tunables of a reconfiguration. */
export interface ReconfigOptions {
  readonly leaderTurn: LeaderTurn;
  /** A step whose health condition does not hold after this many ticks is retried. */
  readonly stepTimeoutTicks: number;
  /**
   * Ticks between two actions at least. A conversion in the simulator is instant, so a converted
   * follower looks healthy at once; a real pod restarts and re-syncs first. The pause keeps the
   * pace of one step at a time and lets the cluster react (elect, replicate) between steps.
   */
  readonly settleTicks: number;
  /**
   * The unsafe plain method, for the split-brain demonstration only: start every new node at
   * once and convert nodes without waiting for health. Never used by the normal workload.
   */
  readonly rush: boolean;
}

/** One operator action, as the trace shows it. */
export type Action =
  | { readonly kind: 'start'; readonly node: NodeId; readonly config: Config }
  | { readonly kind: 'convert'; readonly node: NodeId; readonly config: Config }
  | { readonly kind: 'transfer'; readonly from: NodeId; readonly to: NodeId }
  | { readonly kind: 'finalize'; readonly leader: NodeId }
  | { readonly kind: 'stop'; readonly node: NodeId }
  | { readonly kind: 'wait'; readonly why: string }
  | { readonly kind: 'done' };

/** What the planner sees of the cluster: statuses of running nodes, the leader, who exists. */
export interface Observed {
  readonly exists: ReadonlySet<NodeId>;
  readonly status: ReadonlyMap<NodeId, ReplicaStatus>;
  readonly leader: ReplicaStatus | undefined;
}

/**
 * The next action of the planner's order (design note, "The planner's order (ours)"), from what
 * is observed now: level-triggered, so a step that timed out, a crash or a change of leader just
 * lead to the right next action on the next call. Every action is idempotent.
 *
 * The normal workload drives the operator's own planner (`operator/src/plan`, see
 * {@link operatorPlanner}); this transcription of the note is kept because it can also do the
 * unsafe plain method (`rush`), which the real planner rightly cannot, for the split-brain workload.
 */
export function nextAction(from: Config, target: Config, observed: Observed, leaderTurn: LeaderTurn, rush: boolean): Action {
  const { exists, status, leader } = observed;
  const old = from.members;
  const members = target.members;
  const added = members.filter((id) => !old.includes(id));
  const removed = old.filter((id) => !members.includes(id));
  const converted = (id: NodeId): boolean => {
    const s = status.get(id);
    return s !== undefined && s.config.epoch >= target.epoch;
  };
  const healthy = (id: NodeId): boolean => status.get(id)?.caughtUp === true;
  const finalized = leader !== undefined && leader.config.epoch >= target.epoch && leader.config.prior === undefined;

  if (finalized) {
    // Shrink: only now stop the removed nodes, highest ordinal first.
    const stop = removed.filter((id) => exists.has(id)).sort((a, b) => b - a)[0];
    return stop === undefined ? { kind: 'done' } : { kind: 'stop', node: stop };
  }
  if (leader === undefined) return { kind: 'wait', why: 'no leader' };

  // Expansion step 1: the first k new nodes, one at a time, each caught up before the next.
  const k = Math.min(added.length, Math.max(1, Math.floor(members.length / 2) + 2 - old.length));
  const firstBatch = rush ? added : added.slice(0, k);
  for (const id of firstBatch) {
    if (!exists.has(id)) return { kind: 'start', node: id, config: target };
    if (!rush && !healthy(id)) return { kind: 'wait', why: `node ${id} catching up` };
  }
  // Shrink step 1: a leader that is being removed hands over to the most caught-up survivor.
  if (removed.includes(leader.id)) {
    const to = mostCaughtUp(members, status, leader);
    return to === undefined ? { kind: 'wait', why: 'no survivor to take over' } : { kind: 'transfer', from: leader.id, to };
  }
  // Step 2: the old followers that stay, in ordinal order, each back and caught up before the next.
  const staying = old.filter((id) => members.includes(id));
  for (const id of staying) {
    if (id === leader.id) continue;
    if (!status.has(id)) {
      if (rush) continue;
      return { kind: 'wait', why: `node ${id} is down` };
    }
    if (!converted(id)) return { kind: 'convert', node: id, config: target };
    if (!rush && !healthy(id)) return { kind: 'wait', why: `node ${id} catching up after conversion` };
  }
  // Step 3: the leader's turn.
  if (!converted(leader.id)) {
    if (leaderTurn === 'transfer') {
      const to = mostCaughtUp(members.filter(converted), status, leader);
      if (to !== undefined) return { kind: 'transfer', from: leader.id, to };
    }
    return { kind: 'convert', node: leader.id, config: target };
  }
  // Step 4: the remaining new nodes, one at a time.
  for (const id of added) {
    if (!exists.has(id)) return { kind: 'start', node: id, config: target };
    if (!rush && !healthy(id)) return { kind: 'wait', why: `node ${id} catching up` };
  }
  // Step 5: finalize once every member is on the target configuration.
  const missing = members.filter((id) => !converted(id));
  if (missing.length > 0) return { kind: 'wait', why: `nodes ${missing.join(',')} not converted` };
  return { kind: 'finalize', leader: leader.id };
}

/** The running member (other than the leader) with the highest commit index. */
function mostCaughtUp(candidates: readonly NodeId[], status: ReadonlyMap<NodeId, ReplicaStatus>, leader: ReplicaStatus): NodeId | undefined {
  let best: ReplicaStatus | undefined;
  for (const id of candidates) {
    const s = status.get(id);
    if (s === undefined || id === leader.id || !s.caughtUp) continue;
    if (best === undefined || s.commit > best.commit) best = s;
  }
  return best?.id;
}

/** The configurations of a change from `from` to `size` members (ordinals 0..size-1). */
export function targetConfig(from: Config, size: number): Config {
  return { epoch: from.epoch + 1, members: range(size), prior: from.members };
}

/** Chooses the next action from the world; the reconfiguration executes it. */
export type Planner = (world: World) => Action;

/** The simulator's own order (see {@link nextAction}) as a planner, from `from` to `toSize` nodes. */
export function simPlanner(from: Config, toSize: number, leaderTurn: LeaderTurn, rush: boolean): Planner {
  const target = targetConfig(from, toSize);
  return (world) => nextAction(from, target, observe(world), leaderTurn, rush);
}

/**
 * The operator's planner (`nextStep` of `operator/src/plan`) as a planner: the world is observed the
 * way the operator observes pods (existence, readiness, admin `status`), and the operation record
 * is kept between calls the way the operator keeps it in the custom resource's status.
 */
export function operatorPlanner(toSize: number, leaderTurn: LeaderTurn): Planner {
  let operation: OperationRecord | undefined;
  return (world) => {
    const pods: PodObservation[] = world.ids().map((ordinal) => {
      const s = world.status(ordinal);
      if (s === undefined) return { ordinal, exists: true, ready: false };
      return {
        ordinal, exists: true, ready: true, config: s.config, role: s.role, caughtUp: s.caughtUp && !s.unregistered, commitIndex: s.commit,
        ...(s.dataLoss === 'none' ? {} : { dataLoss: s.dataLoss }),
      };
    });
    const leader = world.leader()?.id;
    const observed: ObservedState = {
      desired: toSize,
      mode: leaderTurn === 'transfer' ? 'Transfer' : 'Election',
      pods,
      ...(leader === undefined ? {} : { leader }),
      ...(operation === undefined ? {} : { operation }),
    };
    const decision = nextStep(observed);
    operation = decision.operation;
    const step = decision.step;
    switch (step.kind) {
      case 'StartPod':
        return { kind: 'start', node: step.ordinal, config: step.config };
      case 'Convert':
        return { kind: 'convert', node: step.ordinal, config: step.config };
      case 'TransferLeadership':
        return { kind: 'transfer', from: step.from, to: step.to };
      case 'Finalize':
        return { kind: 'finalize', leader: step.leader };
      case 'StopPod':
        return { kind: 'stop', node: step.ordinal };
      case 'Wait':
        return { kind: 'wait', why: step.reason };
      case 'WaitCatchUp':
        return { kind: 'wait', why: `pod ${step.ordinal} catching up` };
      case 'Done':
        return { kind: 'done' };
    }
  };
}

function observe(world: World): Observed {
  const status = new Map<NodeId, ReplicaStatus>();
  for (const id of world.ids()) {
    const s = world.status(id);
    if (s !== undefined) status.set(id, s);
  }
  return { exists: new Set(world.ids()), status, leader: world.leader() };
}

/**
 * Drives one reconfiguration through the operator's operations (start, convert, transfer,
 * finalize, stop), one action at a time, as a reconcile loop would: it asks the planner for the
 * next action, does it, and does the same action again only after `stepTimeoutTicks` (every
 * action is idempotent, so a repeat is a retry, not a second change).
 */
export class Reconfiguration {
  done = false;
  actions = 0;
  private waitUntil = 0;
  private settleUntil = 0;
  private lastAction = '';
  private lastWait = '';

  constructor(
    private readonly world: World,
    /** The finalized configuration the change starts from. */
    readonly from: Config,
    readonly toSize: number,
    private readonly planner: Planner,
    private readonly options: ReconfigOptions,
  ) {
    world.trace.log(world.now, `reconfigure ${describeConfig(from)} -> ${toSize} nodes (${options.leaderTurn} mode${options.rush ? ', rushed' : ''})`);
  }

  /** The finalized configuration this change ends in. */
  get finalConfig(): Config {
    return { epoch: this.from.epoch + 1, members: range(this.toSize) };
  }

  /** Called every tick: performs the next action when the last one has settled or timed out. */
  step(): void {
    if (this.done) return;
    const world = this.world;
    if (world.now < this.settleUntil) return;
    this.registerNewServers();
    const action = this.planner(world);
    if (action.kind === 'done') {
      this.done = true;
      world.trace.log(world.now, `reconfiguration to ${this.toSize} nodes done after ${this.actions} actions`);
      return;
    }
    if (action.kind === 'wait') {
      if (action.why !== this.lastWait && world.rolesVerbose) world.trace.log(world.now, `operator: wait: ${action.why}`);
      this.lastWait = action.why;
      return;
    }
    this.lastWait = '';
    // The same action again before its timeout: its effect is on the way. A transfer counts as
    // the same whatever its target, so that a new "most caught-up" node does not restart it.
    const key = action.kind === 'transfer' ? `transfer ${action.from}` : JSON.stringify(action);
    if (key === this.lastAction && world.now < this.waitUntil) return;
    this.lastAction = key;
    this.waitUntil = world.now + this.options.stepTimeoutTicks;
    this.settleUntil = world.now + this.options.settleTicks;
    this.actions++;
    this.perform(action);
  }

  /**
   * The operator registers a new server once its bootstrap ConfigMap names it as started; here
   * there is no ConfigMap, so a new server is registered as soon as it answers.
   */
  private registerNewServers(): void {
    const world = this.world;
    for (const id of world.ids()) {
      if (world.status(id)?.unregistered !== true) continue;
      world.guard(id, () => {
        world.node(id)?.admin('Register', {}, (r) => {
          if (!r.ok) world.trace.log(world.now, `operator: register ${id} refused: ${r.error}`);
        });
        world.trace.log(world.now, `operator: register ${id}`);
      });
    }
  }

  private perform(action: Action): void {
    const world = this.world;
    // Through the admin service's handlers, as the operator's gRPC calls arrive; the answer
    // comes when the handler calls back (a finalize: once the finalize entry is applied).
    const call = (id: NodeId, what: string, fn: (node: SimNode, answer: (r: AdminReply) => void) => void): void => {
      const n = world.node(id);
      if (!n?.up) return;
      world.trace.log(world.now, `operator: ${what}`);
      world.guard(id, () =>
        fn(n, (r) => {
          if (!r.ok) world.trace.log(world.now, `operator: ${what} refused: ${r.error}`);
        }),
      );
    };
    switch (action.kind) {
      case 'start': {
        // A new pod starts fenced at the fence epoch the quorum is at (the original's epoch).
        const fence = world.leader()?.fenceEpoch ?? this.from.epoch;
        world.startNew(action.node, action.config, fence, true);
        return;
      }
      case 'convert':
        call(action.node, `convert ${action.node} to ${describeConfig(action.config)}`, (n, answer) => n.admin('Convert', { config: action.config }, answer));
        return;
      case 'transfer':
        call(action.from, `transfer leadership ${action.from} -> ${action.to}`, (n, answer) => n.admin('TransferLeadership', { target: action.to }, answer));
        return;
      case 'finalize':
        call(action.leader, `finalize on ${action.leader}`, (n, answer) => n.admin('Finalize', {}, answer));
        return;
      case 'stop':
        world.remove(action.node);
        return;
      default:
        return;
    }
  }
}
