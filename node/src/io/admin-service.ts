/**
 * The gRPC edge of the admin API (`paxos.v1.AdminService`), used by the operator and paxosctl.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { NodeId } from '../core/types.js';
import { decodeConfig, encodeBallot, encodeConfig, type WireConfig } from './codec.js';
import { OPEN_ACCESS, type AccessPolicy } from './access.js';
import type { Driver } from './driver.js';
import { InvalidRequestError, grpcCode, toGrpcError } from './errors.js';
import { backupHandler } from './backup-service.js';
import { NODE_VERSION } from './version.js';

/**
 * Builds the AdminService handlers. Every call but Status is checked against `access`: with
 * TLS on, only the operator's certificate may convert, transfer, finalize, register,
 * snapshot or back up; anyone else gets PERMISSION_DENIED and a warning naming them in the log.
 */
export function adminHandlers(
  driver: Driver,
  logger: Logger,
  clientAddress: (id: NodeId) => string | undefined,
  access: AccessPolicy = OPEN_ACCESS,
  /** Where the snapshot at an index is on disk (for Backup; without it Backup is UNIMPLEMENTED). */
  snapshotPath?: (index: number) => string,
): grpc.UntypedServiceImplementation {
  const handle =
    <Req>(name: string, fn: (req: Req) => object | Promise<object>): grpc.handleUnaryCall<Req, object> =>
    (call, callback) => {
      if (name !== 'status') {
        const refusal = access.admin(call);
        if (refusal !== undefined) {
          logger.warn({ op: name, caller: access.caller(call), peer: call.getPeer(), reason: refusal }, 'admin request denied');
          callback({ code: grpc.status.PERMISSION_DENIED, details: `${name}: permission denied: ${refusal}` } as grpc.ServiceError);
          return;
        }
        if (access.enforced) logger.info({ op: name, caller: access.caller(call) }, 'admin request authorized');
      }
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (response) => callback(null, response),
          (err: unknown) => {
            if (grpcCode(err) === grpc.status.INTERNAL) logger.error({ err, op: name }, 'admin request failed');
            else logger.info({ op: name, reason: (err as Error).message }, 'admin request refused');
            callback(toGrpcError(err) as grpc.ServiceError);
          },
        );
    };

  return {
    Status: handle('status', () => {
      const s = driver.status;
      return {
        id: s.id,
        role: s.role,
        leader: s.leader ?? -1,
        ballot: encodeBallot(s.ballot),
        config: encodeConfig(s.config),
        fence_epoch: s.fenceEpoch,
        commit: s.commit,
        applied: driver.store.applied,
        last_slot: s.lastSlot,
        snapshot_index: s.snapshotIndex,
        caught_up: s.caughtUp,
        lag: Object.entries(s.lag).map(([id, lag]) => ({ id: Number(id), lag })),
        transferring: s.transferring,
        leader_addr: s.leader === undefined ? '' : (clientAddress(s.leader) ?? ''),
        ready: driver.ready,
        data_loss: s.dataLoss,
        unregistered: s.unregistered,
      };
    }),
    Convert: handle('convert', (req: { config: WireConfig | null }) => {
      if (!req.config) throw new InvalidRequestError('config is required');
      const config = decodeConfig(req.config);
      logger.info({ config }, 'convert requested');
      driver.convert(config);
      return {};
    }),
    TransferLeadership: handle('transfer', (req: { target: number }) => {
      logger.info({ target: req.target }, 'leadership transfer requested');
      driver.transferLeadership(req.target);
      return {};
    }),
    Finalize: handle('finalize', async () => {
      logger.info({}, 'finalize requested');
      await driver.finalize();
      return {};
    }),
    Register: handle('register', () => {
      logger.info({}, 'register requested');
      driver.register();
      return {};
    }),
    Snapshot: handle('snapshot', async () => ({ index: await driver.snapshotNow() })),
    ...(snapshotPath ? { Backup: backupHandler(driver, logger, snapshotPath, NODE_VERSION, access) } : {}),
  };
}
