/** The Paxos client library: key-value and admin clients. */
export { PaxosClient, type PaxosClientOptions, type KeyValue, type CasResult } from './paxos-client.js';
export { AdminClient, type AdminClientOptions, type BackupMetaWire, type NodeStatus } from './admin-client.js';
export { PaxosClientError } from './errors.js';
export { TlsFilesError, tlsCredentials, tlsCredentialsFromFiles, type ClientTlsFiles, type ClientTlsPem, type ServerIdentityCheck } from './tls.js';
