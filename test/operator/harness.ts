/**
 * Shared setup for the operator tests: a real local control plane (etcd, kube-apiserver,
 * kube-controller-manager; no scheduler, no kubelet) with the PaxosQuorum CRD applied, and a
 * REST client on its admin kubeconfig. Fails with a clear message when the Go-built binaries
 * are missing (`npm run tools:build`).
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { LocalControlPlane } from '../k8s/cluster/control-plane.js';
import { REPO_ROOT, requireTools } from '../k8s/cluster/tools.js';
import { loadKubeConfig, makeClients, type KubeClients } from '../../operator/src/k8s/client.js';

export const CRD_PATH = join(REPO_ROOT, 'operator', 'crd', 'paxosquorums.yaml');
export const quiet = pino({ level: process.env.OPERATOR_TEST_LOG ?? 'silent' });

export interface Cluster {
  readonly cp: LocalControlPlane;
  readonly clients: KubeClients;
}

/** Starts the control plane, applies the CRD and waits until it is established. */
export async function startCluster(): Promise<Cluster> {
  // Throws ToolsMissingError ("Run `npm run tools:build` first ...") when the binaries are absent.
  requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl']);
  const cp = new LocalControlPlane();
  await cp.start();
  await cp.kubectl(['apply', '-f', CRD_PATH]);
  await cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/paxosquorums.paxos.quorum.dev']);
  return { cp, clients: makeClients(loadKubeConfig(cp.kubeconfigPath)) };
}

export async function stopCluster(cluster: Cluster | undefined): Promise<void> {
  cluster?.clients.rest.close();
  await cluster?.cp.stop();
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await sleep(200);
  }
}

/** A PaxosQuorum manifest. */
export function quorumManifest(namespace: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'paxos.quorum.dev/v1alpha1', kind: 'PaxosQuorum', metadata: { name, namespace }, spec });
}
