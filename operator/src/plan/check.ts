/**
 * The model checker: plays the planner against the model cluster for every change n -> m and
 * every change of target midway, and checks safety and liveness in every state reached.
 *
 * The environment's choices are explored exhaustively: which node leads at the start, who wins
 * each election, at which state the target changes (once per run, to any other size), and whether
 * a Finalize is still on the wire when it does. States are remembered, so a state reached by two
 * paths is checked once.
 */
import { finalConfig, ordinals, sameConfig, type NodeConfig } from './config.js';
import { configKey, electableLeaders, livenessViolation, safetyViolation } from './invariants.js';
import { applyStep, initialModel, landFinalization, observe, type ModelState } from './model.js';
import { nextStep } from './next-step.js';
import { describeStep, isAction, type Finalize, type Step } from './steps.js';
import type { ReconfigurationMode } from './types.js';

/** Where a check failed: the case, the steps and events that led there, and what went wrong. */
export interface CheckFailure {
  readonly case: string;
  readonly trail: readonly string[];
  readonly problem: string;
}

export interface CheckSummary {
  /** Runs started: one per n -> m, mode and initial leader. */
  readonly cases: number;
  /** Target changes explored midway (each one run to completion). */
  readonly retargets: number;
  /** Distinct states checked. */
  readonly states: number;
  readonly failure?: CheckFailure;
}

/** The planner under check; tests substitute deliberately wrong ones to see the checker fail. */
export type Planner = (state: ModelState) => { readonly step: Step; readonly operation?: ModelState['operation'] };

const modes: readonly ReconfigurationMode[] = ['Transfer', 'Election'];

/** The planner the operator runs. */
export const operatorPlanner: Planner = (state) => nextStep(observe(state));

/** Checks every n -> m with n, m in 1..maxSize, in both modes, from every initial leader. */
export function checkAll(maxSize: number, planner: Planner = operatorPlanner): CheckSummary {
  const checker = new Checker(maxSize, planner);
  for (let from = 1; from <= maxSize; from += 1) {
    for (let to = 1; to <= maxSize; to += 1) {
      if (from !== to && !checker.change(from, to)) return checker.summary();
    }
  }
  return checker.summary();
}

/** Checks one change n -> m, with target changes midway to any size in 1..maxSize. */
export function checkChange(from: number, to: number, maxSize: number, planner: Planner = operatorPlanner): CheckSummary {
  const checker = new Checker(maxSize, planner);
  checker.change(from, to);
  return checker.summary();
}

/** Thrown inside the search to unwind it; never escapes {@link Checker.run}. */
class Violation {
  constructor(readonly trail: readonly string[], readonly problem: string) {}
}

class Checker {
  private readonly seen = new Set<string>();
  private readonly verdicts = new Map<string, string | undefined>();
  private cases = 0;
  private retargets = 0;
  private failure: CheckFailure | undefined;

  constructor(private readonly maxSize: number, private readonly planner: Planner) {}

  /** Runs n -> m in both modes from every initial leader; false once a run fails. */
  change(from: number, to: number): boolean {
    for (const mode of modes) {
      for (let leader = 0; leader < from; leader += 1) {
        this.failure = this.run(`${from} -> ${to} (${mode}, leader ${leader})`, initialModel(from, leader, to, mode));
        if (this.failure !== undefined) return false;
      }
    }
    return true;
  }

  summary(): CheckSummary {
    return { cases: this.cases, retargets: this.retargets, states: this.seen.size, failure: this.failure };
  }

  private run(name: string, initial: ModelState): CheckFailure | undefined {
    this.cases += 1;
    try {
      this.explore(initial, true, [], new Set());
      return undefined;
    } catch (error) {
      if (error instanceof Violation) return { case: name, trail: error.trail, problem: error.problem };
      throw error;
    }
  }

  /**
   * Depth-first over the planner's steps and the environment's choices. `path` holds the states
   * on the way here: meeting one again means the planner can go round in circles.
   */
  private explore(state: ModelState, mayRetarget: boolean, trail: readonly string[], path: Set<string>): void {
    const key = stateKey(state, mayRetarget);
    if (path.has(key)) throw new Violation(trail, 'the planner returns to a state it was in: it may never finish');
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const problem = this.verdict(state);
    if (problem !== undefined) throw new Violation(trail, problem);
    path.add(key);

    const { step, operation } = this.planner(state);
    const persisted = { ...state, operation };
    if (step.kind === 'Done') {
      const unfinished = unconverged(persisted);
      if (unfinished !== undefined) throw new Violation([...trail, 'done'], unfinished);
    } else if (!isAction(step)) {
      if (state.leader !== undefined) throw new Violation(trail, `the planner waits in a healthy cluster: ${describeStep(step)}`);
      const candidates = electableLeaders(state, 0);
      if (candidates.length === 0) throw new Violation(trail, 'nobody can win the election');
      for (const leader of candidates) {
        this.explore({ ...persisted, leader }, mayRetarget, [...trail, `pod ${leader} is elected`], path);
      }
    } else {
      const next = this.apply(persisted, step, trail);
      this.explore(next, mayRetarget, [...trail, describeStep(step)], path);
      if (step.kind === 'Finalize' && mayRetarget) this.retargetWhileFinalizing(persisted, step, trail, path);
    }
    // After the plan's own path, so that a plan that fails without any target change is reported as such.
    if (mayRetarget) {
      for (let desired = 1; desired <= this.maxSize; desired += 1) {
        if (desired === state.desired) continue;
        this.retargets += 1;
        this.explore({ ...state, desired }, false, [...trail, `target changes to ${desired}`], path);
      }
    }
    path.delete(key);
  }

  /**
   * The target changes after the record says a Finalize was sent but before it is chosen: the
   * planner is asked again and its step is executed, then the finalization lands.
   */
  private retargetWhileFinalizing(state: ModelState, finalize: Finalize, trail: readonly string[], path: Set<string>): void {
    const leader = state.leader === undefined ? undefined : state.nodes[state.leader];
    if (leader === undefined) return;
    const proposedUnder = leader.config;
    for (let desired = 1; desired <= this.maxSize; desired += 1) {
      if (desired === state.desired) continue;
      this.retargets += 1;
      let here = [...trail, describeStep(finalize), `target changes to ${desired} while the finalization is in flight`];
      const asked = { ...state, desired };
      const { step, operation } = this.planner(asked);
      let next: ModelState = { ...asked, operation };
      if (isAction(step) && step.kind !== 'Finalize') {
        next = this.apply(next, step, here);
        here = [...here, describeStep(step)];
      }
      const landed = landFinalization(next, proposedUnder);
      if (landed.ok) {
        next = landed.state;
        here = [...here, `the finalization of epoch ${finalize.epoch} lands`];
      }
      this.explore(next, false, here, path);
    }
  }

  private apply(state: ModelState, step: Parameters<typeof applyStep>[1], trail: readonly string[]): ModelState {
    const outcome = applyStep(state, step);
    if (!outcome.ok) throw new Violation([...trail, describeStep(step)], outcome.problem);
    return outcome.state;
  }

  /** Safety and liveness depend only on which configurations run where, so verdicts are shared. */
  private verdict(state: ModelState): string | undefined {
    const key = clusterKey(state);
    if (!this.verdicts.has(key)) this.verdicts.set(key, safetyViolation(state) ?? livenessViolation(state));
    return this.verdicts.get(key);
  }
}

/** Why a state the planner calls Done is not the desired quorum, if it is not. */
function unconverged(state: ModelState): string | undefined {
  const epoch = state.nodes[0]?.config.epoch ?? 0;
  const wanted: NodeConfig = finalConfig(epoch, ordinals(state.desired));
  if (state.nodes.length !== state.desired) return `done with ${state.nodes.length} pods running, ${state.desired} desired`;
  const off = state.nodes.find((node) => !sameConfig(node.config, wanted));
  return off === undefined ? undefined : `done but pod ${off.ordinal} holds epoch ${off.config.epoch} ${configKey(off.config)}`;
}

function clusterKey(state: ModelState): string {
  const nodes = state.nodes.map((node) => configKey(node.config)).join(' ');
  const finalizations = state.finalizations.map((f) => `${configKey(f.chosenUnder)}@${f.voters.join(',')}`).join(' ');
  return `${nodes} | ${finalizations}`;
}

/** Everything the planner's future depends on; progress counters for people are left out. */
function stateKey(state: ModelState, mayRetarget: boolean): string {
  const op = state.operation;
  const record = op === undefined ? '-' : `${op.original.join(',')}>${op.target.join(',')}@${op.epoch}${op.mode}${op.finalizeIssued}`;
  return `${clusterKey(state)} | ${state.leader ?? '-'} ${state.desired} ${state.mode} ${record} ${mayRetarget}`;
}
