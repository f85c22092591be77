/**
 * A work queue of keys in the style of client-go's rate-limited queue:
 *
 * - de-duplicating: a key added while already waiting is queued once;
 * - one worker per key at a time: a key added while being processed is marked dirty and
 *   queued again when the worker finishes, so no two reconciles of one object overlap;
 * - per-key exponential backoff on failure (`failures` is reset by {@link WorkQueue.forget});
 * - delayed adds (`addAfter`) for "check again in 500 ms" without a busy loop;
 * - a cap on how many keys are processed concurrently.
 */

export interface WorkQueueOptions {
  /** Keys processed at once across the queue (default 2). */
  readonly concurrency?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
}

/** What the handler asks for after a key was processed successfully. */
export interface Outcome {
  /** Process the key again after this delay (level-triggered polling while something is in flight). */
  readonly requeueAfterMs?: number;
}

export type Handler = (key: string) => Promise<Outcome>;

const BACKOFF_BASE_MS = 200;
const BACKOFF_MAX_MS = 60_000;

/** Processes keys with {@link Handler}; see the module comment for the guarantees. */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly concurrency: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private running = false;
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly handler: Handler,
    /** Called when the handler throws; the key is retried with backoff. */
    private readonly onError: (key: string, error: unknown, attempt: number) => void,
    options: WorkQueueOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 2;
    this.backoffBaseMs = options.backoffBaseMs ?? BACKOFF_BASE_MS;
    this.backoffMaxMs = options.backoffMaxMs ?? BACKOFF_MAX_MS;
  }

  /** Starts handing keys to the handler. Keys added before start wait. */
  start(): void {
    this.running = true;
    this.pump();
  }

  /**
   * Stops taking new keys, cancels delayed adds and resolves once the keys in flight are done.
   * Waiting keys are dropped: a new leader relists everything anyway.
   */
  async stop(): Promise<void> {
    this.running = false;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
    this.dirty.clear();
    if (this.active === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Queues `key` now (de-duplicated). */
  add(key: string): void {
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Queues `key` after `delayMs`; an earlier pending delayed add wins. */
  addAfter(key: string, delayMs: number): void {
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending !== undefined && pending.at <= at) return;
    if (pending !== undefined) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Queues `key` after its backoff and counts one more failure. */
  addRateLimited(key: string): number {
    const attempt = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, attempt);
    this.addAfter(key, this.backoffMs(attempt));
    return attempt;
  }

  /** Clears the failure count of `key`. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** The delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped. */
  backoffMs(attempt: number): number {
    return Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(attempt - 1, 30));
  }

  /** Keys waiting or in flight, for metrics. */
  get depth(): number {
    return this.queue.length;
  }

  private pump(): void {
    while (this.running && this.active < this.concurrency && this.queue.length > 0) {
      const key = this.queue.shift() as string;
      this.queued.delete(key);
      this.processing.add(key);
      this.active += 1;
      void this.process(key);
    }
  }

  private async process(key: string): Promise<void> {
    try {
      const outcome = await this.handler(key);
      this.forget(key);
      if (outcome.requeueAfterMs !== undefined && this.running) this.addAfter(key, outcome.requeueAfterMs);
    } catch (error) {
      if (this.running) {
        const attempt = this.addRateLimited(key);
        this.onError(key, error, attempt);
      }
    } finally {
      this.processing.delete(key);
      this.active -= 1;
      if (this.dirty.delete(key) && this.running) this.add(key);
      if (this.active === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
      this.pump();
    }
  }
}
