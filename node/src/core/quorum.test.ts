/**
 * `quorumIndex` (sort and pick per group) against its definition: the largest slot s such that
 * the voters that acknowledged s form a quorum (`isQuorum`). Exhaustive over small joint and
 * plain configurations, random acknowledged prefixes from a fixed-seed generator.
 */
import { describe, expect, it } from '@jest/globals';
import { isQuorum, quorumIndex, voters } from './quorum.js';
import type { Config, NodeId } from './types.js';

/** The obvious version: try every candidate slot, highest first. */
function obviousQuorumIndex(config: Config, matched: (id: NodeId) => number, plain: boolean): number {
  const candidates = [...new Set(voters(config).map(matched)), 0].sort((a, b) => b - a);
  for (const s of candidates) if (isQuorum(config, (id) => matched(id) >= s, plain)) return s;
  return 0;
}

/** A small deterministic generator (the test must be the same on every run). */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

/** Every non-empty subset of 0..n-1 as a sorted id list. */
function subsets(n: number): NodeId[][] {
  const out: NodeId[][] = [];
  for (let mask = 1; mask < 1 << n; mask++) out.push([...Array(n).keys()].filter((i) => (mask >> i) & 1));
  return out;
}

describe('quorumIndex', () => {
  it('equals the largest slot a quorum acknowledged, for every joint configuration over 5 nodes', () => {
    const random = lcg(7);
    const groups = subsets(5);
    let checked = 0;
    for (const members of groups) {
      for (const prior of [undefined, ...groups]) {
        const config: Config = prior === undefined ? { epoch: 2, members } : { epoch: 2, members, prior };
        for (let round = 0; round < 4; round++) {
          // Few distinct values, so that ties (the usual case: followers at the same slot) are common.
          const acked = new Map<NodeId, number>(voters(config).map((id) => [id, Math.floor(random() * 6)]));
          const matched = (id: NodeId): number => acked.get(id) ?? 0;
          for (const plain of [false, true]) {
            expect(quorumIndex(config, matched, plain)).toBe(obviousQuorumIndex(config, matched, plain));
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(31 * 32 * 4 * 2);
  });

  it('with a prior configuration is never above either group’s majority', () => {
    const config: Config = { epoch: 3, members: [0, 1, 2], prior: [2, 3, 4] };
    const acked: Record<NodeId, number> = { 0: 9, 1: 9, 2: 1, 3: 1, 4: 0 };
    expect(quorumIndex(config, (id) => acked[id] ?? 0)).toBe(1);
    expect(quorumIndex(config, (id) => acked[id] ?? 0, true)).toBe(9);
  });
});
