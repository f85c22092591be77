/**
 * A TCP proxy on 127.0.0.1 in front of the API server that can stall: while stalled, no byte
 * moves in either direction on any connection (open ones and new ones), as when an API server
 * or the network path to it stops answering without closing anything. TLS passes through
 * untouched (the API server's certificate names 127.0.0.1).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A stallable TCP proxy to `target`. */
export class StallProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private stalled = false;
  /** Bytes that arrived while stalled, per socket, delivered on resume (nothing is lost, only late). */
  private readonly held = new Map<Socket, Buffer[]>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : 0;
    return this;
  }

  /** Stops forwarding on every connection until {@link StallProxy.resume}. */
  stall(): void {
    this.stalled = true;
  }

  /** Forwards again, first what was held back. */
  resume(): void {
    this.stalled = false;
    for (const [socket, chunks] of this.held) {
      for (const chunk of chunks) if (!socket.destroyed) socket.write(chunk);
    }
    this.held.clear();
  }

  async stop(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }

  private accept(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (this.stalled) {
          const chunks = this.held.get(to) ?? [];
          chunks.push(chunk);
          this.held.set(to, chunks);
        } else if (!to.destroyed) {
          to.write(chunk);
        }
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.held.delete(client);
      this.held.delete(upstream);
      this.pairs.delete(pair);
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  }
}
