/**
 * A local Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager
 * as plain processes on 127.0.0.1, with a throwaway PKI and an admin kubeconfig.
 *
 * There is no scheduler and no kubelet here: Pods are created by controllers but stay Pending
 * until something (see kubelet.ts) binds and runs them.
 *
 * @example
 * ```ts
 * const cp = new LocalControlPlane();
 * await cp.start();
 * console.log(await cp.kubectl(['get', 'ns']));
 * await cp.stop();
 * ```
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { generatePki, writeKubeconfig, type LocalPki } from './pki.js';
import { ManagedProcess } from './process.js';
import { REPO_ROOT, requireTools, toolsBinDir } from './tools.js';
import { acquireSlot, releaseSlot, slotNetwork, tryAcquireSlot, type SlotNetwork } from './slots.js';

/**
 * Service CIDR of a cluster in slot 0; its first IP (10.0.0.1) is the `kubernetes` service.
 * A cluster in slot N uses 10.0.N.0/24 (see slots.ts), so parallel clusters don't collide.
 */
export const SERVICE_CIDR = '10.0.0.0/24';
/** Pod CIDR of slot 0 (slot N: 10.244.N.0/24). */
export const POD_CIDR = '10.244.0.0/24';

/** Options for {@link LocalControlPlane.start}. */
export interface ControlPlaneOptions {
  /** Folder for data, PKI, logs and kubeconfigs (default: a fresh folder under `.local-cluster/`). */
  readonly runDir?: string;
  /** Folder with the binaries (default: `node scripts/tools.mjs path`). */
  readonly binDir?: string;
  /** Keep the run folder after stop() (default: only if LOCAL_CLUSTER_KEEP=1). */
  readonly keepRunDir?: boolean;
  /** Time allowed for everything to become ready (default 120 s). */
  readonly startTimeoutMs?: number;
  /** Controllers for kube-controller-manager `--controllers` (default `*`). */
  readonly controllers?: readonly string[];
  /** Extra kube-apiserver flags (`--flag=value`). */
  readonly apiserverArgs?: readonly string[];
  /** Extra kube-controller-manager flags. */
  readonly controllerManagerArgs?: readonly string[];
  /**
   * Also run kube-scheduler (default false: pods stay unbound unless something else binds
   * them).
   */
  readonly scheduler?: boolean;
  /** Extra kube-scheduler flags. */
  readonly schedulerArgs?: readonly string[];
  /**
   * Address the apiserver binds to (default 127.0.0.1). Use 0.0.0.0 when pods in network
   * namespaces must reach it through a bridge; it still advertises `advertiseAddress`.
   */
  readonly bindAddress?: string;
  /** Advertised address (default 127.0.0.1). */
  readonly advertiseAddress?: string;
  /** Extra IP SANs for the apiserver certificate (e.g. a bridge gateway). */
  readonly extraApiserverIps?: readonly string[];
  /** Node name for the node client certificate (default `local`). */
  readonly nodeName?: string;
  /**
   * Network slot (service CIDR 10.0.N.0/24, pod CIDR 10.244.N.0/24, bridge kpbrN). Default:
   * the lowest free slot on this machine, held until stop().
   */
  readonly slot?: number;
  /** Logger for launcher messages (default: pino at LOCAL_CLUSTER_LOG level, `warn`). */
  readonly logger?: Logger;
}

/** Finds a free TCP port on 127.0.0.1. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [port] = await freePorts(1, host);
  return port ?? 0;
}

/**
 * Finds `count` distinct free TCP ports. All are held open until the last is found: ports
 * probed one after another could come back equal, since each is closed before the next probe.
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<Server>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => resolve(srv));
  })));
  const ports = servers.map((srv) => {
    const addr = srv.address();
    return typeof addr === 'object' && addr ? addr.port : 0;
  });
  await Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  return ports;
}

interface HttpResult {
  readonly status: number;
  readonly body: string;
}

interface TlsClient {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly insecure?: boolean;
}

/** One GET request with a short timeout; never throws for HTTP errors, only for I/O errors. */
function get(url: string, tls?: TlsClient): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const done = (res: import('node:http').IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    };
    const req =
      u.protocol === 'https:'
        ? httpsRequest(u, {
            method: 'GET',
            ca: tls?.ca,
            cert: tls?.cert,
            key: tls?.key,
            rejectUnauthorized: !tls?.insecure,
            timeout: 5000,
          }, done)
        : httpRequest(u, { method: 'GET', timeout: 5000 }, done);
    req.on('timeout', () => req.destroy(new Error(`timeout GET ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A running (or stopped) local control plane. */
export class LocalControlPlane {
  /** Run folder (data, PKI, logs, kubeconfigs). */
  runDir = '';
  /** Admin kubeconfig path (valid after start()). */
  kubeconfigPath = '';
  /** API server URL, e.g. `https://127.0.0.1:41234` (valid after start()). */
  server = '';
  /** etcd client URL (valid after start()). */
  etcdUrl = '';
  /** The generated PKI (valid after start()). */
  pki: LocalPki | undefined;
  /** Absolute paths of the binaries in use (valid after start()). */
  bins: { etcd: string; 'kube-apiserver': string; 'kube-controller-manager': string; kubectl: string } | undefined;

  /** The network slot in use (valid after start()); the nodes use its pod range. */
  network: SlotNetwork | undefined;

  private procs: ManagedProcess[] = [];
  private log: Logger = pino({ level: process.env.LOCAL_CLUSTER_LOG ?? 'warn' });
  private keep = false;
  private started = false;

  /** Processes started so far (etcd, kube-apiserver, kube-controller-manager[, kube-scheduler]). */
  get processes(): readonly ManagedProcess[] {
    return this.procs;
  }

  /**
   * Starts etcd, kube-apiserver and kube-controller-manager and waits until the apiserver's
   * /readyz is OK, the controller-manager's /healthz is OK and the `default` ServiceAccount
   * exists (proof that the controller-manager is working).
   *
   * @throws ToolsMissingError if the binaries have not been built (`npm run tools:build`).
   */
  async start(opts: ControlPlaneOptions = {}): Promise<this> {
    if (this.started) throw new Error('LocalControlPlane already started');
    this.started = true;
    if (opts.logger) this.log = opts.logger;
    this.keep = opts.keepRunDir ?? process.env.LOCAL_CLUSTER_KEEP === '1';
    const binDir = opts.binDir ?? toolsBinDir();
    const bins = requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'], binDir);
    const schedulerBin = opts.scheduler ? requireTools(['kube-scheduler'], binDir)['kube-scheduler'] : undefined;
    this.bins = bins;
    const deadline = Date.now() + (opts.startTimeoutMs ?? 120_000);

    if (opts.slot !== undefined && !tryAcquireSlot(opts.slot)) throw new Error(`local-cluster slot ${opts.slot} is in use`);
    const net = slotNetwork(opts.slot ?? acquireSlot());
    this.network = net;
    this.runDir = opts.runDir ?? join(REPO_ROOT, '.local-cluster', `cp-${Date.now()}-${process.pid}`);
    const logs = join(this.runDir, 'logs');
    mkdirSync(logs, { recursive: true });
    const bind = opts.bindAddress ?? '127.0.0.1';
    const advertise = opts.advertiseAddress ?? '127.0.0.1';

    try {
      const pki = generatePki(join(this.runDir, 'pki'), {
        nodeName: opts.nodeName ?? 'local',
        extraIps: [advertise, net.apiServiceIp, ...(opts.extraApiserverIps ?? [])],
      });
      this.pki = pki;
      const env: NodeJS.ProcessEnv = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };
      delete env.KUBECONFIG;

      // etcd
      const [etcdClient, etcdPeer, etcdMetrics] = await freePorts(3);
      this.etcdUrl = `http://127.0.0.1:${etcdClient}`;
      const etcd = await ManagedProcess.start({
        name: 'etcd',
        command: bins.etcd,
        args: [
          '--name=local',
          `--data-dir=${join(this.runDir, 'etcd')}`,
          `--listen-client-urls=${this.etcdUrl}`,
          `--advertise-client-urls=${this.etcdUrl}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-cluster=local=http://127.0.0.1:${etcdPeer}`,
          `--listen-metrics-urls=http://127.0.0.1:${etcdMetrics}`,
          '--initial-cluster-state=new',
          '--unsafe-no-fsync=true',
          '--log-level=warn',
        ],
        logFile: join(logs, 'etcd.log'),
        env,
      });
      this.procs.push(etcd);
      this.log.info({ pid: etcd.pid, url: this.etcdUrl }, 'etcd started');
      await this.waitFor(etcd, deadline, async () => {
        const r = await get(`${this.etcdUrl}/health`);
        return r.status === 200 && r.body.includes('true');
      });

      // kube-apiserver
      const apiPort = await freePort(bind === '0.0.0.0' ? '0.0.0.0' : bind);
      const host = bind === '0.0.0.0' ? '127.0.0.1' : bind;
      this.server = `https://${host}:${apiPort}`;
      const apiserver = await ManagedProcess.start({
        name: 'kube-apiserver',
        command: bins['kube-apiserver'],
        args: [
          `--etcd-servers=${this.etcdUrl}`,
          `--bind-address=${bind}`,
          `--secure-port=${apiPort}`,
          `--advertise-address=${advertise}`,
          `--cert-dir=${join(this.runDir, 'apiserver')}`,
          `--tls-cert-file=${pki.apiserver.cert}`,
          `--tls-private-key-file=${pki.apiserver.key}`,
          `--client-ca-file=${pki.ca.cert}`,
          '--authorization-mode=Node,RBAC',
          '--enable-admission-plugins=NodeRestriction',
          `--service-cluster-ip-range=${net.serviceCidr}`,
          '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
          `--service-account-key-file=${pki.serviceAccount.pub}`,
          `--service-account-signing-key-file=${pki.serviceAccount.key}`,
          '--allow-privileged=true',
          `--kubelet-client-certificate=${pki.admin.cert}`,
          `--kubelet-client-key=${pki.admin.key}`,
          '--kubelet-preferred-address-types=InternalIP,Hostname',
          `--requestheader-client-ca-file=${pki.frontProxyCa.cert}`,
          '--requestheader-allowed-names=front-proxy-client',
          '--requestheader-username-headers=X-Remote-User',
          '--requestheader-group-headers=X-Remote-Group',
          '--requestheader-extra-headers-prefix=X-Remote-Extra-',
          `--proxy-client-cert-file=${pki.frontProxyClient.cert}`,
          `--proxy-client-key-file=${pki.frontProxyClient.key}`,
          // A loopback address cannot be stored in the `kubernetes` Endpoints; the process
          // kubelet's service proxy forwards that service to the apiserver itself.
          ...(advertise.startsWith('127.') ? ['--endpoint-reconciler-type=none'] : []),
          '--profiling=false',
          '--v=1',
          ...(opts.apiserverArgs ?? []),
        ],
        logFile: join(logs, 'kube-apiserver.log'),
        env,
      });
      this.procs.push(apiserver);
      this.log.info({ pid: apiserver.pid, server: this.server }, 'kube-apiserver started');
      const adminTls: TlsClient = {
        ca: readFileSync(pki.ca.cert),
        cert: readFileSync(pki.admin.cert),
        key: readFileSync(pki.admin.key),
      };
      await this.waitFor(apiserver, deadline, async () => (await get(`${this.server}/readyz`, adminTls)).status === 200);

      this.kubeconfigPath = writeKubeconfig({
        path: join(this.runDir, 'admin.kubeconfig'),
        server: this.server,
        caCert: pki.ca.cert,
        client: pki.admin,
        user: 'admin',
      });
      const kcmKubeconfig = writeKubeconfig({
        path: join(this.runDir, 'controller-manager.kubeconfig'),
        server: this.server,
        caCert: pki.ca.cert,
        client: pki.controllerManager,
        user: 'system:kube-controller-manager',
      });

      // kube-controller-manager
      const kcmPort = await freePort();
      const kcm = await ManagedProcess.start({
        name: 'kube-controller-manager',
        command: bins['kube-controller-manager'],
        args: [
          `--kubeconfig=${kcmKubeconfig}`,
          `--authentication-kubeconfig=${kcmKubeconfig}`,
          `--authorization-kubeconfig=${kcmKubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${kcmPort}`,
          `--cert-dir=${join(this.runDir, 'controller-manager')}`,
          `--controllers=${(opts.controllers ?? ['*']).join(',')}`,
          '--use-service-account-credentials=true',
          `--service-account-private-key-file=${pki.serviceAccount.key}`,
          `--root-ca-file=${pki.ca.cert}`,
          `--cluster-signing-cert-file=${pki.ca.cert}`,
          `--cluster-signing-key-file=${pki.ca.key}`,
          `--service-cluster-ip-range=${net.serviceCidr}`,
          '--leader-elect=false',
          '--profiling=false',
          '--v=1',
          ...(opts.controllerManagerArgs ?? []),
        ],
        logFile: join(logs, 'kube-controller-manager.log'),
        env,
      });
      this.procs.push(kcm);
      this.log.info({ pid: kcm.pid, port: kcmPort }, 'kube-controller-manager started');
      await this.waitFor(kcm, deadline, async () => {
        const r = await get(`https://127.0.0.1:${kcmPort}/healthz`, { insecure: true });
        return r.status === 200;
      });
      await this.waitFor(kcm, deadline, async () => {
        const r = await get(`${this.server}/api/v1/namespaces/default/serviceaccounts/default`, adminTls);
        return r.status === 200;
      });
      if (schedulerBin) {
        const schedKubeconfig = writeKubeconfig({
          path: join(this.runDir, 'scheduler.kubeconfig'),
          server: this.server,
          caCert: pki.ca.cert,
          client: pki.scheduler,
          user: 'system:kube-scheduler',
        });
        const schedPort = await freePort();
        const sched = await ManagedProcess.start({
          name: 'kube-scheduler',
          command: schedulerBin,
          args: [
            `--kubeconfig=${schedKubeconfig}`,
            `--authentication-kubeconfig=${schedKubeconfig}`,
            `--authorization-kubeconfig=${schedKubeconfig}`,
            '--bind-address=127.0.0.1',
            `--secure-port=${schedPort}`,
            '--leader-elect=false',
            '--v=1',
            ...(opts.schedulerArgs ?? []),
          ],
          logFile: join(logs, 'kube-scheduler.log'),
          env,
        });
        this.procs.push(sched);
        this.log.info({ pid: sched.pid, port: schedPort }, 'kube-scheduler started');
        await this.waitFor(sched, deadline, async () => {
          const r = await get(`https://127.0.0.1:${schedPort}/healthz`, { insecure: true });
          return r.status === 200;
        });
      }
      this.log.info({ kubeconfig: this.kubeconfigPath }, 'control plane ready');
      return this;
    } catch (e) {
      this.keep = true; // leave logs for inspection
      await this.stop();
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`${msg}\n(run folder kept for inspection: ${this.runDir})`);
    }
  }

  /**
   * Polls `check` every 250 ms until it returns true; fails early if `proc` exits and at the
   * deadline, including the tail of the process log in the error.
   */
  private async waitFor(proc: ManagedProcess, deadline: number, check: () => Promise<boolean>): Promise<void> {
    let lastErr = '';
    for (;;) {
      if (!proc.running) {
        throw new Error(
          `${proc.name} exited (${JSON.stringify(proc.exitStatus)}) before becoming ready; log ${proc.logFile}:\n${proc.logTail()}`,
        );
      }
      try {
        if (await check()) return;
        lastErr = '';
      } catch (e) {
        lastErr = e instanceof Error ? e.message : String(e);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${proc.name} not ready in time${lastErr ? ` (${lastErr})` : ''}; log ${proc.logFile}:\n${proc.logTail()}`,
        );
      }
      await sleep(250);
    }
  }

  /**
   * Runs kubectl against this cluster and resolves with stdout.
   *
   * @throws Error with stderr if kubectl fails.
   */
  kubectl(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    if (!this.bins || !this.kubeconfigPath) return Promise.reject(new Error('control plane not started'));
    const bin = this.bins.kubectl;
    return new Promise((resolve, reject) => {
      const child = execFile(
        bin,
        [`--kubeconfig=${this.kubeconfigPath}`, ...args],
        { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`kubectl ${args.join(' ')} failed: ${stderr || err.message}`));
          else resolve(stdout);
        },
      );
      child.stdin?.on('error', () => undefined);
      if (opts.input !== undefined) child.stdin?.end(opts.input);
      else child.stdin?.end();
    });
  }

  /**
   * Stops the processes this instance started (their process groups only), newest first, and
   * removes the run folder unless it is to be kept.
   */
  async stop(): Promise<void> {
    const procs = [...this.procs].reverse();
    for (const p of procs) {
      await p.stop(10_000);
      this.log.info({ name: p.name, pid: p.pid }, 'stopped');
    }
    this.procs = [];
    if (this.runDir && !this.keep) rmSync(this.runDir, { recursive: true, force: true });
    if (this.network) releaseSlot(this.network.slot);
  }
}
