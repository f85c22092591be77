/**
 * Three nodes in one process over real gRPC and real data directories: leader election,
 * writes through the client library (unary and pipelined), NOT_LEADER hints, group commit,
 * leader failure and restart with recovery from disk.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import * as grpc from '@grpc/grpc-js';
import { AdminClient, PaxosClient, PaxosClientError } from '../client/index.js';
import { unaryCall } from '../client/channels.js';
import { fromServiceError } from '../client/errors.js';
import { nodeConfigSchema, type NodeConfig } from './config.js';
import { CHANNEL_OPTIONS, loadProtos } from './proto.js';
import { NodeServer } from './server.js';
import { LoopbackAddresses } from '../../../test/cluster/loopback.js';

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('three-node cluster in one process', () => {
  const N = 3;
  let root: string;
  let ports: number[];
  let configs: NodeConfig[];
  const nodes: Array<NodeServer | undefined> = [];
  const logger = pino({ level: 'silent' });
  const start = async (i: number): Promise<NodeServer> => {
    const node = await NodeServer.start(configs[i] as NodeConfig, { logger, onFatal: (e) => { throw e; }, processMetrics: false });
    nodes[i] = node;
    return node;
  };
  const addresses = new LoopbackAddresses();
  const endpoints = (): string[] => ports.map((p) => addresses.endpoint(p));
  const node = (i: number): NodeServer => nodes[i] as NodeServer;
  const leaderIndex = (): number => nodes.findIndex((n) => n?.driver.status.role === 'leader');

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'paxos-cluster-'));
    ports = [];
    for (let i = 0; i < N; i++) ports.push(await addresses.port());
    const peers = Object.fromEntries(ports.map((p, i) => [String(i), addresses.endpoint(p)]));
    configs = ports.map((port, id) =>
      nodeConfigSchema.parse({
        id,
        dataDir: path.join(root, `n${id}`),
        peers,
        listenHost: addresses.host,
        peerPort: port,
        metricsPort: 0,
        bootstrapConfig: { epoch: 1, members: [0, 1, 2] },
        electionTimeoutMs: 300,
        heartbeatMs: 50,
        tickMs: 10,
        snapshotThreshold: 150,
        requestTimeoutMs: 3000,
        shutdownGraceMs: 500,
      }),
    );
    for (let i = 0; i < N; i++) await start(i);
    await until(() => leaderIndex() >= 0 && nodes.every((n) => n?.driver.ready));
  });

  afterAll(async () => {
    for (const n of nodes) await n?.shutdown();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('writes and reads through the client, from any endpoint', async () => {
    const client = new PaxosClient({ endpoints: [...endpoints()].reverse(), deadlineMs: 10_000 });
    try {
      expect(await client.put('a', '1')).toBeNull();
      expect(await client.put('a', '2')).toBe('1');
      expect(await client.get('a')).toBe('2');
      expect(await client.cas('a', '1', 'x')).toEqual({ succeeded: false, current: '2' });
      expect(await client.cas('a', '2', '3')).toEqual({ succeeded: true, current: '2' });
      expect(await client.cas('new', null, 'n')).toEqual({ succeeded: true, current: null });
      expect(await client.delete('new')).toBe('n');
      expect(await client.get('new')).toBeNull();
      await client.put('p/1', 'x');
      await client.put('p/2', 'y');
      expect(await client.range('p/')).toEqual([{ key: 'p/1', value: 'x' }, { key: 'p/2', value: 'y' }]);
    } finally {
      client.close();
    }
  });

  it('answers NOT_LEADER with a hint on a follower', async () => {
    const leader = leaderIndex();
    const follower = (leader + 1) % N;
    const kv = new (loadProtos().KvClient)(endpoints()[follower] as string, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    try {
      await unaryCall(kv, 'Put', { header: { client_id: 'raw', seq: 1 }, key: 'k', value: 'v' }, 2000);
      throw new Error('expected NOT_LEADER');
    } catch (err) {
      const e = fromServiceError(err as Error);
      expect(e.code).toBe(grpc.status.UNAVAILABLE);
      expect(e.notLeader).toBe(true);
      expect(e.leaderId).toBe(leader);
      expect(e.leaderAddr).toBe(endpoints()[leader]);
    } finally {
      kv.close();
    }
  });

  it('group-commits concurrent writes (pipelined) into fewer fsyncs than writes', async () => {
    const client = new PaxosClient({ endpoints: endpoints(), pipeline: true, maxInflight: 128, deadlineMs: 15_000 });
    const leader = nodes[leaderIndex()] as NodeServer;
    const before = (await leader.metrics.walSyncs.get()).values[0]?.value ?? 0;
    try {
      await Promise.all(Array.from({ length: 400 }, (_, i) => client.put(`g/${i}`, String(i))));
      const after = (await leader.metrics.walSyncs.get()).values[0]?.value ?? 0;
      // Batching is adaptive: the slower the fsync, the more requests queue behind it and
      // share the next one. Even on a fast disk, concurrent writes must share some.
      expect(after - before).toBeLessThan(400);
      expect((await client.range('g/', 1000)).length).toBe(400);
    } finally {
      client.close();
    }
  });

  it('survives the leader crashing; the restarted node recovers from disk and catches up', async () => {
    const client = new PaxosClient({ endpoints: endpoints(), deadlineMs: 15_000 });
    const admin = new AdminClient({ deadlineMs: 2000 });
    try {
      const old = leaderIndex();
      (nodes[old] as NodeServer).forceStop();
      nodes[old] = undefined;
      for (let i = 0; i < 50; i++) await client.put(`after/${i}`, String(i));
      expect(leaderIndex()).not.toBe(old);
      await start(old);
      await until(async () => {
        const s = await admin.status(endpoints()[old] as string).catch(() => undefined);
        const leader = nodes[leaderIndex()] as NodeServer;
        return s !== undefined && s.caughtUp && s.applied >= leader.driver.store.applied;
      });
      expect(node(old).driver.store.get('after/49')).toBe('49');
      expect(node(old).driver.store.get('g/399')).toBe('399');
      const status = await admin.status(endpoints()[leaderIndex()] as string);
      expect(status.role).toBe('leader');
      expect(status.snapshotIndex).toBeGreaterThan(0); // the threshold was crossed
    } finally {
      client.close();
      admin.close();
    }
  });

  it('rejects bad requests with INVALID_ARGUMENT, without retrying', async () => {
    const client = new PaxosClient({ endpoints: endpoints(), deadlineMs: 5000 });
    try {
      await expect(client.put('', 'v')).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
      await expect(client.put('', 'v')).rejects.toBeInstanceOf(PaxosClientError);
    } finally {
      client.close();
    }
  });
});
