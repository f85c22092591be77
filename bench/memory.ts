/**
 * `node --expose-gc --import tsx bench/memory.ts [--writes N] [--concurrency C] [--heap-snapshot]`:
 * where a node's memory goes under the benchmark's write load, measured in-process.
 *
 * One single-member node (the real Replica, Storage in a temporary directory and Driver, with
 * the default snapshot policy) takes N puts of random unique keys with 256-byte values from C
 * closed-loop lanes, as bench/load.ts sends them. Every value is a fresh string, as the gRPC
 * decoder hands it over. Prints one JSON line: process.memoryUsage() after a full GC at
 * checkpoints and at the end, the live sizes of the main structures, and bytes per key.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import pino from 'pino';
import { KvStore } from '../node/src/core/kv.js';
import { AcceptorLog } from '../node/src/core/log.js';
import { Replica, freshState, replicaOptions } from '../node/src/core/replica.js';
import type { Entry } from '../node/src/core/types.js';
import { Driver } from '../node/src/io/driver.js';
import { Storage } from '../node/src/io/storage.js';

const { values: args } = parseArgs({
  options: {
    writes: { type: 'string', default: '200000' },
    concurrency: { type: 'string', default: '64' },
    'value-bytes': { type: 'string', default: '256' },
    'heap-snapshot': { type: 'boolean', default: false },
  },
  strict: true,
});
const WRITES = Number(args.writes);
const CONCURRENCY = Number(args.concurrency);
const VALUE_BYTES = Number(args['value-bytes']);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const MB = (n: number): number => Math.round((n / 1024 / 1024) * 10) / 10;

interface Usage {
  rssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
  arrayBuffersMb: number;
}

function usage(): Usage {
  for (let i = 0; i < 3; i++) gc?.();
  const m = process.memoryUsage();
  return { rssMb: MB(m.rss), heapUsedMb: MB(m.heapUsed), heapTotalMb: MB(m.heapTotal), externalMb: MB(m.external), arrayBuffersMb: MB(m.arrayBuffers) };
}

/** A fresh copy of `s`, as a decoder produces one per message. */
const fresh = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const VALUE = Array.from(randomBytes(VALUE_BYTES), (b) => alphabet[b % alphabet.length]).join('');
const newKey = (): string => `bench/${randomBytes(8).toString('hex')}`;

/** Live heap bytes per item of a structure built alone (after a full GC). */
function perItem(n: number, build: (n: number) => unknown): number {
  const before = usage().heapUsedMb;
  const keep = build(n);
  const after = usage().heapUsedMb;
  void keep;
  return Math.round(((after - before) * 1024 * 1024) / n);
}

function kvEntry(slot: number, client: string, seq: number): Entry {
  return { slot, ballot: { round: 1, node: 0 }, command: { kind: 'kv', client: fresh(client), seq, op: { type: 'put', key: newKey(), value: fresh(VALUE) } } };
}

async function main(): Promise<void> {
  const base = usage();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paxos-mem-'));
  const config = { epoch: 1, members: [0] };
  const { storage } = Storage.open(dir);
  const state = storage.initialize(freshState(config).hard);
  const replica = new Replica(replicaOptions({ id: 0, random: Math.random, snapshotData: (index) => storage.snapshotData(index) }), state);
  const driver = new Driver({
    replica,
    storage,
    state,
    sink: { send: () => undefined },
    logger: pino({ level: 'warn' }),
    limits: { maxPendingRequests: 100_000, requestTimeoutMs: 30_000, snapshotThreshold: 10_000 },
    clientAddress: () => undefined,
    onFatal: (err) => {
      throw err;
    },
  });
  const ticker = setInterval(() => driver.tick(), 10);
  while (driver.status.role !== 'leader') await new Promise((r) => setTimeout(r, 10));

  const checkpoints: Array<Record<string, number>> = [];
  const every = Math.max(1, Math.floor(WRITES / 4));
  let started_ = 0;
  let done = 0;
  let peakRss = 0;
  const client = randomUUID();
  const started = performance.now();
  const lane = async (i: number): Promise<void> => {
    let seq = 0;
    const session = `${client}/${i}`;
    while (started_ < WRITES) {
      started_++;
      await driver.submit(fresh(session), ++seq, { type: 'put', key: newKey(), value: fresh(VALUE) });
      if (++done % every === 0) {
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        checkpoints.push({ writes: done, rssMb: MB(process.memoryUsage().rss), heapUsedMb: MB(process.memoryUsage().heapUsed) });
      }
    }
  };
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => lane(i)));
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  // Let a snapshot in progress finish (without forcing one: the log is measured as the policy left it).
  await new Promise((r) => setTimeout(r, 500));

  const status = replica.status();
  const log = (replica as unknown as { log: AcceptorLog }).log;
  const snapData = (log.snapshot as { data?: unknown } | undefined)?.data;
  const end = usage();
  if (args['heap-snapshot']) process.stderr.write(`heap snapshot: ${writeHeapSnapshot(path.join(dir, 'end.heapsnapshot'))}\n`);
  clearInterval(ticker);
  await driver.stop();

  const keys = driver.store.size;
  const result = {
    writes: WRITES,
    concurrency: CONCURRENCY,
    seconds: Math.round(seconds * 10) / 10,
    keys,
    baseline: base,
    checkpoints,
    peakRssMb: MB(peakRss),
    end,
    logEntriesInMemory: status.lastSlot - status.snapshotIndex,
    snapshotIndex: status.snapshotIndex,
    snapshotDataInMemoryMb: MB(typeof snapData === 'string' ? snapData.length : 0),
    snapshotFileMb: MB(storage.snapshotBytes),
    heapPerKeyBytes: Math.round(((end.heapUsedMb - base.heapUsedMb) * 1024 * 1024) / keys),
    rssPerKeyBytes: Math.round(((end.rssMb - base.rssMb) * 1024 * 1024) / keys),
    perItemHeapBytes: {
      kvStoreKey: perItem(50_000, (n) => {
        const kv = new KvStore();
        for (let s = 1; s <= n; s++) kv.apply(kvEntry(s, `${client}/${s % 64}`, s));
        return kv;
      }),
      logEntry: perItem(50_000, (n) => {
        const l = new AcceptorLog(undefined, []);
        for (let s = 1; s <= n; s++) l.put(kvEntry(s, `${client}/${s % 64}`, s));
        return l;
      }),
    },
  };
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`memory: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
