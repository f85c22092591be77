/**
 * Probe and lifecycle-handler execution for the process kubelet: httpGet, tcpSocket, grpc
 * (grpc.health.v1.Health/Check) and exec (inside the container's namespaces via nsenter).
 */
import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { ContainerPort, IntOrString, Probe, LifecycleHandler } from './k8s-types.js';

/** Where and how to run a probe. */
export interface ProbeContext {
  /** Pod IP (default host for network probes). */
  readonly podIP: string;
  /** The container's declared ports, for named-port lookups. */
  readonly ports: readonly ContainerPort[];
  /** PID of the container's main process, for exec probes (nsenter target). */
  readonly pid: number | undefined;
  /** Environment for exec probes. */
  readonly env: NodeJS.ProcessEnv;
}

/** Result of one probe. */
export interface ProbeResult {
  readonly ok: boolean;
  readonly message: string;
}

/** Resolves a numeric or named port. */
export function resolvePort(port: IntOrString, ports: readonly ContainerPort[]): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const p = ports.find((x) => x.name === port);
  if (!p) throw new Error(`unknown named port ${port}`);
  return p.containerPort;
}

function httpProbe(
  h: NonNullable<Probe['httpGet']>,
  ctx: ProbeContext,
  timeoutMs: number,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let port: number;
    try {
      port = resolvePort(h.port, ctx.ports);
    } catch (e) {
      resolve({ ok: false, message: (e as Error).message });
      return;
    }
    const https = h.scheme === 'HTTPS';
    const headers: Record<string, string> = { 'User-Agent': 'kube-probe/process-kubelet', Accept: '*/*' };
    for (const hh of h.httpHeaders ?? []) headers[hh.name] = hh.value;
    const opts = {
      host: h.host || ctx.podIP,
      port,
      path: h.path ?? '/',
      method: 'GET',
      headers,
      timeout: timeoutMs,
      rejectUnauthorized: false,
    };
    const onRes = (res: import('node:http').IncomingMessage): void => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve({ ok: code >= 200 && code < 400, message: `HTTP probe failed with statuscode: ${code}` });
    };
    const req = https ? httpsRequest(opts, onRes) : httpRequest(opts, onRes);
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs}ms`)));
    req.on('error', (e) => resolve({ ok: false, message: `Get "${https ? 'https' : 'http'}://${opts.host}:${port}${opts.path}": ${e.message}` }));
    req.end();
  });
}

function tcpProbe(t: NonNullable<Probe['tcpSocket']>, ctx: ProbeContext, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let port: number;
    try {
      port = resolvePort(t.port, ctx.ports);
    } catch (e) {
      resolve({ ok: false, message: (e as Error).message });
      return;
    }
    const host = t.host || ctx.podIP;
    const sock = connect({ host, port, timeout: timeoutMs });
    sock.once('connect', () => {
      sock.destroy();
      resolve({ ok: true, message: '' });
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve({ ok: false, message: `dial tcp ${host}:${port}: i/o timeout` });
    });
    sock.once('error', (e) => resolve({ ok: false, message: `dial tcp ${host}:${port}: ${e.message}` }));
  });
}

/** Encodes grpc.health.v1.HealthCheckRequest { string service = 1; }. */
function encodeHealthRequest(service: string): Buffer {
  if (!service) return Buffer.alloc(0);
  const s = Buffer.from(service, 'utf8');
  const len: number[] = [];
  let n = s.length;
  while (n > 0x7f) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return Buffer.concat([Buffer.from([0x0a, ...len]), s]);
}

/** Decodes HealthCheckResponse { ServingStatus status = 1; } (SERVING = 1). */
function decodeHealthStatus(b: Buffer): number {
  let i = 0;
  while (i < b.length) {
    const tag = b[i++] ?? 0;
    if (tag === 0x08) {
      let v = 0;
      let shift = 0;
      for (;;) {
        const byte = b[i++] ?? 0;
        v |= (byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
        shift += 7;
      }
      return v;
    }
    return 0;
  }
  return 0; // absent = UNKNOWN
}

function grpcProbe(g: NonNullable<Probe['grpc']>, ctx: ProbeContext, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const target = `${ctx.podIP}:${g.port}`;
    const client = new grpc.Client(target, grpc.credentials.createInsecure());
    client.makeUnaryRequest<Buffer, Buffer>(
      '/grpc.health.v1.Health/Check',
      (x) => x,
      (x) => x,
      encodeHealthRequest(g.service ?? ''),
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, value) => {
        client.close();
        if (err) {
          resolve({ ok: false, message: `grpc probe ${target}: ${err.message}` });
          return;
        }
        const status = value ? decodeHealthStatus(value) : 0;
        resolve({ ok: status === 1, message: status === 1 ? '' : `service unhealthy (responded with status ${status})` });
      },
    );
  });
}

function execProbe(command: readonly string[], ctx: ProbeContext, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    if (!command.length) {
      resolve({ ok: false, message: 'exec probe without command' });
      return;
    }
    const [cmd, args] = ctx.pid
      ? ['nsenter', ['-t', String(ctx.pid), '-n', '-m', '-u', '--', ...command]]
      : [command[0] ?? '', command.slice(1)];
    execFile(cmd, args, { env: ctx.env, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (!err) resolve({ ok: true, message: '' });
      else resolve({ ok: false, message: `${(stdout + stderr).trim().slice(0, 500) || err.message}` });
    });
  });
}

/** Runs one probe attempt. */
export function runProbe(probe: Probe | LifecycleHandler, ctx: ProbeContext, timeoutMs: number): Promise<ProbeResult> {
  if (probe.httpGet) return httpProbe(probe.httpGet, ctx, timeoutMs);
  if (probe.tcpSocket) return tcpProbe(probe.tcpSocket, ctx, timeoutMs);
  if ('grpc' in probe && probe.grpc) return grpcProbe(probe.grpc, ctx, timeoutMs);
  if (probe.exec) return execProbe(probe.exec.command ?? [], ctx, timeoutMs);
  if ('sleep' in probe && probe.sleep) {
    const ms = probe.sleep.seconds * 1000;
    return new Promise((r) => setTimeout(() => r({ ok: true, message: '' }), ms));
  }
  return Promise.resolve({ ok: false, message: 'probe has no handler' });
}

/**
 * Drives one probe on its schedule (initialDelaySeconds, periodSeconds, timeoutSeconds,
 * success/failure thresholds) and reports transitions.
 */
export class ProbeRunner {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private successes = 0;
  private failures = 0;
  /** Current verdict: undefined until a threshold is reached. */
  result: boolean | undefined;
  /** Message of the last failure. */
  lastMessage = '';

  constructor(
    private readonly probe: Probe,
    private readonly ctx: () => ProbeContext,
    private readonly onResult: (ok: boolean, message: string) => void,
    private readonly defaults: { successThreshold?: number } = {},
  ) {}

  /** Starts probing after initialDelaySeconds. */
  start(): void {
    this.schedule((this.probe.initialDelaySeconds ?? 0) * 1000);
  }

  /** Stops probing. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const timeoutMs = (this.probe.timeoutSeconds ?? 1) * 1000;
    let r: ProbeResult;
    try {
      r = await runProbe(this.probe, this.ctx(), timeoutMs);
    } catch (e) {
      r = { ok: false, message: (e as Error).message };
    }
    if (this.stopped) return;
    const successThreshold = this.probe.successThreshold ?? this.defaults.successThreshold ?? 1;
    const failureThreshold = this.probe.failureThreshold ?? 3;
    if (r.ok) {
      this.failures = 0;
      this.successes++;
      if (this.successes >= successThreshold && this.result !== true) {
        this.result = true;
        this.onResult(true, '');
      }
    } else {
      this.successes = 0;
      this.failures++;
      this.lastMessage = r.message;
      if (this.failures >= failureThreshold && this.result !== false) {
        this.result = false;
        this.onResult(false, r.message);
      } else if (this.failures >= failureThreshold) {
        this.onResult(false, r.message);
      }
    }
    this.schedule((this.probe.periodSeconds ?? 10) * 1000);
  }
}
