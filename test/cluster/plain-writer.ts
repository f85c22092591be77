/**
 * A client of `proto/paxos.proto` with nothing of our client library: grpc-js stubs loaded from
 * the proto, one unary Put per write, each sent exactly once (no retry, no backoff), to the node
 * it believes leads. What a third-party client written from the proto alone sees.
 *
 * It follows the proto's NOT_LEADER convention only for *later* writes: a NOT_LEADER answer is
 * counted as a refusal and the hinted leader becomes the target of the next write. Every answer
 * other than OK is counted by status code, so a test can tell server refusals
 * (RESOURCE_EXHAUSTED, UNAVAILABLE with `x-paxos-error: not-leader`, ...) from the rest.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

type PutFn = (
  req: object,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

/** What the writer saw. */
export interface PlainWriterCounts {
  /** Writes answered OK. */
  ok: number;
  /** Non-OK answers by status name, NOT_LEADER answers as `NOT_LEADER`. */
  refused: Record<string, number>;
  /** Up to 20 refusal messages, for diagnostics. */
  samples: string[];
}

/** Options of the writer. */
export interface PlainWriterOptions {
  /** host:port of every node that may lead; the first is tried first. */
  readonly endpoints: readonly string[];
  /** Deadline of each Put (the client's own; nothing retries within it). */
  readonly deadlineMs: number;
  /** Pause between writes of one lane. */
  readonly intervalMs: number;
  /** Concurrent lanes, each with its own session. */
  readonly lanes: number;
  /** How to dial (default plaintext): the cluster's client credentials when TLS is on. */
  readonly credentials?: grpc.ChannelCredentials;
}

/** Writes unique keys `plain/<lane>/<seq>` until stopped; see the file comment. */
export class PlainWriter {
  readonly counts: PlainWriterCounts = { ok: 0, refused: {}, samples: [] };
  /** Values acknowledged, by key. */
  readonly acked = new Map<string, string>();
  private readonly clients = new Map<string, grpc.Client>();
  private readonly Kv: grpc.ServiceClientConstructor;
  private target: string;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly session = `plain-${process.pid}-${Date.now()}`;

  constructor(private readonly options: PlainWriterOptions) {
    if (options.endpoints.length === 0) throw new Error('PlainWriter needs an endpoint');
    const def = protoLoader.loadSync('paxos.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { paxos: { v1: { KvService: grpc.ServiceClientConstructor } } };
    this.Kv = pkg.paxos.v1.KvService;
    this.target = options.endpoints[0] as string;
  }

  /** Total non-OK answers. */
  get refusals(): number {
    return Object.values(this.counts.refused).reduce((a, b) => a + b, 0);
  }

  start(): void {
    this.running = true;
    for (let lane = 0; lane < this.options.lanes; lane++) {
      this.loops.push(
        (async () => {
          for (let seq = 1; this.running; seq++) {
            const key = `plain/${lane}/${seq}`;
            await this.put(lane, seq, key, String(seq));
            await new Promise((r) => setTimeout(r, this.options.intervalMs));
          }
        })(),
      );
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(address: string): grpc.Client {
    let c = this.clients.get(address);
    if (!c) {
      c = new this.Kv(address, this.options.credentials ?? grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0 });
      this.clients.set(address, c);
    }
    return c;
  }

  private put(lane: number, seq: number, key: string, value: string): Promise<void> {
    const target = this.target;
    const fn = (this.client(target) as unknown as Record<string, PutFn>)['Put'] as PutFn;
    const req = { header: { client_id: `${this.session}/${lane}`, seq }, key, value };
    return new Promise<void>((resolve) => {
      fn.call(this.client(target), req, { deadline: Date.now() + this.options.deadlineMs }, (err) => {
        if (!err) {
          this.counts.ok++;
          this.acked.set(key, value);
          return resolve();
        }
        const notLeader = err.metadata?.get('x-paxos-error')[0] === 'not-leader';
        const name = notLeader ? 'NOT_LEADER' : (grpc.status[err.code] ?? String(err.code));
        this.counts.refused[name] = (this.counts.refused[name] ?? 0) + 1;
        if (this.counts.samples.length < 20) this.counts.samples.push(`${key} at ${target}: ${name} ${err.details}`);
        // The next write goes where the answer points (or to the next endpoint when it names nobody).
        const hinted = err.metadata?.get('x-paxos-leader-addr')[0];
        if (this.target === target) {
          if (typeof hinted === 'string' && hinted !== '') this.target = hinted;
          else {
            const eps = this.options.endpoints;
            this.target = eps[(eps.indexOf(target) + 1) % eps.length] as string;
          }
        }
        resolve();
      });
    });
  }
}
