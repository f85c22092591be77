/**
 * A whole local Kubernetes for the product, made of the real parts: the control plane (etcd,
 * kube-apiserver, kube-controller-manager, kube-scheduler) and three nodes, each a containerd
 * and a kubelet, plus kube-proxy, CoreDNS and a local-volume provisioner (test/k8s/node/). The
 * pods run the images built from `node/Dockerfile` and `operator/Dockerfile` by BuildKit
 * (`npm run images`), imported into every node's containerd, so the chart installs unchanged
 * with its default image references.
 *
 * Used by `npm start` (scripts/start.ts) and the end-to-end tests (test/e2e/).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { LocalControlPlane, type ControlPlaneOptions } from './cluster/control-plane.js';
import { acquireSlot, releaseSlot } from './cluster/slots.js';
import { REPO_ROOT, requireTools, toolsBinDir } from './cluster/tools.js';
import { tryRun } from './node/exec.js';
import { acquireHostLock, releaseHostLock, restoreHost, snapshotHost, type HostSnapshot } from './node/host-state.js';
import { buildImages, type ImageSet } from './node/images.js';
import { RealNodes, createBridge, nodeNetwork, type NodeNetwork } from './node/real-nodes.js';

export { REPO_ROOT };

/** Chart location in this repository. */
export const CHART_DIR = join(REPO_ROOT, 'charts', 'paxos-operator');

/** The two image references the chart uses by default. */
export interface ChartImages {
  readonly operator: string;
  readonly node: string;
}

interface ImageValues {
  repository?: string;
  tag?: string;
  digest?: string;
}

/** Reads the operator and node image references from the chart's values.yaml and Chart.yaml. */
export function chartImages(chartDir = CHART_DIR): ChartImages {
  const values = parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) as { image?: ImageValues; nodeImage?: ImageValues };
  const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion?: string };
  const ref = (v: ImageValues | undefined, what: string): string => {
    if (!v?.repository) throw new Error(`${chartDir}/values.yaml: ${what}.repository is missing`);
    const tag = v.tag || chart.appVersion;
    if (!tag) throw new Error(`${chartDir}: neither ${what}.tag nor appVersion is set`);
    return `${v.repository}:${String(tag)}`;
  };
  return { operator: ref(values.image, 'image'), node: ref(values.nodeImage, 'nodeImage') };
}

/** Runs one of the Go-built binaries; rejects with its stderr. */
export function runTool(
  bin: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      bin,
      [...args],
      { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        if (err) {
          const e = new Error(`${bin.split('/').pop()} ${args.join(' ')} failed: ${stderr || err.message}`) as Error & { stderr?: string };
          e.stderr = stderr;
          reject(e);
        } else resolve(stdout);
      },
    );
    child.stdin?.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** kubectl and helm bound to one kubeconfig (a LocalCluster's or an existing cluster's). */
export class KubeTools {
  readonly kubectlBin: string;
  readonly helmBin: string;
  readonly binDir: string;
  private readonly helmEnv: NodeJS.ProcessEnv;

  constructor(readonly kubeconfigPath: string, opts: { binDir?: string; helmHome?: string } = {}) {
    this.binDir = opts.binDir ?? toolsBinDir();
    const bins = requireTools(['kubectl', 'helm'], this.binDir);
    this.kubectlBin = bins.kubectl;
    this.helmBin = bins.helm;
    const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: kubeconfigPath };
    if (opts.helmHome) {
      mkdirSync(opts.helmHome, { recursive: true });
      env.HELM_CACHE_HOME = join(opts.helmHome, 'cache');
      env.HELM_CONFIG_HOME = join(opts.helmHome, 'config');
      env.HELM_DATA_HOME = join(opts.helmHome, 'data');
    }
    this.helmEnv = env;
  }

  kubectl(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return runTool(this.kubectlBin, [`--kubeconfig=${this.kubeconfigPath}`, ...args], opts);
  }

  helm(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return runTool(this.helmBin, [`--kubeconfig=${this.kubeconfigPath}`, ...args], { ...opts, env: this.helmEnv });
  }
}

/** Options of {@link LocalCluster.start}. */
export interface LocalClusterOptions {
  /** Control-plane options (run dir, …). */
  readonly controlPlane?: ControlPlaneOptions;
  /** Number of nodes (default 3). */
  readonly nodes?: number;
  /** Logger (default pino at LOCAL_CLUSTER_LOG level, `warn`). */
  readonly logger?: Logger;
  /** Progress lines of the image build (default: stderr). */
  readonly imageLog?: (line: string) => void;
}

/** The control plane, the nodes and the chart's images. */
export class LocalCluster {
  readonly controlPlane = new LocalControlPlane();
  nodes: RealNodes | undefined;
  tools: KubeTools | undefined;
  readonly images: ChartImages = chartImages();
  /** The images built for this run (valid after start()). */
  built: ImageSet | undefined;
  private log: Logger = pino({ level: process.env.LOCAL_CLUSTER_LOG ?? 'warn' });
  private network: NodeNetwork | undefined;
  private hostBefore: HostSnapshot | undefined;
  private hostLocked = false;

  /** Admin kubeconfig (valid after start()). */
  get kubeconfigPath(): string {
    return this.controlPlane.kubeconfigPath;
  }

  /** Folder with kubectl, helm, etc. */
  get binDir(): string {
    return this.tools?.binDir ?? toolsBinDir();
  }

  /** Run folder of the control plane (logs, PKI, node folders). */
  get runDir(): string {
    return this.controlPlane.runDir;
  }

  /**
   * Builds the images (cached), starts the control plane and the nodes.
   *
   * @throws ToolsMissingError ("run `npm run tools:build`") if a binary is missing, and
   *   PrerequisiteMissingError naming the Debian package of a missing host command.
   */
  async start(opts: LocalClusterOptions = {}): Promise<this> {
    if (opts.logger) this.log = opts.logger;
    // Fail fast and clearly, before anything is started.
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'helm', 'kubelet', 'kube-proxy', 'coredns', 'crictl', 'buildkitd', 'buildctl']);
    if (process.getuid?.() !== 0) {
      throw new Error('LocalCluster needs root: it runs containerd, kubelets and kube-proxy, which change iptables and mounts.');
    }
    this.built = await buildImages({ log: opts.imageLog });
    await acquireHostLock();
    this.hostLocked = true;
    this.hostBefore = await snapshotHost();
    try {
      // The bridge must exist before the API server binds to its address; the slot lock is
      // taken again by the control plane right after.
      const slot = opts.controlPlane?.slot ?? acquireSlot();
      if (opts.controlPlane?.slot === undefined) releaseSlot(slot);
      const net = nodeNetwork(slot);
      this.network = net;
      await createBridge(net);
      await this.controlPlane.start({
        logger: this.log,
        scheduler: true,
        bindAddress: net.gateway,
        advertiseAddress: net.gateway,
        ...opts.controlPlane,
        slot,
      });
      this.tools = new KubeTools(this.controlPlane.kubeconfigPath, { helmHome: join(this.controlPlane.runDir, 'helm') });
      this.nodes = new RealNodes();
      await this.nodes.start({
        controlPlane: this.controlPlane,
        network: net,
        images: this.built,
        nodes: opts.nodes,
        logger: this.log.child({ component: 'nodes' }),
        hostSnapshot: this.hostBefore,
      });
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw e;
    }
    return this;
  }

  /**
   * Stops the nodes (their pods), the control plane, and puts the host back as it was.
   *
   * @returns what could not be restored (empty when the host is as before start()).
   */
  async stop(): Promise<string[]> {
    const problems: string[] = [];
    const nodes = this.nodes;
    this.nodes = undefined;
    if (nodes) problems.push(...(await nodes.stop().catch((e: unknown) => [`stopping nodes: ${String(e)}`])));
    await this.controlPlane.stop();
    if (this.network) await tryRun('ip', ['link', 'delete', this.network.bridge]);
    if (this.hostBefore) problems.push(...(await restoreHost(this.hostBefore)));
    this.hostBefore = undefined;
    if (this.hostLocked) releaseHostLock();
    this.hostLocked = false;
    if (problems.length) this.log.warn({ problems }, 'host not fully restored');
    return problems;
  }

  kubectl(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    if (!this.tools) return Promise.reject(new Error('LocalCluster not started'));
    return this.tools.kubectl(args, opts);
  }

  helm(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    if (!this.tools) return Promise.reject(new Error('LocalCluster not started'));
    return this.tools.helm(args, opts);
  }
}
