/**
 * Which membership change is in progress: the persisted record, checked against what the pods
 * report, so that a lost or stale record cannot make the planner start over from a wrong place.
 */
import { majority, ordinals, sameMembers, type NodeConfig } from './config.js';
import { existingPods, newestConfig } from './observation.js';
import type { ObservedState, OperationKind, OperationRecord, PodObservation, ReconfigurationMode } from './types.js';

/** What the planner is working on. */
export type Work =
  | { readonly kind: 'unknown'; readonly reason: string }
  /** No change in progress; every pod that reports a configuration agrees on `membership`. */
  | { readonly kind: 'idle'; readonly membership: NodeConfig }
  | { readonly kind: 'operation'; readonly operation: OperationRecord; readonly finalized: boolean };

/** Finds the change in progress, or that there is none. */
export function currentWork(observed: ObservedState): Work {
  const newest = newestConfig(observed);
  if (newest === undefined) return { kind: 'unknown', reason: 'no pod reports a configuration yet' };
  const recorded = observed.operation;
  const operation = recorded !== undefined && recorded.epoch >= newest.epoch
    ? recorded
    : recoverOperation(newest, existingPods(observed), observed.mode);
  if (operation === undefined) return { kind: 'idle', membership: newest };
  return { kind: 'operation', operation, finalized: isFinalized(operation, existingPods(observed)) };
}

/** The record of a change from `membership` to the first `desired` ordinals. */
export function beginOperation(
  membership: readonly number[], desired: number, epoch: number, mode: ReconfigurationMode,
): OperationRecord {
  const target = ordinals(desired);
  return record(desired > membership.length ? 'Expand' : 'Shrink', membership, target, epoch, mode, false);
}

/**
 * The record of a repair: the members that lost their disks are treated as the new servers of a
 * change from the others to the same membership. Every quorum of `{membership, prior others}`
 * holds a majority of the others, which meets every earlier quorum in a node that remembers.
 */
export function beginRepair(
  membership: readonly number[], lost: readonly number[], epoch: number, mode: ReconfigurationMode,
): OperationRecord {
  const lostSet = new Set(lost);
  return record('Repair', membership.filter((ordinal) => !lostSet.has(ordinal)), membership, epoch, mode, false);
}

/**
 * The record of a change of target before finalization: same original, new target, new epoch.
 * Every node then needs a majority of the original until the new target is finalized, so nodes on
 * the abandoned joint configuration and nodes on the new one always share an original majority.
 */
export function retarget(
  operation: OperationRecord, desired: number, epoch: number, mode: ReconfigurationMode,
): OperationRecord {
  return record('Retarget', operation.original, ordinals(desired), epoch, mode, false);
}

/** Marks that a Finalize is about to be sent; see {@link OperationRecord.finalizeIssued}. */
export function withFinalizeIssued(operation: OperationRecord): OperationRecord {
  return operation.finalizeIssued ? operation : { ...operation, finalizeIssued: true };
}

/** A node applies the finalization only after it was chosen, so one node holding its result is proof. */
function isFinalized(operation: OperationRecord, pods: readonly PodObservation[]): boolean {
  return pods.some(({ config }) => config !== undefined && config.prior === undefined
    && config.epoch === operation.epoch && sameMembers(config.members, operation.target));
}

/**
 * Rebuilds the record from the pods when it is missing or older than what they hold. We cannot
 * know whether a Finalize was already sent, so the rebuilt record says it was: the change is driven
 * to its end before a new target is followed.
 */
function recoverOperation(
  newest: NodeConfig, pods: readonly PodObservation[], mode: ReconfigurationMode,
): OperationRecord | undefined {
  if (newest.prior !== undefined) {
    const kind = newest.members.length >= newest.prior.length ? 'Expand' : 'Shrink';
    return record(kind, newest.prior, newest.members, newest.epoch, mode, true);
  }
  // Finalized, but pods beyond the membership still run: the stop phase of a shrink was cut short.
  const highest = pods.at(-1)?.ordinal ?? -1;
  if (highest < newest.members.length) return undefined;
  return record('Shrink', ordinals(highest + 1), newest.members, newest.epoch, mode, true);
}

function record(
  kind: OperationKind, original: readonly number[], target: readonly number[], epoch: number,
  mode: ReconfigurationMode, finalizeIssued: boolean,
): OperationRecord {
  return {
    kind, from: original.length, to: target.length, original: [...original], target: [...target], epoch, mode,
    finalizeIssued, step: 0, totalSteps: 0, description: '',
  };
}

/**
 * How many new pods start before any original node converts: enough that, when the leader pauses
 * for its own conversion, the running members of the target still form a majority of it
 * (n + k - 1 >= floor(m/2) + 1), and at least one, as in the patent. 3->5: 1, 3->7: 2, 1->3: 2.
 */
export function leadingPodCount(originalSize: number, targetSize: number): number {
  if (targetSize <= originalSize) return 0;
  const needed = majority(targetSize) + 1 - originalSize;
  return Math.min(targetSize - originalSize, Math.max(1, needed));
}
