/**
 * `npm run bench [-- options]`: our 3-node Paxos KV quorum against a 3-member etcd cluster,
 * both on loopback with fsync on, driven by the same closed-loop put workload from a
 * separate load-generator process, plus the machine's physical floor (loopback RTT +
 * 4 KiB fdatasync). Writes bench/results/latest.json, a timestamped copy and
 * bench/results/throughput.png. See docs/benchmarks.md.
 *
 * The load generator is bench/loadgen (Go, built on demand by scripts/tools.mjs): etcd through
 * its own Go client (go.etcd.io/etcd/client/v3), ours through google.golang.org/grpc, each with
 * one connection to the leader and N goroutines. etcd is the 3.6 the tools build (Debian's
 * etcd-server only when that is unavailable). Per level and system it reports writes/s,
 * latencies, the CPU of all members per 1,000 operations, fsyncs per write (all members), the
 * load generator's own CPU and the members' RSS; then linearizable gets at `--reads` clients.
 *
 * Options:
 *   --quick              ~3 s per level, short warm-up (finishes in well under a minute)
 *   --json               progress and table on stderr; one JSON summary line last on stdout
 *   --levels 1,16,64,256 concurrency levels (in-flight puts)
 *   --duration S         measured seconds per level (default 8, quick 2.5)
 *   --warmup S           warm-up seconds per level (default 2, quick 0.7)
 *   --rounds N           repeat all levels N times (systems alternate who goes first);
 *                        the table shows per-level medians, the JSON each round too
 *   --only ours|etcd     run one side only
 *   --no-pipeline        our client: one unary call per put instead of the Pipeline stream
 *   --data-root DIR      where the temporary data directories go (default: the OS temp dir)
 *   --keep               keep the temporary directory (data, logs, profiles)
 *   --cpu-prof           run our nodes and the load generators with `node --cpu-prof`
 *                        (profiles kept in the temp dir)
 *   --tsx                run our nodes through tsx (`node --import tsx node/src/main.ts`)
 *                        instead of as plain JS (the default: node/src transpiled to
 *                        node_modules/.cache, as production images run compiled dist/ JS)
 *   --compiled           accepted for old command lines; plain JS is the default now
 *   --reads C            concurrency of the linearizable-read level (default 64; 0: none)
 *   --js-client          the old Node.js load generator (bench/load.ts: PaxosClient, etcd3)
 *   --fill N             at the end, write new keys (256 clients) until each load generator has
 *                        written N in all, then report each system's largest member RSS
 *                        (`--fill 1000000` gives the summary's rss_1m_keys_mb); Go generator only
 *   --no-write           do not write bench/results/
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { compileNode } from './lib/compile.js';
import { measureFloor, type Floor } from './lib/floor.js';
import { ETCD_COLOR, OURS_COLOR, renderChart } from './lib/plot.js';
import { ProcessGroup, cpuSeconds, freePorts, rssMb, sleep, tail, type Managed } from './lib/procs.js';
import { round } from './lib/stats.js';
import type { LevelResult, LoadSpec } from './load.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(ROOT, 'bench', 'results');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    levels: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    only: { type: 'string' },
    'no-pipeline': { type: 'boolean', default: false },
    'data-root': { type: 'string' },
    keep: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    compiled: { type: 'boolean', default: false },
    tsx: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
    reads: { type: 'string' },
    fill: { type: 'string' },
    'js-client': { type: 'boolean', default: false },
  },
  strict: true,
});

const quick = args.quick ?? false;
const LEVELS = (args.levels ?? '1,16,64,256').split(',').map(Number).filter((n) => n > 0);
const DURATION_MS = Number(args.duration ?? (quick ? 2.5 : 8)) * 1000;
const WARMUP_MS = Number(args.warmup ?? (quick ? 0.7 : 2)) * 1000;
const RUN_OURS = args.only !== 'etcd';
const RUN_ETCD = args.only !== 'ours';
const ROUNDS = Math.max(1, Number(args.rounds ?? 1));
const HEADLINE_C = 64;
const READS_C = Number(args.reads ?? 64);
const GO_CLIENT = !(args['js-client'] ?? false);
const FILL = Number(args.fill ?? 0);
if (!Number.isInteger(FILL) || FILL < 0 || FILL > 2 ** 20) throw new Error('--fill N: an integer in 0..1048576');
if (FILL > 0 && !GO_CLIENT) throw new Error('--fill needs the Go load generator (drop --js-client)');

/** Progress and tables go to stderr in --json mode so stdout ends with the JSON line. */
const say = (s: string): void => {
  (args.json ? process.stderr : process.stdout).write(`${s}\n`);
};

// ---------------------------------------------------------------------------------------
// etcd binary

interface EtcdBinary {
  readonly path: string;
  readonly version: string;
  readonly source: string;
}

function etcdVersion(path: string): string {
  try {
    const out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0] ?? '?';
  } catch {
    return '?';
  }
}

/** Builds (if missing or stale) and returns the path of one of scripts/tools.mjs's binaries. */
function toolPath(name: string): string {
  const tools = join(ROOT, 'scripts', 'tools.mjs');
  const r = spawnSync(process.execPath, [tools, 'build', name], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) throw new Error(`building ${name} failed (node scripts/tools.mjs build ${name}):\n${(r.stderr ?? '').slice(-2000)}`);
  return execFileSync(process.execPath, [tools, 'which', name], { encoding: 'utf8', cwd: ROOT }).trim();
}

/** The Go-built etcd 3.6 of scripts/tools.mjs (built on demand), else Debian's /usr/bin/etcd. */
function findEtcd(): EtcdBinary {
  if (process.env.ETCD_BIN) return { path: process.env.ETCD_BIN, version: etcdVersion(process.env.ETCD_BIN), source: 'ETCD_BIN' };
  try {
    const p = toolPath('etcd');
    if (existsSync(p)) return { path: p, version: etcdVersion(p), source: `Go-built from pinned modules (test/k8s/tools/etcd, ${p})` };
  } catch (err) {
    say(`etcd: no Go-built etcd (${(err as Error).message.split('\n')[0]}); falling back to Debian's`);
  }
  const debian = '/usr/bin/etcd';
  if (!existsSync(debian) && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    say('etcd: /usr/bin/etcd missing; apt-get install -y etcd-server ...');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', 'etcd-server'], { stdio: 'ignore', env, timeout: 300_000 });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 300_000 });
      r = spawnSync('apt-get', ['install', '-y', 'etcd-server'], { stdio: 'ignore', env, timeout: 300_000 });
    }
  }
  if (existsSync(debian)) return { path: debian, version: etcdVersion(debian), source: 'Debian package etcd-server (/usr/bin/etcd), the Go-built one unavailable' };
  throw new Error('no etcd binary: install Debian etcd-server (apt-get install -y etcd-server), run `npm run tools:build`, or set ETCD_BIN');
}

// ---------------------------------------------------------------------------------------
// clusters

interface Cluster {
  readonly name: 'ours' | 'etcd';
  readonly members: Managed[];
  /** Client endpoints host:port. */
  readonly endpoints: string[];
  /** Prometheus endpoints, one per member (same order). */
  readonly metricsUrls: string[];
}

async function startOurs(group: ProcessGroup, tmp: string, cpuProf: boolean, compiledMain: string | undefined): Promise<Cluster> {
  const ports = await freePorts(6);
  const peerPorts = ports.slice(0, 3);
  const metricPorts = ports.slice(3);
  const peers = peerPorts.map((p, i) => `${i}=127.0.0.1:${p}`).join(',');
  const members: Managed[] = [];
  for (let i = 0; i < 3; i++) {
    const dataDir = join(tmp, `ours-${i}`);
    mkdirSync(dataDir, { recursive: true });
    const nodeFlags = compiledMain ? [] : ['--import', 'tsx'];
    // One folder per node: tsx's loader thread writes a profile of its own next to the main thread's.
    if (cpuProf) nodeFlags.push('--cpu-prof', '--cpu-prof-dir', join(tmp, 'profiles', `ours-${i}`));
    members.push(
      group.spawn(
        `ours-${i}`,
        process.execPath,
        [
          ...nodeFlags,
          compiledMain ?? join(ROOT, 'node', 'src', 'main.ts'),
          '--id', String(i),
          '--data-dir', dataDir,
          '--peers', peers,
          '--listen', '127.0.0.1',
          '--peer-port', String(peerPorts[i]),
          '--metrics-port', String(metricPorts[i]),
          '--bootstrap-config', JSON.stringify({ epoch: 1, members: [0, 1, 2] }),
          '--log-level', 'warn',
          // TLS on in the benchmark is issue 10's remaining item 8; until then it measures plaintext.
          '--insecure',
        ],
        join(tmp, `ours-${i}.log`),
        { cwd: ROOT },
      ),
    );
  }
  return {
    name: 'ours',
    members,
    endpoints: peerPorts.map((p) => `127.0.0.1:${p}`),
    metricsUrls: metricPorts.map((p) => `http://127.0.0.1:${p}/metrics`),
  };
}

async function startEtcd(group: ProcessGroup, tmp: string, bin: string): Promise<Cluster> {
  const ports = await freePorts(6);
  const clientPorts = ports.slice(0, 3);
  const peerPorts = ports.slice(3);
  const initial = peerPorts.map((p, i) => `e${i}=http://127.0.0.1:${p}`).join(',');
  const members: Managed[] = [];
  for (let i = 0; i < 3; i++) {
    const dataDir = join(tmp, `etcd-${i}`);
    members.push(
      group.spawn(
        `etcd-${i}`,
        bin,
        [
          '--name', `e${i}`,
          '--data-dir', dataDir,
          '--listen-client-urls', `http://127.0.0.1:${clientPorts[i]}`,
          '--advertise-client-urls', `http://127.0.0.1:${clientPorts[i]}`,
          '--listen-peer-urls', `http://127.0.0.1:${peerPorts[i]}`,
          '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPorts[i]}`,
          '--initial-cluster', initial,
          '--initial-cluster-token', `bench-${process.pid}`,
          '--initial-cluster-state', 'new',
          '--logger', 'zap',
          '--log-level', 'warn',
        ],
        join(tmp, `etcd-${i}.log`),
        { cwd: tmp },
      ),
    );
  }
  return {
    name: 'etcd',
    members,
    endpoints: clientPorts.map((p) => `127.0.0.1:${p}`),
    metricsUrls: clientPorts.map((p) => `http://127.0.0.1:${p}/metrics`),
  };
}

// ---------------------------------------------------------------------------------------
// load generator processes

interface LoadProc {
  readonly managed: Managed;
  readonly leader: string;
  /** Runs one level; `onMeasure` fires when its measured window starts. */
  run(concurrency: number, op: 'put' | 'get', onMeasure: () => void): Promise<LevelResult>;
  /** Writes new keys until the generator wrote `count` in all; resolves with its report. */
  fill(concurrency: number, count: number): Promise<Record<string, unknown>>;
  exit(): void;
}

async function startLoad(group: ProcessGroup, tmp: string, cluster: Cluster, pipeline: boolean, loadgen: string | undefined, failure: () => string | undefined): Promise<LoadProc> {
  const spec: LoadSpec = {
    system: cluster.name,
    endpoints: cluster.endpoints,
    durationMs: DURATION_MS,
    warmupMs: WARMUP_MS,
    valueBytes: 256,
    pipeline,
  };
  const logFile = join(tmp, `load-${cluster.name}.log`);
  const profFlags = args['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', join(tmp, 'profiles', `load-${cluster.name}`)] : [];
  const child = loadgen
    ? spawn(loadgen, [JSON.stringify(spec)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, [...profFlags, '--import', 'tsx', join(ROOT, 'bench', 'load.ts'), JSON.stringify(spec)], {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
  const managed = group.track(`load-${cluster.name}`, child, logFile);
  const errLines: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    errLines.push(d);
    writeFileSync(logFile, errLines.join(''));
  });
  const events: Array<Record<string, unknown>> = [];
  let waiter: (() => void) | undefined;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      errLines.push(`${line}\n`);
    }
    waiter?.();
  });
  let exited = false;
  void managed.exited.then(() => {
    exited = true;
    waiter?.();
  });
  const next = async (event: string, timeoutMs: number): Promise<Record<string, unknown>> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const i = events.findIndex((e) => e.event === event);
      if (i >= 0) return events.splice(i, 1)[0] as Record<string, unknown>;
      const failed = failure();
      if (failed) throw new Error(failed);
      if (exited) throw new Error(`${cluster.name} load generator exited: ${errLines.join('').trim().split('\n').slice(-10).join('\n')}`);
      if (Date.now() > until) throw new Error(`${cluster.name} load generator: no "${event}" within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        waiter = r;
        setTimeout(r, 200);
      });
      waiter = undefined;
    }
  };
  const ready = await next('ready', 60_000);
  return {
    managed,
    leader: String(ready.leader),
    async run(concurrency, op, onMeasure) {
      child.stdin?.write(`${JSON.stringify({ cmd: 'run', concurrency, op })}\n`);
      const budget = WARMUP_MS + DURATION_MS + 30_000;
      await next('measure', budget);
      onMeasure();
      return (await next('result', budget)) as unknown as LevelResult;
    },
    async fill(concurrency, count) {
      child.stdin?.write(`${JSON.stringify({ cmd: 'fill', concurrency, count })}\n`);
      return next('filled', 1_800_000);
    },
    exit() {
      child.stdin?.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    },
  };
}

// ---------------------------------------------------------------------------------------
// metrics scraped from the servers (group commit evidence)

async function scrape(url: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    for (const line of (await res.text()).split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const name = m[1] as string;
      if ((m[2] ?? '').includes('le=')) continue; // histogram buckets
      out.set(name, (out.get(name) ?? 0) + Number(m[3]));
    }
  } catch {
    /* metrics are best-effort */
  }
  return out;
}

interface Internals {
  readonly fsyncs: number;
  readonly writes_per_fsync: number | null;
  readonly fsync_mean_ms: number | null;
  readonly [k: string]: number | null;
}

/** What the leader did during one level: fsync count, writes per fsync, mean fsync time. */
function internals(system: 'ours' | 'etcd', before: Map<string, number>, after: Map<string, number>, ops: number): Internals {
  const d = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  if (system === 'ours') {
    const syncs = d('paxos_wal_syncs_total');
    const persistN = d('paxos_wal_persist_seconds_count');
    const readyN = d('paxos_ready_entries_count');
    const propN = d('paxos_proposal_batch_commands_count');
    const mb = (k: string): number | null => (after.has(k) ? round((after.get(k) as number) / 2 ** 20, 1) : null);
    const ms = (k: string): number | null => (after.has(k) ? round((after.get(k) as number) * 1000, 2) : null);
    return {
      fsyncs: syncs,
      writes_per_fsync: syncs > 0 ? round(ops / syncs, 2) : null,
      // persist = one Ready's write + fdatasync, run synchronously on the event loop
      fsync_mean_ms: persistN > 0 ? round((d('paxos_wal_persist_seconds_sum') / persistN) * 1000, 3) : null,
      persist_ms_total: round(d('paxos_wal_persist_seconds_sum') * 1000, 0),
      ready_entries_mean: readyN > 0 ? round(d('paxos_ready_entries_sum') / readyN, 2) : null,
      proposal_batch_mean: propN > 0 ? round(d('paxos_proposal_batch_commands_sum') / propN, 2) : null,
      snapshots: d('paxos_snapshots_total'),
      peer_messages_sent_per_op: ops > 0 ? round(d('paxos_peer_messages_sent_total') / ops, 3) : null,
      gc_ms_total: round(d('nodejs_gc_duration_seconds_sum') * 1000, 0),
      heap_used_mb: mb('nodejs_heap_size_used_bytes'),
      heap_total_mb: mb('nodejs_heap_size_total_bytes'),
      external_mb: mb('nodejs_external_memory_bytes'),
      eventloop_lag_p99_ms: ms('nodejs_eventloop_lag_p99_seconds'),
      eventloop_lag_max_ms: ms('nodejs_eventloop_lag_max_seconds'),
    };
  }
  const n = d('etcd_disk_wal_fsync_duration_seconds_count');
  return {
    fsyncs: n,
    writes_per_fsync: n > 0 ? round(ops / n, 2) : null,
    fsync_mean_ms: n > 0 ? round((d('etcd_disk_wal_fsync_duration_seconds_sum') / n) * 1000, 3) : null,
  };
}

// ---------------------------------------------------------------------------------------

interface SideResult extends LevelResult {
  /** CPU seconds of all members during the measured window. */
  readonly server_cpu_s: number | null;
  readonly server_cpu_s_by_member: Record<string, number | null>;
  /** Server CPU milliseconds (all members) per 1,000 operations completed in the window. */
  readonly cpu_ms_per_1k_ops: number | null;
  /** WAL fsyncs of all members per operation (etcd: WAL fsyncs; its backend commits apart). */
  readonly fsyncs_per_op_all: number | null;
  readonly backend_commits_per_op_all?: number | null;
  /** The load generator's CPU in the window, in % of one core. */
  readonly client_cpu_pct: number | null;
  /** Ours: snapshots taken by all members during the level (warm-up included). */
  readonly snapshots_all?: number;
  /**
   * Ours: the longest event-loop delay (nodejs_eventloop_lag_max_seconds, reset by each scrape)
   * of any member that took a snapshot during the level: an upper bound of the longest stall a
   * snapshot caused. Absent when no member took one.
   */
  readonly snapshot_stall_max_ms?: number;
  /** Ours: the longest event-loop delay of each member during the level. */
  readonly eventloop_lag_max_ms_by_member?: Record<string, number | null>;
  readonly rss_max_mb: number | null;
  readonly rss_max_mb_by_member: Record<string, number | null>;
  readonly leader_internals: Internals;
  /** With --rounds > 1: each round's numbers (the row holds their medians). */
  readonly rounds?: ReadonlyArray<{ wps: number; p50_ms: number; p99_ms: number; rss_max_mb: number | null }>;
}

interface Row {
  readonly concurrency: number;
  ours?: SideResult;
  etcd?: SideResult;
  ratio_wps?: number;
}

function fmtN(v: number | null | undefined, d = 1): string {
  return v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(d);
}

function table(rows: readonly Row[], floor: Floor): string {
  const head = ['clients', 'ours w/s', 'etcd w/s', 'ours/etcd', 'ours p50', 'etcd p50', 'ours p99', 'etcd p99', 'ours cpu/1k', 'etcd cpu/1k', 'ours fsync/w', 'etcd fsync/w', 'client cpu o/e', 'ours RSS', 'etcd RSS', 'errors o/e'];
  const body = rows.map((r) => [
    String(r.concurrency),
    fmtN(r.ours?.wps, 0),
    fmtN(r.etcd?.wps, 0),
    r.ratio_wps !== undefined ? `${r.ratio_wps.toFixed(2)}x` : '-',
    fmtN(r.ours?.p50_ms, 2),
    fmtN(r.etcd?.p50_ms, 2),
    fmtN(r.ours?.p99_ms, 2),
    fmtN(r.etcd?.p99_ms, 2),
    fmtN(r.ours?.cpu_ms_per_1k_ops, 0),
    fmtN(r.etcd?.cpu_ms_per_1k_ops, 0),
    fmtN(r.ours?.fsyncs_per_op_all, 2),
    fmtN(r.etcd?.fsyncs_per_op_all, 2),
    `${fmtN(r.ours?.client_cpu_pct, 0)}%/${fmtN(r.etcd?.client_cpu_pct, 0)}%`,
    r.ours?.rss_max_mb ? `${r.ours.rss_max_mb.toFixed(0)} MB` : '-',
    r.etcd?.rss_max_mb ? `${r.etcd.rss_max_mb.toFixed(0)} MB` : '-',
    `${r.ours?.errors ?? '-'}/${r.etcd?.errors ?? '-'}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i] as number)).join('  ');
  return [
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    '',
    `latencies in ms; cpu/1k = CPU ms of all 3 members per 1,000 writes; fsync/w = WAL fsyncs of all members per write; client cpu = load generator, % of one core; RSS = max VmRSS of any member during the level` +
      (ROUNDS > 1 ? `; medians of ${ROUNDS} rounds (RSS: max)` : ''),
    `floor: loopback RTT p50 ${floor.rtt_p50_ms} ms + 4 KiB append+fdatasync p50 ${floor.fdatasync_p50_ms} ms = ${floor.floor_ms} ms`,
  ].join('\n');
}

/** Snapshots and event-loop stalls of our members during a level (see `SideResult`). */
function oursStalls(cluster: Cluster, before: ReadonlyArray<Map<string, number>>, after: ReadonlyArray<Map<string, number>>): Pick<SideResult, 'snapshots_all' | 'snapshot_stall_max_ms' | 'eventloop_lag_max_ms_by_member'> {
  let snapshots = 0;
  let stall: number | undefined;
  const lag: Record<string, number | null> = {};
  cluster.members.forEach((m, i) => {
    const a = after[i] as Map<string, number>;
    const lagMs = a.has('nodejs_eventloop_lag_max_seconds') ? round((a.get('nodejs_eventloop_lag_max_seconds') as number) * 1000, 1) : null;
    lag[m.name] = lagMs;
    const taken = (a.get('paxos_snapshots_total') ?? 0) - ((before[i] as Map<string, number>).get('paxos_snapshots_total') ?? 0);
    snapshots += taken;
    if (taken > 0 && lagMs !== null) stall = Math.max(stall ?? 0, lagMs);
  });
  return { snapshots_all: snapshots, ...(stall === undefined ? {} : { snapshot_stall_max_ms: stall }), eventloop_lag_max_ms_by_member: lag };
}

function sayLevel(op: string, c: number, system: string, side: SideResult): void {
  say(
    `  ${op} c=${String(c).padStart(3)} ${system.padEnd(4)} ${side.wps.toFixed(0).padStart(6)}/s  p50 ${side.p50_ms.toFixed(2)} ms  p99 ${side.p99_ms.toFixed(2)} ms` +
      `  rss ${fmtN(side.rss_max_mb, 0)} MB  cpu ${fmtN(side.cpu_ms_per_1k_ops, 0)} ms/1k  fsync/op ${fmtN(side.fsyncs_per_op_all, 2)}  client cpu ${fmtN(side.client_cpu_pct, 0)}%` +
      (side.leader_internals.peer_messages_sent_per_op !== undefined ? `  leader msgs/op ${fmtN(side.leader_internals.peer_messages_sent_per_op, 2)}` : '') +
      (side.eventloop_lag_max_ms_by_member ? `  loop lag max ${Math.max(0, ...Object.values(side.eventloop_lag_max_ms_by_member).map((v) => v ?? 0))} ms, ${side.snapshots_all} snapshots` : '') +
      `${side.errors ? `  errors ${side.errors} (${side.error_sample})` : ''}  (load ${(loadavg()[0] ?? 0).toFixed(1)})`,
  );
}

async function measureLevel(cluster: Cluster, load: LoadProc, c: number, op: 'put' | 'get' = 'put'): Promise<SideResult> {
  const leaderIdx = Math.max(0, cluster.endpoints.indexOf(load.leader));
  const beforeAll = await Promise.all(cluster.metricsUrls.map((u) => scrape(u)));
  const before = beforeAll[leaderIdx] as Map<string, number>;
  const rssMax = new Map<string, number>();
  let sampler: NodeJS.Timeout | undefined;
  let cpu0: Array<number | null> = [];
  const cpuNow = (): Array<number | null> => cluster.members.map((m) => cpuSeconds(m.child.pid));
  const res = await load.run(c, op, () => {
    cpu0 = cpuNow();
    sampler = setInterval(() => {
      for (const m of cluster.members) {
        const r = rssMb(m.child.pid);
        if (r !== null) rssMax.set(m.name, Math.max(rssMax.get(m.name) ?? 0, r));
      }
    }, 100);
  });
  // The window closed when the result was printed; the few ms since add at most ~1% here.
  const cpu1 = cpuNow();
  clearInterval(sampler);
  const afterAll = await Promise.all(cluster.metricsUrls.map((u) => scrape(u)));
  const after = afterAll[leaderIdx] as Map<string, number>;
  const cpuBy = cluster.members.map((m, i) => {
    const a = cpu0[i];
    const b = cpu1[i];
    return [m.name, a === null || a === undefined || b === null || b === undefined ? null : round(b - a, 3)] as const;
  });
  const cpuTotal = cpuBy.every(([, v]) => v !== null) ? cpuBy.reduce((a, [, v]) => a + (v as number), 0) : null;
  const sumDelta = (k: string): number => afterAll.reduce((a, m, i) => a + (m.get(k) ?? 0) - ((beforeAll[i] as Map<string, number>).get(k) ?? 0), 0);
  const fsyncsAll = cluster.name === 'ours' ? sumDelta('paxos_wal_syncs_total') : sumDelta('etcd_disk_wal_fsync_duration_seconds_count');
  const perOp = (n: number): number | null => (res.ops > 0 ? round(n / res.ops, 3) : null);
  const clientCpu = (res as LevelResult & { client_cpu_s?: number | null }).client_cpu_s;
  return {
    ...res,
    server_cpu_s: cpuTotal === null ? null : round(cpuTotal, 3),
    server_cpu_s_by_member: Object.fromEntries(cpuBy),
    cpu_ms_per_1k_ops: cpuTotal === null || res.ops === 0 ? null : round((cpuTotal * 1000 * 1000) / res.ops, 1),
    fsyncs_per_op_all: perOp(fsyncsAll),
    ...(cluster.name === 'etcd' ? { backend_commits_per_op_all: perOp(sumDelta('etcd_disk_backend_commit_duration_seconds_count')) } : {}),
    ...(cluster.name === 'ours' ? oursStalls(cluster, beforeAll, afterAll) : {}),
    client_cpu_pct: typeof clientCpu === 'number' ? round((clientCpu / res.seconds) * 100, 1) : null,
    rss_max_mb: rssMax.size === 0 ? null : round(Math.max(...rssMax.values()), 1),
    rss_max_mb_by_member: Object.fromEntries(
      cluster.members.map((m, i) => [`${m.name}${i === leaderIdx ? ' (leader)' : ''}`, rssMax.has(m.name) ? round(rssMax.get(m.name) as number, 1) : null]),
    ),
    leader_internals: internals(cluster.name, before, after, res.ops),
  };
}

const median = (xs: readonly number[]): number => {
  const a = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(a.length / 2);
  return a.length % 2 ? (a[mid] as number) : ((a[mid - 1] as number) + (a[mid] as number)) / 2;
};

/** Several rounds of one level: medians of rate and latencies, max RSS, summed errors. */
function aggregate(rs: readonly SideResult[]): SideResult {
  if (rs.length === 1) return rs[0] as SideResult;
  const byWps = [...rs].sort((a, b) => a.wps - b.wps);
  const mid = byWps[Math.floor((byWps.length - 1) / 2)] as SideResult; // internals of the median round
  const rss = rs.map((r) => r.rss_max_mb).filter((v): v is number => v !== null);
  return {
    ...mid,
    ops: rs.reduce((a, r) => a + r.ops, 0),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    wps: round(median(rs.map((r) => r.wps)), 1),
    p50_ms: round(median(rs.map((r) => r.p50_ms)), 3),
    p90_ms: round(median(rs.map((r) => r.p90_ms)), 3),
    p99_ms: round(median(rs.map((r) => r.p99_ms)), 3),
    mean_ms: round(median(rs.map((r) => r.mean_ms)), 3),
    max_ms: Math.max(...rs.map((r) => r.max_ms)),
    rss_max_mb: rss.length ? Math.max(...rss) : null,
    rounds: rs.map((r) => ({ wps: r.wps, p50_ms: r.p50_ms, p99_ms: r.p99_ms, rss_max_mb: r.rss_max_mb })),
  };
}

async function main(): Promise<number> {
  const started = Date.now();
  const group = new ProcessGroup();
  const dataRoot = args['data-root'] ?? tmpdir();
  mkdirSync(dataRoot, { recursive: true });
  const tmp = mkdtempSync(join(dataRoot, 'paxos-bench-'));
  let ok = false;
  group.onInterrupt = () => {
    if (!args.keep && !args['cpu-prof']) rmSync(tmp, { recursive: true, force: true });
  };
  try {
    const load0 = loadavg()[0] ?? 0;
    say(`bench: ${quick ? 'quick' : 'full'} run, levels ${LEVELS.join(',')}, ${DURATION_MS / 1000} s each after ${WARMUP_MS / 1000} s warm-up; temp ${tmp}`);
    say(`bench: machine ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), shared with other work: numbers are noisy (load avg ${load0.toFixed(2)})`);

    const floor = await measureFloor(group, tmp, quick);
    say(`floor: loopback RTT p50 ${floor.rtt_p50_ms} ms, 4 KiB append+fdatasync p50 ${floor.fdatasync_p50_ms} ms -> ${floor.floor_ms} ms`);

    const etcdBin = RUN_ETCD ? findEtcd() : undefined;
    if (etcdBin) say(`etcd: ${etcdBin.version} from ${etcdBin.source}`);

    const clusters: Cluster[] = [];
    // Plain JS unless --tsx: production images run compiled JS, and tsx's loader thread alone
    // adds ~35-40 MB and start-up CPU per node that no deployment pays.
    const compiledMain = RUN_OURS && !args.tsx ? compileNode(ROOT) : undefined;
    if (compiledMain) say(`ours: running transpiled JS ${compiledMain}`);
    if (RUN_OURS) clusters.push(await startOurs(group, tmp, args['cpu-prof'] ?? false, compiledMain));
    if (etcdBin) clusters.push(await startEtcd(group, tmp, etcdBin.path));
    // A member that dies during the run fails it.
    let died: string | undefined;
    for (const c of clusters)
      for (const m of c.members)
        void m.exited.then((code) => {
          if (!ok) died ??= `${m.name} exited (${code}) during the run; log tail:\n${tail(m.logFile)}`;
        });

    const loadgen = GO_CLIENT ? toolPath('bench-loadgen') : undefined;
    say(`load generator: ${loadgen ? `${loadgen} (Go: etcd's client/v3, grpc-go for ours)` : 'bench/load.ts (Node.js: etcd3, PaxosClient)'}`);
    const loads = new Map<string, LoadProc>();
    await Promise.all(
      clusters.map(async (c) => {
        const t0 = Date.now();
        loads.set(c.name, await startLoad(group, tmp, c, !(args['no-pipeline'] ?? false), loadgen, () => died));
        say(`${c.name}: 3 members up, leader ${loads.get(c.name)?.leader} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      }),
    ).catch((err: unknown) => {
      const msg = (err as Error).message;
      throw new Error(died && !msg.includes(died) ? `${msg}\n${died}` : msg);
    });

    // Levels run in order; within a level the systems alternate which goes first from round
    // to round, so that slow drifts of the shared machine's load hit both alike.
    const raw = new Map<string, SideResult[]>(); // `${system}/${c}` -> one result per round
    for (let round_ = 0; round_ < ROUNDS; round_++) {
      if (ROUNDS > 1) say(`round ${round_ + 1}/${ROUNDS}`);
      for (const c of LEVELS) {
        const order = round_ % 2 === 0 ? clusters : [...clusters].reverse();
        for (const cluster of order) {
          if (died) throw new Error(died);
          const side = await measureLevel(cluster, loads.get(cluster.name) as LoadProc, c);
          const key = `${cluster.name}/${c}`;
          raw.set(key, [...(raw.get(key) ?? []), side]);
          sayLevel('put', c, cluster.name, side);
        }
      }
      if (READS_C > 0) {
        const order = round_ % 2 === 0 ? clusters : [...clusters].reverse();
        for (const cluster of order) {
          if (died) throw new Error(died);
          const side = await measureLevel(cluster, loads.get(cluster.name) as LoadProc, READS_C, 'get');
          const key = `${cluster.name}/get`;
          raw.set(key, [...(raw.get(key) ?? []), side]);
          sayLevel('get', READS_C, cluster.name, side);
        }
      }
    }
    /** Largest member RSS once each system holds FILL keys written by its generator (--fill). */
    const filled: Partial<Record<'ours' | 'etcd', { keys: number; seconds: number; errors: number; rss_max_mb: number | null; rss_by_member: Record<string, number | null> }>> = {};
    for (const cluster of FILL > 0 ? clusters : []) {
      if (died) throw new Error(died);
      const r = await (loads.get(cluster.name) as LoadProc).fill(256, FILL);
      await sleep(3000); // let a snapshot in progress finish
      const rss = Object.fromEntries(cluster.members.map((m) => [m.name, rssMb(m.child.pid)]));
      const values = Object.values(rss).filter((v): v is number => v !== null);
      filled[cluster.name] = {
        keys: Number(r.written),
        seconds: Number(r.seconds),
        errors: Number(r.errors),
        rss_max_mb: values.length ? round(Math.max(...values), 1) : null,
        rss_by_member: Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, v === null ? null : round(v, 1)])),
      };
      say(`fill ${cluster.name}: ${r.written} keys written by the generator in all (${r.seconds} s, ${r.errors} errors); largest member RSS ${fmtN(filled[cluster.name]?.rss_max_mb, 0)} MB (load ${(loadavg()[0] ?? 0).toFixed(1)})`);
    }
    const reads: Partial<Record<'ours' | 'etcd', SideResult>> = {};
    for (const cluster of clusters) {
      const rs = raw.get(`${cluster.name}/get`);
      if (rs) reads[cluster.name] = aggregate(rs);
    }
    const rows: Row[] = LEVELS.map((c) => {
      const row: Row = { concurrency: c };
      for (const cluster of clusters) {
        const rs = raw.get(`${cluster.name}/${c}`);
        if (rs) row[cluster.name] = aggregate(rs);
      }
      if (row.ours && row.etcd && row.etcd.wps > 0) row.ratio_wps = round(row.ours.wps / row.etcd.wps, 3);
      return row;
    });
    for (const l of loads.values()) l.exit();
    // let them exit by themselves (a --cpu-prof profile is written at exit)
    await Promise.race([Promise.all([...loads.values()].map((l) => l.managed.exited)), sleep(5000)]);
    if (died) throw new Error(died);

    const head = rows.find((r) => r.concurrency === HEADLINE_C) ?? rows[rows.length - 1];
    /** The issue's per-system figures; a field that was not measured in this run is left out. */
    const perSystem = (name: 'ours' | 'etcd'): Record<string, number> => {
      const at = (c: number): SideResult | undefined => rows.find((r) => r.concurrency === c)?.[name];
      const o: Record<string, number | null | undefined> = {
        wps_64: at(64)?.wps,
        p99_64_ms: at(64)?.p99_ms,
        p50_1_ms: at(1)?.p50_ms,
        wps_256: at(256)?.wps,
        reads_64: READS_C === 64 ? reads[name]?.wps : undefined,
        cpu_ms_per_1k_writes: at(64)?.cpu_ms_per_1k_ops,
        fsyncs_per_write_64: at(64)?.fsyncs_per_op_all,
        client_cpu_pct_64: at(64)?.client_cpu_pct,
        rss_64_mb: at(64)?.rss_max_mb,
        snapshot_max_stall_ms: at(64)?.snapshot_stall_max_ms,
        rss_1m_keys_mb: FILL === 1_000_000 ? (filled[name]?.rss_max_mb ?? undefined) : undefined,
      };
      return Object.fromEntries(Object.entries(o).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])));
    };
    const single = rows.find((r) => r.concurrency === 1);
    const summary = {
      concurrency: head?.concurrency ?? null,
      ours_wps: head?.ours?.wps ?? null,
      etcd_wps: head?.etcd?.wps ?? null,
      ratio: head?.ratio_wps ?? null,
      ours_p50_ms: head?.ours?.p50_ms ?? null,
      etcd_p50_ms: head?.etcd?.p50_ms ?? null,
      ours_p99_ms: head?.ours?.p99_ms ?? null,
      etcd_p99_ms: head?.etcd?.p99_ms ?? null,
      floor_ms: floor.floor_ms,
      ours_c1_p50_ms: single?.ours?.p50_ms ?? null,
      ours_rss_mb: head?.ours?.rss_max_mb ?? null,
      etcd_rss_mb: head?.etcd?.rss_max_mb ?? null,
      quick,
      etcd_client: GO_CLIENT ? 'go' : 'etcd3-js',
      ours_client: GO_CLIENT ? `go-grpc-${args['no-pipeline'] ? 'unary' : 'pipeline'}` : `PaxosClient-${args['no-pipeline'] ? 'unary' : 'pipeline'}`,
      // rss_1m_keys_mb only with --fill 1000000; snapshot_max_stall_ms only for ours, and only
      // when a member took a snapshot during the 64-client level (see docs/benchmarks.md)
      ...(RUN_OURS ? { ours: perSystem('ours') } : {}),
      ...(RUN_ETCD ? { etcd: perSystem('etcd') } : {}),
      loadavg_start: round(load0, 2),
      loadavg_end: round(loadavg()[0] ?? 0, 2),
    };
    const check = (name: string, target: string, value: string, met: boolean | null): { name: string; target: string; value: string; met: boolean | null } => ({
      name,
      target,
      value,
      met,
    });
    const s = summary;
    // The targets of issue 14, against etcd measured in the same run.
    const o = s.ours;
    const e = s.etcd;
    const vs = (
      name: string,
      target: string,
      field: string,
      unit: string,
      met: (ours: number, etcd: number) => boolean,
    ): ReturnType<typeof check> => {
      const a = o?.[field];
      const b = e?.[field];
      const value = `${a ?? 'n/a'}${unit} vs ${b ?? 'n/a'}${unit}${a !== undefined && b !== undefined && b > 0 ? ` (${round(a / b, 2)}x)` : ''}`;
      return check(name, target, value, a === undefined || b === undefined ? null : met(a, b));
    };
    const targets = [
      vs('writes/s at 64 clients', '>= 1.5x etcd', 'wps_64', '', (a, b) => a >= 1.5 * b),
      vs('writes/s at 256 clients', '>= 1.5x etcd', 'wps_256', '', (a, b) => a >= 1.5 * b),
      vs('p99 at 64 clients', "<= etcd's", 'p99_64_ms', ' ms', (a, b) => a <= b),
      vs('single-client p50', "<= etcd's", 'p50_1_ms', ' ms', (a, b) => a <= b),
      vs(`linearizable reads/s at ${READS_C} clients`, ">= etcd's", 'reads_64', '', (a, b) => a >= b),
      vs('server CPU per 1,000 writes at 64 clients (all members)', "<= etcd's", 'cpu_ms_per_1k_writes', ' ms', (a, b) => a <= b),
      vs('RSS at 1 million keys (largest member)', "<= etcd's", 'rss_1m_keys_mb', ' MB', (a, b) => a <= b),
    ];

    const when = new Date().toISOString();
    const report = {
      when,
      mode: quick ? 'quick' : 'full',
      machine: {
        cores: cpus().length,
        cpu: cpus()[0]?.model ?? '?',
        memory_gb: round(totalmem() / 2 ** 30, 1),
        node: process.version,
        loadavg_start: round(load0, 2),
        loadavg_end: round(loadavg()[0] ?? 0, 2),
        note: 'cores shared with other builds and tests: measurements are noisy',
      },
      workload: {
        op: 'put of a random key',
        value_bytes: 256,
        closed_loop: true,
        levels: LEVELS,
        duration_s: DURATION_MS / 1000,
        rounds: ROUNDS,
        warmup_s: WARMUP_MS / 1000,
        client_process: GO_CLIENT
          ? 'separate (bench/loadgen, Go), one per system; systems interleaved per level'
          : 'separate (bench/load.ts), one per system; systems interleaved per level',
        ours_client: GO_CLIENT
          ? `grpc-go, one connection to the leader, ${args['no-pipeline'] ? 'unary Put calls' : 'one Pipeline stream'}, N goroutines`
          : `PaxosClient (node/src/client), ${args['no-pipeline'] ? 'unary calls' : 'Pipeline stream'}, lanes = concurrency, leader endpoint first`,
        etcd_client: GO_CLIENT ? 'go.etcd.io/etcd/client/v3 v3.6.16, one client (one connection) to the leader, N goroutines' : 'etcd3 npm client, leader endpoint only',
        reads: READS_C > 0 ? `linearizable gets of keys written earlier, ${READS_C} clients` : 'none',
      },
      ours: RUN_OURS
        ? { command: `${compiledMain ? 'node node_modules/.cache/paxos-bench/node/src/main.js (transpiled node/src)' : 'node --import tsx node/src/main.ts'} (3 processes, fsync on, default tunables)` }
        : null,
      etcd: etcdBin ? { binary: etcdBin.path, version: etcdBin.version, source: etcdBin.source, fsync: 'on (default)' } : null,
      floor,
      rows,
      reads,
      ...(FILL > 0 ? { filled } : {}),
      summary,
      targets,
      seconds: round((Date.now() - started) / 1000, 1),
    };

    say('');
    say(table(rows, floor));
    for (const [name, r] of Object.entries(reads)) {
      say(`reads at ${READS_C} clients, ${name}: ${fmtN(r.wps, 0)} gets/s, p50 ${fmtN(r.p50_ms, 2)} ms, p99 ${fmtN(r.p99_ms, 2)} ms, server CPU ${fmtN(r.cpu_ms_per_1k_ops, 0)} ms per 1k`);
    }
    say('');
    for (const t of targets) say(`target ${t.met === null ? 'n/a ' : t.met ? 'MET ' : 'MISS'}  ${t.name} ${t.target}: ${t.value}`);

    if (!args['no-write']) {
      mkdirSync(RESULTS, { recursive: true });
      const text = `${JSON.stringify(report, null, 2)}\n`;
      // --tsx runs are kept apart from the reference (plain JS) runs
      const variant = RUN_OURS && !compiledMain ? '-tsx' : '';
      writeFileSync(join(RESULTS, `latest${variant}.json`), text);
      writeFileSync(join(RESULTS, `run-${when.replace(/[:.]/g, '-')}${quick ? '-quick' : ''}${variant}.json`), text);
      const series = [];
      if (RUN_OURS) series.push({ name: compiledMain ? 'OURS (PAXOS NODE)' : 'OURS (PAXOS NODE, TSX)', color: OURS_COLOR, wps: rows.map((r) => r.ours?.wps ?? null), p99: rows.map((r) => r.ours?.p99_ms ?? null) });
      if (etcdBin) series.push({ name: `ETCD ${etcdBin.version}`, color: ETCD_COLOR, wps: rows.map((r) => r.etcd?.wps ?? null), p99: rows.map((r) => r.etcd?.p99_ms ?? null) });
      writeFileSync(
        join(RESULTS, `throughput${variant}.png`),
        renderChart({
          title: '3-MEMBER QUORUM ON LOOPBACK, 256 B PUTS, FSYNC ON',
          concurrency: rows.map((r) => r.concurrency),
          series,
          floorMs: floor.floor_ms,
          notes: [
            `${when.slice(0, 19).replace('T', ' ')} UTC, ${quick ? 'QUICK' : 'FULL'} RUN: ${DURATION_MS / 1000} S PER LEVEL AFTER ${WARMUP_MS / 1000} S WARM-UP, CLOSED LOOP` +
              (ROUNDS > 1 ? `, MEDIAN OF ${ROUNDS} ROUNDS` : ''),
            `MACHINE: ${cpus().length} CORES SHARED WITH OTHER BUILDS AND TESTS - NUMBERS ARE NOISY. LOAD AVG ${load0.toFixed(1)}`,
            GO_CLIENT ? 'CLIENTS: GO LOAD GENERATOR (ETCD CLIENTV3 / GRPC-GO), ONE CONNECTION TO THE LEADER' : 'CLIENTS: NODE.JS LOAD GENERATOR (ETCD3 / PAXOSCLIENT)',
            `FLOOR = LOOPBACK RTT P50 ${floor.rtt_p50_ms} MS + 4 KIB FDATASYNC P50 ${floor.fdatasync_p50_ms} MS = ${floor.floor_ms} MS`,
          ],
        }),
      );
      say(`\nwrote bench/results/latest${variant}.json, a timestamped copy and bench/results/throughput${variant}.png`);
    }
    if (args['cpu-prof']) say(`cpu profiles will be in ${join(tmp, 'profiles')} once the nodes exit`);
    ok = true;
    await group.stopAll();
    if (args['cpu-prof']) {
      const dir = join(tmp, 'profiles');
      const files = existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.cpuprofile')) : [];
      say(`cpu profiles (summarise with: npx tsx bench/profile-summary.ts FILE):\n  ${files.length ? files.map((f) => join(dir, f)).join('\n  ') : '(none written)'}`);
    }
    if (args.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    return 0;
  } catch (err) {
    if (group.interrupted) {
      await new Promise(() => undefined); // the signal handler cleans up and exits
    }
    process.stderr.write(`bench: FAILED: ${(err as Error)?.stack ?? String(err)}\n`);
    process.stderr.write(`bench: logs kept in ${tmp}\n`);
    args.keep = true;
    return 1;
  } finally {
    ok = true;
    await group.stopAll();
    if (!args.keep && !args['cpu-prof']) rmSync(tmp, { recursive: true, force: true });
    else say(`bench: kept ${tmp}`);
    await sleep(0);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
