/**
 * What the operator needs from a node's AdminService (proto/paxos.proto), as a small interface
 * so that the reconciler can be tested against a double and the transport swapped for the node
 * client library when it lands. Every call has a deadline.
 */
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, loadProtos } from '../../../node/src/io/proto.js';
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
}

/** The admin calls the reconciler makes. `address` is `host:port` of the node's client port. */
export interface NodeAdmin {
  status(address: string, deadlineMs: number): Promise<NodeStatus>;
  convert(address: string, config: NodeConfig, deadlineMs: number): Promise<void>;
  transferLeadership(address: string, target: number, deadlineMs: number): Promise<void>;
  finalize(address: string, deadlineMs: number): Promise<void>;
  close(): void;
}

/** An admin call failed; `code` is the gRPC status code (e.g. 4 DEADLINE_EXCEEDED, 9 FAILED_PRECONDITION). */
export class NodeAdminError extends Error {
  override readonly name = 'NodeAdminError';
  constructor(readonly method: string, readonly address: string, readonly code: number, details: string, options?: { cause?: unknown }) {
    super(`${method} on ${address} failed (${grpc.status[code] ?? code}): ${details}`, options);
  }
}

interface WireConfig {
  epoch: number;
  members: number[];
  prior: { ids: number[] } | null;
}

interface WireStatus {
  id: number;
  role: string;
  leader: number;
  config: WireConfig | null;
  fence_epoch: number;
  commit: number;
  applied: number;
  caught_up: boolean;
  lag: { id: number; lag: number }[];
  transferring: boolean;
  ready: boolean;
}

type UnaryCall = (request: unknown, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply: unknown) => void) => void;

/** {@link NodeAdmin} over gRPC with one cached channel per address. */
export class GrpcNodeAdmin implements NodeAdmin {
  private readonly clients = new Map<string, grpc.Client>();

  async status(address: string, deadlineMs: number): Promise<NodeStatus> {
    const reply = (await this.call(address, 'Status', {}, deadlineMs)) as WireStatus;
    const role = reply.role === 'leader' || reply.role === 'candidate' ? reply.role : 'follower';
    const config = reply.config ?? { epoch: 0, members: [], prior: null };
    return {
      id: reply.id,
      role,
      leader: reply.leader >= 0 ? reply.leader : undefined,
      config: fromWire(config),
      fenceEpoch: reply.fence_epoch,
      commit: reply.commit,
      applied: reply.applied,
      caughtUp: reply.caught_up,
      lag: reply.lag ?? [],
      transferring: reply.transferring,
      ready: reply.ready,
    };
  }

  async convert(address: string, config: NodeConfig, deadlineMs: number): Promise<void> {
    await this.call(address, 'Convert', { config: toWire(config) }, deadlineMs);
  }

  async transferLeadership(address: string, target: number, deadlineMs: number): Promise<void> {
    await this.call(address, 'TransferLeadership', { target }, deadlineMs);
  }

  async finalize(address: string, deadlineMs: number): Promise<void> {
    await this.call(address, 'Finalize', {}, deadlineMs);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (client === undefined) {
      const { AdminClient } = loadProtos();
      client = new AdminClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      this.clients.set(address, client);
    }
    return client;
  }

  private call(address: string, method: string, request: unknown, deadlineMs: number): Promise<unknown> {
    const client = this.client(address) as unknown as Record<string, UnaryCall>;
    const fn = client[method];
    if (fn === undefined) return Promise.reject(new NodeAdminError(method, address, grpc.status.UNIMPLEMENTED, 'no such method'));
    return new Promise((resolve, reject) => {
      fn.call(client, request, { deadline: Date.now() + deadlineMs }, (error, reply) => {
        if (error) reject(new NodeAdminError(method, address, error.code, error.details || error.message, { cause: error }));
        else resolve(reply);
      });
    });
  }
}

function fromWire(config: WireConfig): NodeConfig {
  const members = [...config.members].sort((a, b) => a - b);
  if (config.prior === null || config.prior === undefined) return { epoch: config.epoch, members };
  return { epoch: config.epoch, members, prior: [...config.prior.ids].sort((a, b) => a - b) };
}

function toWire(config: NodeConfig): WireConfig {
  return { epoch: config.epoch, members: [...config.members], prior: config.prior === undefined ? null : { ids: [...config.prior] } };
}
