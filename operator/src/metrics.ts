/**
 * The operator's Prometheus metrics and its HTTP endpoint: `/metrics`, `/healthz` (the process
 * is alive) and `/readyz` (informers have synced). One registry per process, no globals.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControllerMetrics } from './controller/controller.js';
import type { ReconcileMetrics } from './controller/reconciler.js';

/** Metrics of the controller and reconciler. */
export class OperatorMetrics implements ControllerMetrics, ReconcileMetrics {
  readonly registry = new Registry();
  private readonly reconcileDuration = new Histogram({
    name: 'paxos_operator_reconcile_duration_seconds',
    help: 'Duration of one reconcile pass.',
    labelNames: ['result'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly reconcileErrors = new Counter({
    name: 'paxos_operator_reconcile_errors_total',
    help: 'Reconcile passes that failed and were retried with backoff.',
    registers: [this.registry],
  });
  private readonly steps = new Counter({
    name: 'paxos_operator_steps_total',
    help: 'Steps executed, by kind (StartPod, Convert, TransferLeadership, Finalize, StopPod, DeletePod).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  private readonly quorumMembers = new Gauge({
    name: 'paxos_operator_quorum_members',
    help: 'Members of the newest configuration the nodes of a quorum report.',
    labelNames: ['namespace', 'name'] as const,
    registers: [this.registry],
  });
  private readonly leader = new Gauge({
    name: 'paxos_operator_leader',
    help: '1 while this replica holds the operator Lease.',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'paxos_operator_' });
  }

  reconcileDone(durationSeconds: number, result: 'success' | 'error'): void {
    this.reconcileDuration.observe({ result }, durationSeconds);
    if (result === 'error') this.reconcileErrors.inc();
  }

  stepExecuted(kind: string): void {
    this.steps.inc({ kind });
  }

  quorumSize(namespace: string, name: string, size: number | undefined): void {
    if (size === undefined) this.quorumMembers.remove({ namespace, name });
    else this.quorumMembers.set({ namespace, name }, size);
  }

  setLeader(leading: boolean): void {
    this.leader.set(leading ? 1 : 0);
  }
}

/** Serves `/metrics`, `/healthz` and `/readyz` on `port`; resolves once listening. */
export function serveMetrics(metrics: OperatorMetrics, port: number, ready: () => boolean): Promise<Server> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = ready();
      response.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'informers not synced\n');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (body) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
    } else {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve(server));
  });
}
