/**
 * Starts a local control plane (and optionally the process kubelet) and keeps it running until
 * Ctrl-C, for poking at it by hand:
 *
 * ```sh
 * npx tsx test/k8s/cluster/up.ts                       # control plane only
 * npx tsx test/k8s/cluster/up.ts --kubelet --images images.json [--scheduler]
 * ```
 *
 * `images.json` maps image references (or repositories) to entrypoints, e.g.
 * `{"example/echo": {"entrypoint": ["node", "test/k8s/cluster/fixtures/echo-server.mjs"]}}`.
 * The kubelet needs root. Prints `export KUBECONFIG=...` once ready.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { LocalControlPlane } from './control-plane.js';
import { ProcessKubelet, type ImageEntrypoint } from './kubelet.js';

const { values } = parseArgs({
  options: {
    kubelet: { type: 'boolean', default: false },
    scheduler: { type: 'boolean', default: false },
    images: { type: 'string' },
    'run-dir': { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});

const log = pino({ level: process.env.LOCAL_CLUSTER_LOG ?? 'info' });
const cp = new LocalControlPlane();
let kubelet: ProcessKubelet | undefined;
let stopping = false;

async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info('stopping');
  await kubelet?.stop().catch((e: unknown) => log.error({ err: String(e) }, 'kubelet stop failed'));
  await cp.stop();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

await cp.start({
  logger: log,
  keepRunDir: values.keep,
  scheduler: values.scheduler,
  ...(values['run-dir'] ? { runDir: resolve(values['run-dir']) } : {}),
});
if (values.kubelet) {
  const pki = cp.pki;
  if (!pki) throw new Error('no PKI');
  const images = values.images
    ? (JSON.parse(readFileSync(values.images, 'utf8')) as Record<string, ImageEntrypoint>)
    : {};
  kubelet = new ProcessKubelet({
    endpoint: { server: cp.server, caFile: pki.ca.cert, certFile: pki.admin.cert, keyFile: pki.admin.key },
    runDir: join(cp.runDir, 'kubelet'),
    slot: cp.network?.slot,
    bindPods: !values.scheduler,
    images,
    logger: log.child({ component: 'kubelet' }),
  });
  await kubelet.start();
}
process.stdout.write(`\nexport KUBECONFIG=${cp.kubeconfigPath}\n# server ${cp.server}; Ctrl-C to stop\n`);
