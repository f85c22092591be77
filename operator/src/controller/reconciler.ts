/**
 * The level-triggered reconcile of one PaxosQuorum, controller-runtime style:
 *
 * 1. read the world fresh: the object, its owned objects, its pods, each node's admin Status;
 * 2. create or patch owned objects that are missing or drifted (never `replicas`);
 * 3. ask the pure planner for the single next step (or, when idle, the roll for the next pod);
 * 4. write status ONCE, including the operation record the planner returned — it must be
 *    durable before the step runs, so an operator killed after the step resumes from it;
 * 5. execute at most that one step, record an Event, and ask to be called again soon.
 *
 * Reads go to the API server, not an informer cache: a step decided from a stale StatefulSet or
 * stale status could repeat or skip a membership step. Informers only trigger passes.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { FIELD_MANAGER, type KubeClients } from '../k8s/client.js';
import { getOrUndefined, kubeCall } from '../k8s/errors.js';
import { Resources, resourcePath } from '../k8s/rest.js';
import type { EventRecorder } from '../k8s/events.js';
import {
  InvalidSpecError, PaxosQuorumApi, parseSpec, withFinalizer, withoutFinalizer,
  type OperationStatus, type PaxosQuorum, type PaxosQuorumSpec, type PaxosQuorumStatus,
} from '../k8s/paxosquorum.js';
import { jointConfig, ordinals, sameConfig, sameMembers, type NodeConfig } from '../plan/config.js';
import { nextStep } from '../plan/next-step.js';
import { newestConfig } from '../plan/observation.js';
import { describeStep, isAction, type Step } from '../plan/steps.js';
import type { ObservedState, OperationRecord } from '../plan/types.js';
import { findCondition, mergeConditions, rfc3339 } from './conditions.js';
import { executeStep, startedServers, type ExecutableStep } from './execute.js';
import type { NodeAdmin } from './node-admin.js';
import { PassScopes } from './pass-scope.js';
import { findLeader, podIpAddress, toObservation, viewNodes, type AddressOf, type NodeView } from './observe.js';
import {
  CONFIGMAP, ensure, OwnershipConflictError, PDB, readOwned, SERVICE, STATEFULSET, type OwnedObjects,
} from './owned.js';
import type { Outcome } from './queue.js';
import { ConditionType, Reason } from './reasons.js';
import {
  adminPort, bootstrapData, clientService, configMap, describeBootstrap, desiredImage, emptyStartIsLoss, names, parseBootstrap, peerService,
  podDisruptionBudget, selectorString, statefulSet, type Bootstrap,
} from './resources.js';
import { nextRollStep, type RollStep } from './roll.js';
import { answering, computeStatus, statusPatch } from './status.js';

/** Hooks for metrics; the controller does not depend on prom-client. */
export interface ReconcileMetrics {
  stepExecuted(kind: string): void;
  quorumSize(namespace: string, name: string, size: number | undefined): void;
}

export interface ReconcilerOptions {
  readonly clients: KubeClients;
  readonly admin: NodeAdmin;
  readonly events: EventRecorder;
  readonly log: Logger;
  /** Image used when `spec.image` is empty (`--node-image`). */
  readonly defaultImage: string;
  readonly metrics?: ReconcileMetrics;
  /** Where to reach a pod's admin API; default `podIP:<admin port>`. Tests point it at local processes. */
  readonly addressOf?: (spec: PaxosQuorumSpec) => AddressOf;
  /** Deadline of each admin Status call (default 1 s). */
  readonly statusDeadlineMs?: number;
  /** Deadline of admin calls that change a node (default 15 s). */
  readonly actionDeadlineMs?: number;
  readonly clock?: () => Date;
  /**
   * Asked right before every write and every admin call that changes a node (see
   * pass-scope.ts), and before a step is executed; false refuses the call or skips the step.
   * Leader election passes "do I still hold the Lease", so a pass that began before leadership
   * was lost does not act after a successor may have started.
   */
  readonly mayAct?: () => boolean;
}

/** Delays before the next pass, by situation. */
export const REQUEUE_MS = {
  /** After executing a step, to observe its effect. */
  afterStep: 300,
  /** While an operation or a roll is waiting for health. */
  inProgress: 500,
  /** While the quorum is being created and no node answers yet. */
  creating: 2_000,
  /** Idle: refresh members, leader and lag in status. */
  idle: 15_000,
} as const;

/** A step was decided and failed; the queue retries the pass with backoff. */
export class StepFailedError extends Error {
  override readonly name = 'StepFailedError';
}

/** What this pass decided to do. */
type Plan =
  | { readonly kind: 'planner'; readonly step: Step; readonly operation?: OperationRecord }
  | { readonly kind: 'roll'; readonly step: RollStep };

const EVENT_REASON: Record<ExecutableStep['kind'], string> = {
  StartPod: Reason.PodStarting,
  StopPod: Reason.PodStopping,
  Convert: Reason.NodeConverted,
  TransferLeadership: Reason.LeadershipTransferred,
  Finalize: Reason.Finalized,
  DeletePod: Reason.PodRolled,
};

/** Reconciles PaxosQuorum objects; one instance per process. */
export class Reconciler {
  /** The options with clients, admin and events bound to the scope of the pass that uses them. */
  private readonly options: ReconcilerOptions;
  private readonly scopes: PassScopes;
  private readonly api: PaxosQuorumApi;
  private readonly statusDeadlineMs: number;
  private readonly actionDeadlineMs: number;
  private readonly clock: () => Date;
  /** The last failed step per key, shown as Degraded/ActionFailed while the same step is retried. */
  private readonly failures = new Map<string, { step: string; message: string }>();

  constructor(options: ReconcilerOptions) {
    this.scopes = new PassScopes(options.mayAct);
    this.options = this.scopes.bind(options);
    this.api = new PaxosQuorumApi(this.options.clients);
    this.statusDeadlineMs = options.statusDeadlineMs ?? 1_000;
    this.actionDeadlineMs = options.actionDeadlineMs ?? 15_000;
    this.clock = options.clock ?? (() => new Date());
  }

  /**
   * Reconciles `namespace/name`. Throws to be retried with backoff. Every call of the pass
   * carries `signal` (the work queue's: pass deadline, leadership lost); once it fires, every
   * further call fails at once.
   */
  reconcile(key: string, signal: AbortSignal = new AbortController().signal): Promise<Outcome> {
    return this.scopes.run(signal, () => this.pass(key));
  }

  private async pass(key: string): Promise<Outcome> {
    const [namespace, name] = splitKey(key);
    const log = this.options.log.child({ quorum: key });
    let quorum = await this.api.get(namespace, name);
    if (quorum === undefined) {
      this.failures.delete(key);
      this.options.metrics?.quorumSize(namespace, name, undefined);
      return {};
    }
    if (quorum.metadata.deletionTimestamp !== undefined) return this.cleanUp(quorum, log);
    const finalizers = withFinalizer(quorum.metadata);
    if (finalizers !== undefined) quorum = await this.api.setFinalizers(quorum, finalizers);

    let spec: PaxosQuorumSpec;
    try {
      spec = parseSpec(quorum.spec);
    } catch (error) {
      if (!(error instanceof InvalidSpecError)) throw error;
      await this.writeBlocked(quorum, Reason.InvalidSpec, `The spec is invalid: ${error.message}`);
      return {};
    }

    const addressOf = (this.options.addressOf ?? ((s: PaxosQuorumSpec) => podIpAddress(adminPort(s))))(spec);
    const [owned, pods] = await Promise.all([readOwned(this.options.clients, quorum), this.listPods(quorum)]);
    const views = await viewNodes(name, pods, this.options.admin, addressOf, this.statusDeadlineMs);
    const observedPods = views.map(toObservation);
    const membership = newestConfig({ desired: spec.replicas, mode: spec.reconfiguration.mode, pods: observedPods });
    const leader = findLeader(views);

    try {
      await this.ensureOwned(quorum, spec, owned, membership, log);
    } catch (error) {
      if (!(error instanceof OwnershipConflictError)) throw error;
      await this.writeBlocked(quorum, Reason.OwnershipConflict, error.message);
      return { requeueAfterMs: REQUEUE_MS.idle };
    }
    const sts = owned.statefulSet;
    if (sts === undefined) throw new Error('unreachable: StatefulSet ensured');

    const stored = storedOperation(quorum.status);
    const observed: ObservedState = {
      desired: spec.replicas, mode: spec.reconfiguration.mode, pods: observedPods, leader,
      statefulSetReplicas: sts.spec?.replicas, operation: stored,
    };
    const decision = nextStep(observed);
    const roll = decision.operation === undefined ? nextRollStep(views, leader, settledRevision(sts)) : undefined;
    // With no membership change under way, the planner waits for a member that is down; if that
    // member is down on an outdated revision (an image that cannot run, since set back), the
    // roll replaces it: the way back that a user would otherwise take with `kubectl delete pod`.
    const rescue = roll?.kind === 'DeletePod' && decision.step.kind === 'Wait' && isDownPod(views, roll.ordinal);
    const plan: Plan = roll !== undefined && (decision.step.kind === 'Done' || rescue)
      ? { kind: 'roll', step: roll }
      : { kind: 'planner', step: decision.step, operation: decision.operation };
    // The budget follows the decision: no voluntary disruption while a membership change runs.
    await this.ensureBudget(quorum, owned, sts.spec?.replicas ?? spec.replicas, decision.operation !== undefined);
    let bootstrap = parseBootstrap(owned.configMap?.data);
    if (plan.kind === 'roll' && membership !== undefined) bootstrap = await this.refreshBootstrap(quorum, bootstrap, membership);
    if (plan.kind === 'planner' && plan.operation !== undefined) bootstrap = await this.recordStartedServers(quorum, bootstrap, views, plan.operation);
    await this.registerNewServers(quorum, views, bootstrap);

    // The one action this pass may take, if the quorum is healthy enough for any action.
    let action = actionOf(plan);
    const unsafe = action === undefined ? undefined : unsafeToAct(views, leader, membership, action);
    if (unsafe !== undefined) action = undefined;
    const activity = unsafe !== undefined ? `waiting: ${unsafe}` : describePlan(plan);

    const now = this.clock();
    const operation = operationStatus(plan.kind === 'planner' ? plan.operation : undefined, stored, action, now);
    const timeoutMs = spec.reconfiguration.stepTimeoutSeconds * 1000;
    const blocked = action === undefined && operation?.stepStartedAt !== undefined
      && now.getTime() - Date.parse(operation.stepStartedAt) > timeoutMs
      ? { reason: Reason.StepTimeout, message: `No progress for more than ${spec.reconfiguration.stepTimeoutSeconds} s on step ${operation.step}/${operation.totalSteps} (${operation.description || operation.lastAction || 'starting'}): ${activity}` }
      : undefined;
    const failure = this.failures.get(key);
    const actionError = failure !== undefined && action !== undefined && failure.step === describeAction(action) ? failure.message : undefined;
    const rolling = plan.kind === 'roll' && plan.step.kind !== 'None';

    const status = computeStatus({
      quorum, views, leader, membership, operation, activity, rolling, blocked, actionError, now,
      currentImage: desiredImage(spec, this.options.defaultImage),
    });
    await this.writeStatus(quorum, status);
    this.options.metrics?.quorumSize(namespace, name, membership?.members.length);
    if (blocked !== undefined && findCondition(quorum.status?.conditions, ConditionType.ReconfigurationBlocked)?.status !== 'True') {
      await this.options.events.record(quorum, 'Warning', Reason.StepTimeout, 'Wait', blocked.message);
    }
    if (stored === undefined && operation !== undefined) {
      await this.options.events.record(quorum, 'Normal', Reason.OperationStarted, 'Reconfigure',
        `${operation.kind} from ${operation.from} to ${operation.to} members (epoch ${operation.epoch}, ${operation.totalSteps} steps)`);
    } else if (stored !== undefined && operation !== undefined && stored.epoch !== operation.epoch) {
      await this.options.events.record(quorum, 'Normal', Reason.OperationRetargeted, 'Reconfigure',
        `The target changed before finalization: ${operation.kind} from ${operation.from} to ${operation.to} members (epoch ${operation.epoch}); every quorum still needs a majority of the original members`);
    } else if (stored !== undefined && operation === undefined) {
      await this.options.events.record(quorum, 'Normal', Reason.OperationCompleted, 'Reconfigure',
        `${stored.kind} from ${stored.from} to ${stored.to} members is complete (epoch ${stored.epoch})`);
    }

    if (action === undefined) {
      if (membership === undefined) return { requeueAfterMs: REQUEUE_MS.creating };
      const busy = operation !== undefined || rolling || unsafe !== undefined || plan.step.kind !== 'Done';
      return { requeueAfterMs: busy ? REQUEUE_MS.inProgress : REQUEUE_MS.idle };
    }

    const description = describeAction(action);
    if (this.options.mayAct !== undefined && !this.options.mayAct()) {
      log.warn({ step: description }, 'not executing the step: no longer the leader');
      return {};
    }
    try {
      await executeStep({
        clients: this.options.clients, admin: this.options.admin, quorum, statefulSet: sts, views, bootstrap,
        actionDeadlineMs: this.actionDeadlineMs,
      }, action);
    } catch (error) {
      const message = `${description} failed: ${error instanceof Error ? error.message : String(error)}`;
      this.failures.set(key, { step: description, message });
      await this.options.events.record(quorum, 'Warning', Reason.StepFailed, action.kind, message);
      throw new StepFailedError(message, { cause: error });
    }
    this.failures.delete(key);
    this.options.metrics?.stepExecuted(action.kind);
    const progress = operation === undefined ? '' : ` (step ${operation.step}/${operation.totalSteps} of ${operation.kind} ${operation.from} -> ${operation.to})`;
    await this.options.events.record(quorum, 'Normal', EVENT_REASON[action.kind], action.kind, `${capitalize(description)}${progress}`);
    return { requeueAfterMs: REQUEUE_MS.afterStep };
  }

  private async listPods(quorum: PaxosQuorum): Promise<V1Pod[]> {
    const { namespace, name } = quorum.metadata;
    const list = await kubeCall(`list Pods of ${namespace}/${name}`, () =>
      this.options.clients.rest.get<{ items: V1Pod[] }>(resourcePath(Resources.pods, namespace), { labelSelector: selectorString(name) }));
    return list.items;
  }

  /**
   * Creates or patches the owned objects. The bootstrap ConfigMap is created before the
   * StatefulSet (pods read it at start). A brand-new quorum boots every pod on epoch 1 with all
   * `spec.replicas` members; a ConfigMap lost later is recreated from the newest configuration
   * the nodes report, marked joining.
   */
  private async ensureOwned(
    quorum: PaxosQuorum, spec: PaxosQuorumSpec, owned: OwnedObjects, membership: NodeConfig | undefined, log: Logger,
  ): Promise<void> {
    const { clients } = this.options;
    const created: string[] = [];
    const patched: string[] = [];
    const note = <T extends { metadata?: { name?: string } }>(kind: string, result: { object: T; change: string }): T => {
      if (result.change === 'created') created.push(`${kind} ${result.object.metadata?.name}`);
      if (result.change === 'patched') patched.push(`${kind} ${result.object.metadata?.name}`);
      return result.object;
    };
    const newQuorum = owned.statefulSet === undefined;
    const bootstrap: Bootstrap = newQuorum || membership === undefined
      ? { config: { epoch: 1, members: ordinals(spec.replicas) }, joining: !newQuorum }
      : { config: membership, joining: true };
    if (owned.configMap === undefined || (newQuorum && parseBootstrap(owned.configMap.data) === undefined)) {
      owned.configMap = note('ConfigMap', await ensure(clients, CONFIGMAP, quorum, owned.configMap, configMap(quorum, bootstrap), (d) => ({ data: d.data })));
      log.info({ bootstrap: describeBootstrap(bootstrap) }, 'bootstrap ConfigMap written');
    }
    owned.peerService = note('Service', await ensure(clients, SERVICE, quorum, owned.peerService, peerService(quorum, spec), (d) => ({ spec: d.spec })));
    owned.clientService = note('Service', await ensure(clients, SERVICE, quorum, owned.clientService, clientService(quorum, spec), (d) => ({ spec: d.spec })));
    const image = desiredImage(spec, this.options.defaultImage);
    const replicas = owned.statefulSet?.spec?.replicas ?? bootstrap.config.members.length;
    owned.statefulSet = note('StatefulSet', await ensure(clients, STATEFULSET, quorum, owned.statefulSet,
      statefulSet(quorum, spec, image, replicas), (d) => ({ spec: { template: d.spec?.template } })));
    if (created.length > 0) await this.options.events.record(quorum, 'Normal', Reason.Created, 'Create', `Created ${created.join(', ')}`);
    if (patched.length > 0) await this.options.events.record(quorum, 'Normal', Reason.Updated, 'Update', `Updated ${patched.join(', ')} to match the spec`);
  }

  /** Creates or patches the PodDisruptionBudget; see {@link podDisruptionBudget}. */
  private async ensureBudget(quorum: PaxosQuorum, owned: OwnedObjects, replicas: number, reconfiguring: boolean): Promise<void> {
    const result = await ensure(this.options.clients, PDB, quorum, owned.pdb, podDisruptionBudget(quorum, replicas, reconfiguring),
      (d) => ({ spec: { minAvailable: d.spec?.minAvailable } }));
    owned.pdb = result.object;
    if (result.change === 'created') await this.options.events.record(quorum, 'Normal', Reason.Created, 'Create', `Created PodDisruptionBudget ${quorum.metadata.name}`);
  }

  /**
   * Once no change is open, points the bootstrap ConfigMap at the configuration in force, so a
   * pod that is recreated later (or a StatefulSet scaled by hand) does not boot on the joint
   * configuration of the last StartPod. One write after each change, none when idle.
   */
  private async refreshBootstrap(quorum: PaxosQuorum, current: Bootstrap | undefined, membership: NodeConfig): Promise<Bootstrap> {
    if (current !== undefined && sameConfig(current.config, membership) && current.joining) return current;
    const bootstrap: Bootstrap = { config: membership, joining: true };
    await this.writeBootstrap(quorum, bootstrap);
    return bootstrap;
  }

  /**
   * While a change runs, names in the bootstrap ConfigMap the new servers that have run on its
   * joint configuration, so that one of them restarted on an empty disk knows it lost data
   * (ADR 0007). One write each time a new server first reports; none otherwise. Names already
   * recorded stay, whether or not their node answers now. Returns what the ConfigMap now holds.
   */
  private async recordStartedServers(
    quorum: PaxosQuorum, current: Bootstrap | undefined, views: readonly NodeView[], operation: OperationRecord,
  ): Promise<Bootstrap | undefined> {
    const joint = jointConfig(operation.epoch, operation.target, operation.original);
    if (current === undefined) return current;
    // The ConfigMap is pointed at the joint configuration by the change's first StartPod. After a
    // retarget it may still hold the change's earlier target (same prior, older epoch): it moves
    // to the new one here, keeping the names that are still new servers, or a new server that
    // ran on the earlier target could never be named, hence never registered.
    const retargeted = current.config.prior !== undefined && sameMembers(current.config.prior, operation.original)
      && current.config.epoch < joint.epoch;
    if (!sameConfig(current.config, joint) && !retargeted) return current;
    const known = new Set((current.started ?? []).filter((ordinal) => joint.members.includes(ordinal) && !operation.original.includes(ordinal)));
    const started = [...new Set([...known, ...startedServers(views, joint)])].sort((a, b) => a - b);
    if (!retargeted && started.length === known.size) return current;
    const bootstrap: Bootstrap = { config: joint, joining: true, started };
    await this.writeBootstrap(quorum, bootstrap);
    return bootstrap;
  }

  /**
   * Registers the new servers that wait for it (AdminService.Register), once `stored`, the
   * bootstrap configuration as the ConfigMap now holds it, makes an empty restart of theirs a
   * recognised loss: registering earlier would let a server vote, lose its disk and come back
   * voting with its promises forgotten. A failed call is retried on the next pass.
   */
  private async registerNewServers(quorum: PaxosQuorum, views: readonly NodeView[], stored: Bootstrap | undefined): Promise<void> {
    if (stored === undefined) return;
    for (const view of views) {
      if (view.status?.unregistered !== true || view.address === undefined || !emptyStartIsLoss(stored, view.ordinal)) continue;
      try {
        await this.options.admin.register(view.address, this.actionDeadlineMs);
        this.options.log.info({ quorum: quorum.metadata.name, pod: view.ordinal }, 'registered new server');
      } catch (error) {
        this.options.log.info({ quorum: quorum.metadata.name, pod: view.ordinal, err: error }, 'registering a new server failed; retrying on the next pass');
      }
    }
  }

  private async writeBootstrap(quorum: PaxosQuorum, bootstrap: Bootstrap): Promise<void> {
    const { namespace } = quorum.metadata;
    const name = names(quorum.metadata.name).configMap;
    await kubeCall(`write ConfigMap ${namespace}/${name}`, () => this.options.clients.rest.mergePatch(
      resourcePath(Resources.configMaps, namespace, name), { data: bootstrapData(bootstrap) }, { fieldManager: FIELD_MANAGER }));
  }

  /** Writes the status if it differs from the stored one: at most one write per pass. */
  private async writeStatus(quorum: PaxosQuorum, status: PaxosQuorumStatus): Promise<void> {
    const patch = statusPatch(quorum.status, status);
    if (Object.keys(patch).length === 0) return;
    await this.api.patchStatus(quorum, patch);
  }

  /**
   * Reports a problem that stops all work (invalid spec, ownership conflict): only the
   * ReconfigurationBlocked condition, the phase and observedGeneration change; what was last
   * observed of the pods stays, since nothing was observed this pass.
   */
  private async writeBlocked(quorum: PaxosQuorum, reason: string, message: string): Promise<void> {
    const previous = findCondition(quorum.status?.conditions, ConditionType.ReconfigurationBlocked);
    const conditions = mergeConditions(quorum.status?.conditions,
      [{ type: ConditionType.ReconfigurationBlocked, status: 'True', reason, message }], quorum.metadata.generation, this.clock());
    await this.writeStatus(quorum, { ...quorum.status, observedGeneration: quorum.metadata.generation, phase: 'Blocked', conditions });
    if (previous?.status !== 'True' || previous.reason !== reason) {
      await this.options.events.record(quorum, 'Warning', reason, 'Validate', message);
    }
  }

  /**
   * Deletion: owned objects go by owner-reference garbage collection; the StatefulSet is
   * deleted here explicitly so its pods stop (and PVCs go, per the retention policy) before the
   * PaxosQuorum disappears. Then the finalizer is removed.
   */
  private async cleanUp(quorum: PaxosQuorum, log: Logger): Promise<Outcome> {
    const remaining = withoutFinalizer(quorum.metadata);
    if (remaining === undefined) return {};
    const { namespace, name } = quorum.metadata;
    const sts = names(name).statefulSet;
    await getOrUndefined(`delete StatefulSet ${namespace}/${sts}`, () =>
      this.options.clients.rest.delete(resourcePath(Resources.statefulSets, namespace, sts), { propagationPolicy: 'Background' }));
    await this.api.setFinalizers(quorum, remaining);
    this.failures.delete(`${namespace}/${name}`);
    this.options.metrics?.quorumSize(namespace, name, undefined);
    log.info('cleaned up');
    await this.options.events.record(quorum, 'Normal', Reason.CleanedUp, 'Delete', `Deleted StatefulSet ${sts}; other owned objects are garbage-collected`);
    return {};
  }
}

/** `namespace/name` → [namespace, name]. */
export function splitKey(key: string): [string, string] {
  const slash = key.indexOf('/');
  if (slash <= 0) throw new Error(`bad key ${key}: expected namespace/name`);
  return [key.slice(0, slash), key.slice(slash + 1)];
}

/** The StatefulSet's update revision, once its controller has seen the latest template. */
function settledRevision(sts: NonNullable<OwnedObjects['statefulSet']>): string | undefined {
  const observed = sts.status?.observedGeneration ?? 0;
  return observed >= (sts.metadata?.generation ?? 0) ? sts.status?.updateRevision : undefined;
}

/** The operation record stored in status, if it has the fields the planner needs. */
function storedOperation(status: PaxosQuorumStatus | undefined): OperationStatus | undefined {
  const operation = status?.operation;
  if (operation === null || operation === undefined) return undefined;
  const valid = Array.isArray(operation.original) && Array.isArray(operation.target) && typeof operation.epoch === 'number';
  return valid ? operation : undefined;
}

/**
 * The record to store: the planner's, with the operator's timestamps carried over from the
 * stored record of the same operation (same epoch), and `stepStartedAt` restarted by an action.
 */
function operationStatus(
  decided: OperationRecord | undefined, stored: OperationStatus | undefined, action: ExecutableStep | undefined, now: Date,
): OperationStatus | undefined {
  if (decided === undefined) return undefined;
  const { startedAt: _s, stepStartedAt: _t, lastAction: _a, ...record } = decided as OperationStatus;
  const same = stored !== undefined && stored.epoch === decided.epoch;
  const startedAt = same && stored.startedAt !== undefined ? stored.startedAt : rfc3339(now);
  if (action !== undefined) return { ...record, startedAt, stepStartedAt: rfc3339(now), lastAction: describeAction(action) };
  return {
    ...record, startedAt,
    stepStartedAt: same && stored.stepStartedAt !== undefined ? stored.stepStartedAt : rfc3339(now),
    ...(same && stored.lastAction !== undefined ? { lastAction: stored.lastAction } : {}),
  };
}

function actionOf(plan: Plan): ExecutableStep | undefined {
  if (plan.kind === 'planner') return isAction(plan.step) ? plan.step : undefined;
  switch (plan.step.kind) {
    case 'DeletePod':
      return plan.step;
    case 'TransferLeadership':
      return plan.step;
    default:
      return undefined;
  }
}

/**
 * The controller's own health gate, on top of the planner's: no action without a known leader
 * (except converting the leader in place, which the planner only asks for when it leads), and
 * none while a member of the newest configuration (or of its prior) does not answer.
 */
/** The pod of `ordinal` exists and is not ready. */
function isDownPod(views: readonly NodeView[], ordinal: number): boolean {
  const view = views.find((v) => v.ordinal === ordinal);
  return view !== undefined && !view.podReady;
}

function unsafeToAct(
  views: readonly NodeView[], leader: number | undefined, membership: NodeConfig | undefined, action: ExecutableStep,
): string | undefined {
  if (leader === undefined) return 'no leader is elected';
  if (membership === undefined) return 'no node reports a configuration';
  const required = new Set([...membership.members, ...(membership.prior ?? [])]);
  // A pod the planner stops after finalization is outside the membership; its health does not matter.
  // A member that lost its volume answers but does not vote: the planner repairs it, so it passes.
  const sick = views.filter((view) => required.has(view.ordinal) && !answering(view));
  // Replacing the one member that is down (a roll's way back from a bad image) removes no vote.
  const replacesTheSick = action.kind === 'DeletePod' && sick.length === 1 && sick[0]?.ordinal === action.ordinal && action.ordinal !== leader;
  if (sick[0] !== undefined && !replacesTheSick) return `member pod ${sick[0].pod.metadata?.name} is not ready`;
  // Members of a target being built (joint configuration) start one by one; those of the
  // configuration in force — the prior while there is one — must all exist.
  const inForce = membership.prior ?? membership.members;
  const missing = inForce.find((ordinal) => !views.some((view) => view.ordinal === ordinal));
  if (missing !== undefined && !(action.kind === 'StartPod' && action.ordinal === missing)) return `member pod ${missing} does not exist`;
  return undefined;
}

function describeAction(action: ExecutableStep): string {
  return action.kind === 'DeletePod' ? `delete pod ${action.ordinal} to roll it onto the new revision` : describeStep(action);
}

function describePlan(plan: Plan): string {
  if (plan.kind === 'planner') return plan.step.kind === 'Done' ? 'The quorum has the desired membership' : describeStep(plan.step);
  switch (plan.step.kind) {
    case 'None':
      return 'The quorum has the desired membership and every pod runs the current revision';
    case 'WaitRoll':
      return `rolling pods onto the new revision; waiting: ${plan.step.reason}`;
    case 'DeletePod':
      return `rolling pods onto the new revision: delete pod ${plan.step.ordinal}`;
    case 'TransferLeadership':
      return `rolling pods onto the new revision: transfer leadership from pod ${plan.step.from} to pod ${plan.step.to} before replacing it`;
  }
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
