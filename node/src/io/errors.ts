/**
 * Typed errors of the node's request path. The driver and services raise these; only
 * `toGrpcError` (at the gRPC edge) turns them into status codes.
 */
import * as grpc from '@grpc/grpc-js';
import type { AdminRefusalReason, NodeId } from '../core/types.js';
import { DiskFullError } from './wal.js';

/** This node cannot serve the request because it does not lead; retry at `leader`. */
export class NotLeaderError extends Error {
  constructor(
    readonly leader: NodeId | undefined,
    readonly leaderAddr: string | undefined,
    detail = 'not the leader',
  ) {
    super(leader === undefined ? `${detail}; leader unknown` : `${detail}; leader is node ${leader}`);
    this.name = 'NotLeaderError';
  }
}

/** Too many requests are waiting; the client should back off. */
export class BusyError extends Error {
  constructor(what: string) {
    super(`busy: ${what}`);
    this.name = 'BusyError';
  }
}

/** The node is shutting down and accepts no new work. */
export class ShuttingDownError extends Error {
  constructor() {
    super('node is shutting down');
    this.name = 'ShuttingDownError';
  }
}

/**
 * The proposal's slot was chosen with another command, or the state moved past it via a
 * snapshot, so its outcome is not known here. Retrying with the same client id and sequence
 * number is safe: the session table applies it at most once and returns the recorded result.
 */
export class OutcomeUnknownError extends Error {
  constructor(reason: string) {
    super(`outcome unknown (${reason}); retry with the same client id and seq`);
    this.name = 'OutcomeUnknownError';
  }
}

/** The request waited longer than the server's bound. Its outcome is unknown. */
export class RequestTimeoutError extends Error {
  constructor(ms: number) {
    super(`no result within ${ms} ms; retry with the same client id and seq`);
    this.name = 'RequestTimeoutError';
  }
}

/** The client's sequence number is older than the last one its session applied. */
export class StaleSequenceError extends Error {
  constructor(client: string, seq: number) {
    super(`client ${client} seq ${seq} is older than its session's last request`);
    this.name = 'StaleSequenceError';
  }
}

/** The request is malformed or out of bounds. */
export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/** A backup could not be taken now (no snapshot covering its read index is on disk); retry. */
export class BackupUnavailableError extends Error {
  constructor(message: string) {
    super(`backup unavailable: ${message}`);
    this.name = 'BackupUnavailableError';
  }
}

/** The core refused an admin operation; `reason` says why (branch on it, not on the message). */
export class AdminRefusedError extends Error {
  constructor(
    readonly reason: AdminRefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'AdminRefusedError';
  }
}

/** Trailing-metadata keys of the NOT_LEADER convention (see proto/paxos.proto). */
export const META_ERROR = 'x-paxos-error';
export const META_LEADER_ID = 'x-paxos-leader-id';
export const META_LEADER_ADDR = 'x-paxos-leader-addr';

/** The gRPC status for an error; unknown errors become INTERNAL without leaking details. */
export function grpcCode(err: unknown): grpc.status {
  if (err instanceof NotLeaderError || err instanceof ShuttingDownError || err instanceof OutcomeUnknownError || err instanceof BackupUnavailableError) return grpc.status.UNAVAILABLE;
  if (err instanceof BusyError || err instanceof DiskFullError) return grpc.status.RESOURCE_EXHAUSTED;
  if (err instanceof RequestTimeoutError) return grpc.status.DEADLINE_EXCEEDED;
  if (err instanceof StaleSequenceError) return grpc.status.ABORTED;
  if (err instanceof InvalidRequestError) return grpc.status.INVALID_ARGUMENT;
  if (err instanceof AdminRefusedError) return grpc.status.FAILED_PRECONDITION;
  return grpc.status.INTERNAL;
}

/** Converts an error to the object grpc-js sends as a status, with leader hints as metadata. */
export function toGrpcError(err: unknown): Partial<grpc.StatusObject> {
  const code = grpcCode(err);
  const metadata = new grpc.Metadata();
  if (err instanceof NotLeaderError) {
    metadata.set(META_ERROR, 'not-leader');
    if (err.leader !== undefined) metadata.set(META_LEADER_ID, String(err.leader));
    if (err.leaderAddr !== undefined) metadata.set(META_LEADER_ADDR, err.leaderAddr);
  }
  const details = code === grpc.status.INTERNAL ? 'internal error' : (err as Error).message;
  return { code, details, metadata };
}
