/**
 * Real Paxos node processes (node/src/main.ts) on a private loopback address standing in for pods: a "kubelet"
 * that starts one process per pod of a quorum, with the bootstrap configuration and joining flag
 * read from the operator's ConfigMap, exactly what PAXOS_BOOTSTRAP_CONFIG / PAXOS_JOINING carry
 * in a cluster. A pod removed by a scale-down stops its process and loses its data directory
 * (PVC retention `whenScaled: Delete`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import type { KubeClients } from '../../operator/src/k8s/client.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';
import { BOOTSTRAP_CONFIG_KEY, parseBootstrap, podOrdinal, selectorString } from '../../operator/src/controller/resources.js';
import type { AddressOf } from '../../operator/src/controller/observe.js';
import { LoopbackAddresses } from '../cluster/loopback.js';
import { REPO_ROOT } from '../k8s/cluster/tools.js';

interface NodeProcess {
  readonly child: ChildProcess;
  readonly dataDir: string;
  output: string;
}

/** Starts and stops node processes for the pods of one quorum. */
export class ProcessKubelet {
  private readonly procs = new Map<number, NodeProcess>();
  private readonly root = mkdtempSync(join(tmpdir(), 'paxos-nodes-'));
  private readonly addresses = new LoopbackAddresses();
  private peerPorts: number[] = [];
  private clientPorts: number[] = [];

  constructor(
    private readonly clients: KubeClients,
    private readonly namespace: string,
    private readonly name: string,
    /** Ordinals the quorum may ever use; every node knows every peer address up front. */
    private readonly maxNodes: number,
  ) {}

  async init(): Promise<void> {
    for (let i = 0; i < this.maxNodes; i += 1) {
      this.peerPorts.push(await this.addresses.port());
      this.clientPorts.push(await this.addresses.port());
    }
  }

  /** Where the operator reaches the admin API of a pod. */
  readonly addressOf: AddressOf = (pod) => {
    const ordinal = podOrdinal(this.name, pod.metadata?.name ?? '');
    return ordinal === undefined ? undefined : this.addresses.endpoint(this.clientPorts[ordinal]);
  };

  /** The ordinal whose client endpoint is `address`, if any. */
  ordinalOf(address: string): number | undefined {
    const ordinal = this.clientPorts.findIndex((port) => this.addresses.endpoint(port) === address);
    return ordinal < 0 ? undefined : ordinal;
  }

  /** The client endpoints of the running nodes. */
  endpoints(): string[] {
    return [...this.procs.keys()].map((ordinal) => this.addresses.endpoint(this.clientPorts[ordinal]));
  }

  /** One sync: start a process for each new pod and mark it Running/Ready; stop removed ones. */
  async sync(): Promise<void> {
    const { rest } = this.clients;
    const pods = await rest.get<{ items: V1Pod[] }>(resourcePath(Resources.pods, this.namespace), { labelSelector: selectorString(this.name) });
    const present = new Set<number>();
    for (const pod of pods.items) {
      const ordinal = podOrdinal(this.name, pod.metadata?.name ?? '');
      if (ordinal === undefined || pod.metadata?.deletionTimestamp !== undefined) continue;
      present.add(ordinal);
      if (pod.status?.phase === 'Running') continue;
      if (!this.procs.has(ordinal)) {
        const configMap = await rest.get<V1ConfigMap>(resourcePath(Resources.configMaps, this.namespace, `${this.name}-bootstrap`));
        const bootstrap = parseBootstrap(configMap.data);
        if (bootstrap === undefined) continue;
        this.start(ordinal, configMap.data?.[BOOTSTRAP_CONFIG_KEY] ?? '', bootstrap.joining); // verbatim, as PAXOS_BOOTSTRAP_CONFIG
      }
      const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      await rest.mergePatch(resourcePath(Resources.pods, this.namespace, pod.metadata?.name, 'status'), {
        status: {
          phase: 'Running', podIP: this.addresses.host, podIPs: [{ ip: this.addresses.host }],
          conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }, { type: 'ContainersReady', status: 'True', lastTransitionTime: now }],
        },
      });
    }
    for (const ordinal of [...this.procs.keys()]) if (!present.has(ordinal)) await this.remove(ordinal);
  }

  private start(ordinal: number, bootstrapConfig: string, joining: boolean): void {
    const dataDir = join(this.root, `node-${ordinal}`);
    const peers = this.peerPorts.map((port, id) => `${id}=${this.addresses.endpoint(port)}`).join(',');
    const args = [
      '--import', 'tsx', join(REPO_ROOT, 'node', 'src', 'main.ts'),
      `--id=${ordinal}`, `--data-dir=${dataDir}`, `--peers=${peers}`, `--listen=${this.addresses.host}`,
      `--peer-port=${this.peerPorts[ordinal]}`, `--client-port=${this.clientPorts[ordinal]}`, '--metrics-port=0',
      `--bootstrap-config=${bootstrapConfig}`, '--election-timeout-ms=1000', '--heartbeat-ms=100', '--log-level=warn', '--insecure',
      ...(joining ? ['--joining'] : []),
    ];
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc: NodeProcess = { child, dataDir, output: '' };
    const keep = (chunk: Buffer): void => {
      proc.output = (proc.output + chunk.toString('utf8')).slice(-8_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.procs.set(ordinal, proc);
  }

  private async remove(ordinal: number): Promise<void> {
    const proc = this.procs.get(ordinal);
    if (proc === undefined) return;
    this.procs.delete(ordinal);
    await stopChild(proc.child);
    rmSync(proc.dataDir, { recursive: true, force: true });
  }

  /**
   * kill -9 of the given nodes; their pods stay Running, as they would until a kubelet noticed.
   * The processes stay dead (sync() does not restart them).
   */
  async crash(ordinals: readonly number[]): Promise<void> {
    await Promise.all(ordinals.map((ordinal) => {
      const child = this.procs.get(ordinal)?.child;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    }));
  }

  /**
   * The node loses its volume: kill -9, delete its data directory, and start it again from the
   * bootstrap ConfigMap, as the kubelet would restart the container on a fresh volume.
   */
  async wipe(ordinal: number): Promise<void> {
    await this.crash([ordinal]);
    const proc = this.procs.get(ordinal);
    if (proc !== undefined) rmSync(proc.dataDir, { recursive: true, force: true });
    this.procs.delete(ordinal);
    const configMap = await this.clients.rest.get<V1ConfigMap>(resourcePath(Resources.configMaps, this.namespace, `${this.name}-bootstrap`));
    const bootstrap = parseBootstrap(configMap.data);
    if (bootstrap === undefined) throw new Error('no bootstrap configuration to restart from');
    this.start(ordinal, configMap.data?.[BOOTSTRAP_CONFIG_KEY] ?? '', bootstrap.joining); // verbatim, as PAXOS_BOOTSTRAP_CONFIG
  }

  /** The last output of each node, for failure messages. */
  logs(): string {
    return [...this.procs.entries()].map(([ordinal, proc]) => `--- node ${ordinal} (exit ${proc.child.exitCode}):\n${proc.output}`).join('\n');
  }

  /** Stops every process this kubelet started and removes their data. */
  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map((proc) => stopChild(proc.child)));
    this.procs.clear();
    rmSync(this.root, { recursive: true, force: true });
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
