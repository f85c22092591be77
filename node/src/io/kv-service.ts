/**
 * The gRPC edge of the key-value API (`paxos.v1.KvService`): validates requests, hands them to
 * the driver and converts results and typed errors to responses and status codes.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { KvResult } from '../core/kv.js';
import type { KvOp } from '../core/types.js';
import type { Driver } from './driver.js';
import { InvalidRequestError, META_ERROR, NotLeaderError, StaleSequenceError, grpcCode, toGrpcError } from './errors.js';
import type { NodeMetrics } from './metrics.js';
import { trace, tracing } from './trace.js';

/** Request bounds, well below the gRPC message bound. */
export const KV_LIMITS = {
  keyBytesMax: 4096,
  valueBytesMax: 1024 * 1024,
  clientIdBytesMax: 256,
  rangeLimitDefault: 1000,
  rangeLimitMax: 10_000,
  /** Requests in flight on one Pipeline stream before it answers RESOURCE_EXHAUSTED. */
  pipelineInflightMax: 1024,
} as const;

interface Header { client_id: string; seq: number }
interface Wire {
  header?: Header | null;
  key?: string;
  value?: string;
  expected_absent?: boolean;
  expected?: string;
  prefix?: string;
  limit?: number;
}
type Op = 'put' | 'get' | 'delete' | 'cas' | 'range';

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
const wrap = (v: string | null | undefined): { value: string } | null => (v === null || v === undefined ? null : { value: v });

function header(req: Wire): Header {
  const h = req.header;
  if (!h || !h.client_id) throw new InvalidRequestError('header.client_id is required');
  if (bytes(h.client_id) > KV_LIMITS.clientIdBytesMax) throw new InvalidRequestError('client_id too long');
  if (!Number.isSafeInteger(h.seq) || h.seq < 1) throw new InvalidRequestError('header.seq must be a positive integer');
  return h;
}

function key(k: string | undefined): string {
  if (!k) throw new InvalidRequestError('key is required');
  if (bytes(k) > KV_LIMITS.keyBytesMax) throw new InvalidRequestError(`key longer than ${KV_LIMITS.keyBytesMax} bytes`);
  return k;
}

function value(v: string | undefined, what = 'value'): string {
  if (bytes(v ?? '') > KV_LIMITS.valueBytesMax) throw new InvalidRequestError(`${what} longer than ${KV_LIMITS.valueBytesMax} bytes`);
  return v ?? '';
}

function written(result: KvResult, client: string, seq: number): KvResult & { ok: true } {
  if (result.ok) return result;
  if (result.code === 'staleSequence') throw new StaleSequenceError(client, seq);
  return result as never;
}

/** Executes one request of any kind; the response object matches the proto. */
export async function execute(driver: Driver, op: Op, req: Wire): Promise<object> {
  switch (op) {
    case 'put': {
      const h = header(req);
      const kvOp: KvOp = { type: 'put', key: key(req.key), value: value(req.value) };
      const r = written(await driver.submit(h.client_id, h.seq, kvOp), h.client_id, h.seq);
      return { previous: wrap(r.value) };
    }
    case 'delete': {
      const h = header(req);
      const r = written(await driver.submit(h.client_id, h.seq, { type: 'delete', key: key(req.key) }), h.client_id, h.seq);
      return { previous: wrap(r.value) };
    }
    case 'cas': {
      const h = header(req);
      const kvOp: KvOp = {
        type: 'cas',
        key: key(req.key),
        expected: req.expected_absent ? null : value(req.expected, 'expected'),
        value: value(req.value),
      };
      const r = await driver.submit(h.client_id, h.seq, kvOp);
      if (r.ok) return { succeeded: true, current: wrap(r.value) };
      if (r.code === 'staleSequence') throw new StaleSequenceError(h.client_id, h.seq);
      return { succeeded: false, current: wrap(r.current) };
    }
    case 'get':
      return { value: wrap(await driver.get(key(req.key))) };
    case 'range': {
      const limit = req.limit ? Math.min(req.limit, KV_LIMITS.rangeLimitMax) : KV_LIMITS.rangeLimitDefault;
      if (bytes(req.prefix ?? '') > KV_LIMITS.keyBytesMax) throw new InvalidRequestError('prefix too long');
      return { entries: await driver.range(req.prefix ?? '', limit) };
    }
  }
}

/** Builds the KvService handlers. */
export function kvHandlers(driver: Driver, logger: Logger, metrics?: NodeMetrics): grpc.UntypedServiceImplementation {
  const count = (op: string, err?: unknown): void => {
    metrics?.clientRequests.inc({ op, code: err === undefined ? 'OK' : grpc.status[grpcCode(err)] });
  };
  const unary =
    (op: Op): grpc.handleUnaryCall<Wire, object> =>
    (call, callback) => {
      execute(driver, op, call.request).then(
        (response) => {
          count(op);
          callback(null, response);
        },
        (err: unknown) => {
          count(op, err);
          if (grpcCode(err) === grpc.status.INTERNAL) logger.error({ err, op }, 'request failed');
          callback(toGrpcError(err) as grpc.ServiceError);
        },
      );
    };

  const pipeline: grpc.handleBidiStreamingCall<Wire & { request_id: number; request?: Op }, object> = (call) => {
    let inflight = 0;
    let ended = false;
    const maybeEnd = (): void => {
      if (ended && inflight === 0) call.end();
    };
    call.on('data', (req: Wire & { request_id: number; request?: Op } & Record<string, unknown>) => {
      const id = req.request_id;
      const op = req.request;
      if (tracing) trace('rpc.recv', id);
      if (!op) {
        call.write({ request_id: id, error: { code: grpc.status.INVALID_ARGUMENT, message: 'empty request', not_leader: false, leader_id: -1, leader_addr: '' } });
        return;
      }
      if (inflight >= KV_LIMITS.pipelineInflightMax) {
        call.write({
          request_id: id,
          error: { code: grpc.status.RESOURCE_EXHAUSTED, message: 'too many requests in flight on this stream', not_leader: false, leader_id: -1, leader_addr: '' },
        });
        return;
      }
      inflight++;
      execute(driver, op, req[op] as Wire).then(
        (response) => {
          count(op);
          if (tracing) trace('rpc.reply', id);
          call.write({ request_id: id, [op]: response });
        },
        (err: unknown) => {
          count(op, err);
          const notLeader = err instanceof NotLeaderError;
          call.write({
            request_id: id,
            error: {
              code: grpcCode(err),
              message: (err as Error).message,
              not_leader: notLeader,
              leader_id: notLeader && err.leader !== undefined ? err.leader : -1,
              leader_addr: notLeader ? (err.leaderAddr ?? '') : '',
            },
          });
        },
      ).finally(() => {
        inflight--;
        maybeEnd();
      });
    });
    call.on('end', () => {
      ended = true;
      maybeEnd();
    });
    call.on('error', () => undefined); // a cancelled stream: results are dropped
  };

  return {
    Put: unary('put'),
    Get: unary('get'),
    Delete: unary('delete'),
    CompareAndSwap: unary('cas'),
    Range: unary('range'),
    Pipeline: pipeline,
  };
}

export { META_ERROR };
