import { describe, expect, it } from '@jest/globals';
import { Network } from './network.js';
import { Rng } from './rng.js';

describe('Rng', () => {
  it('is reproducible from its seed and differs between seeds', () => {
    const draw = (seed: number) => Array.from({ length: 8 }, (() => { const r = new Rng(seed); return () => r.u32(); })());
    expect(draw(1)).toEqual(draw(1));
    expect(draw(1)).not.toEqual(draw(2));
  });

  it('stays in range and covers it', () => {
    const r = new Rng(3);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const x = r.range(2, 5);
      expect(x).toBeGreaterThanOrEqual(2);
      expect(x).toBeLessThanOrEqual(5);
      seen.add(x);
      const f = r.float();
      expect(f >= 0 && f < 1).toBe(true);
    }
    expect([...seen].sort()).toEqual([2, 3, 4, 5]);
  });
});

interface Msg { from: number; to: number; n: number }

describe('Network', () => {
  it('delivers after the delay and reorders between ticks', () => {
    const net = new Network<Msg>(new Rng(1));
    net.faults = { dropRate: 0, duplicateRate: 0, minDelayTicks: 1, maxDelayTicks: 5 };
    for (let n = 0; n < 50; n++) net.send({ from: 0, to: 1, n }, 0);
    expect(net.due(0)).toEqual([]);
    const got: number[] = [];
    for (let t = 1; t <= 5; t++) got.push(...net.due(t).map((m) => m.n));
    expect(got.slice().sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(got).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(net.pending).toBe(0);
  });

  it('drops, duplicates and bounds what is in flight', () => {
    const net = new Network<Msg>(new Rng(2), 100);
    net.faults = { dropRate: 0.3, duplicateRate: 0.3, minDelayTicks: 1, maxDelayTicks: 1 };
    for (let n = 0; n < 1000; n++) net.send({ from: 0, to: 1, n }, 0);
    expect(net.pending).toBe(100);
    expect(net.stats.dropped).toBeGreaterThan(200);
    expect(net.stats.duplicated).toBeGreaterThan(100);
    expect(net.stats.overflowed).toBeGreaterThan(0);
  });

  it('loses messages on cut links, one way or both, including those in flight', () => {
    const net = new Network<Msg>(new Rng(3));
    net.send({ from: 0, to: 1, n: 1 }, 0);
    net.send({ from: 1, to: 0, n: 2 }, 0);
    net.cut(0, 1);
    expect(net.due(1).map((m) => m.n)).toEqual([2]);
    net.partition([[0], [1, 2]]);
    for (const [from, to] of [[0, 2], [2, 0], [1, 2]] as const) net.send({ from, to, n: 3 }, 1);
    expect(net.due(2).map((m) => [m.from, m.to])).toEqual([[1, 2]]);
    net.heal();
    net.send({ from: 0, to: 1, n: 4 }, 2);
    expect(net.due(3).map((m) => m.n)).toEqual([4]);
  });
});
