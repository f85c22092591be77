/**
 * A segmented write-ahead log of CRC-framed records.
 *
 * On disk a segment is `wal-<seq>.log`: an 8-byte magic, then frames
 *
 *     length u32 LE | crc32 u32 LE | type u8 | payload (length bytes)
 *
 * where the CRC covers the type byte and the payload. The log knows nothing of Paxos: records
 * are typed byte strings; `storage.ts` gives them meaning.
 *
 * Appends copy the frames into the page cache with one inline `write` (microseconds: with one
 * append in flight nothing else writes this file meanwhile, so it never waits for writeback),
 * then run `fdatasync` on libuv's thread pool, so the event loop keeps reading sockets,
 * sending the leader's accepts and queueing proposals while the disk works. One thread-pool
 * round trip per append, not two: on a loaded machine each one costs a thread wake-up and an
 * event-loop wake-up, and sits on the commit path of every write. The log allows one append at a time (the driver keeps one Ready in
 * flight, see docs/adr/0006-async-group-commit.md), which keeps the write position and the
 * "durable up to here" point trivially ordered. Opening, recovery and segment rolls stay
 * synchronous: they are rare and must not interleave with an append anyway.
 */
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from './crc32.js';
import { trace, tracing } from './trace.js';

/** The file-system calls the log uses, injectable so that tests can count syncs or crash. */
export type WalFs = Pick<
  typeof nodeFs,
  | 'openSync'
  | 'closeSync'
  | 'writeSync'
  | 'readSync'
  | 'fdatasyncSync'
  | 'fsyncSync'
  | 'ftruncateSync'
  | 'fstatSync'
  | 'readFileSync'
  | 'readdirSync'
  | 'renameSync'
  | 'unlinkSync'
  | 'mkdirSync'
  | 'rmSync'
  // the asynchronous (callback) calls of the append path and of snapshot files
  | 'open'
  | 'write'
  | 'fdatasync'
  | 'fsync'
  | 'close'
>;

/** Where a log reports what it repaired; a pino logger fits. */
export interface WalLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** Raised on open when a record in the middle of the log is damaged: the node must not start. */
export class CorruptLogError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`write-ahead log corrupt: ${file} at offset ${offset}: ${reason}`);
    this.name = 'CorruptLogError';
  }
}

/**
 * A write found the file system full (ENOSPC). Unlike any other write or sync error this one
 * is clean: the log took back the part of the write that landed (truncating to where it
 * started), so nothing half-written stays behind, and the same write may be retried once
 * there is space. Nothing of the refused write is durable.
 */
export class DiskFullError extends Error {
  constructor(
    readonly file: string,
    /** The file system's own error. */
    readonly error?: unknown,
  ) {
    super(`disk full (ENOSPC) writing ${file}: nothing of this write was kept; retry once there is space`);
    this.name = 'DiskFullError';
  }
}

/** True for the file system's "no space left on device" error. */
export function isNoSpace(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOSPC';
}

export const SEGMENT_MAGIC = Buffer.from('PAXWAL01', 'ascii');
export const FRAME_HEADER_BYTES = 9;
/** No single record may exceed this; a larger length field can only be damage. */
export const RECORD_BYTES_MAX = 256 * 1024 * 1024;

/** Record types known to this version; an unknown type is treated like a bad checksum. */
export type RecordTypeSet = ReadonlySet<number>;

/** Encodes one frame. */
export function encodeFrame(type: number, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt8(type, 8);
  frame.set(payload, FRAME_HEADER_BYTES);
  frame.writeUInt32LE(crc32(frame.subarray(8)), 4);
  return frame;
}

/** One decoded record; `payload` is a view into the segment buffer. */
export interface WalRecord {
  readonly type: number;
  readonly payload: Buffer;
  readonly offset: number;
}

type FrameCheck = { readonly ok: true; readonly record: WalRecord; readonly end: number } | { readonly ok: false; readonly reason: string };

function checkFrame(buf: Buffer, offset: number, types: RecordTypeSet): FrameCheck {
  if (buf.length - offset < FRAME_HEADER_BYTES) return { ok: false, reason: 'truncated frame header' };
  const length = buf.readUInt32LE(offset);
  if (length > RECORD_BYTES_MAX) return { ok: false, reason: `implausible length ${length}` };
  const end = offset + FRAME_HEADER_BYTES + length;
  if (end > buf.length) return { ok: false, reason: `truncated payload (need ${length} bytes)` };
  const type = buf.readUInt8(offset + 8);
  if (crc32(buf.subarray(offset + 8, end)) !== buf.readUInt32LE(offset + 4)) return { ok: false, reason: 'checksum mismatch' };
  if (!types.has(type)) return { ok: false, reason: `unknown record type ${type}` };
  return { ok: true, record: { type, payload: buf.subarray(offset + FRAME_HEADER_BYTES, end), offset }, end };
}

/**
 * Whether any intact frame starts after `offset`. A damaged frame with intact frames behind it
 * is corruption in the middle of the log, not a torn write: appends are single `write` calls at
 * the end, so a crash can only damage the tail.
 */
function intactFrameAfter(buf: Buffer, offset: number, types: RecordTypeSet): number | undefined {
  for (let at = offset + 1; at + FRAME_HEADER_BYTES <= buf.length; at++) {
    // Cheap filters first so that the scan stays linear in practice.
    if (!types.has(buf[at + 8] as number)) continue;
    const length = buf.readUInt32LE(at);
    if (at + FRAME_HEADER_BYTES + length > buf.length) continue;
    if (checkFrame(buf, at, types).ok) return at;
  }
  return undefined;
}

/** The result of scanning one segment. */
export interface SegmentScan {
  readonly records: WalRecord[];
  /** Bytes up to the end of the last intact record. */
  readonly validBytes: number;
  /** Set when the segment ends in a damaged record with nothing intact after it. */
  readonly tornAt?: { readonly offset: number; readonly reason: string };
}

/** Decodes a segment; throws `CorruptLogError` when damage is followed by intact records. */
export function scanSegment(buf: Buffer, file: string, types: RecordTypeSet): SegmentScan {
  if (buf.length < SEGMENT_MAGIC.length || !buf.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) {
    throw new CorruptLogError(file, 0, 'bad segment header');
  }
  const records: WalRecord[] = [];
  let offset = SEGMENT_MAGIC.length;
  while (offset < buf.length) {
    const check = checkFrame(buf, offset, types);
    if (!check.ok) {
      const next = intactFrameAfter(buf, offset, types);
      if (next !== undefined) throw new CorruptLogError(file, offset, `${check.reason}; intact record follows at ${next}`);
      return { records, validBytes: offset, tornAt: { offset, reason: check.reason } };
    }
    records.push(check.record);
    offset = check.end;
  }
  return { records, validBytes: offset };
}

const SEGMENT_RE = /^wal-(\d{16})\.log$/;

/** The file name of segment `seq`. */
export function segmentName(seq: number): string {
  return `wal-${String(seq).padStart(16, '0')}.log`;
}

interface SegmentInfo {
  readonly seq: number;
  readonly file: string;
  /** Highest slot of any entry in the segment (0 if none): it may be dropped once a snapshot covers it. */
  slotHigh: number;
}

/** Options of `Wal.open`. */
export interface WalOptions {
  readonly fs?: WalFs;
  readonly logger?: WalLogger;
  /** A segment is closed and a new one started once it exceeds this. */
  readonly segmentBytesMax?: number;
  /** The record types this reader understands. */
  readonly types: RecordTypeSet;
}

/** Reports one recovered record to the opener, with the segment it came from. */
export type RecordVisitor = (record: WalRecord, segmentSeq: number) => void;

export const DEFAULT_SEGMENT_BYTES_MAX = 64 * 1024 * 1024;

/** Fsyncs a directory so that a create, rename or unlink in it is durable. */
export function fsyncDir(fs: WalFs, dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The segmented log. Single-threaded use only. */
export class Wal {
  private readonly segments: SegmentInfo[] = [];
  private fd: number | undefined;
  /** Write position in the active segment. */
  private position = 0;
  /** True when the active segment holds writes not yet fdatasync'ed. */
  private dirty = false;
  /** True while an asynchronous append is in flight (appends and rolls must not overlap). */
  private appending = false;
  /** Bytes in the segments on disk, or appended since the last `resetBytes`. */
  private bytes = 0;
  private readonly fs: WalFs;
  private readonly segmentBytesMax: number;
  /** Number of fdatasync calls made, for metrics. */
  syncCount = 0;

  private constructor(
    readonly dir: string,
    options: WalOptions,
  ) {
    this.fs = options.fs ?? nodeFs;
    this.segmentBytesMax = options.segmentBytesMax ?? DEFAULT_SEGMENT_BYTES_MAX;
  }

  /**
   * Opens (creating if needed) the log in `dir`, hands every intact record to `visit` in log
   * order, truncates a torn tail of the last segment and leaves the log ready to append.
   */
  static open(dir: string, options: WalOptions, visit: RecordVisitor): Wal {
    const wal = new Wal(dir, options);
    const fs = wal.fs;
    fs.mkdirSync(dir, { recursive: true });
    const seqs: number[] = [];
    for (const name of fs.readdirSync(dir) as string[]) {
      const m = SEGMENT_RE.exec(name);
      if (m) seqs.push(Number(m[1]));
      else if (name.startsWith('wal-') && name.endsWith('.tmp')) fs.unlinkSync(path.join(dir, name)); // an unfinished roll
    }
    seqs.sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i] !== (seqs[i - 1] as number) + 1) {
        throw new CorruptLogError(path.join(dir, segmentName(seqs[i] as number)), 0, `segment ${(seqs[i - 1] as number) + 1} is missing`);
      }
    }
    for (const [i, seq] of seqs.entries()) {
      const file = path.join(dir, segmentName(seq));
      const buf = fs.readFileSync(file);
      const scan = scanSegment(buf, file, options.types);
      const last = i === seqs.length - 1;
      if (scan.tornAt) {
        // Only the segment being appended to can have a torn tail: segments are closed after a sync.
        if (!last) throw new CorruptLogError(file, scan.tornAt.offset, `${scan.tornAt.reason} in a closed segment`);
        options.logger?.warn(
          { file, offset: scan.tornAt.offset, droppedBytes: buf.length - scan.validBytes, reason: scan.tornAt.reason },
          'truncating torn tail of write-ahead log',
        );
      }
      wal.segments.push({ seq, file, slotHigh: 0 });
      wal.bytes += scan.validBytes;
      for (const record of scan.records) visit(record, seq);
      if (last) {
        wal.fd = fs.openSync(file, 'r+');
        wal.position = scan.validBytes;
        if (scan.tornAt) {
          fs.ftruncateSync(wal.fd, scan.validBytes);
          fs.fsyncSync(wal.fd);
        }
      }
    }
    return wal;
  }

  /** True when the log holds no segment yet (a fresh data directory). */
  get empty(): boolean {
    return this.segments.length === 0;
  }

  /** The sequence numbers of the segments on disk, oldest first. */
  get segmentSeqs(): number[] {
    return this.segments.map((s) => s.seq);
  }

  /** Records that segment `seq` holds entries up to `slot` (used while recovering). */
  noteSlotHigh(seq: number, slot: number): void {
    const segment = this.segments.find((s) => s.seq === seq);
    if (segment && slot > segment.slotHigh) segment.slotHigh = slot;
  }

  /** Whether appending `bytes` more should go to a fresh segment. */
  needsRoll(bytes: number): boolean {
    return this.fd === undefined || (this.position > SEGMENT_MAGIC.length && this.position + bytes > this.segmentBytesMax);
  }

  /**
   * Bytes written to the log since `resetBytes` (on open: the size of the segments found).
   * Storage compares it with the size of the last snapshot to decide when another is worth it.
   */
  get bytesWritten(): number {
    return this.bytes;
  }

  /** Restarts the `bytesWritten` count (after a snapshot). */
  resetBytes(): void {
    this.bytes = 0;
  }

  /**
   * Closes the active segment and starts a new one whose first bytes are `preamble` (the
   * current hard state, so that older segments are never needed for it). The new segment is
   * written under a temporary name and renamed once durable, so a crash never leaves a
   * half-initialised segment behind.
   */
  roll(preamble: Buffer): void {
    if (this.appending) throw new Error('roll during an append');
    const fs = this.fs;
    if (this.fd !== undefined) {
      if (this.dirty) this.datasync();
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
    const seq = (this.segments.at(-1)?.seq ?? 0) + 1;
    const file = path.join(this.dir, segmentName(seq));
    const tmp = `${file}.tmp`;
    let fd: number;
    try {
      fd = fs.openSync(tmp, 'w+');
    } catch (err) {
      // No inode left is a full disk too; nothing was created.
      if (isNoSpace(err)) throw new DiskFullError(tmp, err);
      throw err;
    }
    const head = Buffer.concat([SEGMENT_MAGIC, preamble]);
    try {
      writeFully(fs, fd, head, 0);
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      // Nothing of the new segment counts yet: drop it. The log has no active segment now, so
      // the next append rolls again (`needsRoll`).
      fs.closeSync(fd);
      fs.unlinkSync(tmp);
      throw new DiskFullError(tmp, err);
    }
    fs.fdatasyncSync(fd);
    this.syncCount++;
    fs.renameSync(tmp, file);
    fsyncDir(fs, this.dir);
    this.fd = fd;
    this.position = head.length;
    this.bytes += head.length;
    this.dirty = false;
    this.segments.push({ seq, file, slotHigh: 0 });
  }

  /**
   * Appends `data` (whole frames) with one inline write, then one fdatasync on the thread pool
   * when `sync`; resolves once they are done. Without `sync` the promise is already resolved. `slotHigh` is the highest entry slot in `data`,
   * tracked so that compaction knows which segments to drop. One append at a time: the caller
   * awaits each before starting the next (or a roll). A rejection means the state of the page
   * cache is unknown; the log must not be used further.
   */
  async append(data: Buffer, sync: boolean, slotHigh: number): Promise<void> {
    if (this.fd === undefined) throw new Error('append before the first roll');
    if (this.appending) throw new Error('concurrent appends');
    this.appending = true;
    try {
      const fd = this.fd;
      if (data.length > 0) {
        const at = this.position;
        const wasDirty = this.dirty;
        this.position += data.length;
        this.bytes += data.length;
        this.dirty = true;
        const active = this.segments.at(-1) as SegmentInfo;
        if (slotHigh > active.slotHigh) active.slotHigh = slotHigh;
        // The write is a copy into the page cache: cheaper inline than a round trip through the
        // thread pool, which on a busy machine costs more than the copy and sits on the commit
        // path. Only the fdatasync, which waits for the disk, goes to the thread pool.
        if (tracing) trace('wal.write.start', `${slotHigh}:${sync ? 's' : 'n'}`);
        try {
          writeFully(this.fs, fd, data, at);
        } catch (err) {
          if (!isNoSpace(err)) throw err;
          // Take back the part that landed, so that the log ends where it did before (a crash
          // would have made it a torn tail; a later append must not follow it).
          this.fs.ftruncateSync(fd, at);
          this.position = at;
          this.bytes -= data.length;
          this.dirty = wasDirty;
          throw new DiskFullError(active.file, err);
        }
        if (tracing) trace('wal.write.done', slotHigh);
      }
      if (sync && this.dirty) {
        await new Promise<void>((resolve, reject) => this.fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
        if (tracing) trace('wal.sync.done', slotHigh);
        this.syncCount++;
        this.dirty = false;
      }
    } finally {
      this.appending = false;
    }
  }

  /** Makes every append so far durable. */
  sync(): void {
    if (this.dirty) this.datasync();
  }

  /**
   * Deletes closed segments whose entries are all at or below `slot`. Oldest first and
   * stopping at the first one still needed, so that the log on disk stays a contiguous suffix.
   */
  dropSegmentsThrough(slot: number): number {
    let dropped = 0;
    while (this.segments.length > 1 && (this.segments[0] as SegmentInfo).slotHigh <= slot) {
      const segment = this.segments.shift() as SegmentInfo;
      this.fs.unlinkSync(segment.file);
      dropped++;
    }
    if (dropped > 0) fsyncDir(this.fs, this.dir);
    return dropped;
  }

  /** Syncs and closes the active segment. */
  close(): void {
    if (this.fd === undefined) return;
    if (this.appending) throw new Error('close during an append');
    this.sync();
    this.fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /**
   * Closes the active segment without syncing, after a failed write or fdatasync: retrying
   * the sync could report success for pages the kernel already dropped, so we do not try.
   */
  abandon(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      this.fs.closeSync(fd);
    } catch {
      /* the log is already unusable; the process is stopping */
    }
  }

  private datasync(): void {
    this.fs.fdatasyncSync(this.fd as number);
    this.syncCount++;
    this.dirty = false;
  }
}

function writeFully(fs: WalFs, fd: number, data: Buffer, position: number): void {
  let written = 0;
  while (written < data.length) written += fs.writeSync(fd, data, written, data.length - written, position + written);
}

/** `writeFully` on the thread pool: loops over short writes (rare on regular files, but legal). */
export async function writeFullyAsync(fs: WalFs, fd: number, data: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    written += await new Promise<number>((resolve, reject) =>
      fs.write(fd, data, written, data.length - written, position + written, (err, n) => (err ? reject(err) : resolve(n))),
    );
  }
}
