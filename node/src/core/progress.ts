/**
 * What a leader tracks per peer (etcd-raft's `tracker.Progress`): the acknowledged prefix, the
 * next slot to send, the pipeline depth, acknowledgements that arrived ahead of a gap, and the
 * liveness and read-round evidence. Pure data and pure updates; the replica owns the map.
 */

/** One peer's replication progress, as the leader sees it. */
export interface PeerProgress {
  /** Highest slot such that this peer acknowledged every slot from the leader's first up to it. */
  matched: number;
  /** Next slot to send. */
  next: number;
  inflight: number;
  /** Acknowledged ranges above `matched`, waiting for the gap below them to close. */
  ahead: Array<[number, number]>;
  /** Tick of the last reply from this peer in the current leadership. */
  lastReplyTick: number;
  /** Highest read round this peer confirmed. */
  readAck: number;
  /** `matched` at the previous heartbeat, to detect a stalled pipeline. */
  matchedAtLastBeat: number;
}

/** Progress of a peer that holds nothing known from `fromSlot` on, as of tick `now`. */
export function newProgress(fromSlot: number, now: number): PeerProgress {
  return { matched: fromSlot - 1, next: fromSlot, inflight: 0, ahead: [], lastReplyTick: now, readAck: 0, matchedAtLastBeat: fromSlot - 1 };
}

/**
 * Records that the peer acknowledged slots `from..to`. A range right after `matched` extends
 * it (and absorbs ranges that were waiting for the gap); one beyond a gap waits in `ahead`,
 * at most `aheadMax` of them.
 */
export function acknowledge(p: PeerProgress, from: number, to: number, aheadMax: number): void {
  if (to <= p.matched) return;
  if (from <= p.matched + 1) {
    p.matched = to;
    // Merge ranges that arrived ahead of a gap that is now closed.
    p.ahead.sort((a, b) => a[0] - b[0]);
    while (p.ahead.length > 0 && (p.ahead[0] as [number, number])[0] <= p.matched + 1) {
      p.matched = Math.max(p.matched, (p.ahead.shift() as [number, number])[1]);
    }
  } else if (p.ahead.length < aheadMax) {
    p.ahead.push([from, to]);
  }
}

/**
 * A peer's commit index is a prefix it holds chosen, hence equal to ours up to `leaderCommit`:
 * count it as acknowledged. This is what moves a peer that caught up by pulling (possibly a
 * snapshot) past slots the leader can no longer send because it compacted them. True when it
 * moved `matched`.
 */
export function creditCommit(p: PeerProgress, peerCommit: number, leaderCommit: number, aheadMax: number): boolean {
  const upTo = Math.min(peerCommit, leaderCommit);
  if (upTo <= p.matched) return false;
  acknowledge(p, p.matched + 1, upTo, aheadMax);
  if (p.next <= p.matched) p.next = p.matched + 1;
  return true;
}
