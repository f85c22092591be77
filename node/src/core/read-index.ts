/**
 * The leader's read index (etcd-raft's read_only.go): linearizable reads without a log entry.
 * A read records the commit index when it arrives and waits for a heartbeat round, started
 * after it, that a quorum confirmed; then it is served at that index. Reads arriving before the
 * next round is sent share it, so one quorum round confirms many. Until the leader's commit
 * index is known to cover everything earlier leaders chose (`termCommitKnown` in the replica),
 * reads wait without a round (`waitForTermCommit`, `release`). Pure bookkeeping: the replica sends the heartbeats and computes
 * which round a quorum confirmed.
 */
import type { ReadState } from './types.js';

interface PendingRead {
  readonly id: number;
  readonly round: number;
  readonly index: number;
}

/** The read-index state of one leadership (reset by `dropAll` when it ends). */
export class ReadIndex {
  /** The newest read round opened (heartbeats carry it as `readId`). */
  round = 0;
  /** A read round was opened and its heartbeat is not sent yet: later reads join it. */
  private unsent = false;
  /** The newest read round sent to the peers, and the newest a quorum confirmed. */
  private sent = 0;
  private confirmed = 0;
  private pending: PendingRead[] = [];
  private awaitingTermCommit: number[] = [];

  /** Reads waiting here (for a round, or for the term's commit index). */
  get size(): number {
    return this.pending.length + this.awaitingTermCommit.length;
  }

  /** Any read waiting for the leader's commit index to cover its predecessors' choices. */
  get awaitingCommit(): boolean {
    return this.awaitingTermCommit.length > 0;
  }

  /** Read `id` waits until the leader knows its term's commit index (`release`). */
  waitForTermCommit(id: number): void {
    this.awaitingTermCommit.push(id);
  }

  /** The term's commit index is known: the ids of the reads that waited for it, to enqueue now. */
  release(): number[] {
    const waiting = this.awaitingTermCommit;
    this.awaitingTermCommit = [];
    return waiting;
  }

  /** Read `id` is served at `commit` once a round opened now or later is confirmed. */
  enqueue(id: number, commit: number): void {
    if (!this.unsent) {
      this.round++;
      this.unsent = true;
    }
    this.pending.push({ id, round: this.round, index: commit });
  }

  /** A round waits to be sent and the previous one is confirmed: send it now. */
  get roundDue(): boolean {
    return this.unsent && this.confirmed >= this.sent;
  }

  /** Heartbeats carrying `round` went out. */
  roundSent(): void {
    this.unsent = false;
    this.sent = this.round;
  }

  /** Whether `confirm` could release anything or record progress. */
  get confirmable(): boolean {
    return this.pending.length > 0 || this.confirmed < this.sent;
  }

  /** A quorum confirmed every round up to `round`: the reads it covers are served. */
  confirm(round: number): ReadState[] {
    this.confirmed = round;
    const served: ReadState[] = [];
    while (this.pending.length > 0 && (this.pending[0] as PendingRead).round <= round) {
      const r = this.pending.shift() as PendingRead;
      served.push({ id: r.id, index: r.index });
    }
    return served;
  }

  /** Leadership ended: the ids of every read waiting here; nothing is left pending. */
  dropAll(): number[] {
    const ids = [...this.pending.map((r) => r.id), ...this.awaitingTermCommit];
    this.pending = [];
    this.awaitingTermCommit = [];
    this.unsent = false;
    return ids;
  }
}
