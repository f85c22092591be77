import type { NodeId } from '../../node/src/core/types.js';
import type { Rng } from './rng.js';

/** The fault rates of the simulated network; the run changes them between phases. */
export interface NetworkFaults {
  /** Probability that a sent message is lost. */
  readonly dropRate: number;
  /** Probability that a sent message is delivered twice (each copy with its own delay). */
  readonly duplicateRate: number;
  /** Delivery delay bounds, inclusive. Different delays are what reorders messages. */
  readonly minDelayTicks: number;
  readonly maxDelayTicks: number;
}

/** No loss, no duplicates, one tick of delay: the network of the liveness phase and of scenarios. */
export const CALM: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayTicks: 1, maxDelayTicks: 1 };

/** What the network counts, for the run's summary. */
export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Messages refused because `maxInFlight` was reached (a full socket buffer). */
  overflowed: number;
  /** Messages lost on a cut link. */
  cut: number;
}

interface Addressed {
  readonly from: NodeId;
  readonly to: NodeId;
}

/**
 * A deterministic message network between node ids. Messages wait in per-tick buckets; a link
 * can be cut in one direction or both. A message is checked against the cuts when it arrives,
 * so a partition also loses what was in flight on the cut links, like a real one.
 *
 * Bounded: at most `maxInFlight` messages are queued; further sends are dropped and counted,
 * which the core must tolerate like any other loss.
 */
export class Network<M extends Addressed> {
  faults: NetworkFaults = CALM;
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, overflowed: 0, cut: 0 };
  private readonly buckets = new Map<number, M[]>();
  private readonly cuts = new Set<string>();
  private inFlight = 0;

  constructor(
    private readonly rng: Rng,
    private readonly maxInFlight = 20_000,
  ) {}

  /** Queues `message` sent at tick `now`, applying loss, duplication and delay. */
  send(message: M, now: number): void {
    this.stats.sent++;
    if (this.rng.chance(this.faults.dropRate)) {
      this.stats.dropped++;
      return;
    }
    this.enqueue(message, now);
    if (this.rng.chance(this.faults.duplicateRate)) {
      this.stats.duplicated++;
      this.enqueue(message, now);
    }
  }

  /** Removes and returns the messages due at `now` (and any left over from earlier ticks), shuffled. */
  due(now: number): M[] {
    const out: M[] = [];
    for (const [tick, bucket] of this.buckets) {
      if (tick > now) continue;
      this.buckets.delete(tick);
      out.push(...bucket);
    }
    this.inFlight -= out.length;
    return this.admit(this.rng.shuffle(out));
  }

  /** Removes and returns every queued message regardless of its delay, in send order (scenarios). */
  drain(): M[] {
    const ticks = [...this.buckets.keys()].sort((x, y) => x - y);
    const out: M[] = [];
    for (const tick of ticks) out.push(...(this.buckets.get(tick) ?? []));
    this.buckets.clear();
    this.inFlight = 0;
    return this.admit(out);
  }

  /** Messages currently queued. */
  get pending(): number {
    return this.inFlight;
  }

  /** Cuts both directions between every pair of groups (nodes in no group keep all links). */
  partition(groups: readonly (readonly NodeId[])[]): void {
    for (let i = 0; i < groups.length; i++) {
      for (let j = 0; j < groups.length; j++) {
        if (i === j) continue;
        for (const a of groups[i] ?? []) for (const b of groups[j] ?? []) this.cut(a, b);
      }
    }
  }

  /** Cuts the link from `from` to `to` (one way). */
  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(linkKey(from, to));
  }

  /** True if messages from `from` to `to` are lost. */
  isCut(from: NodeId, to: NodeId): boolean {
    return this.cuts.has(linkKey(from, to));
  }

  /** Restores every link. */
  heal(): void {
    this.cuts.clear();
  }

  /** The cut links as "a>b" strings, sorted (for traces). */
  describeCuts(): string[] {
    return [...this.cuts].sort();
  }

  private enqueue(message: M, now: number): void {
    if (this.inFlight >= this.maxInFlight) {
      this.stats.overflowed++;
      return;
    }
    const at = now + this.rng.range(this.faults.minDelayTicks, this.faults.maxDelayTicks);
    let bucket = this.buckets.get(at);
    if (bucket === undefined) {
      bucket = [];
      this.buckets.set(at, bucket);
    }
    bucket.push(message);
    this.inFlight++;
  }

  private admit(messages: M[]): M[] {
    const out: M[] = [];
    for (const m of messages) {
      if (this.isCut(m.from, m.to)) {
        this.stats.cut++;
        continue;
      }
      this.stats.delivered++;
      out.push(m);
    }
    return out;
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}
