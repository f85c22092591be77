/**
 * The two properties every state of a membership change must have, checked by brute force over
 * node sets: any two quorums usable at the same time intersect (safety), and a leader can be
 * elected even with one more node paused (liveness).
 */
import { formatConfig, formatMembers, type NodeConfig } from './config.js';
import type { ModelState } from './model.js';
import {
  fencingFinalizations, isQuorum, minimalUsableQuorums, toOrdinals, toSet, type NodeSet,
} from './quorums.js';

/** Which pauses cannot be survived by any order of steps, and so are not held against a plan. */
export const LIVENESS_EXEMPTIONS = [
  'Pausing a node is exempt when a configuration in force (held by a running node and not superseded',
  'by a finalization) has a member set (members or prior) of one or two nodes that contains it: such a',
  'set has no majority without every node in it, and a node can only leave that configuration by',
  'converting, which pauses it. So a change from or to 1 or 2 nodes (1->3 is down while pod 0',
  'converts; 2->1 while pod 0 converts), and a retarget through such a size, is checked with nothing',
  'paused and with each pause outside those sets. Changes among sizes of 3 or more get the full check.',
].join('\n');

/** The first pair of configurations held at once whose usable quorums can be disjoint, in words. */
export function safetyViolation(state: ModelState): string | undefined {
  const running = toSet(state.nodes.map((node) => node.ordinal));
  const configs = distinctConfigs(state);
  for (const [i, first] of configs.entries()) {
    const firstFencing = fencingFinalizations(first, state.finalizations);
    const firstQuorums = minimalUsableQuorums(first, running, firstFencing);
    for (const second of configs.slice(i + 1)) {
      const secondFencing = fencingFinalizations(second, state.finalizations);
      const secondQuorums = secondFencing.length === 0 ? undefined : minimalUsableQuorums(second, running, secondFencing);
      for (const a of firstQuorums) {
        // Without fencing the second's quorums are closed under supersets: test the complement once.
        const b = secondQuorums === undefined
          ? (isQuorum(second, running & ~a) ? running & ~a : undefined)
          : secondQuorums.find((candidate) => (candidate & a) === 0);
        if (b !== undefined) {
          return `split brain: ${formatMembers(toOrdinals(a))} is a quorum of ${formatConfig(first)} (epoch ${first.epoch}) `
            + `and ${formatMembers(toOrdinals(b))} of ${formatConfig(second)} (epoch ${second.epoch})`;
        }
      }
    }
  }
  return undefined;
}

/** The first pause after which nobody can be elected, unless it is exempt (see {@link LIVENESS_EXEMPTIONS}). */
export function livenessViolation(state: ModelState): string | undefined {
  if (electableLeaders(state, 0).length === 0) return 'no leader can be elected with every node running';
  const critical = criticalMemberSets(state);
  for (const { ordinal } of state.nodes) {
    if (critical.some((set) => set.includes(ordinal))) continue;
    if (electableLeaders(state, toSet([ordinal])).length === 0) {
      return `no leader can be elected while pod ${ordinal} is paused`;
    }
  }
  return undefined;
}

/**
 * The nodes that could win an election with `paused` down: running, holding a configuration no
 * finalization has superseded, listed in it, and able to gather a quorum of it.
 */
export function electableLeaders(state: ModelState, paused: NodeSet): number[] {
  const up = toSet(state.nodes.map((node) => node.ordinal)) & ~paused;
  return state.nodes
    .filter(({ ordinal, config }) => ((up >> ordinal) & 1) === 1
      && isCurrent(config, state)
      && (config.members.includes(ordinal) || (config.prior?.includes(ordinal) ?? false))
      && isQuorum(config, up))
    .map((node) => node.ordinal);
}

function isCurrent(config: NodeConfig, state: ModelState): boolean {
  return fencingFinalizations(config, state.finalizations).length === 0;
}

/** Member sets of current configurations whose majority is every node in them. */
function criticalMemberSets(state: ModelState): (readonly number[])[] {
  return distinctConfigs(state).filter((config) => isCurrent(config, state))
    .flatMap((config) => (config.prior === undefined ? [config.members] : [config.members, config.prior]))
    .filter((set) => set.length <= 2);
}

function distinctConfigs(state: ModelState): NodeConfig[] {
  const byKey = new Map<string, NodeConfig>();
  for (const { config } of state.nodes) byKey.set(configKey(config), config);
  return [...byKey.values()];
}

export function configKey(config: NodeConfig): string {
  return `${config.epoch}:${config.members.join(',')}/${config.prior?.join(',') ?? ''}`;
}
