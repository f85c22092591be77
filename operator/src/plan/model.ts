/**
 * An abstract cluster the planner's steps can be played against: which pods run and which
 * configuration each holds. Used to print whole plans and by the model checker.
 *
 * A pod that is running is in `nodes`; a stopped pod is gone together with its volume, so it holds
 * nothing. "Paused" (a node converting, or a node that failed) is not a stored state: a step pauses
 * at most one node, and the checker asks of every state whether a leader can still be elected with
 * any one node paused, which covers the node the next step pauses.
 */
import { finalConfig, formatConfig, sameConfig, type NodeConfig } from './config.js';
import { isQuorum, toSet } from './quorums.js';
import type { Action } from './steps.js';
import type { ObservedState, OperationRecord, ReconfigurationMode } from './types.js';

export interface ModelNode {
  readonly ordinal: number;
  readonly config: NodeConfig;
}

/** A finalization that was chosen: under which joint configuration, with which nodes running. */
export interface Finalization {
  readonly epoch: number;
  readonly chosenUnder: NodeConfig;
  /** The nodes that were running; the quorum that chose it is some quorum of `chosenUnder` among them. */
  readonly voters: readonly number[];
}

export interface ModelState {
  /** Running pods by ordinal; a StatefulSet keeps them contiguous from 0. */
  readonly nodes: readonly ModelNode[];
  /** Absent between the leader's pause and the election that follows. */
  readonly leader?: number;
  readonly desired: number;
  readonly mode: ReconfigurationMode;
  /** The record as the operator last persisted it. */
  readonly operation?: OperationRecord;
  readonly finalizations: readonly Finalization[];
}

/** A running quorum of `size` nodes on `{epoch 1, members 0..size-1}`, asked to become `desired` nodes. */
export function initialModel(size: number, leader: number, desired: number, mode: ReconfigurationMode): ModelState {
  const members = Array.from({ length: size }, (_, ordinal) => ordinal);
  return {
    nodes: members.map((ordinal) => ({ ordinal, config: finalConfig(1, members) })),
    leader, desired, mode, finalizations: [],
  };
}

/** What the operator would observe of a healthy model cluster: every pod ready and caught up. */
export function observe(state: ModelState): ObservedState {
  return {
    desired: state.desired,
    mode: state.mode,
    pods: state.nodes.map(({ ordinal, config }) => ({
      ordinal, exists: true, ready: true, caughtUp: true, config, commitIndex: 0,
      role: ordinal === state.leader ? 'leader' : 'follower',
    })),
    leader: state.leader,
    statefulSetReplicas: state.nodes.length,
    operation: state.operation,
  };
}

export type Outcome =
  | { readonly ok: true; readonly state: ModelState }
  | { readonly ok: false; readonly problem: string };

/**
 * Executes one step. Fails when the step cannot be executed as the real cluster would: a pod
 * started out of ordinal order, a transfer or finalize sent to a node that is not the leader, or a
 * finalization that no quorum can choose.
 */
export function applyStep(state: ModelState, step: Action): Outcome {
  switch (step.kind) {
    case 'StartPod':
      if (step.ordinal !== state.nodes.length) return failed(`started pod ${step.ordinal} but the next ordinal is ${state.nodes.length}`);
      return done({ ...state, nodes: [...state.nodes, { ordinal: step.ordinal, config: step.config }] });
    case 'Convert': {
      const node = state.nodes[step.ordinal];
      if (node === undefined) return failed(`converted pod ${step.ordinal}, which does not run`);
      // Nodes refuse a configuration older than the one they hold, so a late convert cannot undo a newer one.
      const config = step.config.epoch >= node.config.epoch ? step.config : node.config;
      const nodes = state.nodes.map((n) => (n.ordinal === step.ordinal ? { ...n, config } : n));
      return done({ ...state, nodes, leader: state.leader === step.ordinal ? undefined : state.leader });
    }
    case 'TransferLeadership':
      if (state.leader !== step.from) return failed(`transferred leadership from pod ${step.from}, which does not lead`);
      if (state.nodes[step.to] === undefined) return failed(`transferred leadership to pod ${step.to}, which does not run`);
      return done({ ...state, leader: step.to });
    case 'Finalize': {
      const leader = state.leader === undefined ? undefined : state.nodes[state.leader];
      if (leader === undefined || leader.ordinal !== step.leader) return failed(`sent finalize to pod ${step.leader}, which does not lead`);
      if (leader.config.prior === undefined || leader.config.epoch !== step.epoch) {
        return failed(`pod ${leader.ordinal} cannot finalize epoch ${step.epoch}: it holds epoch ${leader.config.epoch}${leader.config.prior === undefined ? ' without prior' : ''}`);
      }
      return landFinalization(state, leader.config);
    }
    case 'StopPod':
      if (step.ordinal !== state.nodes.length - 1) return failed(`stopped pod ${step.ordinal} but the highest ordinal is ${state.nodes.length - 1}`);
      return done({
        ...state,
        nodes: state.nodes.slice(0, -1),
        leader: state.leader === step.ordinal ? undefined : state.leader,
      });
  }
}

/**
 * The finalization proposed under `joint` is chosen and applied: every node holding `joint` drops
 * its prior. Nodes on other configurations keep them; they are stale, and the checker decides
 * whether the acceptors that chose the finalization fence them.
 */
export function landFinalization(state: ModelState, joint: NodeConfig): Outcome {
  const running = state.nodes.map((node) => node.ordinal);
  if (!isQuorum(joint, toSet(running))) return failed(`no quorum of ${formatConfig(joint)} runs to choose the finalization`);
  const applied = finalConfig(joint.epoch, joint.members);
  return done({
    ...state,
    nodes: state.nodes.map((node) => (sameConfig(node.config, joint) ? { ...node, config: applied } : node)),
    finalizations: [...state.finalizations, { epoch: joint.epoch, chosenUnder: joint, voters: running }],
  });
}

function done(state: ModelState): Outcome {
  return { ok: true, state };
}

function failed(problem: string): Outcome {
  return { ok: false, problem };
}
