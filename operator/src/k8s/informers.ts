/**
 * Informers: list, then watch from the list's resourceVersion, keeping a cache and calling
 * handlers on every change. A watch that ends normally is re-opened from the last
 * resourceVersion; HTTP 410 (Gone) relists; any other error restarts the informer with capped
 * exponential backoff. `hasSynced` says whether a list has succeeded since the last (re)start,
 * for `/readyz`.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { KubeClients } from './client.js';
import { KubeApiError } from './errors.js';
import { PAXOSQUORUMS, type PaxosQuorum } from './paxosquorum.js';
import { Resources, resourcePath, type Resource, type WatchEvent, type WatchHandle } from './rest.js';

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
/** The server closes each watch after this long; we re-open it from the last resourceVersion. */
const WATCH_TIMEOUT_SECONDS = 300;

/** What to do when an object is added, updated or deleted. */
export type ChangeHandler<T> = (object: T, type: 'ADDED' | 'MODIFIED' | 'DELETED') => void;

interface List<T> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

function cacheKey(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

/** A list-watch cache of one resource type. */
export class Informer<T extends KubernetesObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: ChangeHandler<T>[] = [];
  private resourceVersion = '';
  private synced = false;
  private stopped = true;
  private generation = 0;
  private watch: WatchHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private restartDelayMs = RESTART_DELAY_MS_MIN;

  constructor(
    readonly name: string,
    private readonly clients: KubeClients,
    /** Collection path, e.g. `/apis/apps/v1/statefulsets`. */
    private readonly path: string,
    private readonly log: Logger,
    private readonly labelSelector?: string,
  ) {}

  onChange(handler: ChangeHandler<T>): void {
    this.handlers.push(handler);
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  list(): readonly T[] {
    return [...this.cache.values()];
  }

  /** Starts listing and watching; resolves after the first list attempt (successful or not). */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await this.run(this.generation);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.synced = false;
    this.generation += 1;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.watch?.abort();
  }

  /** One list (if needed) followed by watches until an error; then schedules a restart. */
  private async run(generation: number): Promise<void> {
    try {
      if (this.resourceVersion === '') await this.relist();
    } catch (error) {
      this.fail(generation, error);
      return;
    }
    void this.watchLoop(generation);
  }

  private async relist(): Promise<void> {
    const list = await this.clients.rest.get<List<T>>(this.path, { labelSelector: this.labelSelector });
    const fresh = new Map(list.items.map((item) => [cacheKey(item), item]));
    for (const [key, old] of this.cache) {
      if (!fresh.has(key)) {
        this.cache.delete(key);
        this.emit(old, 'DELETED');
      }
    }
    for (const [key, item] of fresh) {
      const old = this.cache.get(key);
      this.cache.set(key, item);
      if (old?.metadata?.resourceVersion !== item.metadata?.resourceVersion) this.emit(item, old === undefined ? 'ADDED' : 'MODIFIED');
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.synced = true;
    this.restartDelayMs = RESTART_DELAY_MS_MIN;
    this.log.debug({ informer: this.name, items: fresh.size }, 'listed');
  }

  private async watchLoop(generation: number): Promise<void> {
    while (!this.stopped && generation === this.generation) {
      let gone = false;
      this.watch = this.clients.rest.watch<T & { code?: number }>(this.path, {
        labelSelector: this.labelSelector, resourceVersion: this.resourceVersion, timeoutSeconds: WATCH_TIMEOUT_SECONDS,
      }, (event: WatchEvent<T & { code?: number }>) => {
        if (event.type === 'ERROR') {
          if (event.object.code === 410) gone = true;
          else throw new KubeApiError(`watch ${this.path}`, event.object.code ?? 0, undefined, JSON.stringify(event.object));
          return;
        }
        const rv = event.object.metadata?.resourceVersion;
        if (rv !== undefined) this.resourceVersion = rv;
        if (event.type === 'BOOKMARK') return;
        const key = cacheKey(event.object);
        if (event.type === 'DELETED') this.cache.delete(key);
        else this.cache.set(key, event.object);
        this.emit(event.object, event.type);
      });
      // The server ends the watch after timeoutSeconds; a connection that died silently never
      // ends, so it is cut a little later and re-opened like a normal end.
      let expired = false;
      const guard = setTimeout(() => {
        expired = true;
        this.watch?.abort();
      }, (WATCH_TIMEOUT_SECONDS + 30) * 1000);
      try {
        await this.watch.done;
      } catch (error) {
        if (error instanceof KubeApiError && error.status === 410) gone = true;
        else if (!expired) {
          this.fail(generation, error);
          return;
        }
      } finally {
        clearTimeout(guard);
      }
      if (gone) {
        this.resourceVersion = '';
        try {
          await this.relist();
        } catch (error) {
          this.fail(generation, error);
          return;
        }
      }
    }
  }

  private fail(generation: number, error: unknown): void {
    if (this.stopped || generation !== this.generation) return;
    this.synced = false;
    this.resourceVersion = '';
    const delayMs = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, RESTART_DELAY_MS_MAX);
    this.log.warn({ informer: this.name, err: error, delayMs }, 'informer failed; restarting');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopped && generation === this.generation) void this.run(generation);
    }, delayMs);
  }

  private emit(object: T, type: 'ADDED' | 'MODIFIED' | 'DELETED'): void {
    for (const handler of this.handlers) {
      try {
        handler(object, type);
      } catch (error) {
        this.log.error({ informer: this.name, err: error }, 'change handler failed');
      }
    }
  }
}

/** The informers the controller watches: PaxosQuorums, and the StatefulSets and Pods it owns. */
export interface Informers {
  readonly quorums: Informer<PaxosQuorum & KubernetesObject>;
  readonly statefulSets: Informer<KubernetesObject>;
  readonly pods: Informer<KubernetesObject>;
  readonly all: readonly Informer<KubernetesObject>[];
}

/**
 * Builds the informers, for one namespace or (when `namespace` is undefined) the whole
 * cluster. StatefulSets and Pods are filtered by {@link MANAGED_SELECTOR}.
 */
export function makeInformers(clients: KubeClients, log: Logger, namespace?: string): Informers {
  const make = <T extends KubernetesObject>(name: string, resource: Resource, selector?: string): Informer<T> =>
    new Informer<T>(name, clients, resourcePath(resource, namespace), log, selector);
  const quorums = make<PaxosQuorum & KubernetesObject>('paxosquorums', PAXOSQUORUMS);
  const statefulSets = make<KubernetesObject>('statefulsets', Resources.statefulSets, MANAGED_SELECTOR);
  const pods = make<KubernetesObject>('pods', Resources.pods, MANAGED_SELECTOR);
  return { quorums, statefulSets, pods, all: [quorums, statefulSets, pods] as readonly Informer<KubernetesObject>[] };
}

/** The PaxosQuorum key (`namespace/name`) an owned object belongs to, from its instance label. */
export function ownerKey(object: KubernetesObject): string | undefined {
  const instance = object.metadata?.labels?.[LABEL_INSTANCE];
  const namespace = object.metadata?.namespace;
  return instance === undefined || namespace === undefined ? undefined : `${namespace}/${instance}`;
}
