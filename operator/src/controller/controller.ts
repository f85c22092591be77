/**
 * Wires informers to the work queue and the queue to the reconciler. Informers run on every
 * replica of the operator (so a new leader starts with warm watches); the queue runs only while
 * this replica holds the Lease.
 *
 * Which changes trigger a pass: any add/delete of a PaxosQuorum, and updates that change its
 * generation (spec), deletion timestamp or finalizers — not its own status writes, which would
 * otherwise loop. Any change to an owned StatefulSet or Pod triggers its quorum.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ownerKey, type Informers } from '../k8s/informers.js';
import { WorkQueue, type Outcome, type WorkQueueOptions } from './queue.js';

/** The controller's observable hooks. */
export interface ControllerMetrics {
  reconcileDone(durationSeconds: number, result: 'success' | 'error'): void;
}

export class Controller {
  private readonly queue: WorkQueue;
  private readonly seen = new Map<string, string>();
  private leading = false;

  constructor(
    private readonly informers: Informers,
    /** One pass over `key`; `signal` fires at the pass deadline or when leadership is lost. */
    reconcile: (key: string, signal: AbortSignal) => Promise<Outcome>,
    private readonly log: Logger,
    metrics?: ControllerMetrics,
    /** Workers (`concurrency`) and the pass deadline (`passTimeoutMs`). */
    queueOptions: WorkQueueOptions = {},
  ) {
    this.queue = new WorkQueue(async (key, signal) => {
      const started = performance.now();
      try {
        const outcome = await reconcile(key, signal);
        metrics?.reconcileDone((performance.now() - started) / 1000, 'success');
        return outcome;
      } catch (error) {
        metrics?.reconcileDone((performance.now() - started) / 1000, 'error');
        throw error;
      }
    }, (key, error, attempt) => {
      this.log.warn({ quorum: key, attempt, err: error }, 'reconcile failed; retrying with backoff');
    }, queueOptions);
    informers.quorums.onChange((quorum, type) => this.onQuorum(quorum, type));
    informers.statefulSets.onChange((object) => this.onOwned(object));
    informers.pods.onChange((object) => this.onOwned(object));
  }

  /** Starts the informers; resolves when each has listed once. */
  async startInformers(): Promise<void> {
    await Promise.all(this.informers.all.map((informer) => informer.start()));
  }

  /** True when every informer has synced (for /readyz). */
  get synced(): boolean {
    return this.informers.all.every((informer) => informer.hasSynced);
  }

  /** Called when this replica becomes leader: start working and queue every known quorum. */
  startLeading(): void {
    this.leading = true;
    this.queue.start();
    for (const quorum of this.informers.quorums.list()) this.enqueue(quorum);
  }

  /**
   * Called when leadership is lost: stop taking keys and abort the passes in flight; resolves
   * once they are released (at once, see {@link WorkQueue.stop}).
   */
  async stopLeading(): Promise<void> {
    this.leading = false;
    await this.queue.stop();
  }

  async stop(): Promise<void> {
    await this.stopLeading();
    await Promise.all(this.informers.all.map((informer) => informer.stop()));
  }

  private onQuorum(quorum: KubernetesObject, type: 'ADDED' | 'MODIFIED' | 'DELETED'): void {
    const key = keyOf(quorum);
    if (key === undefined) return;
    if (type === 'DELETED') {
      // One last pass sees "not found" and forgets the quorum (metrics, failure memory).
      this.seen.delete(key);
      this.enqueue(quorum, true);
      return;
    }
    const meta = quorum.metadata ?? {};
    const fingerprint = JSON.stringify([meta.generation, meta.deletionTimestamp, meta.finalizers, meta.uid]);
    if (this.seen.get(key) === fingerprint) return;
    // A change a user made (spec, deletion) goes ahead of polls; the first sight of each
    // quorum (a new leader's relist, the informer's initial list) does not.
    const urgent = this.seen.has(key) || (type === 'ADDED' && meta.generation === 1 && this.leading);
    this.seen.set(key, fingerprint);
    this.enqueue(quorum, urgent);
  }

  private onOwned(object: KubernetesObject): void {
    const key = ownerKey(object);
    if (key !== undefined && this.leading) this.queue.add(key);
  }

  private enqueue(quorum: KubernetesObject, urgent = false): void {
    const key = keyOf(quorum);
    if (key !== undefined && this.leading) this.queue.add(key, urgent);
  }
}

function keyOf(object: KubernetesObject): string | undefined {
  const { namespace, name } = object.metadata ?? {};
  return namespace === undefined || name === undefined ? undefined : `${namespace}/${name}`;
}
