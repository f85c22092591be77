/**
 * Executes one step against the cluster: the planner's actions and the roll's. Every step is
 * idempotent: replicas are set to an absolute value, the ConfigMap is written with absolute
 * data, and the node's admin calls are idempotent by contract (proto/paxos.proto).
 */
import type { V1StatefulSet } from '@kubernetes/client-node';
import type { KubeClients } from '../k8s/client.js';
import { FIELD_MANAGER } from '../k8s/client.js';
import { Resources, resourcePath } from '../k8s/rest.js';
import { getOrUndefined, isConflict, kubeCall } from '../k8s/errors.js';
import type { PaxosQuorum } from '../k8s/paxosquorum.js';
import { sameConfig, sameMembers, type NodeConfig } from '../plan/config.js';
import type { Action } from '../plan/steps.js';
import type { NodeAdmin } from './node-admin.js';
import type { NodeView } from './observe.js';
import { bootstrapData, names, podName, type Bootstrap } from './resources.js';
import type { RollStep } from './roll.js';

/** A step could not be executed because something it needs is missing (no StatefulSet, no pod address). */
export class StepPreconditionError extends Error {
  override readonly name = 'StepPreconditionError';
}

/** Everything a step needs. */
export interface StepContext {
  readonly clients: KubeClients;
  readonly admin: NodeAdmin;
  readonly quorum: PaxosQuorum;
  readonly statefulSet: V1StatefulSet;
  readonly views: readonly NodeView[];
  /** The bootstrap configuration the ConfigMap holds, if it parses. */
  readonly bootstrap?: Bootstrap;
  /** Deadline of admin calls that change a node (convert, transfer, finalize). */
  readonly actionDeadlineMs: number;
}

/** The steps the executor knows: the planner's actions, or deleting a pod for a roll. */
export type ExecutableStep = Action | Extract<RollStep, { kind: 'DeletePod' }>;

function addressOf(context: StepContext, ordinal: number): string {
  const view = context.views.find((candidate) => candidate.ordinal === ordinal);
  if (view?.address === undefined) throw new StepPreconditionError(`pod ${ordinal} has no address`);
  return view.address;
}

async function setReplicas(context: StepContext, replicas: number): Promise<void> {
  const { namespace } = context.quorum.metadata;
  const name = names(context.quorum.metadata.name).statefulSet;
  if (context.statefulSet.spec?.replicas === replicas) return;
  await kubeCall(`scale StatefulSet ${namespace}/${name} to ${replicas}`, () => context.clients.rest.mergePatch(
    resourcePath(Resources.statefulSets, namespace, name),
    // Guarded by resourceVersion: a replicas value decided from a stale read is refused (409).
    { metadata: { resourceVersion: context.statefulSet.metadata?.resourceVersion }, spec: { replicas } },
    { fieldManager: FIELD_MANAGER }));
}

/**
 * The new servers of the joint configuration `joint` (members not in its prior) whose node has
 * reported running as one: on `joint`, or on an earlier target of the same change (same prior),
 * before a retarget. They have run, so an empty disk under one of them is a lost disk. Nodes
 * not registered yet count too: they are to be named before they are registered.
 */
export function startedServers(views: readonly NodeView[], joint: NodeConfig): number[] {
  const prior = joint.prior ?? [];
  return views
    .filter((view) => joint.members.includes(view.ordinal) && !prior.includes(view.ordinal))
    .filter((view) => {
      const config = view.status?.config;
      if (config === undefined || (view.status?.dataLoss ?? 'none') !== 'none') return false;
      return sameConfig(config, joint) || (config.prior !== undefined && sameMembers(config.prior, prior) && config.members.includes(view.ordinal));
    })
    .map((view) => view.ordinal)
    .sort((a, b) => a - b);
}

/** Executes `step`. Throws a typed error (KubeApiError, NodeAdminError, StepPreconditionError) on failure. */
export async function executeStep(context: StepContext, step: ExecutableStep): Promise<void> {
  const { clients, admin, quorum, actionDeadlineMs } = context;
  const { namespace } = quorum.metadata;
  switch (step.kind) {
    case 'StartPod': {
      // The new pod reads its first configuration from the ConfigMap, so it must be written first.
      // The change's new servers that already ran are named, so that a lost disk is recognised.
      const name = names(quorum.metadata.name).configMap;
      // Names recorded before stay even if their node does not answer now: dropping one would
      // let it restart on an empty disk as if for the first time, and be registered again.
      const recorded = context.bootstrap !== undefined && sameConfig(context.bootstrap.config, step.config) ? context.bootstrap.started ?? [] : [];
      const started = [...new Set([...recorded, ...startedServers(context.views, step.config)])]
        .filter((ordinal) => ordinal !== step.ordinal).sort((a, b) => a - b);
      await kubeCall(`write ConfigMap ${namespace}/${name}`, () => clients.rest.mergePatch(
        resourcePath(Resources.configMaps, namespace, name),
        { data: bootstrapData({ config: step.config, joining: true, started }) }, { fieldManager: FIELD_MANAGER }));
      await setReplicas(context, step.ordinal + 1);
      return;
    }
    case 'StopPod':
      await setReplicas(context, step.ordinal);
      return;
    case 'Convert':
      await admin.convert(addressOf(context, step.ordinal), step.config, actionDeadlineMs);
      return;
    case 'TransferLeadership':
      await admin.transferLeadership(addressOf(context, step.from), step.to, actionDeadlineMs);
      return;
    case 'Finalize':
      await admin.finalize(addressOf(context, step.leader), actionDeadlineMs);
      return;
    case 'DeletePod': {
      const pod = podName(quorum.metadata.name, step.ordinal);
      const uid = context.views.find((view) => view.ordinal === step.ordinal)?.pod.metadata?.uid;
      // The UID precondition makes a repeated delete a no-op instead of killing the replacement pod.
      try {
        await getOrUndefined(`delete Pod ${namespace}/${pod}`, () => clients.rest.delete(
          resourcePath(Resources.pods, namespace, pod), { preconditions: { uid } }));
      } catch (error) {
        if (!isConflict(error)) throw error; // already replaced: the UID no longer matches
      }
      return;
    }
  }
}
