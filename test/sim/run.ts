import type { Config, NodeId } from '../../node/src/core/types.js';
import type { Violation } from './agreement.js';
import { realReplica } from './core.js';
import { FaultInjector, randomDiskProfile, randomProfile, type FaultProfile } from './faults.js';
import { History } from './history.js';
import { checkLinearizable } from './linearizability.js';
import type { ReplicaFactory } from './process.js';
import { operatorPlanner, Reconfiguration, simPlanner, type LeaderTurn } from './reconfig.js';
import { Rng } from './rng.js';
import { Trace } from './trace.js';
import { Client, type ClientPort, type WorkloadOptions } from './workload.js';
import { DEFAULT_WORLD_OPTIONS, describeConfig, World, type DiskFaultCounts } from './world.js';

/** Options of one simulated run. */
export interface RunOptions {
  readonly seed: number;
  /** Test-only core switch: plain majorities of `members`, ignoring `prior`. */
  readonly unsafePlainMajorities?: boolean;
  /**
   * The split-brain workload: expansions and shrinks done the unsafe way (every new node at once,
   * no waiting), under partitions that cut old members from new ones. Joint quorums must survive it.
   */
  readonly splitBrain?: boolean;
  /** Every trace line, as it happens (the CLI's `--seed`). */
  readonly verbose?: (line: string) => void;
  readonly factory?: ReplicaFactory;
  /** Overrides the fault phase's length. */
  readonly faultTicks?: number;
  /** Overrides how often nodes compact their log (default: every 40 applied slots). */
  readonly compactEverySlots?: number;
  /** Mutation test of the checker: nodes answer reads from local state without read index. */
  readonly unsafeLocalReads?: boolean;
  /**
   * The amnesia workload: no resizes, but members lose their disks during the fault phase and
   * restart empty. `protected`: as the node does, the restarted member votes for nobody and the
   * operator's planner repairs it; `unprotected`: it votes at once with its promises forgotten.
   */
  readonly amnesia?: 'protected' | 'unprotected';
  /** Disk faults beyond crashes (fsync failures, full disks, bit flips); default on. */
  readonly diskFaults?: boolean;
}

/** Whether a run's disks failed in any way (the summary's `disk_faults` counts such seeds). */
export function hitDiskFault(r: RunResult): boolean {
  return Object.values(r.disk).some((n) => n > 0);
}

/** What one run found. */
export interface RunResult {
  readonly seed: number;
  readonly violations: readonly Violation[];
  /** Expansions and shrinks that completed (finalized, removed nodes stopped). */
  readonly reconfigurations: number;
  readonly reconfigurationsStarted: number;
  /** Client operations that returned. */
  readonly ops: number;
  readonly ticks: number;
  /** What the disks went through: a seed "hit a disk fault" when any count is above 0. */
  readonly disk: DiskFaultCounts;
  /** A one-line description of the run's setup. */
  readonly setup: string;
  /** The last events before the end of the run (or the first violation). */
  readonly trace: readonly string[];
}

/** Ticks of the fault phase of the normal workload. */
export const FAULT_TICKS = 1000;
/**
 * The liveness bound: after the fault phase, within this many ticks a leader must exist, every
 * member's commit index must equal the leader's, every pending client operation must complete and
 * the reconfiguration in progress (if any) must finish. Generous on purpose: it covers the election
 * timeouts of a whole pending expansion (up to ~10 steps) on a calm network.
 */
export const LIVENESS_BOUND_TICKS = 2000;

const WORKLOAD: WorkloadOptions = {
  clients: 4,
  keys: 3,
  startRate: 0.3,
  attemptTimeoutTicks: 60,
  replyLossRate: 0,
  logReadRate: 0.1,
};

/** Runs one seed: fault phase with workload and reconfigurations, then the liveness phase, then the checks. */
export async function runSeed(options: RunOptions): Promise<RunResult> {
  const rng = new Rng(options.seed);
  const drawn = options.splitBrain === true
    ? splitBrainPlan(rng.fork(1))
    : options.amnesia !== undefined ? amnesiaPlan(rng.fork(1)) : normalPlan(rng.fork(1));
  // The disks fail in every workload but the split-brain one (whose point is the quorum rule).
  const plan: Plan = options.splitBrain === true || options.diskFaults === false
    ? drawn
    : { ...drawn, profile: { ...drawn.profile, disk: randomDiskProfile(rng.fork(7), options.amnesia === 'protected') } };
  const trace = new Trace(60, options.verbose);
  const worldOptions = {
    ...DEFAULT_WORLD_OPTIONS,
    node: {
      ...DEFAULT_WORLD_OPTIONS.node,
      ...(options.compactEverySlots === undefined ? {} : { compactEverySlots: options.compactEverySlots }),
      ...(options.unsafeLocalReads === true ? { unsafeLocalReads: true } : {}),
    },
  };
  const world = new World(rng.fork(2), plan.initialSize, options.factory ?? realReplica, trace, worldOptions, options.unsafePlainMajorities === true);
  world.rolesVerbose = options.verbose !== undefined;
  const amnesiaSetup = options.amnesia === undefined ? '' : ` (amnesia workload, ${options.amnesia}: disks lost at ticks ${plan.wipes.join(', ')})`;
  const setup = `seed ${options.seed}: ${plan.initialSize} nodes, changes ${plan.sizes.join(' -> ')}${amnesiaSetup}${options.splitBrain === true ? ' (split-brain workload)' : ''}${options.unsafePlainMajorities === true ? ' UNSAFE plain majorities' : ''}; faults ${JSON.stringify(plan.profile)}`;
  trace.log(0, setup);

  const history = new History();
  const violations: Violation[] = [];
  const anomaly = (kind: Violation['kind'], message: string): void => {
    if (violations.length < 20) violations.push({ kind, tick: world.now, message });
  };
  const port: ClientPort = {
    get now() {
      return world.now;
    },
    ids: () => world.ids(),
    node: (id) => world.node(id),
    anomaly: (message) => anomaly('session', message),
    ...(options.verbose === undefined ? {} : { log: (text: string) => trace.log(world.now, text) }),
  };
  // Shared by the clients, so that the liveness phase can stop losing their answers.
  const workload: WorkloadOptions = { ...WORKLOAD, replyLossRate: plan.profile.replyLossRate };
  const clientRng = rng.fork(3);
  const clients = Array.from({ length: WORKLOAD.clients }, (_, i) => new Client(`c${i}`, clientRng.fork(i), history, port, workload));

  let config: Config = world.genesis;
  let change: Reconfiguration | undefined;
  let nextChange = 0;
  let nextChangeAt = 50;
  let completed = 0;
  let started = 0;
  // At most one more lost disk than the workload's own, and only when the operator model repairs it.
  const mayLoseDisk = (): boolean =>
    options.amnesia === 'protected' && change === undefined && plan.wipes.every((at) => at < world.now) && !config.members.some((id) => world.status(id)?.dataLoss === 'suspended');
  const injector = new FaultInjector(rng.fork(4), plan.profile, () => change?.from.members ?? config.members, mayLoseDisk);
  const changeRng = rng.fork(5);

  const safe = (): boolean => world.agreement.violations.length === 0 && violations.length === 0;
  const wipeRng = rng.fork(6);
  /** A disk lost at one of the plan's ticks: a member that still remembers restarts empty. */
  const maybeWipe = (): void => {
    if (!plan.wipes.includes(world.now) || options.amnesia === undefined) return;
    const members = change?.from.members ?? config.members;
    const intact = members.filter((id) => world.status(id)?.dataLoss !== 'suspended');
    if (intact.length === 0) return;
    world.wipe(wipeRng.pick(intact), options.amnesia === 'protected');
  };
  /** The operator answers a member that reports lost data with a repair (a change to the same size). */
  const startRepair = (): void => {
    if (options.amnesia !== 'protected' || change !== undefined) return;
    if (!config.members.some((id) => world.status(id)?.dataLoss === 'suspended')) return;
    const leaderTurn: LeaderTurn = changeRng.chance(0.7) ? 'transfer' : 'election';
    change = new Reconfiguration(world, config, config.members.length, operatorPlanner(config.members.length, leaderTurn), {
      leaderTurn, stepTimeoutTicks: 150, settleTicks: 10, rush: false,
    });
    started++;
  };
  const stepReconfiguration = (mayStart: boolean): void => {
    startRepair();
    if (change === undefined && mayStart && nextChange < plan.sizes.length && world.now >= nextChangeAt) {
      const leaderTurn: LeaderTurn = changeRng.chance(0.7) ? 'transfer' : 'election';
      const toSize = plan.sizes[nextChange] as number;
      // The normal workload tests the operator's real planner; the split-brain one needs the
      // unsafe rushed order, which only the simulator's own planner can do.
      const planner = plan.rush ? simPlanner(config, toSize, leaderTurn, true) : operatorPlanner(toSize, leaderTurn);
      change = new Reconfiguration(world, config, toSize, planner, { leaderTurn, stepTimeoutTicks: 150, settleTicks: plan.rush ? 1 : 10, rush: plan.rush });
      nextChange++;
      started++;
    }
    if (change === undefined) return;
    change.step();
    if (change.done) {
      config = change.finalConfig;
      change = undefined;
      completed++;
      nextChangeAt = world.now + changeRng.range(20, 150);
    }
  };

  // Fault phase.
  injector.begin(world);
  const faultTicks = options.faultTicks ?? plan.faultTicks;
  while (world.now < faultTicks && safe()) {
    injector.tick(world);
    maybeWipe();
    stepReconfiguration(true);
    for (const c of clients) c.tick(true);
    await world.tick();
  }

  // Liveness phase: no faults, no new reconfigurations or operations; everything must converge.
  let converged: string | undefined = 'not checked';
  if (safe()) {
    injector.end(world);
    workload.replyLossRate = 0;
    const deadline = world.now + LIVENESS_BOUND_TICKS;
    while (world.now < deadline && safe()) {
      stepReconfiguration(false);
      for (const c of clients) c.tick(false);
      await world.tick();
      converged = convergence(world, clients, change === undefined);
      if (converged === undefined) break;
    }
    if (converged !== undefined && safe()) anomaly('liveness', `not converged ${LIVENESS_BOUND_TICKS} ticks after the fault phase: ${converged}`);
  }
  if (converged === undefined) {
    const diverged = stateDivergence(world);
    if (diverged !== undefined) anomaly('state', diverged);
  }

  // Linearizability of the whole history (pending operations included as never returning),
  // also after another violation: a stuck cluster says nothing about what clients were told.
  {
    const lin = checkLinearizable(history.operations);
    if (lin.ok === false) anomaly('linearizability', lin.explanation);
    if (lin.ok === 'unknown') trace.log(world.now, `linearizability of key ${lin.key} unknown after ${lin.steps} steps`);
  }
  const all = [...world.agreement.violations, ...violations];
  return {
    seed: options.seed,
    violations: all,
    reconfigurations: completed,
    reconfigurationsStarted: started,
    ops: history.completed,
    ticks: world.now,
    disk: { ...world.diskFaultCounts },
    setup,
    trace: trace.tail(),
  };
}

/** Why the cluster has not converged yet, or undefined when it has. */
function convergence(world: World, clients: readonly Client[], reconfigured: boolean): string | undefined {
  if (!reconfigured) return 'reconfiguration still in progress';
  const leader = world.leader();
  if (leader === undefined) return 'no leader';
  const members = new Set<NodeId>([...leader.config.members, ...(leader.config.prior ?? [])]);
  for (const id of members) {
    const s = world.status(id);
    if (s === undefined) return `member ${id} is down`;
    if (s.commit !== leader.commit) return `member ${id} commit ${s.commit} != leader ${leader.id} commit ${leader.commit}`;
  }
  const busy = clients.filter((c) => c.busy).map((c) => c.id);
  if (busy.length > 0) return `clients ${busy.join(',')} still waiting`;
  return undefined;
}

/** After convergence every member that applied the same index must hold the same state. */
function stateDivergence(world: World): string | undefined {
  const byApplied = new Map<number, { id: NodeId; data: string }>();
  for (const id of world.ids()) {
    const n = world.node(id);
    if (!n?.up) continue;
    const data = n.stateData();
    const first = byApplied.get(n.applied);
    if (first === undefined) byApplied.set(n.applied, { id, data });
    else if (first.data !== data) return `nodes ${first.id} and ${id} applied ${n.applied} slots but hold different states`;
  }
  return undefined;
}

interface Plan {
  readonly initialSize: number;
  readonly sizes: readonly number[];
  /** Ticks at which a member loses its disk (the amnesia workload only). */
  readonly wipes: readonly number[];
  readonly profile: FaultProfile;
  readonly rush: boolean;
  readonly faultTicks: number;
}

/** 1 to 3 changes between sizes in 1..7, from a random start, under a random fault profile. */
function normalPlan(rng: Rng): Plan {
  const initialSize = rng.pick([1, 2, 3, 3, 3, 4, 5, 5, 6, 7]);
  const sizes: number[] = [];
  let size = initialSize;
  for (let i = rng.range(1, 3); i > 0; i--) {
    let next = rng.range(1, 7);
    if (next === size) next = next === 7 ? 1 : next + 1;
    sizes.push(next);
    size = next;
  }
  return { initialSize, sizes, wipes: [], profile: randomProfile(rng), rush: false, faultTicks: FAULT_TICKS };
}

/**
 * The amnesia workload: 3 or 5 members, no resize, crashes and partitions, and one disk lost (two
 * for five members, far apart) while clients write. Repairs are one at a time, so with two lost
 * disks the second may wait for the first repair.
 */
function amnesiaPlan(rng: Rng): Plan {
  const initialSize = rng.pick([3, 3, 5]);
  const wipes = [rng.range(100, 500)];
  if (initialSize === 5) wipes.push(rng.range(550, 900));
  const profile = randomProfile(rng);
  return {
    initialSize, sizes: [], wipes, rush: false, faultTicks: FAULT_TICKS,
    profile: { ...profile, crashRate: Math.max(profile.crashRate, 0.004), partitionRate: Math.max(profile.partitionRate, 0.01) },
  };
}

/** The split-brain workload: one unsafe-style change and partitions between old and new members. */
function splitBrainPlan(rng: Rng): Plan {
  const [initialSize, target] = rng.pick([[3, 5], [3, 7], [5, 3], [5, 7], [7, 3]] as const);
  return {
    initialSize,
    sizes: [target],
    profile: {
      network: { dropRate: 0.01, duplicateRate: 0, minDelayTicks: 1, maxDelayTicks: 3 },
      crashRate: 0,
      downtimeTicks: [5, 20],
      pauseRate: 0,
      pauseTicks: [5, 20],
      partitionRate: 0.02,
      partitionTicks: [30, 120],
      partitionKinds: ['oldNew', 'oldNew', 'isolate'],
      replyLossRate: 0,
    },
    rush: true,
    wipes: [],
    faultTicks: 600,
  };
}

/** A multi-line report of a failed run: the seed, its setup, the violations and the last events. */
export function describeFailure(result: RunResult): string {
  const lines = [`seed ${result.seed} FAILED`, `  ${result.setup}`];
  for (const v of result.violations.slice(0, 5)) lines.push(`  [${v.kind} at tick ${v.tick}] ${v.message.split('\n').join('\n    ')}`);
  lines.push('  last events:');
  for (const line of result.trace) lines.push(`    ${line}`);
  return lines.join('\n');
}

export { describeConfig };
