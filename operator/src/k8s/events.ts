/**
 * Kubernetes Events (events.k8s.io/v1) about PaxosQuorum objects: one per step the operator
 * takes and one per problem it reports. Recording is best effort: a failed Event is logged and
 * never fails a reconcile.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeClients } from './client.js';
import { Resources, resourcePath } from './rest.js';
import { API_VERSION, KIND, type PaxosQuorum } from './paxosquorum.js';

export type EventType = 'Normal' | 'Warning';

/** Records Events about a PaxosQuorum. */
export interface EventRecorder {
  /**
   * @param reason CamelCase machine-readable reason (see controller/reasons.ts).
   * @param action what the operator did or tried (`ScaleUp`, `Convert`, ...).
   * @param note a sentence for people.
   */
  record(quorum: PaxosQuorum, type: EventType, reason: string, action: string, note: string): Promise<void>;
}

/** `metav1.MicroTime`: RFC 3339 with microseconds. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, '000Z');
}

/** Max length of an Event note accepted by the API server. */
const NOTE_LENGTH_MAX = 1024;

/** Writes events.k8s.io/v1 Events. */
export class KubeEventRecorder implements EventRecorder {
  constructor(
    private readonly clients: KubeClients,
    private readonly log: Logger,
    /** `reportingController`, e.g. `paxos.quorum.dev/operator`. */
    private readonly controller: string,
    /** `reportingInstance`, e.g. the operator pod's name. */
    private readonly instance: string,
  ) {}

  async record(quorum: PaxosQuorum, type: EventType, reason: string, action: string, note: string): Promise<void> {
    const { namespace, name, uid, resourceVersion } = quorum.metadata;
    try {
      await this.clients.rest.create(resourcePath(Resources.events, namespace), {
          apiVersion: 'events.k8s.io/v1',
          kind: 'Event',
          metadata: { name: `${name}.${Date.now().toString(16)}${randomBytes(3).toString('hex')}`, namespace },
          eventTime: microTime(new Date()),
          reportingController: this.controller,
          reportingInstance: this.instance.slice(0, 128),
          action,
          reason,
          type,
          note: note.slice(0, NOTE_LENGTH_MAX),
          regarding: { apiVersion: API_VERSION, kind: KIND, name, namespace, uid, resourceVersion },
      });
    } catch (error) {
      this.log.warn({ err: error, reason, quorum: `${namespace}/${name}` }, 'could not record event');
    }
    this.log.info({ quorum: `${namespace}/${name}`, type, reason, action }, note);
  }
}

/** Keeps Events in memory; for tests. */
export class MemoryEventRecorder implements EventRecorder {
  readonly events: { quorum: string; type: EventType; reason: string; action: string; note: string }[] = [];

  async record(quorum: PaxosQuorum, type: EventType, reason: string, action: string, note: string): Promise<void> {
    this.events.push({ quorum: `${quorum.metadata.namespace}/${quorum.metadata.name}`, type, reason, action, note });
  }
}
