/**
 * A process kubelet: runs the pods of one Node as plain local processes, each pod in its own
 * network namespace on a private bridge. Meant for tests on a machine without a container
 * runtime; it is not a conformant kubelet.
 *
 * What it does:
 * - registers a Node (default `local`), keeps its Lease and Ready condition fresh;
 * - binds unscheduled pods to itself (there is no scheduler), honouring nodeSelector;
 * - per pod: a network namespace (`ip netns`), a veth on a bridge, an IP from 10.244.0.0/24,
 *   a hosts file with pod, headless-service and service names (bind-mounted over /etc/hosts by
 *   `ip netns exec`), its own UTS namespace (hostname);
 * - maps each container image to a local entrypoint via {@link ImageResolver};
 * - environment: service links, envFrom, env with downward API / ConfigMap / Secret refs;
 * - volumes: emptyDir, hostPath, configMap, secret, downwardAPI, projected (including the
 *   service-account token + CA), persistentVolumeClaim (hostPath PVs it provisions itself),
 *   bind-mounted at their mountPath in the container's private mount namespace;
 * - a userspace service proxy: each ClusterIP service gets its IP on the bridge and a TCP
 *   forwarder to ready endpoints (the `kubernetes` service forwards to the apiserver);
 * - init containers, startup/readiness/liveness probes (httpGet, tcpSocket, grpc, exec),
 *   postStart/preStop hooks, restarts per restartPolicy with exponential backoff,
 *   graceful termination honouring terminationGracePeriodSeconds, pod status reporting.
 *
 * Needs root, iproute2, util-linux (unshare, nsenter, mount).
 */
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, readSync, closeSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { serveSpdyExec, type ExecStreams } from './spdy-exec.js';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { pino, type Logger } from 'pino';
import { KubeApiError, KubeClient, type KubeEndpoint, type WatchEvent } from './kube-client.js';
import type {
  Container,
  ContainerState,
  ContainerStatus,
  DataObject,
  PersistentVolume,
  PersistentVolumeClaim,
  Pod,
  PodCondition,
  PodStatus,
  Service,
  Volume,
  KeyToPath,
  DownwardAPIVolumeFile,
} from './k8s-types.js';
import { PodNetwork, type PodNet } from './netns.js';
import { slotNetwork } from './slots.js';
import { ManagedProcess } from './process.js';
import { ProbeRunner, runProbe, resolvePort, type ProbeContext } from './probes.js';
import {
  buildContainerEnv,
  expandVars,
  fieldRefValue,
  resourceFieldValue,
  type DataSource,
  type NodeAllocatable,
} from './pod-env.js';

/** What an image "contains": the process to run for it. */
export interface ImageEntrypoint {
  /** ENTRYPOINT equivalent (overridden by container.command). */
  readonly entrypoint: readonly string[];
  /** CMD equivalent (overridden by container.args; dropped when command is set). */
  readonly cmd?: readonly string[];
  /** Image environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Default working directory. */
  readonly workingDir?: string;
}

/**
 * Maps an image reference to an entrypoint: a record keyed by full reference (`repo:tag`) or by
 * repository (without tag/digest), or a function.
 */
export type ImageResolver =
  | Readonly<Record<string, ImageEntrypoint>>
  | ((image: string) => ImageEntrypoint | undefined);

/** Options for {@link ProcessKubelet}. */
export interface ProcessKubeletOptions {
  /** API server and credentials; must be allowed to bind pods and manage PVs (admin is simplest). */
  readonly endpoint: KubeEndpoint;
  /** Folder for pod files, volumes and logs. */
  readonly runDir: string;
  /** Image → entrypoint mapping. */
  readonly images: ImageResolver;
  /** Node name (default `local`). */
  readonly nodeName?: string;
  /**
   * Network slot of the cluster (LocalControlPlane's `network.slot`): pod CIDR 10.244.N.0/24,
   * bridge kpbrN, namespaces kpN-*. Default 0. `podCidr`/`bridge` override.
   */
  readonly slot?: number;
  /**
   * Index of this node among the cluster's process kubelets (0–5, default 0). Nodes share the
   * slot's bridge and pod CIDR: node k hands out pod IPs .(2+40k)–.(41+40k) and has its own
   * node address (node 0: the gateway .1; node k: .(250-k)). Give each a distinct `nodeName`.
   */
  readonly nodeIndex?: number;
  /** Pod CIDR (default from the slot). */
  readonly podCidr?: string;
  /** Bridge name (default from the slot). */
  readonly bridge?: string;
  /** Bind unscheduled pods to this node (default true). */
  readonly bindPods?: boolean;
  /** Provision hostPath PVs for pending PVCs and a default StorageClass `local` (default true). */
  readonly provisionVolumes?: boolean;
  /**
   * Run ClusterIP services through a userspace proxy on the bridge (default: node 0 only, as
   * one proxy serves every node on the shared bridge). `false` also drops ClusterIP names from
   * the pods' hosts files.
   */
  readonly serviceProxy?: boolean;
  /** Crash-restart backoff (default 10 s doubling to 300 s, like the kubelet). */
  readonly restartBackoff?: { readonly baseMs: number; readonly maxMs: number };
  /** Capacity reported for the node (default 8 CPUs, 16Gi). */
  readonly allocatable?: NodeAllocatable;
  /**
   * Port of the kubelet API (container logs only) on the bridge gateway address, so
   * `kubectl logs` works (default 10250; 0 disables). The apiserver must prefer InternalIP
   * addresses (LocalControlPlane sets `--kubelet-preferred-address-types=InternalIP`).
   */
  readonly kubeletPort?: number;
  /** Logger (default pino at LOCAL_CLUSTER_LOG level, `warn`). */
  readonly logger?: Logger;
}

const SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
const PROVISIONER = 'process-kubelet.local/hostpath';
const OWNED_LABEL = 'process-kubelet.local/provisioned';

const now = (): string => new Date().toISOString();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function microTime(): string {
  return new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function resolveImage(images: ImageResolver, image: string): ImageEntrypoint | undefined {
  if (typeof images === 'function') return images(image);
  if (images[image]) return images[image];
  const repo = image.replace(/@sha256:[0-9a-f]+$/, '').replace(/:[^/:]+$/, '');
  return images[repo];
}

function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** The per-container runtime state. */
class ContainerRunner {
  proc: ManagedProcess | undefined;
  state: ContainerState = { waiting: { reason: 'ContainerCreating' } };
  lastState: ContainerState = {};
  restartCount = 0;
  ready = false;
  started = false;
  env: Record<string, string> = {};
  private probes: ProbeRunner[] = [];
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private crashStreak = 0;
  private runStart = 0;
  /** Resolves when the current process (if any) has exited and been recorded. */
  private exitHandled: Promise<void> = Promise.resolve();

  constructor(
    readonly spec: Container,
    readonly isInit: boolean,
    private readonly pod: PodWorker,
  ) {}

  get sidecar(): boolean {
    return this.isInit && this.spec.restartPolicy === 'Always';
  }

  get running(): boolean {
    return !!this.proc?.running;
  }

  status(): ContainerStatus {
    return {
      name: this.spec.name,
      state: this.state,
      lastState: this.lastState,
      ready: this.ready,
      restartCount: this.restartCount,
      image: this.spec.image ?? '',
      imageID: `process://${this.spec.image ?? ''}`,
      ...(this.proc ? { containerID: `process://${this.proc.pid}` } : {}),
      started: this.started,
    };
  }

  private probeContext(): ProbeContext {
    return {
      podIP: this.pod.net?.ip ?? '127.0.0.1',
      ports: this.spec.ports ?? [],
      pid: this.proc?.running ? this.proc.pid : undefined,
      env: { ...this.env },
    };
  }

  /** Starts (or restarts) the process. */
  async start(): Promise<void> {
    if (this.stopping) return;
    const k = this.pod.kubelet;
    const scriptPath = join(this.pod.dir, `${this.spec.name}.sh`);
    let command: string[];
    try {
      this.env = await this.pod.containerEnv(this.spec);
      const image = resolveImage(k.images, this.spec.image ?? '');
      if (!image && !this.spec.command) {
        this.state = { waiting: { reason: 'ErrImagePull', message: `no local entrypoint for image ${this.spec.image}` } };
        this.pod.requestStatus();
        this.scheduleRestart(true);
        return;
      }
      const entry = this.spec.command ?? [...(image?.entrypoint ?? [])];
      const args = this.spec.args ?? (this.spec.command ? [] : [...(image?.cmd ?? [])]);
      command = [...entry, ...args].map((s) => expandVars(s, this.env));
      if (image?.env) this.env = { ...image.env, ...this.env };
      if (!command.length) throw new Error('no command');
      const workingDir = this.spec.workingDir ?? image?.workingDir;
      writeFileSync(scriptPath, this.pod.wrapperScript(this.spec, command, workingDir), { mode: 0o700 });
    } catch (e) {
      this.state = { waiting: { reason: 'CreateContainerConfigError', message: errMsg(e) } };
      this.pod.requestStatus();
      this.scheduleRestart(true);
      return;
    }
    const net = this.pod.net;
    if (!net) throw new Error('pod network not ready');
    const startedAt = now();
    const logFile = join(this.pod.dir, `${this.spec.name}.log`);
    // Keep the previous attempt's log for `kubectl logs --previous`.
    if (existsSync(logFile)) renameSync(logFile, join(this.pod.dir, `${this.spec.name}.previous.log`));
    this.proc = await ManagedProcess.start({
      name: `${this.pod.key}/${this.spec.name}`,
      // Own network namespace (ip netns exec also gives a private mount namespace with the pod's
      // /etc/hosts) and UTS namespace; host-network pods only get a private mount namespace.
      ...(net.ns
        ? { command: 'ip', args: ['netns', 'exec', net.ns, 'unshare', '--uts', '--', '/bin/sh', scriptPath] }
        : { command: 'unshare', args: ['--mount', '--propagation', 'slave', '--', '/bin/sh', scriptPath] }),
      logFile,
      env: this.env,
    });
    this.runStart = Date.now();
    this.state = { running: { startedAt } };
    this.ready = false;
    this.started = false;
    const proc = this.proc;
    this.exitHandled = proc.waitExit().then(() => this.onExit(proc, startedAt));
    k.log.info({ pod: this.pod.key, container: this.spec.name, pid: proc.pid, command }, 'container started');
    this.pod.requestStatus();

    if (this.spec.lifecycle?.postStart) {
      const r = await runProbe(this.spec.lifecycle.postStart, this.probeContext(), 30_000);
      if (!r.ok) {
        k.log.warn({ pod: this.pod.key, container: this.spec.name, msg: r.message }, 'postStart hook failed');
        await this.kill(this.pod.graceMs(), false);
        return;
      }
    }
    this.startProbes();
  }

  private startProbes(): void {
    const onStarted = (): void => {
      this.started = true;
      if (!this.spec.readinessProbe) this.ready = true;
      const live = this.spec.livenessProbe;
      if (live) {
        this.probes.push(this.newProbe(live, (ok, msg) => {
          if (!ok) {
            this.pod.kubelet.log.info({ pod: this.pod.key, container: this.spec.name, msg }, 'liveness probe failed; restarting');
            void this.kill(
              (live.terminationGracePeriodSeconds ?? this.pod.graceSeconds()) * 1000,
              false,
            );
          }
        }));
      }
      const rp = this.spec.readinessProbe;
      if (rp) {
        this.probes.push(this.newProbe(rp, (ok) => {
          if (this.ready !== ok) {
            this.ready = ok;
            this.pod.requestStatus();
            this.pod.kubelet.endpointsChanged();
          }
        }));
      }
      this.pod.requestStatus();
      this.pod.kubelet.endpointsChanged();
    };
    const sp = this.spec.startupProbe;
    if (sp) {
      const runner = this.newProbe(sp, (ok, msg) => {
        if (ok) {
          runner.stop();
          onStarted();
        } else {
          this.pod.kubelet.log.info({ pod: this.pod.key, container: this.spec.name, msg }, 'startup probe failed; restarting');
          runner.stop();
          void this.kill(this.pod.graceMs(), false);
        }
      });
      this.probes.push(runner);
    } else onStarted();
  }

  private newProbe(p: NonNullable<Container['livenessProbe']>, cb: (ok: boolean, msg: string) => void): ProbeRunner {
    const r = new ProbeRunner(p, () => this.probeContext(), cb);
    r.start();
    return r;
  }

  private stopProbes(): void {
    for (const p of this.probes) p.stop();
    this.probes = [];
  }

  private onExit(proc: ManagedProcess, startedAt: string): void {
    this.stopProbes();
    const st = proc.exitStatus;
    const sigNum = st?.signal ? ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSEGV: 11, SIGABRT: 6 } as Record<string, number>)[st.signal] ?? 0 : 0;
    const exitCode = st?.code ?? (sigNum ? 128 + sigNum : 1);
    const terminated: ContainerState = {
      terminated: {
        exitCode,
        ...(sigNum ? { signal: sigNum } : {}),
        reason: exitCode === 0 ? 'Completed' : 'Error',
        startedAt,
        finishedAt: now(),
        containerID: `process://${proc.pid}`,
      },
    };
    this.state = terminated;
    this.ready = false;
    this.pod.kubelet.log.info({ pod: this.pod.key, container: this.spec.name, exitCode, signal: st?.signal }, 'container exited');
    this.pod.kubelet.endpointsChanged();
    if (this.stopping) {
      this.pod.requestStatus();
      return;
    }
    const policy = this.sidecar ? 'Always' : (this.pod.pod.spec.restartPolicy ?? 'Always');
    const restart = policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
    if (restart) {
      this.lastState = terminated;
      this.scheduleRestart(false);
    }
    this.pod.requestStatus();
    this.pod.containerExited(this);
  }

  private scheduleRestart(configError: boolean): void {
    if (this.stopping) return;
    const { baseMs, maxMs } = this.pod.kubelet.backoff;
    if (this.runStart && Date.now() - this.runStart > 10 * 60_000) this.crashStreak = 0;
    const delay = Math.min(baseMs * 2 ** this.crashStreak, maxMs);
    this.crashStreak++;
    if (!configError) {
      this.state = {
        waiting: {
          reason: 'CrashLoopBackOff',
          message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${this.spec.name} pod=${this.pod.key}`,
        },
      };
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return;
      if (!configError || this.proc) this.restartCount++;
      void this.start().catch((e) => {
        this.pod.kubelet.log.error({ pod: this.pod.key, err: errMsg(e) }, 'restart failed');
      });
    }, delay);
  }

  /** Stops the container: preStop hook (optional), SIGTERM, SIGKILL after graceMs. */
  async kill(graceMs: number, final: boolean): Promise<void> {
    if (final) {
      this.stopping = true;
      if (this.restartTimer) clearTimeout(this.restartTimer);
    }
    this.stopProbes();
    const proc = this.proc;
    if (!proc?.running) return;
    const deadline = Date.now() + graceMs;
    if (final && this.spec.lifecycle?.preStop) {
      await Promise.race([runProbe(this.spec.lifecycle.preStop, this.probeContext(), graceMs), sleep(graceMs)]);
    }
    const started = Date.now();
    if (await proc.stop(Math.max(0, deadline - Date.now()))) {
      // Worth a warning: a process that ignores SIGTERM costs every scale-down its whole grace period.
      this.pod.kubelet.log.warn({ pod: this.pod.key, container: this.spec.name, waitedMs: Date.now() - started }, 'container did not exit on SIGTERM within its grace period: killed');
    }
    await this.exitHandled;
  }
}

/** Everything about one pod on this node. */
class PodWorker {
  readonly containers = new Map<string, ContainerRunner>();
  readonly initContainers: ContainerRunner[] = [];
  net: PodNet | undefined;
  readonly dir: string;
  readonly key: string;
  private phase: PodStatus['phase'] = 'Pending';
  private conditions = new Map<string, PodCondition>();
  private startTime: string | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private terminating: Promise<void> | undefined;
  private initDone = false;
  private gone = false;
  private volumeMounts = new Map<string, string>();
  private tokenTimers: NodeJS.Timeout[] = [];
  private podReason: { reason: string; message: string } | undefined;

  constructor(
    public pod: Pod,
    readonly kubelet: ProcessKubelet,
  ) {
    this.key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    this.dir = join(kubelet.runDir, 'pods', `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`);
    for (const c of pod.spec.initContainers ?? []) this.initContainers.push(new ContainerRunner(c, true, this));
    for (const c of pod.spec.containers) this.containers.set(c.name, new ContainerRunner(c, false, this));
  }

  get uid(): string {
    return this.pod.metadata.uid ?? '';
  }

  /** Whether the pod uses the host's network (no namespace of its own). */
  get hostNetwork(): boolean {
    return this.pod.spec.hostNetwork === true;
  }

  /** Pod hostname (spec.hostname or the pod name, max 63 chars). */
  get hostname(): string {
    return (this.pod.spec.hostname ?? this.pod.metadata.name ?? 'pod').slice(0, 63);
  }

  graceSeconds(): number {
    return this.pod.metadata.deletionGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds ?? 30;
  }

  graceMs(): number {
    return this.graceSeconds() * 1000;
  }

  allRunners(): ContainerRunner[] {
    return [...this.initContainers, ...this.containers.values()];
  }

  /** Ready = every regular container ready (and the pod running). */
  isReady(): boolean {
    return this.phase === 'Running' && [...this.containers.values()].every((c) => c.ready);
  }

  private setCondition(type: string, ok: boolean, reason?: string): void {
    const status = ok ? 'True' : 'False';
    const prev = this.conditions.get(type);
    if (prev && prev.status === status) return;
    this.conditions.set(type, {
      type,
      status,
      lastProbeTime: null,
      lastTransitionTime: now(),
      ...(reason && !ok ? { reason } : {}),
    });
  }

  /** Main flow: volumes, network, init containers, containers. */
  async run(): Promise<void> {
    const k = this.kubelet;
    this.startTime = now();
    this.setCondition('PodScheduled', true);
    this.setCondition('PodReadyToStartContainers', false);
    this.setCondition('Initialized', false, 'ContainersNotInitialized');
    this.setCondition('ContainersReady', false, 'ContainersNotReady');
    this.setCondition('Ready', false, 'ContainersNotReady');
    this.requestStatus();
    mkdirSync(this.dir, { recursive: true });
    try {
      await this.prepareVolumes();
      if (this.terminating || this.gone) return;
      if (this.hostNetwork) {
        // Host network: no namespace; the pod IP is the node's address.
        this.net = { ns: '', ip: k.network.nodeIp, hostVeth: '' };
      } else {
        this.net = await k.network.attach(this.uid);
        // Must exist before the first `ip netns exec`, which bind-mounts them over /etc.
        k.writeHostsNow(this);
      }
      k.writeHosts();
      this.setCondition('PodReadyToStartContainers', true);
      this.requestStatus();
    } catch (e) {
      k.log.warn({ pod: this.key, err: errMsg(e) }, 'pod setup failed; retrying');
      this.podReason = { reason: 'ContainerCreating', message: errMsg(e) };
      for (const c of this.allRunners()) c.state = { waiting: { reason: 'ContainerCreating', message: errMsg(e) } };
      this.requestStatus();
      await sleep(2000);
      if (!this.terminating && !this.gone) return this.run();
      return;
    }
    this.podReason = undefined;
    // Init containers, one at a time. Sidecars (restartPolicy Always) keep running.
    for (const ic of this.initContainers) {
      if (this.terminating || this.gone) return;
      await ic.start();
      if (ic.sidecar) {
        while (!ic.started && !this.terminating && !this.gone) await sleep(100);
        continue;
      }
      for (;;) {
        await sleep(100);
        if (this.terminating || this.gone) return;
        const t = ic.state.terminated;
        if (t && t.exitCode === 0 && !ic.running) break;
        if (t && t.exitCode !== 0 && (this.pod.spec.restartPolicy ?? 'Always') === 'Never') {
          this.phase = 'Failed';
          this.requestStatus();
          return;
        }
      }
    }
    this.initDone = true;
    this.setCondition('Initialized', true);
    this.phase = 'Running';
    for (const c of this.containers.values()) {
      if (this.terminating || this.gone) return;
      await c.start();
    }
    this.requestStatus();
  }

  /** Called when a container exited (after restart decisions). */
  containerExited(_c: ContainerRunner): void {
    if (!this.initDone || this.terminating) return;
    const policy = this.pod.spec.restartPolicy ?? 'Always';
    if (policy === 'Always') return;
    const regular = [...this.containers.values()];
    const allDone = regular.every((c) => !c.running && c.state.terminated && !(policy === 'OnFailure' && c.state.terminated.exitCode !== 0));
    if (!allDone) return;
    this.phase = regular.every((c) => c.state.terminated?.exitCode === 0) ? 'Succeeded' : 'Failed';
    // Stop sidecars, then release the network.
    void (async () => {
      for (const ic of this.initContainers) await ic.kill(this.graceMs(), true);
      this.requestStatus();
      await this.releaseNetwork();
    })();
  }

  /** Environment for a container. */
  containerEnv(c: Container): Promise<Record<string, string>> {
    const k = this.kubelet;
    const base: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      // Like a container without a passwd entry for its user: HOME=/ unless it runs as root.
      HOME: (c.securityContext?.runAsUser ?? this.pod.spec.securityContext?.runAsUser ?? 0) === 0 ? (process.env.HOME ?? '/root') : '/',
      HOSTNAME: this.hostname,
    };
    return buildContainerEnv({
      pod: this.pod,
      container: c,
      podIP: this.net?.ip ?? '',
      hostIP: k.network.nodeIp,
      base,
      services: k.servicesIn(this.pod.metadata.namespace ?? 'default'),
      data: k.data,
      node: k.allocatable,
    });
  }

  /** The shell script run inside the pod's namespaces for one container. */
  wrapperScript(c: Container, command: readonly string[], workingDir: string | undefined): string {
    const lines = ['#!/bin/sh', 'set -e', ...(this.hostNetwork ? [] : [`hostname ${shq(this.hostname)}`])];
    const mounts = (c.volumeMounts ?? []).map((m) => {
      const src0 = this.volumeMounts.get(m.name);
      if (!src0) throw new Error(`volume ${m.name} not prepared`);
      const src = m.subPath ? join(src0, m.subPath) : src0;
      if (m.subPath && !existsSync(src)) mkdirSync(src, { recursive: true });
      return { ...m, src, isDir: statSync(src).isDirectory() };
    });
    // Parents before children, like the kubelet.
    mounts.sort((a, b) => a.mountPath.split('/').length - b.mountPath.split('/').length);
    // The host root is the container's root, so a mount may hide a later mount's source
    // (e.g. mountPath /work hides /work/...). Open such sources first and mount them from the
    // file descriptor, which still refers to the hidden folder.
    const under = (p: string, dir: string): boolean => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
    let fd = 3;
    const from = new Map<number, string>();
    mounts.forEach((m, i) => {
      const shadowed = mounts.some((o, j) => j < i && under(m.src, o.mountPath));
      if (shadowed && fd <= 9) {
        lines.push(`exec ${fd}<${shq(m.src)}`);
        from.set(i, `/proc/self/fd/${fd}`);
        fd++;
      }
    });
    for (const m of mounts) this.kubelet.noteMountpoint(m.mountPath);
    mounts.forEach((m, i) => {
      lines.push(
        m.isDir
          ? `mkdir -p ${shq(m.mountPath)}`
          : `mkdir -p ${shq(dirname(m.mountPath))}; [ -e ${shq(m.mountPath)} ] || touch ${shq(m.mountPath)}`,
        `mount --bind ${shq(from.get(i) ?? m.src)} ${shq(m.mountPath)}`,
      );
      if (m.readOnly) lines.push(`mount -o remount,bind,ro ${shq(m.mountPath)}`);
    });
    for (let f = 3; f < fd; f++) lines.push(`exec ${f}<&-`);
    if (workingDir) lines.push(`mkdir -p ${shq(workingDir)}`, `cd ${shq(workingDir)}`);
    lines.push(`exec ${[...this.dropPrivileges(c), ...command].map(shq).join(' ')}`, '');
    return lines.join('\n');
  }

  /**
   * `setpriv` prefix applying runAsUser/runAsGroup/fsGroup/supplementalGroups (container
   * settings override the pod's), or nothing when the container runs as root.
   */
  private dropPrivileges(c: Container): string[] {
    const pod = this.pod.spec.securityContext ?? {};
    const ctr = c.securityContext ?? {};
    const uid = ctr.runAsUser ?? pod.runAsUser;
    const gid = ctr.runAsGroup ?? pod.runAsGroup;
    if ((ctr.runAsNonRoot ?? pod.runAsNonRoot) && !uid) {
      throw new Error('container has runAsNonRoot and image will run as root');
    }
    if (uid === undefined && gid === undefined) return [];
    const groups = [...(pod.fsGroup !== undefined ? [pod.fsGroup] : []), ...(pod.supplementalGroups ?? [])];
    return [
      'setpriv',
      `--reuid=${uid ?? 0}`,
      `--regid=${gid ?? 0}`,
      ...(groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups']),
      '--',
    ];
  }

  /** Gives fsGroup ownership of writable volumes (emptyDir, PVC), like the kubelet. */
  private applyFsGroup(dir: string): void {
    const g = this.pod.spec.securityContext?.fsGroup;
    if (g === undefined) return;
    execFileSync('chgrp', ['-R', String(g), dir]);
    execFileSync('chmod', ['-R', 'g+rwXs', dir]);
  }

  // ---- volumes ----

  private volDir(name: string): string {
    return join(this.dir, 'volumes', name);
  }

  private writeFiles(dir: string, files: Record<string, Buffer | string>, mode: number): void {
    mkdirSync(dir, { recursive: true });
    for (const [rel, content] of Object.entries(files)) {
      const p = join(dir, rel);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, content);
      chmodSync(p, mode);
    }
  }

  private async dataFiles(
    kind: 'configMap' | 'secret',
    name: string,
    items: readonly KeyToPath[] | undefined,
    optional: boolean | undefined,
  ): Promise<Record<string, Buffer>> {
    const ns = this.pod.metadata.namespace ?? 'default';
    const data = await this.kubelet.rawData(kind, ns, name);
    if (!data) {
      if (optional) return {};
      throw new Error(`${kind} ${ns}/${name} not found`);
    }
    const out: Record<string, Buffer> = {};
    if (items?.length) {
      for (const it of items) {
        const v = data[it.key];
        if (v === undefined) throw new Error(`key ${it.key} not found in ${kind} ${ns}/${name}`);
        out[it.path] = v;
      }
    } else Object.assign(out, data);
    return out;
  }

  private downwardFiles(items: readonly DownwardAPIVolumeFile[] | undefined): Record<string, string> {
    const out: Record<string, string> = {};
    for (const it of items ?? []) {
      if (it.fieldRef) out[it.path] = fieldRefValue(this.pod, it.fieldRef.fieldPath, this.net?.ip ?? '', this.kubelet.network.nodeIp);
      else if (it.resourceFieldRef) {
        const c = this.pod.spec.containers.find((x) => x.name === it.resourceFieldRef?.containerName);
        out[it.path] = resourceFieldValue(it.resourceFieldRef, c, this.kubelet.allocatable);
      }
    }
    return out;
  }

  private async tokenFor(audience: string | undefined, expirationSeconds: number): Promise<{ token: string; ttl: number }> {
    const k = this.kubelet;
    const ns = this.pod.metadata.namespace ?? 'default';
    const sa = this.pod.spec.serviceAccountName ?? 'default';
    const tr = await k.client.create<{ status: { token: string; expirationTimestamp: string } }>(
      `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          ...(audience ? { audiences: [audience] } : {}),
          expirationSeconds,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: this.pod.metadata.name, uid: this.uid },
        },
      },
    );
    const ttl = Math.max(60, (Date.parse(tr.status.expirationTimestamp) - Date.now()) / 1000);
    return { token: tr.status.token, ttl };
  }

  private async projectVolume(v: Volume, dir: string, refresh: boolean): Promise<void> {
    const mode = v.projected?.defaultMode ?? 0o644;
    for (const src of v.projected?.sources ?? []) {
      if (src.configMap) this.writeFiles(dir, await this.dataFiles('configMap', src.configMap.name, src.configMap.items, src.configMap.optional), mode);
      if (src.secret) this.writeFiles(dir, await this.dataFiles('secret', src.secret.name, src.secret.items, src.secret.optional), mode);
      if (src.downwardAPI) this.writeFiles(dir, this.downwardFiles(src.downwardAPI.items), mode);
      const sat = src.serviceAccountToken;
      if (sat && !refresh) {
        const write = async (): Promise<void> => {
          try {
            const { token, ttl } = await this.tokenFor(sat.audience, sat.expirationSeconds ?? 3607);
            this.writeFiles(dir, { [sat.path]: token }, mode);
            if (!this.gone) this.tokenTimers.push(setTimeout(() => void write(), ttl * 800));
          } catch (e) {
            this.kubelet.log.warn({ pod: this.key, err: errMsg(e) }, 'token refresh failed');
            if (!this.gone) this.tokenTimers.push(setTimeout(() => void write(), 5000));
          }
        };
        const { token, ttl } = await this.tokenFor(sat.audience, sat.expirationSeconds ?? 3607);
        this.writeFiles(dir, { [sat.path]: token }, mode);
        this.tokenTimers.push(setTimeout(() => void write(), ttl * 800));
      }
    }
  }

  /** Creates every volume's backing folder; PVCs wait until bound. */
  private async prepareVolumes(): Promise<void> {
    const k = this.kubelet;
    const ns = this.pod.metadata.namespace ?? 'default';
    for (const v of this.pod.spec.volumes ?? []) {
      if (this.volumeMounts.has(v.name)) continue;
      const dir = this.volDir(v.name);
      if (v.emptyDir) {
        mkdirSync(dir, { recursive: true });
        // Like the kubelet: an emptyDir is world-writable (0777), so a non-root runAsUser can use it.
        chmodSync(dir, 0o777);
        this.applyFsGroup(dir);
      } else if (v.hostPath) {
        if (!existsSync(v.hostPath.path) && (v.hostPath.type ?? '').includes('OrCreate')) {
          if (v.hostPath.type === 'FileOrCreate') writeFileSync(v.hostPath.path, '');
          else mkdirSync(v.hostPath.path, { recursive: true });
        }
        this.volumeMounts.set(v.name, v.hostPath.path);
        continue;
      } else if (v.configMap) {
        this.writeFiles(dir, await this.dataFiles('configMap', v.configMap.name, v.configMap.items, v.configMap.optional), v.configMap.defaultMode ?? 0o644);
      } else if (v.secret) {
        this.writeFiles(dir, await this.dataFiles('secret', v.secret.secretName, v.secret.items, v.secret.optional), v.secret.defaultMode ?? 0o644);
      } else if (v.downwardAPI) {
        this.writeFiles(dir, this.downwardFiles(v.downwardAPI.items), v.downwardAPI.defaultMode ?? 0o644);
      } else if (v.projected) {
        await this.projectVolume(v, dir, false);
      } else if (v.persistentVolumeClaim) {
        const path = await k.pvcPath(ns, v.persistentVolumeClaim.claimName, () => !!this.terminating || this.gone);
        this.applyFsGroup(path);
        this.volumeMounts.set(v.name, path);
        continue;
      } else {
        throw new Error(`volume ${v.name}: unsupported volume source`);
      }
      mkdirSync(dir, { recursive: true });
      this.volumeMounts.set(v.name, dir);
    }
  }

  /** Re-writes configMap/secret/downwardAPI/projected (non-token) contents. */
  async refreshVolumes(): Promise<void> {
    for (const v of this.pod.spec.volumes ?? []) {
      const dir = this.volDir(v.name);
      try {
        if (v.configMap) this.writeFiles(dir, await this.dataFiles('configMap', v.configMap.name, v.configMap.items, v.configMap.optional), v.configMap.defaultMode ?? 0o644);
        else if (v.secret) this.writeFiles(dir, await this.dataFiles('secret', v.secret.secretName, v.secret.items, v.secret.optional), v.secret.defaultMode ?? 0o644);
        else if (v.downwardAPI) this.writeFiles(dir, this.downwardFiles(v.downwardAPI.items), v.downwardAPI.defaultMode ?? 0o644);
        else if (v.projected) await this.projectVolume(v, dir, true);
      } catch {
        /* keep old contents */
      }
    }
  }

  // ---- status ----

  /** Schedules a status update (coalesced). */
  requestStatus(): void {
    if (this.statusTimer || this.gone) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      void this.pushStatus();
    }, 50);
  }

  private computeStatus(): PodStatus {
    const regular = [...this.containers.values()];
    // Running only once some container has been started (e.g. not while every image is missing).
    const phase = this.phase === 'Running' && regular.every((c) => !c.proc) ? 'Pending' : this.phase;
    const containersReady = this.initDone && regular.every((c) => c.ready);
    this.setCondition('ContainersReady', containersReady, 'ContainersNotReady');
    this.setCondition('Ready', containersReady && phase === 'Running', 'ContainersNotReady');
    if (this.phase === 'Succeeded' || this.phase === 'Failed') {
      this.setCondition('Ready', false, 'PodCompleted');
      this.setCondition('ContainersReady', false, 'PodCompleted');
      this.setCondition('PodReadyToStartContainers', false);
    }
    const ip = this.net?.ip ?? this.pod.status?.podIP;
    const hostIP = this.kubelet.network.nodeIp;
    return {
      phase,
      conditions: [...this.conditions.values()],
      hostIP,
      hostIPs: [{ ip: hostIP }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      ...(this.startTime ? { startTime: this.startTime } : {}),
      ...(this.initContainers.length ? { initContainerStatuses: this.initContainers.map((c) => c.status()) } : {}),
      containerStatuses: regular.map((c) => c.status()),
      ...(this.podReason && this.phase === 'Pending' ? { message: this.podReason.message } : {}),
    };
  }

  private async pushStatus(): Promise<void> {
    if (this.gone) return;
    const status = this.computeStatus();
    try {
      const updated = await this.kubelet.client.patch<Pod>(
        `/api/v1/namespaces/${this.pod.metadata.namespace}/pods/${this.pod.metadata.name}/status`,
        { metadata: { uid: this.uid }, status },
      );
      if (updated.metadata.uid === this.uid) this.pod = { ...this.pod, status: updated.status, metadata: { ...this.pod.metadata, ...updated.metadata } };
    } catch (e) {
      if (e instanceof KubeApiError && (e.status === 404 || e.status === 409 || e.status === 422)) return; // gone or replaced
      this.kubelet.log.warn({ pod: this.key, err: errMsg(e) }, 'status update failed');
      setTimeout(() => this.requestStatus(), 1000);
    }
  }

  /** Deletes the pod's network namespace; the last IP stays in the reported status. */
  private async releaseNetwork(): Promise<void> {
    const ip = this.net?.ip;
    this.net = undefined;
    if (ip) this.pod = { ...this.pod, status: { ...this.pod.status, podIP: ip } };
    await this.kubelet.network.detach(this.uid); // no-op for host-network pods
    this.kubelet.writeHosts();
  }

  /** A newer version of the pod object arrived. */
  update(pod: Pod): void {
    const ip = this.pod.status?.podIP;
    this.pod = { ...pod, status: { ...pod.status, ...(ip && !pod.status?.podIP ? { podIP: ip } : {}) } };
    if (pod.metadata.deletionTimestamp && !this.terminating) {
      this.terminating = this.terminate(true);
    }
  }

  /**
   * Stops all containers (preStop, SIGTERM, SIGKILL after the grace period), releases the
   * network and, when `deleteObject`, deletes the pod object for good.
   */
  async terminate(deleteObject: boolean): Promise<void> {
    const grace = this.graceMs();
    this.kubelet.log.info({ pod: this.key, graceMs: grace }, 'terminating pod');
    for (const t of this.tokenTimers) clearTimeout(t);
    await Promise.all([...this.containers.values()].map((c) => c.kill(grace, true)));
    await Promise.all(this.initContainers.map((c) => c.kill(grace, true)));
    for (const c of this.allRunners()) {
      if (!c.state.terminated) {
        c.state = { terminated: { exitCode: 0, reason: 'Completed', finishedAt: now() } };
      }
    }
    await this.releaseNetwork();
    if (deleteObject && !this.gone) {
      try {
        await this.kubelet.client.delete(`/api/v1/namespaces/${this.pod.metadata.namespace}/pods/${this.pod.metadata.name}`, {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          gracePeriodSeconds: 0,
          preconditions: { uid: this.uid },
        });
      } catch (e) {
        this.kubelet.log.warn({ pod: this.key, err: errMsg(e) }, 'final pod delete failed');
      }
    }
    this.dispose();
  }

  /** The pod object is gone: kill everything now. */
  async forget(): Promise<void> {
    const wasTerminating = this.terminating;
    this.gone = true;
    if (this.statusTimer) clearTimeout(this.statusTimer);
    if (wasTerminating) {
      // Force-deleted while terminating gracefully: cut the grace period short.
      await Promise.all(this.allRunners().map((c) => c.kill(0, true)));
      await wasTerminating;
      return;
    }
    this.terminating = this.terminate(false);
    await this.terminating;
  }

  private dispose(): void {
    this.gone = true;
    if (this.statusTimer) clearTimeout(this.statusTimer);
    for (const t of this.tokenTimers) clearTimeout(t);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A pod with an IP, as name resolution and the service proxy see it. */
interface PodView {
  readonly pod: Pod;
  readonly ip: string;
  readonly ready: boolean;
  readonly hostname: string;
  readonly worker?: PodWorker;
}

/** Userspace TCP proxy for one service IP:port. */
interface ProxyListener {
  readonly server: Server;
  readonly key: string;
}

/** The process kubelet. Create, then {@link ProcessKubelet.start}; {@link ProcessKubelet.stop} cleans up. */
export class ProcessKubelet {
  /** Node name. */
  readonly nodeName: string;
  /** Folder for pods and volumes. */
  readonly runDir: string;
  /** Image resolver. */
  readonly images: ImageResolver;
  /** Pod network. */
  readonly network: PodNetwork;
  /** API client. */
  readonly client: KubeClient;
  /** Logger. */
  readonly log: Logger;
  /** Restart backoff. */
  readonly backoff: { readonly baseMs: number; readonly maxMs: number };
  /** Reported allocatable resources. */
  readonly allocatable: NodeAllocatable;
  /** ConfigMap/Secret lookups for env. */
  readonly data: DataSource;

  private readonly opts: ProcessKubeletOptions;
  private readonly abort = new AbortController();
  private readonly workers = new Map<string, PodWorker>();
  private readonly services = new Map<string, Service>();
  private readonly proxies = new Map<string, ProxyListener>();
  private readonly proxySockets = new Set<Socket>();
  private readonly bindingInFlight = new Set<string>();
  private readonly provisioned = new Set<string>();
  private readonly createdPaths = new Set<string>();
  private readonly allPods = new Map<string, Pod>();
  private readonly runProxy: boolean;
  private readonly startedAt = now();
  private timers: NodeJS.Timeout[] = [];
  private hostsTimer: NodeJS.Timeout | undefined;
  private proxyTimer: NodeJS.Timeout | undefined;
  private watches: Promise<void>[] = [];
  private readonly apiserver: { host: string; port: number };
  private readonly kubeletPort: number;
  private readonly podCidr: string;
  private logServer: HttpsServer | undefined;

  constructor(opts: ProcessKubeletOptions) {
    this.opts = opts;
    this.nodeName = opts.nodeName ?? 'local';
    this.runDir = opts.runDir;
    this.images = opts.images;
    const slot = slotNetwork(opts.slot ?? 0);
    const nodeIndex = opts.nodeIndex ?? 0;
    this.podCidr = opts.podCidr ?? slot.podCidr;
    this.network = new PodNetwork({
      cidr: this.podCidr,
      bridge: opts.bridge ?? slot.bridge,
      nsPrefix: `${slot.nsPrefix}${nodeIndex}-`,
      nodeIndex,
    });
    this.runProxy = opts.serviceProxy ?? nodeIndex === 0;
    this.client = new KubeClient(opts.endpoint);
    this.log = opts.logger ?? pino({ level: process.env.LOCAL_CLUSTER_LOG ?? 'warn' }).child({ component: 'kubelet' });
    this.backoff = opts.restartBackoff ?? { baseMs: 10_000, maxMs: 300_000 };
    this.allocatable = opts.allocatable ?? { cpu: '8', memory: '16Gi', 'ephemeral-storage': '100Gi' };
    this.kubeletPort = opts.kubeletPort ?? 10250;
    const u = new URL(opts.endpoint.server);
    this.apiserver = { host: u.hostname, port: Number(u.port || 443) };
    this.data = {
      configMap: async (ns, name) => this.textData('configMap', ns, name),
      secret: async (ns, name) => this.textData('secret', ns, name),
    };
  }

  private async textData(kind: 'configMap' | 'secret', ns: string, name: string): Promise<Record<string, string> | undefined> {
    const raw = await this.rawData(kind, ns, name);
    if (!raw) return undefined;
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.toString('utf8')]));
  }

  /** ConfigMap/Secret contents as bytes. */
  async rawData(kind: 'configMap' | 'secret', ns: string, name: string): Promise<Record<string, Buffer> | undefined> {
    const obj = await this.client.get<DataObject>(`/api/v1/namespaces/${ns}/${kind === 'configMap' ? 'configmaps' : 'secrets'}/${name}`);
    if (!obj) return undefined;
    const out: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(obj.data ?? {})) out[k] = kind === 'secret' ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8');
    for (const [k, v] of Object.entries(obj.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
    return out;
  }

  /** Node labels (used for nodeSelector matching). */
  get nodeLabels(): Record<string, string> {
    return {
      'kubernetes.io/hostname': this.nodeName,
      'kubernetes.io/os': 'linux',
      'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
      'node.kubernetes.io/instance-type': 'process',
    };
  }

  /** Registers the node, sets up networking and starts watching. */
  async start(): Promise<void> {
    mkdirSync(join(this.runDir, 'pods'), { recursive: true });
    await this.network.setup();
    if (this.kubeletPort) await this.startLogServer();
    await this.registerNode();
    await this.heartbeat();
    this.timers.push(setInterval(() => void this.heartbeat(), 10_000));
    this.timers.push(setInterval(() => {
      for (const w of this.workers.values()) void w.refreshVolumes();
    }, 30_000));
    if (this.opts.provisionVolumes !== false) await this.ensureStorageClass();
    const signal = this.abort.signal;
    const synced: Promise<void>[] = [];
    const watch = <T extends Pod | Service | PersistentVolumeClaim | PersistentVolume>(
      path: string,
      fn: (ev: WatchEvent<T>) => void | Promise<void>,
    ): void => {
      let done!: () => void;
      synced.push(new Promise((r) => (done = r)));
      this.watches.push(this.client.listWatch<T>(path, async (ev) => {
        try {
          await fn(ev);
        } catch (e) {
          this.log.error({ path, err: errMsg(e) }, 'event handler failed');
        }
      }, signal, done));
    };
    watch<Service>('/api/v1/services', (ev) => this.onService(ev));
    watch<Pod>('/api/v1/pods', (ev) => this.onAnyPod(ev));
    watch<Pod>(`/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${this.nodeName}`)}`, (ev) => this.onPod(ev));
    if (this.opts.bindPods !== false) {
      watch<Pod>(`/api/v1/pods?fieldSelector=${encodeURIComponent('spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed')}`, (ev) => this.onUnscheduled(ev));
    }
    if (this.opts.provisionVolumes !== false) {
      watch<PersistentVolumeClaim>('/api/v1/persistentvolumeclaims', (ev) => this.onPvc(ev));
      watch<PersistentVolume>(`/api/v1/persistentvolumes?labelSelector=${encodeURIComponent(OWNED_LABEL)}`, (ev) => this.onPv(ev));
    }
    await Promise.all(synced);
    this.log.info({ node: this.nodeName }, 'process kubelet started');
  }

  /** Stops all pods (without deleting their objects), proxies, watches and the network. */
  async stop(): Promise<void> {
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    if (this.hostsTimer) clearTimeout(this.hostsTimer);
    if (this.proxyTimer) clearTimeout(this.proxyTimer);
    await Promise.all([...this.workers.values()].map((w) => w.forget()));
    this.workers.clear();
    for (const s of this.proxySockets) s.destroy();
    await Promise.all([...this.proxies.values()].map((p) => new Promise<void>((r) => p.server.close(() => r()))));
    // The bridge may outlive this kubelet (other nodes): give back the service addresses.
    for (const ip of new Set([...this.proxies.keys()].map((k) => k.split(':')[0] ?? ''))) {
      await this.network.removeAddress(`${ip}/32`);
    }
    this.proxies.clear();
    await Promise.allSettled(this.watches);
    if (this.logServer) {
      this.logServer.closeAllConnections();
      await new Promise<void>((r) => this.logServer?.close(() => r()));
    }
    await this.network.teardown();
    this.removeMountpoints();
    this.client.close();
  }

  /**
   * Remembers the parts of a host path that do not exist yet: containers use the host root, so
   * mount points are created on the host, and {@link stop} removes them again (if empty).
   */
  noteMountpoint(path: string): void {
    for (let p = path; p !== '/' && p !== '.' && !existsSync(p); p = dirname(p)) this.createdPaths.add(p);
  }

  private removeMountpoints(): void {
    const paths = [...this.createdPaths].sort((a, b) => b.length - a.length);
    for (const p of paths) {
      try {
        const st = statSync(p);
        if (st.isDirectory()) rmdirSync(p);
        else if (st.size === 0) rmSync(p);
      } catch {
        /* not empty or already gone */
      }
    }
    this.createdPaths.clear();
  }

  /** Serves GET /containerLogs/{ns}/{pod}/{container} like the kubelet API (TLS, self-signed). */
  private async startLogServer(): Promise<void> {
    const dir = join(this.runDir, 'kubelet-pki');
    mkdirSync(dir, { recursive: true });
    const key = join(dir, 'kubelet.key');
    const cert = join(dir, 'kubelet.crt');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
      '-days', '30', '-subj', `/CN=${this.nodeName}`, '-addext', `subjectAltName=IP:${this.network.nodeIp},DNS:${this.nodeName}`,
    ], { stdio: 'ignore' });
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => this.serveLogs(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (head.length) socket.unshift(head);
      const m = /^\/exec\/([^/]+)\/([^/]+)\/([^/?]+)/.exec(req.url ?? '');
      if (!m) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const [, ns, pod, container] = m.map((x) => decodeURIComponent(x ?? ''));
      serveSpdyExec(req, socket, (command, io, wantStdin) => this.execStream(ns ?? '', pod ?? '', container ?? '', command, io, wantStdin));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.kubeletPort, this.network.nodeIp, () => resolve());
    });
    this.logServer = server;
  }

  private serveLogs(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', 'https://kubelet');
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(u.pathname);
    if (req.method !== 'GET' || !m) {
      res.writeHead(404).end('only /containerLogs is implemented by the process kubelet\n');
      return;
    }
    const [, ns, pod, container] = m.map((x) => decodeURIComponent(x ?? ''));
    const current = this.logPath(ns ?? '', pod ?? '', container ?? '');
    const path = current && u.searchParams.get('previous') === 'true' ? current.replace(/\.log$/, '.previous.log') : current;
    if (!path || !existsSync(path)) {
      res.writeHead(404).end(`container ${container} in pod ${ns}/${pod} has no logs here\n`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    let text = readFileSync(path, 'utf8');
    const tail = Number(u.searchParams.get('tailLines') ?? NaN);
    if (Number.isInteger(tail) && tail >= 0) {
      const lines = text.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      text = lines.slice(Math.max(0, lines.length - tail)).map((l) => `${l}\n`).join('');
    }
    res.write(text);
    if (u.searchParams.get('follow') !== 'true') {
      res.end();
      return;
    }
    let pos = statSync(path).size;
    const timer = setInterval(() => {
      try {
        const size = statSync(path).size;
        if (size < pos) pos = 0;
        if (size > pos) {
          const fd = openSync(path, 'r');
          const buf = Buffer.alloc(size - pos);
          readSync(fd, buf, 0, buf.length, pos);
          closeSync(fd);
          pos = size;
          res.write(buf);
        }
      } catch {
        clearInterval(timer);
        res.end();
      }
    }, 250);
    req.on('close', () => clearInterval(timer));
  }

  /** Path of a container's log file, if the pod runs here. */
  logPath(namespace: string, pod: string, container: string): string | undefined {
    for (const w of this.workers.values()) {
      if (w.pod.metadata.namespace === namespace && w.pod.metadata.name === pod) return join(w.dir, `${container}.log`);
    }
    return undefined;
  }

  /** Contents of a container's log (all restarts). */
  logs(namespace: string, pod: string, container: string): string {
    const p = this.logPath(namespace, pod, container);
    return p && existsSync(p) ? readFileSync(p, 'utf8') : '';
  }

  // ---- node ----

  private async registerNode(): Promise<void> {
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.nodeName, labels: this.nodeLabels },
      spec: { podCIDR: this.podCidr, podCIDRs: [this.podCidr] },
    };
    try {
      await this.client.create('/api/v1/nodes', node);
    } catch (e) {
      if (!(e instanceof KubeApiError && e.status === 409)) throw e;
      await this.client.patch(`/api/v1/nodes/${this.nodeName}`, { metadata: { labels: this.nodeLabels }, spec: { unschedulable: false } });
    }
  }

  private nodeStatus(): unknown {
    const t = now();
    const cond = (type: string, status: string, reason: string, message: string): unknown => ({
      type, status, reason, message, lastHeartbeatTime: t, lastTransitionTime: this.startedAt,
    });
    const res = { ...this.allocatable, pods: '110' };
    return {
      capacity: res,
      allocatable: res,
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        cond('Ready', 'True', 'KubeletReady', 'process kubelet is posting ready status'),
      ],
      addresses: [
        { type: 'InternalIP', address: this.network.nodeIp },
        { type: 'Hostname', address: this.nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: this.kubeletPort } },
      nodeInfo: {
        machineID: 'process-kubelet', systemUUID: 'process-kubelet', bootID: String(process.pid),
        kernelVersion: '', osImage: 'process-kubelet', containerRuntimeVersion: 'process://1',
        kubeletVersion: 'v1.35.4', kubeProxyVersion: '', operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    };
  }

  private async heartbeat(): Promise<void> {
    try {
      try {
        await this.client.patch(`/api/v1/nodes/${this.nodeName}/status`, { status: this.nodeStatus() }, 'strategic');
      } catch (e) {
        if (!(e instanceof KubeApiError && e.status === 404)) throw e;
        // The Node object was deleted: register again, like the kubelet.
        await this.registerNode();
        await this.client.patch(`/api/v1/nodes/${this.nodeName}/status`, { status: this.nodeStatus() }, 'strategic');
      }
      const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.nodeName}`;
      const spec = { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime: microTime() };
      const existing = await this.client.get(path);
      if (existing) await this.client.patch(path, { spec });
      else {
        await this.client.create('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.nodeName, namespace: 'kube-node-lease' }, spec,
        });
      }
    } catch (e) {
      this.log.warn({ err: errMsg(e) }, 'heartbeat failed');
    }
  }

  // ---- pods ----

  private async onUnscheduled(ev: WatchEvent<Pod>): Promise<void> {
    const pod = ev.object;
    if (ev.type === 'DELETED' || pod.spec.nodeName || pod.metadata.deletionTimestamp) return;
    const scheduler = pod.spec.schedulerName ?? 'default-scheduler';
    if (scheduler !== 'default-scheduler') return;
    const sel = pod.spec.nodeSelector ?? {};
    if (!Object.entries(sel).every(([k, v]) => this.nodeLabels[k] === v)) return;
    const uid = pod.metadata.uid ?? '';
    if (this.bindingInFlight.has(uid)) return;
    this.bindingInFlight.add(uid);
    try {
      await this.client.create(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/binding`, {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name: pod.metadata.name, namespace: pod.metadata.namespace, uid },
        target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName },
      });
      this.log.info({ pod: `${pod.metadata.namespace}/${pod.metadata.name}` }, 'bound pod');
    } catch (e) {
      if (!(e instanceof KubeApiError && (e.status === 409 || e.status === 404))) {
        this.log.warn({ pod: pod.metadata.name, err: errMsg(e) }, 'binding failed');
      }
    } finally {
      this.bindingInFlight.delete(uid);
    }
  }

  private async onPod(ev: WatchEvent<Pod>): Promise<void> {
    const pod = ev.object;
    const uid = pod.metadata.uid ?? '';
    const w = this.workers.get(uid);
    if (ev.type === 'DELETED') {
      if (w) {
        this.workers.delete(uid);
        await w.forget();
        this.writeHosts();
      }
      return;
    }
    if (w) {
      w.update(pod);
      this.endpointsChanged();
      return;
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') return;
    if (pod.metadata.deletionTimestamp) {
      // Never started here: just finish the deletion.
      await this.client.delete(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, {
        apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid },
      }).catch(() => undefined);
      return;
    }
    const nw = new PodWorker(pod, this);
    this.workers.set(uid, nw);
    void nw.run().catch((e) => this.log.error({ pod: nw.key, err: errMsg(e) }, 'pod run failed'));
  }

  // ---- services, hosts, proxy ----

  private onService(ev: WatchEvent<Service>): void {
    const key = `${ev.object.metadata.namespace}/${ev.object.metadata.name}`;
    if (ev.type === 'DELETED') this.services.delete(key);
    else this.services.set(key, ev.object);
    this.writeHosts();
    this.endpointsChanged();
  }

  /** Cluster-wide pod view (for names and service endpoints across nodes). */
  private onAnyPod(ev: WatchEvent<Pod>): void {
    const uid = ev.object.metadata.uid ?? '';
    if (ev.type === 'DELETED') this.allPods.delete(uid);
    else this.allPods.set(uid, ev.object);
    this.endpointsChanged();
  }

  /** Services visible to pods in a namespace (its own plus `default/kubernetes`). */
  servicesIn(ns: string): Service[] {
    return [...this.services.values()].filter(
      (s) => s.metadata.namespace === ns || (s.metadata.namespace === 'default' && s.metadata.name === 'kubernetes'),
    );
  }

  /**
   * Every pod with an IP in the cluster: this node's pods from local state (fresher), other
   * nodes' pods from the cluster-wide watch.
   */
  private podView(): PodView[] {
    const out = new Map<string, PodView>();
    for (const p of this.allPods.values()) {
      const ip = p.status?.podIP;
      const phase = p.status?.phase;
      if (!ip || phase === 'Succeeded' || phase === 'Failed') continue;
      const ready = phase === 'Running' && !!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      out.set(p.metadata.uid ?? '', { pod: p, ip, ready, hostname: (p.spec.hostname ?? p.metadata.name ?? '').slice(0, 63) });
    }
    for (const w of this.workers.values()) {
      const uid = w.uid;
      if (!w.net) {
        out.delete(uid);
        continue;
      }
      out.set(uid, { pod: w.pod, ip: w.net.ip, ready: w.isReady(), hostname: w.hostname, worker: w });
    }
    return [...out.values()];
  }

  private endpointsOf(svc: Service, view: readonly PodView[] = this.podView()): PodView[] {
    return view.filter((v) => {
      if (v.pod.metadata.namespace !== svc.metadata.namespace) return false;
      if (!labelsMatch(svc.spec.selector, v.pod.metadata.labels)) return false;
      if (svc.spec.publishNotReadyAddresses) return true;
      return !v.pod.metadata.deletionTimestamp && v.ready;
    });
  }

  /** Regenerates every pod's hosts file (coalesced). */
  writeHosts(): void {
    if (this.hostsTimer) return;
    this.hostsTimer = setTimeout(() => {
      this.hostsTimer = undefined;
      for (const w of this.workers.values()) {
        if (!w.net?.ns) continue;
        try {
          this.network.writeEtc(w.net.ns, this.hostsFor(w));
        } catch (e) {
          this.log.warn({ pod: w.key, err: errMsg(e) }, 'hosts write failed');
        }
      }
    }, 20);
  }

  /** Writes one pod's hosts and resolv.conf immediately. */
  writeHostsNow(w: PodWorker): void {
    if (w.net?.ns) this.network.writeEtc(w.net.ns, this.hostsFor(w));
  }

  private hostsFor(self: PodWorker): string {
    const ns = self.pod.metadata.namespace ?? 'default';
    const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
    const names = (name: string, svcNs: string): string[] => {
      const out = [`${name}.${svcNs}.svc.cluster.local`, `${name}.${svcNs}.svc`, `${name}.${svcNs}`];
      if (svcNs === ns) out.push(name);
      return out;
    };
    if (self.net) {
      const sub = self.pod.spec.subdomain;
      const h = self.hostname;
      const own = sub ? [`${h}.${sub}.${ns}.svc.cluster.local`, `${h}.${sub}.${ns}.svc`, `${h}.${sub}.${ns}`, `${h}.${sub}`] : [];
      lines.push(`${self.net.ip}\t${[...own, self.hostname].join(' ')}`);
    }
    const view = this.podView();
    for (const svc of this.services.values()) {
      const sns = svc.metadata.namespace ?? 'default';
      const name = svc.metadata.name ?? '';
      const ip = svc.spec.clusterIP;
      if (ip && ip !== 'None') {
        if (this.opts.serviceProxy !== false) lines.push(`${ip}\t${names(name, sns).join(' ')}`);
      } else {
        for (const v of this.endpointsOf(svc, view)) lines.push(`${v.ip}\t${names(name, sns).join(' ')}`);
      }
      // Pod records for pods whose subdomain is this service (StatefulSet-style).
      for (const v of view) {
        if (v.pod.metadata.namespace !== sns || v.pod.spec.subdomain !== name) continue;
        if (!labelsMatch(svc.spec.selector, v.pod.metadata.labels)) continue;
        if (v.pod.metadata.uid === self.uid) continue;
        const h = v.hostname;
        const recs = [`${h}.${name}.${sns}.svc.cluster.local`, `${h}.${name}.${sns}.svc`, `${h}.${name}.${sns}`];
        if (sns === ns) recs.push(`${h}.${name}`);
        lines.push(`${v.ip}\t${recs.join(' ')}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }

  /** Something affecting endpoints changed: refresh proxies and hosts (coalesced). */
  endpointsChanged(): void {
    this.writeHosts();
    if (!this.runProxy || this.proxyTimer) return;
    this.proxyTimer = setTimeout(() => {
      this.proxyTimer = undefined;
      void this.syncProxies().catch((e) => this.log.warn({ err: errMsg(e) }, 'proxy sync failed'));
    }, 20);
  }

  private async syncProxies(): Promise<void> {
    if (this.abort.signal.aborted) return;
    const wanted = new Map<string, { svc: Service; ip: string; port: number; targetPort: number | string }>();
    for (const svc of this.services.values()) {
      const ip = svc.spec.clusterIP;
      if (!ip || ip === 'None' || !/^\d+\.\d+\.\d+\.\d+$/.test(ip)) continue;
      for (const p of svc.spec.ports ?? []) {
        if ((p.protocol ?? 'TCP') !== 'TCP') continue;
        wanted.set(`${ip}:${p.port}`, { svc, ip, port: p.port, targetPort: p.targetPort ?? p.port });
      }
    }
    for (const [key, l] of this.proxies) {
      if (!wanted.has(key)) {
        l.server.close();
        this.proxies.delete(key);
        const ip = key.split(':')[0] ?? '';
        if (![...this.proxies.keys()].some((k) => k.startsWith(`${ip}:`))) await this.network.removeAddress(`${ip}/32`);
      }
    }
    for (const [key, want] of wanted) {
      if (this.proxies.has(key)) continue;
      await this.network.addAddress(`${want.ip}/32`);
      const svcKey = `${want.svc.metadata.namespace}/${want.svc.metadata.name}`;
      const server = createServer((client) => this.proxyConnection(client, svcKey, want.port));
      await new Promise<void>((resolve) => {
        server.once('error', (e) => {
          this.log.warn({ key, err: errMsg(e) }, 'proxy listen failed');
          resolve();
        });
        server.listen(want.port, want.ip, () => resolve());
      });
      if (server.listening) this.proxies.set(key, { server, key });
    }
  }

  private proxyConnection(client: Socket, svcKey: string, port: number): void {
    const svc = this.services.get(svcKey);
    let target: { host: string; port: number } | undefined;
    if (svc && svcKey === 'default/kubernetes') target = this.apiserver;
    else if (svc) {
      const sp = (svc.spec.ports ?? []).find((p) => p.port === port);
      const eps = this.endpointsOf(svc);
      const v = eps[Math.floor(Math.random() * eps.length)];
      if (sp && v) {
        try {
          const tp = sp.targetPort ?? sp.port;
          const ports = v.pod.spec.containers.flatMap((c) => c.ports ?? []);
          target = { host: v.ip, port: resolvePort(tp, ports) };
        } catch {
          target = undefined;
        }
      }
    }
    if (!target) {
      client.destroy();
      return;
    }
    const upstream = connect(target);
    this.proxySockets.add(client);
    this.proxySockets.add(upstream);
    const cleanup = (): void => {
      client.destroy();
      upstream.destroy();
      this.proxySockets.delete(client);
      this.proxySockets.delete(upstream);
    };
    client.on('error', cleanup);
    upstream.on('error', cleanup);
    client.on('close', cleanup);
    upstream.on('close', cleanup);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  // ---- storage ----

  private async ensureStorageClass(): Promise<void> {
    const path = '/apis/storage.k8s.io/v1/storageclasses';
    if (await this.client.get(`${path}/local`)) return;
    await this.client.create(path, {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'local', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: PROVISIONER,
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'Immediate',
    }).catch((e) => {
      if (!(e instanceof KubeApiError && e.status === 409)) throw e;
    });
  }

  private async onPvc(ev: WatchEvent<PersistentVolumeClaim>): Promise<void> {
    const pvc = ev.object;
    const uid = pvc.metadata.uid ?? '';
    if (ev.type === 'DELETED' || pvc.spec.volumeName || pvc.metadata.deletionTimestamp) return;
    if (this.provisioned.has(uid)) return;
    if (pvc.spec.volumeMode === 'Block') return;
    this.provisioned.add(uid);
    const name = `pvc-${uid}`;
    const dir = join(this.runDir, 'volumes', name);
    mkdirSync(dir, { recursive: true });
    try {
      await this.client.create('/api/v1/persistentvolumes', {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: {
          name,
          labels: { [OWNED_LABEL]: 'true' },
          annotations: { 'pv.kubernetes.io/provisioned-by': PROVISIONER },
        },
        spec: {
          capacity: { storage: pvc.spec.resources?.requests?.storage ?? '1Gi' },
          accessModes: pvc.spec.accessModes?.length ? pvc.spec.accessModes : ['ReadWriteOnce'],
          hostPath: { path: dir, type: 'DirectoryOrCreate' },
          storageClassName: pvc.spec.storageClassName ?? '',
          persistentVolumeReclaimPolicy: 'Retain',
          volumeMode: 'Filesystem',
          claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: pvc.metadata.namespace, name: pvc.metadata.name, uid },
        },
      });
      this.log.info({ pvc: `${pvc.metadata.namespace}/${pvc.metadata.name}`, pv: name }, 'provisioned volume');
    } catch (e) {
      if (!(e instanceof KubeApiError && e.status === 409)) {
        this.provisioned.delete(uid);
        throw e;
      }
    }
  }

  private async onPv(ev: WatchEvent<PersistentVolume>): Promise<void> {
    const pv = ev.object;
    if (ev.type === 'DELETED') {
      if (pv.spec.hostPath?.path.startsWith(join(this.runDir, 'volumes'))) rmSync(pv.spec.hostPath.path, { recursive: true, force: true });
      return;
    }
    if (pv.status?.phase === 'Released' || pv.status?.phase === 'Failed') {
      await this.client.delete(`/api/v1/persistentvolumes/${pv.metadata.name}`);
    }
  }

  /** Waits until a PVC is bound and returns the host folder backing it. */
  async pvcPath(ns: string, claim: string, cancelled: () => boolean = () => false): Promise<string> {
    for (let i = 0; ; i++) {
      const pvc = await this.client.get<PersistentVolumeClaim>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${claim}`);
      if (pvc?.spec.volumeName && pvc.status?.phase === 'Bound') {
        const pv = await this.client.get<PersistentVolume>(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
        const path = pv?.spec.hostPath?.path ?? pv?.spec.local?.path;
        if (!path) throw new Error(`PV ${pvc.spec.volumeName} has no hostPath/local path`);
        mkdirSync(path, { recursive: true });
        return path;
      }
      if (this.abort.signal.aborted || cancelled()) throw new Error('pod or kubelet stopping');
      if (i > 0 && i % 20 === 0) this.log.info({ pvc: `${ns}/${claim}` }, 'waiting for PVC to be bound');
      await sleep(500);
    }
  }

  /** Runs `ip netns exec` for a pod (handy in tests), returning stdout. */
  async execInPod(namespace: string, pod: string, command: readonly string[], container?: string): Promise<string> {
    for (const w of this.workers.values()) {
      if (w.pod.metadata.namespace !== namespace || w.pod.metadata.name !== pod || !w.net) continue;
      const c = container ? w.containers.get(container) : [...w.containers.values()][0];
      if (!c) throw new Error(`pod ${namespace}/${pod} has no container ${container}`);
      const pid = c.proc?.running ? c.proc.pid : undefined;
      if (pid === undefined) throw new Error(`container ${c.spec.name} of ${namespace}/${pod} is not running`);
      // Like `kubectl exec`: the container's network, mount (volumes, /etc/hosts) and UTS
      // namespaces, and its environment.
      return new Promise((resolve, reject) => {
        execFile('nsenter', ['-t', String(pid), '-n', '-m', '-u', '--', ...command], { env: c.env, timeout: 60_000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`exec ${command.join(' ')} in ${namespace}/${pod}: ${stderr.trim() || err.message}`));
          else resolve(stdout);
        });
      });
    }
    throw new Error(`pod ${namespace}/${pod} is not running on node ${this.nodeName}`);
  }

  /** Runs a command in a container for `kubectl exec`, streaming its output. */
  private execStream(
    namespace: string, pod: string, container: string, command: readonly string[], io: ExecStreams, wantStdin: boolean,
  ): Promise<number> {
    const w = [...this.workers.values()].find((x) => x.pod.metadata.namespace === namespace && x.pod.metadata.name === pod);
    const c = w?.containers.get(container);
    const pid = c?.proc?.running ? c.proc.pid : undefined;
    if (!c || pid === undefined) return Promise.reject(new Error(`container ${container} of ${namespace}/${pod} is not running`));
    if (!command.length) return Promise.reject(new Error('no command'));
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', ['-t', String(pid), '-n', '-m', '-u', '--', ...command], {
        env: c.env,
        stdio: [wantStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (d: Buffer) => io.stdout(d));
      child.stderr?.on('data', (d: Buffer) => io.stderr(d));
      if (wantStdin && child.stdin) {
        const stdin = child.stdin;
        stdin.on('error', () => undefined);
        io.onStdin((d) => (d === null ? stdin.end() : stdin.write(d)));
      }
      child.on('error', reject);
      child.on('close', (code, signal) => resolve(code ?? (signal ? 128 + 9 : 1)));
    });
  }

  /**
   * A kubelet for a {@link LocalControlPlane}-style cluster: admin credentials, the cluster's
   * network slot and a run folder inside the cluster's.
   */
  static forControlPlane(
    cp: { readonly server: string; readonly runDir: string; readonly pki: { ca: { cert: string }; admin: { cert: string; key: string } } | undefined; readonly network: { slot: number } | undefined },
    opts: Omit<ProcessKubeletOptions, 'endpoint' | 'runDir' | 'slot'> & { readonly runDir?: string },
  ): ProcessKubelet {
    if (!cp.pki || !cp.network) throw new Error('control plane not started');
    const nodeName = opts.nodeName ?? 'local';
    return new ProcessKubelet({
      ...opts,
      endpoint: { server: cp.server, caFile: cp.pki.ca.cert, certFile: cp.pki.admin.cert, keyFile: cp.pki.admin.key },
      runDir: opts.runDir ?? join(cp.runDir, `kubelet-${nodeName}`),
      slot: cp.network.slot,
    });
  }
}

/** The mount path of the service-account volume inside containers. */
export const SERVICE_ACCOUNT_MOUNT = SA_MOUNT;
