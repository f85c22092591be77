/**
 * End-to-end test of the process kubelet on the local control plane. Needs the binaries from
 * `npm run tools:build`, root (network namespaces) and iproute2; fails with a clear message
 * otherwise.
 */
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalControlPlane } from './control-plane.js';
import { ProcessKubelet } from './kubelet.js';
import type { Pod } from './k8s-types.js';
import { requireTools } from './tools.js';

const ECHO = fileURLToPath(new URL('./fixtures/echo-server.mjs', import.meta.url));
const GRPC = fileURLToPath(new URL('./fixtures/grpc-health.mjs', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function httpJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as T);
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`timeout ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

const manifest = `
apiVersion: v1
kind: Namespace
metadata: { name: x }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: cfg, namespace: x }
data: { mode: fast, "app.conf": "key=value\\n" }
---
apiVersion: v1
kind: Secret
metadata: { name: sec, namespace: x }
stringData: { password: s3cret }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: x }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ name: http, port: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: webc, namespace: x }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: web, namespace: x }
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy: { whenScaled: Delete, whenDeleted: Delete }
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: example/echo:1
        ports: [{ name: http, containerPort: 8080 }]
        env:
        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: POD_NS, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
        - { name: POD_IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }
        - { name: MEM_LIMIT, valueFrom: { resourceFieldRef: { resource: limits.memory, divisor: 1Mi } } }
        - { name: MODE, valueFrom: { configMapKeyRef: { name: cfg, key: mode } } }
        - { name: PASSWORD, valueFrom: { secretKeyRef: { name: sec, key: password } } }
        - { name: GREETING, value: "hello $(POD_NAME)" }
        - { name: TERM_DELAY_MS, value: "1500" }
        resources: { limits: { memory: 256Mi } }
        readinessProbe: { httpGet: { path: /readyz, port: http }, periodSeconds: 1, failureThreshold: 1 }
        livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 2 }
        volumeMounts:
        - { name: data, mountPath: /data }
        - { name: cfg, mountPath: /etc/echo, readOnly: true }
      volumes:
      - { name: cfg, configMap: { name: cfg } }
  volumeClaimTemplates:
  - metadata: { name: data }
    spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } }
`;

const podsManifest = `
apiVersion: v1
kind: Pod
metadata: { name: init-demo, namespace: x }
spec:
  restartPolicy: Never
  initContainers:
  - name: init
    image: example/sh
    command: [/bin/sh, -c, 'echo from-init > /work/out']
    volumeMounts: [{ name: work, mountPath: /work }]
  containers:
  - name: main
    image: example/sh
    command: [/bin/sh, -c, 'test "$(cat /work/out)" = from-init']
    volumeMounts: [{ name: work, mountPath: /work }]
  volumes: [{ name: work, emptyDir: {} }]
---
apiVersion: v1
kind: Pod
metadata: { name: as-user, namespace: x }
spec:
  restartPolicy: Never
  securityContext: { runAsUser: 1234, runAsGroup: 1234, fsGroup: 2000 }
  containers:
  - name: main
    image: example/sh
    command: [/bin/sh, -c, 'test "$(id -u)" = 1234 && touch /scratch/ok && test "$(stat -c %g /scratch/ok)" = 2000']
    volumeMounts: [{ name: scratch, mountPath: /scratch }]
  volumes: [{ name: scratch, emptyDir: {} }]
---
apiVersion: v1
kind: Pod
metadata: { name: host-net, namespace: x }
spec:
  hostNetwork: true
  restartPolicy: Never
  containers:
  - name: main
    image: example/sh
    command: [/bin/sh, -c, 'ip -o link show | grep -q kpbr']
---
apiVersion: v1
kind: Pod
metadata: { name: no-image, namespace: x }
spec:
  containers:
  - { name: main, image: example/not-mapped:1 }
---
apiVersion: v1
kind: Pod
metadata: { name: fails, namespace: x }
spec:
  restartPolicy: Never
  containers:
  - { name: main, image: example/sh, command: [/bin/sh, -c, 'exit 7'] }
---
apiVersion: v1
kind: Pod
metadata: { name: unhealthy, namespace: x }
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: example/echo:1
    livenessProbe: { exec: { command: [/bin/sh, -c, 'exit 1'] }, periodSeconds: 1, failureThreshold: 2 }
`;

describe('ProcessKubelet', () => {
  const cp = new LocalControlPlane();
  let kubelet: ProcessKubelet | undefined;

  const getPod = async (name: string): Promise<Pod | undefined> => {
    try {
      return JSON.parse(await cp.kubectl(['get', 'pod', '-n', 'x', name, '-o', 'json'])) as Pod;
    } catch {
      return undefined;
    }
  };
  const waitFor = async <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(300);
    }
  };
  const isReady = (p: Pod | undefined): boolean =>
    !!p && p.status?.phase === 'Running' && !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
  const podUrl = (p: Pod, path: string): string => `http://${p.status?.podIP}:8080${path}`;

  beforeAll(async () => {
    requireTools(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl']);
    if (process.getuid?.() !== 0) {
      throw new Error('The process kubelet test needs root (it creates network namespaces); run it as root.');
    }
    await cp.start();
    const pki = cp.pki;
    if (!pki) throw new Error('no PKI');
    kubelet = new ProcessKubelet({
      endpoint: { server: cp.server, caFile: pki.ca.cert, certFile: pki.admin.cert, keyFile: pki.admin.key },
      runDir: join(cp.runDir, 'kubelet'),
      slot: cp.network?.slot,
      images: {
        'example/echo': { entrypoint: [process.execPath, ECHO] },
        'example/grpc': { entrypoint: [process.execPath, GRPC] },
        'example/sh': { entrypoint: ['/bin/sh'] },
      },
      restartBackoff: { baseMs: 300, maxMs: 2000 },
    });
    await kubelet.start();
    await cp.kubectl(['apply', '-f', '-'], { input: manifest });
  }, 180_000);

  afterAll(async () => {
    await kubelet?.stop();
    await cp.stop();
  }, 60_000);

  it('registers a Ready node', async () => {
    const node = JSON.parse(await cp.kubectl(['get', 'node', 'local', '-o', 'json'])) as {
      status: { conditions: { type: string; status: string }[] };
    };
    expect(node.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
  });

  it('runs a StatefulSet to Ready with PVCs bound', async () => {
    const [p0, p1] = await waitFor('web-0 and web-1 ready', async () => {
      const a = await getPod('web-0');
      const b = await getPod('web-1');
      return isReady(a) && isReady(b) ? [a as Pod, b as Pod] : undefined;
    });
    expect(p0.status?.podIP).toMatch(new RegExp(`^10\\.244\\.${cp.network?.slot}\\.\\d+$`));
    expect(p1.status?.podIP).not.toBe(p0.status?.podIP);
    const pvc = await cp.kubectl(['get', 'pvc', '-n', 'x', 'data-web-0', '-o', 'jsonpath={.status.phase}']);
    expect(pvc).toBe('Bound');
  }, 90_000);

  it('gives containers hostname, downward-API env, service-account files and in-cluster API access', async () => {
    const p0 = (await getPod('web-0')) as Pod;
    const info = await httpJson<{ hostname: string; env: Record<string, string>; saFiles: string[]; namespaceFile: string }>(podUrl(p0, '/'));
    expect(info.hostname).toBe('web-0');
    expect(info.env.POD_NAME).toBe('web-0');
    expect(info.env.POD_NS).toBe('x');
    expect(info.env.POD_IP).toBe(p0.status?.podIP);
    expect(info.env.GREETING).toBe('hello web-0');
    expect(info.env.MEM_LIMIT).toBe('256');
    expect(info.env.MODE).toBe('fast');
    expect(info.env.PASSWORD).toBe('s3cret');
    expect(info.env.KUBERNETES_SERVICE_HOST).toBe(cp.network?.apiServiceIp);
    expect(info.env.WEBC_SERVICE_PORT).toBe('80');
    expect(info.saFiles.sort()).toEqual(['ca.crt', 'namespace', 'token']);
    expect(info.namespaceFile).toBe('x');
    const version = await httpJson<{ status: number; body: string }>(podUrl(p0, '/api?path=/version'));
    expect(version.status).toBe(200);
    expect(version.body).toContain('v1.35.4');
    const pods = await httpJson<{ status: number; body: string }>(podUrl(p0, '/api?path=/api/v1/namespaces/x/pods'));
    expect(pods.status).toBe(403); // authenticated as the pod's service account, which has no RBAC
    expect(pods.body).toContain('system:serviceaccount:x:default');
    const conf = await httpJson<{ data: string }>(podUrl(p0, `/read?path=${encodeURIComponent('/etc/echo/app.conf')}`));
    expect(conf.data).toBe('key=value\n');
    // exec in the container (its mounts, hostname and env).
    expect((await kubelet?.execInPod('x', 'web-0', ['/bin/sh', '-c', 'cat /etc/echo/app.conf; hostname; echo $POD_NAME']))).toBe('key=value\nweb-0\nweb-0\n');
  }, 30_000);

  it('resolves pod and service names and proxies ClusterIP services', async () => {
    const p0 = (await getPod('web-0')) as Pod;
    const p1 = (await getPod('web-1')) as Pod;
    const lookup = (name: string): Promise<string[] | { error: string }> =>
      httpJson(podUrl(p0, `/lookup?name=${encodeURIComponent(name)}`));
    expect(await lookup('web-1.web')).toEqual([p1.status?.podIP]);
    expect(await lookup('web-1.web.x.svc.cluster.local')).toEqual([p1.status?.podIP]);
    expect(await lookup('web-0.web.x.svc')).toEqual([p0.status?.podIP]); // its own name too
    const svc = await cp.kubectl(['get', 'svc', '-n', 'x', 'webc', '-o', 'jsonpath={.spec.clusterIP}']);
    expect(await lookup('webc')).toEqual([svc]);
    expect(await lookup('kubernetes.default.svc')).toEqual([cp.network?.apiServiceIp]);
    const viaService = await httpJson<{ status: number; body: string }>(podUrl(p0, `/fetch?url=${encodeURIComponent('http://webc/healthz')}`));
    expect(viaService.status).toBe(200);
  }, 30_000);

  it('backs PVCs with host folders', async () => {
    const p0 = (await getPod('web-0')) as Pod;
    await httpJson(podUrl(p0, `/write?path=${encodeURIComponent('/data/hello.txt')}&data=persisted`));
    const pvName = await cp.kubectl(['get', 'pvc', '-n', 'x', 'data-web-0', '-o', 'jsonpath={.spec.volumeName}']);
    const hostPath = await cp.kubectl(['get', 'pv', pvName, '-o', 'jsonpath={.spec.hostPath.path}']);
    expect(readFileSync(join(hostPath, 'hello.txt'), 'utf8')).toBe('persisted');
  });

  it('tracks readiness from the readiness probe', async () => {
    const p1 = (await getPod('web-1')) as Pod;
    await httpJson(podUrl(p1, '/set-ready?v=false'));
    await waitFor('web-1 not ready', async () => !isReady(await getPod('web-1')), 20_000);
    await httpJson(podUrl(p1, '/set-ready?v=true'));
    await waitFor('web-1 ready again', async () => isReady(await getPod('web-1')), 20_000);
  }, 45_000);

  it('restarts a crashed container and records its last state', async () => {
    const p0 = (await getPod('web-0')) as Pod;
    await httpJson(podUrl(p0, '/exit?code=3'));
    const after = await waitFor('web-0 restarted', async () => {
      const p = await getPod('web-0');
      const cs = p?.status?.containerStatuses?.[0];
      return cs && cs.restartCount >= 1 && isReady(p) ? cs : undefined;
    });
    expect(after.lastState.terminated?.exitCode).toBe(3);
    // The PVC contents survive the restart.
    const p = (await getPod('web-0')) as Pod;
    const read = await httpJson<{ data: string }>(podUrl(p, `/read?path=${encodeURIComponent('/data/hello.txt')}`));
    expect(read.data).toBe('persisted');
  }, 60_000);

  it('runs init containers, applies runAsUser/fsGroup, reports Succeeded/Failed, restarts on liveness failure', async () => {
    await cp.kubectl(['apply', '-f', '-'], { input: podsManifest });
    await waitFor('init-demo Succeeded', async () => (await getPod('init-demo'))?.status?.phase === 'Succeeded');
    await waitFor('as-user Succeeded', async () => (await getPod('as-user'))?.status?.phase === 'Succeeded');
    await waitFor('host-net Succeeded', async () => (await getPod('host-net'))?.status?.phase === 'Succeeded');
    const noImage = await waitFor('no-image ErrImagePull', async () => {
      const p = await getPod('no-image');
      return p?.status?.containerStatuses?.[0]?.state.waiting?.reason === 'ErrImagePull' ? p : undefined;
    });
    expect(noImage.status?.phase).toBe('Pending');
    const failed = await waitFor('fails Failed', async () => {
      const p = await getPod('fails');
      return p?.status?.phase === 'Failed' ? p : undefined;
    });
    expect(failed.status?.containerStatuses?.[0]?.state.terminated?.exitCode).toBe(7);
    await waitFor('unhealthy restarted', async () => {
      const cs = (await getPod('unhealthy'))?.status?.containerStatuses?.[0];
      return !!cs && cs.restartCount >= 1;
    });
  }, 90_000);

  it('supports kubectl exec (stdout, stderr, exit code, stdin)', async () => {
    expect(await cp.kubectl(['exec', '-n', 'x', 'web-0', '--', '/bin/sh', '-c', 'echo $POD_NAME; cat /etc/echo/app.conf'])).toBe(
      'web-0\nkey=value\n',
    );
    expect(await cp.kubectl(['exec', '-i', '-n', 'x', 'web-0', '--', 'cat'], { input: 'from stdin\n' })).toBe('from stdin\n');
    await expect(cp.kubectl(['exec', '-n', 'x', 'web-0', '--', '/bin/sh', '-c', 'echo oops >&2; exit 3'])).rejects.toThrow(
      /oops[\s\S]*exit code 3/,
    );
  }, 30_000);

  it('serves container logs to kubectl logs (current and previous)', async () => {
    const logs = await cp.kubectl(['logs', '-n', 'x', 'web-0']);
    expect(logs).toContain('echo-server listening on 8080');
    // web-0 was restarted by the crash test above.
    const prev = await cp.kubectl(['logs', '-n', 'x', 'web-0', '--previous']);
    expect(prev).toContain('echo-server listening on 8080');
    const tail = await cp.kubectl(['logs', '-n', 'x', 'web-0', '--tail=1']);
    expect(tail.trim().split('\n')).toHaveLength(1);
  });

  it('gates readiness on grpc and startup probes and runs preStop hooks', async () => {
    await cp.kubectl(['apply', '-f', '-'], { input: `
apiVersion: v1
kind: Pod
metadata: { name: grpc, namespace: x }
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: example/grpc
    env: [{ name: HEALTHY_AFTER_MS, value: "2500" }]
    startupProbe: { tcpSocket: { port: 9090 }, periodSeconds: 1, failureThreshold: 30 }
    readinessProbe: { grpc: { port: 9090 }, periodSeconds: 1 }
    lifecycle:
      preStop: { exec: { command: [/bin/sh, -c, 'echo prestop-ran > /hooks/prestop'] } }
    volumeMounts: [{ name: hooks, mountPath: /hooks }]
  volumes: [{ name: hooks, hostPath: { path: ${JSON.stringify(join(cp.runDir, 'hooks'))}, type: DirectoryOrCreate } }]
` });
    const t0 = Date.now();
    await waitFor('grpc started', async () => (await getPod('grpc'))?.status?.containerStatuses?.[0]?.started === true, 30_000);
    expect(isReady(await getPod('grpc'))).toBe(false);
    await waitFor('grpc ready', async () => isReady(await getPod('grpc')), 30_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    await cp.kubectl(['delete', 'pod', '-n', 'x', 'grpc', '--wait=true']);
    expect(await getPod('grpc')).toBeUndefined();
    expect(readFileSync(join(cp.runDir, 'hooks', 'prestop'), 'utf8')).toBe('prestop-ran\n');
  }, 60_000);

  it('terminates gracefully on delete and the StatefulSet replaces the pod', async () => {
    const before = (await getPod('web-1')) as Pod;
    const logPath = kubelet?.logPath('x', 'web-1', 'web');
    const t0 = Date.now();
    await cp.kubectl(['delete', 'pod', '-n', 'x', 'web-1', '--wait=true']);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(1400); // TERM_DELAY_MS=1500 inside the grace period
    expect(took).toBeLessThan(10_000);
    expect(logPath && !existsSync(logPath)).toBe(true); // pod folder cleaned up
    const replaced = await waitFor('web-1 replaced and ready', async () => {
      const p = await getPod('web-1');
      return p && p.metadata.uid !== before.metadata.uid && isReady(p) ? p : undefined;
    });
    expect(replaced.metadata.uid).not.toBe(before.metadata.uid);
  }, 60_000);

  it('deletes the PVC, PV and host folder when the StatefulSet scales down', async () => {
    const pvName = await cp.kubectl(['get', 'pvc', '-n', 'x', 'data-web-1', '-o', 'jsonpath={.spec.volumeName}']);
    const hostPath = await cp.kubectl(['get', 'pv', pvName, '-o', 'jsonpath={.spec.hostPath.path}']);
    expect(existsSync(hostPath)).toBe(true);
    await cp.kubectl(['scale', 'statefulset', '-n', 'x', 'web', '--replicas=1']);
    await waitFor('PV of data-web-1 deleted', async () => {
      try {
        await cp.kubectl(['get', 'pv', pvName]);
        return false;
      } catch {
        return true;
      }
    });
    await waitFor('host folder removed', async () => !existsSync(hostPath), 10_000);
    expect(await getPod('web-1')).toBeUndefined();
    expect(isReady(await getPod('web-0'))).toBe(true);
  }, 90_000);
});
