/**
 * The admin client: status, convert, transfer, finalize, snapshot and backup on one node, each
 * with a deadline. Used by the operator's reconciler and by paxosctl.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Config, ReplicaStatus } from '../core/types.js';
import { decodeConfig, encodeConfig, type WireBallot, type WireConfig } from '../io/codec.js';
import { ChannelPool, unaryCall } from './channels.js';
import { fromServiceError } from './errors.js';

/** A node's status as the admin API reports it: the core's status plus what the node adds. */
export interface NodeStatus extends Omit<ReplicaStatus, 'leader'> {
  readonly leader: number | undefined;
  /** The leader's client address, as the node knows it (may be an in-cluster DNS name). */
  readonly leaderAddr: string | undefined;
  /** The node has a leader and has caught up (its /readyz). */
  readonly ready: boolean;
}

interface WireStatus {
  id: number;
  role: NodeStatus['role'];
  leader: number;
  leader_addr: string;
  ballot: WireBallot | null;
  config: WireConfig | null;
  fence_epoch: number;
  commit: number;
  applied: number;
  last_slot: number;
  snapshot_index: number;
  caught_up: boolean;
  ready: boolean;
  lag: Array<{ id: number; lag: number }>;
  transferring: boolean;
  data_loss: string;
  unregistered: boolean;
}

/** The metadata ending a backup stream (BackupMeta in proto/paxos.proto). */
export interface BackupMetaWire {
  readonly index: number;
  readonly epoch: number;
  readonly members: number[];
  readonly node_version: string;
  readonly keys: number;
  readonly bytes: number;
  readonly sha256: string;
}

/** Options of `AdminClient`. */
export interface AdminClientOptions {
  /** Deadline of each call. Default 5000 (finalize waits for a log entry: give it more). */
  readonly deadlineMs?: number;
  /** How to dial the nodes: plaintext by default; TLS from `tlsCredentialsFromFiles` (./tls.js). */
  readonly credentials?: grpc.ChannelCredentials;
}

/** Admin calls against individual nodes, addressed by host:port. */
export class AdminClient {
  private readonly pool: ChannelPool;
  private readonly deadlineMs: number;

  constructor(options: AdminClientOptions = {}) {
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.pool = new ChannelPool(32, options.credentials);
  }

  /** Every call takes an optional `signal` that cancels it. */
  async status(endpoint: string, signal?: AbortSignal): Promise<NodeStatus> {
    const s = await this.invoke<WireStatus>(endpoint, 'Status', {}, undefined, signal);
    return {
      id: s.id,
      role: s.role,
      leader: s.leader >= 0 ? s.leader : undefined,
      leaderAddr: s.leader_addr || undefined,
      ballot: s.ballot ? { round: s.ballot.round, node: s.ballot.node } : { round: 0, node: -1 },
      config: decodeConfig(s.config),
      fenceEpoch: s.fence_epoch,
      commit: s.commit,
      applied: s.applied,
      lastSlot: s.last_slot,
      snapshotIndex: s.snapshot_index,
      caughtUp: s.caught_up,
      ready: s.ready,
      lag: Object.fromEntries(s.lag.map((l) => [l.id, l.lag])),
      transferring: s.transferring,
      dataLoss: s.data_loss === 'suspended' || s.data_loss === 'repairing' ? s.data_loss : 'none',
      unregistered: s.unregistered,
    };
  }

  /** The expansion operation on one node (idempotent). */
  async convert(endpoint: string, config: Config, signal?: AbortSignal): Promise<void> {
    await this.invoke(endpoint, 'Convert', { config: encodeConfig(config) }, undefined, signal);
  }

  /**
   * Lets the new server at `endpoint` vote (idempotent). Only after recording durably that it
   * has run: see AdminService.Register in proto/paxos.proto.
   */
  async register(endpoint: string, signal?: AbortSignal): Promise<void> {
    await this.invoke(endpoint, 'Register', {}, undefined, signal);
  }

  /** Asks the leader at `endpoint` to hand leadership to `target`. */
  async transferLeadership(endpoint: string, target: number, signal?: AbortSignal): Promise<void> {
    await this.invoke(endpoint, 'TransferLeadership', { target }, undefined, signal);
  }

  /** Asks the leader at `endpoint` to finalize; resolves once the finalize entry is applied there. */
  async finalize(endpoint: string, deadlineMs?: number, signal?: AbortSignal): Promise<void> {
    await this.invoke(endpoint, 'Finalize', {}, deadlineMs, signal);
  }

  /** Snapshots the node now; resolves with the snapshot index. */
  async snapshot(endpoint: string): Promise<number> {
    const r = await this.invoke<{ index: number }>(endpoint, 'Snapshot', {});
    return r.index;
  }

  /**
   * Streams a consistent backup from the leader at `endpoint` (AdminService.Backup): `onData`
   * gets each chunk of data in order and may return a promise (the stream is paused until it
   * settles, so a slow disk bounds what is held in memory); resolves with the final metadata.
   * Rejects with a `PaxosClientError` on a gRPC error, and with an Error when the stream ends
   * without metadata. `deadlineMs` bounds the whole transfer.
   */
  async backup(endpoint: string, onData: (chunk: Buffer) => void | Promise<void>, deadlineMs: number, options: { chunkBytes?: number; signal?: AbortSignal } = {}): Promise<BackupMetaWire> {
    const client = this.pool.get('AdminClient', endpoint) as unknown as {
      Backup(req: object, opts: grpc.CallOptions): grpc.ClientReadableStream<{ item: 'data' | 'meta'; data: Buffer; meta: BackupMetaWire | null }>;
    };
    const call = client.Backup({ chunk_bytes: options.chunkBytes ?? 0 }, { deadline: Date.now() + deadlineMs });
    const onAbort = (): void => call.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let meta: BackupMetaWire | undefined;
    try {
      for await (const message of call) {
        if (meta !== undefined) throw new Error('backup stream: data after the metadata');
        if (message.item === 'meta' && message.meta) meta = message.meta;
        else if (message.item === 'data') await onData(message.data);
      }
    } catch (err) {
      call.cancel();
      if (typeof (err as { code?: unknown }).code === 'number') throw fromServiceError(err as Error);
      throw err;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    if (meta === undefined) throw new Error('backup stream ended without its metadata');
    return meta;
  }

  close(): void {
    this.pool.close();
  }

  private async invoke<Res>(endpoint: string, method: string, request: object, deadlineMs = this.deadlineMs, signal?: AbortSignal): Promise<Res> {
    try {
      return await unaryCall<Res>(this.pool.get('AdminClient', endpoint), method, request, deadlineMs, signal);
    } catch (err) {
      throw fromServiceError(err as Error);
    }
  }
}
