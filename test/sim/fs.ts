/**
 * A simulated disk under the real `Storage` and `Wal` (node/src/io): an in-memory file system
 * implementing the calls of `WalFs`, with the failures a real disk has.
 *
 * - **Page cache.** A write changes what the process reads at once but is durable only once an
 *   fsync/fdatasync of its file returns. A crash keeps the durable content plus a random prefix
 *   of each file's unsynced writes (writeback in write order, the order the log relies on); the
 *   last write kept may be torn (only some of its bytes reached the disk).
 * - **fsync failure.** An fsync/fdatasync can fail with EIO (`failNextSync`); the node must stop.
 * - **Bit flip.** `flipBit` damages one byte of durable log content in front of an intact
 *   record, as a failing disk does; the node must refuse to start.
 * - **Full disk.** While `full`, writes fail with ENOSPC after writing part of their bytes.
 *
 * Simplifications: metadata operations (create, rename, unlink, mkdir) are durable at once and
 * atomic, as on a journaling file system that orders them (the code fsyncs the directory after
 * each anyway); reads are synchronous and never fail.
 *
 * The disk outlives processes: a process reaches it through a `SimFsView` (`view`), which dies
 * with the process, so that nothing a dead process still had in flight (a promise continuation,
 * a completion) touches the disk after the crash.
 */
import type { WalFs } from '../../node/src/io/wal.js';
import type { Rng } from './rng.js';

/** An injected disk error (EIO, ENOSPC): it ends the process or the request, never the run. */
export class SimDiskError extends Error {
  constructor(
    readonly code: 'EIO' | 'ENOSPC',
    syscall: string,
    path: string,
  ) {
    super(`${code}: simulated ${code === 'EIO' ? 'i/o error' : 'no space left on device'}, ${syscall} '${path}'`);
    this.name = 'SimDiskError';
  }
}

/** What a file's unsynced write overwrote, so that a crash can take it back. */
interface Undo {
  readonly pos: number;
  /** Bytes of the old content in [pos, pos + written) (shorter when the write extended the file). */
  readonly old: Buffer;
  readonly oldLength: number;
  /** Bytes the operation wrote (0 for a truncation). */
  readonly written: number;
  /** A truncation: `old` holds the cut-off tail (it is never torn). */
  readonly truncate: boolean;
}

interface Inode {
  data: Buffer;
  length: number;
  /** Writes since the last sync of this file, oldest first. */
  unsynced: Undo[];
}

interface OpenFile {
  readonly path: string;
  /** Undefined for a directory. */
  readonly inode: Inode | undefined;
}

/** What a crash did to the disk. */
export interface CrashDamage {
  readonly lostWrites: number;
  readonly torn: boolean;
}

/** Injected failures, by kind. */
export interface FaultCounts {
  syncFailures: number;
  enospc: number;
  bitFlips: number;
  tornWrites: number;
  lostWrites: number;
}

/** Where the view's asynchronous completions go: now-ish, or after `ticks` ticks. */
export type Defer = (fn: () => void, ticks: number) => void;

/** Knobs of the disk's faults (set by the fault injector). */
export interface SimFsFaults {
  /** Probability that an fdatasync completes only after 1..3 ticks (the asynchronous group commit). */
  slowSyncChance: number;
  /** Probability that an fsync/fdatasync fails with EIO. */
  syncFailRate: number;
}

function errno(code: string, syscall: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, syscall, path });
}

const parent = (p: string): string => p.slice(0, Math.max(0, p.lastIndexOf('/'))) || '/';

/** One node's disk. */
export class SimFs {
  private readonly files = new Map<string, Inode>();
  private readonly dirs = new Set<string>(['/']);
  /** While true, writes fail with ENOSPC. */
  full = false;
  faults: SimFsFaults = { slowSyncChance: 0, syncFailRate: 0 };
  private live: SimFsView | undefined;

  constructor(
    private readonly rng: Rng,
    /** Where injected failures are counted, by kind (the world sums them over its disks). */
    readonly injected: FaultCounts = { syncFailures: 0, enospc: 0, bitFlips: 0, tornWrites: 0, lostWrites: 0 },
  ) {}

  /** The file system as one process sees it; the previous process's view dies. */
  view(defer: Defer): SimFsView {
    this.live?.kill();
    this.live = new SimFsView(this, defer);
    return this.live;
  }

  /** A power cut: every file keeps its durable content and a random prefix of its unsynced writes. */
  crash(): CrashDamage {
    this.live?.kill();
    this.live = undefined;
    let lostWrites = 0;
    let torn = false;
    for (const inode of [...this.files.values()]) {
      const n = inode.unsynced.length;
      if (n === 0) continue;
      const kept = this.rng.int(n + 1);
      // The first write not kept whole may have reached the disk in part.
      const tear = kept < n && this.rng.chance(0.5);
      for (let i = n - 1; i >= kept; i--) {
        const u = inode.unsynced[i] as Undo;
        if (i === kept && tear && !u.truncate && u.written > 1) {
          const t = 1 + this.rng.int(u.written - 1);
          inode.data.set(u.old.subarray(Math.min(t, u.old.length)), u.pos + t);
          inode.length = Math.max(u.oldLength, u.pos + t);
          torn = true;
        } else {
          undo(inode, u);
        }
      }
      lostWrites += n - kept;
      inode.unsynced = [];
    }
    this.injected.lostWrites += lostWrites;
    if (torn) this.injected.tornWrites++;
    return { lostWrites, torn };
  }

  /**
   * Flips one bit of durable log content with an intact record behind it (in a segment other
   * than the last, anywhere; in the last, in front of its last record). `frames(buf)` gives the
   * offsets of a segment's records. Returns the file damaged, or undefined if no segment has
   * two records yet.
   */
  flipBit(dir: string, frames: (buf: Buffer) => readonly number[]): string | undefined {
    const segments = [...this.files.keys()].filter((p) => parent(p) === dir && p.endsWith('.log')).sort();
    const candidates: Array<{ path: string; end: number }> = [];
    for (const [i, path] of segments.entries()) {
      const inode = this.files.get(path) as Inode;
      const offsets = frames(inode.data.subarray(0, inode.length));
      const last = offsets.at(-1);
      if (i < segments.length - 1 && inode.length > 0) candidates.push({ path, end: inode.length });
      else if (last !== undefined && offsets.length >= 2) candidates.push({ path, end: last });
    }
    if (candidates.length === 0) return undefined;
    const { path, end } = this.rng.pick(candidates);
    const inode = this.files.get(path) as Inode;
    const at = this.rng.int(end);
    inode.data[at] = (inode.data[at] as number) ^ (1 << this.rng.int(8));
    this.injected.bitFlips++;
    return path;
  }

  /** Unsynced writes across files (tests). */
  get unsyncedWrites(): number {
    let n = 0;
    for (const inode of this.files.values()) n += inode.unsynced.length;
    return n;
  }

  /** A file's current content (tests). */
  content(path: string): Buffer | undefined {
    const inode = this.files.get(path);
    return inode === undefined ? undefined : Buffer.from(inode.data.subarray(0, inode.length));
  }

  // ---------------------------------------------------------------- used by SimFsView

  /** @internal */
  mkdir(path: string): void {
    let p = path;
    while (p !== '/' && !this.dirs.has(p)) {
      this.dirs.add(p);
      p = parent(p);
    }
  }

  /** @internal */
  readdir(dir: string): string[] {
    if (!this.dirs.has(dir)) throw errno('ENOENT', 'scandir', dir);
    const names: string[] = [];
    for (const p of [...this.files.keys(), ...this.dirs]) if (p !== dir && parent(p) === dir) names.push(p.slice(dir.length + 1));
    return names.sort();
  }

  /** @internal */
  open(path: string, flags: string): OpenFile {
    if (this.dirs.has(path)) return { path, inode: undefined };
    let inode = this.files.get(path);
    if (flags === 'r' || flags === 'r+') {
      if (inode === undefined) throw errno('ENOENT', 'open', path);
      return { path, inode };
    }
    if (!this.dirs.has(parent(path))) throw errno('ENOENT', 'open', path);
    if (inode === undefined) {
      inode = { data: Buffer.alloc(256), length: 0, unsynced: [] };
      this.files.set(path, inode);
    } else if (inode.length > 0) {
      this.truncate(inode, 0);
    }
    return { path, inode };
  }

  /** @internal */
  write(file: OpenFile, buf: Uint8Array, offset: number, length: number, position: number): number {
    const inode = file.inode;
    if (inode === undefined) throw errno('EISDIR', 'write', file.path);
    let n = length;
    if (this.full) {
      // A full disk takes part of a write, then refuses the rest.
      n = this.rng.int(length);
      if (n === 0) {
        this.injected.enospc++;
        throw new SimDiskError('ENOSPC', 'write', file.path);
      }
    }
    const end = position + n;
    if (end > inode.data.length) {
      const grown = Buffer.alloc(Math.max(end, inode.data.length * 2));
      inode.data.copy(grown, 0, 0, inode.length);
      inode.data = grown;
    }
    const old = Buffer.from(inode.data.subarray(position, Math.min(end, inode.length)));
    inode.unsynced.push({ pos: position, old, oldLength: inode.length, written: n, truncate: false });
    if (position > inode.length) inode.data.fill(0, inode.length, position);
    inode.data.set(buf.subarray(offset, offset + n), position);
    if (end > inode.length) inode.length = end;
    return n;
  }

  /** @internal */
  truncate(inode: Inode, length: number): void {
    if (length >= inode.length) return;
    inode.unsynced.push({ pos: length, old: Buffer.from(inode.data.subarray(length, inode.length)), oldLength: inode.length, written: 0, truncate: true });
    inode.length = length;
  }

  /** @internal The sync's outcome is decided when it is asked for; durability when it returns. */
  syncFails(): boolean {
    if (this.faults.syncFailRate === 0 || !this.rng.chance(this.faults.syncFailRate)) return false;
    this.injected.syncFailures++;
    return true;
  }

  /** @internal */
  slowSyncTicks(): number {
    return this.faults.slowSyncChance > 0 && this.rng.chance(this.faults.slowSyncChance) ? 1 + this.rng.int(3) : 0;
  }

  /** @internal */
  readFile(path: string): Buffer {
    const inode = this.files.get(path);
    if (inode === undefined) throw errno('ENOENT', 'open', path);
    return Buffer.from(inode.data.subarray(0, inode.length));
  }

  /** @internal */
  rename(from: string, to: string): void {
    const inode = this.files.get(from);
    if (inode === undefined) throw errno('ENOENT', 'rename', from);
    this.files.delete(from);
    this.files.set(to, inode);
  }

  /** @internal */
  unlink(path: string): void {
    if (!this.files.delete(path)) throw errno('ENOENT', 'unlink', path);
  }

  /** @internal */
  remove(path: string): void {
    for (const p of [...this.files.keys()]) if (p === path || p.startsWith(`${path}/`)) this.files.delete(p);
    for (const p of [...this.dirs]) if (p === path || p.startsWith(`${path}/`)) this.dirs.delete(p);
  }
}

/** Takes back one unsynced write or truncation. */
function undo(inode: Inode, u: Undo): void {
  inode.data.set(u.old, u.pos);
  inode.length = u.oldLength;
}

/** Marks a sync as done: the first `count` unsynced writes of the file (default all) are durable. */
function synced(inode: Inode | undefined, count?: number): void {
  if (inode !== undefined) inode.unsynced.splice(0, count ?? inode.unsynced.length);
}

/**
 * The file-system calls (`WalFs`) of one process on a `SimFs`. Asynchronous calls complete
 * through `defer`, i.e. at simulated times; after the process died (`kill`) every call throws
 * and no completion runs.
 */
export class SimFsView {
  private alive = true;
  private readonly fds = new Map<number, OpenFile>();
  private nextFd = 3;

  constructor(
    private readonly disk: SimFs,
    private readonly defer: Defer,
  ) {}

  /** The process died: nothing it still has in flight reaches the disk. */
  kill(): void {
    this.alive = false;
  }

  /** This view as the `WalFs` that `Storage.open` takes. */
  asWalFs(): WalFs {
    return this as unknown as WalFs;
  }

  private check(): void {
    if (!this.alive) throw new Error('simulated process is dead');
  }

  private file(fd: number): OpenFile {
    this.check();
    const f = this.fds.get(fd);
    if (f === undefined) throw errno('EBADF', 'fd', String(fd));
    return f;
  }

  /** Runs `fn` later, unless the process died meanwhile. */
  private later(ticks: number, fn: () => void): void {
    this.defer(() => {
      if (this.alive) fn();
    }, ticks);
  }

  mkdirSync(path: string): void {
    this.check();
    this.disk.mkdir(path);
  }

  readdirSync(path: string): string[] {
    this.check();
    return this.disk.readdir(path);
  }

  openSync(path: string, flags: string): number {
    this.check();
    const fd = this.nextFd++;
    this.fds.set(fd, this.disk.open(path, flags));
    return fd;
  }

  closeSync(fd: number): void {
    this.file(fd);
    this.fds.delete(fd);
  }

  writeSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    return this.disk.write(this.file(fd), buf, offset, length, position);
  }

  fdatasyncSync(fd: number): void {
    const f = this.file(fd);
    if (this.disk.syncFails()) throw new SimDiskError('EIO', 'fdatasync', f.path);
    synced(f.inode);
  }

  fsyncSync(fd: number): void {
    this.fdatasyncSync(fd);
  }

  ftruncateSync(fd: number, length: number): void {
    const f = this.file(fd);
    if (f.inode !== undefined) this.disk.truncate(f.inode, length);
  }

  readFileSync(path: string): Buffer {
    this.check();
    return this.disk.readFile(path);
  }

  renameSync(from: string, to: string): void {
    this.check();
    this.disk.rename(from, to);
  }

  unlinkSync(path: string): void {
    this.check();
    this.disk.unlink(path);
  }

  rmSync(path: string): void {
    this.check();
    this.disk.remove(path);
  }

  open(path: string, flags: string, cb: (err: Error | null, fd: number) => void): void {
    let fd = -1;
    let err: Error | null = null;
    try {
      fd = this.openSync(path, flags);
    } catch (e) {
      err = e as Error;
    }
    this.later(0, () => cb(err, fd));
  }

  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number, cb: (err: Error | null, written: number) => void): void {
    let n = 0;
    let err: Error | null = null;
    try {
      n = this.writeSync(fd, buf, offset, length, position);
    } catch (e) {
      err = e as Error;
    }
    this.later(0, () => cb(err, n));
  }

  fdatasync(fd: number, cb: (err: Error | null) => void): void {
    const f = this.file(fd);
    const fails = this.disk.syncFails();
    const count = f.inode?.unsynced.length ?? 0;
    // Durable when the call returns, not when it is made: a crash in between loses the writes.
    this.later(this.disk.slowSyncTicks(), () => {
      if (fails) return cb(new SimDiskError('EIO', 'fdatasync', f.path));
      synced(f.inode, count);
      cb(null);
    });
  }

  fsync(fd: number, cb: (err: Error | null) => void): void {
    this.fdatasync(fd, cb);
  }

  close(fd: number, cb: (err: Error | null) => void): void {
    let err: Error | null = null;
    try {
      this.closeSync(fd);
    } catch (e) {
      err = e as Error;
    }
    this.later(0, () => cb(err));
  }
}
