/**
 * The driver against a scripted fake replica: batching, the Ready order, and how pending
 * client requests are settled.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type { AdminResult, Command, Entry, Message, PersistedState, Ready, ReplicaApi, ReplicaStatus } from '../core/types.js';
import { Driver } from './driver.js';
import { BusyError, NotLeaderError, OutcomeUnknownError } from './errors.js';
import { Storage } from './storage.js';

const config = { epoch: 1, members: [0, 1, 2] };
const ballot = { round: 1, node: 0 };

/** A replica whose outputs the test scripts. */
class FakeReplica implements ReplicaApi {
  role: ReplicaStatus['role'] = 'leader';
  leader: number | undefined = 0;
  proposals: Command[][] = [];
  nextSlot = 1;
  queued: Partial<Ready> | undefined;
  log: string[] = [];
  reads: number[] = [];
  tick(): void {}
  step(): void {}
  propose(commands: readonly Command[]) {
    if (this.role !== 'leader') return { ok: false as const, reason: 'notLeader' as const, leader: this.leader };
    this.proposals.push([...commands]);
    const firstSlot = this.nextSlot;
    this.nextSlot += commands.length;
    return { ok: true as const, firstSlot };
  }
  read(id: number) {
    this.reads.push(id);
    return { ok: true as const };
  }
  transferLeadership(): AdminResult {
    return { ok: true };
  }
  convert(): AdminResult {
    return { ok: true };
  }
  finalize(): AdminResult {
    return { ok: true };
  }
  compact(): undefined {
    return undefined;
  }
  hasReady(): boolean {
    return this.queued !== undefined;
  }
  ready(): Ready {
    const q = this.queued ?? {};
    this.queued = undefined;
    return { entries: [], mustSync: false, messages: [], committed: [], readStates: [], droppedReads: [], ...q };
  }
  advance(): void {
    this.log.push('advance');
  }
  status(): ReplicaStatus {
    return {
      id: 0, role: this.role, leader: this.leader, ballot, config, fenceEpoch: 1, commit: 0, applied: 0,
      lastSlot: 0, snapshotIndex: 0, caughtUp: true, lag: {}, transferring: false,
    };
  }
}

const kv = (slot: number, client: string, seq: number, value: string): Entry => ({
  slot,
  ballot,
  command: { kind: 'kv', client, seq, op: { type: 'put', key: 'k', value } },
});
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Driver', () => {
  let dir: string;
  let replica: FakeReplica;
  let driver: Driver;
  let sent: Message[];
  let storage: Storage;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paxos-driver-'));
    const opened = Storage.open(dir);
    storage = opened.storage;
    const state: PersistedState = storage.initialize({ promised: ballot, config, fenceEpoch: 1, commit: 0 });
    replica = new FakeReplica();
    sent = [];
    driver = new Driver({
      replica,
      storage,
      state,
      sink: { send: (m) => sent.push(...m) },
      logger: pino({ level: 'silent' }),
      limits: { maxPendingRequests: 5, requestTimeoutMs: 10_000, snapshotThreshold: 1000 },
      clientAddress: (id) => `node-${id}:7001`,
      onFatal: (err) => {
        throw err;
      },
    });
  });
  afterEach(() => {
    driver.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('proposes everything submitted in one turn as one batch and resolves on apply', async () => {
    const a = driver.submit('c1', 1, { type: 'put', key: 'k', value: 'a' });
    const b = driver.submit('c2', 1, { type: 'put', key: 'k', value: 'b' });
    const again = driver.submit('c1', 1, { type: 'put', key: 'k', value: 'a' }); // a retry joins
    await turn();
    expect(replica.proposals).toHaveLength(1);
    expect(replica.proposals[0]).toHaveLength(2);
    replica.queued = { entries: [kv(1, 'c1', 1, 'a'), kv(2, 'c2', 1, 'b')], mustSync: true, committed: [kv(1, 'c1', 1, 'a'), kv(2, 'c2', 1, 'b')] };
    driver.receive({ from: 1, to: 0, epoch: 1, type: 'timeoutNow' });
    expect(await a).toEqual({ ok: true, value: null });
    expect(await again).toEqual({ ok: true, value: null });
    expect(await b).toEqual({ ok: true, value: 'a' });
    expect(storage.syncCount).toBe(2); // one at initialize, one for the whole Ready
  });

  it('fails a proposal whose slot chose another command, retryably', async () => {
    const p = driver.submit('c1', 1, { type: 'put', key: 'k', value: 'mine' });
    await turn();
    replica.queued = { committed: [kv(1, 'other', 7, 'theirs')] };
    driver.receive({ from: 1, to: 0, epoch: 1, type: 'timeoutNow' });
    await expect(p).rejects.toBeInstanceOf(OutcomeUnknownError);
  });

  it('fails pending proposals with NOT_LEADER and a hint when leadership is lost', async () => {
    const p = driver.submit('c1', 1, { type: 'put', key: 'k', value: 'v' });
    await turn();
    replica.role = 'follower';
    replica.leader = 2;
    replica.queued = {};
    driver.receive({ from: 2, to: 0, epoch: 1, type: 'timeoutNow' });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotLeaderError);
    expect(err).toMatchObject({ leader: 2, leaderAddr: 'node-2:7001' });
  });

  it('refuses beyond the pending bound with BusyError', async () => {
    const ps = Array.from({ length: 5 }, (_, i) => driver.submit('c', i + 1, { type: 'get', key: 'k' }));
    await expect(driver.submit('c', 99, { type: 'get', key: 'k' })).rejects.toBeInstanceOf(BusyError);
    driver.stop();
    await Promise.allSettled(ps);
  });

  it('serves a read once its index is applied, not before', async () => {
    const r = driver.get('k');
    await turn();
    let done = false;
    void r.then(() => (done = true));
    replica.queued = { readStates: [{ id: replica.reads[0] as number, index: 1 }] };
    driver.receive({ from: 1, to: 0, epoch: 1, type: 'timeoutNow' });
    await turn();
    expect(done).toBe(false);
    replica.queued = { committed: [kv(1, 'c', 1, 'v1')] };
    driver.receive({ from: 1, to: 0, epoch: 1, type: 'timeoutNow' });
    expect(await r).toBe('v1');
  });

  it('persists before sending: a Ready is on disk when its messages go out', async () => {
    const msg: Message = { from: 0, to: 1, epoch: 1, type: 'timeoutNow' };
    replica.queued = { entries: [kv(1, 'c', 1, 'x')], mustSync: true, messages: [msg] };
    let onDisk = -1;
    const realSend = sent;
    driver = new Driver({
      replica,
      storage,
      state: { hard: { promised: ballot, config, fenceEpoch: 1, commit: 0 }, entries: [] },
      sink: {
        send: (m) => {
          if (m.length > 0) onDisk = storage.syncCount;
          realSend.push(...m);
        },
      },
      logger: pino({ level: 'silent' }),
      limits: { maxPendingRequests: 5, requestTimeoutMs: 10_000, snapshotThreshold: 1000 },
      clientAddress: () => undefined,
      onFatal: (err) => {
        throw err;
      },
    });
    driver.receive(msg);
    await turn();
    expect(onDisk).toBe(2);
    expect(sent).toEqual([msg]);
  });
});
