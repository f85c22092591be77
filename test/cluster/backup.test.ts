/**
 * Backup and restore with real node processes (issue 13, the core slice): a consistent backup
 * (`paxosctl snapshot save`) taken from a 3-node quorum under continuous writes, restored into a
 * fresh 3-node quorum with `--restore-from`, and damaged files refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jest } from '@jest/globals';
import { PaxosClient, PaxosClientError } from '../../node/src/client/index.js';
import { run } from '../../node/src/cli/paxosctl.js';
import { KvStore } from '../../node/src/core/kv.js';
import type { Config } from '../../node/src/core/types.js';
import { readBackupFile, verifyBackupFile } from '../../node/src/io/backup-file.js';
import { ProcessCluster, until } from './harness.js';

jest.setTimeout(400_000);

const CONFIG3: Config = { epoch: 1, members: [0, 1, 2] };
const IDS = [0, 1, 2];
const BULK = 3_000;
const WRITERS = 4;
const KEYS_PER_WRITER = 50;

/** paxosctl in-process against `cluster`, with the given holder's certificate. */
async function paxosctl(cluster: ProcessCluster, holder: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const files = cluster.pki?.files(holder);
  const tls = files ? ['--cacert', files.ca, '--cert', files.cert, '--key', files.key] : [];
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(['--endpoints', cluster.endpoints(IDS).join(','), ...tls, ...args], {}, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Writers that each own a set of keys and write increasing numbers to them, round robin. */
class Writers {
  /** Highest value acknowledged per key. */
  readonly acked = new Map<string, number>();
  /** Highest value sent per key (acknowledged or not). */
  readonly sent = new Map<string, number>();
  private stopped = false;
  private readonly loops: Array<Promise<void>>;
  errors = 0;
  /** Writes acknowledged so far. */
  ackCount = 0;

  constructor(client: PaxosClient) {
    this.loops = Array.from({ length: WRITERS }, async (_, w) => {
      for (let seq = 1; !this.stopped && seq < 1_000_000; seq++) {
        const key = `w${w}/${seq % KEYS_PER_WRITER}`;
        this.sent.set(key, seq);
        try {
          await client.put(key, String(seq));
          this.acked.set(key, seq);
          this.ackCount++;
        } catch {
          this.errors++;
        }
      }
    });
  }


  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

describe('process cluster: backup and restore', () => {
  let source: ProcessCluster;
  let target: ProcessCluster | undefined;
  let client: PaxosClient | undefined;
  let restoredClient: PaxosClient | undefined;
  let writers: Writers | undefined;

  beforeAll(async () => {
    source = await ProcessCluster.create({ capacity: 3, flags: ['--snapshot-threshold', '2000'] });
    for (const id of IDS) source.start(id, CONFIG3);
    await source.waitStable(IDS);
    client = new PaxosClient({ endpoints: source.endpoints(IDS), deadlineMs: 20_000, ...source.clientCredentials() });
  });

  afterAll(async () => {
    await writers?.stop();
    client?.close();
    restoredClient?.close();
    await source.destroy();
    await target?.destroy();
  });

  it('backs up during writes, restores into a fresh quorum, refuses damaged files and a used data dir', async () => {
    const c = client as PaxosClient;
    const bulkValue = (i: number): string => `bulk-${i}-${'x'.repeat(64)}`;
    for (let i = 0; i < BULK; i += 200) await Promise.all(Array.from({ length: 200 }, (_, j) => c.put(`bulk/${i + j}`, bulkValue(i + j))));
    await c.delete('bulk/7');

    const w = new Writers(c);
    writers = w;
    // Every writer key written at least once before the backup, so the key count is known.
    await until('every writer key to be written', () => w.acked.size === WRITERS * KEYS_PER_WRITER, 120_000);
    const file = path.join(source.root, 'backup.paxos');

    // Only the operator may read everything.
    const denied = await paxosctl(source, 'client-app', ['snapshot', 'save', path.join(source.root, 'denied.paxos')]);
    expect(denied.err).toMatch(/PERMISSION_DENIED/);
    expect(denied.code).toBe(1);
    expect(fs.existsSync(path.join(source.root, 'denied.paxos'))).toBe(false);
    expect(fs.existsSync(path.join(source.root, 'denied.paxos.tmp'))).toBe(false);

    // A follower refuses (the consistent point is a read through the leader).
    const leader = await source.waitStable(IDS);
    const follower = IDS.find((id) => id !== leader) as number;
    const refused = await source.admin.backup(source.endpoint(follower), () => undefined, 5000).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(PaxosClientError);
    expect((refused as PaxosClientError).codeName).toBe('UNAVAILABLE');

    const ackedBefore = new Map(w.acked);
    const acksBefore = w.ackCount;
    const started = performance.now();
    const saved = await paxosctl(source, 'operator', ['--json', 'snapshot', 'save', file]);
    const backupMs = performance.now() - started;
    const acksDuring = w.ackCount - acksBefore;
    const sentAfter = new Map(w.sent);
    expect(saved.err).toBe('');
    expect(saved.code).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    await w.stop();
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);

    const summary = JSON.parse(saved.out) as { index: number; keys: number; bytes: number; sha256: string; epoch: number; members: number[] };
    const { meta, snapshot } = await readBackupFile(file);
    expect(summary).toMatchObject({ index: meta.index, keys: meta.keys, sha256: meta.sha256, epoch: 1, members: [0, 1, 2] });
    expect(summary.bytes).toBe(fs.statSync(file).size);
    const kv = KvStore.restore(snapshot.data);
    expect(kv.applied).toBe(meta.index);
    expect(kv.size).toBe(meta.keys);
    expect(meta.keys).toBe(BULK - 1 + WRITERS * KEYS_PER_WRITER);
    for (let i = 0; i < BULK; i++) expect(kv.get(`bulk/${i}`)).toBe(i === 7 ? undefined : bulkValue(i));
    // Every write acknowledged before the backup started is in it, with the value it had at the
    // backup's index: at least the one acknowledged before, at most one sent before it ended.
    for (const [key, v] of ackedBefore) {
      const inBackup = Number(kv.get(key));
      expect(inBackup).toBeGreaterThanOrEqual(v);
      expect(inBackup).toBeLessThanOrEqual(sentAfter.get(key) as number);
    }
    expect((await paxosctl(source, 'operator', ['snapshot', 'verify', file])).code).toBe(0);

    // Restore into a fresh quorum (4 slots: the 4th for the refusals below).
    target = await ProcessCluster.create({ capacity: 4 });
    const restoreStarted = performance.now();
    for (const id of IDS) target.start(id, CONFIG3, ['--restore-from', file]);
    await target.waitStable(IDS);
    const restoreMs = performance.now() - restoreStarted;
    restoredClient = new PaxosClient({ endpoints: target.endpoints(IDS), deadlineMs: 20_000, ...target.clientCredentials() });
    const rc = restoredClient;
    const all = await rc.range('', 1_000_000);
    expect(all.length).toBe(meta.keys);
    for (const { key, value } of all) expect(value).toBe(kv.get(key));
    for (const [key, v] of ackedBefore) expect(Number(await rc.get(key))).toBeGreaterThanOrEqual(v);
    await rc.put('after-restore', 'yes');
    expect(await rc.get('after-restore')).toBe('yes');
    const st = await target.status(0);
    expect(st?.config).toEqual(CONFIG3);
    expect(st?.snapshotIndex).toBeGreaterThanOrEqual(meta.index);

    // A data dir that holds data is refused, and left as it was.
    const exit0 = await target.stop(0);
    expect(exit0.code).toBe(0);
    target.start(0, CONFIG3, ['--restore-from', file]);
    const again = await target.exited(0);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already holds data/);
    target.start(0, CONFIG3);
    await target.waitStable(IDS);
    expect(await rc.get('after-restore')).toBe('yes');

    // A corrupted file (one byte changed in the data) and a truncated one are refused before
    // anything is written.
    const corrupt = path.join(target.root, 'corrupt.paxos');
    const bytes = fs.readFileSync(file);
    const flipped = Buffer.from(bytes);
    const at = Math.floor(meta.bytes / 2);
    flipped[at] = (flipped[at] as number) ^ 0x01;
    fs.writeFileSync(corrupt, flipped);
    const truncated = path.join(target.root, 'truncated.paxos');
    fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
    for (const [bad, why] of [[corrupt, /checksum mismatch/], [truncated, /truncated/]] as const) {
      await expect(verifyBackupFile(bad)).rejects.toThrow(why);
      const verified = await paxosctl(target, 'operator', ['snapshot', 'verify', bad]);
      expect(verified.code).toBe(1);
      expect(verified.err).toMatch(why);
      target.start(3, CONFIG3, ['--restore-from', bad]);
      const exit = await target.exited(3);
      expect(exit.code).toBe(2);
      expect(exit.stderr).toMatch(why);
      const dir = target.dataDir(3);
      expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
    }

    process.stdout.write(
      `${JSON.stringify({ backup: { keys: meta.keys, bytes: summary.bytes, backup_ms: Math.round(backupMs), acks_during_backup: acksDuring, restore_ms: Math.round(restoreMs), write_errors: w.errors } })}\n`,
    );
  });
});
