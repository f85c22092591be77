/**
 * The function the operator calls on every reconcile.
 */
import { decide, type Decision } from './decide.js';
import type { ModelState } from './model.js';
import { idealRun } from './plan-steps.js';
import { describeStep, isAction } from './steps.js';
import type { ObservedState, OperationRecord } from './types.js';

/**
 * The single next step for the observed cluster, with the operation record to persist before
 * executing it. Pure and deterministic: the same observation and record give the same step and the
 * same record, so a step may be repeated and an operator killed between two calls resumes.
 *
 * Besides {@link decide} it keeps the record's progress fields for people: `step` advances when
 * the planner moves on to a different action, and `totalSteps` is the length of the whole change
 * when nothing goes wrong, counted when the change (or its new target) begins.
 */
export function nextStep(observed: ObservedState): Decision {
  const decision = decide(observed);
  const { step, operation } = decision;
  if (operation === undefined || !isAction(step)) return decision;
  const description = describeStep(step);
  if (operation.step > 0 && operation.description === description) return decision;
  if (operation.step === 0) {
    const totalSteps = idealRun(modelOf(observed, operation)).steps.length;
    return { step, operation: { ...operation, step: 1, totalSteps, description } };
  }
  const next = operation.step + 1;
  return { step, operation: { ...operation, step: next, totalSteps: Math.max(operation.totalSteps, next), description } };
}

/** The observed cluster as a model, every pod healthy; only used to count the steps ahead. */
function modelOf(observed: ObservedState, operation: OperationRecord): ModelState {
  return {
    nodes: observed.pods.flatMap(({ ordinal, exists, config }) => (exists && config !== undefined ? [{ ordinal, config }] : []))
      .sort((a, b) => a.ordinal - b.ordinal),
    leader: observed.leader,
    desired: observed.desired,
    mode: observed.mode,
    operation,
    finalizations: [],
  };
}
