/** A single-node server: probes, metrics, gRPC health, bootstrap rules and graceful stop. */
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { unaryCall } from '../client/channels.js';
import { nodeConfigSchema, type NodeConfig } from './config.js';
import { CHANNEL_OPTIONS, loadProtos } from './proto.js';
import { MissingBootstrapError, NodeServer } from './server.js';
import { LoopbackAddresses } from '../../../test/cluster/loopback.js';

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('NodeServer', () => {
  let dir: string;
  let addresses: LoopbackAddresses;
  let config: NodeConfig;
  const logger = pino({ level: 'silent' });

  beforeEach(async () => {
    addresses = new LoopbackAddresses();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paxos-server-'));
    config = nodeConfigSchema.parse({
      id: 0,
      dataDir: dir,
      listenHost: addresses.host,
      peerPort: await addresses.port(),
      metricsPort: await addresses.port(),
      bootstrapConfig: { epoch: 1, members: [0] },
      tickMs: 10,
      heartbeatMs: 30,
      electionTimeoutMs: 100,
    });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('serves probes, metrics and gRPC health, and stops gracefully', async () => {
    const node = await NodeServer.start(config, { logger, onFatal: (e) => { throw e; }, processMetrics: false });
    const base = `http://${addresses.host}:${node.ports.metrics}`;
    try {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      await until(async () => (await fetch(`${base}/readyz`)).status === 200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('paxos_is_leader{node="0"} 1');
      const health = new (loadProtos().HealthClient)(addresses.endpoint(node.ports.client), grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      try {
        await until(async () => (await unaryCall<{ status: string }>(health, 'Check', { service: '' }, 1000)).status === 'SERVING');
        await expect(unaryCall(health, 'Check', { service: 'nope' }, 1000)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      } finally {
        health.close();
      }
    } finally {
      await node.shutdown();
    }
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('refuses an empty data directory without a bootstrap configuration', async () => {
    const { bootstrapConfig: _omitted, ...rest } = config;
    await expect(NodeServer.start({ ...rest }, { logger, onFatal: () => undefined, processMetrics: false })).rejects.toBeInstanceOf(MissingBootstrapError);
  });

  it('ignores the bootstrap configuration once the directory holds state', async () => {
    const first = await NodeServer.start(config, { logger, onFatal: (e) => { throw e; }, processMetrics: false });
    await first.shutdown();
    const { bootstrapConfig: _omitted, ...rest } = config;
    const second = await NodeServer.start({ ...rest, metricsPort: 0 }, { logger, onFatal: (e) => { throw e; }, processMetrics: false });
    try {
      expect(second.driver.status.config).toEqual({ epoch: 1, members: [0] });
    } finally {
      await second.shutdown();
    }
  });
});
