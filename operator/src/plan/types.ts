/**
 * What the planner is given: the cluster as the operator observed it, and the durable record of the
 * operation in progress that the operator keeps in the custom resource's status.
 */
import type { NodeConfig } from './config.js';

/**
 * How the leader's own conversion is done. `Transfer` hands leadership to a converted node first
 * (a few round trips); `Election` pauses the leader and lets the converted nodes elect one, as the
 * patent does (an election timeout). Both are kept so that the two can be measured side by side.
 */
export type ReconfigurationMode = 'Transfer' | 'Election';

export type NodeRole = 'leader' | 'follower' | 'candidate';

/** One StatefulSet ordinal as observed: the pod object, its readiness and what its admin `status` said. */
export interface PodObservation {
  readonly ordinal: number;
  /** The pod object exists (it may still be starting). */
  readonly exists: boolean;
  /** The pod is Ready and answered the admin `status` call. */
  readonly ready: boolean;
  readonly config?: NodeConfig;
  readonly role?: NodeRole;
  /** The node has pulled the log up to the leader's commit index (within its lag threshold). */
  readonly caughtUp?: boolean;
  readonly commitIndex?: number;
  /**
   * The node restarted on an empty disk as a member and votes for nobody (`suspended`) until a
   * repair converts it as the new server of a change from the other members; `repairing` once
   * converted. Absent when its disk is intact.
   */
  readonly dataLoss?: 'suspended' | 'repairing';
}

/** Everything the planner decides from. The operator builds it afresh on every reconcile. */
export interface ObservedState {
  /** `spec.replicas`: the quorum size the user asked for. */
  readonly desired: number;
  /** `spec.reconfiguration.mode`; an operation keeps the mode it started with. */
  readonly mode: ReconfigurationMode;
  /** Pods by ordinal; an ordinal that is absent counts as a pod that does not exist. */
  readonly pods: readonly PodObservation[];
  /** The leader as the pods report it; absent while an election is in progress. */
  readonly leader?: number;
  /**
   * The StatefulSet's `spec.replicas`, when known. A scale-up or scale-down that has not produced
   * or removed its pod yet shows here before it shows in `pods`, and the planner waits for it.
   */
  readonly statefulSetReplicas?: number;
  /** The record of the operation in progress, as last persisted. */
  readonly operation?: OperationRecord;
}

export type OperationKind = 'Expand' | 'Shrink' | 'Retarget' | 'Repair';

/**
 * The durable progress record of one membership change, stored in `status.operation`.
 *
 * Progress itself is read from the pods (which configuration each holds), so the record only keeps
 * what cannot be observed: the configurations the change runs between, the epoch it was given, the
 * mode, and whether a finalization may be in flight.
 */
export interface OperationRecord {
  readonly kind: OperationKind;
  /** Size of `original`. */
  readonly from: number;
  /** Size of `target`. */
  readonly to: number;
  /** O: the finalized membership the change started from; every node needs a majority of it until finalization. */
  readonly original: readonly number[];
  /** N (or T after a retarget): the membership being moved to. */
  readonly target: readonly number[];
  /** Epoch of the joint configuration `{target, prior original}` and of its finalization. */
  readonly epoch: number;
  readonly mode: ReconfigurationMode;
  /**
   * Set before the first Finalize is sent, and never cleared. From then on the target must not
   * change: a retarget to epoch+1 racing with a finalization of epoch that is already on the wire
   * would let a node on the finalized target and a node on the new joint configuration form
   * disjoint quorums. A later target change waits and becomes a new operation.
   */
  readonly finalizeIssued: boolean;
  /** 1-based number of the step being executed, for people. */
  readonly step: number;
  /** Steps the whole operation takes when nothing goes wrong, for people. */
  readonly totalSteps: number;
  /** The step being executed, in words. */
  readonly description: string;
}
