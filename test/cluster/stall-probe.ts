/**
 * Write-stall probe: real node processes (ProcessCluster), a client writing continuously, and a
 * size change n -> m executed in the planner's Transfer order, one admin call per step, as the
 * operator does. Prints JSON lines:
 *
 * - `{"kind":"action", ...}`   each planned step with its start/end time (ms since the change began);
 * - `{"kind":"roles", ...}`    who led when (polled through AdminService/Status every few ms);
 * - `{"kind":"logs", ...}`     the nodes' log lines inside the longest stall;
 * - `{"kind":"result", ...}`   per change: the longest gap between consecutive acknowledged writes,
 *   where it was, and which step it fell in.
 *
 *   npx tsx test/cluster/stall-probe.ts [--changes 1-3,3-1,3-5,5-3] [--runs 3] [--timing pod|fast] [--quiet]
 *   npx tsx test/cluster/stall-probe.ts --chain --changes 3-5,5-3,3-1,1-3   # one cluster and writer throughout, as the e2e
 *
 * Without --chain every change gets a fresh cluster whose pod 0 leads.
 *
 * `--timing pod` (default) uses what the operator gives pods: tick 50 ms, heartbeat 100 ms,
 * election timeout 1000 ms. `fast` uses the cluster tests' 10/50/300 ms.
 * Not a jest test on purpose: wall-clock stall figures flake on a loaded machine.
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { PaxosClient } from '../../node/src/client/index.js';
import type { Config } from '../../node/src/core/types.js';
import { planSteps } from '../../operator/src/plan/plan-steps.js';
import type { Action } from '../../operator/src/plan/steps.js';
import { ProcessCluster, until } from './harness.js';

const TIMINGS = {
  pod: ['--tick-ms', '50', '--heartbeat-ms', '100', '--election-timeout-ms', '1000'],
  fast: ['--tick-ms', '10', '--heartbeat-ms', '50', '--election-timeout-ms', '300'],
} as const;

const { values } = parseArgs({
  options: {
    changes: { type: 'string', default: '1-3,3-1,3-5,5-3' },
    runs: { type: 'string', default: '1' },
    timing: { type: 'string', default: 'pod' },
    rate: { type: 'string', default: '150' },
    quiet: { type: 'boolean', default: false },
    chain: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'info' },
  },
});
const timing = TIMINGS[values.timing as keyof typeof TIMINGS];
if (timing === undefined) throw new Error(`--timing must be pod or fast`);
const rate = Number(values.rate);
const quiet = values.quiet === true;
const print = (o: object): void => console.log(JSON.stringify(o));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const members = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Writes unique keys from a few lanes at about `rate` writes/s and records ack times. */
class Writer {
  readonly acks: number[] = [];
  failed = 0;
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private readonly client: PaxosClient;

  /** Every attempt the client made (diagnostics: who it asked, how long, what came back). */
  readonly attempts: Array<{ start: number; end: number; target: string; error?: string }> = [];

  constructor(endpoints: string[], tls: ReturnType<ProcessCluster['clientCredentials']>, workers = 4) {
    // The e2e writer's options (test/e2e/harness.ts).
    this.client = new PaxosClient({ endpoints, deadlineMs: 15_000, attemptTimeoutMs: 1000, maxInflight: workers + 2, backoffMaxMs: 250, ...tls });
    // Probe-only: wrap the client's private per-attempt call to see retries inside a stall.
    const c = this.client as unknown as { attempt: (target: string, ...rest: unknown[]) => Promise<unknown> };
    const attempt = c.attempt.bind(this.client);
    c.attempt = async (target: string, ...rest: unknown[]): Promise<unknown> => {
      const start = Date.now();
      try {
        const r = await attempt(target, ...rest);
        this.attempts.push({ start, end: Date.now(), target });
        return r;
      } catch (err) {
        this.attempts.push({ start, end: Date.now(), target, error: (err as Error).message.slice(0, 120) });
        throw err;
      }
    };
    this.start(workers);
  }

  private start(workers: number): void {
    const interval = (1000 * workers) / rate;
    for (let w = 0; w < workers; w++) {
      this.loops.push((async () => {
        let next = Date.now();
        for (let seq = 0; this.running; seq++) {
          try {
            await this.client.put(`p/${w}/${seq}`, String(seq));
            this.acks.push(Date.now());
          } catch {
            this.failed++;
          }
          next += interval;
          const wait = next - Date.now();
          if (wait > 0) await sleep(wait);
          else next = Date.now();
        }
      })());
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.client.close();
  }

  /** Longest gap between consecutive acks in [from, to], and where it starts. */
  longestGap(from: number, to: number): { ms: number; start: number; end: number } {
    let prev = from;
    let best = { ms: 0, start: from, end: from };
    for (const t of this.acks) {
      if (t < from) { prev = t; continue; }
      if (t > to) break;
      if (t - prev > best.ms) best = { ms: t - prev, start: prev, end: t };
      prev = t;
    }
    if (to - prev > best.ms) best = { ms: to - prev, start: prev, end: to };
    return best;
  }
}

/**
 * The probe's own event-loop stalls (a 10 ms timer firing late): on a 2-core machine a stall
 * seen by the writer may be the client's process starved, not the quorum.
 */
class LoopLag {
  readonly late: Array<{ t: number; lateMs: number }> = [];
  private last = Date.now();
  private readonly timer = setInterval(() => {
    const now = Date.now();
    if (now - this.last > 60) this.late.push({ t: this.last, lateMs: now - this.last - 10 });
    this.last = now;
  }, 10);

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Polls every running node's role and records changes of (role, leader, ballot, epoch). */
class RoleWatcher {
  readonly events: Array<{ t: number; id: number; role: string; leader: number | undefined; round: number; epoch: number; prior: boolean }> = [];
  private readonly last = new Map<number, string>();
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly cluster: ProcessCluster, private readonly running_: () => number[]) {
    this.loop = (async () => {
      while (this.running) {
        await Promise.all(this.running_().map(async (id) => {
          const s = await cluster.status(id);
          if (s === undefined) return;
          const key = `${s.role}|${s.leader}|${s.ballot.round}|${s.config.epoch}|${s.config.prior !== undefined}`;
          if (this.last.get(id) === key) return;
          this.last.set(id, key);
          this.events.push({ t: Date.now(), id, role: s.role, leader: s.leader, round: s.ballot.round, epoch: s.config.epoch, prior: s.config.prior !== undefined });
        }));
        await sleep(10);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

function shortLog(line: string): object | undefined {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const { level: _l, pid: _p, hostname: _h, name: _n, ...rest } = o;
    return rest;
  } catch {
    return undefined;
  }
}

/** One process cluster with a writer and a role watcher; changes run on it one after another. */
class Bench {
  readonly running = new Set<number>();
  writer!: Writer;
  roles!: RoleWatcher;
  readonly lag = new LoopLag();
  epoch = 1;
  size: number;

  private constructor(readonly cluster: ProcessCluster, size: number) {
    this.size = size;
  }

  static async create(size: number, capacity: number): Promise<Bench> {
    const cluster = await ProcessCluster.create({ capacity, flags: [...timing, '--log-level', values['log-level'] as string] });
    const b = new Bench(cluster, size);
    const O: Config = { epoch: 1, members: members(size) };
    for (const id of members(size)) b.start(id, O);
    let leader = await cluster.waitStable(members(size));
    // The planner's printed plans assume pod 0 leads (the common case, and the e2e's).
    for (let i = 0; leader !== 0 && i < 5; i++) {
      await cluster.admin.transferLeadership(cluster.endpoint(leader), 0).catch(() => undefined);
      await until('pod 0 leads', async () => (await cluster.status(0))?.role === 'leader', 5000).catch(() => undefined);
      leader = await cluster.waitStable(members(size));
    }
    // Like the e2e writer: the endpoints of the first three pods (or all of them when fewer run).
    b.writer = new Writer(cluster.endpoints(members(Math.max(3, size)).filter((id) => id < capacity)), cluster.clientCredentials());
    b.roles = new RoleWatcher(cluster, () => [...b.running]);
    await sleep(1500); // warm up: connections, JIT
    return b;
  }

  start(id: number, config: Config, extra: string[] = []): void {
    this.cluster.start(id, config, extra);
    this.running.add(id);
  }

  async leaderNow(): Promise<number> {
    let found = -1;
    await until('a leader', async () => {
      const all = await Promise.all([...this.running].map((id) => this.cluster.status(id)));
      found = all.find((s) => s?.role === 'leader')?.id ?? -1;
      return found >= 0;
    }, 30_000);
    return found;
  }

  async destroy(): Promise<void> {
    this.lag.stop();
    await this.roles?.stop();
    await this.writer?.stop();
    await this.cluster.destroy();
  }
}

async function runChange(b: Bench, to: number, run: number): Promise<{ change: string; maxStallMs: number }> {
  const { cluster, writer } = b;
  const from = b.size;
  const change = `${from}->${to}`;
  const leader = await b.leaderNow();
  const t0 = Date.now();
  const actions: Array<{ text: string; start: number; end: number }> = [];
  const plan = planSteps(from, to, 'Transfer', leader);
  if (plan.stuck !== undefined) throw new Error(`planner stuck: ${plan.stuck}`);
  // The planner numbers epochs from 1; shift them onto the cluster's current epoch.
  const shift = b.epoch - 1;
  const cfg = (c: { epoch: number; members: readonly number[]; prior?: readonly number[] }): Config => ({ ...c, epoch: c.epoch + shift });

  const caughtUp = async (id: number): Promise<void> => {
    await until(`node ${id} caught up`, async () => {
      const s = await cluster.status(id);
      return s !== undefined && s.caughtUp && s.leader !== undefined && s.ready;
    }, 30_000);
  };

  const execute = async (step: Action): Promise<void> => {
    switch (step.kind) {
      case 'StartPod':
        b.start(step.ordinal, cfg(step.config), ['--joining']);
        await caughtUp(step.ordinal);
        return;
      case 'Convert': {
        const config = cfg(step.config);
        await cluster.admin.convert(cluster.endpoint(step.ordinal), config);
        await until(`node ${step.ordinal} on epoch ${config.epoch}`, async () => (await cluster.status(step.ordinal))?.config.epoch === config.epoch);
        await caughtUp(step.ordinal);
        return;
      }
      case 'TransferLeadership':
        await cluster.admin.transferLeadership(cluster.endpoint(step.from), step.to);
        await until(`pod ${step.to} leads`, async () => (await cluster.status(step.to))?.role === 'leader', 10_000);
        return;
      case 'Finalize': {
        // The plan names the leader it expects; if an election made someone else lead, use it
        // (and say so: that is part of what the probe is for).
        // The operator would then move leadership to a node holding the joint configuration
        // first (a node still on the old one has nothing to finalize), which costs a transfer.
        for (let attempt = 0; attempt < 5; attempt++) {
          const at = await b.leaderNow();
          if (at === step.leader) break;
          print({ kind: 'note', change, run, note: `finalize expected leader ${step.leader}, found ${at}: transferring` });
          await cluster.admin.transferLeadership(cluster.endpoint(at), step.leader).catch(() => undefined);
          await until(`pod ${step.leader} leads`, async () => (await cluster.status(step.leader))?.role === 'leader', 5000).catch(() => undefined);
        }
        await cluster.admin.finalize(cluster.endpoint(step.leader), 20_000);
        b.epoch = step.epoch + shift;
        return;
      }
      case 'StopPod':
        await cluster.stop(step.ordinal);
        b.running.delete(step.ordinal);
        fs.rmSync(cluster.dataDir(step.ordinal), { recursive: true, force: true }); // its volume goes too
        return;
    }
  };

  for (const { step, text } of plan.steps) {
    const a = { text, start: Date.now() };
    await execute(step);
    actions.push({ ...a, end: Date.now() });
    if (!quiet) print({ kind: 'action', change, run, text, startMs: a.start - t0, endMs: Date.now() - t0 });
  }
  b.size = to;
  await sleep(500); // let the writer show whether it recovered
  const t1 = Date.now();

  const gap = writer.longestGap(t0, t1);
  const inStep = actions.filter((a) => a.start <= gap.end && a.end >= gap.start).map((a) => a.text);
  const perStep = actions.map((a) => ({ step: a.text, maxGapMs: writer.longestGap(a.start, a.end).ms }));
  const window = { from: gap.start - 300, to: gap.end + 100 };
  if (!quiet) {
    print({ kind: 'roles', change, run, events: b.roles.events.filter((e) => e.t >= t0 - 100 && e.t <= t1).map((e) => ({ ...e, t: e.t - t0 })) });
    const lines: object[] = [];
    for (const id of members(Math.max(from, to))) {
      for (const line of cluster.logs(id).split('\n')) {
        const o = shortLog(line) as { time?: number } | undefined;
        if (o?.time !== undefined && o.time >= window.from && o.time <= window.to) lines.push({ node: id, ...o, time: o.time - t0 });
      }
    }
    lines.sort((x, y) => (x as { time: number }).time - (y as { time: number }).time);
    print({ kind: 'logs', change, run, window: { from: window.from - t0, to: window.to - t0 }, lines });
    const port = (target: string): number => members(Math.max(from, to)).find((id) => cluster.endpoint(id) === target) ?? -1;
    const attempts = writer.attempts
      .filter((a) => a.end >= gap.start && a.start <= gap.end)
      .map((a) => ({ node: port(a.target), start: a.start - t0, end: a.end - t0, ...(a.error === undefined ? {} : { error: a.error }) }));
    print({ kind: 'attempts', change, run, attempts });
    print({ kind: 'probeLoopLag', change, run, late: b.lag.late.filter((l) => l.t + l.lateMs >= gap.start && l.t <= gap.end).map((l) => ({ ...l, t: l.t - t0 })) });
  }
  const result = {
    kind: 'result', change, run, timing: values.timing,
    maxStallMs: gap.ms, stallAtMs: [gap.start - t0, gap.end - t0], inStep,
    perStep, acked: writer.acks.filter((t) => t >= t0 && t <= t1).length, failedTotal: writer.failed, wallMs: t1 - t0,
  };
  print(result);
  return result;
}

const changes = (values.changes as string).split(',').map((c) => c.split('-').map(Number) as [number, number]);
const results: Array<{ change: string; maxStallMs: number }> = [];
for (let run = 1; run <= Number(values.runs); run++) {
  if (values.chain === true) {
    // One cluster and one writer through every change, as the e2e test does.
    const capacity = Math.max(...changes.flat());
    const b = await Bench.create((changes[0] as [number, number])[0], capacity);
    try {
      for (const [from, to] of changes) {
        if (from !== b.size) throw new Error(`--chain: ${from}->${to} does not start at size ${b.size}`);
        results.push(await runChange(b, to, run));
      }
    } finally {
      await b.destroy();
    }
    continue;
  }
  for (const [from, to] of changes) {
    const b = await Bench.create(from, Math.max(from, to));
    try {
      results.push(await runChange(b, to, run));
    } finally {
      await b.destroy();
    }
  }
}
const summary: Record<string, number[]> = {};
for (const r of results) (summary[r.change] ??= []).push(r.maxStallMs);
print({ kind: 'summary', timing: values.timing, chain: values.chain, maxStallMs: summary });
