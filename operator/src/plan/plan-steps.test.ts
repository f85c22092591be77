import { planSteps } from './plan-steps.js';
import type { ReconfigurationMode } from './types.js';

/** The plan as `kind ordinal` words, which is what the design note specifies. */
function outline(from: number, to: number, mode: ReconfigurationMode = 'Transfer', leader = 0): string[] {
  const run = planSteps(from, to, mode, leader);
  expect(run.stuck).toBeUndefined();
  return run.steps.map(({ step }) => {
    switch (step.kind) {
      case 'StartPod': return `start ${step.ordinal}`;
      case 'Convert': return `convert ${step.ordinal}`;
      case 'TransferLeadership': return `transfer ${step.from}->${step.to}`;
      case 'Finalize': return `finalize ${step.epoch}`;
      case 'StopPod': return `stop ${step.ordinal}`;
    }
  });
}

describe('planSteps', () => {
  test('3 -> 5 starts one new pod first, as the patent does', () => {
    expect(outline(3, 5)).toEqual([
      'start 3', 'convert 1', 'convert 2', 'transfer 0->1', 'convert 0', 'start 4', 'finalize 2',
    ]);
  });

  test('3 -> 5 new pods boot on the joint configuration', () => {
    const [first] = planSteps(3, 5, 'Transfer').steps;
    expect(first?.text).toBe('start pod 3 on {0,1,2,3,4} (prior {0,1,2}), wait until caught up');
  });

  test('3 -> 7 starts two new pods first (k = 2)', () => {
    expect(outline(3, 7)).toEqual([
      'start 3', 'start 4', 'convert 1', 'convert 2', 'transfer 0->1', 'convert 0', 'start 5', 'start 6', 'finalize 2',
    ]);
  });

  test('1 -> 3 starts both new pods first (k = 2) and hands leadership to one of them', () => {
    expect(outline(1, 3)).toEqual(['start 1', 'start 2', 'transfer 0->1', 'convert 0', 'finalize 2']);
  });

  test('1 -> 2 and 2 -> 3 start their only new pod first', () => {
    expect(outline(1, 2)).toEqual(['start 1', 'transfer 0->1', 'convert 0', 'finalize 2']);
    expect(outline(2, 3)).toEqual(['start 2', 'convert 1', 'transfer 0->1', 'convert 0', 'finalize 2']);
  });

  test('5 -> 3 converts the survivors, finalizes, then stops the removed pods highest first', () => {
    expect(outline(5, 3)).toEqual([
      'convert 1', 'convert 2', 'transfer 0->1', 'convert 0', 'finalize 2', 'stop 4', 'stop 3',
    ]);
  });

  test('7 -> 3 keeps the removed pods up until finalization (survivors alone are no majority of 7)', () => {
    expect(outline(7, 3)).toEqual([
      'convert 1', 'convert 2', 'transfer 0->1', 'convert 0', 'finalize 2', 'stop 6', 'stop 5', 'stop 4', 'stop 3',
    ]);
  });

  test('3 -> 1 and 2 -> 1 convert the only survivor in place: there is nobody to hand over to', () => {
    expect(outline(3, 1)).toEqual(['convert 0', 'finalize 2', 'stop 2', 'stop 1']);
    expect(outline(2, 1)).toEqual(['convert 0', 'finalize 2', 'stop 1']);
  });

  test('a leader in the removed set hands over to a converted survivor and is never converted', () => {
    expect(outline(5, 3, 'Transfer', 4)).toEqual([
      'convert 0', 'convert 1', 'convert 2', 'transfer 4->0', 'finalize 2', 'stop 4', 'stop 3',
    ]);
    expect(outline(5, 3, 'Election', 3)).toEqual([
      'convert 0', 'convert 1', 'convert 2', 'transfer 3->0', 'finalize 2', 'stop 4', 'stop 3',
    ]);
  });

  test('Election mode converts the leader in place and says that an election follows', () => {
    expect(outline(3, 5, 'Election')).toEqual(['start 3', 'convert 1', 'convert 2', 'convert 0', 'start 4', 'finalize 2']);
    const leaderTurn = planSteps(3, 5, 'Election').steps[3];
    expect(leaderTurn?.text).toBe('convert pod 0 (the leader) to {0,1,2,3,4} (prior {0,1,2}); it pauses and a leader is elected');
  });

  test('followers convert in ordinal order around a leader that is not pod 0', () => {
    expect(outline(3, 5, 'Transfer', 1)).toEqual([
      'start 3', 'convert 0', 'convert 2', 'transfer 1->0', 'convert 1', 'start 4', 'finalize 2',
    ]);
  });
});
