/**
 * The scope of one reconcile pass: its AbortSignal (the work queue's pass deadline, or the
 * loss of leadership) and the leadership check, applied to every call the pass makes without
 * threading a parameter through every function:
 *
 * - each Kubernetes request carries the signal (the socket is destroyed when it fires), and a
 *   write is refused with {@link NotLeaderError} once the pass may no longer act;
 * - each admin call carries the signal (gRPC cancel), and a call that changes a node
 *   (Convert, TransferLeadership, Finalize, Register) checks leadership right before it is sent;
 *   a call that ignores the signal is abandoned when it fires;
 * - Events are not recorded once the pass may no longer act.
 *
 * The current pass is found through an AsyncLocalStorage owned by the {@link PassScopes}
 * instance, so concurrent passes of different keys each see their own signal, and code added to
 * the reconciler later is covered without changes. See docs/adr/0010-leadership-and-pass-deadlines.md.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { KubeClients } from '../k8s/client.js';
import type { EventRecorder } from '../k8s/events.js';
import type { NodeConfig } from '../plan/config.js';
import type { NodeAdmin, NodeStatus } from './node-admin.js';

/** A pass tried to write or change a node after it lost the right to act. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
}

/** A pass's call was refused or abandoned because the pass's signal fired. */
export class PassAbortedError extends Error {
  override readonly name = 'PassAbortedError';
}

interface Scope {
  readonly signal: AbortSignal;
}

/** What {@link PassScopes.bind} wraps. */
export interface ScopedParts {
  readonly clients: KubeClients;
  readonly admin: NodeAdmin;
  readonly events: EventRecorder;
}

/** Runs passes in their scope and wraps the clients they use; one instance per reconciler. */
export class PassScopes {
  private readonly storage = new AsyncLocalStorage<Scope>();

  /** @param mayAct asked before every write and node-changing admin call (leader election's "do I lead"). */
  constructor(private readonly mayAct: () => boolean = () => true) {}

  /** Runs `pass` with `signal` as the scope of every wrapped call it makes. */
  run<T>(signal: AbortSignal, pass: () => Promise<T>): Promise<T> {
    return this.storage.run({ signal }, pass);
  }

  /** The signal of the pass running in this async context, if any. */
  get signal(): AbortSignal | undefined {
    return this.storage.getStore()?.signal;
  }

  /** Throws unless the current pass may act (not aborted, still leading). */
  check(what: string): void {
    const signal = this.signal;
    if (signal?.aborted === true) throw new PassAbortedError(`${what}: the pass was aborted (${reasonText(signal.reason)})`, { cause: signal.reason });
    if (!this.mayAct()) throw new NotLeaderError(`${what}: refused, this operator no longer holds the leader Lease`);
  }

  /** The same parts, bound to the current pass's scope. */
  bind<T extends ScopedParts>(parts: T): T {
    return {
      ...parts,
      clients: { ...parts.clients, rest: parts.clients.rest.scoped(() => this.restScope()) },
      admin: this.wrapAdmin(parts.admin),
      events: this.wrapEvents(parts.events),
    };
  }

  private restScope(): { signal: AbortSignal; beforeWrite: (what: string) => void } | undefined {
    const signal = this.signal;
    return signal === undefined ? undefined : { signal, beforeWrite: (what) => this.check(what) };
  }

  /** Runs `call` with the pass's signal; rejects when the signal fires even if `call` ignores it. */
  private async guarded<T>(what: string, acts: boolean, call: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    const signal = this.signal;
    if (signal === undefined) return call(undefined);
    if (acts) this.check(what);
    else if (signal.aborted) throw new PassAbortedError(`${what}: the pass was aborted (${reasonText(signal.reason)})`, { cause: signal.reason });
    let onAbort = (): void => undefined;
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => reject(new PassAbortedError(`${what}: abandoned, the pass was aborted (${reasonText(signal.reason)})`, { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const result = call(signal);
      result.catch(() => undefined);
      return await Promise.race([result, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private wrapAdmin(admin: NodeAdmin): NodeAdmin {
    return {
      status: (address: string, deadlineMs: number): Promise<NodeStatus> =>
        this.guarded(`Status on ${address}`, false, (signal) => admin.status(address, deadlineMs, signal)),
      convert: (address: string, config: NodeConfig, deadlineMs: number): Promise<void> =>
        this.guarded(`Convert on ${address}`, true, (signal) => admin.convert(address, config, deadlineMs, signal)),
      transferLeadership: (address: string, target: number, deadlineMs: number): Promise<void> =>
        this.guarded(`TransferLeadership on ${address}`, true, (signal) => admin.transferLeadership(address, target, deadlineMs, signal)),
      finalize: (address: string, deadlineMs: number): Promise<void> =>
        this.guarded(`Finalize on ${address}`, true, (signal) => admin.finalize(address, deadlineMs, signal)),
      register: (address: string, deadlineMs: number): Promise<void> =>
        this.guarded(`Register on ${address}`, true, (signal) => admin.register(address, deadlineMs, signal)),
      close: () => admin.close(),
    };
  }

  private wrapEvents(events: EventRecorder): EventRecorder {
    return {
      record: async (quorum, type, reason, action, note) => {
        const signal = this.signal;
        if (signal !== undefined && (signal.aborted || !this.mayAct())) return;
        await events.record(quorum, type, reason, action, note);
      },
    };
  }
}

function reasonText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
