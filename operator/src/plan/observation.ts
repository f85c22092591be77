/** Read-only questions about an {@link ObservedState}. */
import type { NodeConfig } from './config.js';
import type { ObservedState, PodObservation } from './types.js';

/** The pods that exist, by ordinal. */
export function existingPods(observed: ObservedState): PodObservation[] {
  return observed.pods.filter((pod) => pod.exists).sort((a, b) => a.ordinal - b.ordinal);
}

export function podAt(observed: ObservedState, ordinal: number): PodObservation | undefined {
  return observed.pods.find((pod) => pod.ordinal === ordinal && pod.exists);
}

/** The highest epoch any pod reports, or 0 when none reports a configuration. */
export function highestEpoch(observed: ObservedState): number {
  return Math.max(0, ...existingPods(observed).map((pod) => pod.config?.epoch ?? 0));
}

/**
 * The configuration with the highest epoch. At equal epochs the one without prior wins: a node
 * holds it only after the finalization of that epoch was chosen.
 */
export function newestConfig(observed: ObservedState): NodeConfig | undefined {
  let newest: NodeConfig | undefined;
  for (const { config } of existingPods(observed)) {
    if (config === undefined) continue;
    const newer = newest === undefined || config.epoch > newest.epoch
      || (config.epoch === newest.epoch && newest.prior !== undefined && config.prior === undefined);
    if (newer) newest = config;
  }
  return newest;
}
