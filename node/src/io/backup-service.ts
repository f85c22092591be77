/**
 * `AdminService.Backup`: a consistent backup streamed from the leader (see
 * docs/adr/0015-consistent-backups.md). The driver finds the consistent point and makes sure a
 * snapshot covering it is on disk; this streams that snapshot's file a chunk at a time, with
 * gRPC flow control (a slow reader holds one chunk in memory, not the snapshot), then the
 * metadata. The node goes on serving writes meanwhile; a newer snapshot may replace the file,
 * but the open descriptor keeps reading the one the backup started with.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { OPEN_ACCESS, type AccessPolicy } from './access.js';
import type { Driver, SnapshotInfo } from './driver.js';
import { BackupUnavailableError, InvalidRequestError, grpcCode, toGrpcError } from './errors.js';

/** Data bytes per chunk unless the caller asks otherwise. */
export const BACKUP_CHUNK_BYTES_DEFAULT = 1 << 20;
/** The largest chunk a caller may ask for (well below the 16 MiB message bound). */
export const BACKUP_CHUNK_BYTES_MAX = 4 << 20;
/** Attempts at opening the snapshot file, which a newer snapshot may have just replaced. */
const OPEN_ATTEMPTS = 3;

interface BackupRequestWire {
  chunk_bytes: number;
}

type BackupCall = grpc.ServerWritableStream<BackupRequestWire, object>;

/** Opens the file of a snapshot covering the backup's point; retries when a newer one replaced it. */
async function openPoint(driver: Driver, snapshotPath: (index: number) => string): Promise<{ info: SnapshotInfo; handle: fs.promises.FileHandle }> {
  for (let attempt = 1; ; attempt++) {
    const info = await driver.backupPoint();
    try {
      return { info, handle: await fs.promises.open(snapshotPath(info.index), 'r') };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= OPEN_ATTEMPTS) {
        throw new BackupUnavailableError(`cannot open the snapshot at ${info.index}: ${(err as Error).message}`);
      }
    }
  }
}

/** Writes one message, waiting for the stream to drain when its buffer is full. */
function write(call: BackupCall, message: object): Promise<void> {
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('cancelled', cancelled);
      resolve();
    };
    const cancelled = (): void => {
      call.off('drain', done);
      reject(new Error('cancelled by the client'));
    };
    call.once('drain', done);
    call.once('cancelled', cancelled);
  });
}

/**
 * The Backup handler. Only the operator's certificate may call it when TLS is on (it reads
 * everything); `nodeVersion` goes into the metadata.
 */
export function backupHandler(
  driver: Driver,
  logger: Logger,
  snapshotPath: (index: number) => string,
  nodeVersion: string,
  access: AccessPolicy = OPEN_ACCESS,
): grpc.handleServerStreamingCall<BackupRequestWire, object> {
  return (call) => {
    const refusal = access.admin(call);
    if (refusal !== undefined) {
      logger.warn({ op: 'backup', caller: access.caller(call), peer: call.getPeer(), reason: refusal }, 'admin request denied');
      // grpc-js turns an 'error' event into the call's status.
      call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: `backup: permission denied: ${refusal}` });
      return;
    }
    const started = performance.now();
    let cancelled = false;
    call.on('cancelled', () => (cancelled = true));
    const run = async (): Promise<void> => {
      const chunkBytes = call.request.chunk_bytes || BACKUP_CHUNK_BYTES_DEFAULT;
      if (chunkBytes > BACKUP_CHUNK_BYTES_MAX) throw new InvalidRequestError(`chunk_bytes ${chunkBytes} is above ${BACKUP_CHUNK_BYTES_MAX}`);
      const { info, handle } = await openPoint(driver, snapshotPath);
      try {
        logger.info({ op: 'backup', caller: access.caller(call), index: info.index, keys: info.keys }, 'backup started');
        const { size } = await handle.stat();
        const hash = createHash('sha256');
        let position = 0;
        while (position < size) {
          if (cancelled) throw new Error('cancelled by the client');
          // A fresh buffer per chunk: grpc-js may still hold the previous one when write returns.
          const buf = Buffer.alloc(Math.min(chunkBytes, size - position));
          const { bytesRead } = await handle.read(buf, 0, buf.length, position);
          if (bytesRead === 0) throw new Error(`snapshot file ended at ${position} of ${size} bytes`);
          const data = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
          hash.update(data);
          position += bytesRead;
          await write(call, { data });
        }
        const meta = {
          index: info.index,
          epoch: info.config.epoch,
          members: [...info.config.members],
          node_version: nodeVersion,
          keys: info.keys,
          bytes: size,
          sha256: hash.digest('hex'),
        };
        await write(call, { meta });
        call.end();
        logger.info({ op: 'backup', index: info.index, keys: info.keys, bytes: size, ms: Math.round(performance.now() - started) }, 'backup sent');
      } finally {
        await handle.close();
      }
    };
    run().catch((err: unknown) => {
      if (cancelled) {
        logger.info({ op: 'backup', reason: (err as Error).message }, 'backup cancelled');
        return;
      }
      if (grpcCode(err) === grpc.status.INTERNAL) logger.error({ err, op: 'backup' }, 'backup failed');
      else logger.info({ op: 'backup', reason: (err as Error).message }, 'backup refused');
      call.emit('error', toGrpcError(err));
    });
  };
}
