/**
 * The planner's core: from the observed cluster and the operation record, the single next step.
 *
 * Progress is read from the pods, never counted: a node is converted when it holds the joint
 * configuration, a pod is started when it exists. So the same observation always gives the same
 * step, and an operator killed between any two calls resumes where the cluster is.
 */
import { finalConfig, jointConfig, majority, sameConfig, type NodeConfig } from './config.js';
import { existingPods, highestEpoch, podAt } from './observation.js';
import {
  beginOperation, beginRepair, currentWork, leadingPodCount, retarget, withFinalizeIssued,
} from './operation.js';
import type { Step } from './steps.js';
import type { ObservedState, OperationRecord, PodObservation } from './types.js';

/**
 * The next step, and the operation record to persist. The operator must persist the record
 * before executing the step: it carries the epoch the step uses and whether a Finalize may be on
 * the wire. `operation` is absent when no change is in progress.
 */
export interface Decision {
  readonly step: Step;
  readonly operation?: OperationRecord;
}

/** The next step, without progress counting; see {@link nextStep} for the one the operator calls. */
export function decide(observed: ObservedState): Decision {
  const unsettled = statefulSetUnsettled(observed);
  if (unsettled !== undefined) return { step: unsettled, operation: observed.operation };
  const work = currentWork(observed);
  switch (work.kind) {
    case 'unknown':
      return { step: wait(work.reason), operation: observed.operation };
    case 'idle':
      return decideIdle(observed, work.membership);
    case 'operation':
      return work.finalized
        ? decideAfterFinalization(observed, work.operation)
        : decideBeforeFinalization(observed, work.operation);
  }
}

function decideIdle(observed: ObservedState, membership: NodeConfig): Decision {
  const unhealthy = firstUnhealthy(observed, existingPods(observed), membership.members);
  if (unhealthy !== undefined) return { step: unhealthy };
  // Members that lost their disks are repaired before any resize: until then they vote for nobody.
  const lost = existingPods(observed).filter((pod) => membership.members.includes(pod.ordinal) && pod.dataLoss === 'suspended').map((pod) => pod.ordinal);
  const first = lost[0];
  if (first !== undefined) {
    // One at a time: a majority of the others then meets every earlier quorum in a node that
    // remembers (majority(n) + majority(n - 1) > n), and the other lost ones, which answer nobody,
    // only cost availability. The members that remember must be able to form that majority.
    const size = membership.members.length;
    if (size - lost.length < majority(size - 1)) {
      return { step: wait(`pods ${lost.join(', ')} lost their data and too few members remember to repair them online`) };
    }
    return decideBeforeFinalization(observed, beginRepair(membership.members, [first], highestEpoch(observed) + 1, observed.mode));
  }
  if (observed.desired === membership.members.length) return { step: { kind: 'Done' } };
  const operation = beginOperation(membership.members, observed.desired, highestEpoch(observed) + 1, observed.mode);
  return decideBeforeFinalization(observed, operation);
}

function decideBeforeFinalization(observed: ObservedState, recorded: OperationRecord): Decision {
  const operation = !recorded.finalizeIssued && observed.desired !== recorded.target.length
    ? retarget(recorded, observed.desired, Math.max(recorded.epoch, highestEpoch(observed)) + 1, observed.mode)
    : recorded;
  const decision = (step: Step): Decision => ({ step, operation });

  // Every existing pod is an acceptor some quorum may need, removed ones included: all must be healthy.
  const unhealthy = firstUnhealthy(observed, existingPods(observed), operation.original);
  if (unhealthy !== undefined) return decision(unhealthy);
  const leader = observed.leader;
  if (leader === undefined) return decision(wait('no leader; an election is in progress'));
  if (podAt(observed, leader) === undefined) return decision(wait(`the reported leader, pod ${leader}, does not run`));

  const joint = jointConfig(operation.epoch, operation.target, operation.original);
  const inTarget = new Set(operation.target);
  const holdsJoint = (pod: PodObservation | undefined): boolean => sameConfig(pod?.config, joint);

  const original = new Set(operation.original);
  const newOrdinals = operation.target.filter((ordinal) => !original.has(ordinal));
  const leading = newOrdinals.slice(0, leadingPodCount(operation.original.length, operation.target.length));
  // New pods start before any existing node converts, so that each conversion pauses a node while
  // the most nodes able to lead under the joint configuration are up.
  for (const ordinal of leading) {
    if (podAt(observed, ordinal) === undefined) return decision({ kind: 'StartPod', ordinal, config: joint });
  }
  for (const ordinal of leading) {
    // Started for an earlier target of this change: it holds that target's joint configuration.
    if (!holdsJoint(podAt(observed, ordinal))) return decision({ kind: 'Convert', ordinal, config: joint });
  }

  for (const pod of existingPods(observed)) {
    if (inTarget.has(pod.ordinal) && pod.ordinal !== leader && !holdsJoint(pod)) {
      return decision({ kind: 'Convert', ordinal: pod.ordinal, config: joint });
    }
  }

  // A node repairing lost data ignores the unconverted leader's messages, its hand-over included.
  const converted = existingPods(observed).filter((pod) => inTarget.has(pod.ordinal) && pod.ordinal !== leader && holdsJoint(pod) && pod.dataLoss === undefined);
  if (!inTarget.has(leader)) {
    // A leader outside the target (shrink) is never converted: it hands over to a converted survivor,
    // in either mode, since stopping it before finalization is what we must not do.
    const to = mostCaughtUp(converted);
    if (to !== undefined) return decision({ kind: 'TransferLeadership', from: leader, to });
    return decision(wait(`no converted member of the target can take leadership from pod ${leader}`));
  }
  if (!holdsJoint(podAt(observed, leader))) {
    const to = operation.mode === 'Transfer' ? mostCaughtUp(converted) : undefined;
    if (to !== undefined) return decision({ kind: 'TransferLeadership', from: leader, to });
    // Election mode, or the leader is the only member of the target (3 -> 1): it converts in place
    // and the converted nodes elect a leader.
    return decision({ kind: 'Convert', ordinal: leader, config: joint });
  }

  for (const ordinal of newOrdinals) {
    if (podAt(observed, ordinal) === undefined) return decision({ kind: 'StartPod', ordinal, config: joint });
  }

  return {
    step: { kind: 'Finalize', epoch: operation.epoch, leader, members: operation.target },
    operation: withFinalizeIssued(operation),
  };
}

function decideAfterFinalization(observed: ObservedState, operation: OperationRecord): Decision {
  const decision = (step: Step): Decision => ({ step, operation });
  const inTarget = new Set(operation.target);
  const members = existingPods(observed).filter((pod) => inTarget.has(pod.ordinal));
  const unhealthy = firstUnhealthy(observed, members, operation.target);
  if (unhealthy !== undefined) return decision(unhealthy);
  const applied = finalConfig(operation.epoch, operation.target);
  const lagging = members.find((pod) => !sameConfig(pod.config, applied));
  if (lagging !== undefined) {
    return decision(wait(`pod ${lagging.ordinal} has not applied the finalization of epoch ${operation.epoch}`));
  }
  // Removed pods stop only now: before, their acceptance may be needed for a majority of the original (7 -> 3).
  const highest = existingPods(observed).at(-1);
  if (highest !== undefined && highest.ordinal >= operation.target.length) {
    return decision({ kind: 'StopPod', ordinal: highest.ordinal });
  }
  return decideIdle({ ...observed, operation: undefined }, applied);
}

/** Waits while the StatefulSet has been scaled but its pods have not followed yet. */
function statefulSetUnsettled(observed: ObservedState): Step | undefined {
  const replicas = observed.statefulSetReplicas;
  const pods = existingPods(observed).length;
  if (replicas === undefined || replicas === pods) return undefined;
  return wait(`the StatefulSet has ${replicas} replicas but ${pods} pods exist`);
}

/**
 * The first reason not to act: a member that does not exist, a pod that is not ready (a converted
 * node still paused counts), or one that has not caught up with the leader.
 */
function firstUnhealthy(
  observed: ObservedState, pods: readonly PodObservation[], requiredMembers: readonly number[],
): Step | undefined {
  const missing = requiredMembers.find((ordinal) => podAt(observed, ordinal) === undefined);
  if (missing !== undefined) return wait(`member pod ${missing} does not exist`);
  const notReady = pods.find((pod) => !pod.ready || pod.config === undefined);
  if (notReady !== undefined) return wait(`pod ${notReady.ordinal} is not ready`);
  const lagging = pods.find((pod) => pod.caughtUp !== true);
  if (lagging !== undefined) return { kind: 'WaitCatchUp', ordinal: lagging.ordinal };
  return undefined;
}

/** The node to hand leadership to: the highest commit index, then the lowest ordinal. */
function mostCaughtUp(candidates: readonly PodObservation[]): number | undefined {
  const ranked = [...candidates].sort((a, b) => (b.commitIndex ?? 0) - (a.commitIndex ?? 0) || a.ordinal - b.ordinal);
  return ranked[0]?.ordinal;
}

function wait(reason: string): Step {
  return { kind: 'Wait', reason };
}
