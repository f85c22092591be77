/**
 * The operator's entry point: parses flags and environment, wires the Kubernetes clients,
 * informers, work queue, reconciler, leader election and metrics, and shuts down cleanly on
 * SIGTERM/SIGINT (stop the queue, aborting the passes in flight, release the Lease, stop the
 * informers).
 *
 * Bad configuration prints a readable message and exits with status 2.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { Controller } from './controller/controller.js';
import { ClientNodeAdmin } from './controller/node-admin.js';
import { Reconciler } from './controller/reconciler.js';
import { defaultNodeImage } from './controller/resources.js';
import { loadKubeConfig, makeClients, type KubeClients } from './k8s/client.js';
import { KubeEventRecorder } from './k8s/events.js';
import { makeInformers } from './k8s/informers.js';
import { LeaderElector, type LeaseOwner } from './k8s/leader-election.js';
import { GROUP } from './k8s/paxosquorum.js';
import { Resources, resourcePath } from './k8s/rest.js';
import { OperatorMetrics, serveMetrics } from './metrics.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const boolean = z.union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')]);

/** The operator's configuration after flags and environment are merged. */
export const OperatorConfigSchema = z.object({
  kubeconfig: z.string().min(1).optional(),
  namespace: z.string().min(1).optional(),
  metricsPort: z.coerce.number().int().min(0).max(65535).default(8080),
  leaderElect: boolean.default(true),
  leaseName: z.string().min(1).default('paxos-operator'),
  leaseNamespace: z.string().min(1).optional(),
  /** The operator's own Deployment (in the lease namespace): the Lease is owned by it. */
  ownerDeployment: z.string().min(1).optional(),
  nodeImage: z.string().min(1).default(defaultNodeImage(VERSION)),
  /** Quorums reconciled at once. */
  workers: z.coerce.number().int().min(1).max(64).default(4),
  /** Deadline of one reconcile pass; a pass past it is aborted and its quorum retried. */
  reconcileTimeoutSeconds: z.coerce.number().int().min(5).max(600).default(60),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
}).refine((config) => !config.leaderElect || config.leaseNamespace !== undefined || config.kubeconfig !== undefined, {
  message: 'leader election needs --lease-namespace or the POD_NAMESPACE environment variable', path: ['leaseNamespace'],
});

export type OperatorConfig = z.infer<typeof OperatorConfigSchema>;

/** Thrown for bad flags or environment; main prints the message and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Merges `argv` flags over environment variables and validates them. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): OperatorConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        kubeconfig: { type: 'string' },
        namespace: { type: 'string' },
        'metrics-port': { type: 'string' },
        'leader-elect': { type: 'string' },
        'lease-name': { type: 'string' },
        'lease-namespace': { type: 'string' },
        'owner-deployment': { type: 'string' },
        'node-image': { type: 'string' },
        workers: { type: 'string' },
        'reconcile-timeout-seconds': { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
  const nonEmpty = (value: string | boolean | undefined): string | boolean | undefined => (value === '' ? undefined : value);
  const parsed = OperatorConfigSchema.safeParse({
    kubeconfig: nonEmpty(values.kubeconfig ?? env.KUBECONFIG),
    namespace: nonEmpty(values.namespace ?? env.WATCH_NAMESPACE),
    metricsPort: nonEmpty(values['metrics-port'] ?? env.METRICS_PORT),
    leaderElect: nonEmpty(values['leader-elect'] ?? env.LEADER_ELECT),
    leaseName: nonEmpty(values['lease-name'] ?? env.LEASE_NAME),
    leaseNamespace: nonEmpty(values['lease-namespace'] ?? env.POD_NAMESPACE),
    ownerDeployment: nonEmpty(values['owner-deployment'] ?? env.OPERATOR_DEPLOYMENT),
    nodeImage: nonEmpty(values['node-image'] ?? env.PAXOS_NODE_IMAGE),
    workers: nonEmpty(values.workers ?? env.WORKERS),
    reconcileTimeoutSeconds: nonEmpty(values['reconcile-timeout-seconds'] ?? env.RECONCILE_TIMEOUT_SECONDS),
    logLevel: nonEmpty(values['log-level'] ?? env.LOG_LEVEL),
  });
  if (!parsed.success) {
    const flag = (path: PropertyKey[]): string => `--${String(path[0] ?? '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new ConfigError(parsed.error.issues.map((issue) => `${flag(issue.path)}: ${issue.message}`).join('\n'));
  }
  return parsed.data;
}

/**
 * The owner reference of the Lease: the operator's Deployment, so that the garbage collector
 * removes the Lease on uninstall. Without it (no RBAC, not found) the Lease simply has no owner.
 */
async function deploymentOwner(clients: KubeClients, namespace: string, name: string, log: Logger): Promise<LeaseOwner | undefined> {
  try {
    const deployment = await clients.rest.get<{ metadata?: { uid?: string } }>(resourcePath(Resources.deployments, namespace, name));
    const uid = deployment.metadata?.uid;
    return uid === undefined ? undefined : { apiVersion: 'apps/v1', kind: 'Deployment', name, uid };
  } catch (error) {
    log.warn({ err: error, deployment: name }, 'cannot read the operator Deployment; the leader-election Lease gets no owner and outlives an uninstall');
    return undefined;
  }
}

/** Runs the operator until a signal arrives. */
export async function run(config: OperatorConfig, log: Logger): Promise<void> {
  const clients = makeClients(loadKubeConfig(config.kubeconfig));
  const metrics = new OperatorMetrics();
  const admin = new ClientNodeAdmin();
  const identity = `${process.env.POD_NAME ?? hostname()}_${randomBytes(4).toString('hex')}`;
  const events = new KubeEventRecorder(clients, log.child({ component: 'events' }), `${GROUP}/operator`, identity);
  // The callbacks run only after start(), when the controller below exists.
  const leaseNamespace = config.leaseNamespace ?? clients.rest.connection.namespace ?? 'default';
  const owner = config.leaderElect && config.ownerDeployment !== undefined
    ? await deploymentOwner(clients, leaseNamespace, config.ownerDeployment, log)
    : undefined;
  const elector = config.leaderElect
    ? new LeaderElector(clients, log.child({ component: 'leader-election' }), {
      namespace: leaseNamespace,
      name: config.leaseName,
      identity,
      ...(owner === undefined ? {} : { owner }),
      onStartedLeading: () => {
        metrics.setLeader(true);
        controller.startLeading();
      },
      // Called synchronously when leadership runs out: stopping the queue aborts every pass in
      // flight, so no admin call or write of this replica follows (see pass-scope.ts).
      onStoppedLeading: () => {
        metrics.setLeader(false);
        void controller.stopLeading();
      },
    })
    : undefined;
  const reconciler = new Reconciler({
    clients, admin, events, log: log.child({ component: 'reconciler' }), defaultImage: config.nodeImage, metrics,
    mayAct: () => elector === undefined || elector.isLeader,
  });
  const informers = makeInformers(clients, log.child({ component: 'informers' }), config.namespace);
  const controller = new Controller(informers, (key, signal) => reconciler.reconcile(key, signal), log.child({ component: 'controller' }), metrics,
    { concurrency: config.workers, passTimeoutMs: config.reconcileTimeoutSeconds * 1000 });
  const server = await serveMetrics(metrics, config.metricsPort, () => controller.synced);
  log.info({
    version: VERSION, namespace: config.namespace ?? '(all)', metricsPort: config.metricsPort, nodeImage: config.nodeImage,
    workers: config.workers, reconcileTimeoutSeconds: config.reconcileTimeoutSeconds,
  }, 'starting');

  await controller.startInformers();
  if (elector !== undefined) elector.start();
  else {
    metrics.setLeader(true);
    controller.startLeading();
  }

  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
  // Abort the passes in flight (their calls are cancelled; every step is idempotent and the
  // successor redoes it) before giving up the Lease, so no successor overlaps with them.
  await controller.stopLeading();
  await elector?.stop();
  await controller.stop();
  admin.close();
  clients.rest.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  log.info('stopped');
}

async function main(): Promise<void> {
  let config: OperatorConfig;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`paxos-operator: invalid configuration:\n${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = pino({ level: config.logLevel, base: { component: 'operator' } });
  try {
    await run(config, log);
    process.exit(0);
  } catch (error) {
    log.fatal({ err: error }, 'operator failed');
    process.exit(1);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  void main();
}
