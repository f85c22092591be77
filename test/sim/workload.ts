import type { KvResult } from '../../node/src/core/kv.js';
import type { KvOp, NodeId } from '../../node/src/core/types.js';
import type { History, KvCall, KvOutput } from './history.js';
import type { NodeReply, SimNode } from './process.js';
import type { Rng } from './rng.js';

/** Tunables of the client workload. */
export interface WorkloadOptions {
  readonly clients: number;
  /** Keys k0..k(n-1): few, so that operations conflict often. */
  readonly keys: number;
  /** Probability per tick that an idle client starts an operation. */
  readonly startRate: number;
  /** An attempt with no answer after this many ticks is retried elsewhere (same seq for writes). */
  readonly attemptTimeoutTicks: number;
  /** Probability that an answer is lost on its way back to the client. */
  replyLossRate: number;
  /** Fraction of gets sent through the log (`propose` of a get) rather than read index. */
  readonly logReadRate: number;
}

/** The cluster as a client sees it: the pods it may call. */
export interface ClientPort {
  readonly now: number;
  ids(): NodeId[];
  node(id: NodeId): SimNode | undefined;
  /** Records an anomaly that is not a linearizability question (e.g. a stale-session answer). */
  anomaly(message: string): void;
  /** Verbose runs: where client events go (invocations, answers, retries). */
  readonly log?: (text: string) => void;
}

interface InFlight {
  readonly historyId: number;
  readonly call: KvCall;
  /** Session sequence number: writes and log reads carry one, read-index reads do not. */
  readonly seq: number | undefined;
  target: NodeId;
  deadline: number;
  /** Set when the last attempt was refused: resend at this tick. */
  retryAt: number | undefined;
  attempts: number;
}

/**
 * One client: a session id, an increasing sequence number, at most one operation in flight.
 *
 * Writes go to the leader through `propose` and are answered by that node's driver when the
 * command is applied there. A write is retried with the same sequence number until it gets an
 * answer, so the KV sessions make it happen at most once; that is why one history record covers
 * every attempt. Reads use read index on the leader. The client finds the leader from refusals'
 * hints, or by trying the next node.
 */
export class Client {
  private seq = 0;
  private op: InFlight | undefined;
  private guess: NodeId = 0;
  /** The value this client last saw per key: compare-and-swap expects it, so swaps often succeed. */
  private readonly seen = new Map<string, string | null>();
  completed = 0;

  constructor(
    readonly id: string,
    private readonly rng: Rng,
    private readonly history: History,
    private readonly port: ClientPort,
    private readonly options: WorkloadOptions,
  ) {}

  /** True while an operation waits for its answer. */
  get busy(): boolean {
    return this.op !== undefined;
  }

  /** One tick: maybe start an operation (when `mayStart`), resend refused or timed-out attempts. */
  tick(mayStart: boolean): void {
    const now = this.port.now;
    if (this.op === undefined) {
      if (mayStart && this.rng.chance(this.options.startRate)) this.begin();
      return;
    }
    if (this.op.retryAt !== undefined ? now >= this.op.retryAt : now >= this.op.deadline) {
      if (this.op.retryAt === undefined) this.op.target = this.nextNode(this.op.target);
      this.send();
    }
  }

  private begin(): void {
    const call = this.randomCall();
    const viaLog = call.type !== 'get' || this.rng.chance(this.options.logReadRate);
    const seq = viaLog ? ++this.seq : undefined;
    const historyId = this.history.invoke(this.id, call, this.port.now);
    this.port.log?.(`client ${this.id} invokes #${historyId} ${JSON.stringify(call)}${seq === undefined ? '' : ` seq ${seq}`}`);
    this.op = { historyId, call, seq, target: this.guess, deadline: 0, retryAt: undefined, attempts: 0 };
    this.send();
  }

  private send(): void {
    const op = this.op as InFlight;
    op.retryAt = undefined;
    op.attempts++;
    op.deadline = this.port.now + this.options.attemptTimeoutTicks;
    const node = this.port.node(op.target);
    if (op.attempts > 1) this.port.log?.(`client ${this.id} retries #${op.historyId} on node ${op.target} (attempt ${op.attempts})`);
    if (node === undefined || !node.up) {
      // Connection refused: try the next pod on the next tick.
      op.target = this.nextNode(op.target);
      op.retryAt = this.port.now + 1;
      return;
    }
    const historyId = op.historyId;
    const reply = (r: NodeReply): void => this.onReply(historyId, r);
    if (op.seq === undefined) node.read(op.call.key, reply);
    else node.propose(this.id, op.seq, toKvOp(op.call), reply);
  }

  private onReply(historyId: number, reply: NodeReply): void {
    const op = this.op;
    // An answer to an earlier attempt of the current operation is as good as any: a write's
    // session makes every attempt one execution, and every read attempt lies inside the operation.
    if (op === undefined || op.historyId !== historyId) return;
    if (this.rng.chance(this.options.replyLossRate)) return;
    const now = this.port.now;
    switch (reply.kind) {
      case 'result':
        this.finish(op, reply.result);
        return;
      case 'dropped':
        op.target = this.nextNode(op.target);
        op.retryAt = now + 1;
        return;
      case 'failed':
        // A timeout, an unknown outcome, a node shutting down: the same request again (a
        // write keeps its seq, so the session applies it at most once).
        op.retryAt = now + 2;
        return;
      case 'refused': {
        const r = reply.refusal;
        if (r.reason === 'notLeader') {
          const hinted = r.leader !== undefined && r.leader !== op.target;
          op.target = hinted ? (r.leader as NodeId) : this.nextNode(op.target);
          this.guess = op.target;
          // Without a hint the cluster may be electing: back off a little.
          op.retryAt = now + (hinted ? 1 : 3);
        } else {
          op.retryAt = now + 5;
        }
      }
    }
  }

  private finish(op: InFlight, result: KvResult): void {
    if (!result.ok && result.code === 'staleSequence') {
      // Impossible for the client's only outstanding request: its session cannot be ahead of it.
      this.port.anomaly(`client ${this.id} seq ${op.seq}: staleSequence for its current request`);
      return;
    }
    const output: KvOutput = result.ok ? { ok: true, value: result.value ?? null } : { ok: false, code: 'casMismatch', current: result.current ?? null };
    this.history.complete(op.historyId, output, this.port.now);
    this.port.log?.(`client ${this.id} gets #${op.historyId} -> ${JSON.stringify(output)}`);
    this.guess = op.target;
    this.op = undefined;
    this.completed++;
    const key = op.call.key;
    if (output.ok) {
      const c = op.call;
      this.seen.set(key, c.type === 'get' ? (output.value ?? null) : c.type === 'delete' ? null : c.value);
    } else {
      this.seen.set(key, output.current ?? null);
    }
  }

  private randomCall(): KvCall {
    const key = `k${this.rng.int(this.options.keys)}`;
    const value = `${this.id}.${this.seq + 1}`;
    const roll = this.rng.int(100);
    if (roll < 35) return { type: 'get', key };
    if (roll < 65) return { type: 'put', key, value };
    if (roll < 85) return { type: 'cas', key, expected: this.rng.chance(0.2) ? null : (this.seen.get(key) ?? null), value };
    return { type: 'delete', key };
  }

  private nextNode(after: NodeId): NodeId {
    const ids = this.port.ids();
    if (ids.length === 0) return after;
    return ids.find((id) => id > after) ?? (ids[0] as NodeId);
  }
}

function toKvOp(call: KvCall): KvOp {
  return call;
}
