/**
 * Directed tests of the disk faults the simulator injects, each against the real `Storage`
 * (and, where the driver's reaction matters, the real node in a one-node world) over `SimFs`.
 * Each fails when the node's handling of its fault is removed.
 */
import { describe, expect, it } from '@jest/globals';
import { ZERO_BALLOT, type Entry, type HardState } from '../../node/src/core/types.js';
import { CorruptLogError, DiskFullError, Storage } from '../../node/src/io/storage.js';
import { realReplica } from './core.js';
import { SimDiskError, SimFs } from './fs.js';
import type { NodeReply } from './process.js';
import { Rng } from './rng.js';
import { DEFAULT_WORLD_OPTIONS, World } from './world.js';

const hard: HardState = { promised: ZERO_BALLOT, config: { epoch: 1, members: [0, 1, 2] }, fenceEpoch: 1, commit: 0 };
const entry = (slot: number): Entry => ({ slot, ballot: { round: 1, node: 0 }, command: { kind: 'kv', client: 'c', seq: slot, op: { type: 'put', key: 'k', value: `v${slot}` } } });
const batch = (slots: number[], mustSync = true): { entries: Entry[]; mustSync: boolean } => ({ entries: slots.map(entry), mustSync });
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** One disk, and the processes that open it one after another. */
class Bench {
  readonly disk: SimFs;
  private readonly queue: Array<() => void> = [];
  constructor(seed: number) {
    this.disk = new SimFs(new Rng(seed));
  }
  open(): { storage: Storage; slots: number[]; snapshot: number } {
    const view = this.disk.view((fn) => this.queue.push(fn));
    const nextTurn = (): Promise<void> => new Promise((resolve) => this.queue.push(resolve));
    const { storage, state } = Storage.open('/data', { fs: view.asWalFs(), segmentBytesMax: 4096, nextTurn });
    if (state === undefined) {
      storage.initialize(hard);
      return { storage, slots: [], snapshot: 0 };
    }
    return { storage, slots: state.entries.map((e) => e.slot), snapshot: state.snapshot?.index ?? 0 };
  }
  /** Runs the disk's completions until `p` settles. */
  async wait<T>(p: Promise<T>): Promise<T> {
    let done = false;
    const watched = p.finally(() => {
      done = true;
    });
    watched.catch(() => undefined); // observed by the caller once the loop is done
    for (let i = 0; i < 1000 && !done; i++) {
      await flush();
      for (const fn of this.queue.splice(0)) fn();
    }
    return watched;
  }
}

describe('simulated disk under the real storage', () => {
  it('a write acknowledged after its fdatasync survives a crash; unsynced writes may be lost, never damaged', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const bench = new Bench(seed);
      const { storage } = bench.open();
      await bench.wait(storage.persist(batch([1, 2, 3])));
      void storage.persist(batch([4], false)).catch(() => undefined);
      void storage.persist(batch([5], false)).catch(() => undefined);
      await flush();
      bench.disk.crash();
      const { slots } = bench.open();
      expect(slots.slice(0, 3)).toEqual([1, 2, 3]);
      expect([[1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 5]]).toContainEqual(slots);
    }
  });

  it('a torn last write is dropped on open: the node starts with everything synced, and appends after it', async () => {
    let torn = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const bench = new Bench(seed);
      const { storage } = bench.open();
      await bench.wait(storage.persist(batch([1, 2])));
      void storage.persist(batch([3, 4, 5, 6], false)).catch(() => undefined);
      await flush();
      if (bench.disk.crash().torn) torn++;
      const reopened = bench.open();
      expect(reopened.slots.slice(0, 2)).toEqual([1, 2]);
      await bench.wait(reopened.storage.persist(batch([7])));
      bench.disk.crash();
      expect(bench.open().slots.at(-1)).toBe(7);
    }
    expect(torn).toBeGreaterThan(5);
  });

  it('a failed fdatasync fails the write and every later one: nothing after it is trusted', async () => {
    const bench = new Bench(1);
    const { storage } = bench.open();
    await bench.wait(storage.persist(batch([1])));
    bench.disk.faults.syncFailRate = 1;
    await expect(bench.wait(storage.persist(batch([2])))).rejects.toBeInstanceOf(SimDiskError);
    bench.disk.faults.syncFailRate = 0;
    await expect(bench.wait(storage.persist(batch([3])))).rejects.toBeInstanceOf(SimDiskError);
  });

  it('a bit flipped in the middle of the log makes open refuse to start', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const bench = new Bench(seed);
      const { storage } = bench.open();
      for (let slot = 1; slot <= 6; slot++) await bench.wait(storage.persist(batch([slot])));
      bench.disk.crash();
      const frames = (buf: Buffer): number[] => {
        const out: number[] = [];
        for (let at = 8; at + 9 <= buf.length; at += 9 + buf.readUInt32LE(at)) out.push(at);
        return out;
      };
      expect(bench.disk.flipBit('/data/wal', frames)).toBeDefined();
      expect(() => bench.open()).toThrow(CorruptLogError);
    }
  });

  it('a full disk refuses a write whole (DiskFullError), leaves the log appendable, and the same write succeeds once there is room', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const bench = new Bench(seed);
      const { storage } = bench.open();
      await bench.wait(storage.persist(batch([1])));
      bench.disk.full = true;
      await expect(bench.wait(storage.persist(batch([2, 3])))).rejects.toBeInstanceOf(DiskFullError);
      bench.disk.full = false;
      await bench.wait(storage.persist(batch([2, 3])));
      await bench.wait(storage.persist(batch([4])));
      bench.disk.crash();
      expect(bench.open().slots).toEqual([1, 2, 3, 4]);
    }
  });
});

describe('a snapshot on a full disk', () => {
  it('is refused with DiskFullError, kept in memory for peers, and written by the first log write that finds room', async () => {
    const bench = new Bench(3);
    const { storage } = bench.open();
    for (let slot = 1; slot <= 4; slot++) await bench.wait(storage.persist(batch([slot])));
    bench.disk.full = true;
    await expect(bench.wait(storage.saveSnapshot({ index: 3, config: hard.config, data: '{"state":3}' }))).rejects.toBeInstanceOf(DiskFullError);
    // No second attempt while it waits, and a peer catching up still gets it.
    expect(storage.snapshotAt).toBe(3);
    expect(storage.snapshotData(3)).toBe('{"state":3}');
    bench.disk.crash();
    bench.disk.full = false;
    // Nothing of it reached the disk, and the log below it is still there.
    const afterCrash = bench.open();
    expect(afterCrash).toMatchObject({ slots: [1, 2, 3, 4], snapshot: 0 });
    await expect(bench.wait(afterCrash.storage.saveSnapshot({ index: 3, config: hard.config, data: '{"state":3}' }))).resolves.toBeUndefined();
    const again = bench.open().storage;
    bench.disk.full = true;
    await expect(bench.wait(again.saveSnapshot({ index: 4, config: hard.config, data: '{"state":4}' }))).rejects.toBeInstanceOf(DiskFullError);
    bench.disk.full = false;
    await bench.wait(again.persist(batch([5])));
    bench.disk.crash();
    expect(bench.open()).toMatchObject({ slots: [5], snapshot: 4 });
  });
});

describe('the real node on a failing disk', () => {
  /** A one-node world with a leader, and a client write on it. */
  async function oneNode(): Promise<{ world: World; put: (seq: number) => Promise<NodeReply> }> {
    const options = { ...DEFAULT_WORLD_OPTIONS, node: { ...DEFAULT_WORLD_OPTIONS.node, slowFsyncChance: 0 } };
    const world = new World(new Rng(1), 1, realReplica, undefined, options);
    for (let i = 0; i < 200 && world.leader() === undefined; i++) await world.tick();
    expect(world.leader()?.id).toBe(0);
    const put = async (seq: number): Promise<NodeReply> => {
      let reply: NodeReply | undefined;
      world.node(0)?.propose('c', seq, { type: 'put', key: 'k', value: `v${seq}` }, (r) => (reply = r));
      for (let i = 0; i < 20 && reply === undefined; i++) await world.tick();
      return reply ?? { kind: 'failed', error: 'no answer' };
    };
    return { world, put };
  }

  it('stops the process when an fdatasync fails (as main.ts exits), and the restarted node has every acknowledged write', async () => {
    const { world, put } = await oneNode();
    expect((await put(1)).kind).toBe('result');
    world.setDiskFaults({ syncFailRate: 1 });
    const failed = await put(2);
    expect(failed.kind).not.toBe('result');
    expect(world.node(0)?.up).toBe(false);
    world.setDiskFaults({ syncFailRate: 0 });
    world.restart(0);
    for (let i = 0; i < 200 && world.leader() === undefined; i++) await world.tick();
    expect(world.node(0)?.driver.store.get('k')).toMatch(/^v[12]$/);
    expect(world.agreement.violations).toEqual([]);
  });

  it('on a full disk refuses requests with a clear error and keeps running; once there is room, writes go through', async () => {
    const { world, put } = await oneNode();
    expect((await put(1)).kind).toBe('result');
    world.setDiskFull(0, true);
    const refused = await put(2);
    expect(refused).toEqual({ kind: 'failed', error: expect.stringMatching(/disk full/) });
    const again = await put(3);
    expect(again).toEqual({ kind: 'failed', error: expect.stringMatching(/disk full/) });
    expect(world.node(0)?.up).toBe(true);
    world.setDiskFull(0, false);
    for (let i = 0; i < 30; i++) await world.tick();
    expect(await put(4)).toEqual({ kind: 'result', result: { ok: true, value: expect.anything() } });
    expect(world.node(0)?.up).toBe(true);
    expect(world.agreement.violations).toEqual([]);
  });
});
