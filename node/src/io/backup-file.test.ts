import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KvStore } from '../core/kv.js';
import { freshState } from '../core/replica.js';
import { BackupFileError, encodeTrailer, readBackupFile, verifyBackupFile } from './backup-file.js';
import { Storage } from './storage.js';

/** A real snapshot file (written by Storage) with a trailer: what `paxosctl snapshot save` writes. */
async function backupBytes(dir: string, keys: number): Promise<{ bytes: Buffer; dataBytes: number }> {
  const kv = new KvStore();
  for (let i = 1; i <= keys; i++) kv.apply({ slot: i, ballot: { round: 1, node: 0 }, command: { kind: 'kv', client: 'c', seq: i, op: { type: 'put', key: `k${i}`, value: `v${i}\n"quoted"` } } });
  const config = { epoch: 1, members: [0, 1, 2] };
  const { storage } = Storage.open(dir);
  storage.initializeFromSnapshot(freshState(config).hard, { index: keys, config, data: kv.snapshot() });
  const data = fs.readFileSync(storage.snapshotPath(keys));
  await storage.close();
  const sha256 = createHash('sha256').update(data).digest('hex');
  const trailer = encodeTrailer({ index: keys, epoch: 1, members: [0, 1, 2], nodeVersion: 'test', keys, bytes: data.length, sha256 });
  return { bytes: Buffer.concat([data, trailer]), dataBytes: data.length };
}

describe('backup file', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backup-file-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, b: Buffer): string => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, b);
    return f;
  };

  it('verifies and reads back a good file', async () => {
    const { bytes, dataBytes } = await backupBytes(path.join(dir, 'node'), 500);
    const f = write('good.paxos', bytes);
    const meta = await verifyBackupFile(f);
    expect(meta).toMatchObject({ index: 500, keys: 500, bytes: dataBytes, members: [0, 1, 2] });
    const { snapshot } = await readBackupFile(f);
    const kv = KvStore.restore(snapshot.data);
    expect(kv.get('k77')).toBe('v77\n"quoted"');
    expect(kv.size).toBe(500);
  });

  it('refuses a changed byte anywhere in the data, and every truncation', async () => {
    const { bytes, dataBytes } = await backupBytes(path.join(dir, 'node'), 200);
    for (const at of [0, 10, Math.floor(dataBytes / 2), dataBytes - 1]) {
      const b = Buffer.from(bytes);
      b[at] = (b[at] as number) ^ 0x20;
      await expect(verifyBackupFile(write(`flip-${at}`, b))).rejects.toThrow(/checksum mismatch/);
    }
    for (const len of [0, 1, Math.floor(dataBytes / 2), dataBytes, dataBytes + 1, dataBytes + 20, bytes.length - 1]) {
      const err = await verifyBackupFile(write(`cut-${len}`, bytes.subarray(0, len))).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(BackupFileError);
      expect((err as Error).message).toMatch(/truncated/);
    }
    // Data removed from the middle: the trailer no longer starts where it says.
    const shortened = Buffer.concat([bytes.subarray(0, 100), bytes.subarray(110)]);
    await expect(verifyBackupFile(write('shortened', shortened))).rejects.toThrow(/the trailer says \d+ bytes of data but the file holds/);
    await expect(verifyBackupFile(path.join(dir, 'missing'))).rejects.toThrow(/cannot open/);
  });
});
