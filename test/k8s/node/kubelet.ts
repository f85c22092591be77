/**
 * The real kubelet (v1.35, built from Go modules by `npm run tools:build`) for one node of the
 * local cluster, talking to that node's own containerd.
 *
 * Several kubelets share this machine, so everything a kubelet owns is its own: root and
 * certificate folders, pod log folder, cgroup root (a kubelet removes pod cgroups it does not
 * know), ports, containerd socket. All of them serve on the bridge address, each on its own
 * port; the node's InternalIP is that address, so the API server reaches each kubelet (logs,
 * exec) at bridge:port as it would on any cluster.
 *
 * The kubelet registers with its own credentials (CN=system:node:NAME, O=system:nodes), so the
 * API server's Node authorizer and NodeRestriction admission apply to it.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ManagedProcess } from '../cluster/process.js';

/** Options of one kubelet. */
export interface KubeletOptions {
  readonly binary: string;
  readonly nodeName: string;
  /** Persistent folder of this node. */
  readonly dir: string;
  /** kubeconfig with this node's client certificate. */
  readonly kubeconfig: string;
  /** CA of client certificates the kubelet accepts (the API server's, for logs and exec). */
  readonly clientCaFile: string;
  /** containerd endpoint (`unix://…`). */
  readonly runtimeEndpoint: string;
  /** Address the kubelet serves on and reports as the node's InternalIP. */
  readonly address: string;
  /** Kubelet API port and health port. */
  readonly port: number;
  readonly healthzPort: number;
  /** Cluster DNS server address. */
  readonly clusterDns: string;
  /**
   * Cgroup root of this node's pods, unique on the machine: two kubelets sharing one remove each
   * other's pod cgroups (each cleans up the pods it does not know).
   */
  readonly cgroupRoot: string;
  /** Labels of the Node (besides the kubelet's own). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** A running kubelet. */
export class Kubelet {
  private proc: ManagedProcess | undefined;

  constructor(readonly opts: KubeletOptions) {}

  /** The cgroup root of this node's pods (below every mounted cgroup v1 hierarchy). */
  get cgroupRoot(): string {
    return this.opts.cgroupRoot;
  }

  /**
   * Creates the cgroup root in every cgroup v1 hierarchy (the kubelet refuses to start when one
   * is missing); a new cpuset cgroup starts with no CPUs or memory nodes, so it gets its parent's.
   */
  private createCgroupRoot(): void {
    let hierarchies: string[] = [];
    try {
      hierarchies = readdirSync('/sys/fs/cgroup').filter((h) => h !== 'unified');
    } catch {
      return;
    }
    for (const h of hierarchies) {
      let parent = join('/sys/fs/cgroup', h);
      for (const part of this.cgroupRoot.split('/').filter(Boolean)) {
        const dir = join(parent, part);
        mkdirSync(dir, { recursive: true });
        if (h === 'cpuset') {
          for (const f of ['cpuset.cpus', 'cpuset.mems']) {
            if (readFileSync(join(dir, f), 'utf8').trim() === '') writeFileSync(join(dir, f), readFileSync(join(parent, f), 'utf8').trim());
          }
        }
        parent = dir;
      }
    }
  }

  private writeConfig(): string {
    this.createCgroupRoot();
    const { dir } = this.opts;
    const root = join(dir, 'kubelet');
    mkdirSync(join(root, 'pki'), { recursive: true });
    mkdirSync(join(dir, 'pod-logs'), { recursive: true });
    // Pods get the cluster DNS and the cluster search path only: nothing of the host's resolver.
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, '');
    const config = {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: this.opts.address,
      port: this.opts.port,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: this.opts.healthzPort,
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: this.opts.clientCaFile } },
      authorization: { mode: 'Webhook' },
      cgroupDriver: 'cgroupfs',
      cgroupRoot: this.cgroupRoot,
      cgroupsPerQOS: true,
      // This machine has cgroup v1; the kubelet refuses it unless told otherwise.
      failCgroupV1: false,
      failSwapOn: false,
      clusterDomain: 'cluster.local',
      clusterDNS: [this.opts.clusterDns],
      resolvConf,
      podLogsDir: join(dir, 'pod-logs'),
      containerRuntimeEndpoint: this.opts.runtimeEndpoint,
      imageServiceEndpoint: this.opts.runtimeEndpoint,
      // Images are imported, never pulled: nothing may be garbage-collected behind our back.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      enforceNodeAllocatable: [],
      serializeImagePulls: false,
      // Heartbeats and status often enough that a stopped node is NotReady within a minute.
      nodeStatusUpdateFrequency: '5s',
      nodeStatusReportFrequency: '30s',
      syncFrequency: '10s',
      fileCheckFrequency: '10s',
      maxPods: 40,
      rotateCertificates: false,
      serverTLSBootstrap: false,
      protectKernelDefaults: false,
      localStorageCapacityIsolation: false,
      shutdownGracePeriod: '0s',
    };
    const file = join(dir, 'kubelet-config.yaml');
    writeFileSync(file, stringify(config));
    return file;
  }

  /** Starts the kubelet; it registers its Node by itself. */
  async start(logFile: string): Promise<void> {
    const config = this.writeConfig();
    const labels = Object.entries(this.opts.labels ?? {}).map(([k, v]) => `${k}=${v}`);
    this.proc = await ManagedProcess.start({
      name: `kubelet ${this.opts.nodeName}`,
      command: this.opts.binary,
      args: [
        `--config=${config}`,
        `--kubeconfig=${this.opts.kubeconfig}`,
        `--root-dir=${join(this.opts.dir, 'kubelet')}`,
        `--cert-dir=${join(this.opts.dir, 'kubelet', 'pki')}`,
        `--hostname-override=${this.opts.nodeName}`,
        `--node-ip=${this.opts.address}`,
        ...(labels.length ? [`--node-labels=${labels.join(',')}`] : []),
        '--v=1',
      ],
      logFile,
    });
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Last lines of the kubelet's log. */
  logTail(): string {
    return this.proc?.logTail() ?? '';
  }

  /** Stops the kubelet process (its pods keep running in containerd until removed). */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p) await p.stop(10_000);
  }
}
