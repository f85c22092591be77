/**
 * The channel pool drops a channel that cannot connect, so that the next call resolves the name
 * again and dials without the old channel's reconnect backoff (a pod back with a new IP).
 */
import * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import { loadProtos } from '../io/proto.js';
import { ChannelPool, unaryCall } from './channels.js';

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('ChannelPool', () => {
  const pool = new ChannelPool();
  let server: grpc.Server | undefined;
  afterAll(() => {
    pool.close();
    server?.forceShutdown();
  });

  it('drops a channel that failed to connect and keeps a connected one', async () => {
    const dead = `127.0.0.1:${await closedPort()}`;
    const first = pool.get('AdminClient', dead);
    await expect(unaryCall(first, 'Status', {}, 500)).rejects.toMatchObject({ code: expect.any(Number) });
    expect(pool.dropIfDisconnected('AdminClient', dead)).toBe(true);
    expect(pool.get('AdminClient', dead)).not.toBe(first); // a fresh channel

    server = new grpc.Server();
    server.addService(loadProtos().admin, {
      Status: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { id: 7 }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server?.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const live = `127.0.0.1:${port}`;
    const client = pool.get('AdminClient', live);
    await expect(unaryCall(client, 'Status', {}, 2000)).resolves.toMatchObject({ id: 7 });
    expect(pool.dropIfDisconnected('AdminClient', live)).toBe(false);
    expect(pool.get('AdminClient', live)).toBe(client);
  });

  it('cancels a call when its signal fires, and refuses to send one whose signal already fired', async () => {
    const hanging = new grpc.Server();
    let cancelledOnServer = false;
    hanging.addService(loadProtos().admin, {
      // Never answers; notes the client's cancel.
      Convert: (call: grpc.ServerUnaryCall<unknown, unknown>) => { call.on('cancelled', () => { cancelledOnServer = true; }); },
    });
    try {
      const port = await new Promise<number>((resolve, reject) =>
        hanging.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
      );
      const client = pool.get('AdminClient', `127.0.0.1:${port}`);
      const controller = new AbortController();
      const started = Date.now();
      const call = unaryCall(client, 'Convert', {}, 30_000, controller.signal);
      setTimeout(() => controller.abort(), 200);
      await expect(call).rejects.toMatchObject({ code: grpc.status.CANCELLED });
      expect(Date.now() - started).toBeLessThan(2_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(cancelledOnServer).toBe(true);
      await expect(unaryCall(client, 'Convert', {}, 30_000, controller.signal)).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    } finally {
      hanging.forceShutdown();
    }
  });
});
