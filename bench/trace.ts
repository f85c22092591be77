/**
 * `npx tsx bench/trace.ts [--puts N] [--runs R] [--keep]`: where one write's time goes at
 * concurrency 1. Starts 3 nodes (plain JS, as bench/run.ts runs them) with PAXOS_TRACE_DIR
 * set (node/src/io/trace.ts), issues N sequential puts from this process through PaxosClient
 * (Pipeline stream, 256-byte values), stops the nodes, and joins the per-process traces
 * (CLOCK_MONOTONIC, comparable across processes) into a per-stage breakdown of the critical
 * path: medians over the puts, in microseconds. With --runs R the cluster is started R times
 * and the medians of the runs' medians are printed. The machine is shared: expect noise.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { compileNode } from './lib/compile.js';
import { ProcessGroup, freePorts, sleep } from './lib/procs.js';
import { percentile, round, sorted } from './lib/stats.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    puts: { type: 'string', default: '2000' },
    runs: { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});
const PUTS = Number(args.puts);
const RUNS = Math.max(1, Number(args.runs));

interface Ev {
  readonly t: number; // µs since an arbitrary origin
  readonly proc: string; // 'C', 'L' or `F<id>`
  readonly stage: string;
  readonly key: string;
}

function parse(lines: readonly string[], proc: string): Ev[] {
  const out: Ev[] = [];
  for (const line of lines) {
    const [ns, stage, key] = line.split(' ');
    if (!ns || !stage) continue;
    out.push({ t: Number(BigInt(ns) / 1000n), proc, stage, key: key ?? '' });
  }
  return out;
}

/** The stages of one put, µs from the client's write (undefined when not seen). */
type Marks = Record<string, number | undefined>;

function marks(evs: readonly Ev[]): Marks | undefined {
  const first = (proc: string, stage: string, pred: (e: Ev) => boolean = () => true, after = -Infinity): number | undefined =>
    evs.find((e) => e.proc === proc && e.stage === stage && e.t >= after && pred(e))?.t;
  const write = evs.find((e) => e.proc === 'C' && e.stage === 'client.write');
  const propose = evs.find((e) => e.proc === 'L' && e.stage === 'propose');
  if (!write || !propose) return undefined;
  const id = write.key;
  const slot = propose.key;
  const is = (key: string) => (e: Ev) => e.key === key;
  const m: Marks = {};
  m['client.write'] = write.t;
  m['L.rpc.recv'] = first('L', 'rpc.recv', is(id));
  m['L.propose'] = propose.t;
  m['L.ready'] = first('L', 'ready', (e) => e.key.startsWith(`e${slot}:`));
  m['L.accept.queued'] = first('L', 'tx.queue', (e) => e.key.startsWith('accept:') && e.key.endsWith(`:${slot}`));
  // To the follower on the critical path (known below), after the accept was queued.
  let f = '';
  m['L.wal.write.start'] = first('L', 'wal.write.start', is(`${slot}:s`));
  m['L.wal.write.done'] = first('L', 'wal.write.done', is(slot), m['L.wal.write.start']);
  m['L.wal.sync.done'] = first('L', 'wal.sync.done', is(slot));
  m['L.persisted'] = first('L', 'persisted', is(slot));
  // The follower whose `accepted` reached the leader first is on the critical path.
  const ack = evs.find((e) => e.proc === 'L' && e.stage === 'rx' && e.key.startsWith('accepted:') && e.key.endsWith(`:${slot}`));
  if (!ack) return undefined;
  f = ack.key.split(':')[1]?.split('>')[0] as string;
  const fast = `F${f}`;
  m['L.accept.flushed'] = first('L', 'tx.flushed', (e) => e.key.startsWith(`0>${f}:`) || e.key.includes(`>${f}:`), m['L.accept.queued']);
  m['L.accepted.rx'] = ack.t;
  m['F.accept.rx'] = first(fast, 'rx', (e) => e.key.startsWith('accept:') && e.key.endsWith(`>${f}:${slot}`));
  m['F.ready'] = first(fast, 'ready', (e) => e.key.startsWith(`e${slot}:`));
  m['F.wal.write.start'] = first(fast, 'wal.write.start', is(`${slot}:s`));
  m['F.wal.write.done'] = first(fast, 'wal.write.done', is(slot), m['F.wal.write.start']);
  m['F.wal.sync.done'] = first(fast, 'wal.sync.done', is(slot));
  m['F.persisted'] = first(fast, 'persisted', is(slot));
  m['F.accepted.queued'] = first(fast, 'tx.queue', (e) => e.key.startsWith('accepted:') && e.key.endsWith(`:${slot}`));
  m['F.accepted.flushed'] = first(fast, 'tx.flushed', (e) => e.key.startsWith(`${f}>`), m['F.accepted.queued']);
  m['L.commit.ready'] = first('L', 'ready', (e) => e.key.includes(`:c${slot}:`));
  m['L.commit.write'] = first('L', 'wal.write.start', (e) => e.key.endsWith(':n'), m['L.commit.ready']);
  m['L.apply'] = first('L', 'apply', is(slot));
  m['L.rpc.reply'] = first('L', 'rpc.reply', is(id));
  m['client.recv'] = first('C', 'client.recv', is(id));
  m['client.done'] = first('C', 'bench.done');
  return m;
}

/** Critical-path segments: [label, from, to]. */
const SEGMENTS: ReadonlyArray<readonly [string, string, string]> = [
  ['client -> leader (gRPC Pipeline, recv event)', 'client.write', 'L.rpc.recv'],
  ['leader: request -> propose (submit, schedule drain)', 'L.rpc.recv', 'L.propose'],
  ['leader: propose -> Ready taken', 'L.propose', 'L.ready'],
  ['leader: Ready -> accept queued in transport', 'L.ready', 'L.accept.queued'],
  ['leader: accept queued -> stream.write', 'L.accept.queued', 'L.accept.flushed'],
  ['net: leader stream.write -> follower rx accept', 'L.accept.flushed', 'F.accept.rx'],
  ['follower: rx accept -> Ready taken', 'F.accept.rx', 'F.ready'],
  ['follower: Ready -> WAL write start', 'F.ready', 'F.wal.write.start'],
  ['follower: WAL write (thread pool)', 'F.wal.write.start', 'F.wal.write.done'],
  ['follower: fdatasync (thread pool)', 'F.wal.write.done', 'F.wal.sync.done'],
  ['follower: sync done -> persisted()', 'F.wal.sync.done', 'F.persisted'],
  ['follower: persisted -> accepted queued', 'F.persisted', 'F.accepted.queued'],
  ['follower: accepted queued -> stream.write', 'F.accepted.queued', 'F.accepted.flushed'],
  ['net: follower stream.write -> leader rx accepted', 'F.accepted.flushed', 'L.accepted.rx'],
  ['leader: rx accepted -> commit Ready', 'L.accepted.rx', 'L.commit.ready'],
  ['leader: commit Ready -> (commit hint) WAL write start', 'L.commit.ready', 'L.commit.write'],
  ['leader: commit hint write start -> apply', 'L.commit.write', 'L.apply'],
  ['leader: apply -> reply written', 'L.apply', 'L.rpc.reply'],
  ['leader -> client (gRPC, recv event)', 'L.rpc.reply', 'client.recv'],
  ['client: recv -> put() resolves', 'client.recv', 'client.done'],
];
const SIDE: ReadonlyArray<readonly [string, string, string]> = [
  ['leader: Ready -> own WAL write start', 'L.ready', 'L.wal.write.start'],
  ['leader: own WAL write (thread pool)', 'L.wal.write.start', 'L.wal.write.done'],
  ['leader: own fdatasync (thread pool)', 'L.wal.write.done', 'L.wal.sync.done'],
  ['leader: sync done -> persisted()', 'L.wal.sync.done', 'L.persisted'],
  ['leader: own persisted, before accepted arrives (slack)', 'L.persisted', 'L.accepted.rx'],
  ['end to end (client write -> put resolves)', 'client.write', 'client.done'],
];

async function runOnce(run: number): Promise<Map<string, number>> {
  const group = new ProcessGroup();
  const tmp = mkdtempSync(join(tmpdir(), 'paxos-trace-'));
  const traceDir = join(tmp, 'traces');
  mkdirSync(traceDir);
  try {
    const main = compileNode(ROOT);
    const ports = await freePorts(3);
    const peers = ports.map((p, i) => `${i}=127.0.0.1:${p}`).join(',');
    const env = { ...process.env, PAXOS_TRACE_DIR: traceDir };
    for (let i = 0; i < 3; i++) {
      const dataDir = join(tmp, `n${i}`);
      mkdirSync(dataDir);
      group.spawn(
        `n${i}`,
        process.execPath,
        [main, '--id', String(i), '--data-dir', dataDir, '--peers', peers, '--listen', '127.0.0.1', '--peer-port', String(ports[i]), '--metrics-port', '0',
          '--bootstrap-config', JSON.stringify({ epoch: 1, members: [0, 1, 2] }), '--log-level', 'warn', '--insecure'],
        join(tmp, `n${i}.log`),
        { cwd: ROOT, env },
      );
    }
    process.env.PAXOS_TRACE_DIR = traceDir; // before the client (and trace.ts) load
    const { PaxosClient } = await import('../node/src/client/index.js');
    const { trace, traceEvents } = await import('../node/src/io/trace.js');
    const endpoints = ports.map((p) => `127.0.0.1:${p}`);
    const client = new PaxosClient({ endpoints, maxInflight: 1, pipeline: true, deadlineMs: 20_000 });
    const value = 'v'.repeat(256);
    for (let i = 0; i < 300; i++) await client.put(`warm/${i}`, value);
    const skip = traceEvents().length;
    const lat: number[] = [];
    for (let i = 0; i < PUTS; i++) {
      trace('bench.start', i);
      const t0 = performance.now();
      await client.put(`trace/${run}/${i}`, value);
      lat.push(performance.now() - t0);
      trace('bench.done', i);
    }
    client.close();
    const clientLines = traceEvents().slice(skip);
    await group.stopAll();
    await sleep(100);

    // One file per node process; the leader is the one that served requests.
    const procs: Array<{ name: string; evs: Ev[] }> = [];
    for (const f of readdirSync(traceDir)) {
      const lines = readFileSync(join(traceDir, f), 'utf8').split('\n');
      const id = lines.find((l) => l.includes(' node '))?.split(' ')[2];
      const leader = lines.some((l) => l.includes(' rpc.recv '));
      procs.push({ name: leader ? 'L' : `F${id}`, evs: parse(lines, leader ? 'L' : `F${id}`) });
    }
    const all = [...parse(clientLines, 'C'), ...procs.flatMap((p) => p.evs)].sort((a, b) => a.t - b.t);
    const starts = all.filter((e) => e.proc === 'C' && e.stage === 'bench.start');
    const ends = all.filter((e) => e.proc === 'C' && e.stage === 'bench.done');
    const seg = new Map<string, number[]>();
    let lo = 0;
    for (let i = 0; i < starts.length; i++) {
      const from = (starts[i] as Ev).t;
      const to = (ends[i] as Ev).t;
      while (lo < all.length && (all[lo] as Ev).t < from) lo++;
      let hi = lo;
      while (hi < all.length && (all[hi] as Ev).t <= to) hi++;
      const win = all.slice(lo, hi);
      if (process.env.TRACE_DUMP && i >= PUTS - Number(process.env.TRACE_DUMP)) {
        process.stderr.write(`--- put ${i}\n${win.map((e) => `${String(e.t - from).padStart(6)} ${e.proc.padEnd(3)} ${e.stage} ${e.key}`).join('\n')}\n`);
      }
      const m = marks(win);
      if (!m) continue;
      for (const [label, a, b] of [...SEGMENTS, ...SIDE]) {
        const x = m[a];
        const y = m[b];
        if (x === undefined || y === undefined) continue;
        seg.set(label, [...(seg.get(label) ?? []), y - x]);
      }
    }
    const s = sorted(lat);
    const out = new Map<string, number>();
    for (const [label] of [...SEGMENTS, ...SIDE]) {
      const xs = seg.get(label);
      out.set(label, xs ? percentile(sorted(xs), 50) : Number.NaN);
    }
    out.set('put latency p50 (ms)', round(percentile(s, 50), 3));
    out.set('put latency p99 (ms)', round(percentile(s, 99), 3));
    out.set('samples', seg.get('end to end (client write -> put resolves)')?.length ?? 0);
    return out;
  } finally {
    await group.stopAll();
    if (!args.keep) rmSync(tmp, { recursive: true, force: true });
    else process.stderr.write(`kept ${tmp}\n`);
  }
}

const median = (xs: number[]): number => percentile(sorted(xs), 50);

const results: Array<Map<string, number>> = [];
for (let r = 0; r < RUNS; r++) results.push(await runOnce(r));
const labels = [...(results[0] as Map<string, number>).keys()];
const lines: string[] = [];
let critical = 0;
for (const label of labels) {
  const per = results.map((m) => m.get(label) as number);
  const v = median(per);
  if (SEGMENTS.some(([l]) => l === label)) critical += v;
  const unit = label.includes('(ms)') || label === 'samples' ? '' : ' µs';
  lines.push(`${label.padEnd(56)} ${String(round(v, 1)).padStart(9)}${unit}${RUNS > 1 ? `   runs: ${per.map((x) => round(x, 1)).join(', ')}` : ''}`);
  if (label === SEGMENTS[SEGMENTS.length - 1]?.[0]) lines.push(`${'sum of critical-path medians'.padEnd(56)} ${String(round(critical, 1)).padStart(9)} µs`, '');
}
process.stdout.write(`${lines.join('\n')}\n`);
if (args.json) process.stdout.write(`${JSON.stringify(Object.fromEntries(labels.map((l) => [l, median(results.map((m) => m.get(l) as number))])))}\n`);
process.exit(0);
