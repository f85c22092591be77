/**
 * The backup file (`paxosctl snapshot save`, `paxos-node --restore-from`): the node's snapshot
 * file byte for byte (see storage.ts: a header line with a CRC, then the JSON snapshot), followed
 * by one trailer line:
 *
 *     <data: `bytes` bytes>\n{"paxosBackup":1,"index":…,"epoch":…,"members":[…],"nodeVersion":"…","keys":…,"bytes":…,"sha256":"…"}\n
 *
 * The snapshot body is JSON without raw newlines, so the trailer is the text after the last
 * `\n{"paxosBackup":` and must start exactly at `bytes`. A file cut short loses its trailer (or
 * its length no longer matches); a changed byte changes the SHA-256. See docs/data-dir.md.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Snapshot } from '../core/types.js';
import { decodeSnapshot } from './storage.js';

/** What a backup's trailer says about its data. */
export interface BackupMeta {
  readonly index: number;
  readonly epoch: number;
  readonly members: readonly number[];
  readonly nodeVersion: string;
  readonly keys: number;
  readonly bytes: number;
  /** Lower-case hex SHA-256 of the data. */
  readonly sha256: string;
}

/** A backup file that cannot be used: missing, truncated, corrupted or not a backup. */
export class BackupFileError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`backup file ${file}: ${reason}`);
    this.name = 'BackupFileError';
  }
}

const MARKER = '\n{"paxosBackup":1,';
/** The trailer is read from at most this many bytes at the end of the file. */
const TRAILER_BYTES_MAX = 1 << 20;
/** Read size when hashing a file. */
const READ_BYTES = 1 << 20;

/** The trailer line (with its leading and trailing newline) for `meta`. */
export function encodeTrailer(meta: BackupMeta): Buffer {
  const { index, epoch, members, nodeVersion, keys, bytes, sha256 } = meta;
  return Buffer.from(`\n${JSON.stringify({ paxosBackup: 1, index, epoch, members, nodeVersion, keys, bytes, sha256 })}\n`, 'utf8');
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Parses and checks the trailer of an open file of `size` bytes; throws `BackupFileError`. */
function readTrailer(fd: number, size: number, file: string): BackupMeta {
  const tailBytes = Math.min(size, TRAILER_BYTES_MAX);
  const tail = Buffer.alloc(tailBytes);
  fs.readSync(fd, tail, 0, tailBytes, size - tailBytes);
  const at = tail.lastIndexOf(MARKER);
  if (at < 0 || tail[tail.length - 1] !== 0x0a) throw new BackupFileError(file, 'no backup trailer at the end: the file is truncated or is not a paxosctl backup');
  let t: Record<string, unknown>;
  try {
    t = JSON.parse(tail.subarray(at + 1, tail.length - 1).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new BackupFileError(file, 'the backup trailer is not valid JSON: the file is truncated or damaged');
  }
  const members = t.members;
  if (
    !isCount(t.index) || !isCount(t.epoch) || !isCount(t.keys) || !isCount(t.bytes) || typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256)
    || typeof t.nodeVersion !== 'string' || !Array.isArray(members) || !members.every(isCount)
  ) {
    throw new BackupFileError(file, 'the backup trailer lacks a field or has one of the wrong type');
  }
  const dataEnd = size - tailBytes + at;
  if (dataEnd !== t.bytes) throw new BackupFileError(file, `the trailer says ${t.bytes} bytes of data but the file holds ${dataEnd}: truncated or damaged`);
  return { index: t.index, epoch: t.epoch, members: members as number[], nodeVersion: t.nodeVersion, keys: t.keys, bytes: t.bytes, sha256: t.sha256 };
}

/**
 * Checks a backup file without loading it: the trailer, then the SHA-256 of its data, read a
 * megabyte at a time. Resolves with the trailer; throws `BackupFileError`.
 */
export async function verifyBackupFile(file: string): Promise<BackupMeta> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (err) {
    throw new BackupFileError(file, `cannot open: ${(err as Error).message}`);
  }
  try {
    const { size } = await handle.stat();
    const meta = readTrailer(handle.fd, size, file);
    const hash = createHash('sha256');
    const buf = Buffer.alloc(READ_BYTES);
    let position = 0;
    while (position < meta.bytes) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(READ_BYTES, meta.bytes - position), position);
      if (bytesRead === 0) throw new BackupFileError(file, 'ended while reading its data');
      hash.update(buf.subarray(0, bytesRead));
      position += bytesRead;
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== meta.sha256) throw new BackupFileError(file, `checksum mismatch: the data's SHA-256 is ${sha256}, the trailer says ${meta.sha256}: the file is corrupted`);
    return meta;
  } finally {
    await handle.close();
  }
}

/**
 * Verifies a backup file (`verifyBackupFile`), then reads its snapshot (checking the snapshot's
 * own CRC and that it is at the trailer's index). The whole state is in memory afterwards, as it
 * is when a node recovers from its own snapshot.
 */
export async function readBackupFile(file: string): Promise<{ meta: BackupMeta; snapshot: Snapshot }> {
  const meta = await verifyBackupFile(file);
  const handle = await fs.promises.open(file, 'r');
  let data: Buffer;
  try {
    data = Buffer.alloc(meta.bytes);
    let position = 0;
    while (position < meta.bytes) {
      const { bytesRead } = await handle.read(data, position, meta.bytes - position, position);
      if (bytesRead === 0) throw new BackupFileError(file, 'ended while reading its data');
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
  let snapshot: Snapshot;
  try {
    snapshot = decodeSnapshot(data, file);
  } catch (err) {
    throw new BackupFileError(file, `the snapshot inside is unreadable: ${(err as Error).message}`);
  }
  if (snapshot.index !== meta.index) throw new BackupFileError(file, `the snapshot inside is at index ${snapshot.index}, the trailer says ${meta.index}`);
  return { meta, snapshot };
}
