/** Ballot arithmetic. */
import type { Ballot } from './types.js';

/** Negative when `a` is below `b`, zero when equal, positive when above. */
export function compareBallots(a: Ballot, b: Ballot): number {
  return a.round !== b.round ? a.round - b.round : a.node - b.node;
}

/** True when both ballots are the same. */
export function sameBallot(a: Ballot, b: Ballot): boolean {
  return a.round === b.round && a.node === b.node;
}

/** The larger of two ballots. */
export function maxBallot(a: Ballot, b: Ballot): Ballot {
  return compareBallots(a, b) >= 0 ? a : b;
}
