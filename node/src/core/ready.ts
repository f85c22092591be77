/**
 * What a replica accumulates for its driver between two Readies, and their assembly into one
 * (etcd-raft's `Ready` assembly in rawnode.go): messages to send, entries to persist, a
 * snapshot received from a peer, read states, dropped reads, whether the hard state changed
 * and whether the batch must be synced. Pure: the replica fills it and asks for the Ready.
 */
import type { Entry, HardState, Message, ReadState, Ready, Snapshot } from './types.js';

/** The pending outputs of one replica. */
export class PendingReady {
  outbox: Message[] = [];
  unstable: Entry[] = [];
  hardDirty = false;
  mustSync = false;
  pendingSnapshot: Snapshot | undefined;
  readyReads: ReadState[] = [];
  droppedReads: number[] = [];
  /** The Ready handed out and not yet acknowledged with `advance`. */
  outstanding: Ready | undefined;

  constructor(
    /** Last slot handed to the driver to apply. */
    public emitted: number,
  ) {}

  /** Whether a Ready would hold anything, given the replica's commit index. */
  hasOutput(commit: number): boolean {
    return (
      this.hardDirty ||
      this.unstable.length > 0 ||
      this.outbox.length > 0 ||
      this.pendingSnapshot !== undefined ||
      commit > this.emitted ||
      this.readyReads.length > 0 ||
      this.droppedReads.length > 0
    );
  }

  /**
   * Assembles the Ready: everything pending, the chosen entries from the last emitted slot up
   * to `commit` (read from `entryAt`), and the hard state if it changed. It is outstanding until
   * `acknowledge`.
   */
  take(commit: number, entryAt: (slot: number) => Entry | undefined, hardState: () => HardState): Ready {
    if (this.outstanding !== undefined) throw new Error('ready() called twice without advance()');
    const committed: Entry[] = [];
    for (let s = this.emitted + 1; s <= commit; s++) {
      const entry = entryAt(s);
      if (entry === undefined) throw new Error(`chosen slot ${s} missing from the log`);
      committed.push(entry);
    }
    const rd: Ready = {
      hardState: this.hardDirty ? hardState() : undefined,
      snapshot: this.pendingSnapshot,
      entries: this.unstable,
      mustSync: this.mustSync || this.unstable.length > 0 || this.pendingSnapshot !== undefined,
      messages: this.outbox,
      committed,
      readStates: this.readyReads,
      droppedReads: this.droppedReads,
    };
    this.hardDirty = false;
    this.mustSync = false;
    this.pendingSnapshot = undefined;
    this.unstable = [];
    this.outbox = [];
    this.readyReads = [];
    this.droppedReads = [];
    this.emitted = commit;
    this.outstanding = rd;
    return rd;
  }

  /** The driver is done with `rd` (persisted, sent, applied). */
  acknowledge(rd: Ready): void {
    if (rd !== this.outstanding) throw new Error('advance() of a Ready that is not outstanding');
    this.outstanding = undefined;
  }
}
