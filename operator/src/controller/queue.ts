/**
 * A work queue of keys in the style of client-go's rate-limited queue:
 *
 * - de-duplicating: a key added while already waiting is queued once;
 * - one worker per key at a time: a key added while being processed is marked dirty and
 *   queued again when the worker finishes, so no two reconciles of one object overlap;
 * - per-key exponential backoff on failure (`failures` is reset by {@link WorkQueue.forget});
 * - delayed adds (`addAfter`) for "check again in 500 ms" without a busy loop;
 * - a cap on how many keys are processed concurrently;
 * - two lanes: keys added as `urgent` (a user changed the object) are taken before the others
 *   (polls, backoff retries, changes of owned objects), and one extra worker is reserved for
 *   them, so that a spec change is acted on at once even when every worker is busy with
 *   quorums that are resizing; after {@link URGENT_BURST} urgent keys in a row one other key is
 *   taken if any waits, so the other lane is never starved;
 * - a deadline per pass: the handler gets an AbortSignal that fires when the pass has run for
 *   `passTimeoutMs`, or when the queue stops (leadership lost). The key is freed at that
 *   moment even if the handler has not returned yet, and retried with backoff; whatever the
 *   abandoned handler still tries goes through clients bound to that signal and fails at once
 *   (see the reconciler), so it cannot act next to its successor.
 */

export interface WorkQueueOptions {
  /** Keys processed at once across the queue (default 2). */
  readonly concurrency?: number;
  /** Deadline of one pass of the handler (default 60 s). */
  readonly passTimeoutMs?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
}

/** What the handler asks for after a key was processed successfully. */
export interface Outcome {
  /** Process the key again after this delay (level-triggered polling while something is in flight). */
  readonly requeueAfterMs?: number;
}

/** Processes one key; must stop what it does (or at least stop acting) when `signal` fires. */
export type Handler = (key: string, signal: AbortSignal) => Promise<Outcome>;

const BACKOFF_BASE_MS = 200;
const BACKOFF_MAX_MS = 60_000;
const PASS_TIMEOUT_MS = 60_000;
/** Urgent keys taken in a row before one waiting key of the other lane. */
export const URGENT_BURST = 4;

/** A pass ran past its deadline; its signal was aborted with this reason and the key retried. */
export class PassTimeoutError extends Error {
  override readonly name = 'PassTimeoutError';
}

/** The queue stopped (leadership lost or shutdown) while the pass ran. */
export class QueueStoppedError extends Error {
  override readonly name = 'QueueStoppedError';
}

/** Processes keys with {@link Handler}; see the module comment for the guarantees. */
export class WorkQueue {
  private readonly urgent: string[] = [];
  private readonly normal: string[] = [];
  /** Waiting keys and their lane (true: urgent). */
  private readonly queued = new Map<string, boolean>();
  private readonly processing = new Set<string>();
  /** Keys added while being processed, and whether any of those adds was urgent. */
  private readonly dirty = new Map<string, boolean>();
  private urgentStreak = 0;
  /** Passes running in the worker reserved for urgent keys (0 or 1). */
  private reservedActive = 0;
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly inFlight = new Map<string, AbortController>();
  private readonly concurrency: number;
  private readonly passTimeoutMs: number;
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
    this.passTimeoutMs = options.passTimeoutMs ?? PASS_TIMEOUT_MS;
    if (!(Number.isInteger(this.concurrency) && this.concurrency >= 1)) throw new RangeError(`concurrency must be a positive integer, not ${this.concurrency}`);
    if (!(this.passTimeoutMs > 0)) throw new RangeError(`passTimeoutMs must be positive, not ${this.passTimeoutMs}`);
    this.backoffBaseMs = options.backoffBaseMs ?? BACKOFF_BASE_MS;
    this.backoffMaxMs = options.backoffMaxMs ?? BACKOFF_MAX_MS;
  }

  /** Starts handing keys to the handler. Keys added before start wait. */
  start(): void {
    this.running = true;
    this.pump();
  }

  /**
   * Stops taking new keys, cancels delayed adds, aborts the signal of every pass in flight and
   * resolves once they are released (at once: an aborted pass frees its key without waiting
   * for its handler). Waiting keys are dropped: a new leader relists everything anyway.
   */
  async stop(): Promise<void> {
    this.running = false;
    for (const controller of this.inFlight.values()) controller.abort(new QueueStoppedError('the work queue stopped (leadership lost or shutting down)'));
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.urgent.length = 0;
    this.normal.length = 0;
    this.queued.clear();
    this.dirty.clear();
    if (this.active === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Queues `key` now (de-duplicated). `urgent`: a change someone made to the object, to be acted
   * on before polls; an urgent add of a key waiting in the other lane moves it.
   */
  add(key: string, urgent = false): void {
    if (this.processing.has(key)) {
      this.dirty.set(key, urgent || this.dirty.get(key) === true);
      return;
    }
    const lane = this.queued.get(key);
    if (lane === true || (lane === false && !urgent)) return;
    if (lane === false) this.normal.splice(this.normal.indexOf(key), 1);
    this.queued.set(key, urgent);
    (urgent ? this.urgent : this.normal).push(key);
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

  /** Keys waiting, for metrics. */
  get depth(): number {
    return this.urgent.length + this.normal.length;
  }

  /** The next key: urgent first, but one other after {@link URGENT_BURST} urgent ones in a row. */
  private next(): string | undefined {
    const takeUrgent = this.urgent.length > 0 && (this.urgentStreak < URGENT_BURST || this.normal.length === 0);
    this.urgentStreak = takeUrgent ? this.urgentStreak + 1 : 0;
    return takeUrgent ? this.urgent.shift() : this.normal.shift();
  }

  private pump(): void {
    while (this.running && this.depth > 0) {
      let reserved = false;
      if (this.active - this.reservedActive >= this.concurrency) {
        // Every worker is busy: an urgent key may still take the reserved one.
        if (this.urgent.length === 0 || this.reservedActive > 0) return;
        reserved = true;
      }
      const key = (reserved ? this.urgent.shift() : this.next()) as string;
      this.queued.delete(key);
      this.processing.add(key);
      this.active += 1;
      if (reserved) this.reservedActive += 1;
      void this.process(key, reserved);
    }
  }

  /** Keys whose pass is running now. */
  get activeKeys(): readonly string[] {
    return [...this.inFlight.keys()];
  }

  /** The handler's pass, or the abort of its signal, whichever comes first. */
  private async pass(key: string, controller: AbortController): Promise<Outcome> {
    const { signal } = controller;
    const timer = setTimeout(() => controller.abort(new PassTimeoutError(`the pass of ${key} ran for more than ${this.passTimeoutMs} ms`)), this.passTimeoutMs);
    let onAbort = (): void => undefined;
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const handled = this.handler(key, signal);
      // An abandoned handler's late failure is not reported: the queue already moved on.
      handled.catch(() => undefined);
      return await Promise.race([handled, aborted]);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async process(key: string, reserved: boolean): Promise<void> {
    const controller = new AbortController();
    this.inFlight.set(key, controller);
    try {
      const outcome = await this.pass(key, controller);
      this.forget(key);
      if (outcome.requeueAfterMs !== undefined && this.running) this.addAfter(key, outcome.requeueAfterMs);
    } catch (error) {
      if (this.running) {
        const attempt = this.addRateLimited(key);
        this.onError(key, error, attempt);
      }
    } finally {
      if (this.inFlight.get(key) === controller) this.inFlight.delete(key);
      this.processing.delete(key);
      this.active -= 1;
      if (reserved) this.reservedActive -= 1;
      const dirty = this.dirty.get(key);
      this.dirty.delete(key);
      if (dirty !== undefined && this.running) this.add(key, dirty);
      if (this.active === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
      this.pump();
    }
  }
}
