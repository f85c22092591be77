/**
 * What the operator needs from a node's AdminService (proto/paxos.proto), as a small interface
 * so that the reconciler can be tested against a double. The production implementation goes
 * through the node client library. Every call has a deadline.
 */
import * as grpc from '@grpc/grpc-js';
import { AdminClient, PaxosClientError } from '../../../node/src/client/index.js';
import type { NodeConfig } from '../plan/config.js';

/** A node's answer to `Status`, in the operator's terms. */
export interface NodeStatus {
  readonly id: number;
  readonly role: 'leader' | 'follower' | 'candidate';
  /** The leader's id as this node knows it; absent when unknown. */
  readonly leader?: number;
  readonly config: NodeConfig;
  readonly fenceEpoch: number;
  readonly commit: number;
  readonly applied: number;
  readonly caughtUp: boolean;
  /** Per-peer lag in slots; filled by the leader. */
  readonly lag: readonly { readonly id: number; readonly lag: number }[];
  readonly transferring: boolean;
  /** Has a leader and is caught up. */
  readonly ready: boolean;
  /** `suspended`: restarted on an empty volume, votes for nobody; `repairing`: converted by a repair. */
  readonly dataLoss?: 'none' | 'suspended' | 'repairing';
  /** A new server that started on an empty disk and votes for nobody until registered. */
  readonly unregistered?: boolean;
}

/**
 * The admin calls the reconciler makes. `address` is `host:port` of the node's client port.
 * `signal` (the reconcile pass's) cancels a call in flight.
 */
export interface NodeAdmin {
  status(address: string, deadlineMs: number, signal?: AbortSignal): Promise<NodeStatus>;
  convert(address: string, config: NodeConfig, deadlineMs: number, signal?: AbortSignal): Promise<void>;
  transferLeadership(address: string, target: number, deadlineMs: number, signal?: AbortSignal): Promise<void>;
  finalize(address: string, deadlineMs: number, signal?: AbortSignal): Promise<void>;
  /** Lets a new server vote; only once the bootstrap ConfigMap makes its empty restart a known loss. */
  register(address: string, deadlineMs: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** An admin call failed; `code` is the gRPC status code (e.g. 4 DEADLINE_EXCEEDED, 9 FAILED_PRECONDITION). */
export class NodeAdminError extends Error {
  override readonly name = 'NodeAdminError';
  constructor(readonly method: string, readonly address: string, readonly code: number, details: string, options?: { cause?: unknown }) {
    super(`${method} on ${address} failed (${grpc.status[code] ?? code}): ${details}`, options);
  }
}

/**
 * {@link NodeAdmin} over the node client library's `AdminClient` (node/src/client). One client
 * per deadline, since the library fixes the deadline per client; channels are pooled inside.
 */
export class ClientNodeAdmin implements NodeAdmin {
  private readonly clients = new Map<number, AdminClient>();

  async status(address: string, deadlineMs: number, signal?: AbortSignal): Promise<NodeStatus> {
    const status = await this.wrap('Status', address, () => this.client(deadlineMs).status(address, signal));
    return {
      id: status.id,
      role: status.role,
      leader: status.leader,
      config: normalize(status.config),
      fenceEpoch: status.fenceEpoch,
      commit: status.commit,
      applied: status.applied,
      caughtUp: status.caughtUp,
      lag: Object.entries(status.lag).map(([id, lag]) => ({ id: Number(id), lag })),
      transferring: status.transferring,
      ready: status.ready,
      dataLoss: status.dataLoss,
      unregistered: status.unregistered,
    };
  }

  async register(address: string, deadlineMs: number, signal?: AbortSignal): Promise<void> {
    await this.wrap('Register', address, () => this.client(deadlineMs).register(address, signal));
  }

  async convert(address: string, config: NodeConfig, deadlineMs: number, signal?: AbortSignal): Promise<void> {
    await this.wrap('Convert', address, () => this.client(deadlineMs).convert(address, config, signal));
  }

  async transferLeadership(address: string, target: number, deadlineMs: number, signal?: AbortSignal): Promise<void> {
    await this.wrap('TransferLeadership', address, () => this.client(deadlineMs).transferLeadership(address, target, signal));
  }

  async finalize(address: string, deadlineMs: number, signal?: AbortSignal): Promise<void> {
    await this.wrap('Finalize', address, () => this.client(deadlineMs).finalize(address, deadlineMs, signal));
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private client(deadlineMs: number): AdminClient {
    let client = this.clients.get(deadlineMs);
    if (client === undefined) {
      client = new AdminClient({ deadlineMs });
      this.clients.set(deadlineMs, client);
    }
    return client;
  }

  private async wrap<T>(method: string, address: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      const code = error instanceof PaxosClientError ? error.code : grpc.status.UNKNOWN;
      throw new NodeAdminError(method, address, code, error instanceof Error ? error.message : String(error), { cause: error });
    }
  }
}

/** Member lists sorted, as the planner compares them element by element. */
function normalize(config: NodeConfig): NodeConfig {
  const members = [...config.members].sort((a, b) => a - b);
  return config.prior === undefined ? { epoch: config.epoch, members } : { epoch: config.epoch, members, prior: [...config.prior].sort((a, b) => a - b) };
}
