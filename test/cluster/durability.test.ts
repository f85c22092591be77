/**
 * Process-level tests: real node processes, kill -9, restarts from disk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PaxosClient } from '../../node/src/client/index.js';
import type { Config } from '../../node/src/core/types.js';
import { ProcessCluster } from './harness.js';

import { jest } from '@jest/globals';

jest.setTimeout(180_000);

const CONFIG3: Config = { epoch: 1, members: [0, 1, 2] };
const IDS = [0, 1, 2];

async function writeAll(client: PaxosClient, prefix: string, n: number, acked: Map<string, string>): Promise<void> {
  for (let i = 0; i < n; i++) {
    const key = `${prefix}/${i}`;
    await client.put(key, `v${i}`);
    acked.set(key, `v${i}`);
  }
}

async function verify(client: PaxosClient, acked: Map<string, string>): Promise<void> {
  for (const [key, value] of acked) expect(await client.get(key)).toBe(value);
}

describe('process cluster: durability', () => {
  let cluster: ProcessCluster;
  let client: PaxosClient;

  beforeEach(async () => {
    cluster = await ProcessCluster.create({ capacity: 3, flags: ['--snapshot-threshold', '100'] });
    for (const id of IDS) cluster.start(id, CONFIG3);
    await cluster.waitStable(IDS);
    client = new PaxosClient({ endpoints: cluster.endpoints(IDS), deadlineMs: 20_000, ...cluster.clientCredentials() });
  });

  afterEach(async () => {
    client.close();
    await cluster.destroy();
  });

  it('acknowledged writes survive kill -9 of any minority, then of all nodes at once', async () => {
    const acked = new Map<string, string>();
    await writeAll(client, 'a', 30, acked);
    for (const victim of IDS) {
      await cluster.kill(victim);
      await writeAll(client, `minority-${victim}`, 20, acked);
      cluster.start(victim, CONFIG3);
      await cluster.waitStable(IDS);
    }
    // Writes in flight while everything dies: only the acknowledged ones must survive.
    const inflight = writeAll(client, 'crash', 1000, acked).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all(IDS.map((id) => cluster.kill(id)));
    await inflight;
    for (const id of IDS) cluster.start(id, CONFIG3);
    await cluster.waitStable(IDS);
    await verify(client, acked);
  });

  it('a node behind the compaction point catches up through a snapshot', async () => {
    const leader = await cluster.waitStable(IDS);
    const lagging = (leader + 1) % 3;
    await cluster.kill(lagging);
    const acked = new Map<string, string>();
    await writeAll(client, 'behind', 250, acked);
    // Make sure the live nodes have compacted past everything the lagging node has.
    for (const id of IDS.filter((i) => i !== lagging)) await cluster.admin.snapshot(cluster.endpoint(id));
    const leaderStatus = await cluster.status(leader);
    expect(leaderStatus?.snapshotIndex).toBeGreaterThan(200);
    cluster.start(lagging, CONFIG3);
    await cluster.waitApplied(lagging, leaderStatus?.applied ?? 0);
    const s = await cluster.status(lagging);
    expect(s?.snapshotIndex).toBeGreaterThan(0);
    expect(fs.readdirSync(path.join(cluster.dataDir(lagging), 'snap')).length).toBe(1);
    await verify(client, acked);
  });

  it('a torn tail is truncated on restart; a corrupt middle record stops the node with a clear error', async () => {
    const acked = new Map<string, string>();
    await writeAll(client, 't', 20, acked);
    const leader = await cluster.waitStable(IDS);
    const victim = (leader + 1) % 3;
    const graceful = await cluster.stop(victim);
    expect(graceful.code).toBe(0); // SIGTERM: finish, flush, exit 0
    const walDir = path.join(cluster.dataDir(victim), 'wal');
    const segment = path.join(walDir, fs.readdirSync(walDir).filter((n) => n.endsWith('.log')).sort().at(-1) as string);

    // Torn tail: half a frame header at the end.
    fs.appendFileSync(segment, Buffer.from([0x10, 0x00, 0x00]));
    cluster.start(victim, CONFIG3);
    await cluster.waitStable(IDS);
    expect(cluster.logs(victim)).toContain('truncating torn tail');
    await cluster.stop(victim);

    // Corrupt middle: flip a byte inside the first record after the segment header.
    const buf = fs.readFileSync(segment);
    const at = 8 + 9 + 2;
    buf[at] = (buf[at] as number) ^ 0xff;
    fs.writeFileSync(segment, buf);
    cluster.start(victim, CONFIG3);
    const exit = await cluster.exited(victim);
    expect(exit.code).toBe(3);
    expect(exit.stderr).toContain('refusing to start');
    expect(exit.stderr).toContain(segment);
    // The other two still serve.
    await client.put('still', 'ok');
    expect(await client.get('still')).toBe('ok');
  });
});
