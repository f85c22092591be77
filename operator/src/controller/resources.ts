/**
 * The objects a PaxosQuorum owns, built from its spec. Pure functions: no I/O, no clock.
 *
 * Each builder stamps a hash of what it decided into an annotation, so the reconciler detects
 * drift by comparing hashes rather than diffing against fields the API server defaulted.
 */
import { createHash } from 'node:crypto';
import type { V1ConfigMap, V1PodDisruptionBudget, V1Service, V1StatefulSet, V1Container, V1OwnerReference, V1PodSpec } from '@kubernetes/client-node';
import { votedBefore } from '../../../node/src/io/config.js';
import { formatConfig, type NodeConfig } from '../plan/config.js';
import { API_VERSION, GROUP, KIND, type PaxosQuorum, type PaxosQuorumSpec } from '../k8s/paxosquorum.js';
import { APP_NAME, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY } from '../k8s/informers.js';

/** Where the operator calls a node's admin API: `spec.ports.admin`, else the client port (one gRPC server). */
export function adminPort(spec: PaxosQuorumSpec): number {
  return spec.ports.admin ?? spec.ports.client;
}
export const DATA_DIR = '/var/lib/paxos';
export const CONTAINER_NAME = 'paxos';
/** Key of the bootstrap ConfigMap that holds the JSON `{epoch, members, prior?}` a new pod boots on. */
export const BOOTSTRAP_CONFIG_KEY = 'config';
/** Key of the bootstrap ConfigMap: "true" when a new pod joins a running quorum (learner catch-up first). */
export const BOOTSTRAP_JOINING_KEY = 'joining';
/** Annotation holding the hash of the fields the operator manages on an owned object. */
export const SPEC_HASH_ANNOTATION = `${GROUP}/spec-hash`;

/** The default node image, `paxosquorum/node:<version>`. */
export function defaultNodeImage(version: string): string {
  return `paxosquorum/node:${version}`;
}

/** Names of the owned objects of PaxosQuorum `name`. */
export function names(name: string): { statefulSet: string; peerService: string; clientService: string; configMap: string; pdb: string } {
  return { statefulSet: name, peerService: `${name}-peers`, clientService: name, configMap: `${name}-bootstrap`, pdb: name };
}

/** Labels selecting the pods of one quorum (the StatefulSet's immutable selector). */
export function selectorLabels(name: string): Record<string, string> {
  return { [LABEL_NAME]: APP_NAME, [LABEL_INSTANCE]: name };
}

/** Labels on every owned object and pod. */
export function labels(name: string): Record<string, string> {
  return { ...selectorLabels(name), [LABEL_MANAGED_BY]: MANAGED_BY };
}

/** `app.kubernetes.io/name=paxos,app.kubernetes.io/instance=NAME`, for `status.selector`. */
export function selectorString(name: string): string {
  return Object.entries(selectorLabels(name)).map(([key, value]) => `${key}=${value}`).join(',');
}

/** The pod name of `ordinal`. */
export function podName(name: string, ordinal: number): string {
  return `${name}-${ordinal}`;
}

/** The ordinal of a pod of StatefulSet `name`, or undefined if the pod is not one of its pods. */
export function podOrdinal(name: string, pod: string): number | undefined {
  if (!pod.startsWith(`${name}-`)) return undefined;
  const suffix = pod.slice(name.length + 1);
  return /^(0|[1-9]\d*)$/.test(suffix) ? Number(suffix) : undefined;
}

export function ownerReference(quorum: PaxosQuorum): V1OwnerReference {
  return { apiVersion: API_VERSION, kind: KIND, name: quorum.metadata.name, uid: quorum.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** A stable short hash of a JSON value (object keys sorted). */
export function hashOf(value: unknown): string {
  return createHash('sha256').update(stableJson(value)).digest('hex').slice(0, 16);
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function meta(quorum: PaxosQuorum, name: string, hashed: unknown): V1StatefulSet['metadata'] {
  return {
    name,
    namespace: quorum.metadata.namespace,
    labels: labels(quorum.metadata.name),
    annotations: { [SPEC_HASH_ANNOTATION]: hashOf(hashed) },
    ownerReferences: [ownerReference(quorum)],
  };
}

/** The image pods should run: `spec.image`, or the operator's default. */
export function desiredImage(spec: PaxosQuorumSpec, defaultImage: string): string {
  return spec.image !== '' ? spec.image : defaultImage;
}

/**
 * The node container. Its command is the image's entrypoint. The node takes its id from the
 * `-N` suffix of HOSTNAME (the pod name in a StatefulSet), its client port from
 * PAXOS_CLIENT_PORT (without it the node serves Kv/Admin/Health on the peer port).
 */
export function nodeContainer(quorum: PaxosQuorum, spec: PaxosQuorumSpec, image: string): V1Container {
  const { name, namespace } = quorum.metadata;
  const n = names(name);
  const fromBootstrap = (key: string) => ({ configMapKeyRef: { name: n.configMap, key } });
  const { ports } = spec;
  return {
    name: CONTAINER_NAME,
    image,
    imagePullPolicy: spec.imagePullPolicy,
    // The node reads these two only as flags (node/src/io/config.ts); the env copies below are the
    // agreed contract and cost nothing.
    args: [`--election-timeout-ms=${spec.tuning.electionTimeoutMs}`, `--heartbeat-ms=${spec.tuning.heartbeatMs}`],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'PAXOS_DATA_DIR', value: DATA_DIR },
      { name: 'PAXOS_PEER_TEMPLATE', value: `${name}-{i}.${n.peerService}.${namespace}.svc:${ports.peer}` },
      { name: 'PAXOS_CLIENT_PORT', value: String(ports.client) },
      { name: 'PAXOS_PEER_PORT', value: String(ports.peer) },
      { name: 'PAXOS_METRICS_PORT', value: String(ports.metrics) },
      { name: 'PAXOS_BOOTSTRAP_CONFIG', valueFrom: fromBootstrap(BOOTSTRAP_CONFIG_KEY) },
      { name: 'PAXOS_JOINING', valueFrom: fromBootstrap(BOOTSTRAP_JOINING_KEY) },
      { name: 'PAXOS_ELECTION_TIMEOUT_MS', value: String(spec.tuning.electionTimeoutMs) },
      { name: 'PAXOS_HEARTBEAT_MS', value: String(spec.tuning.heartbeatMs) },
      { name: 'PAXOS_SNAPSHOT_THRESHOLD', value: String(spec.tuning.snapshotThresholdEntries) },
      // The node refuses to start without TLS files or this explicit opt-out; the operator does
      // not issue certificates yet (issue 10), so its quorums run plaintext as before.
      { name: 'PAXOS_INSECURE', value: 'true' },
    ],
    ports: [
      { name: 'client', containerPort: ports.client },
      { name: 'peer', containerPort: ports.peer },
      { name: 'metrics', containerPort: ports.metrics },
      ...(ports.admin !== undefined && ports.admin !== ports.client && ports.admin !== ports.peer
        ? [{ name: 'admin', containerPort: ports.admin }] : []),
    ],
    readinessProbe: { httpGet: { path: '/readyz', port: ports.metrics }, periodSeconds: 2, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: '/healthz', port: ports.metrics }, periodSeconds: 10, failureThreshold: 6, initialDelaySeconds: 10 },
    volumeMounts: [{ name: 'data', mountPath: DATA_DIR }],
    resources: spec.resources as V1Container['resources'],
  };
}

/**
 * The StatefulSet. `replicas` is passed in: it is never derived from the spec here, because
 * only the planner's steps change it (one pod at a time).
 */
export function statefulSet(quorum: PaxosQuorum, spec: PaxosQuorumSpec, image: string, replicas: number): V1StatefulSet {
  const name = quorum.metadata.name;
  const { pod } = spec;
  const template: NonNullable<V1StatefulSet['spec']>['template'] = {
    // Our labels last: a user label cannot break the selector.
    metadata: { labels: { ...pod.labels, ...labels(name) }, annotations: pod.annotations },
    spec: {
      containers: [nodeContainer(quorum, spec, image)],
      terminationGracePeriodSeconds: 30,
      affinity: pod.affinity as V1PodSpec['affinity'],
      tolerations: pod.tolerations as V1PodSpec['tolerations'],
      nodeSelector: pod.nodeSelector,
    },
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: meta(quorum, names(name).statefulSet, template),
    spec: {
      replicas,
      serviceName: names(name).peerService,
      // The operator alone decides order, by changing replicas one at a time.
      podManagementPolicy: 'Parallel',
      // Pods are replaced only when the operator deletes them (image roll, leader last).
      updateStrategy: { type: 'OnDelete' },
      persistentVolumeClaimRetentionPolicy: { whenScaled: 'Delete', whenDeleted: 'Delete' },
      selector: { matchLabels: selectorLabels(name) },
      template,
      volumeClaimTemplates: [{
        metadata: { name: 'data', labels: labels(name) },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: spec.storage.storageClassName,
          resources: { requests: { storage: spec.storage.size } },
        },
      }],
    },
  };
}

/** The headless Service giving each pod a stable DNS name; not-ready pods included, so peers find a pod that is catching up. */
export function peerService(quorum: PaxosQuorum, spec: PaxosQuorumSpec): V1Service {
  const name = quorum.metadata.name;
  const { ports } = spec;
  const serviceSpec: V1Service['spec'] = {
    clusterIP: 'None',
    publishNotReadyAddresses: true,
    selector: selectorLabels(name),
    ports: [{ name: 'peer', port: ports.peer, targetPort: ports.peer }, { name: 'client', port: ports.client, targetPort: ports.client }],
  };
  return { apiVersion: 'v1', kind: 'Service', metadata: meta(quorum, names(name).peerService, serviceSpec), spec: serviceSpec };
}

/** The client Service: ready pods only. */
export function clientService(quorum: PaxosQuorum, spec: PaxosQuorumSpec): V1Service {
  const name = quorum.metadata.name;
  const serviceSpec: V1Service['spec'] = {
    selector: selectorLabels(name),
    ports: [{ name: 'client', port: spec.ports.client, targetPort: spec.ports.client }],
  };
  return { apiVersion: 'v1', kind: 'Service', metadata: meta(quorum, names(name).clientService, serviceSpec), spec: serviceSpec };
}

/** What the bootstrap ConfigMap tells the next pod that starts. */
export interface Bootstrap {
  readonly config: NodeConfig;
  /** False only for the pods of a brand-new quorum, which elect a leader among themselves. */
  readonly joining: boolean;
  /**
   * New servers of the change in progress that have already run on `config`: one of them that
   * starts on an empty disk lost it, and must not vote until repaired (ADR 0007). Carried in the
   * configuration's JSON (`started`), which older nodes ignore.
   */
  readonly started?: readonly number[];
}

export function bootstrapData(bootstrap: Bootstrap): Record<string, string> {
  const { epoch, members, prior } = bootstrap.config;
  const started = bootstrap.started !== undefined && bootstrap.started.length > 0 ? { started: [...bootstrap.started].sort((a, b) => a - b) } : {};
  return {
    // While a change runs, a new server's first empty start waits for AdminService.Register
    // before it votes (without `prior`, an empty start of a member is a loss anyway).
    [BOOTSTRAP_CONFIG_KEY]: JSON.stringify(prior === undefined ? { epoch, members, ...started } : { epoch, members, prior, ...started, ...(bootstrap.joining ? { register: true } : {}) }),
    [BOOTSTRAP_JOINING_KEY]: String(bootstrap.joining),
  };
}

/**
 * Whether an empty start of `ordinal` under `bootstrap` is recognised by the node as a lost
 * disk (node/src/io/config.ts `lostDataAtStart`): it joins as a voter of the running quorum, or
 * as a new server named in `started`. Only then may the operator register it.
 */
export function emptyStartIsLoss(bootstrap: Bootstrap, ordinal: number): boolean {
  return bootstrap.joining && votedBefore({ ...bootstrap.config, ...(bootstrap.started === undefined ? {} : { started: bootstrap.started }) }, ordinal);
}

/** Parses the ConfigMap's data back; undefined if malformed. */
export function parseBootstrap(data: Record<string, string> | undefined): Bootstrap | undefined {
  try {
    const raw = JSON.parse(data?.[BOOTSTRAP_CONFIG_KEY] ?? '') as { epoch?: unknown; members?: unknown; prior?: unknown; started?: unknown };
    if (typeof raw.epoch !== 'number' || !Array.isArray(raw.members)) return undefined;
    const config: NodeConfig = Array.isArray(raw.prior)
      ? { epoch: raw.epoch, members: raw.members as number[], prior: raw.prior as number[] }
      : { epoch: raw.epoch, members: raw.members as number[] };
    const started = Array.isArray(raw.started) ? { started: raw.started.filter((o): o is number => typeof o === 'number') } : {};
    return { config, joining: data?.[BOOTSTRAP_JOINING_KEY] === 'true', ...started };
  } catch {
    return undefined;
  }
}

export function describeBootstrap(bootstrap: Bootstrap): string {
  const started = bootstrap.started !== undefined && bootstrap.started.length > 0 ? `, started ${bootstrap.started.join(',')}` : '';
  return `${formatConfig(bootstrap.config)} epoch ${bootstrap.config.epoch}${bootstrap.joining ? ', joining' : ''}${started}`;
}

export function configMap(quorum: PaxosQuorum, bootstrap: Bootstrap): V1ConfigMap {
  const data = bootstrapData(bootstrap);
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(quorum, names(quorum.metadata.name).configMap, data), data };
}

/**
 * The PodDisruptionBudget: a majority of the pods must stay up. While a membership change is in
 * progress no voluntary disruption is allowed at all: the operator itself pauses one node per
 * step, and a joint quorum needs a majority of the old and of the new membership, which a
 * simple majority of the pods does not guarantee.
 */
export function podDisruptionBudget(quorum: PaxosQuorum, replicas: number, reconfiguring: boolean): V1PodDisruptionBudget {
  const name = quorum.metadata.name;
  const minAvailable = reconfiguring ? Math.max(replicas, 1) : Math.floor(replicas / 2) + 1;
  const spec: V1PodDisruptionBudget['spec'] = { minAvailable, selector: { matchLabels: selectorLabels(name) } };
  return { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: meta(quorum, names(name).pdb, spec), spec };
}
