/**
 * Status conditions with the semantics of apimachinery's `meta.SetStatusCondition`:
 * `lastTransitionTime` changes only when `status` flips, and every condition carries the
 * generation it was computed from.
 */
import type { Condition } from '../k8s/paxosquorum.js';

/** A condition as computed by a pass, before the transition time is decided. */
export interface DesiredCondition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
}

/**
 * Merges freshly computed conditions into the existing ones. Conditions of other types are kept.
 * The message is trimmed to the API's 32768-character limit.
 */
export function mergeConditions(
  existing: readonly Condition[] | undefined, desired: readonly DesiredCondition[], generation: number | undefined, now: Date,
): Condition[] {
  const previous = new Map((existing ?? []).map((condition) => [condition.type, condition]));
  const merged = desired.map((condition): Condition => {
    const before = previous.get(condition.type);
    const lastTransitionTime = before !== undefined && before.status === condition.status
      ? before.lastTransitionTime
      : rfc3339(now);
    return { ...condition, message: condition.message.slice(0, 32768), observedGeneration: generation, lastTransitionTime };
  });
  const types = new Set(desired.map((condition) => condition.type));
  return [...merged, ...(existing ?? []).filter((condition) => !types.has(condition.type))];
}

/** Kubernetes `metav1.Time`: RFC 3339 with second precision. */
export function rfc3339(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** The condition of `type`, if present. */
export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}
