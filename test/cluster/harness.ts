/**
 * Process-level cluster harness: runs real node processes (`node/src/main.ts` under tsx) on
 * a private loopback address (see loopback.ts) with temporary data directories, and can kill -9, stop, restart
 * and inspect them. Used by the cluster tests; not by production code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { AdminClient, type NodeStatus } from '../../node/src/client/index.js';
import type { Config } from '../../node/src/core/types.js';
import { TestPki } from './certs.js';
import { LoopbackAddresses } from './loopback.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = path.join(REPO, 'node/src/main.ts');
const TSX = import.meta.resolve('tsx');

/** Polls `cond` until true or `ms` elapse. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How a node process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

interface Slot {
  readonly id: number;
  readonly port: number;
  readonly dataDir: string;
  proc?: ChildProcess;
  exited?: Promise<Exit>;
  stderr: string;
  stdout: string;
}

/** Options of a cluster. */
export interface ClusterOptions {
  /** Node ids that may ever run (ports are reserved for all of them). */
  readonly capacity: number;
  /** Extra flags for every node. */
  readonly flags?: readonly string[];
  /**
   * Mutual TLS (default true): a CA for the cluster, a member certificate per node, and the
   * operator's certificate for `admin`; false runs the nodes with --insecure.
   */
  readonly tls?: boolean;
}

/** A set of node processes. */
export class ProcessCluster {
  readonly root: string;
  private readonly slots: Slot[] = [];
  /** Admin client with the operator's certificate (when TLS is on). */
  readonly admin: AdminClient;
  private readonly addresses = new LoopbackAddresses();
  /** The cluster's CA and certificates; undefined with `tls: false`. */
  readonly pki: TestPki | undefined;

  private constructor(private readonly options: ClusterOptions) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'paxos-proc-'));
    this.pki = options.tls === false ? undefined : TestPki.create(path.join(this.root, 'tls'), this.addresses.host, 'cluster');
    this.admin = new AdminClient({ deadlineMs: 2000, ...(this.pki ? { credentials: this.pki.credentials(this.pki.operator()) } : {}) });
  }

  /**
   * Client options for a `PaxosClient` of this cluster: a client certificate (`app`) when TLS
   * is on, nothing otherwise.
   */
  clientCredentials(name = 'app'): { credentials?: grpc.ChannelCredentials } {
    return this.pki ? { credentials: this.pki.credentials(this.pki.client(name)) } : {};
  }

  /** The host every node listens on (in its certificates). */
  get host(): string {
    return this.addresses.host;
  }

  static async create(options: ClusterOptions): Promise<ProcessCluster> {
    const c = new ProcessCluster(options);
    for (let id = 0; id < options.capacity; id++) {
      c.slots.push({ id, port: await c.addresses.port(), dataDir: path.join(c.root, `node-${id}`), stderr: '', stdout: '' });
      c.pki?.member(id);
    }
    return c;
  }

  /** host:port of node `id`. */
  endpoint(id: number): string {
    return this.addresses.endpoint(this.slot(id).port);
  }

  endpoints(ids: readonly number[]): string[] {
    return ids.map((id) => this.endpoint(id));
  }

  dataDir(id: number): string {
    return this.slot(id).dataDir;
  }

  /** The node's log output so far (pino JSON lines). */
  logs(id: number): string {
    return this.slot(id).stdout;
  }

  /** Starts node `id` (bootstrap config is used only if its data dir is empty). */
  start(id: number, bootstrap: Config, extra: readonly string[] = []): void {
    const s = this.slot(id);
    if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) throw new Error(`node ${id} is running`);
    const peers = this.slots.map((p) => `${p.id}=${this.addresses.endpoint(p.port)}`).join(',');
    const args = [
      '--import', TSX, MAIN,
      '--id', String(id),
      '--data-dir', s.dataDir,
      '--peers', peers,
      '--listen', this.addresses.host,
      '--peer-port', String(s.port),
      '--metrics-port', '0',
      '--bootstrap-config', JSON.stringify(bootstrap),
      '--tick-ms', '10',
      '--heartbeat-ms', '50',
      '--election-timeout-ms', '300',
      '--log-level', 'info',
      ...(this.pki ? [...TestPki.nodeFlags(this.pki.files(`member-${id}`)), '--tls-reload-ms', '200'] : ['--insecure']),
      ...(this.options.flags ?? []),
      ...extra,
    ];
    const proc = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    s.proc = proc;
    s.stderr = '';
    proc.stdout?.on('data', (d: Buffer) => {
      s.stdout += d.toString();
      if (s.stdout.length > 4_000_000) s.stdout = s.stdout.slice(-2_000_000);
    });
    proc.stderr?.on('data', (d: Buffer) => (s.stderr += d.toString()));
    s.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, stderr: s.stderr })));
  }

  /** The process id of node `id`'s current process (to tell a restart). */
  pid(id: number): number | undefined {
    return this.slot(id).proc?.pid;
  }

  /** kill -9. */
  async kill(id: number): Promise<void> {
    const s = this.slot(id);
    if (!s.proc || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
    s.proc.kill('SIGKILL');
    await s.exited;
  }

  /** SIGTERM, and the exit that follows. */
  async stop(id: number): Promise<Exit> {
    const s = this.slot(id);
    s.proc?.kill('SIGTERM');
    return (await s.exited) as Exit;
  }

  /** Resolves when node `id` exits on its own. */
  exited(id: number): Promise<Exit> {
    return this.slot(id).exited as Promise<Exit>;
  }

  async status(id: number): Promise<NodeStatus | undefined> {
    return this.admin.status(this.endpoint(id)).catch(() => undefined);
  }

  /** Waits until one of `ids` leads and all of them report ready; returns the leader. */
  async waitStable(ids: readonly number[], ms = 30_000): Promise<number> {
    let leader = -1;
    await until(
      `a leader among ${ids.join(',')}`,
      async () => {
        const all = await Promise.all(ids.map((id) => this.status(id)));
        const l = all.find((s) => s?.role === 'leader');
        leader = l?.id ?? -1;
        return l !== undefined && all.every((s) => s?.ready && s.leader === l.id);
      },
      ms,
    );
    return leader;
  }

  /** Waits until node `id` has applied at least `index`. */
  async waitApplied(id: number, index: number, ms = 30_000): Promise<void> {
    await until(`node ${id} to apply ${index}`, async () => ((await this.status(id))?.applied ?? -1) >= index, ms);
  }

  /** Kills every process and deletes the data. */
  async destroy(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.kill(s.id)));
    this.admin.close();
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  private slot(id: number): Slot {
    const s = this.slots[id];
    if (!s) throw new Error(`no slot for node ${id}`);
    return s;
  }
}
