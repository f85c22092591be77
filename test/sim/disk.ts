import type { Entry, HardState, PersistedState, Snapshot } from '../../node/src/core/types.js';
import type { Rng } from './rng.js';

/** One write of the driver: what one `Ready` (or one local compaction) asks to persist. */
export interface DiskWrite {
  readonly hardState?: HardState;
  readonly snapshot?: Snapshot;
  readonly entries: readonly Entry[];
}

/**
 * A node's storage in memory, split into what is durable and what was written but not yet
 * synced. A sync makes every earlier write durable (like fsync on an append-only log); a crash
 * keeps the durable part plus a random prefix of the unsynced writes (the ones the OS happened to
 * flush), and loses the rest. Writes are records of one `Ready` each and are never torn inside.
 */
export class SimDisk {
  private hard: HardState;
  private snapshot: Snapshot | undefined;
  private readonly entries = new Map<number, Entry>();
  private unsynced: DiskWrite[] = [];

  constructor(initial: PersistedState) {
    this.hard = initial.hard;
    this.snapshot = initial.snapshot;
    for (const e of initial.entries) this.entries.set(e.slot, e);
  }

  /** Records `write`; when `sync` it and every earlier write become durable. */
  write(write: DiskWrite, sync: boolean): void {
    if (write.hardState === undefined && write.snapshot === undefined && write.entries.length === 0 && !sync) return;
    this.unsynced.push(write);
    if (sync) this.sync();
  }

  /** Makes every write so far durable. */
  sync(): void {
    for (const w of this.unsynced) this.applyDurably(w);
    this.unsynced = [];
  }

  /** Unsynced writes that a crash now could lose. */
  get unsyncedWrites(): number {
    return this.unsynced.length;
  }

  /**
   * A power cut: keeps a random prefix of the unsynced writes (possibly none, possibly all),
   * loses the rest. Returns how many writes were lost.
   */
  crash(rng: Rng): number {
    const kept = rng.int(this.unsynced.length + 1);
    for (const w of this.unsynced.slice(0, kept)) this.applyDurably(w);
    const lost = this.unsynced.length - kept;
    this.unsynced = [];
    return lost;
  }

  /** What a restarting node reads: the durable state, entries above the snapshot in slot order. */
  load(): PersistedState {
    const floor = this.snapshot?.index ?? 0;
    const entries = [...this.entries.values()].filter((e) => e.slot > floor).sort((x, y) => x.slot - y.slot);
    return this.snapshot === undefined ? { hard: this.hard, entries } : { hard: this.hard, snapshot: this.snapshot, entries };
  }

  /**
   * The data of the snapshot at `index`, if it is the newest one written (synced or not: a
   * running node reads what it wrote; a crash takes the node down with its unsynced writes).
   */
  snapshotData(index: number): string | undefined {
    let newest = this.snapshot;
    for (const w of this.unsynced) if (w.snapshot !== undefined && w.snapshot.index > (newest?.index ?? 0)) newest = w.snapshot;
    return newest?.index === index ? newest.data : undefined;
  }

  /** The durable snapshot index (0 without one). */
  get snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }

  private applyDurably(w: DiskWrite): void {
    if (w.hardState !== undefined) this.hard = w.hardState;
    if (w.snapshot !== undefined && w.snapshot.index > (this.snapshot?.index ?? 0)) {
      this.snapshot = w.snapshot;
      // The snapshot replaces the log up to its index; later entries stay.
      for (const slot of [...this.entries.keys()]) if (slot <= w.snapshot.index) this.entries.delete(slot);
    }
    const floor = this.snapshot?.index ?? 0;
    for (const e of w.entries) if (e.slot > floor) this.entries.set(e.slot, e);
  }
}
