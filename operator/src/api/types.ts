/**
 * The PaxosQuorum custom resource (paxos.quorum.dev/v1alpha1) as TypeScript types. They mirror
 * `operator/crd/paxosquorums.yaml`; fields the CRD defaults are optional here because a client may
 * omit them, and present on objects read back from the API server.
 */
import type { OperationRecord, ReconfigurationMode } from '../plan/types.js';

export const GROUP = 'paxos.quorum.dev';
export const VERSION = 'v1alpha1';
export const KIND = 'PaxosQuorum';
export const PLURAL = 'paxosquorums';

/** The desired quorum. */
export interface PaxosQuorumSpec {
  /** Number of Paxos nodes, 1..15; default 3. Changed online, one step at a time. */
  replicas?: number;
  /** Container image of the Paxos node. */
  image?: string;
  /** core/v1 ResourceRequirements of the node container, passed through unchanged. */
  resources?: Record<string, unknown>;
  /** Immutable after creation (CEL: `self == oldSelf`). */
  storage?: StorageSpec;
  ports?: PortsSpec;
  tuning?: TuningSpec;
  reconfiguration?: ReconfigurationSpec;
  pod?: PodSpecOverrides;
}

export interface StorageSpec {
  /** A Kubernetes quantity; default "1Gi". */
  size?: string;
  /** The cluster's default StorageClass when absent. */
  storageClassName?: string;
}

export interface PortsSpec {
  /** Default 7000. */
  client?: number;
  /** Default 7001. */
  peer?: number;
  /** The admin API the operator calls; the peer port when absent. */
  admin?: number;
  /** Default 9090. */
  metrics?: number;
}

export interface TuningSpec {
  /** 100..60000, default 1000. */
  electionTimeoutMs?: number;
  /** Default 100; at most half of `electionTimeoutMs`. */
  heartbeatMs?: number;
  /** Default 10000. */
  snapshotThresholdEntries?: number;
}

export interface ReconfigurationSpec {
  /** Default `Transfer`. */
  mode?: ReconfigurationMode;
  /** How long one step may wait for health before the quorum is reported Blocked; min 5, default 120. */
  stepTimeoutSeconds?: number;
}

/** Scheduling and metadata of the node pods; the large core/v1 shapes are passed through unchanged. */
export interface PodSpecOverrides {
  affinity?: Record<string, unknown>;
  tolerations?: Record<string, unknown>[];
  nodeSelector?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export type Phase = 'Pending' | 'Available' | 'Reconfiguring' | 'Degraded' | 'Blocked';

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  /** RFC 3339; changes only when `status` flips. */
  lastTransitionTime: string;
  reason: string;
  message: string;
}

/** One node as shown in `status.members`. */
export interface MemberStatus {
  /** Pod name. */
  name: string;
  /** Node id: the StatefulSet ordinal. */
  id: number;
  role?: 'leader' | 'follower' | 'candidate' | 'unknown';
  epoch?: number;
  healthy?: boolean;
  /** Entries behind the leader's commit index. */
  lag?: number;
  /** Set while the pod's node lost its volume: `suspended` (votes for nobody), then `repairing`. */
  dataLoss?: 'suspended' | 'repairing';
}

/** `status.operation`: the planner's record plus the times only the operator knows. */
export interface OperationStatus extends OperationRecord {
  /** RFC 3339 time the change began. */
  startedAt?: string;
  /** RFC 3339 time the current step was first executed; measured against `stepTimeoutSeconds`. */
  stepStartedAt?: string;
  /** The last action executed, in words. */
  lastAction?: string;
}

export interface PaxosQuorumStatus {
  observedGeneration?: number;
  phase?: Phase;
  conditions?: Condition[];
  /** Pods that exist (the scale subresource's status replicas). */
  replicas?: number;
  readyReplicas?: number;
  /** Name of the pod that leads. */
  leader?: string;
  /** Epoch of the newest configuration the members hold. */
  configEpoch?: number;
  members?: MemberStatus[];
  /** Absent (or null) when no change is in progress. */
  operation?: OperationStatus | null;
  /** Label selector of the pods, for the scale subresource. */
  selector?: string;
  /** The image the pods run or are being rolled to. */
  currentImage?: string;
}

export interface PaxosQuorum {
  apiVersion: `${typeof GROUP}/${typeof VERSION}`;
  kind: typeof KIND;
  metadata: { name: string; namespace?: string; [field: string]: unknown };
  spec: PaxosQuorumSpec;
  status?: PaxosQuorumStatus;
}
