/**
 * Durable storage for the Paxos core: hard state and accepted entries in the write-ahead log,
 * state-machine snapshots in their own files. See docs/data-dir.md for the layout.
 */
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import type { Entry, HardState, PersistedState, Ready, Snapshot, SnapshotMeta } from '../core/types.js';
import { crc32 } from './crc32.js';
import { CorruptLogError, DiskFullError, Wal, encodeFrame, fsyncDir, isNoSpace, writeFullyAsync, type WalFs, type WalLogger } from './wal.js';

/** Record types of the log. Never renumber: old logs must stay readable. */
export const RecordType = {
  /** JSON `HardState`; the latest one wins. */
  hardState: 1,
  /** JSON `Entry[]`; a later entry for a slot replaces an earlier one. */
  entries: 2,
} as const;

const RECORD_TYPES: ReadonlySet<number> = new Set(Object.values(RecordType));

/** Raised when a snapshot file is unreadable: the log below it is gone, so the node must not start. */
export class CorruptSnapshotError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`snapshot corrupt: ${file}: ${reason}`);
    this.name = 'CorruptSnapshotError';
  }
}

/** Raised when the data directory holds some files but not a complete state. */
export class IncompleteDataDirError extends Error {
  constructor(
    readonly dir: string,
    readonly reason: string,
  ) {
    super(`data directory ${dir} is incomplete: ${reason}`);
    this.name = 'IncompleteDataDirError';
  }
}

export { CorruptLogError, DiskFullError };

/** Options of `Storage.open`. */
export interface StorageOptions {
  readonly fs?: WalFs;
  readonly logger?: WalLogger;
  readonly segmentBytesMax?: number;
  /**
   * Resolves at the next event-loop turn: where a snapshot's encoding yields between parts
   * (default: setImmediate). The simulator passes its own, so that runs stay deterministic.
   */
  readonly nextTurn?: () => Promise<void>;
}

/** What `persist` needs of a Ready. */
export type PersistBatch = Pick<Ready, 'hardState' | 'snapshot' | 'entries' | 'mustSync'>;

const SNAPSHOT_RE = /^snapshot-(\d+)\.json$/;
const WAL_DIR = 'wal';
const SNAP_DIR = 'snap';

/** The file name of the snapshot at `index` (zero-padded so that names sort by index). */
export function snapshotName(index: number): string {
  return `snapshot-${String(index).padStart(16, '0')}.json`;
}

/** A snapshot to write: its data whole, or in consecutive parts (see `KvStore.snapshotParts`). */
export type SnapshotToSave = SnapshotMeta & { readonly data: string | Iterable<string> };

/** A snapshot file's bytes, in the order they are written. */
interface EncodedSnapshot {
  readonly index: number;
  readonly parts: readonly Buffer[];
  readonly bytes: number;
}

/**
 * Snapshot file format: one header line `{"v":1,"bytes":N,"crc":C}` then N bytes of the JSON
 * `Snapshot` (`{"index":…,"config":…,"data":"…"}`). The checksum lets open tell a damaged file
 * from a valid one.
 *
 * The body is built part by part — the data string escaped a part at a time — so that a large
 * state exists once, as the bytes to write, rather than also as a string, its escaped copy and
 * a concatenated buffer. The bytes are those of `JSON.stringify` of the whole snapshot.
 */
function encodeSnapshot(snapshot: SnapshotToSave): EncodedSnapshot {
  return new SnapshotEncoder(snapshot).finish();
}

/**
 * Encodes a snapshot one data part at a time (`step`), so that a large state can be encoded
 * across many event-loop turns (`run`), or at once (`finish`).
 */
class SnapshotEncoder {
  private readonly body: Buffer[] = [];
  private readonly parts: Iterator<string, unknown>;
  private crc = 0;
  private bytes = 0;
  private result: EncodedSnapshot | undefined;

  constructor(private readonly snapshot: SnapshotToSave) {
    this.add(Buffer.from(`{"index":${JSON.stringify(snapshot.index)},"config":${JSON.stringify(snapshot.config)},"data":"`, 'utf8'));
    this.parts = (typeof snapshot.data === 'string' ? [snapshot.data] : snapshot.data)[Symbol.iterator]();
  }

  get index(): number {
    return this.snapshot.index;
  }

  /** Encodes the next part; the encoded snapshot once there is none left. */
  step(): EncodedSnapshot | undefined {
    if (this.result) return this.result;
    const next = this.parts.next();
    if (!next.done) {
      // A part's JSON string literal without its quotes is the escaped part; escaping is per
      // character, so the escaped parts concatenate to the escaped whole.
      this.add(Buffer.from(JSON.stringify(next.value).slice(1, -1), 'utf8'));
      return undefined;
    }
    this.add(Buffer.from('"}', 'utf8'));
    const header = Buffer.from(`${JSON.stringify({ v: 1, bytes: this.bytes, crc: this.crc })}\n`, 'utf8');
    this.result = { index: this.snapshot.index, parts: [header, ...this.body], bytes: header.length + this.bytes };
    return this.result;
  }

  /** Encodes the rest now. */
  finish(): EncodedSnapshot {
    for (;;) {
      const r = this.step();
      if (r) return r;
    }
  }

  /** Encodes the rest a part per `pause()`. */
  async run(pause: () => Promise<void>): Promise<EncodedSnapshot> {
    for (;;) {
      const r = this.step();
      if (r) return r;
      await pause();
    }
  }

  /** Gives up: the parts' source is told to stop (a frozen store thaws). */
  abandon(): void {
    this.parts.return?.();
  }

  private add(b: Buffer): void {
    this.body.push(b);
    this.crc = crc32(b, this.crc);
    this.bytes += b.length;
  }
}

/** Between two parts of a snapshot being encoded: the event loop runs what is due. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Decodes a snapshot file's bytes, checking its header and CRC; throws `CorruptSnapshotError`. */
export function decodeSnapshot(buf: Buffer, file: string): Snapshot {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) throw new CorruptSnapshotError(file, 'no header line');
  let header: { v?: unknown; bytes?: unknown; crc?: unknown };
  try {
    header = JSON.parse(buf.subarray(0, nl).toString('utf8')) as typeof header;
  } catch (cause) {
    throw new CorruptSnapshotError(file, `bad header: ${String(cause)}`);
  }
  if (header.v !== 1) throw new CorruptSnapshotError(file, `unsupported version ${String(header.v)}`);
  const body = buf.subarray(nl + 1);
  if (body.length !== header.bytes) throw new CorruptSnapshotError(file, `length ${body.length}, header says ${String(header.bytes)}`);
  if (crc32(body) !== header.crc) throw new CorruptSnapshotError(file, 'checksum mismatch');
  return JSON.parse(body.toString('utf8')) as Snapshot;
}

/**
 * The node's storage. `open` recovers the persisted state; `persist` writes one Ready with a
 * single write and at most one fdatasync; `saveSnapshot` installs a snapshot and compacts.
 *
 * Everything that touches the log runs on one serial queue: `persist` and the final step of
 * `saveSnapshot` (rename, roll, drop segments) never overlap, whatever the caller does, so a
 * roll can never cut into an append. The first failure poisons the queue: every later
 * operation rejects with it, because after a failed write or fdatasync nothing can be known
 * about what reached the disk (see docs/data-dir.md).
 */
export class Storage {
  private hard: HardState | undefined;
  private snapshotIndex = 0;
  /** Encoded size of the newest snapshot on disk (0 if none). */
  private snapshotSize = 0;
  private readonly fs: WalFs;
  private readonly nextTurn: () => Promise<void>;
  /** The tail of the serial queue of log operations. */
  private queue: Promise<void> = Promise.resolve();
  private failure: { readonly error: unknown } | undefined;
  /** Snapshots whose temp file is still being written (not yet in the queue); close waits. */
  private readonly snapshotsInProgress = new Set<Promise<void>>();
  /** The snapshot `saveSnapshot` is encoding, a part per event-loop turn. */
  private encoding: SnapshotEncoder | undefined;
  /** Snapshots handed to `persist` or `saveSnapshot` and not installed yet, by index. */
  private readonly snapshotsUnwritten = new Map<number, EncodedSnapshot>();
  /**
   * A snapshot from `saveSnapshot` whose file did not fit on a full disk: kept in memory (peers
   * are served from it), and written by the next `persist` that finds room. Until then the log
   * below it stays on disk, so a crash loses nothing.
   */
  private unsaved: EncodedSnapshot | undefined;
  private readonly logger: WalLogger | undefined;

  private constructor(
    readonly dir: string,
    private readonly wal: Wal,
    options: StorageOptions,
  ) {
    this.fs = options.fs ?? nodeFs;
    this.nextTurn = options.nextTurn ?? nextTurn;
    this.logger = options.logger;
  }

  /**
   * Opens the data directory `dir`. Returns `state: undefined` for a fresh directory (call
   * `initialize`). Throws `CorruptLogError`, `CorruptSnapshotError` or
   * `IncompleteDataDirError` when the node must not start.
   */
  static open(dir: string, options: StorageOptions = {}): { storage: Storage; state: PersistedState | undefined } {
    const fs = options.fs ?? nodeFs;
    const snapDir = path.join(dir, SNAP_DIR);
    fs.mkdirSync(snapDir, { recursive: true });
    const newest = loadNewestSnapshot(fs, snapDir, options.logger);
    const snapshot = newest?.snapshot;

    let hard: HardState | undefined;
    const entries = new Map<number, Entry>();
    const walOptions = {
      types: RECORD_TYPES,
      ...(options.fs ? { fs: options.fs } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.segmentBytesMax ? { segmentBytesMax: options.segmentBytesMax } : {}),
    };
    const slotHighs = new Map<number, number>();
    const wal = Wal.open(path.join(dir, WAL_DIR), walOptions, (record, seq) => {
      const value = parsePayload(record.payload, path.join(dir, WAL_DIR), seq, record.offset);
      if (record.type === RecordType.hardState) {
        hard = value as HardState;
      } else {
        for (const entry of value as Entry[]) {
          entries.set(entry.slot, entry);
          if (entry.slot > (slotHighs.get(seq) ?? 0)) slotHighs.set(seq, entry.slot);
        }
      }
    });
    for (const [seq, slot] of slotHighs) wal.noteSlotHigh(seq, slot);

    const storage = new Storage(dir, wal, options);
    if (hard === undefined) {
      if (!wal.empty || snapshot) throw new IncompleteDataDirError(dir, 'files present but no hard state record');
      return { storage, state: undefined };
    }
    storage.hard = hard;
    storage.snapshotIndex = snapshot?.index ?? 0;
    storage.snapshotSize = newest?.bytes ?? 0;
    const live = [...entries.values()].filter((e) => e.slot > storage.snapshotIndex).sort((a, b) => a.slot - b.slot);
    return { storage, state: { hard, entries: live, ...(snapshot ? { snapshot } : {}) } };
  }

  /** Starts a fresh data directory with `hard` (e.g. the bootstrap configuration). */
  initialize(hard: HardState): PersistedState {
    if (this.hard !== undefined) throw new Error('storage already initialized');
    this.hard = hard;
    this.wal.roll(this.hardFrame());
    return { hard, entries: [] };
  }

  /**
   * Starts a fresh data directory from a restored snapshot (`paxos-node --restore-from`): the
   * snapshot file is written and made durable first, then the log is started with `hard`. A
   * crash in between leaves a snapshot without a hard state, which `open` refuses
   * (`IncompleteDataDirError`), never an empty node that looks initialized.
   */
  initializeFromSnapshot(hard: HardState, snapshot: Snapshot): PersistedState {
    if (this.hard !== undefined) throw new Error('storage already initialized');
    const encoded = encodeSnapshot(snapshot);
    this.hard = hard;
    // Temp file, fsync, rename, fsync of the directory, then the roll writes the hard state.
    this.writeSnapshotNow(encoded);
    return { hard, entries: [], snapshot };
  }

  /** The path of the snapshot file at `index` (whether or not it exists). */
  snapshotPath(index: number): string {
    return this.snapshotFiles(index).file;
  }

  /**
   * The index of the newest snapshot on disk (0 if none), or of one waiting for space on a full
   * disk (see `saveSnapshot`): taking another one meanwhile would only fail the same way.
   */
  get snapshotAt(): number {
    return Math.max(this.snapshotIndex, this.unsaved?.index ?? 0);
  }

  /**
   * The data of the snapshot at `index` if it is the newest one handed to this storage: from
   * memory while it is being written, then read back from its file (a peer catching up needs
   * it rarely, so it is not kept in memory). Undefined for any other index, or if the file
   * cannot be read.
   */
  snapshotData(index: number): string | undefined {
    // Still being encoded a part at a time: a peer needs it now, so finish it now (rare).
    if (this.encoding?.index === index) this.snapshotsUnwritten.set(index, this.encoding.finish());
    const unwritten = this.snapshotsUnwritten.get(index);
    if (index === 0 || (unwritten === undefined && index !== this.snapshotIndex)) return undefined;
    const { file } = this.snapshotFiles(index);
    try {
      const buf = unwritten === undefined ? this.fs.readFileSync(file) : Buffer.concat(unwritten.parts);
      const snapshot = decodeSnapshot(buf, file);
      return snapshot.index === index ? snapshot.data : undefined;
    } catch (err) {
      this.logger?.warn({ file, err: String(err) }, 'cannot read the snapshot back for a peer');
      return undefined;
    }
  }

  /** fdatasync calls so far (for metrics and tests). */
  get syncCount(): number {
    return this.wal.syncCount;
  }

  /** The encoded size of the newest snapshot on disk, in bytes (0 if none). */
  get snapshotBytes(): number {
    return this.snapshotSize;
  }

  /**
   * Bytes appended to the log since the newest snapshot (after a restart: the size of the
   * segments found). With `snapshotBytes`, the snapshot policy's measure of "worth it".
   */
  get logBytesSinceSnapshot(): number {
    return this.wal.bytesWritten;
  }

  /**
   * Makes one Ready's state durable: a snapshot received from a peer first (its own files,
   * written synchronously: rare, and the Ready cannot proceed without it), then the hard state
   * and entries as one write followed by one fdatasync if `mustSync`, on the thread pool.
   * Resolves once all of it is done; the batch is encoded before this returns, so the caller
   * may reuse nothing and wait for nothing else.
   */
  persist(batch: PersistBatch): Promise<void> {
    if (this.hard === undefined) return Promise.reject(new Error('persist before initialize'));
    // Entries before the hard state: a torn write can then lose the commit hint, never leave a
    // hint that names entries which are not on disk (the core relies on this order).
    const frames: Buffer[] = [];
    let slotHigh = 0;
    if (batch.entries.length > 0) {
      frames.push(encodeFrame(RecordType.entries, Buffer.from(JSON.stringify(batch.entries), 'utf8')));
      for (const entry of batch.entries) if (entry.slot > slotHigh) slotHigh = entry.slot;
    }
    if (batch.hardState) frames.push(encodeFrame(RecordType.hardState, Buffer.from(JSON.stringify(batch.hardState), 'utf8')));
    const data = frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames);
    const snapshot = batch.snapshot ? encodeSnapshot(batch.snapshot) : undefined;
    if (snapshot) this.snapshotsUnwritten.set(snapshot.index, snapshot);
    const written = this.enqueue(async () => {
      if (snapshot && snapshot.index > this.snapshotIndex) this.writeSnapshotNow(snapshot);
      const unsaved = this.unsaved;
      if (unsaved && unsaved.index > this.snapshotIndex) {
        try {
          this.writeSnapshotNow(unsaved);
          this.logger?.info({ index: unsaved.index }, 'snapshot written once the disk had room again');
        } catch (err) {
          if (!(err instanceof DiskFullError)) throw err;
        }
      }
      if (this.unsaved && this.unsaved.index <= this.snapshotIndex) {
        this.forgetUnwritten(this.unsaved);
        this.unsaved = undefined;
      }
      // The preamble of a new segment is the hard state *before* this batch; the batch follows it.
      if (data.length > 0 && this.wal.needsRoll(data.length)) this.wal.roll(this.hardFrame());
      await this.wal.append(data, batch.mustSync, slotHigh);
      if (batch.hardState) this.hard = batch.hardState;
    });
    if (snapshot) {
      const forget = (): void => this.forgetUnwritten(snapshot);
      written.then(forget, forget);
    }
    return written;
  }

  /**
   * Installs `snapshot` durably (temp file, fsync, rename, directory fsync), then rolls the
   * log and deletes the segments and older snapshots it makes redundant. A crash at any point
   * leaves either the old or the new snapshot in force, each with the log it needs.
   *
   * The snapshot is encoded a data part per event-loop turn (its parts are taken one at a
   * time, and not kept: a frozen store's parts, see `KvStore.freeze`), so a large state does
   * not stop the node for the whole of it; `snapshotData` finishes it at once if a peer needs it
   * meanwhile. Writing and fsyncing its temp file happen on the thread pool, concurrently with
   * appends to the log (a different file), and only the short final step — rename, roll,
   * deletions — waits its turn in the log's queue. A snapshot that a newer one (e.g. from a
   * peer) overtook meanwhile is discarded. One snapshot is encoded at a time.
   */
  saveSnapshot(toSave: SnapshotToSave): Promise<void> {
    const encoder = new SnapshotEncoder(toSave);
    if (this.hard === undefined || toSave.index <= this.snapshotIndex || this.encoding !== undefined) {
      encoder.abandon();
      if (this.hard === undefined) return Promise.reject(new Error('snapshot before initialize'));
      if (this.encoding !== undefined) return Promise.reject(new Error('a snapshot is already being encoded'));
      return Promise.resolve();
    }
    this.encoding = encoder;
    const { file, tmp } = this.snapshotFiles(toSave.index);
    const done = encoder
      .run(this.nextTurn)
      .finally(() => {
        if (this.encoding === encoder) this.encoding = undefined;
      })
      .then((snapshot) => {
        this.snapshotsUnwritten.set(snapshot.index, snapshot);
        return snapshot;
      })
      // The temp file is written outside the queue, so appends go on meanwhile; only the final
      // step is queued, once the file is durable.
      .then((snapshot) =>
        this.writeFileDurably(tmp, snapshot.parts).then(
          () => snapshot,
          (err: unknown) => {
            if (!isNoSpace(err)) throw err;
            // A full disk: keep the snapshot for the next persist that finds room (see `unsaved`).
            try {
              this.fs.unlinkSync(tmp);
            } catch {
              /* not created */
            }
            if (snapshot.index > (this.unsaved?.index ?? 0)) {
              if (this.unsaved) this.forgetUnwritten(this.unsaved);
              this.unsaved = snapshot;
            }
            throw new DiskFullError(tmp, err);
          },
        ),
      )
      .then((snapshot) =>
        this.enqueue(async () => {
          if (snapshot.index <= this.snapshotIndex) {
            this.fs.unlinkSync(tmp);
            return;
          }
          this.installSnapshot(snapshot, tmp, file);
        }),
      );
    this.snapshotsInProgress.add(done);
    const forget = (): void => {
      this.snapshotsInProgress.delete(done);
      const unwritten = this.snapshotsUnwritten.get(toSave.index);
      if (unwritten && unwritten !== this.unsaved) this.forgetUnwritten(unwritten);
    };
    done.then(forget, forget);
    return done;
  }

  /** Segment sequence numbers on disk (for tests and status). */
  get segments(): number[] {
    return this.wal.segmentSeqs;
  }

  /**
   * Waits for snapshots being written and the queued operations, then syncs and closes the log. After a storage failure
   * the log is closed without a sync (retrying an fdatasync that failed is never safe).
   */
  async close(): Promise<void> {
    await Promise.allSettled(this.snapshotsInProgress);
    await this.queue;
    if (this.failure) this.wal.abandon();
    else this.wal.close();
  }

  /** Drops the in-memory copy of a snapshot once it is on disk (or was given up). */
  private forgetUnwritten(snapshot: EncodedSnapshot): void {
    if (this.snapshotsUnwritten.get(snapshot.index) === snapshot) this.snapshotsUnwritten.delete(snapshot.index);
  }

  /**
   * Runs `op` after every operation queued before it; the first failure poisons the queue,
   * except a full disk (`DiskFullError`), whose write the log took back: that one may be retried.
   */
  private enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.queue.then(() => {
      if (this.failure) throw this.failure.error;
      return op();
    });
    this.queue = run.then(
      () => undefined,
      (error: unknown) => {
        if (!(error instanceof DiskFullError)) this.failure ??= { error };
      },
    );
    return run;
  }

  /**
   * Writes `snapshot`'s file synchronously (temp file, fsync) and installs it: used for a
   * snapshot received from a peer (rare, and its Ready cannot proceed without it) and for one
   * that waited for space. On a full disk the temp file is removed and `DiskFullError` thrown.
   */
  private writeSnapshotNow(snapshot: EncodedSnapshot): void {
    const { file, tmp } = this.snapshotFiles(snapshot.index);
    const fd = this.fs.openSync(tmp, 'w');
    let open = true;
    try {
      let position = 0;
      for (const part of snapshot.parts) {
        let written = 0;
        while (written < part.length) written += this.fs.writeSync(fd, part, written, part.length - written, position + written);
        position += part.length;
      }
      this.fs.fsyncSync(fd);
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      this.fs.closeSync(fd);
      open = false;
      this.fs.unlinkSync(tmp);
      throw new DiskFullError(tmp, err);
    } finally {
      if (open) this.fs.closeSync(fd);
    }
    this.installSnapshot(snapshot, tmp, file);
  }

  private snapshotFiles(index: number): { file: string; tmp: string } {
    const file = path.join(this.dir, SNAP_DIR, snapshotName(index));
    return { file, tmp: `${file}.tmp` };
  }

  /** Writes `parts` one after another to a new file `file` and fsyncs it, on the thread pool. */
  private async writeFileDurably(file: string, parts: readonly Buffer[]): Promise<void> {
    const fs = this.fs;
    const fd = await new Promise<number>((resolve, reject) => fs.open(file, 'w', (err, fd) => (err ? reject(err) : resolve(fd))));
    try {
      let position = 0;
      for (const part of parts) {
        await writeFullyAsync(fs, fd, part, position);
        position += part.length;
      }
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    }
  }

  /**
   * The synchronous tail of installing a snapshot whose temp file is durable: rename it into
   * place, then roll the log and delete what the snapshot made redundant. Runs inside the
   * queue, never during an append.
   */
  private installSnapshot(snapshot: EncodedSnapshot, tmp: string, file: string): void {
    const fs = this.fs;
    const snapDir = path.join(this.dir, SNAP_DIR);
    fs.renameSync(tmp, file);
    fsyncDir(fs, snapDir);
    this.snapshotIndex = snapshot.index;
    this.snapshotSize = snapshot.bytes;
    // Roll so that the segment that held entries up to the snapshot is closed and can go.
    this.wal.roll(this.hardFrame());
    this.wal.dropSegmentsThrough(snapshot.index);
    this.wal.resetBytes();
    let removed = false;
    for (const name of fs.readdirSync(snapDir) as string[]) {
      const m = SNAPSHOT_RE.exec(name);
      if (m && Number(m[1]) < snapshot.index) {
        fs.unlinkSync(path.join(snapDir, name));
        removed = true;
      }
    }
    if (removed) fsyncDir(fs, snapDir);
  }

  private hardFrame(): Buffer {
    return encodeFrame(RecordType.hardState, Buffer.from(JSON.stringify(this.hard), 'utf8'));
  }
}

function parsePayload(payload: Buffer, dir: string, seq: number, offset: number): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch (cause) {
    // The CRC matched, so this is a bug in a writer, not disk damage; still refuse to start.
    throw new CorruptLogError(path.join(dir, `segment ${seq}`), offset, `undecodable payload: ${String(cause)}`);
  }
}

function loadNewestSnapshot(fs: WalFs, snapDir: string, logger: WalLogger | undefined): { snapshot: Snapshot; bytes: number } | undefined {
  let newest: { index: number; name: string } | undefined;
  for (const name of fs.readdirSync(snapDir) as string[]) {
    if (name.endsWith('.tmp')) {
      // A snapshot that was being written when the process died; the previous one is in force.
      logger?.info({ file: name }, 'removing unfinished snapshot');
      fs.unlinkSync(path.join(snapDir, name));
      continue;
    }
    const m = SNAPSHOT_RE.exec(name);
    if (m && (!newest || Number(m[1]) > newest.index)) newest = { index: Number(m[1]), name };
  }
  if (!newest) return undefined;
  const file = path.join(snapDir, newest.name);
  const buf = fs.readFileSync(file);
  const snapshot = decodeSnapshot(buf, file);
  if (snapshot.index !== newest.index) throw new CorruptSnapshotError(file, `holds index ${snapshot.index}`);
  return { snapshot, bytes: buf.length };
}
