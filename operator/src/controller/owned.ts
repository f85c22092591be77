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
import { FIELD_MANAGER } from '../k8s/client.js';
import { Resources, resourcePath, type Resource } from '../k8s/rest.js';
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
  const read = <T>(resource: Resource, kind: string, item: string): Promise<T | undefined> =>
    getOrUndefined(`get ${kind} ${namespace}/${item}`, () => clients.rest.get<T>(resourcePath(resource, namespace, item)));
  const [statefulSet, peerService, clientService, configMap, pdb] = await Promise.all([
    read<V1StatefulSet>(Resources.statefulSets, 'StatefulSet', n.statefulSet),
    read<V1Service>(Resources.services, 'Service', n.peerService),
    read<V1Service>(Resources.services, 'Service', n.clientService),
    read<V1ConfigMap>(Resources.configMaps, 'ConfigMap', n.configMap),
    read<V1PodDisruptionBudget>(Resources.pdbs, 'PodDisruptionBudget', n.pdb),
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

/** One kind of owned object. */
export interface KindOps {
  readonly kind: string;
  readonly resource: Resource;
}

export const STATEFULSET: KindOps = { kind: 'StatefulSet', resource: Resources.statefulSets };
export const SERVICE: KindOps = { kind: 'Service', resource: Resources.services };
export const CONFIGMAP: KindOps = { kind: 'ConfigMap', resource: Resources.configMaps };
export const PDB: KindOps = { kind: 'PodDisruptionBudget', resource: Resources.pdbs };

/** What {@link ensure} did. */
export type EnsureResult<T> = { readonly object: T; readonly change: 'created' | 'patched' | 'none' };

/**
 * Creates `desired` if `actual` is absent, or patches it with `patchBody(desired)` when the hash
 * differs. An AlreadyExists on create (a stale read) is answered by reading the object.
 */
export async function ensure<T extends KubernetesObject>(
  clients: KubeClients, ops: KindOps, quorum: PaxosQuorum, actual: T | undefined, desired: T, patchBody: (desired: T) => object,
): Promise<EnsureResult<T>> {
  const namespace = quorum.metadata.namespace;
  const name = desired.metadata?.name ?? '';
  const what = `${ops.kind} ${namespace}/${name}`;
  if (actual === undefined) {
    try {
      const created = await kubeCall(`create ${what}`, () =>
        clients.rest.create<T>(resourcePath(ops.resource, namespace), desired, { fieldManager: FIELD_MANAGER }));
      return { object: created, change: 'created' };
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      actual = await kubeCall(`get ${what}`, () => clients.rest.get<T>(resourcePath(ops.resource, namespace, name)));
    }
  }
  checkOwner(quorum, ops.kind, actual);
  if (!drifted(actual, desired)) return { object: actual, change: 'none' };
  const body = { ...patchBody(desired), metadata: { labels: desired.metadata?.labels, annotations: desired.metadata?.annotations } };
  const patched = await kubeCall(`patch ${what}`, () =>
    clients.rest.mergePatch<T>(resourcePath(ops.resource, namespace, name), body, { fieldManager: FIELD_MANAGER }));
  return { object: patched, change: 'patched' };
}
