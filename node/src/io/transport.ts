/**
 * The replica-to-replica transport over gRPC (`paxos.v1.PeerService/Stream`).
 *
 * - One stream per pair of peers. Either side dials when it has something to send and no
 *   stream; if both dialed at once, the stream dialed by the lower id wins and the higher id
 *   ends its own. Both directions of a stream carry batches, so an accepted stream is as good
 *   as a dialed one. (A learner outside the leader's configuration dials the leader to ask
 *   for catch-up, and the leader answers on that same stream.)
 * - Outgoing messages wait in a bounded per-peer queue; on overflow the oldest are dropped,
 *   which Paxos tolerates (everything is retried by ticks). The queue is flushed when the
 *   driver has sent what one drain produced (`flush`), else at the end of the event-loop
 *   turn, as batches bounded in count and bytes, and not at all while the stream is applying
 *   backpressure (`write()` returned false, until 'drain').
 * - A catch-up reply that carries a snapshot is split into `SnapshotChunk`s, sent one per
 *   turn between ordinary batches and never dropped for queue space; the receiver
 *   reassembles it and hands the whole reply to the core.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Message, NodeId } from '../core/types.js';
import { WireFormatError, decodeMessage, encodeMessage, type WireMessage } from './codec.js';
import type { AccessPolicy } from './access.js';
import type { NodeMetrics } from './metrics.js';
import { CHANNEL_OPTIONS, GRPC_MESSAGE_BYTES_MAX, loadProtos } from './proto.js';
import { trace, tracing } from './trace.js';

const traceKey = (m: Message): string =>
  `${m.type}:${m.from}>${m.to}:${m.type === 'accept' ? (m.entries.at(-1)?.slot ?? '-') : m.type === 'accepted' ? m.toSlot : '-'}`;

/** Tunables of the transport. */
export interface TransportLimits {
  /** Messages queued per peer before the oldest are dropped. */
  readonly queueMessagesMax: number;
  readonly batchMessagesMax: number;
  /** Estimated bytes per batch; kept well below the gRPC message bound. */
  readonly batchBytesMax: number;
  readonly snapshotChunkBytes: number;
  /** A snapshot larger than this is refused on receipt. */
  readonly snapshotBytesMax: number;
  /** Deadline for a channel to become ready when dialing. */
  readonly connectTimeoutMs: number;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
}

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  queueMessagesMax: 4096,
  batchMessagesMax: 256,
  batchBytesMax: 4 * 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  snapshotBytesMax: 512 * 1024 * 1024,
  connectTimeoutMs: 2_000,
  backoffMinMs: 50,
  backoffMaxMs: 5_000,
};

/** Options of `PeerTransport`. */
export interface TransportOptions {
  readonly id: NodeId;
  /** The peer's host:port, or undefined when unknown (its messages are dropped). */
  readonly resolve: (id: NodeId) => string | undefined;
  /** Called for every message received, already decoded. */
  readonly onMessage: (message: Message) => void;
  readonly logger: Logger;
  readonly metrics?: NodeMetrics;
  readonly limits?: Partial<TransportLimits>;
  /** Randomness for backoff jitter (injectable for tests). */
  readonly random?: () => number;
  /**
   * Credentials to dial `peer` with (default: plaintext). With TLS they also check that the
   * server's certificate is that member's.
   */
  readonly credentials?: (peer: NodeId) => grpc.ChannelCredentials;
  /** Who may open a stream as `claimed` (default: anyone); see access.ts. */
  readonly access?: AccessPolicy;
}

type AnyStream = grpc.ClientDuplexStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

interface WireChunk {
  transfer_id: number;
  offset: number;
  total_bytes: number;
  data: Buffer;
  reply: WireMessage | null;
}
interface WireItem {
  item?: 'message' | 'chunk';
  message?: WireMessage | null;
  chunk?: WireChunk | null;
}
interface WireBatch {
  items: WireItem[];
}

interface SnapshotJob {
  readonly transferId: number;
  readonly header: WireMessage;
  readonly data: Buffer;
  offset: number;
}

interface Assembly {
  readonly transferId: number;
  readonly total: number;
  readonly header: WireMessage;
  readonly parts: Buffer[];
  received: number;
}

/** A rough upper estimate of a message's encoded size, to bound batches without encoding twice. */
export function estimateBytes(m: Message): number {
  let bytes = 64;
  const entries = m.type === 'accept' || m.type === 'catchupReply' ? m.entries : m.type === 'promise' ? m.accepted : [];
  for (const e of entries) {
    bytes += 48;
    const c = e.command;
    if (c.kind === 'kv') {
      bytes += c.client.length + 16;
      const op = c.op;
      if ('key' in op) bytes += op.key.length * 3;
      if ('value' in op) bytes += op.value.length * 3;
      if (op.type === 'cas') bytes += (op.expected?.length ?? 0) * 3;
      if (op.type === 'range') bytes += op.prefix.length * 3;
    } else if (c.kind === 'finalize') {
      bytes += 8 * (c.config.members.length + (c.config.prior?.length ?? 0));
    }
  }
  return bytes;
}

class PeerLink {
  queue: Message[] = [];
  snapshot: SnapshotJob | undefined;
  dialed: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  accepted: grpc.ServerDuplexStream<unknown, unknown> | undefined;
  dialing = false;
  blocked = false;
  backoffMs = 0;
  retryAt = 0;
  client: grpc.Client | undefined;
  address: string | undefined;
  assembly: Assembly | undefined;

  constructor(readonly peer: NodeId) {}
}

/** The gRPC peer transport. */
export class PeerTransport {
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly limits: TransportLimits;
  private readonly log: Logger;
  private readonly random: () => number;
  private flushScheduled = false;
  private closed = false;
  private nextTransferId = 1;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: TransportOptions) {
    this.limits = { ...DEFAULT_TRANSPORT_LIMITS, ...options.limits };
    this.log = options.logger;
    this.random = options.random ?? Math.random;
  }

  /** Queues messages for their peers; they go out on `flush` or at the end of this event-loop turn. */
  send(messages: readonly Message[]): void {
    if (this.closed) return;
    for (const m of messages) {
      if (m.to === this.options.id) continue;
      const link = this.link(m.to);
      if (m.type === 'catchupReply' && m.snapshot) {
        // Replacing an unfinished transfer is fine: the newer snapshot supersedes it.
        const header = encodeMessage(m);
        link.snapshot = { transferId: this.nextTransferId++, header, data: Buffer.from(m.snapshot.data, 'utf8'), offset: 0 };
        continue;
      }
      if (estimateBytes(m) > GRPC_MESSAGE_BYTES_MAX - 64 * 1024) {
        // It could never be sent: writing it would fail the whole stream, again on every
        // retry. Drop it loudly; the core must bound its batches in bytes, not only in count.
        this.options.metrics?.peerMessagesDropped.inc({ peer: String(m.to), reason: 'oversized' });
        this.log.error({ peer: m.to, type: m.type, estimatedBytes: estimateBytes(m) }, 'dropping a message larger than the gRPC message bound');
        continue;
      }
      if (tracing) trace('tx.queue', traceKey(m));
      link.queue.push(m);
      if (link.queue.length > this.limits.queueMessagesMax) {
        const dropped = link.queue.splice(0, link.queue.length - this.limits.queueMessagesMax);
        this.options.metrics?.peerMessagesDropped.inc({ peer: String(m.to), reason: 'overflow' }, dropped.length);
      }
    }
    this.scheduleFlush();
  }

  /** The server-side handler of `PeerService/Stream`. */
  handleStream(call: grpc.ServerDuplexStream<unknown, unknown>): void {
    const from = Number(call.metadata.get('x-paxos-from')[0]);
    const to = Number(call.metadata.get('x-paxos-to')[0]);
    if (this.closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'shutting down' });
      return;
    }
    if (!Number.isInteger(from) || from < 0 || from === this.options.id) {
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'x-paxos-from must name another node' });
      return;
    }
    const refusal = this.options.access?.peer(call, from);
    if (refusal !== undefined) {
      this.log.warn({ claimed: from, caller: this.options.access?.caller(call), peer: call.getPeer(), reason: refusal }, 'peer stream refused');
      call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: `peer stream refused: ${refusal}` });
      return;
    }
    if (to !== this.options.id) {
      // The address belongs to another node now (or the dialer's map is wrong): refuse, so
      // that it does not deliver messages for `to` to us.
      call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: `this is node ${this.options.id}, not ${to}` });
      return;
    }
    const link = this.link(from);
    const previous = link.accepted;
    link.accepted = call;
    previous?.end();
    this.options.metrics?.peerStreams.inc({ direction: 'in' });
    this.log.debug({ peer: from }, 'peer stream accepted');
    if (this.options.id > from && link.dialed) {
      // Both sides dialed: the lower id's stream wins, ours goes once its writes are flushed.
      const ours = link.dialed;
      link.dialed = undefined;
      ours.end();
    }
    this.attach(link, call, 'in');
    this.scheduleFlush();
  }

  /** Ends every stream and channel. Queued messages are dropped. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const link of this.links.values()) {
      link.dialed?.end();
      link.accepted?.end();
      link.client?.close();
      link.queue = [];
      link.snapshot = undefined;
    }
  }

  /** Queue length per peer (for status and tests). */
  queued(peer: NodeId): number {
    return this.links.get(peer)?.queue.length ?? 0;
  }

  /** Open streams to `peer`, dialed and accepted (1 once both ends have converged). */
  streams(peer: NodeId): number {
    const link = this.links.get(peer);
    return (link?.dialed ? 1 : 0) + (link?.accepted ? 1 : 0);
  }

  private link(peer: NodeId): PeerLink {
    let link = this.links.get(peer);
    if (!link) {
      link = new PeerLink(peer);
      this.links.set(peer, link);
    }
    return link;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private stream(link: PeerLink): AnyStream | undefined {
    // Prefer the stream dialed by the lower id, so both ends converge on the same one.
    return this.options.id < link.peer ? (link.dialed ?? link.accepted) : (link.accepted ?? link.dialed);
  }

  /**
   * Writes what is queued to the peers' streams now (dialing where there is none), instead of
   * waiting for the end of the turn: the driver calls it once a drain's messages are all sent,
   * so that an accept or an acknowledgement does not wait for another loop iteration.
   */
  flush(): void {
    if (this.closed) return;
    for (const link of this.links.values()) {
      if (link.queue.length === 0 && !link.snapshot) continue;
      const stream = this.stream(link);
      if (!stream) {
        this.dial(link);
        continue;
      }
      if (link.blocked) continue;
      this.writeBatches(link, stream);
    }
  }

  private writeBatches(link: PeerLink, stream: AnyStream): void {
    const peer = String(link.peer);
    while (link.queue.length > 0 && !link.blocked) {
      const items: WireItem[] = [];
      let bytes = 0;
      let taken = 0;
      for (const m of link.queue) {
        const size = estimateBytes(m);
        if (taken > 0 && (taken >= this.limits.batchMessagesMax || bytes + size > this.limits.batchBytesMax)) break;
        items.push({ message: encodeMessage(m) });
        if (tracing) trace('tx.write', traceKey(m));
        bytes += size;
        taken++;
      }
      link.queue.splice(0, taken);
      this.options.metrics?.peerMessagesSent.inc({ peer }, taken);
      if (!this.write(link, stream, { items })) return;
    }
    const job = link.snapshot;
    if (job && !link.blocked) {
      const end = Math.min(job.data.length, job.offset + this.limits.snapshotChunkBytes);
      const chunk: WireChunk = {
        transfer_id: job.transferId,
        offset: job.offset,
        total_bytes: job.data.length,
        data: job.data.subarray(job.offset, end),
        reply: job.offset === 0 ? job.header : null,
      };
      job.offset = end;
      if (end >= job.data.length) link.snapshot = undefined;
      // One chunk per turn, so that heartbeats and accepts are not stuck behind a large snapshot.
      if (this.write(link, stream, { items: [{ chunk }] }) && link.snapshot) this.scheduleFlush();
    }
  }

  /** Writes one batch; false when the stream asks us to wait for 'drain'. */
  private write(link: PeerLink, stream: AnyStream, batch: WireBatch): boolean {
    const flushed = stream.write(batch);
    if (tracing) trace('tx.flushed', `${this.options.id}>${link.peer}:${batch.items.length}`);
    if (flushed) return true;
    link.blocked = true;
    stream.once('drain', () => {
      link.blocked = false;
      this.scheduleFlush();
    });
    return false;
  }

  private dial(link: PeerLink): void {
    if (link.dialing || this.closed || Date.now() < link.retryAt) return;
    const address = this.options.resolve(link.peer);
    if (!address) {
      const n = link.queue.length;
      link.queue = [];
      link.snapshot = undefined;
      this.options.metrics?.peerMessagesDropped.inc({ peer: String(link.peer), reason: 'unknown_address' }, n);
      return;
    }
    if (!link.client || link.address !== address) {
      link.client?.close();
      const { PeerClient } = loadProtos();
      link.client = new PeerClient(address, this.options.credentials?.(link.peer) ?? grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      link.address = address;
    }
    link.dialing = true;
    const client = link.client;
    client.waitForReady(Date.now() + this.limits.connectTimeoutMs, (err) => {
      link.dialing = false;
      if (this.closed) return;
      if (err) {
        this.retryLater(link, err.message);
        return;
      }
      if (this.stream(link)) {
        this.scheduleFlush(); // the peer dialed us meanwhile
        return;
      }
      const metadata = new grpc.Metadata();
      metadata.set('x-paxos-from', String(this.options.id));
      metadata.set('x-paxos-to', String(link.peer));
      const call = (client as unknown as { Stream: (md: grpc.Metadata) => grpc.ClientDuplexStream<unknown, unknown> }).Stream(metadata);
      link.dialed = call;
      link.blocked = false;
      this.options.metrics?.peerStreams.inc({ direction: 'out' });
      this.log.debug({ peer: link.peer, address }, 'peer stream dialed');
      this.attach(link, call, 'out');
      this.scheduleFlush();
    });
  }

  private retryLater(link: PeerLink, reason: string): void {
    link.backoffMs = Math.min(this.limits.backoffMaxMs, Math.max(this.limits.backoffMinMs, link.backoffMs * 2));
    // Full jitter, so that a restarted cluster does not redial in lockstep.
    const delay = Math.round(link.backoffMs * (0.5 + this.random() / 2));
    link.retryAt = Date.now() + delay;
    this.log.debug({ peer: link.peer, delayMs: delay, reason }, 'peer unreachable; retrying later');
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.scheduleFlush();
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  private attach(link: PeerLink, stream: AnyStream, direction: 'in' | 'out'): void {
    let gone = false;
    const detach = (why: string) => {
      if (gone) return;
      gone = true;
      this.options.metrics?.peerStreams.dec({ direction });
      if (link.dialed === stream) link.dialed = undefined;
      if (link.accepted === stream) link.accepted = undefined;
      if (this.stream(link) === undefined) {
        link.blocked = false;
        link.assembly = undefined;
      }
      this.log.debug({ peer: link.peer, direction, why }, 'peer stream closed');
      if (direction === 'out' && why !== 'end') this.retryLater(link, why);
      else this.scheduleFlush();
    };
    stream.on('data', (batch: WireBatch) => {
      if (direction === 'out') link.backoffMs = 0; // the peer answers: the link works
      this.receive(link, batch);
    });
    stream.on('end', () => {
      detach('end');
      // Half-close our side too, so the HTTP/2 stream is released.
      if (direction === 'in') (stream as grpc.ServerDuplexStream<unknown, unknown>).end();
    });
    stream.on('error', (err: Error) => detach(err.message));
    stream.on('close', () => detach('close'));
  }

  private receive(link: PeerLink, batch: WireBatch): void {
    for (const item of batch.items ?? []) {
      try {
        if (item.item === 'message' && item.message) {
          this.deliver(link, decodeMessage(item.message));
        } else if (item.item === 'chunk' && item.chunk) {
          this.receiveChunk(link, item.chunk);
        }
      } catch (err) {
        if (!(err instanceof WireFormatError)) throw err;
        this.options.metrics?.peerMessagesDropped.inc({ peer: String(link.peer), reason: 'malformed' });
        this.log.warn({ peer: link.peer, err: err.message }, 'dropping malformed peer message');
      }
    }
  }

  private deliver(link: PeerLink, message: Message): void {
    if (message.from !== link.peer) {
      this.options.metrics?.peerMessagesDropped.inc({ peer: String(link.peer), reason: 'wrong_sender' });
      return;
    }
    this.options.metrics?.peerMessagesReceived.inc();
    if (tracing) trace('rx', traceKey(message));
    this.options.onMessage(message);
  }

  private receiveChunk(link: PeerLink, chunk: WireChunk): void {
    if (chunk.offset === 0) {
      if (!chunk.reply) throw new WireFormatError('first snapshot chunk without its reply');
      if (chunk.total_bytes > this.limits.snapshotBytesMax) {
        link.assembly = undefined;
        throw new WireFormatError(`snapshot of ${chunk.total_bytes} bytes exceeds ${this.limits.snapshotBytesMax}`);
      }
      link.assembly = { transferId: chunk.transfer_id, total: chunk.total_bytes, header: chunk.reply, parts: [], received: 0 };
    }
    const a = link.assembly;
    if (!a || a.transferId !== chunk.transfer_id || a.received !== chunk.offset || a.received + chunk.data.length > a.total) {
      // A gap (a dropped stream, a newer transfer): abandon; the core asks again.
      link.assembly = undefined;
      return;
    }
    a.parts.push(Buffer.from(chunk.data));
    a.received += chunk.data.length;
    if (a.received === a.total) {
      link.assembly = undefined;
      this.deliver(link, decodeMessage(a.header, Buffer.concat(a.parts).toString('utf8')));
    }
  }
}
