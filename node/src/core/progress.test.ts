import { describe, expect, it } from '@jest/globals';
import { acknowledge, creditCommit, newProgress } from './progress.js';

describe('peer progress', () => {
  it('extends the acknowledged prefix in order, and holds ranges beyond a gap until it closes', () => {
    const p = newProgress(5, 0);
    expect(p).toMatchObject({ matched: 4, next: 5 });
    acknowledge(p, 7, 8, 4);
    expect(p.matched).toBe(4);
    acknowledge(p, 9, 9, 4);
    acknowledge(p, 5, 6, 4);
    expect(p.matched).toBe(9);
    expect(p.ahead).toEqual([]);
    acknowledge(p, 3, 4, 4); // old news
    expect(p.matched).toBe(9);
  });

  it('keeps at most aheadMax ranges beyond a gap', () => {
    const p = newProgress(1, 0);
    for (let s = 3; s < 10; s += 2) acknowledge(p, s, s, 2);
    expect(p.ahead).toHaveLength(2);
  });

  it('credits a peer commit index up to the leader’s own, moving next past it', () => {
    const p = newProgress(1, 0);
    expect(creditCommit(p, 10, 6, 4)).toBe(true);
    expect(p).toMatchObject({ matched: 6, next: 7 });
    expect(creditCommit(p, 5, 6, 4)).toBe(false);
  });
});
