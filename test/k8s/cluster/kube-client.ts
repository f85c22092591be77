/**
 * A tiny Kubernetes REST client over node:https with client certificates: just what the process
 * kubelet needs (get/list/create/patch/delete and watch), without extra dependencies.
 */
import { request, Agent } from 'node:https';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';

/** Credentials and address of an API server. */
export interface KubeEndpoint {
  /** e.g. `https://127.0.0.1:6443`. */
  readonly server: string;
  /** CA certificate file. */
  readonly caFile: string;
  /** Client certificate file. */
  readonly certFile: string;
  /** Client key file. */
  readonly keyFile: string;
}

/** An HTTP error from the API server with the decoded Status (if any). */
export class KubeApiError extends Error {
  /** HTTP status code. */
  readonly status: number;
  /** The `reason` field of the returned Status, e.g. `NotFound`, `AlreadyExists`, `Conflict`. */
  readonly reason: string;
  constructor(method: string, path: string, status: number, body: string) {
    let reason = '';
    let message = body;
    try {
      const s = JSON.parse(body) as { reason?: string; message?: string };
      reason = s.reason ?? '';
      message = s.message ?? body;
    } catch {
      /* not JSON */
    }
    super(`${method} ${path}: ${status} ${reason} ${message}`.trim());
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = reason;
  }
}

/** Minimal object metadata. */
export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  creationTimestamp?: string;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
}

/** Any Kubernetes object. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

/** A list response. */
export interface KubeList<T> {
  metadata: { resourceVersion?: string };
  items: T[];
}

/** One watch event. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

/** Patch content types. */
export type PatchType = 'merge' | 'strategic' | 'json';

const PATCH_CT: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

/** A minimal REST client. */
export class KubeClient {
  private readonly agent: Agent;
  private readonly base: URL;

  constructor(readonly endpoint: KubeEndpoint) {
    this.base = new URL(endpoint.server);
    this.agent = new Agent({
      ca: readFileSync(endpoint.caFile),
      cert: readFileSync(endpoint.certFile),
      key: readFileSync(endpoint.keyFile),
      keepAlive: true,
      maxSockets: 16,
    });
  }

  /** Closes pooled connections. */
  close(): void {
    this.agent.destroy();
  }

  private raw(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        url,
        {
          method,
          agent: this.agent,
          headers: {
            Accept: 'application/json',
            ...(data ? { 'Content-Type': contentType, 'Content-Length': data.length } : {}),
          },
        },
        resolve,
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  /** Performs a request and decodes the JSON response; throws KubeApiError for non-2xx. */
  async call<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const res = await this.raw(method, path, body, contentType);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw new KubeApiError(method, path, status, text);
    return (text ? JSON.parse(text) : {}) as T;
  }

  /** GET an object; resolves undefined on 404. */
  async get<T>(path: string): Promise<T | undefined> {
    try {
      return await this.call<T>('GET', path);
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  /** POST (create). */
  create<T>(path: string, obj: unknown): Promise<T> {
    return this.call<T>('POST', path, obj);
  }

  /** PUT (replace). */
  replace<T>(path: string, obj: unknown): Promise<T> {
    return this.call<T>('PUT', path, obj);
  }

  /** PATCH. */
  patch<T>(path: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.call<T>('PATCH', path, patch, PATCH_CT[type]);
  }

  /** DELETE; resolves false on 404. */
  async delete(path: string, options?: unknown): Promise<boolean> {
    try {
      await this.call('DELETE', path, options);
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return false;
      throw e;
    }
  }

  /**
   * Lists then watches `path` (a collection URL, may have a query string), calling `onEvent`
   * for each object (the initial list arrives as ADDED events) until `signal` aborts. Watches
   * restart from the last resourceVersion; on 410 Gone the list is fetched again.
   */
  async listWatch<T extends KubeObject>(
    path: string,
    onEvent: (ev: WatchEvent<T>) => void | Promise<void>,
    signal: AbortSignal,
    onSynced?: () => void,
  ): Promise<void> {
    const sep = path.includes('?') ? '&' : '?';
    let rv = '';
    let synced = false;
    while (!signal.aborted) {
      try {
        if (!rv) {
          const list = await this.call<KubeList<T>>('GET', path);
          for (const item of list.items) await onEvent({ type: 'ADDED', object: item });
          rv = list.metadata.resourceVersion ?? '';
          if (!synced) {
            synced = true;
            onSynced?.();
          }
        }
        const res = await this.raw('GET', `${path}${sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=${rv}`);
        if ((res.statusCode ?? 0) !== 200) {
          res.resume();
          if (res.statusCode === 410) rv = '';
          await sleep(1000);
          continue;
        }
        const onAbort = (): void => {
          res.destroy();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        let buf = '';
        try {
          for await (const chunk of res) {
            buf += (chunk as Buffer).toString('utf8');
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (!line) continue;
              const ev = JSON.parse(line) as WatchEvent<T>;
              if (ev.type === 'ERROR') {
                const code = (ev.object as unknown as { code?: number }).code;
                if (code === 410) rv = '';
                break;
              }
              const newRv = ev.object.metadata?.resourceVersion;
              if (newRv) rv = newRv;
              if (ev.type === 'BOOKMARK') continue;
              await onEvent(ev);
            }
          }
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof KubeApiError && e.status === 410) rv = '';
        await sleep(1000);
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
