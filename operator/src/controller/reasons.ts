/**
 * Every condition type and reason the controller writes, in one place, so that status and
 * Events use the same vocabulary and dashboards can match on it.
 */

/** Condition types on a PaxosQuorum. */
export const ConditionType = {
  /** A leader is elected and a majority of members is ready. */
  Available: 'Available',
  /** A membership change, scale or image roll is being worked on. */
  Progressing: 'Progressing',
  /** Something is wrong: a member is not ready, or an action failed. */
  Degraded: 'Degraded',
  /** A membership change cannot make progress (step timeout, invalid spec). */
  ReconfigurationBlocked: 'ReconfigurationBlocked',
} as const;

/** Reasons on conditions and Events. */
export const Reason = {
  // Available
  QuorumAvailable: 'QuorumAvailable',
  PodsNotReady: 'PodsNotReady',
  NoLeader: 'NoLeader',
  // Progressing
  Creating: 'Creating',
  Reconfiguring: 'Reconfiguring',
  RollingImage: 'RollingImage',
  Idle: 'Idle',
  Deleting: 'Deleting',
  // Degraded
  AsExpected: 'AsExpected',
  MembersUnhealthy: 'MembersUnhealthy',
  /** A member restarted on an empty volume; the operator repairs it through a reconfiguration. */
  MemberDataLost: 'MemberDataLost',
  ActionFailed: 'ActionFailed',
  // ReconfigurationBlocked
  NotBlocked: 'NotBlocked',
  StepTimeout: 'StepTimeout',
  InvalidSpec: 'InvalidSpec',
  OwnershipConflict: 'OwnershipConflict',
  // Events for steps and object management
  Created: 'Created',
  Updated: 'Updated',
  PodStarting: 'PodStarting',
  PodStopping: 'PodStopping',
  NodeConverted: 'NodeConverted',
  LeadershipTransferred: 'LeadershipTransferred',
  Finalized: 'Finalized',
  OperationStarted: 'OperationStarted',
  OperationCompleted: 'OperationCompleted',
  OperationRetargeted: 'OperationRetargeted',
  PodRolled: 'PodRolled',
  StepFailed: 'StepFailed',
  CleanedUp: 'CleanedUp',
} as const;

export type ReasonValue = (typeof Reason)[keyof typeof Reason];
