/**
 * Quorums of a configuration. While a configuration carries `prior`, a quorum must hold a
 * majority of `members` AND a majority of `prior` (the joint quorum): that is what makes any
 * two quorums usable at the same time intersect during a reconfiguration.
 */
import type { Config, NodeId } from './types.js';

/** Everyone whose vote counts in `config`: the union of `members` and `prior`. */
export function voters(config: Config): NodeId[] {
  const all = new Set<NodeId>(config.members);
  for (const id of config.prior ?? []) all.add(id);
  return [...all].sort((a, b) => a - b);
}

function hasMajority(group: readonly NodeId[], has: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const id of group) if (has(id)) count++;
  return count * 2 > group.length;
}

/**
 * True when the nodes for which `has` holds form a quorum of `config`. With `plain` the prior
 * configuration is ignored (the unsafe behaviour the simulator uses to show the split brain).
 */
export function isQuorum(config: Config, has: (id: NodeId) => boolean, plain = false): boolean {
  if (!hasMajority(config.members, has)) return false;
  return plain || config.prior === undefined || hasMajority(config.prior, has);
}

/** The size-th largest value of `values` (1-based), or 0 when there are fewer. */
function kthLargest(values: number[], k: number): number {
  values.sort((a, b) => b - a);
  return values[k - 1] ?? 0;
}

function majorityIndex(group: readonly NodeId[], matched: (id: NodeId) => number): number {
  return kthLargest(
    group.map((id) => matched(id)),
    Math.floor(group.length / 2) + 1,
  );
}

/**
 * The highest slot that a quorum of `config` has acknowledged, given each voter's
 * acknowledged prefix. Equivalent to the largest s with isQuorum(config, id => matched(id) >= s).
 */
export function quorumIndex(config: Config, matched: (id: NodeId) => number, plain = false): number {
  const current = majorityIndex(config.members, matched);
  if (plain || config.prior === undefined) return current;
  return Math.min(current, majorityIndex(config.prior, matched));
}

/** Checks a configuration for obvious mistakes; returns the problem or undefined. */
export function configProblem(config: Config): string | undefined {
  if (!Number.isInteger(config.epoch) || config.epoch < 1) return `epoch must be a positive integer, got ${config.epoch}`;
  for (const [name, group] of [['members', config.members], ['prior', config.prior]] as const) {
    if (group === undefined) continue;
    if (group.length === 0) return `${name} must not be empty`;
    if (new Set(group).size !== group.length) return `${name} has duplicates`;
    if (group.some((id) => !Number.isInteger(id) || id < 0)) return `${name} must be non-negative integers`;
  }
  return undefined;
}

/** True when two configurations are the same (member order does not matter). */
export function sameConfig(a: Config, b: Config): boolean {
  const key = (c: Config): string =>
    `${c.epoch}|${[...c.members].sort((x, y) => x - y).join(',')}|${c.prior ? [...c.prior].sort((x, y) => x - y).join(',') : '-'}`;
  return key(a) === key(b);
}
