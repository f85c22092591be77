/**
 * Quorums as bitmasks over ordinals (at most 15 pods, so a mask fits easily), enumerated by brute
 * force: with nine nodes a configuration has at most 2^9 candidate sets.
 */
import type { NodeConfig } from './config.js';
import type { Finalization } from './model.js';

export type NodeSet = number;

export function toSet(ordinals: readonly number[]): NodeSet {
  return ordinals.reduce((set, ordinal) => set | (1 << ordinal), 0);
}

export function toOrdinals(set: NodeSet): number[] {
  const ordinals: number[] = [];
  for (let ordinal = 0; set >> ordinal !== 0; ordinal += 1) if ((set >> ordinal) & 1) ordinals.push(ordinal);
  return ordinals;
}

function size(set: NodeSet): number {
  let count = 0;
  for (let rest = set; rest !== 0; rest &= rest - 1) count += 1;
  return count;
}

/**
 * Whether `set` is a quorum of `config` as a proposer holding it counts: a majority of the members
 * and, while there is a prior, a majority of the prior too. Acceptors do not look at configurations,
 * so any node may be part of the set.
 */
export function isQuorum(config: NodeConfig, set: NodeSet): boolean {
  const members = toSet(config.members);
  if (2 * size(set & members) <= size(members)) return false;
  if (config.prior === undefined) return true;
  const prior = toSet(config.prior);
  return 2 * size(set & prior) > size(prior);
}

/** Finalizations of a later epoch than `config`: the ones whose acceptors refuse a proposer holding it. */
export function fencingFinalizations(config: NodeConfig, finalizations: readonly Finalization[]): Finalization[] {
  return finalizations.filter((finalization) => finalization.epoch > config.epoch);
}

/**
 * Whether a proposer holding `config` can get `set` to accept. After a finalization of a later
 * epoch, every acceptor that took part in choosing it refuses the proposer; which quorum chose it
 * is not known, so the set is usable if it avoids at least one quorum that could have chosen it.
 */
export function isUsableQuorum(config: NodeConfig, set: NodeSet, fencing: readonly Finalization[]): boolean {
  if (!isQuorum(config, set)) return false;
  return fencing.every((finalization) => isQuorum(finalization.chosenUnder, toSet(finalization.voters) & ~set));
}

/**
 * The minimal usable quorums of `config` among `running`. Any two usable quorums that are disjoint
 * contain minimal usable quorums that are disjoint (usability only gets easier for subsets that are
 * still quorums), so intersection need only be checked on these.
 */
export function minimalUsableQuorums(
  config: NodeConfig, running: NodeSet, fencing: readonly Finalization[],
): NodeSet[] {
  const minimal: NodeSet[] = [];
  for (let set = running; ; set = (set - 1) & running) {
    if (isUsableQuorum(config, set, fencing) && isMinimalQuorum(config, set)) minimal.push(set);
    if (set === 0) break;
  }
  return minimal;
}

function isMinimalQuorum(config: NodeConfig, set: NodeSet): boolean {
  for (let rest = set; rest !== 0; rest &= rest - 1) {
    const lowest = rest & -rest;
    if (isQuorum(config, set & ~lowest)) return false;
  }
  return true;
}
