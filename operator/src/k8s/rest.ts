/**
 * A small Kubernetes REST client over node:https: what the operator needs (get, list, create,
 * merge patch, replace, delete, watch) and nothing else. Object types come from
 * @kubernetes/client-node as types only; its runtime is not loaded, because 2.0.x pulls in
 * undici 8, which does not load on Node 20 (see docs/adr/0003-*).
 *
 * Authentication: client certificates, bearer tokens (the in-cluster token is re-read, since
 * bound service-account tokens rotate), a CA bundle or insecure-skip-tls-verify, and exec and
 * auth-provider plugins through @kubernetes/client-node's KubeConfig, loaded only for a
 * kubeconfig that uses one (kubeconfig-plugins.ts; ADR 0004, amendment 1).
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { KubeApiError, KubeConfigError } from './errors.js';
import { pluginCredentials, type PluginCredentials } from './kubeconfig-plugins.js';

export { KubeConfigError } from './errors.js';

/** Where the API server is and how to authenticate to it. */
export interface KubeConnection {
  readonly server: URL;
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** Returns the bearer token for the next request, if any. */
  readonly token?: () => string;
  /** A credential plugin (exec, auth-provider); takes the place of `token`. */
  readonly credentials?: PluginCredentials;
  readonly insecureSkipTlsVerify?: boolean;
  /** The namespace of the current context (or of the service account in-cluster). */
  readonly namespace?: string;
}

type Raw = Record<string, unknown>;

function dataOrFile(entry: Raw, key: string, base: string): Buffer | undefined {
  const data = entry[`${key}-data`];
  if (typeof data === 'string') return Buffer.from(data, 'base64');
  const file = entry[key];
  if (typeof file === 'string') return readFileSync(file.startsWith('/') ? file : `${base}/${file}`);
  return undefined;
}

function pick(list: unknown, name: string, field: string): Raw {
  const found = (Array.isArray(list) ? list as Raw[] : []).find((entry) => entry.name === name);
  const value = found?.[field];
  if (value === undefined || typeof value !== 'object') throw new KubeConfigError(`kubeconfig has no ${field} named ${name}`);
  return value as Raw;
}

/** Loads a kubeconfig file (YAML or JSON), using its current context. */
export function loadKubeConfigFile(path: string): KubeConnection {
  let doc: Raw;
  try {
    doc = parseYaml(readFileSync(path, 'utf8')) as Raw;
  } catch (error) {
    throw new KubeConfigError(`cannot read kubeconfig ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const base = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '.';
  const contextName = doc['current-context'];
  if (typeof contextName !== 'string') throw new KubeConfigError(`kubeconfig ${path} has no current-context`);
  const context = pick(doc.contexts, contextName, 'context');
  const cluster = pick(doc.clusters, String(context.cluster), 'cluster');
  const user = context.user === undefined ? {} : pick(doc.users, String(context.user), 'user');
  const plugin = user.exec !== undefined || user['auth-provider'] !== undefined;
  const token = typeof user.token === 'string' ? user.token
    : typeof user.tokenFile === 'string' ? readFileSync(user.tokenFile, 'utf8').trim() : undefined;
  return {
    server: new URL(String(cluster.server)),
    ca: dataOrFile(cluster, 'certificate-authority', base),
    cert: dataOrFile(user, 'client-certificate', base),
    key: dataOrFile(user, 'client-key', base),
    token: token === undefined || plugin ? undefined : () => token,
    credentials: plugin ? pluginCredentials(path, contextName) : undefined,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    namespace: typeof context.namespace === 'string' ? context.namespace : undefined,
  };
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The in-cluster configuration: `KUBERNETES_SERVICE_HOST/PORT` and the pod's service-account token. */
export function loadInClusterConfig(env: NodeJS.ProcessEnv = process.env): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (host === undefined || port === undefined) {
    throw new KubeConfigError('not running in a cluster (KUBERNETES_SERVICE_HOST is not set); pass --kubeconfig');
  }
  let cached = { token: '', readAtMs: 0 };
  const token = (): string => {
    // Bound tokens are rotated by the kubelet; re-read at most once a minute.
    if (Date.now() - cached.readAtMs > 60_000) cached = { token: readFileSync(`${SA_DIR}/token`, 'utf8').trim(), readAtMs: Date.now() };
    return cached.token;
  };
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    ca: readFileSync(`${SA_DIR}/ca.crt`),
    token,
    namespace: readFileSync(`${SA_DIR}/namespace`, 'utf8').trim(),
  };
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  readonly query?: Query;
  readonly body?: unknown;
  readonly contentType?: string;
  /** Whole-request deadline, from sending to the last byte of the answer (default 30 s). */
  readonly timeoutMs?: number;
  /** Aborts the request (its socket is destroyed) when it fires; the call rejects with reason `Aborted`. */
  readonly signal?: AbortSignal;
}

/**
 * What every request made through a {@link KubeRest.scoped} view carries: the signal of the
 * work it belongs to (a reconcile pass, a leader-election round) and a check run before every
 * write, so that work which lost its right to act cannot write.
 */
export interface CallScope {
  readonly signal?: AbortSignal;
  /** Called before every request other than GET; throws to refuse it. */
  readonly beforeWrite?: (what: string) => void;
}

/** One event of a watch stream. */
export interface WatchEvent<T> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: T;
}

/** A watch in progress; `done` settles when the stream ends (resolves) or fails (rejects). */
export interface WatchHandle {
  readonly done: Promise<void>;
  abort(): void;
}

export const MERGE_PATCH = 'application/merge-patch+json';
const REQUEST_TIMEOUT_MS = 30_000;
const RESPONSE_BYTES_MAX = 64 * 1024 * 1024;

/** Per-call options of the short-hand methods (`get`, `create`, ...). */
export type CallOptions = Pick<RequestOptions, 'timeoutMs' | 'signal'>;

/** The REST client. */
export class KubeRest {
  private readonly agent: Agent;

  /** @param shared an existing client whose connection pool this one uses (for {@link KubeRest.scoped}). */
  constructor(readonly connection: KubeConnection, shared?: KubeRest) {
    this.agent = shared?.agent ?? new Agent({
      keepAlive: true,
      maxSockets: 16,
      ca: connection.ca,
      cert: connection.cert,
      key: connection.key,
      rejectUnauthorized: connection.insecureSkipTlsVerify !== true,
    });
  }

  /**
   * Sends one request and parses the JSON answer. Every request has a whole-request deadline
   * (`timeoutMs`, default 30 s) and may carry a `signal`. @throws KubeApiError
   */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const what = `${method} ${path}`;
    const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = options.signal === undefined ? deadline : AbortSignal.any([options.signal, deadline]);
    const timedOut = (): string | undefined => (deadline.aborted ? `no answer within ${timeoutMs} ms` : undefined);
    const { credentials } = this.connection;
    for (let attempt = 1; ; attempt += 1) {
      const response = await this.open(method, path, { ...options, signal }, timedOut, await this.authorization(what));
      const text = await readBody(response, what, signal);
      const status = response.statusCode ?? 0;
      // A plugin's token may have been revoked or expired early: ask the plugin again, once.
      if (status === 401 && credentials !== undefined && attempt === 1) {
        credentials.invalidate();
        continue;
      }
      if (status < 200 || status > 299) throw apiError(what, status, text);
      return (text === '' ? {} : JSON.parse(text)) as T;
    }
  }

  /** The `Authorization` header: a plugin's, or the bearer token. @throws KubeApiError */
  private async authorization(what: string): Promise<string | undefined> {
    const { credentials } = this.connection;
    if (credentials !== undefined) {
      try {
        return await credentials.authorization();
      } catch (error) {
        throw new KubeApiError(what, 0, 'Unauthorized', error instanceof Error ? error.message : String(error), { cause: error });
      }
    }
    const token = this.connection.token?.();
    return token === undefined || token === '' ? undefined : `Bearer ${token}`;
  }

  get<T>(path: string, query?: Query, options?: CallOptions): Promise<T> {
    return this.request<T>('GET', path, { ...options, query });
  }

  create<T>(path: string, body: unknown, query?: Query, options?: CallOptions): Promise<T> {
    return this.request<T>('POST', path, { ...options, body, query });
  }

  replace<T>(path: string, body: unknown, query?: Query, options?: CallOptions): Promise<T> {
    return this.request<T>('PUT', path, { ...options, body, query });
  }

  mergePatch<T>(path: string, body: unknown, query?: Query, options?: CallOptions): Promise<T> {
    return this.request<T>('PATCH', path, { ...options, body, query, contentType: MERGE_PATCH });
  }

  delete<T>(path: string, body?: unknown, query?: Query, options?: CallOptions): Promise<T> {
    return this.request<T>('DELETE', path, { ...options, body, query });
  }

  /**
   * A view of this client (same connection pool) whose every request carries the signal of
   * `scope()` and, for writes, passes its `beforeWrite` check first. `scope` is asked at each
   * request, so one view serves concurrent work (each pass finds its own scope, e.g. through
   * an AsyncLocalStorage). Watches are not scoped.
   */
  scoped(scope: () => CallScope | undefined): KubeRest {
    return new ScopedKubeRest(this, scope);
  }

  /**
   * Opens a watch (`?watch=1`) and calls `onEvent` for each event. The server ends the stream
   * after `timeoutSeconds`; the caller re-opens it from the last resourceVersion.
   */
  watch<T>(path: string, query: Query, onEvent: (event: WatchEvent<T>) => void): WatchHandle {
    let abort = (): void => undefined;
    const done = new Promise<void>((resolve, reject) => {
      const what = `WATCH ${path}`;
      let aborted = false;
      abort = () => { aborted = true; };
      this.authorization(what)
        .then((authorization) => {
          if (aborted) throw new KubeApiError(what, 0, 'Aborted', 'aborted before it was sent');
          return this.open('GET', path, { query: { ...query, watch: 1, allowWatchBookmarks: true } }, () => undefined, authorization, (cancel) => { abort = cancel; });
        })
        .then((response) => {
          const status = response.statusCode ?? 0;
          if (status !== 200) {
            readBody(response, what, AbortSignal.timeout(REQUEST_TIMEOUT_MS)).then((text) => reject(apiError(what, status, text)), reject);
            return;
          }
          let buffered = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            buffered += chunk;
            let newline = buffered.indexOf('\n');
            while (newline >= 0) {
              const line = buffered.slice(0, newline).trim();
              buffered = buffered.slice(newline + 1);
              newline = buffered.indexOf('\n');
              if (line === '') continue;
              try {
                onEvent(JSON.parse(line) as WatchEvent<T>);
              } catch (error) {
                response.destroy(error instanceof Error ? error : new Error(String(error)));
                return;
              }
            }
          });
          response.on('end', () => resolve());
          response.on('error', (error) => reject(new KubeApiError(what, 0, undefined, error.message, { cause: error })));
          response.on('close', () => resolve());
        }, reject);
    });
    return { done, abort: () => abort() };
  }

  close(): void {
    this.agent.destroy();
  }

  /**
   * Sends the request; resolves with the response once its headers arrive. `options.signal`
   * destroys the request (and the response, if it has begun) when it fires; `timedOut` says
   * whether that was the deadline, for the error message.
   */
  private open(
    method: string, path: string, options: RequestOptions, timedOut: () => string | undefined, authorization: string | undefined,
    onCancel?: (cancel: () => void) => void,
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.connection.server);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = String(body.length);
    }
    if (authorization !== undefined) headers.authorization = authorization;
    const what = `${method} ${path}`;
    const { signal } = options;
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(abortError(what, signal, timedOut));
        return;
      }
      const req = request(url, { method, headers, agent: this.agent }, resolve);
      const onAbort = (): void => {
        req.destroy(abortError(what, signal as AbortSignal, timedOut));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.once('close', () => signal?.removeEventListener('abort', onAbort));
      req.on('error', (error) => reject(error instanceof KubeApiError ? error : new KubeApiError(what, 0, undefined, error.message, { cause: error })));
      onCancel?.(() => req.destroy());
      req.end(body);
    });
  }
}

/** A request stopped by its signal: reason `Timeout` for the deadline, `Aborted` otherwise. */
function abortError(what: string, signal: AbortSignal, timedOut: () => string | undefined): KubeApiError {
  const timeout = timedOut();
  if (timeout !== undefined) return new KubeApiError(what, 0, 'Timeout', timeout);
  const reason: unknown = signal.reason;
  return new KubeApiError(what, 0, 'Aborted', `aborted: ${reason instanceof Error ? reason.message : String(reason)}`, { cause: reason });
}

/** Reads the whole body; rejects if the response breaks off, is too large, or `signal` fires. */
function readBody(response: IncomingMessage, what: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (error: Error): void => {
      signal.removeEventListener('abort', onAbort);
      reject(error instanceof KubeApiError ? error : new KubeApiError(what, 0, undefined, error.message, { cause: error }));
    };
    const onAbort = (): void => {
      response.destroy();
      fail(new KubeApiError(what, 0, 'Aborted', 'aborted while reading the answer', { cause: signal.reason }));
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > RESPONSE_BYTES_MAX) response.destroy(new Error(`response larger than ${RESPONSE_BYTES_MAX} bytes`));
      else chunks.push(chunk);
    });
    response.on('end', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    response.on('error', fail);
    response.on('close', () => {
      if (!response.complete) fail(new KubeApiError(what, 0, undefined, 'the connection closed before the answer was complete'));
    });
  });
}

/** See {@link KubeRest.scoped}. Requests go through the parent's `request`, so a subclass of it still sees them. */
class ScopedKubeRest extends KubeRest {
  constructor(private readonly parent: KubeRest, private readonly scope: () => CallScope | undefined) {
    super(parent.connection, parent);
  }

  override request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const scope = this.scope();
    if (scope === undefined) return this.parent.request<T>(method, path, options);
    const what = `${method} ${path}`;
    try {
      if (scope.signal?.aborted === true) throw abortError(what, scope.signal, () => undefined);
      if (method !== 'GET') scope.beforeWrite?.(what);
    } catch (error) {
      return Promise.reject(error);
    }
    const signals = [options.signal, scope.signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    return this.parent.request<T>(method, path, { ...options, ...(signal === undefined ? {} : { signal }) });
  }

  override watch<T>(path: string, query: Query, onEvent: (event: WatchEvent<T>) => void): WatchHandle {
    return this.parent.watch(path, query, onEvent);
  }

  /** The parent owns the connection pool. */
  override close(): void {}
}

function apiError(what: string, status: number, text: string): KubeApiError {
  let reason: string | undefined;
  let message = text;
  try {
    const parsed = JSON.parse(text) as { reason?: string; message?: string };
    reason = parsed.reason;
    message = parsed.message ?? text;
  } catch {
    // not a Status object
  }
  return new KubeApiError(what, status, reason, message || `HTTP ${status}`);
}

/** A resource type: `group` empty for the core group. */
export interface Resource {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
}

export const Resources = {
  pods: { group: '', version: 'v1', plural: 'pods' },
  services: { group: '', version: 'v1', plural: 'services' },
  configMaps: { group: '', version: 'v1', plural: 'configmaps' },
  statefulSets: { group: 'apps', version: 'v1', plural: 'statefulsets' },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments' },
  pdbs: { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets' },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' },
  events: { group: 'events.k8s.io', version: 'v1', plural: 'events' },
} as const satisfies Record<string, Resource>;

/** `/api/v1/namespaces/ns/pods/name/status` and friends; no namespace = all namespaces. */
export function resourcePath(resource: Resource, namespace?: string, name?: string, subresource?: string): string {
  const prefix = resource.group === '' ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
  const ns = namespace === undefined ? '' : `/namespaces/${encodeURIComponent(namespace)}`;
  const item = name === undefined ? '' : `/${encodeURIComponent(name)}`;
  const sub = subresource === undefined ? '' : `/${subresource}`;
  return `${prefix}${ns}/${resource.plural}${item}${sub}`;
}
