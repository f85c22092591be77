/**
 * Informers that keep running. The client's informer relists by itself after HTTP 410 (Gone)
 * but stops on any other error; {@link ResilientInformer} restarts it with capped exponential
 * backoff and reports whether it has completed a list since (start) so `/readyz` can use it.
 */
import { makeInformer, type Informer, type KubernetesListObject, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { KubeClients } from './client.js';
import { GROUP, PLURAL, VERSION, type PaxosQuorum } from './paxosquorum.js';

/** Label values every owned object carries. */
export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const APP_NAME = 'paxos';
export const MANAGED_BY = 'paxos-operator';
/** Selects every object the operator manages, in any quorum. */
export const MANAGED_SELECTOR = `${LABEL_NAME}=${APP_NAME},${LABEL_MANAGED_BY}=${MANAGED_BY}`;

const RESTART_DELAY_MS_MIN = 500;
const RESTART_DELAY_MS_MAX = 30_000;

/** What to do when an object changes. */
export type ChangeHandler<T> = (object: T) => void;

/** An informer that restarts itself after errors and knows whether it has synced. */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly informer: Informer<T> & ObjectCache<T>;
  private synced = false;
  private stopped = true;
  private restartDelayMs = RESTART_DELAY_MS_MIN;
  private restartTimer: NodeJS.Timeout | undefined;
  private erroredDuringStart = false;

  constructor(
    readonly name: string,
    clients: KubeClients,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    private readonly log: Logger,
    labelSelector?: string,
  ) {
    this.informer = makeInformer(clients.config, path, list, labelSelector);
    this.informer.on('error', (error: unknown) => this.onError(error));
  }

  /** Calls `handler` for adds, updates and deletes. */
  onChange(handler: ChangeHandler<T>): void {
    this.informer.on('change', handler);
  }

  /** True once a list has succeeded since the last (re)start. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** The objects in the cache. */
  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.startOnce();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.synced = false;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    await this.informer.stop();
  }

  private async startOnce(): Promise<void> {
    this.erroredDuringStart = false;
    await this.informer.start();
    // start() resolves after the list and the watch request; a failed list reports an error instead of throwing.
    if (!this.erroredDuringStart && !this.stopped) {
      this.synced = true;
      this.restartDelayMs = RESTART_DELAY_MS_MIN;
      this.log.debug({ informer: this.name }, 'informer synced');
    }
  }

  private onError(error: unknown): void {
    this.erroredDuringStart = true;
    this.synced = false;
    if (this.stopped) return;
    const delayMs = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, RESTART_DELAY_MS_MAX);
    this.log.warn({ informer: this.name, err: error, delayMs }, 'informer failed; restarting');
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.startOnce().catch((e: unknown) => this.onError(e));
    }, delayMs);
  }
}

/** The informers the controller watches: PaxosQuorums, and the StatefulSets and Pods it owns. */
export interface Informers {
  readonly quorums: ResilientInformer<PaxosQuorum & KubernetesObject>;
  readonly statefulSets: ResilientInformer<KubernetesObject>;
  readonly pods: ResilientInformer<KubernetesObject>;
  readonly all: readonly ResilientInformer<KubernetesObject>[];
}

/**
 * Builds the informers, for one namespace or (when `namespace` is undefined) the whole
 * cluster. StatefulSets and Pods are filtered by {@link MANAGED_SELECTOR}.
 */
export function makeInformers(clients: KubeClients, log: Logger, namespace?: string): Informers {
  const ns = namespace === undefined ? '' : `/namespaces/${namespace}`;
  const quorums = new ResilientInformer<PaxosQuorum & KubernetesObject>(
    'paxosquorums', clients, `/apis/${GROUP}/${VERSION}${ns}/${PLURAL}`,
    async () => (namespace === undefined
      ? clients.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })
      : clients.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })) as Promise<KubernetesListObject<PaxosQuorum & KubernetesObject>>,
    log);
  const statefulSets = new ResilientInformer<KubernetesObject>(
    'statefulsets', clients, `/apis/apps/v1${ns}/statefulsets`,
    () => (namespace === undefined
      ? clients.apps.listStatefulSetForAllNamespaces({ labelSelector: MANAGED_SELECTOR })
      : clients.apps.listNamespacedStatefulSet({ namespace, labelSelector: MANAGED_SELECTOR })),
    log, MANAGED_SELECTOR);
  const pods = new ResilientInformer<KubernetesObject>(
    'pods', clients, `/api/v1${ns}/pods`,
    () => (namespace === undefined
      ? clients.core.listPodForAllNamespaces({ labelSelector: MANAGED_SELECTOR })
      : clients.core.listNamespacedPod({ namespace, labelSelector: MANAGED_SELECTOR })),
    log, MANAGED_SELECTOR);
  return { quorums, statefulSets, pods, all: [quorums, statefulSets, pods] as readonly ResilientInformer<KubernetesObject>[] };
}

/** The PaxosQuorum key (`namespace/name`) an owned object belongs to, from its instance label. */
export function ownerKey(object: KubernetesObject): string | undefined {
  const instance = object.metadata?.labels?.[LABEL_INSTANCE];
  const namespace = object.metadata?.namespace;
  return instance === undefined || namespace === undefined ? undefined : `${namespace}/${instance}`;
}
