/**
 * The end-to-end scenario's building blocks, shared by the jest file (e2e.test.ts) and the
 * stand-alone runner (run.ts): a LocalCluster with the chart installed and the sample quorum,
 * a continuous writer that records a client history, and scale steps that measure wall time,
 * write stalls and failed operations and then check convergence, read-back and linearizability.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AdminClient, PaxosClient } from '../../node/src/client/index.js';
import { History } from '../sim/history.js';
import { checkLinearizable } from '../sim/linearizability.js';
import { CHART_DIR, LocalCluster, REPO_ROOT } from '../k8s/local-cluster.js';
import { requireTools } from '../k8s/cluster/tools.js';
import { buildNodeImage } from '../k8s/node/images.js';
import { PodDns } from './pod-dns.js';

export const NS = 'default';
export const QUORUM = 'demo';
export const OPERATOR_NS = 'paxos-system';
export const RELEASE = 'paxos-operator';
const CLIENT_PORT = 7000;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A PaxosQuorum as the tests read it. */
export interface Pq {
  metadata: { generation?: number; uid?: string };
  spec: { replicas: number; reconfiguration?: { mode?: string } };
  status?: {
    observedGeneration?: number;
    phase?: string;
    replicas?: number;
    readyReplicas?: number;
    leader?: string;
    configEpoch?: number;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    members?: { name: string; id: number; role?: string; epoch?: number; healthy?: boolean }[];
    operation?: { kind: string; from: number; to: number; step: number; totalSteps: number; description: string; mode: string } | null;
  };
}

/** The measurements of one scale step. */
export interface StepResult {
  name: string;
  from: number;
  to: number;
  mode: 'Transfer' | 'Election';
  wall_ms: number;
  /** For a slow step: what convergence waited for, each reason with its time. */
  waits?: string[];
  max_stall_ms: number;
  failed_ops: number;
  /**
   * Failed attempts inside the library's calls, which its retries hid: what a client without
   * retries would have seen. By status name, NOT_LEADER answers as `NOT_LEADER`; includes
   * transport errors (a deleted pod's refused connection is UNAVAILABLE too).
   */
  refusals: number;
  refusals_by_code: Record<string, number>;
  acked_writes: number;
  writes_per_s: number;
  lost_writes: number;
  linearizable: boolean;
  /** A fault was injected during the step (pod deletion); not counted in the mode's stall target. */
  fault: boolean;
  note?: string;
}

/** Fails with "run `npm run tools:build`" when the Go-built binaries are missing; never skips. */
export function requireE2eTools(): void {
  requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'helm', 'kubelet', 'kube-proxy', 'coredns', 'crictl', 'buildkitd', 'buildctl']);
  if (process.getuid?.() !== 0) throw new Error('The e2e tests need root (they run containerd, kubelets and kube-proxy).');
}

/** One cluster with the operator installed and the sample quorum, for a whole test file. */
export class E2eEnv {
  readonly cluster = new LocalCluster();
  dns: PodDns | undefined;
  readonly admin = new AdminClient({ deadlineMs: 3000 });
  log: (msg: string) => void = () => undefined;

  async start(): Promise<void> {
    requireE2eTools();
    await this.cluster.start();
    const pki = this.cluster.controlPlane.pki;
    if (!pki) throw new Error('no PKI');
    this.dns = new PodDns({ server: this.cluster.controlPlane.server, caFile: pki.ca.cert, certFile: pki.admin.cert, keyFile: pki.admin.key });
    await this.dns.start();
  }

  /** What the pods ran on: container runtime, node count, and the digests of the built images. */
  runtimeInfo(): { runtime: string; nodes: number; images: Record<string, { ref: string; digest: string; image_id: string; size_mb: number }> } {
    const built = this.cluster.built;
    const images: Record<string, { ref: string; digest: string; image_id: string; size_mb: number }> = {};
    for (const [k, img] of Object.entries(built ?? {})) images[k] = { ref: img.ref, digest: img.digest, image_id: img.imageId, size_mb: Math.round(img.sizeBytes / 104857.6) / 10 };
    return { runtime: 'containerd', nodes: this.cluster.nodes?.nodeNames.length ?? 0, images };
  }

  /**
   * Builds the node image once more under `tag` (BuildKit's cache: seconds) and imports it into
   * every node; returns the reference to set as `spec.image`.
   */
  async upgradeImage(tag = 'upgrade'): Promise<string> {
    const image = await buildNodeImage(tag, (l) => this.log(l));
    if (!this.cluster.nodes) throw new Error('cluster not started');
    await this.cluster.nodes.importImage(image.archive);
    return image.ref.replace(/^docker\.io\//, '');
  }

  async stop(): Promise<void> {
    this.admin.close();
    await this.dns?.stop();
    await this.cluster.stop();
  }

  kubectl(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return this.cluster.kubectl(args, opts);
  }

  helm(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    return this.cluster.helm(args, opts);
  }

  async helmInstall(): Promise<void> {
    await this.helm(['install', RELEASE, CHART_DIR, '-n', OPERATOR_NS, '--create-namespace', '--wait', '--timeout', '4m'], { timeoutMs: 260_000 });
  }

  async applySample(): Promise<void> {
    await this.kubectl(['apply', '-n', NS, '-f', join(REPO_ROOT, 'examples', 'quorum.yaml')]);
  }

  async pq(): Promise<Pq> {
    return JSON.parse(await this.kubectl(['get', 'paxosquorum', QUORUM, '-n', NS, '-o', 'json'])) as Pq;
  }

  async podIp(name: string): Promise<string | undefined> {
    return this.dns?.ips.get(`${NS}/${name}`);
  }

  /** Client endpoints: the pods' DNS names, resolved on this host to pod IPs by PodDns. */
  endpoints(n = 3): string[] {
    return Array.from({ length: n }, (_, i) => `${QUORUM}-${i}.${QUORUM}-peers.${NS}.svc:${CLIENT_PORT}`);
  }

  /**
   * Why the quorum is not (yet) converged on `replicas` members, or undefined when it is:
   * Available, no operation, `status.members` = 0..replicas-1 all healthy, and every node's own
   * configuration (admin status) = those members, no prior, epoch = status.configEpoch.
   */
  async notConverged(replicas: number): Promise<string | undefined> {
    const pq = await this.pq();
    const st = pq.status ?? {};
    if ((st.observedGeneration ?? 0) < (pq.metadata.generation ?? 0)) return `observedGeneration ${st.observedGeneration} < ${pq.metadata.generation}`;
    if (st.operation) {
      // The Progressing message says what the operator itself waits for (e.g. "wait: pod 4 ...").
      const progressing = st.conditions?.find((c) => c.type === 'Progressing')?.message;
      return `operation in progress: ${st.operation.kind} ${st.operation.from}->${st.operation.to} step ${st.operation.step}/${st.operation.totalSteps} (${st.operation.description})${progressing ? `; operator: ${progressing}` : ''}`;
    }
    const avail = st.conditions?.find((c) => c.type === 'Available');
    if (st.phase !== 'Available' || avail?.status !== 'True') return `phase ${st.phase}, Available=${avail?.status} (${avail?.message ?? ''})`;
    const members = st.members ?? [];
    const ids = members.map((m) => m.id).sort((a, b) => a - b);
    const want = Array.from({ length: replicas }, (_, i) => i);
    if (JSON.stringify(ids) !== JSON.stringify(want)) return `status.members ids ${JSON.stringify(ids)} != ${JSON.stringify(want)}`;
    if (members.some((m) => m.healthy === false)) return `unhealthy member in ${JSON.stringify(members)}`;
    const pods = JSON.parse(await this.kubectl(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${QUORUM}`, '-o', 'json'])) as {
      items: { metadata: { name: string; deletionTimestamp?: string }; status?: { podIP?: string } }[];
    };
    if (pods.items.length !== replicas) return `${pods.items.length} pods, want ${replicas}`;
    for (const m of members) {
      const pod = pods.items.find((p) => p.metadata.name === m.name);
      const ip = pod?.status?.podIP;
      if (!ip || pod?.metadata.deletionTimestamp) return `pod ${m.name} has no IP or is terminating`;
      let s;
      try {
        s = await this.admin.status(`${ip}:${CLIENT_PORT}`);
      } catch (e) {
        return `admin status of ${m.name}: ${(e as Error).message}`;
      }
      const cfg = [...s.config.members].sort((a, b) => a - b);
      if (JSON.stringify(cfg) !== JSON.stringify(want)) return `${m.name} has members ${JSON.stringify(cfg)}, want ${JSON.stringify(want)}`;
      if (s.config.prior !== undefined && s.config.prior.length > 0) return `${m.name} still has prior ${JSON.stringify(s.config.prior)}`;
      if (s.config.epoch !== st.configEpoch) return `${m.name} is on epoch ${s.config.epoch}, status.configEpoch ${st.configEpoch}`;
      if (s.dataLoss !== 'none') return `${m.name} reports data loss: ${s.dataLoss}`;
    }
    return undefined;
  }

  /** What the last waitConverged waited for, each change of reason with its time. */
  waits: string[] = [];

  async waitConverged(replicas: number, timeoutMs = 240_000): Promise<void> {
    this.waits = [];
    const start = Date.now();
    const deadline = start + timeoutMs;
    let why: string | undefined = 'not checked';
    while (Date.now() < deadline) {
      const now = await this.notConverged(replicas).catch((e: unknown) => `error: ${(e as Error).message}`);
      // Each change of reason, timed: a slow step then says what it waited for.
      if (now !== why && now !== undefined) {
        const line = `+${Date.now() - start} ms: ${now}`;
        this.waits.push(line);
        this.log(`waiting ${line}`);
      }
      why = now;
      if (why === undefined) return;
      await sleep(500);
    }
    throw new Error(`quorum did not converge on ${replicas} members within ${timeoutMs / 1000} s: ${why}`);
  }

  /** Waits until `status.operation` is set (a change is under way) and `pred` holds. */
  async waitOperation(pred: (pq: Pq) => boolean, timeoutMs = 60_000): Promise<Pq> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pq = await this.pq();
      if (pq.status?.operation && pred(pq)) return pq;
      if (Date.now() > deadline) throw new Error(`no operation matching the condition within ${timeoutMs / 1000} s; status ${JSON.stringify(pq.status)}`);
      await sleep(200);
    }
  }

  /** Name of the operator pod holding the leader Lease. */
  async operatorLeaderPod(): Promise<string> {
    const holder = (await this.kubectl(['get', 'lease', '-n', OPERATOR_NS, RELEASE, '-o', 'jsonpath={.spec.holderIdentity}'])).trim();
    const pod = holder.replace(/_[0-9a-f]+$/, '');
    if (!pod) throw new Error('operator Lease has no holder');
    return pod;
  }
}

/** Keys are `e2e/<worker>/<chunk>/<seq>`: a chunk holds at most CHUNK keys, so one range reads it. */
const CHUNK = 500;
const keyOf = (w: number, seq: number): string => `e2e/${w}/${Math.floor(seq / CHUNK)}/${String(seq).padStart(8, '0')}`;

/**
 * Writes unique keys continuously from several lanes at about `rate` writes/s, plus a reader
 * that re-reads recent keys, recording every call in a History.
 */
export class Writer {
  readonly history = new History();
  readonly acked = new Map<string, string>();
  /** Ack times (ms since epoch) of writes, in order. */
  readonly ackTimes: number[] = [];
  failed = 0;
  failures: string[] = [];
  /** Every failed attempt of the client's calls (writes and reads), by status name. */
  readonly refusals: Record<string, number> = {};
  private readonly seqs: number[];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly client: PaxosClient;
  private readonly t0 = Date.now();

  constructor(endpoints: readonly string[], private readonly workers = 4, private readonly rate = 200) {
    this.client = new PaxosClient({
      endpoints,
      deadlineMs: 15_000,
      attemptTimeoutMs: 1000,
      maxInflight: workers + 2,
      backoffMaxMs: 250,
      onAttemptError: (e) => {
        const code = e.notLeader ? 'NOT_LEADER' : e.codeName;
        this.refusals[code] = (this.refusals[code] ?? 0) + 1;
      },
    });
    this.seqs = Array.from({ length: workers }, () => 0);
  }

  private tick(): number {
    return Date.now() - this.t0;
  }

  start(): void {
    this.running = true;
    const interval = (1000 * this.workers) / this.rate;
    for (let w = 0; w < this.workers; w++) {
      this.loops.push((async () => {
        let next = Date.now();
        while (this.running) {
          const seq = this.seqs[w] ?? 0;
          this.seqs[w] = seq + 1;
          const key = keyOf(w, seq);
          const value = `v${w}-${seq}`;
          const id = this.history.invoke(`w${w}`, { type: 'put', key, value }, this.tick());
          try {
            const prev = await this.client.put(key, value);
            this.history.complete(id, { ok: true, value: prev }, this.tick());
            this.acked.set(key, value);
            this.ackTimes.push(Date.now());
          } catch (e) {
            this.failed++;
            if (this.failures.length < 20) this.failures.push(`${key}: ${(e as Error).message}`);
          }
          next += interval;
          const wait = next - Date.now();
          if (wait > 0) await sleep(wait);
          else next = Date.now();
        }
      })());
    }
    // A reader: linearizable gets of keys written a moment ago, checked by the history.
    this.loops.push((async () => {
      while (this.running) {
        const w = Math.floor(Math.random() * this.workers);
        const seq = Math.max(0, (this.seqs[w] ?? 0) - 1 - Math.floor(Math.random() * 3));
        const key = keyOf(w, seq);
        const id = this.history.invoke('r', { type: 'get', key }, this.tick());
        try {
          const v = await this.client.get(key);
          this.history.complete(id, { ok: true, value: v }, this.tick());
        } catch {
          /* a read that failed has no effect; the checker drops it */
        }
        await sleep(50);
      }
    })());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  close(): void {
    this.client.close();
  }

  /** Longest gap between consecutive acknowledged writes within [from, to] (the last ack before `from` counts as a start). */
  maxStall(from: number, to: number): number {
    let prev = from;
    let max = 0;
    for (const t of this.ackTimes) {
      if (t < from) {
        prev = t;
        continue;
      }
      if (t > to) break;
      max = Math.max(max, t - prev);
      prev = t;
    }
    return Math.max(max, to - prev);
  }

  acksBetween(from: number, to: number): number {
    return this.ackTimes.filter((t) => t >= from && t <= to).length;
  }

  /**
   * Reads back every acknowledged write (range per chunk, recorded as gets in the history) and
   * returns the keys whose value is missing or different.
   */
  async readBack(): Promise<string[]> {
    const lost: string[] = [];
    for (let w = 0; w < this.workers; w++) {
      const chunks = Math.floor((this.seqs[w] ?? 0) / CHUNK) + 1;
      for (let c = 0; c < chunks; c++) {
        const prefix = `e2e/${w}/${c}/`;
        const expected = [...this.acked.entries()].filter(([k]) => k.startsWith(prefix));
        const ids = new Map(expected.map(([k]) => [k, this.history.invoke('readback', { type: 'get', key: k }, this.tick())]));
        const got = new Map((await this.client.range(prefix, CHUNK + 10)).map((kv) => [kv.key, kv.value]));
        for (const [k, v] of expected) {
          this.history.complete(ids.get(k) as number, { ok: true, value: got.get(k) ?? null }, this.tick());
          if (got.get(k) !== v) lost.push(k);
        }
      }
    }
    return lost;
  }

  checkLinearizable(): { ok: boolean; detail: string } {
    const r = checkLinearizable(this.history.operations);
    if (r.ok === true) return { ok: true, detail: `${r.operations} operations on ${r.keys} keys` };
    if (r.ok === 'unknown') return { ok: false, detail: `checker gave up on key ${r.key} after ${r.steps} steps` };
    return { ok: false, detail: r.explanation };
  }
}

/** How a step changes the size. */
export interface StepSpec {
  name: string;
  to: number;
  mode?: 'Transfer' | 'Election';
  /** `patch` (kubectl patch spec.replicas) or `scale` (kubectl scale). */
  via?: 'patch' | 'scale';
  /** Runs while the change is under way (e.g. deletes a pod). */
  during?: (env: E2eEnv) => Promise<string | undefined>;
}

/**
 * One scale step under write load: changes the size, waits until converged, then reads every
 * acknowledged write back and checks the history.
 */
/** Steps slower than this record what they waited for (`StepResult.waits`). */
const SLOW_STEP_MS = 15_000;

export async function scaleStep(env: E2eEnv, writer: Writer, step: StepSpec): Promise<StepResult> {
  const before = await env.pq();
  const from = before.spec.replicas;
  const mode = step.mode ?? 'Transfer';
  if ((before.spec.reconfiguration?.mode ?? 'Transfer') !== mode) {
    await env.kubectl(['patch', 'paxosquorum', QUORUM, '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { reconfiguration: { mode } } })]);
  }
  const failedBefore = writer.failed;
  const refusalsBefore = { ...writer.refusals };
  const t0 = Date.now();
  if (step.via === 'scale') await env.kubectl(['scale', `paxosquorum/${QUORUM}`, '-n', NS, `--replicas=${step.to}`]);
  else await env.kubectl(['patch', 'paxosquorum', QUORUM, '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { replicas: step.to } })]);
  const note = step.during ? await step.during(env) : undefined;
  await env.waitConverged(step.to);
  const t1 = Date.now();
  const lost = await writer.readBack();
  const lin = writer.checkLinearizable();
  const acked = writer.acksBetween(t0, t1);
  const result: StepResult = {
    name: step.name,
    from,
    to: step.to,
    mode,
    wall_ms: t1 - t0,
    max_stall_ms: writer.maxStall(t0, t1),
    failed_ops: writer.failed - failedBefore,
    ...refusalsSince(refusalsBefore, writer.refusals),
    acked_writes: acked,
    writes_per_s: Math.round((acked * 1000) / Math.max(1, t1 - t0)),
    lost_writes: lost.length,
    linearizable: lin.ok,
    fault: step.during !== undefined,
    ...(note || !lin.ok || lost.length ? { note: [note, lin.ok ? '' : `not linearizable: ${lin.detail}`, lost.length ? `lost: ${lost.slice(0, 5).join(', ')}` : ''].filter(Boolean).join('; ') } : {}),
    // A step much slower than usual says what it waited for.
    ...(t1 - t0 > SLOW_STEP_MS ? { waits: env.waits } : {}),
  };
  env.log(`step ${JSON.stringify(result)}`);
  return result;
}

function refusalsSince(before: Record<string, number>, now: Record<string, number>): Pick<StepResult, 'refusals' | 'refusals_by_code'> {
  const byCode: Record<string, number> = {};
  for (const [code, n] of Object.entries(now)) if (n > (before[code] ?? 0)) byCode[code] = n - (before[code] ?? 0);
  return { refusals: Object.values(byCode).reduce((a, b) => a + b, 0), refusals_by_code: byCode };
}

/** Deletes the operator pod holding the Lease once an expansion has started a new pod. */
export async function deleteOperatorMidExpansion(env: E2eEnv): Promise<string> {
  const pq = await env.waitOperation((p) => (p.status?.operation?.step ?? 0) >= 2 || (p.status?.replicas ?? 0) > (p.status?.operation?.from ?? 99));
  const pod = await env.operatorLeaderPod();
  await env.kubectl(['delete', 'pod', '-n', OPERATOR_NS, pod, '--wait=false']);
  return `deleted operator leader ${pod} at step ${pq.status?.operation?.step}/${pq.status?.operation?.totalSteps} (${pq.status?.operation?.description})`;
}

/** Deletes a surviving follower pod once a shrink is under way. */
export async function deleteFollowerMidShrink(env: E2eEnv): Promise<string> {
  const pq = await env.waitOperation(() => true);
  const to = pq.status?.operation?.to ?? 1;
  const leader = pq.status?.leader;
  const victim = Array.from({ length: to }, (_, i) => `${QUORUM}-${i}`).find((n) => n !== leader) ?? `${QUORUM}-0`;
  await env.kubectl(['delete', 'pod', '-n', NS, victim, '--wait=false']);
  return `deleted follower ${victim} (leader ${leader}) at step ${pq.status?.operation?.step}/${pq.status?.operation?.totalSteps} (${pq.status?.operation?.description})`;
}

/**
 * A follower loses its volume: its PVC, then its pod, are deleted (the PVC goes once the pod is
 * gone); the StatefulSet recreates both, so the node restarts on an empty volume. The operator
 * must see it report lost data and repair it with a reconfiguration; writes go on throughout.
 */
export async function loseFollowerVolume(env: E2eEnv): Promise<string> {
  const pq = await env.pq();
  const leader = pq.status?.leader;
  const size = pq.spec.replicas;
  const victim = Array.from({ length: size }, (_, i) => `${QUORUM}-${size - 1 - i}`).find((n) => n !== leader) ?? `${QUORUM}-0`;
  await env.kubectl(['delete', 'pvc', '-n', NS, `data-${victim}`, '--wait=false']);
  await env.kubectl(['delete', 'pod', '-n', NS, victim, '--wait=false']);
  const repair = await env.waitOperation((p) => p.status?.operation?.kind === 'Repair', 180_000);
  return `deleted the volume and pod of follower ${victim} (leader ${leader}); the operator repairs it: ${repair.status?.operation?.description}`;
}

/** The steps of the scale scenario, in order. */
export const SCALE_STEPS: readonly StepSpec[] = [
  { name: '3->5', to: 5 },
  { name: '5->3', to: 3 },
  { name: '3->1', to: 1 },
  { name: '1->3', to: 3 },
  { name: '3->5 Election (kubectl scale)', to: 5, mode: 'Election', via: 'scale' },
  { name: '5->3 follower pod deleted mid-shrink', to: 3, during: deleteFollowerMidShrink },
  { name: '3->5 operator pod deleted mid-expansion', to: 5, during: deleteOperatorMidExpansion },
  { name: '5 members, a follower loses its volume (repair)', to: 5, during: loseFollowerVolume },
];

/** The JSON summary `npm run e2e -- --json` prints. */
export interface Summary {
  failed_ops: number;
  /** Failed attempts hidden by the library's retries, over all steps (see `StepResult.refusals`). */
  refusals: number;
  lost_writes: number;
  linearizable: boolean;
  max_stall_ms_transfer: number;
  max_stall_ms_election: number;
  steps: StepResult[];
  [extra: string]: unknown;
}

export function summarize(steps: readonly StepResult[], extra: Record<string, unknown> = {}): Summary {
  const last = steps[steps.length - 1];
  // Per mode, over the plain scale steps (the steps with an injected fault are reported on their own).
  const max = (m: string): number => Math.max(0, ...steps.filter((s) => s.mode === m && !s.fault).map((s) => s.max_stall_ms));
  return {
    failed_ops: steps.reduce((a, s) => a + s.failed_ops, 0),
    refusals: steps.reduce((a, s) => a + s.refusals, 0),
    // Read-back is cumulative: the last step's count covers every write acknowledged so far.
    lost_writes: Math.max(0, ...steps.map((s) => s.lost_writes)),
    linearizable: steps.length > 0 && steps.every((s) => s.linearizable) && (last?.linearizable ?? false),
    max_stall_ms_transfer: max('Transfer'),
    max_stall_ms_election: max('Election'),
    max_stall_ms_fault_steps: Math.max(0, ...steps.filter((s) => s.fault).map((s) => s.max_stall_ms)),
    steps: [...steps],
    ...extra,
  };
}

export const RESULTS_FILE = join(REPO_ROOT, 'test', 'e2e', 'results', 'latest.json');

export function writeResults(summary: Summary): void {
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(summary, null, 2)}\n`);
}

/**
 * Objects of the release or the quorum left in the cluster (for the uninstall check). Not
 * counted: the namespaces' own ServiceAccount `default` and ConfigMap `kube-root-ca.crt`, the
 * `kubernetes` Service, and Leases (the operator's leader-election Lease is created by the
 * operator, not by Helm, and stays; see {@link leftoverLease}).
 */
export async function leftovers(env: E2eEnv): Promise<string[]> {
  const out: string[] = [];
  for (const ns of [NS, OPERATOR_NS]) {
    const raw = await env.kubectl(['get', 'pods,services,statefulsets,deployments,replicasets,pvc,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets', '-n', ns, '-o', 'json']).catch(() => '{"items":[]}');
    const items = (JSON.parse(raw) as { items: { kind: string; metadata: { name: string } }[] }).items;
    for (const it of items) {
      const n = it.metadata.name;
      // Cluster furniture that exists in every namespace, not ours.
      if (n === 'kube-root-ca.crt' || n === 'default' || (ns === NS && it.kind === 'Service' && n === 'kubernetes')) continue;
      out.push(`${it.kind} ${ns}/${n}`);
    }
  }
  const pvs = JSON.parse(await env.kubectl(['get', 'pv', '-o', 'json'])) as { items: { metadata: { name: string }; spec?: { claimRef?: { namespace?: string; name?: string } } }[] };
  for (const pv of pvs.items) out.push(`PersistentVolume ${pv.metadata.name} (claim ${pv.spec?.claimRef?.namespace}/${pv.spec?.claimRef?.name})`);
  const cluster = JSON.parse(await env.kubectl(['get', 'clusterroles,clusterrolebindings', '-l', `app.kubernetes.io/instance=${RELEASE}`, '-o', 'json'])) as { items: { kind: string; metadata: { name: string } }[] };
  for (const it of cluster.items) out.push(`${it.kind} ${it.metadata.name}`);
  return out;
}

/** The operator's leader-election Lease if it is still there (reported, not a failure). */
export async function leftoverLease(env: E2eEnv): Promise<string | undefined> {
  const out = await env.kubectl(['get', 'lease', '-n', OPERATOR_NS, RELEASE, '-o', 'name']).catch(() => '');
  return out.trim() || undefined;
}

/**
 * What is still there after `helm uninstall`, polled for up to `seconds` while the garbage
 * collector works: objects of the release and the quorum, and the operator's leader-election
 * Lease (owned by the operator's Deployment, so it must go too). The CRD and namespace stay.
 */
export async function leftoversAfterUninstall(env: E2eEnv, seconds = 60): Promise<string[]> {
  let left: string[] = [];
  for (let i = 0; i < seconds; i++) {
    const lease = await leftoverLease(env);
    left = [...await leftovers(env), ...(lease === undefined ? [] : [lease])];
    if (left.length === 0) break;
    await sleep(1000);
  }
  return left;
}
