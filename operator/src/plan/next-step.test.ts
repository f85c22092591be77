import { applyStep, initialModel, observe, type ModelState } from './model.js';
import { nextStep } from './next-step.js';
import { planSteps } from './plan-steps.js';
import { isAction, type Step } from './steps.js';
import type { ObservedState, ReconfigurationMode } from './types.js';

/** Plays nextStep the way the operator does: persist the record, execute the step, observe again. */
function drive(start: ModelState, visit: (state: ModelState) => void = () => {}): ModelState {
  let state = start;
  for (let calls = 0; calls < 100; calls += 1) {
    visit(state);
    const { step, operation } = nextStep(observe(state));
    state = { ...state, operation };
    if (step.kind === 'Done') return state;
    if (!isAction(step)) {
      expect(step).toEqual({ kind: 'Wait', reason: 'no leader; an election is in progress' });
      state = { ...state, leader: state.nodes.find((node) => node.config.epoch === Math.max(...state.nodes.map((n) => n.config.epoch)))?.ordinal };
      continue;
    }
    const outcome = applyStep(state, step);
    if (!outcome.ok) throw new Error(outcome.problem);
    state = outcome.state;
  }
  throw new Error('no Done after 100 calls');
}

function stepOf(observed: ObservedState): Step {
  return nextStep(observed).step;
}

const changes: [number, number, ReconfigurationMode][] = [
  [3, 5, 'Transfer'], [3, 7, 'Election'], [1, 3, 'Transfer'], [5, 3, 'Transfer'], [7, 3, 'Election'], [3, 1, 'Transfer'], [2, 1, 'Election'],
];

describe('nextStep', () => {
  test('an idle quorum of the desired size is done and carries no operation', () => {
    expect(nextStep(observe(initialModel(3, 0, 3, 'Transfer')))).toEqual({ step: { kind: 'Done' } });
  });

  test.each(changes)('%i -> %i (%s): repeated calls give the steps of the whole plan', (from, to, mode) => {
    const taken: string[] = [];
    const end = drive(initialModel(from, 0, to, mode), (state) => {
      const step = nextStep(observe(state)).step;
      if (isAction(step)) taken.push(JSON.stringify(step));
    });
    expect(taken).toEqual(planSteps(from, to, mode).steps.map(({ step }) => JSON.stringify(step)));
    expect(end.nodes.map((node) => node.config)).toEqual(Array(to).fill({ epoch: 2, members: [...Array(to).keys()] }));
    expect(end.operation).toBeUndefined();
  });

  test.each(changes)('%i -> %i (%s): every step is idempotent and survives a kill before or after persisting', (from, to, mode) => {
    drive(initialModel(from, 0, to, mode), (state) => {
      const first = nextStep(observe(state));
      // The same observation again (killed before persisting the record): the same decision.
      expect(nextStep(observe(state))).toEqual(first);
      // The record persisted, the step not executed yet (killed in between): the same step, the same record.
      const persisted = nextStep(observe({ ...state, operation: first.operation }));
      expect(persisted.step).toEqual(first.step);
      expect(persisted.operation).toEqual(first.operation);
    });
  });

  test('a lost record is rebuilt from the joint configuration the pods hold', () => {
    let converted: ModelState | undefined;
    drive(initialModel(3, 0, 5, 'Transfer'), (state) => {
      if (converted === undefined && state.nodes[1]?.config.prior !== undefined) converted = state;
    });
    if (converted === undefined) throw new Error('pod 1 never converted');
    const rebuilt = nextStep(observe({ ...converted, operation: undefined }));
    expect(rebuilt.step).toEqual(nextStep(observe(converted)).step);
    expect(rebuilt.operation).toMatchObject({ original: [0, 1, 2], target: [0, 1, 2, 3, 4], epoch: 2, finalizeIssued: true });
    expect(drive({ ...converted, operation: undefined }).nodes).toHaveLength(5);
  });

  test('progress: step advances with each action and totalSteps is the plan length', () => {
    const seen: [number, number][] = [];
    drive(initialModel(3, 0, 5, 'Transfer'), (state) => {
      const { step, operation } = nextStep(observe(state));
      if (isAction(step) && operation !== undefined) seen.push([operation.step, operation.totalSteps]);
    });
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7].map((step) => [step, 7]));
  });

  test('a target changed midway re-converts to {T, prior O} under a new epoch, finalizes, then stops pods outside T', () => {
    let midway: ModelState | undefined;
    drive(initialModel(3, 0, 5, 'Transfer'), (state) => {
      if (midway === undefined && state.nodes[2]?.config.prior !== undefined) midway = state;
    });
    if (midway === undefined) throw new Error('pod 2 never converted');
    // Pods 0..3 run; 1, 2, 3 hold {0..4} (prior {0,1,2}) at epoch 2. Back to 3.
    const back = { ...midway, desired: 3 };
    const { step, operation } = nextStep(observe(back));
    expect(operation).toMatchObject({ kind: 'Retarget', original: [0, 1, 2], target: [0, 1, 2], epoch: 3, finalizeIssued: false });
    expect(step).toEqual({ kind: 'Convert', ordinal: 1, config: { epoch: 3, members: [0, 1, 2], prior: [0, 1, 2] } });
    const end = drive(back);
    expect(end.nodes.map((node) => node.config)).toEqual(Array(3).fill({ epoch: 3, members: [0, 1, 2] }));
  });

  test('once a Finalize may be on the wire the target no longer changes; the next change is a new operation', () => {
    let finalizing: ModelState | undefined;
    drive(initialModel(3, 0, 5, 'Transfer'), (state) => {
      if (finalizing === undefined && nextStep(observe(state)).step.kind === 'Finalize') finalizing = state;
    });
    if (finalizing === undefined) throw new Error('no Finalize');
    const issued = nextStep(observe(finalizing)).operation;
    expect(issued?.finalizeIssued).toBe(true);
    expect(nextStep(observe({ ...finalizing, operation: issued, desired: 3 })).step).toMatchObject({ kind: 'Finalize', epoch: 2 });
    const end = drive({ ...finalizing, operation: issued, desired: 3 });
    expect(end.nodes.map((node) => node.config)).toEqual(Array(3).fill({ epoch: 3, members: [0, 1, 2] }));
  });

  describe('repair of members that lost their disks', () => {
    /**
     * Plays the planner against a model where `lost` pods report data loss the way the node does:
     * `suspended` until converted as a new server (member, not in prior), then `repairing` until
     * the finalization. The lost pods never lead.
     */
    function driveRepair(start: ModelState, lost: readonly number[]): { taken: Step[]; end: ModelState } {
      let state = start;
      const taken: Step[] = [];
      const loss = new Map<number, { repairEpoch?: number }>(lost.map((ordinal) => [ordinal, {}]));
      for (let calls = 0; calls < 100; calls += 1) {
        // A repairing node recovers once it holds a finalized configuration of its repair's epoch or later.
        for (const [ordinal, { repairEpoch }] of loss) {
          const config = state.nodes[ordinal]?.config;
          if (repairEpoch !== undefined && config?.prior === undefined && (config?.epoch ?? 0) >= repairEpoch) loss.delete(ordinal);
        }
        const seen = observe(state);
        const pods = seen.pods.map((pod) => {
          const l = loss.get(pod.ordinal);
          return l === undefined ? pod : { ...pod, dataLoss: l.repairEpoch === undefined ? 'suspended' as const : 'repairing' as const };
        });
        const { step, operation } = nextStep({ ...seen, pods });
        state = { ...state, operation };
        if (step.kind === 'Done') return { taken, end: state };
        if (!isAction(step)) throw new Error(`unexpected ${JSON.stringify(step)}`);
        if (step.kind === 'TransferLeadership') expect(loss.has(step.to)).toBe(false);
        taken.push(step);
        const outcome = applyStep(state, step);
        if (!outcome.ok) throw new Error(outcome.problem);
        state = outcome.state;
        // The node's rule: converted as a member outside the prior, it votes again from that epoch.
        if (step.kind === 'Convert' && loss.has(step.ordinal) && step.config.members.includes(step.ordinal) && step.config.prior?.includes(step.ordinal) === false) {
          loss.set(step.ordinal, { repairEpoch: step.config.epoch });
        }
        if (state.leader === undefined) state = { ...state, leader: state.nodes.find((n) => !loss.has(n.ordinal))?.ordinal };
      }
      throw new Error('no Done after 100 calls');
    }

    test('a lost follower is converted first as the new server of {others} -> {all}, then the others, then finalize', () => {
      const { taken, end } = driveRepair(initialModel(3, 0, 3, 'Transfer'), [1]);
      const joint = { epoch: 2, members: [0, 1, 2], prior: [0, 2] };
      expect(taken).toEqual([
        { kind: 'Convert', ordinal: 1, config: joint },
        { kind: 'Convert', ordinal: 2, config: joint },
        { kind: 'TransferLeadership', from: 0, to: 2 },
        { kind: 'Convert', ordinal: 0, config: joint },
        { kind: 'Finalize', epoch: 2, leader: 2, members: [0, 1, 2] },
      ]);
      expect(end.nodes.map((node) => node.config)).toEqual(Array(3).fill({ epoch: 2, members: [0, 1, 2] }));
      expect(end.operation).toBeUndefined();
    });

    test('with a resize pending, the repair folds into it; a second lost member is repaired after', () => {
      const { taken, end } = driveRepair(initialModel(5, 0, 7, 'Transfer'), [1, 3]);
      const finalizes = taken.filter((step) => step.kind === 'Finalize');
      expect(finalizes).toEqual([
        { kind: 'Finalize', epoch: 3, leader: expect.any(Number), members: [0, 1, 2, 3, 4, 5, 6] },
        { kind: 'Finalize', epoch: 4, leader: expect.any(Number), members: [0, 1, 2, 3, 4, 5, 6] },
      ]);
      // Pod 1 is the new server of {0,2,3,4} -> {0..6}; pod 3, lost too, waits for its own turn.
      expect(taken[0]).toEqual({ kind: 'Convert', ordinal: 1, config: { epoch: 3, members: [0, 1, 2, 3, 4, 5, 6], prior: [0, 2, 3, 4] } });
      expect(taken).toContainEqual({ kind: 'Convert', ordinal: 3, config: { epoch: 4, members: [0, 1, 2, 3, 4, 5, 6], prior: [0, 1, 2, 4, 5, 6] } });
      expect(end.nodes.map((node) => node.config)).toEqual(Array(7).fill({ epoch: 4, members: [0, 1, 2, 3, 4, 5, 6] }));
    });

    test('waits when too few members remember', () => {
      const seen = observe(initialModel(3, 0, 3, 'Transfer'));
      const pods = seen.pods.map((pod) => (pod.ordinal === 0 ? pod : { ...pod, dataLoss: 'suspended' as const }));
      expect(stepOf({ ...seen, pods })).toEqual({ kind: 'Wait', reason: 'pods 1, 2 lost their data and too few members remember to repair them online' });
    });
  });

  describe('waits', () => {
    const base = observe(initialModel(3, 0, 5, 'Transfer'));

    test('while a pod is not ready', () => {
      const pods = base.pods.map((pod) => (pod.ordinal === 2 ? { ...pod, ready: false } : pod));
      expect(stepOf({ ...base, pods })).toEqual({ kind: 'Wait', reason: 'pod 2 is not ready' });
    });

    test('until a pod has caught up', () => {
      const pods = base.pods.map((pod) => (pod.ordinal === 1 ? { ...pod, caughtUp: false } : pod));
      expect(stepOf({ ...base, pods })).toEqual({ kind: 'WaitCatchUp', ordinal: 1 });
    });

    test('while there is no leader', () => {
      expect(stepOf({ ...base, leader: undefined })).toEqual({ kind: 'Wait', reason: 'no leader; an election is in progress' });
    });

    test('while the StatefulSet has not produced the pod it was scaled for', () => {
      expect(stepOf({ ...base, statefulSetReplicas: 4 })).toEqual({ kind: 'Wait', reason: 'the StatefulSet has 4 replicas but 3 pods exist' });
    });

    test('while no pod reports a configuration', () => {
      const pods = base.pods.map((pod) => ({ ...pod, config: undefined }));
      expect(stepOf({ ...base, pods })).toEqual({ kind: 'Wait', reason: 'no pod reports a configuration yet' });
    });

    test('while the reported leader is not a running pod', () => {
      expect(stepOf({ ...base, leader: 7 })).toEqual({ kind: 'Wait', reason: 'the reported leader, pod 7, does not run' });
    });
  });
});
