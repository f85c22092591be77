/**
 * The load generator, run by bench/run.ts in a process of its own:
 *
 *   node --import tsx bench/load.ts '<json spec>'
 *
 * It connects, prints a ready line, then runs one level per command read from stdin
 * (`{"cmd":"run","concurrency":64}`), until `{"cmd":"exit"}` or end of input, so that the
 * orchestrator can interleave the two systems level by level.
 *
 * For each concurrency level: N closed-loop workers each keep one put of a random key with a
 * 256-byte value in flight; after a warm-up, completions inside the measured window are
 * counted and their latencies kept. Prints one JSON line per event on stdout:
 *   {"event":"ready","leader":"127.0.0.1:1234"}
 *   {"event":"measure","concurrency":64}          (measured window starts)
 *   {"event":"result","concurrency":64,...}       (window over)
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { percentile, round, sorted } from './lib/stats.js';

export interface LoadSpec {
  readonly system: 'ours' | 'etcd';
  /** host:port of every member's client port. */
  readonly endpoints: readonly string[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly valueBytes: number;
  /** Ours only: use the Pipeline stream. */
  readonly pipeline: boolean;
}

export interface LevelResult {
  readonly event: 'result';
  readonly system: string;
  readonly concurrency: number;
  readonly ops: number;
  readonly errors: number;
  readonly error_sample?: string;
  readonly seconds: number;
  readonly wps: number;
  readonly p50_ms: number;
  readonly p90_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  readonly mean_ms: number;
  readonly op?: 'put' | 'get';
  /** The load generator's CPU seconds in the measured window. */
  readonly client_cpu_s?: number | null;
}

type Put = (key: string, value: string) => Promise<unknown>;
type Get = (key: string) => Promise<unknown>;

interface Target {
  readonly leader: string;
  /** A put function for `concurrency` workers (ours sizes its lanes to it). */
  readonly forLevel: (concurrency: number) => { put: Put; get: Get; close: () => void };
  readonly close: () => Promise<void> | void;
}

const emit = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

async function oursTarget(spec: LoadSpec): Promise<Target> {
  const { PaxosClient } = await import('../node/src/client/index.js');
  // Find the leader once (the client follows NOT_LEADER hints) so every level starts there.
  const probe = new PaxosClient({ endpoints: spec.endpoints, deadlineMs: 20_000, maxInflight: 1 });
  await probe.put('bench/probe', 'x');
  const leader = probe.leaderEndpoint;
  probe.close();
  const ordered = [leader, ...spec.endpoints.filter((e) => e !== leader)];
  return {
    leader,
    forLevel: (concurrency) => {
      const c = new PaxosClient({ endpoints: ordered, maxInflight: concurrency, pipeline: spec.pipeline, deadlineMs: 10_000, attemptTimeoutMs: 5_000 });
      return { put: (k, v) => c.put(k, v), get: (k) => c.get(k), close: () => c.close() };
    },
    close: () => undefined,
  };
}

async function etcdTarget(spec: LoadSpec): Promise<Target> {
  const { Etcd3 } = await import('etcd3');
  // Talk to the leader directly, as our client does (a follower would forward proposals).
  let leader = spec.endpoints[0] as string;
  for (const ep of spec.endpoints) {
    const c = new Etcd3({ hosts: `http://${ep}` });
    try {
      const st = await c.maintenance.status();
      if (st.leader === st.header.member_id) leader = ep;
    } catch {
      /* not up: skip */
    } finally {
      c.close();
    }
  }
  const client = new Etcd3({ hosts: `http://${leader}` });
  await client.put('bench/probe').value('x');
  return {
    leader,
    forLevel: () => ({ put: (k, v) => client.put(k).value(v).exec(), get: (k) => client.get(k).string(), close: () => undefined }),
    close: () => client.close(),
  };
}

/** Keys written so far (up to 2^20), for the gets. */
const written: string[] = [];

async function runLevel(system: string, op: 'put' | 'get', put: Put, get: Get, concurrency: number, spec: LoadSpec, value: string): Promise<LevelResult> {
  const start = performance.now();
  const measureFrom = start + spec.warmupMs;
  const measureTo = measureFrom + spec.durationMs;
  const latencies: number[] = [];
  let errors = 0;
  let errorSample: string | undefined;
  let announced = false;
  let cpu0: NodeJS.CpuUsage | undefined;
  let cpuWindow: NodeJS.CpuUsage | undefined;
  const closer = setTimeout(() => (cpuWindow = process.cpuUsage(cpu0)), Math.max(0, measureTo - performance.now()));
  const worker = async (): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= measureTo) return;
      if (!announced && t0 >= measureFrom) {
        announced = true;
        cpu0 = process.cpuUsage();
        emit({ event: 'measure', system, concurrency });
      }
      try {
        if (op === 'get') await get(written[Math.floor(Math.random() * written.length)] ?? 'bench/none');
        else {
          const key = `bench/${randomBytes(8).toString('hex')}`;
          await put(key, value);
          if (written.length < 2 ** 20) written.push(key);
        }
        const t1 = performance.now();
        if (t0 >= measureFrom && t1 <= measureTo) latencies.push(t1 - t0);
      } catch (err) {
        errors++;
        errorSample ??= (err as Error).message;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearTimeout(closer);
  const s = sorted(latencies);
  const mean = latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length);
  return {
    event: 'result',
    system,
    concurrency,
    ops: latencies.length,
    errors,
    ...(errorSample ? { error_sample: errorSample } : {}),
    seconds: round(spec.durationMs / 1000, 3),
    wps: round(latencies.length / (spec.durationMs / 1000), 1),
    p50_ms: round(percentile(s, 50), 3),
    p90_ms: round(percentile(s, 90), 3),
    p99_ms: round(percentile(s, 99), 3),
    max_ms: round(s.length ? (s[s.length - 1] as number) : Number.NaN, 3),
    mean_ms: round(mean, 3),
    op,
    client_cpu_s: cpuWindow ? round((cpuWindow.user + cpuWindow.system) / 1e6, 3) : null,
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const value = Array.from(randomBytes(spec.valueBytes), (b) => alphabet[b % alphabet.length]).join('');
  const target = spec.system === 'ours' ? await oursTarget(spec) : await etcdTarget(spec);
  emit({ event: 'ready', system: spec.system, leader: target.leader });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line) as { cmd: 'run' | 'exit'; concurrency?: number; op?: 'put' | 'get' };
    if (cmd.cmd === 'exit') break;
    const c = cmd.concurrency ?? 1;
    const { put, get, close } = target.forLevel(c);
    emit(await runLevel(spec.system, cmd.op ?? 'put', put, get, c, spec, value));
    close();
  }
  lines.close();
  await target.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`load: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
