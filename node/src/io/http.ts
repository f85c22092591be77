/**
 * The HTTP endpoint for Kubernetes probes and Prometheus: `/metrics`, `/healthz` (the process
 * is alive and its loop turns), `/readyz` (a leader is known and this node has caught up).
 */
import * as http from 'node:http';
import type { Registry } from 'prom-client';

/** What the endpoint asks of the node. */
export interface ProbeTarget {
  readonly ready: boolean;
  readonly registry: Registry;
}

/** Starts the server on `port` (0 = any) and resolves with it once listening. */
export function startHttp(host: string, port: number, target: ProbeTarget): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = target.ready;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      target.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': target.registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  // Bound slow clients: probes and scrapes are small.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
