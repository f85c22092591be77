/**
 * The acceptor's log in memory: accepted entries by slot above the latest snapshot. Entries at
 * or below the commit index are chosen; above it they are merely accepted and may be replaced
 * by a higher ballot's value.
 */
import type { Entry, SnapshotMeta } from './types.js';

/**
 * Accepted entries keyed by slot, plus the index and configuration of the snapshot that replaced
 * the log below it. Never the snapshot's data: that stays in storage (a whole copy of the state
 * machine, kept only for the rare peer that needs it to catch up).
 */
export class AcceptorLog {
  private readonly entries = new Map<number, Entry>();
  private last = 0;
  private snap: SnapshotMeta | undefined;

  constructor(snapshot: SnapshotMeta | undefined, entries: readonly Entry[]) {
    this.snap = snapshot === undefined ? undefined : metaOf(snapshot);
    this.last = snapshot?.index ?? 0;
    for (const e of entries) this.put(e);
  }

  /** The newest snapshot's index and configuration, if any. */
  get snapshot(): SnapshotMeta | undefined {
    return this.snap;
  }

  /** Slots at or below this are only in the snapshot. */
  get snapshotIndex(): number {
    return this.snap?.index ?? 0;
  }

  /** The highest slot holding an accepted entry (or the snapshot index). */
  get lastSlot(): number {
    return this.last;
  }

  get(slot: number): Entry | undefined {
    return this.entries.get(slot);
  }

  /** Stores an entry, replacing what the slot held. Entries covered by the snapshot are ignored. */
  put(entry: Entry): void {
    if (entry.slot <= this.snapshotIndex) return;
    this.entries.set(entry.slot, entry);
    if (entry.slot > this.last) this.last = entry.slot;
  }

  /** Entries at `slot` and above, in slot order. */
  entriesFrom(slot: number): Entry[] {
    const out: Entry[] = [];
    for (let s = Math.max(slot, this.snapshotIndex + 1); s <= this.last; s++) {
      const e = this.entries.get(s);
      if (e !== undefined) out.push(e);
    }
    return out;
  }

  /** The highest slot h >= `from` such that every slot in (from, h] holds an entry. */
  contiguousFrom(from: number): number {
    let s = from;
    while (this.entries.has(s + 1)) s++;
    return s;
  }

  /** Replaces the chosen prefix up to `snapshot.index` by the snapshot (local compaction). */
  compact(snapshot: SnapshotMeta): void {
    for (let s = this.snapshotIndex + 1; s <= snapshot.index; s++) this.entries.delete(s);
    this.snap = metaOf(snapshot);
    if (this.last < snapshot.index) this.last = snapshot.index;
  }

  /**
   * Installs a snapshot received from a peer. Accepted entries above it stay: they are this
   * acceptor's votes, which a later phase 1 may need to see.
   */
  installSnapshot(snapshot: SnapshotMeta): void {
    this.compact(snapshot);
  }
}

/** A copy without the data of a full `Snapshot`, which must not stay reachable from here. */
function metaOf(snapshot: SnapshotMeta): SnapshotMeta {
  return { index: snapshot.index, config: snapshot.config };
}
