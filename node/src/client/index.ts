/** The Paxos client library: key-value and admin clients. */
export { PaxosClient, type PaxosClientOptions, type KeyValue, type CasResult } from './paxos-client.js';
export { AdminClient, type AdminClientOptions, type NodeStatus } from './admin-client.js';
export { PaxosClientError } from './errors.js';
