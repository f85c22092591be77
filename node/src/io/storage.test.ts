import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KvStore } from '../core/kv.js';
import type { Entry, HardState, Snapshot } from '../core/types.js';
import { crc32, crc32Portable } from './crc32.js';
import { CorruptLogError, Storage, snapshotName } from './storage.js';
import { FRAME_HEADER_BYTES, segmentName, type WalFs } from './wal.js';

const hard = (commit: number, round = 1): HardState => ({
  promised: { round, node: 0 },
  config: { epoch: 1, members: [0, 1, 2] },
  fenceEpoch: 0,
  commit,
});
const entry = (slot: number, value = `v${slot}`, round = 1): Entry => ({
  slot,
  ballot: { round, node: 0 },
  command: { kind: 'kv', client: 'c', seq: slot, op: { type: 'put', key: `k${slot}`, value } },
});
const entries = (from: number, to: number): Entry[] => Array.from({ length: to - from + 1 }, (_, i) => entry(from + i));

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paxos-storage-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function counting(): { fs: WalFs; syncs: () => number; writes: () => number; poolCalls: () => number } {
  let syncs = 0;
  let writes = 0;
  /** Asynchronous (thread-pool) calls: each one is a round trip on the commit path. */
  let poolCalls = 0;
  const wrapped: WalFs = {
    ...fs,
    fdatasyncSync: (fd) => {
      syncs++;
      fs.fdatasyncSync(fd);
    },
    fdatasync: ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      syncs++;
      poolCalls++;
      fs.fdatasync(fd, cb);
    }) as typeof fs.fdatasync,
    writeSync: ((...args: Parameters<typeof fs.writeSync>) => {
      writes++;
      return (fs.writeSync as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync,
    write: ((...args: unknown[]) => {
      writes++;
      poolCalls++;
      return (fs.write as (...a: unknown[]) => void)(...args);
    }) as typeof fs.write,
  };
  return { fs: wrapped, syncs: () => syncs, writes: () => writes, poolCalls: () => poolCalls };
}

function fresh(options = {}): Storage {
  const { storage, state } = Storage.open(dir, options);
  expect(state).toBeUndefined();
  storage.initialize(hard(0));
  return storage;
}

const lastSegment = (): string => {
  const names = fs.readdirSync(path.join(dir, 'wal')).filter((n) => n.endsWith('.log')).sort();
  return path.join(dir, 'wal', names.at(-1) as string);
};

describe('crc32', () => {
  it('native and portable implementations agree', () => {
    const data = Buffer.from('123456789');
    expect(crc32Portable(data)).toBe(0xcbf43926);
    expect(crc32(data)).toBe(0xcbf43926);
    const random = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff));
    expect(crc32(random)).toBe(crc32Portable(random));
  });
});

describe('Storage', () => {
  it('round-trips hard state and entries; a later entry for a slot wins', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(1), entries: entries(1, 3), mustSync: true });
    await storage.persist({ hardState: hard(2, 2), entries: [entry(3, 'replaced', 2), entry(4)], mustSync: true });
    await storage.close();
    const { state } = Storage.open(dir);
    expect(state?.hard).toEqual(hard(2, 2));
    expect(state?.entries.map((e) => e.slot)).toEqual([1, 2, 3, 4]);
    expect(state?.entries[2]).toEqual(entry(3, 'replaced', 2));
    expect(state?.snapshot).toBeUndefined();
  });

  it('group commit: one Ready is one write and one fdatasync, however many entries', async () => {
    const c = counting();
    const storage = fresh({ fs: c.fs });
    const [syncs0, writes0] = [c.syncs(), c.writes()];
    await storage.persist({ hardState: hard(1), entries: entries(1, 500), mustSync: true });
    expect(c.syncs() - syncs0).toBe(1);
    expect(c.writes() - writes0).toBe(1);
    await storage.persist({ entries: entries(501, 510), mustSync: false });
    expect(c.syncs() - syncs0).toBe(1);
    await storage.persist({ entries: [], mustSync: true }); // the unsynced batch above gets synced now
    expect(c.syncs() - syncs0).toBe(2);
    await storage.persist({ entries: [], mustSync: true }); // nothing dirty: no sync
    expect(c.syncs() - syncs0).toBe(2);
    await storage.close();
  });

  it('a synced append is one thread-pool round trip (the fdatasync); the write is inline', async () => {
    const c = counting();
    const storage = fresh({ fs: c.fs });
    const pool0 = c.poolCalls();
    await storage.persist({ hardState: hard(1), entries: entries(1, 3), mustSync: true });
    expect(c.poolCalls() - pool0).toBe(1);
    await storage.persist({ hardState: hard(2), entries: [], mustSync: false });
    expect(c.poolCalls() - pool0).toBe(1);
    await storage.close();
    expect(Storage.open(dir).state?.hard).toEqual(hard(2));
  });

  it('truncates a torn tail with a warning and keeps appending after it', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(1), entries: entries(1, 2), mustSync: true });
    await storage.persist({ entries: entries(3, 4), mustSync: true });
    await storage.close();
    const file = lastSegment();
    const size = fs.statSync(file).size;
    fs.truncateSync(file, size - 5); // the last write was cut short
    const warnings: object[] = [];
    const logger = { warn: (o: object) => warnings.push(o), info: () => undefined };
    const reopened = Storage.open(dir, { logger });
    expect(warnings).toHaveLength(1);
    expect(reopened.state?.entries.map((e) => e.slot)).toEqual([1, 2]);
    await reopened.storage.persist({ entries: [entry(3, 'again')], mustSync: true });
    await reopened.storage.close();
    const again = Storage.open(dir, { logger });
    expect(warnings).toHaveLength(1);
    expect(again.state?.entries.map((e) => e.command)).toContainEqual(entry(3, 'again').command);
    await again.storage.close();
  });

  it('treats zero-filled garbage at the end as a torn tail', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(1), entries: entries(1, 2), mustSync: true });
    await storage.close();
    fs.appendFileSync(lastSegment(), Buffer.alloc(4096));
    const { state, storage: s2 } = Storage.open(dir);
    expect(state?.entries).toHaveLength(2);
    await s2.close();
  });

  it('refuses to open when a record in the middle is corrupt, naming file and offset', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(1), entries: entries(1, 2), mustSync: true });
    await storage.persist({ entries: entries(3, 4), mustSync: true });
    await storage.persist({ entries: entries(5, 6), mustSync: true });
    await storage.close();
    const file = lastSegment();
    const buf = fs.readFileSync(file);
    // Find the second entries frame and flip a payload byte in it.
    let offset = 8;
    const frames: number[] = [];
    while (offset < buf.length) {
      frames.push(offset);
      offset += FRAME_HEADER_BYTES + buf.readUInt32LE(offset);
    }
    const victim = frames[2] as number;
    const at = victim + FRAME_HEADER_BYTES + 3;
    buf[at] = (buf[at] as number) ^ 0xff;
    fs.writeFileSync(file, buf);
    let error: unknown;
    try {
      Storage.open(dir);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe(file);
    expect((error as CorruptLogError).offset).toBe(victim);
  });

  it('detects a corrupt length field in the middle too', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(1), entries: entries(1, 2), mustSync: true });
    await storage.persist({ entries: entries(3, 4), mustSync: true });
    await storage.close();
    const file = lastSegment();
    const buf = fs.readFileSync(file);
    buf.writeUInt32LE(0x7fffffff, 8); // the preamble's length
    fs.writeFileSync(file, buf);
    expect(() => Storage.open(dir)).toThrow(CorruptLogError);
  });

  it('snapshot + compaction + restart: old segments and snapshots are dropped', async () => {
    const storage = fresh({ segmentBytesMax: 2048 });
    for (let i = 0; i < 20; i++) await storage.persist({ hardState: hard(i * 5 + 5), entries: entries(i * 5 + 1, i * 5 + 5), mustSync: true });
    const before = storage.segments.length;
    expect(before).toBeGreaterThan(3);
    const snap1: Snapshot = { index: 50, config: { epoch: 1, members: [0, 1, 2] }, data: '{"s":50}' };
    await storage.saveSnapshot(snap1);
    expect(storage.segments.length).toBeLessThan(before);
    const snap2: Snapshot = { ...snap1, index: 90, data: '{"s":90}' };
    await storage.saveSnapshot(snap2);
    await storage.persist({ entries: entries(101, 102), mustSync: true });
    await storage.close();
    expect(fs.readdirSync(path.join(dir, 'snap'))).toEqual([snapshotName(90)]);
    const { state, storage: s2 } = Storage.open(dir);
    expect(state?.snapshot).toEqual(snap2);
    expect(state?.entries.map((e) => e.slot)).toEqual([91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102]);
    expect(state?.hard.commit).toBe(100);
    await s2.close();
  });

  it('writes a snapshot given in parts as the bytes of the whole: a header line, then JSON.stringify of the snapshot', async () => {
    const config = { epoch: 2, members: [0, 1, 2] };
    const data = '{"a":"quote \\" nl \\n tab\t 😀 € \u0001","b":[1,2]}';
    const cut = data.indexOf('tab');
    const expected = (index: number): Buffer => {
      const body = Buffer.from(JSON.stringify({ index, config, data }), 'utf8');
      return Buffer.concat([Buffer.from(`${JSON.stringify({ v: 1, bytes: body.length, crc: crc32(body) })}\n`, 'utf8'), body]);
    };
    const storage = fresh();
    await storage.persist({ hardState: hard(3), entries: entries(1, 3), mustSync: true });
    await storage.saveSnapshot({ index: 2, config, data: [data.slice(0, 5), data.slice(5, cut), '', data.slice(cut)] });
    expect(fs.readFileSync(path.join(dir, 'snap', snapshotName(2)))).toEqual(expected(2));
    expect(storage.snapshotBytes).toBe(expected(2).length);
    // A peer's snapshot (in a Ready) is written the same way.
    await storage.persist({ hardState: hard(9), snapshot: { index: 9, config, data }, entries: [], mustSync: true });
    expect(fs.readFileSync(path.join(dir, 'snap', snapshotName(9)))).toEqual(expected(9));
    await storage.close();
    const { state, storage: s2 } = Storage.open(dir);
    expect(state?.snapshot).toEqual({ index: 9, config, data });
    await s2.close();
  });

  it('serves the newest snapshot data to a peer: from memory while it is written, then from its file', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(10), entries: entries(1, 10), mustSync: true });
    expect(storage.snapshotData(0)).toBeUndefined();
    const snap: Snapshot = { index: 6, config: { epoch: 1, members: [0, 1, 2] }, data: '{"six":"\\"quoted\\""}' };
    const saving = storage.saveSnapshot(snap);
    expect(storage.snapshotData(6)).toBe(snap.data); // before the file exists
    await saving;
    // Now read back from the file: what the file holds, not the object handed in.
    const file = path.join(dir, 'snap', snapshotName(6));
    expect(fs.existsSync(file)).toBe(true);
    expect(storage.snapshotData(6)).toBe(snap.data);
    expect(storage.snapshotData(5)).toBeUndefined();
    const fromPeer: Snapshot = { ...snap, index: 20, data: 'twenty' };
    const installing = storage.persist({ hardState: hard(20), snapshot: fromPeer, entries: [], mustSync: true });
    expect(storage.snapshotData(20)).toBe('twenty');
    await installing;
    expect(storage.snapshotData(20)).toBe('twenty');
    expect(storage.snapshotData(6)).toBeUndefined(); // superseded and deleted
    await storage.close();
    const { storage: s2 } = Storage.open(dir);
    expect(s2.snapshotData(20)).toBe('twenty');
    fs.writeFileSync(path.join(dir, 'snap', snapshotName(20)), 'damaged');
    expect(s2.snapshotData(20)).toBeUndefined();
    await s2.close();
  });

  it("encodes a frozen store's snapshot a part per event-loop turn, while entries go on being applied; a peer asking meanwhile gets it at once", async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(10), entries: entries(1, 10), mustSync: true });
    const kv = new KvStore();
    for (const e of entries(1, 300)) kv.apply(e);
    const atFreeze = kv.snapshot();
    const parts = kv.freeze(500); // many small parts
    const saving = storage.saveSnapshot({ index: 300, config: { epoch: 1, members: [0, 1, 2] }, data: parts });
    // The call returned with the store still frozen: encoding goes on in later turns.
    expect(kv.frozen).toBe(true);
    kv.apply(entry(301, 'after the freeze'));
    await new Promise((r) => setImmediate(r));
    expect(kv.frozen).toBe(true);
    expect(kv.get('k301')).toBe('after the freeze');
    // A peer needs it now: finished on the spot, as of the freeze.
    expect(storage.snapshotData(300)).toBe(atFreeze);
    expect(kv.frozen).toBe(false);
    await saving;
    expect(storage.snapshotData(300)).toBe(atFreeze);
    await storage.close();
  });

  it('a frozen store thaws when storage refuses its snapshot', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(10), entries: entries(1, 10), mustSync: true });
    await storage.saveSnapshot({ index: 8, config: { epoch: 1, members: [0, 1, 2] }, data: 'eight' });
    const kv = new KvStore();
    for (const e of entries(1, 5)) kv.apply(e);
    await storage.saveSnapshot({ index: 5, config: { epoch: 1, members: [0, 1, 2] }, data: kv.freeze() }); // older than the one on disk
    expect(kv.frozen).toBe(false);
    await storage.close();
  });

  it('a snapshot in a Ready (from a peer) is installed before the batch is appended', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(3), entries: entries(1, 3), mustSync: true });
    const snap: Snapshot = { index: 40, config: { epoch: 2, members: [0, 1, 2] }, data: 'x' };
    await storage.persist({ hardState: hard(40), snapshot: snap, entries: [entry(41)], mustSync: true });
    await storage.close();
    const { state, storage: s2 } = Storage.open(dir);
    expect(state?.snapshot).toEqual(snap);
    expect(state?.entries.map((e) => e.slot)).toEqual([41]);
    await s2.close();
  });

  it('a crash before the snapshot rename leaves the previous snapshot and full log in force', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(10), entries: entries(1, 10), mustSync: true });
    await storage.saveSnapshot({ index: 5, config: { epoch: 1, members: [0, 1, 2] }, data: 'five' });
    await storage.persist({ entries: entries(11, 12), mustSync: true });
    await storage.close();
    // Crash in the middle of writing the next snapshot: the rename never happens.
    const crashing: WalFs = {
      ...fs,
      renameSync: (from, to) => {
        if (String(to).includes('snapshot-')) throw new Error('crash');
        fs.renameSync(from, to);
      },
    };
    const { storage: s2 } = Storage.open(dir, { fs: crashing });
    await expect(s2.saveSnapshot({ index: 12, config: { epoch: 1, members: [0, 1, 2] }, data: 'twelve' })).rejects.toThrow('crash');
    expect(fs.readdirSync(path.join(dir, 'snap')).some((n) => n.endsWith('.tmp'))).toBe(true);
    const { state, storage: s3 } = Storage.open(dir);
    expect(state?.snapshot?.data).toBe('five');
    expect(state?.entries.map((e) => e.slot)).toEqual([6, 7, 8, 9, 10, 11, 12]);
    expect(fs.readdirSync(path.join(dir, 'snap'))).toEqual([snapshotName(5)]); // the temp file is gone
    await s3.close();
  });

  it('a crash after the rename but before segments are dropped recovers from the new snapshot', async () => {
    const storage = fresh();
    await storage.persist({ hardState: hard(10), entries: entries(1, 10), mustSync: true });
    await storage.close();
    const crashing: WalFs = {
      ...fs,
      openSync: ((...args: Parameters<typeof fs.openSync>) => {
        if (String(args[0]).endsWith('.log.tmp')) throw new Error('crash'); // the roll after the rename
        return fs.openSync(...args);
      }) as typeof fs.openSync,
    };
    const { storage: s2 } = Storage.open(dir, { fs: crashing });
    await expect(s2.saveSnapshot({ index: 8, config: { epoch: 1, members: [0, 1, 2] }, data: 'eight' })).rejects.toThrow('crash');
    const { state, storage: s3 } = Storage.open(dir);
    expect(state?.snapshot?.index).toBe(8);
    expect(state?.entries.map((e) => e.slot)).toEqual([9, 10]);
    await s3.close();
  });

  it('refuses a directory whose segments have a gap', async () => {
    const storage = fresh({ segmentBytesMax: 512 });
    for (let i = 0; i < 10; i++) await storage.persist({ entries: entries(i * 3 + 1, i * 3 + 3), mustSync: true });
    await storage.close();
    const segs = fs.readdirSync(path.join(dir, 'wal')).sort();
    expect(segs.length).toBeGreaterThan(2);
    fs.rmSync(path.join(dir, 'wal', segmentName(2)));
    expect(() => Storage.open(dir)).toThrow(CorruptLogError);
  });

  it('runs persists and a snapshot issued back to back in order, one append at a time', async () => {
    const storage = fresh({ segmentBytesMax: 1024 });
    const done = [
      storage.persist({ hardState: hard(2), entries: entries(1, 2), mustSync: true }),
      storage.persist({ entries: entries(3, 8), mustSync: true }),
      storage.saveSnapshot({ index: 4, config: { epoch: 1, members: [0, 1, 2] }, data: 'four' }),
      storage.persist({ hardState: hard(9), entries: entries(9, 12), mustSync: true }),
    ];
    await Promise.all(done);
    expect(storage.snapshotAt).toBe(4);
    expect(storage.snapshotBytes).toBe(fs.statSync(path.join(dir, 'snap', snapshotName(4))).size);
    await storage.close();
    const { state, storage: s2 } = Storage.open(dir);
    expect(state?.hard.commit).toBe(9);
    expect(state?.entries.map((e) => e.slot)).toEqual([5, 6, 7, 8, 9, 10, 11, 12]);
    expect(s2.snapshotBytes).toBe(storage.snapshotBytes);
    expect(s2.logBytesSinceSnapshot).toBeGreaterThan(0);
    await s2.close();
  });

  it('a failed fdatasync poisons storage: later writes fail too and close does not retry the sync', async () => {
    let failNext = false;
    let syncs = 0;
    const flaky: WalFs = {
      ...fs,
      fdatasync: ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
        syncs++;
        if (failNext) cb(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
        else fs.fdatasync(fd, cb);
      }) as typeof fs.fdatasync,
      fdatasyncSync: (fd) => {
        syncs++;
        fs.fdatasyncSync(fd);
      },
    };
    const storage = fresh({ fs: flaky });
    await storage.persist({ hardState: hard(1), entries: entries(1, 2), mustSync: true });
    failNext = true;
    await expect(storage.persist({ entries: entries(3, 4), mustSync: true })).rejects.toThrow('EIO');
    failNext = false;
    const after = syncs;
    await expect(storage.persist({ entries: entries(5, 6), mustSync: true })).rejects.toThrow('EIO');
    await expect(storage.saveSnapshot({ index: 2, config: { epoch: 1, members: [0, 1, 2] }, data: 'two' })).rejects.toThrow('EIO');
    await storage.close();
    expect(syncs).toBe(after);
  });
});
