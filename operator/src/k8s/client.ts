/**
 * Client wiring: the connection from a kubeconfig file or from the pod's service account, and
 * the REST client built on it. One {@link KubeClients} is built per process and passed down.
 */
import { KubeRest, loadInClusterConfig, loadKubeConfigFile, type KubeConnection } from './rest.js';

/** What the operator's Kubernetes code is given. */
export interface KubeClients {
  readonly rest: KubeRest;
}

/** The kubeconfig at `path`, or the in-cluster configuration when no path is given. */
export function loadKubeConfig(path?: string): KubeConnection {
  return path !== undefined && path !== '' ? loadKubeConfigFile(path) : loadInClusterConfig();
}

export function makeClients(connection: KubeConnection): KubeClients {
  return { rest: new KubeRest(connection) };
}

/** The field manager recorded in managedFields for every write the operator makes. */
export const FIELD_MANAGER = 'paxos-operator';
