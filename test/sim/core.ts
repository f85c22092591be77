import { Replica } from '../../node/src/core/replica.js';
import type { ReplicaFactory } from './process.js';

/** The real Paxos core, the one the simulator exists to test. */
export const realReplica: ReplicaFactory = (options, state) => new Replica(options, state);
