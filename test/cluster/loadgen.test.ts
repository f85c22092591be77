/**
 * The benchmark's Go load generator (bench/loadgen) against real node processes: its
 * hand-encoded messages of proto/paxos.proto are understood by the node (puts and gets, unary
 * and on the Pipeline stream), and it speaks bench/load.ts's line protocol. Needs the binary
 * from `npm run tools:build` (fails, never skips, without it).
 */
import { jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PaxosClient } from '../../node/src/client/index.js';
import { ProcessCluster } from './harness.js';

jest.setTimeout(120_000);

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(process.env.TOOLS_BIN_DIR ?? path.join(REPO, '.tools', 'bin'), 'bench-loadgen');

type Event = Record<string, unknown> & { event: string };

/** Runs the load generator through `commands`, returning every event it printed. */
async function drive(spec: object, commands: object[]): Promise<Event[]> {
  const child = spawn(BIN, [JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const events: Event[] = [];
  const lines = createInterface({ input: child.stdout });
  const results = (): number => events.filter((e) => e.event === 'result').length;
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let sent = 0;
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  for await (const line of lines) {
    events.push(JSON.parse(line) as Event);
    const last = events.at(-1) as Event;
    if (last.event === 'ready' || (last.event === 'result' && results() === sent)) {
      const next = commands[sent];
      child.stdin.write(`${JSON.stringify(next ?? { cmd: 'exit' })}\n`);
      if (next) sent++;
    }
  }
  clearTimeout(timer);
  const code = await exited;
  if (code !== 0) throw new Error(`bench-loadgen exited ${code}: ${stderr}`);
  return events;
}

describe('bench/loadgen against real nodes', () => {
  let cluster: ProcessCluster | undefined;
  afterAll(async () => cluster?.destroy());

  it.each([true, false])('puts and linearizable gets succeed (pipeline: %s)', async (pipeline) => {
    if (!existsSync(BIN)) throw new Error(`${BIN} missing: run \`npm run tools:build\``);
    cluster ??= await ProcessCluster.create({ capacity: 3, tls: false });
    if (!(await cluster.status(0))) for (const id of [0, 1, 2]) cluster.start(id, { epoch: 1, members: [0, 1, 2] });
    const leader = await cluster.waitStable([0, 1, 2]);
    const endpoints = cluster.endpoints([0, 1, 2]);
    const events = await drive({ system: 'ours', endpoints, durationMs: 800, warmupMs: 200, valueBytes: 256, pipeline }, [
      { cmd: 'run', concurrency: 4, op: 'put' },
      { cmd: 'run', concurrency: 4, op: 'get' },
    ]);
    expect(events[0]).toMatchObject({ event: 'ready', system: 'ours', leader: cluster.endpoint(leader), client: 'go' });
    const results = events.filter((e) => e.event === 'result');
    expect(results.map((r) => [r.op, r.errors, r.error_sample])).toEqual([
      ['put', 0, undefined],
      ['get', 0, undefined],
    ]);
    for (const r of results) expect(r.ops as number).toBeGreaterThan(10);
    expect(events.filter((e) => e.event === 'measure')).toHaveLength(2);
    // Its probe put went through our own client's view of the store too.
    const client = new PaxosClient({ endpoints, deadlineMs: 10_000 });
    try {
      expect(await client.get('bench/probe')).toBe('x');
    } finally {
      client.close();
    }
  });
});
