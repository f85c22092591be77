/**
 * Lease-based leader election (coordination.k8s.io/v1), as client-go's leaderelection package
 * does it: the holder renews `renewTime` every {@link LeaderElectionOptions.renewIntervalMs};
 * another candidate takes the Lease only when `renewTime + leaseDurationSeconds` has passed by
 * its own clock. Every write is guarded by resourceVersion, so two candidates never both win.
 *
 * The holder gives leadership up (and calls `onStoppedLeading`) as soon as it cannot renew
 * within `renewDeadlineMs`, before the Lease can expire for others: a leader that cannot reach
 * the API server must stop acting before anyone else starts.
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

/** Runs the election loop until {@link LeaderElector.stop}. */
export class LeaderElector {
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private lastRenewMs = 0;
  /** What we last saw of another holder: their renewTime, and when (by our clock) we saw it change. */
  private observed: { holder: string; renewTime: string; seenAtMs: number } | undefined;
  private readonly durationSeconds: number;
  private readonly intervalMs: number;
  private readonly deadlineMs: number;

  constructor(private readonly clients: KubeClients, private readonly log: Logger, private readonly options: LeaderElectionOptions) {
    this.durationSeconds = options.leaseDurationSeconds ?? LEASE_DURATION_SECONDS;
    this.intervalMs = options.renewIntervalMs ?? RENEW_INTERVAL_MS;
    this.deadlineMs = options.renewDeadlineMs ?? RENEW_DEADLINE_MS;
  }

  get isLeader(): boolean {
    return this.leading;
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
      const lease = await this.read();
      if (lease?.spec?.holderIdentity === this.options.identity) {
        await kubeCall('release Lease', () => this.clients.rest.replace(this.leasePath(),
          { ...lease, spec: { ...lease.spec, holderIdentity: undefined, renewTime: undefined, acquireTime: undefined, leaseDurationSeconds: 1 } }));
        this.log.info('lease released');
      }
    } catch (error) {
      this.log.warn({ err: error }, 'could not release lease; it expires by itself');
    }
  }

  private async tick(): Promise<void> {
    try {
      await this.tryAcquireOrRenew();
    } catch (error) {
      this.log.warn({ err: error }, 'leader election round failed');
    }
    if (this.leading && Date.now() - this.lastRenewMs > this.deadlineMs) {
      this.log.error('could not renew the lease in time; stepping down');
      this.setLeading(false);
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.intervalMs);
  }

  private leasePath(): string {
    return resourcePath(Resources.leases, this.options.namespace, this.options.name);
  }

  private async read(): Promise<Lease | undefined> {
    return getOrUndefined('read Lease', () => this.clients.rest.get<Lease>(this.leasePath()));
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity } = this.options;
    const now = microTime(new Date());
    const lease = await this.read();
    if (lease === undefined) {
      try {
        await kubeCall('create Lease', () => this.clients.rest.create(resourcePath(Resources.leases, namespace), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace, ...(this.options.owner ? { ownerReferences: [this.ownerReference(this.options.owner)] } : {}) },
          spec: { holderIdentity: identity, leaseDurationSeconds: this.durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        }));
        this.renewed();
      } catch (error) {
        if (!isAlreadyExists(error)) throw error;
      }
      return;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    if (holder !== '' && holder !== identity && !this.expired(holder, spec.renewTime, spec.leaseDurationSeconds)) {
      if (this.leading) this.setLeading(false);
      return;
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
      }));
      this.renewed();
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
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

  private renewed(): void {
    this.lastRenewMs = Date.now();
    if (!this.leading) this.setLeading(true);
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.log.info({ identity: this.options.identity }, leading ? 'became leader' : 'stopped leading');
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }
}
