/**
 * The client library's error: a gRPC status with the NOT_LEADER hint parsed out and a
 * `retryable` verdict, so that callers never inspect raw metadata.
 */
import * as grpc from '@grpc/grpc-js';

/** An error returned by a node (or by the client's own deadline). */
export class PaxosClientError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
    readonly leaderId?: number,
    readonly leaderAddr?: string,
    readonly notLeader = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PaxosClientError';
  }

  /**
   * Whether retrying the same request (same client id and seq) may succeed. UNAVAILABLE and
   * DEADLINE_EXCEEDED also cover "outcome unknown", which a retry resolves exactly once.
   */
  get retryable(): boolean {
    // CANCELLED reaches a client that did not cancel only when the server went away mid-call.
    return (
      this.code === grpc.status.UNAVAILABLE ||
      this.code === grpc.status.DEADLINE_EXCEEDED ||
      this.code === grpc.status.RESOURCE_EXHAUSTED ||
      this.code === grpc.status.CANCELLED
    );
  }

  /** The status name, e.g. `UNAVAILABLE`. */
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

/** Converts a grpc-js error (with trailing metadata) into a `PaxosClientError`. */
export function fromServiceError(err: grpc.ServiceError | Error): PaxosClientError {
  if (err instanceof PaxosClientError) return err;
  const se = err as Partial<grpc.ServiceError>;
  const code = se.code ?? grpc.status.UNKNOWN;
  const md = se.metadata;
  const notLeader = md?.get('x-paxos-error')[0] === 'not-leader';
  const idRaw = md?.get('x-paxos-leader-id')[0];
  const addrRaw = md?.get('x-paxos-leader-addr')[0];
  return new PaxosClientError(
    code,
    se.details || err.message,
    idRaw === undefined ? undefined : Number(idRaw),
    addrRaw === undefined ? undefined : String(addrRaw),
    notLeader,
    { cause: err },
  );
}
