/**
 * Rolling pods onto a new StatefulSet revision (image or template change) under the OnDelete
 * strategy: one pod at a time, followers first in ordinal order, the leader last after handing
 * leadership to an up-to-date follower, and only while every pod is ready and caught up. Pure.
 */
import type { NodeView } from './observe.js';
import { healthy } from './status.js';

/** The next roll step, or none. */
export type RollStep =
  | { readonly kind: 'None' }
  | { readonly kind: 'WaitRoll'; readonly reason: string }
  | { readonly kind: 'DeletePod'; readonly ordinal: number }
  | { readonly kind: 'TransferLeadership'; readonly from: number; readonly to: number };

export const REVISION_LABEL = 'controller-revision-hash';

/** The pods whose revision is not `updateRevision`. */
export function outdated(views: readonly NodeView[], updateRevision: string): NodeView[] {
  return views.filter((view) => view.pod.metadata?.labels?.[REVISION_LABEL] !== updateRevision);
}

/**
 * Decides the next roll step. `updateRevision` is undefined while the StatefulSet controller
 * has not observed the latest template yet; the roll waits for it.
 */
export function nextRollStep(views: readonly NodeView[], leader: number | undefined, updateRevision: string | undefined): RollStep {
  if (updateRevision === undefined) return { kind: 'None' };
  const stale = outdated(views, updateRevision);
  if (stale.length === 0) return { kind: 'None' };
  const unhealthy = views.filter((view) => !healthy(view) || view.status?.caughtUp !== true);
  // The way back from a revision that cannot run (a tag that does not exist, a crashing image):
  // once the template is set back, the one pod that is down on an outdated revision is replaced.
  // It serves nothing, so replacing it costs no availability, and every other member is healthy.
  const [down] = unhealthy;
  if (down !== undefined && unhealthy.length === 1 && leader !== undefined && down.ordinal !== leader && stale.includes(down)) {
    return { kind: 'DeletePod', ordinal: down.ordinal };
  }
  if (down !== undefined) return { kind: 'WaitRoll', reason: `pod ${down.ordinal} is not ready and caught up` };
  if (leader === undefined) return { kind: 'WaitRoll', reason: 'no leader' };
  const follower = stale.find((view) => view.ordinal !== leader);
  if (follower !== undefined) return { kind: 'DeletePod', ordinal: follower.ordinal };
  // Only the leader is left. Hand over to the most caught-up other node, then replace it as a follower.
  const others = views.filter((view) => view.ordinal !== leader)
    .sort((a, b) => (b.status?.commit ?? 0) - (a.status?.commit ?? 0) || a.ordinal - b.ordinal);
  const to = others[0];
  if (to === undefined) return { kind: 'DeletePod', ordinal: leader };
  return { kind: 'TransferLeadership', from: leader, to: to.ordinal };
}
