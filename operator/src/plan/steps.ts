/**
 * The steps the planner can ask the operator to take. The operator executes at most one per
 * reconcile; every step is safe to repeat.
 */
import { formatConfig, formatMembers, type NodeConfig } from './config.js';

/** Scale the StatefulSet up by one; the new pod (ordinal = current replicas) boots on `config`. */
export interface StartPod {
  readonly kind: 'StartPod';
  readonly ordinal: number;
  readonly config: NodeConfig;
}

/** A pod is up but still pulling the log; nothing else may start until it has caught up. */
export interface WaitCatchUp {
  readonly kind: 'WaitCatchUp';
  readonly ordinal: number;
}

/** Admin `convert`: the node pauses, persists `config` and resumes. A no-op if it already holds it. */
export interface Convert {
  readonly kind: 'Convert';
  readonly ordinal: number;
  readonly config: NodeConfig;
}

/** Admin `transferLeadership` sent to `from`. */
export interface TransferLeadership {
  readonly kind: 'TransferLeadership';
  readonly from: number;
  readonly to: number;
}

/** Admin `finalize` sent to `leader`: chosen under the joint quorum, it drops `prior` on every node. */
export interface Finalize {
  readonly kind: 'Finalize';
  readonly epoch: number;
  readonly leader: number;
  /** The membership every node holds afterwards. */
  readonly members: readonly number[];
}

/** Scale the StatefulSet down by one: `ordinal` is the highest. Its volume goes with it (PVC retention `whenScaled: Delete`). */
export interface StopPod {
  readonly kind: 'StopPod';
  readonly ordinal: number;
}

/** Nothing may be done until the cluster changes by itself (a pod becomes ready, a leader is elected). */
export interface Wait {
  readonly kind: 'Wait';
  readonly reason: string;
}

/** The quorum has the desired membership and every member holds it. */
export interface Done {
  readonly kind: 'Done';
}

export type Step = StartPod | WaitCatchUp | Convert | TransferLeadership | Finalize | StopPod | Wait | Done;

/** Steps that change the cluster, as opposed to waiting for it. */
export type Action = StartPod | Convert | TransferLeadership | Finalize | StopPod;

export function isAction(step: Step): step is Action {
  return step.kind !== 'Wait' && step.kind !== 'WaitCatchUp' && step.kind !== 'Done';
}

/** The step in words, one line, e.g. `start pod 3 on {0,1,2,3,4} (prior {0,1,2}), wait until caught up`. */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'StartPod':
      return `start pod ${step.ordinal} on ${formatConfig(step.config)}, wait until caught up`;
    case 'WaitCatchUp':
      return `wait until pod ${step.ordinal} has caught up`;
    case 'Convert':
      return `convert pod ${step.ordinal} to ${formatConfig(step.config)}, wait until it is back, following and caught up`;
    case 'TransferLeadership':
      return `transfer leadership from pod ${step.from} to pod ${step.to}`;
    case 'Finalize':
      return `finalize epoch ${step.epoch} through the leader (pod ${step.leader}): every node drops prior and holds ${formatMembers(step.members)}`;
    case 'StopPod':
      return `stop pod ${step.ordinal} and delete its volume`;
    case 'Wait':
      return `wait: ${step.reason}`;
    case 'Done':
      return 'done';
  }
}

/**
 * Like {@link describeStep}, for a line of a whole plan: converting the leader in place is told
 * apart, because it costs an election.
 */
export function describePlannedStep(step: Action, leaderBefore: number | undefined): string {
  if (step.kind === 'Convert' && step.ordinal === leaderBefore) {
    return `convert pod ${step.ordinal} (the leader) to ${formatConfig(step.config)}; it pauses and a leader is elected`;
  }
  return describeStep(step);
}
