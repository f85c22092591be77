/**
 * TLS for clients: credentials from etcdctl-style options (`cacert`, `cert`, `key`), for
 * `PaxosClient`, `AdminClient` and paxosctl. Without `cert`/`key` the client checks the server
 * but presents no certificate (enough for a quorum with `spec.tls.clientAuth: None`).
 */
import type * as grpc from '@grpc/grpc-js';
import { CertificateSource, channelCredentials, checkTlsMaterial, readTlsFiles, type ServerIdentityCheck } from '../io/tls.js';

export { TlsFilesError, type ServerIdentityCheck } from '../io/tls.js';

/** Paths of PEM files, as etcdctl names them. */
export interface ClientTlsFiles {
  /** CA bundle that signed the servers' certificates. */
  readonly cacert: string;
  /** Client certificate and key (both or neither). */
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  /**
   * How the server's certificate is matched: `hostname` (default, the dialed name must be in it)
   * or `member` (any quorum member's certificate, for dialing pod IPs).
   */
  readonly serverIdentity?: ServerIdentityCheck;
}

/** PEM contents instead of paths. */
export interface ClientTlsPem {
  readonly ca: string | Buffer;
  readonly cert?: string | Buffer | undefined;
  readonly key?: string | Buffer | undefined;
  readonly serverIdentity?: ServerIdentityCheck;
}

/**
 * Channel credentials from files. Throws `TlsFilesError` with a one-line reason naming the flag
 * (`--cacert`, `--cert`, `--key`) when a file is missing, unreadable, malformed, expired or does
 * not match the others.
 */
export function tlsCredentialsFromFiles(files: ClientTlsFiles): grpc.ChannelCredentials {
  const material = readTlsFiles({ caFile: files.cacert, certFile: files.cert, keyFile: files.key, labels: { ca: '--cacert', cert: '--cert', key: '--key' } });
  return channelCredentials(CertificateSource.of(material), files.serverIdentity ?? 'hostname');
}

/** Channel credentials from PEM contents (checked like the files). */
export function tlsCredentials(pem: ClientTlsPem): grpc.ChannelCredentials {
  const buf = (v: string | Buffer | undefined): Buffer | undefined => (v === undefined ? undefined : Buffer.isBuffer(v) ? v : Buffer.from(v));
  const material = checkTlsMaterial({ ca: buf(pem.ca) as Buffer, cert: buf(pem.cert), key: buf(pem.key) }, { ca: 'CA', cert: 'certificate', key: 'key' });
  return channelCredentials(CertificateSource.of(material), pem.serverIdentity ?? 'hostname');
}
