/**
 * Lease-based leader election (coordination.k8s.io/v1), as client-go's leaderelection package
 * does it: the holder renews `renewTime` every {@link LeaderElectionOptions.renewIntervalMs};
 * another candidate takes the Lease only when `renewTime + leaseDurationSeconds` has passed by
 * its own clock. Every write is guarded by resourceVersion, so two candidates never both win.
 *
 * Why two holders cannot act at once (docs/adr/0010-leadership-and-pass-deadlines.md):
 *
 * - a renewal that starts at time `t` and succeeds makes this replica the leader until
 *   `t + renewDeadlineMs` at most ({@link LeaderElector.leaseValidUntilMs}); a timer steps down
 *   exactly then, and {@link LeaderElector.isLeader} is false from then on even if the timer is late;
 * - every attempt (read and write of the Lease) carries an AbortSignal that fires when the time
 *   left before that deadline runs out, so a stalled API server cannot keep an attempt, and
 *   with it the old leadership, alive (the REST client's 30 s default would);
 * - another candidate first sees the renewTime written at `t` after `t`, and takes the Lease
 *   only `leaseDurationSeconds` after that, by its own clock: at least
 *   `leaseDuration - renewDeadline` (5 s by default) after this replica stopped.
 *
 * `onStoppedLeading` is called synchronously at the step-down, so the caller can abort the work
 * in flight (the controller aborts every reconcile pass's signal).
 */
import type { V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { KubeClients } from './client.js';
import { getOrUndefined, isAlreadyExists, isConflict, kubeCall } from './errors.js';
import { microTime } from './events.js';
import { Resources, resourcePath } from './rest.js';

/** A Lease as it travels on the wire (times are RFC 3339 strings). */
interface Lease extends Omit<V1Lease, 'spec'> {
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaderElectionOptions {
  readonly namespace: string;
  readonly name: string;
  /** This candidate's identity (pod name + random suffix). */
  readonly identity: string;
  readonly leaseDurationSeconds?: number;
  readonly renewIntervalMs?: number;
  /** Give up leadership when no renewal succeeded for this long (must be < lease duration). */
  readonly renewDeadlineMs?: number;
  readonly onStartedLeading: () => void;
  readonly onStoppedLeading: () => void;
  /**
   * The object the Lease belongs to (the operator's Deployment): the garbage collector deletes the
   * Lease with it, so that uninstalling the operator leaves no Lease behind.
   */
  readonly owner?: LeaseOwner;
}

/** An owner reference for the Lease. */
export interface LeaseOwner {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
}

const LEASE_DURATION_SECONDS = 15;
const RENEW_INTERVAL_MS = 2_000;
const RENEW_DEADLINE_MS = 10_000;

/** The options do not keep the guarantees (renew deadline not shorter than the lease). */
export class LeaderElectionConfigError extends Error {
  override readonly name = 'LeaderElectionConfigError';
}

/** Runs the election loop until {@link LeaderElector.stop}. */
export class LeaderElector {
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** Steps down when the leadership won by the last successful attempt runs out. */
  private expiryTimer: NodeJS.Timeout | undefined;
  /** Leading (by our clock) until then: start of the last successful attempt + renew deadline. */
  private validUntilMs = 0;
  /** What we last saw of another holder: their renewTime, and when (by our clock) we saw it change. */
  private observed: { holder: string; renewTime: string; seenAtMs: number } | undefined;
  private readonly durationSeconds: number;
  private readonly intervalMs: number;
  private readonly deadlineMs: number;

  constructor(private readonly clients: KubeClients, private readonly log: Logger, private readonly options: LeaderElectionOptions) {
    this.durationSeconds = options.leaseDurationSeconds ?? LEASE_DURATION_SECONDS;
    this.intervalMs = options.renewIntervalMs ?? RENEW_INTERVAL_MS;
    this.deadlineMs = options.renewDeadlineMs ?? RENEW_DEADLINE_MS;
    if (!(this.deadlineMs > 0 && this.deadlineMs < this.durationSeconds * 1000)) {
      throw new LeaderElectionConfigError(`renew deadline ${this.deadlineMs} ms must be positive and shorter than the lease (${this.durationSeconds} s)`);
    }
    if (!(this.intervalMs > 0 && this.intervalMs < this.deadlineMs)) {
      throw new LeaderElectionConfigError(`renew interval ${this.intervalMs} ms must be positive and shorter than the renew deadline (${this.deadlineMs} ms)`);
    }
  }

  /** True while this replica holds the Lease and the time won by its last renewal has not run out. */
  get isLeader(): boolean {
    return this.leading && Date.now() < this.validUntilMs;
  }

  /** Until when (epoch ms, our clock) this replica may act; 0 when not leading. */
  get leaseValidUntilMs(): number {
    return this.leading ? this.validUntilMs : 0;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Stops the loop and, if leading, releases the Lease so a successor need not wait for expiry. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const signal = AbortSignal.timeout(this.deadlineMs);
      const lease = await this.read(signal);
      if (lease?.spec?.holderIdentity === this.options.identity) {
        await kubeCall('release Lease', () => this.clients.rest.replace(this.leasePath(),
          { ...lease, spec: { ...lease.spec, holderIdentity: undefined, renewTime: undefined, acquireTime: undefined, leaseDurationSeconds: 1 } },
          undefined, { signal }));
        this.log.info('lease released');
      }
    } catch (error) {
      this.log.warn({ err: error }, 'could not release lease; it expires by itself');
    }
  }

  private async tick(): Promise<void> {
    const startedMs = Date.now();
    // A leader's attempt may last only until its leadership runs out; a candidate's, one renew deadline.
    const budgetMs = this.leading ? this.validUntilMs - startedMs : this.deadlineMs;
    if (budgetMs > 0) {
      const signal = AbortSignal.timeout(budgetMs);
      try {
        if (await this.tryAcquireOrRenew(signal)) this.renewed(startedMs);
      } catch (error) {
        this.log.warn({ err: error, budgetMs }, 'leader election round failed');
      }
    }
    this.checkExpiry();
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), Math.max(0, startedMs + this.intervalMs - Date.now()));
  }

  /** Steps down once the leadership won by the last renewal has run out. */
  private checkExpiry(): void {
    if (this.leading && Date.now() >= this.validUntilMs) {
      this.log.error({ renewDeadlineMs: this.deadlineMs }, 'could not renew the lease in time; stepping down');
      this.setLeading(false);
    }
  }

  private leasePath(): string {
    return resourcePath(Resources.leases, this.options.namespace, this.options.name);
  }

  private async read(signal: AbortSignal): Promise<Lease | undefined> {
    return getOrUndefined('read Lease', () => this.clients.rest.get<Lease>(this.leasePath(), undefined, { signal }));
  }

  /** One round; true when this replica now holds the Lease with a renewTime written in this round. */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = microTime(new Date());
    const lease = await this.read(signal);
    if (lease === undefined) {
      try {
        await kubeCall('create Lease', () => this.clients.rest.create(resourcePath(Resources.leases, namespace), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace, ...(this.options.owner ? { ownerReferences: [this.ownerReference(this.options.owner)] } : {}) },
          spec: { holderIdentity: identity, leaseDurationSeconds: this.durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        }, undefined, { signal }));
        return true;
      } catch (error) {
        if (!isAlreadyExists(error)) throw error;
      }
      return false;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    if (holder !== '' && holder !== identity && !this.expired(holder, spec.renewTime, spec.leaseDurationSeconds)) {
      if (this.leading) this.setLeading(false);
      return false;
    }
    const takeover = holder !== identity;
    try {
      await kubeCall('update Lease', () => this.clients.rest.replace(this.leasePath(), {
          ...lease,
          metadata: this.withOwner(lease.metadata),
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: this.durationSeconds,
            renewTime: now,
            acquireTime: takeover ? now : spec.acquireTime,
            leaseTransitions: (spec.leaseTransitions ?? 0) + (takeover ? 1 : 0),
          },
      }, undefined, { signal }));
      return true;
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
    return false;
  }

  private ownerReference(owner: LeaseOwner): { apiVersion: string; kind: string; name: string; uid: string } {
    return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid };
  }

  /** Adds our owner to a Lease written before it had one (e.g. by an older operator). */
  private withOwner(metadata: Lease['metadata']): Lease['metadata'] {
    const owner = this.options.owner;
    if (owner === undefined || metadata === undefined) return metadata;
    const refs = metadata.ownerReferences ?? [];
    if (refs.some((ref) => ref.uid === owner.uid)) return metadata;
    return { ...metadata, ownerReferences: [...refs, this.ownerReference(owner)] };
  }

  /**
   * Expiry is judged by our own clock from when we first saw the current renewTime, as
   * client-go does, so clock skew between candidates cannot shorten the lease.
   */
  private expired(holder: string, renewTime: string | undefined, durationSeconds: number | undefined): boolean {
    const key = renewTime ?? '';
    if (this.observed === undefined || this.observed.holder !== holder || this.observed.renewTime !== key) {
      this.observed = { holder, renewTime: key, seenAtMs: Date.now() };
    }
    return Date.now() > this.observed.seenAtMs + (durationSeconds ?? this.durationSeconds) * 1000;
  }

  /**
   * A round that began at `startedMs` wrote our renewTime: we lead until `startedMs + renewDeadline`.
   * Counting from the start of the round, not from the answer, keeps the bound whatever the
   * round's latency: nobody can have seen that renewTime before the round began.
   */
  private renewed(startedMs: number): void {
    if (this.stopped) return;
    this.validUntilMs = startedMs + this.deadlineMs;
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.checkExpiry(), Math.max(0, this.validUntilMs - Date.now()));
    if (!this.leading) this.setLeading(true);
    // An answer that arrived after the time it won had already run out leads to nothing.
    this.checkExpiry();
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    if (!leading && this.expiryTimer !== undefined) {
      clearTimeout(this.expiryTimer);
      this.expiryTimer = undefined;
    }
    this.leading = leading;
    this.log.info({ identity: this.options.identity }, leading ? 'became leader' : 'stopped leading');
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }
}
