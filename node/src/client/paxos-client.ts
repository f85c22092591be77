/**
 * The key-value client used by the operator, paxosctl, tests and benchmarks.
 *
 * - Finds the leader: starts at the first endpoint, follows NOT_LEADER hints, rotates
 *   through the endpoints when there is no hint.
 * - A hinted address may be unusable from here (an in-cluster DNS name seen from outside the
 *   cluster): when it fails before answering, it is avoided for a while and the hinted leader
 *   *id* is mapped to a configured endpoint instead, the id of each endpoint being learnt
 *   lazily from AdminService/Status.
 * - Exactly-once writes: every write carries a session id and a sequence number, and every
 *   retry of it repeats both, so the servers' session table applies it at most once.
 * - Sessions are *lanes*: the server remembers one result per session, so a session may have
 *   only one request in flight (a later seq applied first would make an earlier retry
 *   ambiguous). Concurrency comes from several lanes, `maxInflight` of them.
 * - Retries with exponential backoff and full jitter, within an overall deadline per call;
 *   each attempt has its own shorter deadline.
 * - Optional pipelining: requests share one `Pipeline` stream to the leader instead of one
 *   HTTP/2 stream each.
 */
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { ChannelPool, unaryCall } from './channels.js';
import { PaxosClientError, fromServiceError } from './errors.js';
import { PipelineConnection, type PipelineOp } from './pipeline.js';

/** Options of `PaxosClient`. */
export interface PaxosClientOptions {
  /** host:port of the nodes' client port; any of them, the leader is found. */
  readonly endpoints: readonly string[];
  /** Overall deadline of one call, retries included. Default 5000. */
  readonly deadlineMs?: number;
  /** Deadline of one attempt. Default min(deadlineMs, 2000). */
  readonly attemptTimeoutMs?: number;
  /** Session id prefix; default a random UUID. Reuse one only from a single process. */
  readonly clientId?: string;
  /** Concurrent requests (lanes). Default 64. */
  readonly maxInflight?: number;
  /** Requests waiting for a lane before calls fail fast with RESOURCE_EXHAUSTED. Default 10000. */
  readonly maxQueued?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /**
   * Cap of the backoff while nodes answer NOT_LEADER (a leader change is settling, which takes
   * milliseconds, not seconds). Default 50. Unreachable nodes still get the full backoff.
   */
  readonly leaderChangeBackoffMaxMs?: number;
  /** How to dial the nodes: plaintext by default; TLS from `tlsCredentialsFromFiles` (./tls.js). */
  readonly credentials?: grpc.ChannelCredentials;
  /** Use the Pipeline stream instead of unary calls. */
  readonly pipeline?: boolean;
  readonly random?: () => number;
  /**
   * Observer of every failed attempt (the call itself may still succeed on a retry): what the
   * server answered, or the transport error, and where it was sent. For tests and metrics that
   * count what a client without retries would have seen. Must not throw.
   */
  readonly onAttemptError?: (error: PaxosClientError, endpoint: string) => void;
}

/** A key and its value. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

/** The result of a compare-and-swap. */
export interface CasResult {
  readonly succeeded: boolean;
  /** On success the replaced value, on mismatch the current one; null when absent. */
  readonly current: string | null;
}

interface Lane {
  readonly session: string;
  seq: number;
}

type Wrapped = { value: string } | null;
const unwrap = (v: Wrapped | undefined): string | null => (v ? v.value : null);

/** How long a hinted address that could not be reached is not followed again. */
const UNUSABLE_HINT_MS = 10_000;
/** Deadline of each Status call that learns which configured endpoint is which node. */
const STATUS_TIMEOUT_MS = 1000;
/** Minimum time between two rounds of Status calls (an unknown id does not trigger a storm). */
const RELEARN_MS = 1000;

const METHODS: Record<PipelineOp, string> = { put: 'Put', get: 'Get', delete: 'Delete', cas: 'CompareAndSwap', range: 'Range' };

/** The client. Call `close()` when done. */
export class PaxosClient {
  private readonly endpoints: string[];
  private leader: string;
  private rotation = 0;
  private readonly pool: ChannelPool;
  /** Hinted addresses that failed before answering, with the time until which to avoid them. */
  private readonly unusable = new Map<string, number>();
  /** Node id → configured endpoint, learnt from Status calls when a hint is unusable. */
  private idEndpoints = new Map<number, string>();
  private learnedAt = -Infinity;
  private learning: Promise<void> | undefined;
  private readonly pipelines = new Map<string, PipelineConnection>();
  private readonly free: Lane[] = [];
  private readonly waiting: Array<(lane: Lane) => void> = [];
  private readonly deadlineMs: number;
  private readonly attemptMs: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;
  private readonly leaderChangeBackoffMaxMs: number;
  private readonly maxQueued: number;
  private readonly random: () => number;
  private closed = false;

  constructor(private readonly options: PaxosClientOptions) {
    if (options.endpoints.length === 0) throw new Error('PaxosClient needs at least one endpoint');
    this.endpoints = [...options.endpoints];
    this.leader = this.endpoints[0] as string;
    this.pool = new ChannelPool(32, options.credentials);
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.attemptMs = Math.min(this.deadlineMs, options.attemptTimeoutMs ?? 2000);
    this.backoffMinMs = options.backoffMinMs ?? 20;
    this.backoffMaxMs = options.backoffMaxMs ?? 1000;
    this.leaderChangeBackoffMaxMs = options.leaderChangeBackoffMaxMs ?? 50;
    this.maxQueued = options.maxQueued ?? 10_000;
    this.random = options.random ?? Math.random;
    const id = options.clientId ?? randomUUID();
    for (let i = 0; i < (options.maxInflight ?? 64); i++) this.free.push({ session: `${id}/${i}`, seq: 0 });
  }

  /** The endpoint currently believed to lead. */
  get leaderEndpoint(): string {
    return this.leader;
  }

  /** Sets `key` to `value`; resolves with the previous value (null when absent). */
  async put(key: string, value: string): Promise<string | null> {
    const res = await this.write<{ previous: Wrapped }>('put', { key, value });
    return unwrap(res.previous);
  }

  /** Deletes `key`; resolves with the previous value. */
  async delete(key: string): Promise<string | null> {
    const res = await this.write<{ previous: Wrapped }>('delete', { key });
    return unwrap(res.previous);
  }

  /** Sets `key` to `value` if its current value is `expected` (`null`: if absent). */
  async cas(key: string, expected: string | null, value: string): Promise<CasResult> {
    const res = await this.write<{ succeeded: boolean; current: Wrapped }>('cas', {
      key,
      expected_absent: expected === null,
      expected: expected ?? '',
      value,
    });
    return { succeeded: res.succeeded, current: unwrap(res.current) };
  }

  /** Linearizable read of `key` (null when absent). */
  async get(key: string): Promise<string | null> {
    const res = await this.call<{ value: Wrapped }>('get', { key }, undefined);
    return unwrap(res.value);
  }

  /** Linearizable read of the keys with `prefix`, in order, at most `limit` (server-capped). */
  async range(prefix: string, limit = 1000): Promise<KeyValue[]> {
    const res = await this.call<{ entries: KeyValue[] }>('range', { prefix, limit }, undefined);
    return res.entries.map((e) => ({ key: e.key, value: e.value }));
  }

  /** Closes channels and streams; pending calls fail. */
  close(): void {
    this.closed = true;
    for (const p of this.pipelines.values()) p.close();
    this.pipelines.clear();
    this.pool.close();
  }

  private async write<Res>(op: PipelineOp, body: object): Promise<Res> {
    const lane = await this.acquire();
    lane.seq++;
    try {
      return await this.call<Res>(op, body, { client_id: lane.session, seq: lane.seq });
    } finally {
      this.release(lane);
    }
  }

  private acquire(): Promise<Lane> {
    const lane = this.free.pop();
    if (lane) return Promise.resolve(lane);
    if (this.waiting.length >= this.maxQueued) {
      return Promise.reject(new PaxosClientError(grpc.status.RESOURCE_EXHAUSTED, `more than ${this.maxQueued} requests queued in the client`));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(lane: Lane): void {
    const next = this.waiting.shift();
    if (next) next(lane);
    else this.free.push(lane);
  }

  /** One logical call: attempts with backoff until success, a final error or the deadline. */
  private async call<Res>(op: PipelineOp, body: object, header: { client_id: string; seq: number } | undefined): Promise<Res> {
    const request = { ...body, header: header ?? { client_id: 'reader', seq: 1 } };
    const deadline = Date.now() + this.deadlineMs;
    let attempt = 0;
    let last: PaxosClientError | undefined;
    /** Hinted addresses that failed in this call, never followed again by it. */
    const failedHints = new Set<string>();
    /** The NOT_LEADER hint the current target was taken from, if it was. */
    let hint: { addr: string; id: number | undefined } | undefined;
    for (;;) {
      if (this.closed) throw new PaxosClientError(grpc.status.CANCELLED, 'client closed');
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new PaxosClientError(grpc.status.DEADLINE_EXCEEDED, `deadline of ${this.deadlineMs} ms exceeded${last ? `; last error: ${last.message}` : ''}`, undefined, undefined, false, {
          cause: last,
        });
      }
      const target = this.leader;
      try {
        return await this.attempt<Res>(target, op, request, Math.min(left, this.attemptMs));
      } catch (err) {
        const e = fromServiceError(err as Error);
        this.options.onAttemptError?.(e, target);
        if (!e.retryable) throw e;
        last = e;
        let immediate = false;
        if (e.notLeader && (e.leaderAddr !== undefined || e.leaderId !== undefined)) {
          const next = await this.leaderRoute(e.leaderId, e.leaderAddr, target, failedHints, deadline);
          if (next !== undefined && next !== target) {
            this.leader = next;
            hint = next === e.leaderAddr ? { addr: next, id: e.leaderId } : undefined;
            immediate = attempt === 0;
          } else {
            this.rotate(target);
          }
        } else if (hint?.addr === target && !this.endpoints.includes(target) && (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED)) {
          // A hinted address that is not one of ours failed: never follow it again in this call.
          // UNAVAILABLE without a NOT_LEADER answer means nothing answered at all (e.g. name
          // resolution failed), so avoid it in later calls too; reach the node by its id.
          failedHints.add(target);
          if (e.code === grpc.status.UNAVAILABLE) this.unusable.set(target, Date.now() + UNUSABLE_HINT_MS);
          const viaId = hint.id === undefined ? undefined : await this.endpointOf(hint.id, deadline);
          hint = undefined;
          if (viaId !== undefined) {
            this.leader = viaId;
            immediate = true; // a different node: no reason to wait
          } else {
            this.rotate(target);
          }
        } else if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) {
          this.dropIfDisconnected(target);
          this.rotate(target);
        }
        attempt++;
        if (!immediate) {
          // A node that answered NOT_LEADER is alive and an election or handover is under way,
          // which settles in milliseconds: poll briskly, so that a leader change does not add
          // exponential backoff steps of hundreds of milliseconds to the clients' write stall.
          const capMs = e.notLeader ? Math.min(this.backoffMaxMs, this.leaderChangeBackoffMaxMs) : this.backoffMaxMs;
          await this.sleep(Math.min(this.backoffDelay(attempt, capMs), Math.max(0, deadline - Date.now())));
        }
      }
    }
  }

  /**
   * Where to send the next attempt after `from` answered NOT_LEADER naming `leaderId` at
   * `leaderAddr`: the hinted address unless it failed before, else the configured endpoint
   * of the hinted id; an address that failed in an earlier call is still tried once when the
   * id has no configured endpoint (nothing better is known); else undefined (rotate).
   */
  private async leaderRoute(
    leaderId: number | undefined,
    leaderAddr: string | undefined,
    from: string,
    failedHints: ReadonlySet<string>,
    deadline: number,
  ): Promise<string | undefined> {
    const hintOk = leaderAddr !== undefined && leaderAddr !== from && !failedHints.has(leaderAddr);
    if (hintOk && !this.isUnusable(leaderAddr)) return leaderAddr;
    let endpoint = leaderId === undefined ? undefined : await this.endpointOf(leaderId, deadline);
    if (endpoint !== undefined && endpoint === from) {
      // `from` is not node `leaderId` after all (it would not name itself): the map is stale.
      this.idEndpoints.delete(leaderId as number);
      this.learnedAt = -Infinity;
      endpoint = undefined;
    }
    return endpoint ?? (hintOk ? leaderAddr : undefined);
  }

  private isUnusable(address: string): boolean {
    const until = this.unusable.get(address);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.unusable.delete(address);
    return false;
  }

  /** The configured endpoint of node `id`, learning the map (again) when `id` is not in it. */
  private async endpointOf(id: number, deadline: number): Promise<string | undefined> {
    if (!this.idEndpoints.has(id) && Date.now() - this.learnedAt >= RELEARN_MS) {
      this.learning ??= this.learnIds(Math.max(1, Math.min(STATUS_TIMEOUT_MS, deadline - Date.now()))).finally(() => {
        this.learning = undefined;
      });
      await this.learning;
    }
    return this.idEndpoints.get(id);
  }

  /** Asks every configured endpoint for its node id (AdminService/Status, same port). */
  private async learnIds(timeoutMs: number): Promise<void> {
    const answers = await Promise.allSettled(
      this.endpoints.map((ep) => unaryCall<{ id: number }>(this.pool.get('AdminClient', ep), 'Status', {}, timeoutMs)),
    );
    const map = new Map<number, string>();
    answers.forEach((a, i) => {
      if (a.status === 'fulfilled') map.set(a.value.id, this.endpoints[i] as string);
    });
    this.idEndpoints = map;
    this.learnedAt = Date.now();
  }

  private attempt<Res>(target: string, op: PipelineOp, request: object, timeoutMs: number): Promise<Res> {
    if (this.options.pipeline) {
      let conn = this.pipelines.get(target);
      if (!conn || conn.broken) {
        conn?.close();
        conn = new PipelineConnection(this.pool.get('KvClient', target));
        this.pipelines.set(target, conn);
      }
      return conn.call(op, request, timeoutMs) as Promise<Res>;
    }
    return unaryCall<Res>(this.pool.get('KvClient', target), METHODS[op], request, timeoutMs);
  }

  /** Forgets an unconnected channel to `target` (see `ChannelPool.dropIfDisconnected`). */
  private dropIfDisconnected(target: string): void {
    if (!this.pool.dropIfDisconnected('KvClient', target)) return;
    this.pipelines.get(target)?.close();
    this.pipelines.delete(target);
  }

  /** Moves on to the next endpoint after `failed` (unless someone already moved on). */
  private rotate(failed: string): void {
    if (this.leader !== failed) return;
    this.rotation = (this.rotation + 1) % this.endpoints.length;
    const next = this.endpoints[this.rotation] as string;
    this.leader = next === failed && this.endpoints.length > 1 ? (this.endpoints[(this.rotation + 1) % this.endpoints.length] as string) : next;
  }

  private backoffDelay(attempt: number, maxMs: number): number {
    const cap = Math.min(maxMs, this.backoffMinMs * 2 ** Math.min(attempt, 20));
    return Math.round(cap * (0.5 + this.random() / 2));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
  }
}
