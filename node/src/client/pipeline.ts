/**
 * One `KvService/Pipeline` stream: many requests in flight, matched to responses by id.
 * A broken stream fails everything in flight with UNAVAILABLE (the caller retries with the
 * same session and seq, so nothing is applied twice).
 */
import * as grpc from '@grpc/grpc-js';
import { trace, tracing } from '../io/trace.js';
import { PaxosClientError } from './errors.js';

/** The operations of the KV API. */
export type PipelineOp = 'put' | 'get' | 'delete' | 'cas' | 'range';

interface Inflight {
  resolve: (v: object) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface WireError { code: number; message: string; not_leader: boolean; leader_id: number; leader_addr: string }

/** A pipelined stream to one node. */
export class PipelineConnection {
  private readonly stream: grpc.ClientDuplexStream<object, Record<string, unknown>>;
  private readonly inflight = new Map<number, Inflight>();
  private nextId = 1;
  broken = false;

  constructor(client: grpc.Client) {
    const open = (client as unknown as { Pipeline: () => grpc.ClientDuplexStream<object, Record<string, unknown>> }).Pipeline;
    this.stream = open.call(client);
    this.stream.on('data', (res: Record<string, unknown>) => this.onResponse(res));
    const fail = (err?: Error): void => {
      this.broken = true;
      const e = new PaxosClientError(grpc.status.UNAVAILABLE, `pipeline stream closed${err ? `: ${err.message}` : ''}`);
      for (const [id, f] of this.inflight) {
        clearTimeout(f.timer);
        f.reject(e);
        this.inflight.delete(id);
      }
    };
    this.stream.on('error', fail);
    this.stream.on('end', () => fail());
  }

  /** Sends one request; rejects after `timeoutMs` with DEADLINE_EXCEEDED. */
  call(op: PipelineOp, request: object, timeoutMs: number): Promise<object> {
    if (this.broken) return Promise.reject(new PaxosClientError(grpc.status.UNAVAILABLE, 'pipeline stream closed'));
    const id = this.nextId++;
    return new Promise<object>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.inflight.delete(id);
        reject(new PaxosClientError(grpc.status.DEADLINE_EXCEEDED, `no response within ${timeoutMs} ms`));
      }, timeoutMs);
      this.inflight.set(id, { resolve, reject, timer });
      if (tracing) trace('client.write', id);
      this.stream.write({ request_id: id, [op]: request });
    });
  }

  close(): void {
    this.broken = true;
    this.stream.cancel();
  }

  private onResponse(res: Record<string, unknown>): void {
    const id = res.request_id as number;
    if (tracing) trace('client.recv', id);
    const f = this.inflight.get(id);
    if (!f) return; // timed out already
    this.inflight.delete(id);
    clearTimeout(f.timer);
    const kind = res.response as string | undefined;
    if (kind === 'error') {
      const e = res.error as WireError;
      f.reject(
        new PaxosClientError(e.code, e.message, e.leader_id >= 0 ? e.leader_id : undefined, e.leader_addr || undefined, e.not_leader),
      );
    } else if (kind) {
      f.resolve(res[kind] as object);
    } else {
      f.reject(new PaxosClientError(grpc.status.INTERNAL, 'empty pipeline response'));
    }
  }
}
