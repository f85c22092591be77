import { checkAll, checkChange, operatorPlanner, type Planner } from './check.js';
import { observe } from './model.js';
import { nextStep } from './next-step.js';

describe('model checker', () => {
  test('every n -> m in 1..7 with every target change midway is safe and live', () => {
    // 1..9 takes about 15 s on one core; `npm run plan -- --check-all --max 9` runs it.
    const summary = checkAll(7);
    expect(summary.failure).toBeUndefined();
    // Each n -> m with m != n, in two modes, from each of the n initial leaders.
    expect(summary.cases).toBe(2 * 6 * (1 + 2 + 3 + 4 + 5 + 6 + 7));
    expect(summary.states).toBeGreaterThan(10_000);
  });

  test('fails the plain order for 3 -> 5 that starts two new pods on N-only majorities', () => {
    const n = [0, 1, 2, 3, 4];
    const twoNewPodsOnN: Planner = (state) => (state.nodes.length < 5
      ? { step: { kind: 'StartPod', ordinal: state.nodes.length, config: { epoch: 2, members: n } } }
      : { step: { kind: 'Done' } });
    const { failure } = checkChange(3, 5, 5, twoNewPodsOnN);
    expect(failure?.trail).toEqual(['start pod 3 on {0,1,2,3,4}, wait until caught up', 'start pod 4 on {0,1,2,3,4}, wait until caught up']);
    expect(failure?.problem).toBe('split brain: {1,2} is a quorum of {0,1,2} (epoch 1) and {0,3,4} of {0,1,2,3,4} (epoch 2)');
  });

  test('fails stopping the removed pods before finalization in 7 -> 3', () => {
    const stopFirst: Planner = (state) => {
      const decision = operatorPlanner(state);
      const operation = decision.operation;
      const early = operation !== undefined && !operation.finalizeIssued && state.nodes.length > operation.target.length;
      return early ? { ...decision, step: { kind: 'StopPod', ordinal: state.nodes.length - 1 } } : decision;
    };
    const { failure } = checkChange(7, 3, 7, stopFirst);
    expect(failure?.problem).toMatch(/no leader can be elected/);
    expect(failure?.trail.slice(0, 2)).toEqual(['stop pod 6 and delete its volume', 'stop pod 5 and delete its volume']);
  });

  test('fails a retarget that ignores a Finalize already on the wire', () => {
    const forgetful: Planner = (state) => nextStep(observe(
      state.operation === undefined ? state : { ...state, operation: { ...state.operation, finalizeIssued: false } },
    ));
    const { failure } = checkAll(5, forgetful);
    expect(failure?.problem).toMatch(/^split brain: /);
    expect(failure?.trail.join('\n')).toMatch(/while the finalization is in flight/);
  });

  test('fails a planner that finalizes before every member of the target runs', () => {
    const hasty: Planner = (state) => {
      const decision = operatorPlanner(state);
      const { step, operation } = decision;
      if (step.kind !== 'StartPod' || operation === undefined || state.leader === undefined) return decision;
      const leaderConfig = state.nodes[state.leader]?.config;
      if (leaderConfig?.prior === undefined || leaderConfig.epoch !== operation.epoch) return decision;
      return { step: { kind: 'Finalize', epoch: operation.epoch, leader: state.leader, members: operation.target }, operation: { ...operation, finalizeIssued: true } };
    };
    const { failure } = checkChange(3, 7, 7, hasty);
    expect(failure).toBeDefined();
  });
});
