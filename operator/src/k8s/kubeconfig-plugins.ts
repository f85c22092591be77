/**
 * Credentials from kubeconfig plugins — `exec` (EKS `aws eks get-token`, GKE
 * `gke-gcloud-auth-plugin`, `kubelogin` for OIDC, ...) and `auth-provider` (oidc, azure, gcp) —
 * obtained through @kubernetes/client-node's `KubeConfig`, which implements their protocols.
 *
 * The library's runtime is loaded only here, on the first request of a kubeconfig that needs a
 * plugin: loading it costs about 55 MB of RSS and 0.3–1 s, which the common cases (in-cluster
 * service account, client certificate, static token) do not pay. ADR 0004, amendment 1.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeConfigError } from './errors.js';

/** Where the bearer token of each request comes from. */
export interface PluginCredentials {
  /** The `Authorization` header value for the next request. @throws KubeConfigError */
  authorization(): Promise<string | undefined>;
  /** Forgets the cached credential (after a 401), so the next request asks the plugin again. */
  invalidate(): void;
}

/**
 * A credential without an expiry is kept this long at most (the library would run an exec
 * plugin for every request otherwise); one with an expiry is renewed by the library itself.
 */
const CACHE_MS = 60_000;

/** Credentials of context `contextName` of the kubeconfig at `path`, through its plugin. */
export function pluginCredentials(path: string, contextName: string): PluginCredentials {
  let config: Promise<KubeConfig> | undefined;
  let cached: { value: string | undefined; atMs: number } | undefined;
  let inFlight: Promise<string | undefined> | undefined;
  const load = async (): Promise<KubeConfig> => {
    const { KubeConfig: Config } = await import('@kubernetes/client-node');
    const kc = new Config();
    kc.loadFromFile(path);
    kc.setCurrentContext(contextName);
    return kc;
  };
  const fetch = async (): Promise<string | undefined> => {
    config ??= load();
    const opts: { headers?: Record<string, unknown>; cert?: unknown; key?: unknown } = { headers: {} };
    try {
      await (await config).applyToHTTPSOptions(opts as Parameters<KubeConfig['applyToHTTPSOptions']>[0]);
    } catch (error) {
      throw new KubeConfigError(`kubeconfig ${path}: the credential plugin of context ${contextName} failed: ${error instanceof Error ? error.message.trim() : String(error)}`, { cause: error });
    }
    const header = opts.headers?.Authorization ?? opts.headers?.authorization;
    if (header === undefined && (opts.cert !== undefined || opts.key !== undefined)) {
      throw new KubeConfigError(`kubeconfig ${path}: the credential plugin of context ${contextName} returned a client certificate; only token credentials from plugins are supported`);
    }
    return typeof header === 'string' ? header : undefined;
  };
  return {
    authorization: async () => {
      if (cached !== undefined && Date.now() - cached.atMs < CACHE_MS) return cached.value;
      // Concurrent requests share one plugin run.
      inFlight ??= fetch().then((value) => {
        cached = { value, atMs: Date.now() };
        return value;
      }).finally(() => { inFlight = undefined; });
      return inFlight;
    },
    invalidate: () => {
      cached = undefined;
    },
  };
}
