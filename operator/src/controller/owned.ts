/**
 * Creates the owned objects that are missing and patches the ones that drifted from what the
 * spec asks for. Drift is detected by the hash annotation the builders stamp (see resources.ts),
 * so a second pass over an unchanged spec writes nothing.
 *
 * What this never touches: StatefulSet `replicas` (only planner steps change it), immutable
 * fields (selector, serviceName, volumeClaimTemplates), and the bootstrap ConfigMap's data once
 * it exists (the StartPod step writes it).
 */
import type { KubernetesObject, V1ConfigMap, V1PodDisruptionBudget, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { KubeClients } from '../k8s/client.js';
import { FIELD_MANAGER, MERGE_PATCH } from '../k8s/client.js';
import { getOrUndefined, isAlreadyExists, kubeCall } from '../k8s/errors.js';
import type { PaxosQuorum } from '../k8s/paxosquorum.js';
import { SPEC_HASH_ANNOTATION, names } from './resources.js';

/** The owned objects as they are now (after any create or patch of this pass). */
export interface OwnedObjects {
  statefulSet?: V1StatefulSet;
  peerService?: V1Service;
  clientService?: V1Service;
  configMap?: V1ConfigMap;
  pdb?: V1PodDisruptionBudget;
}

/** An owned object exists but is controlled by something else; the operator will not take it over. */
export class OwnershipConflictError extends Error {
  override readonly name = 'OwnershipConflictError';
}

/** Reads the owned objects; absent ones are undefined. */
export async function readOwned(clients: KubeClients, quorum: PaxosQuorum): Promise<OwnedObjects> {
  const { namespace, name } = quorum.metadata;
  const n = names(name);
  const [statefulSet, peerService, clientService, configMap, pdb] = await Promise.all([
    getOrUndefined(`get StatefulSet ${namespace}/${n.statefulSet}`, () => clients.apps.readNamespacedStatefulSet({ namespace, name: n.statefulSet })),
    getOrUndefined(`get Service ${namespace}/${n.peerService}`, () => clients.core.readNamespacedService({ namespace, name: n.peerService })),
    getOrUndefined(`get Service ${namespace}/${n.clientService}`, () => clients.core.readNamespacedService({ namespace, name: n.clientService })),
    getOrUndefined(`get ConfigMap ${namespace}/${n.configMap}`, () => clients.core.readNamespacedConfigMap({ namespace, name: n.configMap })),
    getOrUndefined(`get PodDisruptionBudget ${namespace}/${n.pdb}`, () => clients.policy.readNamespacedPodDisruptionBudget({ namespace, name: n.pdb })),
  ]);
  return { statefulSet, peerService, clientService, configMap, pdb };
}

/** Throws {@link OwnershipConflictError} when `object` exists and is not controlled by `quorum`. */
export function checkOwner(quorum: PaxosQuorum, kind: string, object: KubernetesObject | undefined): void {
  if (object === undefined) return;
  const controller = object.metadata?.ownerReferences?.find((ref) => ref.controller === true);
  if (controller?.uid === quorum.metadata.uid) return;
  const by = controller === undefined ? 'no controller' : `${controller.kind} ${controller.name}`;
  throw new OwnershipConflictError(`${kind} ${object.metadata?.namespace}/${object.metadata?.name} already exists and is controlled by ${by}`);
}

function hashOf(object: KubernetesObject | undefined): string | undefined {
  return object?.metadata?.annotations?.[SPEC_HASH_ANNOTATION];
}

/** Whether `actual` must be patched to match `desired`. */
export function drifted(actual: KubernetesObject, desired: KubernetesObject): boolean {
  return hashOf(actual) !== hashOf(desired);
}

type Ns = { namespace: string };

/** Create/patch calls for one kind. */
interface KindOps<T extends KubernetesObject> {
  readonly kind: string;
  create(ns: Ns, body: T): Promise<T>;
  patch(ns: Ns & { name: string }, body: object): Promise<T>;
  read(ns: Ns & { name: string }): Promise<T>;
}

export function statefulSetOps(clients: KubeClients): KindOps<V1StatefulSet> {
  return {
    kind: 'StatefulSet',
    create: ({ namespace }, body) => clients.apps.createNamespacedStatefulSet({ namespace, body, fieldManager: FIELD_MANAGER }),
    patch: ({ namespace, name }, body) => clients.apps.patchNamespacedStatefulSet({ namespace, name, body, fieldManager: FIELD_MANAGER }, MERGE_PATCH),
    read: ({ namespace, name }) => clients.apps.readNamespacedStatefulSet({ namespace, name }),
  };
}

export function serviceOps(clients: KubeClients): KindOps<V1Service> {
  return {
    kind: 'Service',
    create: ({ namespace }, body) => clients.core.createNamespacedService({ namespace, body, fieldManager: FIELD_MANAGER }),
    patch: ({ namespace, name }, body) => clients.core.patchNamespacedService({ namespace, name, body, fieldManager: FIELD_MANAGER }, MERGE_PATCH),
    read: ({ namespace, name }) => clients.core.readNamespacedService({ namespace, name }),
  };
}

export function configMapOps(clients: KubeClients): KindOps<V1ConfigMap> {
  return {
    kind: 'ConfigMap',
    create: ({ namespace }, body) => clients.core.createNamespacedConfigMap({ namespace, body, fieldManager: FIELD_MANAGER }),
    patch: ({ namespace, name }, body) => clients.core.patchNamespacedConfigMap({ namespace, name, body, fieldManager: FIELD_MANAGER }, MERGE_PATCH),
    read: ({ namespace, name }) => clients.core.readNamespacedConfigMap({ namespace, name }),
  };
}

export function pdbOps(clients: KubeClients): KindOps<V1PodDisruptionBudget> {
  return {
    kind: 'PodDisruptionBudget',
    create: ({ namespace }, body) => clients.policy.createNamespacedPodDisruptionBudget({ namespace, body, fieldManager: FIELD_MANAGER }),
    patch: ({ namespace, name }, body) => clients.policy.patchNamespacedPodDisruptionBudget({ namespace, name, body, fieldManager: FIELD_MANAGER }, MERGE_PATCH),
    read: ({ namespace, name }) => clients.policy.readNamespacedPodDisruptionBudget({ namespace, name }),
  };
}

/** What {@link ensure} did. */
export type EnsureResult<T> = { readonly object: T; readonly change: 'created' | 'patched' | 'none' };

/**
 * Creates `desired` if `actual` is absent, or patches it with `patchBody(desired)` when the hash
 * differs. An AlreadyExists on create (a stale read) is answered by reading the object.
 */
export async function ensure<T extends KubernetesObject>(
  ops: KindOps<T>, quorum: PaxosQuorum, actual: T | undefined, desired: T, patchBody: (desired: T) => object,
): Promise<EnsureResult<T>> {
  const namespace = quorum.metadata.namespace;
  const name = desired.metadata?.name ?? '';
  const what = `${ops.kind} ${namespace}/${name}`;
  if (actual === undefined) {
    try {
      return { object: await kubeCall(`create ${what}`, () => ops.create({ namespace }, desired)), change: 'created' };
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      actual = await kubeCall(`get ${what}`, () => ops.read({ namespace, name }));
    }
  }
  checkOwner(quorum, ops.kind, actual);
  if (!drifted(actual, desired)) return { object: actual, change: 'none' };
  const body = { ...patchBody(desired), metadata: { labels: desired.metadata?.labels, annotations: desired.metadata?.annotations } };
  return { object: await kubeCall(`patch ${what}`, () => ops.patch({ namespace, name }, body)), change: 'patched' };
}
