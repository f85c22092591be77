/**
 * Client wiring: a KubeConfig from a file or from the pod's service account, and the typed API
 * groups the operator uses. One {@link KubeClients} is built per process and passed down.
 */
import {
  AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api, KubeConfig, PatchStrategy, PolicyV1Api,
  setHeaderOptions,
} from '@kubernetes/client-node';

/** The API groups the operator talks to. */
export interface KubeClients {
  readonly config: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly policy: PolicyV1Api;
  readonly custom: CustomObjectsApi;
  readonly coordination: CoordinationV1Api;
  readonly events: EventsV1Api;
}

/**
 * Loads the kubeconfig at `path`, or the in-cluster configuration (service-account token and
 * `KUBERNETES_SERVICE_HOST`) when no path is given.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const config = new KubeConfig();
  if (path !== undefined && path !== '') config.loadFromFile(path);
  else config.loadFromCluster();
  return config;
}

/** Builds the API clients on one KubeConfig. */
export function makeClients(config: KubeConfig): KubeClients {
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    policy: config.makeApiClient(PolicyV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    coordination: config.makeApiClient(CoordinationV1Api),
    events: config.makeApiClient(EventsV1Api),
  };
}

/** Request options that send a body as a JSON merge patch (RFC 7386). */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The field manager recorded in managedFields for every write the operator makes. */
export const FIELD_MANAGER = 'paxos-operator';
