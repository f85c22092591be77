/**
 * Container environment and downward-API values for the process kubelet.
 */
import type { Container, Pod, ResourceFieldSelector, Service } from './k8s-types.js';

/** Looks up ConfigMap / Secret data (already base64-decoded) by namespace and name. */
export interface DataSource {
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
}

/** Node capacity used when a container has no limit (downward API semantics). */
export interface NodeAllocatable {
  readonly cpu: string;
  readonly memory: string;
  readonly 'ephemeral-storage': string;
}

const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
};

/** Parses a Kubernetes quantity (`500m`, `1Gi`, `2`, `1e3`) into a number. */
export function parseQuantity(q: string): number {
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$/.exec(q.trim());
  if (!m) throw new Error(`bad quantity ${q}`);
  const mult = SUFFIX[m[2] ?? ''];
  if (mult === undefined) throw new Error(`bad quantity suffix in ${q}`);
  return Number(m[1]) * mult;
}

/** Evaluates a resourceFieldRef (limits.cpu, requests.memory, ...) like the kubelet does. */
export function resourceFieldValue(
  sel: ResourceFieldSelector,
  container: Container | undefined,
  node: NodeAllocatable,
): string {
  const [kind, res] = sel.resource.split('.') as [string, string];
  const fromSpec = kind === 'limits' ? container?.resources?.limits?.[res] : container?.resources?.requests?.[res];
  let value: number;
  if (fromSpec !== undefined) value = parseQuantity(fromSpec);
  else if (kind === 'limits') value = parseQuantity(node[res as keyof NodeAllocatable] ?? '0');
  else value = 0;
  const divisor = parseQuantity(sel.divisor ?? '1');
  return String(Math.ceil(value / divisor));
}

function labelMapText(m: Record<string, string> | undefined): string {
  return Object.entries(m ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join('\n');
}

/** Evaluates a downward-API fieldRef against a pod (with its current IPs). */
export function fieldRefValue(pod: Pod, fieldPath: string, podIP: string, hostIP: string): string {
  const md = pod.metadata;
  const sub = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (sub) {
    const map = sub[1] === 'labels' ? md.labels : md.annotations;
    return map?.[sub[2] ?? ''] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name':
      return md.name ?? '';
    case 'metadata.namespace':
      return md.namespace ?? '';
    case 'metadata.uid':
      return md.uid ?? '';
    case 'metadata.labels':
      return labelMapText(md.labels);
    case 'metadata.annotations':
      return labelMapText(md.annotations);
    case 'spec.nodeName':
      return pod.spec.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs':
      return podIP;
    case 'status.hostIP':
    case 'status.hostIPs':
      return hostIP;
    default:
      throw new Error(`unsupported fieldRef ${fieldPath}`);
  }
}

/** Expands `$(VAR)` references (`$$` escapes) as Kubernetes does for env values, command and args. */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && name in env ? (env[name] ?? '') : m;
  });
}

function envName(s: string): string {
  return s.toUpperCase().replace(/-/g, '_');
}

/** Docker-link style service variables (FOO_SERVICE_HOST, FOO_PORT_80_TCP, ...). */
export function serviceEnv(services: readonly Service[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const svc of services) {
    const ip = svc.spec.clusterIP;
    if (!ip || ip === 'None') continue;
    const n = envName(svc.metadata.name ?? '');
    const ports = svc.spec.ports ?? [];
    const first = ports[0];
    if (!first) continue;
    env[`${n}_SERVICE_HOST`] = ip;
    env[`${n}_SERVICE_PORT`] = String(first.port);
    for (const p of ports) {
      if (p.name) env[`${n}_SERVICE_PORT_${envName(p.name)}`] = String(p.port);
    }
    const proto = (first.protocol ?? 'TCP').toLowerCase();
    env[`${n}_PORT`] = `${proto}://${ip}:${first.port}`;
    for (const p of ports) {
      const pr = (p.protocol ?? 'TCP').toUpperCase();
      const pre = `${n}_PORT_${p.port}_${pr}`;
      env[pre] = `${pr.toLowerCase()}://${ip}:${p.port}`;
      env[`${pre}_PROTO`] = pr.toLowerCase();
      env[`${pre}_PORT`] = String(p.port);
      env[`${pre}_ADDR`] = ip;
    }
  }
  return env;
}

/** Inputs for {@link buildContainerEnv}. */
export interface EnvInputs {
  readonly pod: Pod;
  readonly container: Container;
  readonly podIP: string;
  readonly hostIP: string;
  readonly base: Record<string, string>;
  readonly services: readonly Service[];
  readonly data: DataSource;
  readonly node: NodeAllocatable;
}

/**
 * Builds a container's environment in Kubernetes order: base (PATH, HOSTNAME, image env),
 * service links, envFrom, then env (with `$(VAR)` expansion against what came before).
 */
export async function buildContainerEnv(inp: EnvInputs): Promise<Record<string, string>> {
  const { pod, container } = inp;
  const ns = pod.metadata.namespace ?? 'default';
  const env: Record<string, string> = { ...inp.base };
  const links = inp.pod.spec.enableServiceLinks === false
    ? inp.services.filter((s) => s.metadata.namespace === 'default' && s.metadata.name === 'kubernetes')
    : inp.services;
  Object.assign(env, serviceEnv(links));
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    if (!ref) continue;
    const data = from.configMapRef ? await inp.data.configMap(ns, ref.name) : await inp.data.secret(ns, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new Error(`${from.configMapRef ? 'configmap' : 'secret'} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ''}${k}`] = v;
  }
  for (const e of container.env ?? []) {
    if (e.valueFrom) {
      const vf = e.valueFrom;
      if (vf.fieldRef) env[e.name] = fieldRefValue(pod, vf.fieldRef.fieldPath, inp.podIP, inp.hostIP);
      else if (vf.resourceFieldRef) {
        const target = vf.resourceFieldRef.containerName
          ? pod.spec.containers.find((c) => c.name === vf.resourceFieldRef?.containerName)
          : container;
        env[e.name] = resourceFieldValue(vf.resourceFieldRef, target, inp.node);
      } else if (vf.configMapKeyRef || vf.secretKeyRef) {
        const ref = (vf.configMapKeyRef ?? vf.secretKeyRef) as { name: string; key: string; optional?: boolean };
        const data = vf.configMapKeyRef ? await inp.data.configMap(ns, ref.name) : await inp.data.secret(ns, ref.name);
        const v = data?.[ref.key];
        if (v === undefined) {
          if (ref.optional) continue;
          throw new Error(`couldn't find key ${ref.key} in ${vf.configMapKeyRef ? 'ConfigMap' : 'Secret'} ${ns}/${ref.name}`);
        }
        env[e.name] = v;
      }
    } else {
      env[e.name] = expandVars(e.value ?? '', env);
    }
  }
  return env;
}
