/** A bounded pool of gRPC clients per address, shared by the KV and admin clients. */
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, loadProtos } from '../io/proto.js';

type Kind = 'KvClient' | 'AdminClient' | 'HealthClient';

/** Clients keyed by kind and address; the oldest is closed beyond `max`. */
export class ChannelPool {
  private readonly clients = new Map<string, grpc.Client>();

  /** `credentials`: how to dial (default plaintext; see tls.ts for TLS). */
  constructor(
    private readonly max = 32,
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {}

  get(kind: Kind, address: string): grpc.Client {
    const key = `${kind}|${address}`;
    let client = this.clients.get(key);
    if (!client) {
      const Ctor = loadProtos()[kind];
      client = new Ctor(address, this.credentials, CHANNEL_OPTIONS);
      this.clients.set(key, client);
      if (this.clients.size > this.max) {
        const [oldestKey, oldest] = this.clients.entries().next().value as [string, grpc.Client];
        oldest.close();
        this.clients.delete(oldestKey);
      }
    }
    return client;
  }

  /**
   * Drops the channel to `address` if it is not connected (connecting, or failing): the next
   * call then dials afresh, with a new name resolution and no inherited reconnect backoff. A pod
   * that came back with a new IP is reached at once instead of after the old channel gives up.
   * A connected channel is kept: other calls may be in flight on it.
   */
  dropIfDisconnected(kind: Kind, address: string): boolean {
    const key = `${kind}|${address}`;
    const client = this.clients.get(key);
    if (!client) return false;
    const state = client.getChannel().getConnectivityState(false);
    if (state !== grpc.connectivityState.CONNECTING && state !== grpc.connectivityState.TRANSIENT_FAILURE) return false;
    client.close();
    this.clients.delete(key);
    return true;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/**
 * Calls a unary method with a deadline and returns a promise. `signal` cancels the call when it
 * fires (the promise rejects with gRPC status CANCELLED).
 */
export function unaryCall<Res>(client: grpc.Client, method: string, request: object, deadlineMs: number, signal?: AbortSignal): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const fn = (client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall>)[method];
    if (!fn) {
      reject(new Error(`no method ${method}`));
      return;
    }
    if (signal?.aborted === true) {
      reject(Object.assign(new Error(`${method} cancelled before it was sent`), { code: grpc.status.CANCELLED, details: 'cancelled', metadata: new grpc.Metadata() }));
      return;
    }
    const onAbort = (): void => call.cancel();
    const call = fn.call(client, request, { deadline: Date.now() + deadlineMs }, (err, res) => {
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(res);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
