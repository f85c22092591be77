/** Percentiles of latency samples. */

/** The p-th percentile (0..100) of `sorted` (ascending), nearest-rank; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** Sorts a copy of `samples` ascending (as a Float64Array). */
export function sorted(samples: readonly number[] | Float64Array): Float64Array {
  const a = Float64Array.from(samples);
  a.sort();
  return a;
}

/** Rounds to `digits` decimals (for JSON and tables). */
export function round(v: number, digits = 2): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
