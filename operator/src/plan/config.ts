/**
 * Membership configurations as the nodes persist them, and the arithmetic on them.
 *
 * A node id is its StatefulSet ordinal, so a member set is a sorted list of small integers.
 */

/** The configuration a node persists: who its members are and, during a change, whom it was converted from. */
export interface NodeConfig {
  /** Raised by every change; after finalizing epoch e, nodes refuse proposers whose epoch is below e. */
  readonly epoch: number;
  readonly members: readonly number[];
  /**
   * The configuration the node was converted from, kept until the change is finalized. While it is
   * present a proposer needs a majority of `members` and a majority of `prior` (a joint quorum).
   */
  readonly prior?: readonly number[];
}

/** The smallest number of nodes that is more than half of `size`. */
export function majority(size: number): number {
  return Math.floor(size / 2) + 1;
}

/** The member set of a StatefulSet with `count` replicas: ordinals 0..count-1. */
export function ordinals(count: number): number[] {
  return Array.from({ length: count }, (_, ordinal) => ordinal);
}

/** The joint configuration a node holds between its conversion and the finalization. */
export function jointConfig(epoch: number, target: readonly number[], original: readonly number[]): NodeConfig {
  return { epoch, members: [...target], prior: [...original] };
}

/** The configuration every node holds once the change of `epoch` is finalized. */
export function finalConfig(epoch: number, members: readonly number[]): NodeConfig {
  return { epoch, members: [...members] };
}

export function isJoint(config: NodeConfig): boolean {
  return config.prior !== undefined;
}

export function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((member, i) => member === b[i]);
}

export function sameConfig(a: NodeConfig | undefined, b: NodeConfig | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.epoch !== b.epoch || !sameMembers(a.members, b.members)) return false;
  if (a.prior === undefined || b.prior === undefined) return a.prior === b.prior;
  return sameMembers(a.prior, b.prior);
}

/** `{0,1,2}` */
export function formatMembers(members: readonly number[]): string {
  return `{${members.join(',')}}`;
}

/** `{0,1,2,3,4} (prior {0,1,2})`, or `{0,1,2}` for a configuration without prior. */
export function formatConfig(config: NodeConfig): string {
  const members = formatMembers(config.members);
  return config.prior === undefined ? members : `${members} (prior ${formatMembers(config.prior)})`;
}
