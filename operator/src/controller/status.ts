/**
 * Computes `status` from what one pass observed and decided. Pure: the reconciler writes the
 * result once, and only when it differs from what is stored.
 */
import { majority, type NodeConfig } from '../plan/config.js';
import type { Condition, MemberStatus, OperationStatus, PaxosQuorum, PaxosQuorumStatus, Phase } from '../k8s/paxosquorum.js';
import { mergeConditions, type DesiredCondition } from './conditions.js';
import type { NodeView } from './observe.js';
import { ConditionType, Reason } from './reasons.js';
import { podName, selectorString } from './resources.js';

/** What a pass knows when it computes status. */
export interface StatusInput {
  readonly quorum: PaxosQuorum;
  readonly views: readonly NodeView[];
  readonly leader?: number;
  /** The newest configuration any node reports. */
  readonly membership?: NodeConfig;
  readonly operation?: OperationStatus;
  /** What the operator is doing or waiting for, in words. */
  readonly activity: string;
  /** Set while an image/template roll is in progress. */
  readonly rolling: boolean;
  /** The image every pod runs once the roll is done. */
  readonly currentImage?: string;
  /** Why progress is blocked (step timeout, ownership conflict, invalid spec). */
  readonly blocked?: { readonly reason: string; readonly message: string };
  /** The last action of this quorum that failed, if the failure is recent. */
  readonly actionError?: string;
  readonly now: Date;
}

/** Whether the node of `view` answers: pod Ready, not terminating, its admin status read. */
export function answering(view: NodeView): boolean {
  return view.podReady && !view.terminating && view.status !== undefined;
}

/** Whether the node of `view` is healthy: answering, and voting (not suspended after losing its volume). */
export function healthy(view: NodeView): boolean {
  return answering(view) && view.status?.dataLoss !== 'suspended';
}

function members(input: StatusInput): MemberStatus[] {
  const leaderView = input.views.find((view) => view.ordinal === input.leader);
  const lagOf = (id: number): number | undefined => leaderView?.status?.lag.find((entry) => entry.id === id)?.lag;
  return input.views.map((view) => {
    const member: MemberStatus = {
      name: podName(input.quorum.metadata.name, view.ordinal),
      id: view.ordinal,
      role: view.status?.role ?? 'unknown',
      healthy: healthy(view),
    };
    const epoch = view.status?.config.epoch;
    const lag = view.ordinal === input.leader ? 0 : lagOf(view.ordinal);
    const dataLoss = view.status?.dataLoss;
    return {
      ...member, ...(epoch !== undefined ? { epoch } : {}), ...(lag !== undefined ? { lag } : {}),
      ...(dataLoss === 'suspended' || dataLoss === 'repairing' ? { dataLoss } : {}),
    };
  });
}

function describeUnready(views: readonly NodeView[]): string {
  const unready = views.filter((view) => !healthy(view));
  return unready.map((view) => {
    const name = view.pod.metadata?.name ?? String(view.ordinal);
    if (view.terminating) return `${name} is terminating`;
    if (view.status === undefined) return `${name}: ${view.unreachable ?? 'not answering'}`;
    if (view.status.dataLoss === 'suspended') return `${name} restarted on an empty volume and votes for nobody until it is repaired`;
    return `${name} is not Ready`;
  }).join('; ');
}

/** Whether a majority of the membership (and of its prior) is healthy and a leader is known. */
function availability(input: StatusInput): DesiredCondition {
  const type = ConditionType.Available;
  const ready = input.views.filter(healthy).length;
  const total = input.views.length;
  if (input.membership === undefined) {
    const detail = total === 0 ? 'no pods exist yet' : `${ready} of ${total} pods are ready; ${describeUnready(input.views)}`;
    return { type, status: 'False', reason: Reason.PodsNotReady, message: `No node reports a configuration: ${detail}` };
  }
  const up = new Set(input.views.filter(healthy).map((view) => view.ordinal));
  const majorityUp = (set: readonly number[]): boolean => set.filter((ordinal) => up.has(ordinal)).length >= majority(set.length);
  const quorumUp = majorityUp(input.membership.members) && (input.membership.prior === undefined || majorityUp(input.membership.prior));
  if (!quorumUp) {
    return { type, status: 'False', reason: Reason.PodsNotReady, message: `Pods are not ready: ${ready} of ${total} ready; ${describeUnready(input.views)}` };
  }
  if (input.leader === undefined) return { type, status: 'False', reason: Reason.NoLeader, message: 'A quorum is up but no leader is elected' };
  return { type, status: 'True', reason: Reason.QuorumAvailable, message: `Pod ${podName(input.quorum.metadata.name, input.leader)} leads; ${ready} of ${total} pods ready` };
}

function phaseOf(input: StatusInput, available: boolean, degraded: boolean): Phase {
  if (input.blocked !== undefined) return 'Blocked';
  if (input.membership === undefined) return 'Pending';
  if (input.operation !== undefined || input.rolling) return 'Reconfiguring';
  if (!available || degraded) return 'Degraded';
  return 'Available';
}

/** The full status this pass wants stored. */
export function computeStatus(input: StatusInput): PaxosQuorumStatus {
  const { quorum } = input;
  const available = availability(input);
  const unhealthy = input.views.filter((view) => !healthy(view));
  const degraded: DesiredCondition = input.actionError !== undefined
    ? { type: ConditionType.Degraded, status: 'True', reason: Reason.ActionFailed, message: input.actionError }
    : input.membership !== undefined && unhealthy.length > 0
      ? {
          type: ConditionType.Degraded, status: 'True',
          reason: unhealthy.some((view) => view.status?.dataLoss === 'suspended') ? Reason.MemberDataLost : Reason.MembersUnhealthy,
          message: describeUnready(input.views),
        }
      : { type: ConditionType.Degraded, status: 'False', reason: Reason.AsExpected, message: 'All pods are healthy' };
  const progressing: DesiredCondition = input.membership === undefined
    ? { type: ConditionType.Progressing, status: 'True', reason: Reason.Creating, message: input.activity }
    : input.operation !== undefined
      ? { type: ConditionType.Progressing, status: 'True', reason: Reason.Reconfiguring, message: input.activity }
      : input.rolling
        ? { type: ConditionType.Progressing, status: 'True', reason: Reason.RollingImage, message: input.activity }
        : { type: ConditionType.Progressing, status: 'False', reason: Reason.Idle, message: input.activity };
  const blocked: DesiredCondition = input.blocked !== undefined
    ? { type: ConditionType.ReconfigurationBlocked, status: 'True', reason: input.blocked.reason, message: input.blocked.message }
    : { type: ConditionType.ReconfigurationBlocked, status: 'False', reason: Reason.NotBlocked, message: 'Nothing blocks reconfiguration' };
  const conditions: Condition[] = mergeConditions(
    quorum.status?.conditions, [available, progressing, degraded, blocked], quorum.metadata.generation, input.now);
  return {
    observedGeneration: quorum.metadata.generation,
    phase: phaseOf(input, available.status === 'True', degraded.status === 'True'),
    conditions,
    members: members(input),
    leader: input.leader === undefined ? undefined : podName(quorum.metadata.name, input.leader),
    configEpoch: input.membership?.epoch,
    replicas: input.views.length,
    readyReplicas: input.views.filter(healthy).length,
    selector: selectorString(quorum.metadata.name),
    currentImage: input.currentImage,
    operation: input.operation ?? null,
  };
}

/**
 * The merge patch that turns `stored` into `desired`: every top-level field of `desired`, with
 * fields that became undefined sent as `null` (deleted). Empty when nothing changed.
 */
export function statusPatch(stored: PaxosQuorumStatus | undefined, desired: PaxosQuorumStatus): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  const keys = new Set([...Object.keys(stored ?? {}), ...Object.keys(desired)]) as Set<keyof PaxosQuorumStatus>;
  for (const key of keys) {
    const before = stored?.[key] ?? null;
    const after = desired[key] ?? null;
    if (JSON.stringify(normalize(before)) !== JSON.stringify(normalize(after))) patch[key] = after;
  }
  return patch;
}

/** Sorts object keys so that equal values compare equal whatever order the API server returned. */
function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}
