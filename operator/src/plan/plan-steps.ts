/**
 * Whole plans: the planner played against a model cluster in which every step succeeds at once.
 * The printed plan is therefore exactly what the operator does when nothing goes wrong.
 */
import { decide } from './decide.js';
import { electableLeaders } from './invariants.js';
import { applyStep, initialModel, observe, type ModelState } from './model.js';
import { describePlannedStep, describeStep, isAction, type Action } from './steps.js';
import type { ReconfigurationMode } from './types.js';

export interface PlannedStep {
  readonly step: Action;
  /** The leader when the step is taken; a step that converts it costs an election. */
  readonly leader: number | undefined;
  readonly text: string;
}

/** The steps from `state` to Done, or where and why the planner got stuck. */
export interface IdealRun {
  readonly steps: readonly PlannedStep[];
  readonly stuck?: string;
}

/** A bound far above any real plan (about 3 steps per node), so that a looping planner is reported, not run forever. */
const maxSteps = 200;

/** The plan n -> m for a quorum led by `leader`. */
export function planSteps(from: number, to: number, mode: ReconfigurationMode, leader = 0): IdealRun {
  return idealRun(initialModel(from, leader, to, mode));
}

/**
 * Plays the planner from `state` until Done. Elections are won by the lowest electable ordinal
 * among those holding the newest configuration, which is what a short election timeout on the
 * converted nodes favours; any winner gives the same remaining steps.
 */
export function idealRun(initial: ModelState): IdealRun {
  const steps: PlannedStep[] = [];
  let state = initial;
  while (steps.length < maxSteps) {
    const { step, operation } = decide(observe(state));
    state = { ...state, operation };
    if (step.kind === 'Done') return { steps };
    if (!isAction(step)) {
      const winner = state.leader === undefined ? electionWinner(state) : undefined;
      if (winner === undefined) return { steps, stuck: describeStep(step) };
      state = { ...state, leader: winner };
      continue;
    }
    const outcome = applyStep(state, step);
    if (!outcome.ok) return { steps, stuck: outcome.problem };
    steps.push({ step, leader: state.leader, text: describePlannedStep(step, state.leader) });
    state = outcome.state;
  }
  return { steps, stuck: `no Done after ${maxSteps} steps` };
}

function electionWinner(state: ModelState): number | undefined {
  const candidates = electableLeaders(state, 0);
  const newest = Math.max(...candidates.map((ordinal) => state.nodes[ordinal]?.config.epoch ?? 0));
  return candidates.find((ordinal) => state.nodes[ordinal]?.config.epoch === newest);
}
