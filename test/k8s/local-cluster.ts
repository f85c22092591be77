/**
 * A whole local Kubernetes for the product: the real control plane (etcd, kube-apiserver,
 * kube-controller-manager, built from Go by `npm run tools:build`) plus the process kubelet,
 * whose "images" are the chart's two images mapped to this repository's entry points:
 *
 * - `image.repository:tag` (operator) → `node --import <root>/node_modules/tsx/dist/loader.mjs <root>/operator/src/main.ts`
 * - `nodeImage.repository:tag` (node) → `node --import <root>/node_modules/tsx/dist/loader.mjs <root>/node/src/main.ts`
 *
 * where `<root>` is this checkout bind-mounted under /run/paxos-local-cluster/ for the
 * cluster's lifetime (a pod's own mounts, like the operator's emptyDir at /tmp, must not hide it).
 *
 * The references are read from charts/paxos-operator/values.yaml (an empty tag means the chart's
 * appVersion), so the chart installs unchanged. Pods run as local processes that share the host
 * filesystem: the repository must be readable by the chart's runAsUser 65532 (it is world
 * readable here; `start()` checks and says so otherwise).
 *
 * Used by `npm start` (scripts/start.ts) and the end-to-end tests (test/e2e/).
 */
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { LocalControlPlane, type ControlPlaneOptions } from './cluster/control-plane.js';
import { ProcessKubelet, type ImageEntrypoint } from './cluster/kubelet.js';
import { REPO_ROOT, requireTools, toolsBinDir } from './cluster/tools.js';

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

/** The tsx loader under `root` as an absolute file URL, so it resolves whatever the pod's working dir is. */
export function tsxLoader(root: string): string {
  return pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
}

/**
 * The image → entrypoint map for the process kubelet. `root` is where the pods see this
 * repository: the "image filesystem" (see {@link LocalCluster.start} for why it is not simply
 * the checkout's own path).
 */
export function imageMap(images: ChartImages = chartImages(), root = REPO_ROOT): Record<string, ImageEntrypoint> {
  const tsx = (entry: string): ImageEntrypoint => ({
    entrypoint: [process.execPath, '--import', tsxLoader(root), join(root, entry)],
    workingDir: root,
    // The operator runs as 65532, whose home (/root) it cannot write; /tmp is its emptyDir.
    env: { HOME: '/tmp', NODE_ENV: 'production' },
  });
  return {
    [images.operator]: tsx('operator/src/main.ts'),
    [images.node]: tsx('node/src/main.ts'),
  };
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
  /** Control-plane options (run dir, slot, …). */
  readonly controlPlane?: ControlPlaneOptions;
  /** Crash-restart backoff of the kubelet (default 1 s doubling to 10 s: faster than a real kubelet). */
  readonly restartBackoff?: { readonly baseMs: number; readonly maxMs: number };
  /** Logger (default pino at LOCAL_CLUSTER_LOG level, `warn`). */
  readonly logger?: Logger;
}

/** Checks that uid 65532 (the chart's runAsUser) can read and traverse the repository. */
function checkReadableByOthers(): void {
  const paths = [REPO_ROOT, join(REPO_ROOT, 'node_modules'), join(REPO_ROOT, 'operator', 'src'), join(REPO_ROOT, 'node', 'src')];
  for (let p = REPO_ROOT; p !== '/'; p = join(p, '..')) paths.push(p);
  for (const p of paths) {
    const mode = statSync(p).mode;
    // Others need r-x on folders for a non-root, non-owner user.
    if ((mode & 0o005) !== 0o005) {
      throw new Error(
        `${p} is not readable by other users (mode ${(mode & 0o777).toString(8)}); the operator pod runs as uid 65532 ` +
          '(chart securityContext) and loads the repository from the host filesystem. `chmod o+rx` it.',
      );
    }
  }
  accessSync(join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs'), constants.R_OK);
}

/**
 * Exposes the repository at a fixed path under /run through a bind mount, as an image's
 * filesystem would be. Pods mount volumes over their own paths (the operator chart has an
 * emptyDir at /tmp): a checkout under /tmp, as CI's may be, would be hidden inside the pod.
 */
class RepoMount {
  readonly path: string;

  constructor(label: string) {
    this.path = join('/run', 'paxos-local-cluster', label, 'repo');
  }

  mount(): void {
    mkdirSync(this.path, { recursive: true, mode: 0o755 });
    execFileSync('mount', ['--bind', REPO_ROOT, this.path], { stdio: 'pipe' });
  }

  unmount(): void {
    try {
      execFileSync('umount', [this.path], { stdio: 'pipe' });
      rmSync(join(this.path, '..'), { recursive: true, force: true });
    } catch {
      // Not mounted (start failed early): nothing to undo.
    }
  }
}

/** LocalControlPlane + ProcessKubelet with the chart's images. */
export class LocalCluster {
  readonly controlPlane = new LocalControlPlane();
  kubelet: ProcessKubelet | undefined;
  tools: KubeTools | undefined;
  readonly images: ChartImages = chartImages();
  private log: Logger = pino({ level: process.env.LOCAL_CLUSTER_LOG ?? 'warn' });
  private repoMount: RepoMount | undefined;

  /** Admin kubeconfig (valid after start()). */
  get kubeconfigPath(): string {
    return this.controlPlane.kubeconfigPath;
  }

  /** Folder with kubectl, helm, etc. */
  get binDir(): string {
    return this.tools?.binDir ?? toolsBinDir();
  }

  /** Run folder of the control plane (logs, PKI, kubelet pods). */
  get runDir(): string {
    return this.controlPlane.runDir;
  }

  /**
   * Starts the control plane and the kubelet.
   *
   * @throws ToolsMissingError ("run `npm run tools:build`") if a binary is missing.
   */
  async start(opts: LocalClusterOptions = {}): Promise<this> {
    if (opts.logger) this.log = opts.logger;
    // Fail fast and clearly, before anything is started.
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'helm']);
    if (process.getuid?.() !== 0) {
      throw new Error('LocalCluster needs root: the process kubelet creates network namespaces. Run it as root.');
    }
    checkReadableByOthers();
    try {
      this.repoMount = new RepoMount(`${process.pid}-${Date.now()}`);
      this.repoMount.mount();
      await this.controlPlane.start({ logger: this.log, ...opts.controlPlane });
      const pki = this.controlPlane.pki;
      if (!pki) throw new Error('control plane started without PKI');
      this.tools = new KubeTools(this.controlPlane.kubeconfigPath, { helmHome: join(this.controlPlane.runDir, 'helm') });
      this.kubelet = new ProcessKubelet({
        endpoint: { server: this.controlPlane.server, caFile: pki.ca.cert, certFile: pki.admin.cert, keyFile: pki.admin.key },
        runDir: join(this.controlPlane.runDir, 'kubelet'),
        slot: this.controlPlane.network?.slot,
        images: imageMap(this.images, this.repoMount?.path),
        restartBackoff: opts.restartBackoff ?? { baseMs: 1000, maxMs: 10_000 },
        logger: this.log.child({ component: 'kubelet' }),
      });
      await this.kubelet.start();
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw e;
    }
    return this;
  }

  /** Stops the kubelet (its pods) and the control plane it started; nothing else. */
  async stop(): Promise<void> {
    const k = this.kubelet;
    this.kubelet = undefined;
    if (k) await k.stop().catch((e: unknown) => this.log.error({ err: String(e) }, 'kubelet stop failed'));
    await this.controlPlane.stop();
    this.repoMount?.unmount();
    this.repoMount = undefined;
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
