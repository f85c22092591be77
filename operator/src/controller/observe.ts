/**
 * Reads the nodes: for every pod of a quorum, its Kubernetes readiness and what its admin
 * `Status` call says, turned into the planner's {@link PodObservation}s. Calls run in parallel
 * with a short deadline; a node that does not answer is observed as not ready, never as an error.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { PodObservation } from '../plan/types.js';
import type { NodeAdmin, NodeStatus } from './node-admin.js';
import { podOrdinal } from './resources.js';

/** One pod with what its node said (if it answered). */
export interface NodeView {
  readonly ordinal: number;
  readonly pod: V1Pod;
  /** The pod's Ready condition is True. */
  readonly podReady: boolean;
  readonly terminating: boolean;
  readonly address?: string;
  readonly status?: NodeStatus;
  /** Why `status` is missing (no IP yet, call failed). */
  readonly unreachable?: string;
}

/** Where the node of `pod` serves the admin API. */
export type AddressOf = (pod: V1Pod) => string | undefined;

/** `podIP:port`, the production address. */
export function podIpAddress(port: number): AddressOf {
  return (pod) => (pod.status?.podIP ? `${pod.status.podIP}:${port}` : undefined);
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((condition) => condition.type === 'Ready' && condition.status === 'True') ?? false;
}

/** Asks every pod of StatefulSet `name` for its status. Pods that are not the StatefulSet's are ignored. */
export async function viewNodes(
  name: string, pods: readonly V1Pod[], admin: NodeAdmin, addressOf: AddressOf, deadlineMs: number,
): Promise<NodeView[]> {
  const views = await Promise.all(pods.map(async (pod): Promise<NodeView | undefined> => {
    const ordinal = podOrdinal(name, pod.metadata?.name ?? '');
    if (ordinal === undefined) return undefined;
    const base = { ordinal, pod, podReady: isPodReady(pod), terminating: pod.metadata?.deletionTimestamp !== undefined };
    const address = addressOf(pod);
    if (address === undefined) return { ...base, unreachable: 'the pod has no IP yet' };
    if (pod.status?.phase !== 'Running') return { ...base, address, unreachable: `the pod is ${pod.status?.phase ?? 'Pending'}` };
    try {
      return { ...base, address, status: await admin.status(address, deadlineMs) };
    } catch (error) {
      return { ...base, address, unreachable: error instanceof Error ? error.message : String(error) };
    }
  }));
  return views.filter((view): view is NodeView => view !== undefined).sort((a, b) => a.ordinal - b.ordinal);
}

/** The planner's view of one pod. */
export function toObservation(view: NodeView): PodObservation {
  const { status } = view;
  const ready = view.podReady && !view.terminating && status !== undefined;
  if (status === undefined) return { ordinal: view.ordinal, exists: true, ready: false };
  return {
    ordinal: view.ordinal, exists: true, ready, config: status.config, role: status.role,
    // An unregistered new server votes for nobody: its step is not done until it is registered.
    caughtUp: status.caughtUp && status.unregistered !== true, commitIndex: status.commit,
    ...(status.dataLoss === 'suspended' || status.dataLoss === 'repairing' ? { dataLoss: status.dataLoss } : {}),
  };
}

/**
 * The leader: the one node that says it leads. If several do (a deposed leader that has not
 * heard of its successor yet), the one most nodes name as leader, and no leader on a tie: the
 * planner then waits, which is always safe.
 */
export function findLeader(views: readonly NodeView[]): number | undefined {
  const claimants = views.filter((view) => view.status?.role === 'leader' && !view.terminating).map((view) => view.ordinal);
  if (claimants.length <= 1) return claimants[0];
  const votes = (ordinal: number): number => views.filter((view) => view.status?.leader === ordinal).length;
  const ranked = [...claimants].sort((a, b) => votes(b) - votes(a));
  const [first, second] = ranked;
  return first !== undefined && second !== undefined && votes(first) > votes(second) ? first : undefined;
}
