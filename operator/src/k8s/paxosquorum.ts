/**
 * The PaxosQuorum custom resource as the operator reads and writes it: group/version constants,
 * the spec parsed with defaults, the status shape, and typed calls (get, merge-patch status
 * through the status subresource, finalizer edits).
 *
 * The spec is validated by the CRD's OpenAPI schema on admission; the zod schema here only fills
 * defaults and guards against an older schema, so an object that fails it is reported on the
 * resource (condition + Event) and never crashes the operator.
 */
import { z } from 'zod';
import type { KubeClients } from './client.js';
import { FIELD_MANAGER } from './client.js';
import { resourcePath, type Resource } from './rest.js';
import { GROUP, KIND, PLURAL, VERSION } from '../api/types.js';
import type { PaxosQuorumSpec as ApiSpec, PaxosQuorumStatus } from '../api/types.js';
import { getOrUndefined, kubeCall } from './errors.js';

export { GROUP, KIND, PLURAL, VERSION };
export const API_VERSION = `${GROUP}/${VERSION}`;
export const PAXOSQUORUMS: Resource = { group: GROUP, version: VERSION, plural: PLURAL };
/** Put on every PaxosQuorum the operator manages; removed once owned objects are cleaned up. */
export const FINALIZER = `${GROUP}/finalizer`;

/** `spec.reconfiguration.mode`; see the planner's `ReconfigurationMode`. */
export const ReconfigurationModeSchema = z.enum(['Transfer', 'Election']);

/** The spec with every default filled in (the same defaults as operator/crd/paxosquorums.yaml). */
export const PaxosQuorumSpecSchema = z.object({
  replicas: z.number().int().min(1).max(15).default(3),
  image: z.string().optional().default(''),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  resources: z.record(z.string(), z.unknown()).optional(),
  storage: z.object({
    size: z.string().default('1Gi'),
    storageClassName: z.string().optional(),
  }).default({ size: '1Gi' }),
  ports: z.object({
    client: z.number().int().min(1).max(65535).default(7000),
    peer: z.number().int().min(1).max(65535).default(7001),
    /** The admin API's port; the node serves it on the client port unless told otherwise. */
    admin: z.number().int().min(1).max(65535).optional(),
    metrics: z.number().int().min(1).max(65535).default(9090),
  }).default({ client: 7000, peer: 7001, metrics: 9090 }),
  tuning: z.object({
    electionTimeoutMs: z.number().int().positive().default(1000),
    heartbeatMs: z.number().int().positive().default(100),
    snapshotThresholdEntries: z.number().int().positive().default(10000),
  }).default({ electionTimeoutMs: 1000, heartbeatMs: 100, snapshotThresholdEntries: 10000 }),
  reconfiguration: z.object({
    mode: ReconfigurationModeSchema.default('Transfer'),
    stepTimeoutSeconds: z.number().int().positive().default(120),
  }).default({ mode: 'Transfer', stepTimeoutSeconds: 120 }),
  pod: z.object({
    affinity: z.record(z.string(), z.unknown()).optional(),
    tolerations: z.array(z.record(z.string(), z.unknown())).optional(),
    nodeSelector: z.record(z.string(), z.string()).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }).default({}),
}).loose();

export type PaxosQuorumSpec = z.infer<typeof PaxosQuorumSpecSchema>;

/** Compile-time check: a parsed spec is a valid spec of the API types (operator/src/api/types.ts). */
type SpecMatchesApi = PaxosQuorumSpec extends ApiSpec ? true : never;
const _specMatchesApi: SpecMatchesApi = true;

export type { Condition, MemberStatus, OperationStatus, PaxosQuorumStatus, Phase } from '../api/types.js';

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  generation?: number;
  resourceVersion?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A PaxosQuorum object as returned by the API; `spec` is raw until parsed with {@link parseSpec}. */
export interface PaxosQuorum {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Record<string, unknown>;
  status?: PaxosQuorumStatus;
}

/** The spec was rejected by the operator's own validation (an older CRD let it through). */
export class InvalidSpecError extends Error {
  override readonly name = 'InvalidSpecError';
}

/** Parses `spec` and fills defaults. @throws InvalidSpecError with a readable message. */
export function parseSpec(spec: unknown): PaxosQuorumSpec {
  const parsed = PaxosQuorumSpecSchema.safeParse(spec ?? {});
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => `spec.${issue.path.join('.')}: ${issue.message}`);
  throw new InvalidSpecError(issues.join('; '));
}

/** Typed access to PaxosQuorum objects. */
export class PaxosQuorumApi {
  constructor(private readonly clients: KubeClients) {}

  /** The object, or `undefined` when it does not exist (deleted: nothing to do). */
  async get(namespace: string, name: string): Promise<PaxosQuorum | undefined> {
    return getOrUndefined(`get ${KIND} ${namespace}/${name}`, () =>
      this.clients.rest.get<PaxosQuorum>(resourcePath(PAXOSQUORUMS, namespace, name)));
  }

  /**
   * One JSON merge patch of `status` through the status subresource. `null` values delete
   * fields. The patch carries the resourceVersion read at the start of the pass, so a status
   * computed from a stale read fails with 409 and the pass is retried instead of overwriting.
   */
  async patchStatus(quorum: PaxosQuorum, status: Partial<Record<keyof PaxosQuorumStatus, unknown>>): Promise<PaxosQuorum> {
    const { namespace, name, resourceVersion } = quorum.metadata;
    return kubeCall(`patch ${KIND} ${namespace}/${name} status`, () =>
      this.clients.rest.mergePatch<PaxosQuorum>(resourcePath(PAXOSQUORUMS, namespace, name, 'status'),
        { metadata: { resourceVersion }, status }, { fieldManager: FIELD_MANAGER }));
  }

  /** Replaces `metadata.finalizers`, guarded by resourceVersion (409 if someone else changed the object). */
  async setFinalizers(quorum: PaxosQuorum, finalizers: readonly string[]): Promise<PaxosQuorum> {
    const { namespace, name, resourceVersion } = quorum.metadata;
    return kubeCall(`patch ${KIND} ${namespace}/${name} finalizers`, () =>
      this.clients.rest.mergePatch<PaxosQuorum>(resourcePath(PAXOSQUORUMS, namespace, name),
        { metadata: { resourceVersion, finalizers: [...finalizers] } }, { fieldManager: FIELD_MANAGER }));
  }
}

/**
 * Adds the finalizer if missing. Returns the list to write, or `undefined` when nothing changes
 * (controller-runtime's `AddFinalizer` returning false).
 */
export function withFinalizer(meta: ObjectMeta): string[] | undefined {
  const current = meta.finalizers ?? [];
  return current.includes(FINALIZER) ? undefined : [...current, FINALIZER];
}

/** Removes the finalizer if present; `undefined` when nothing changes. */
export function withoutFinalizer(meta: ObjectMeta): string[] | undefined {
  const current = meta.finalizers ?? [];
  return current.includes(FINALIZER) ? current.filter((f) => f !== FINALIZER) : undefined;
}
