/**
 * TLS material for the node and its clients: PEM files read and checked (a CA bundle, a
 * certificate and its key), a certificate provider that re-reads the files and swaps them in
 * without a restart, and the gRPC credentials built on it.
 *
 * Reloading: Kubernetes updates a mounted Secret by swapping a symlink, so polling the files'
 * contents every few seconds sees each new version whole. A new version that fails the checks
 * (unreadable, key not matching, not signed by the bundle, expired) is logged and ignored: the
 * node keeps serving with the last good one. Only the first load is fatal (a clear message and
 * exit code 2, see main.ts). New connections use the new material; open ones keep theirs.
 */
import * as grpc from '@grpc/grpc-js';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import { identityOf, type Identity } from './identity.js';

/** A certificate file is missing, unreadable, malformed or does not fit the others. */
export class TlsFilesError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TlsFilesError';
  }
}

/** Paths of the PEM files, and how to name them in errors (e.g. the flag that gave them). */
export interface TlsFiles {
  /** The trusted CA certificates (one or more PEM blocks: during a CA rotation, old and new). */
  readonly caFile: string;
  /** The own certificate (chain); optional for a client without a client certificate. */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** Names used in error messages; default `CA file`, `certificate file`, `key file`. */
  readonly labels?: { readonly ca: string; readonly cert: string; readonly key: string };
}

/** Checked TLS material. */
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  /** Expiry of the own certificate, when there is one. */
  readonly notAfter?: Date | undefined;
  /** The identity the own certificate names. */
  readonly identity?: Identity | undefined;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function certificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new TlsFilesError(`${what} holds no PEM certificate`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TlsFilesError(`${what} holds a malformed certificate: ${(err as Error).message}`, { cause: err });
    }
  });
}

/**
 * Checks PEM material and returns it with the own certificate's expiry and identity. Throws
 * `TlsFilesError` with a one-line reason: no certificate in the CA bundle, a certificate without
 * its key, a key that does not belong to the certificate, a certificate not signed by any CA of
 * the bundle, or one that is expired or not valid yet at `now`.
 */
export function checkTlsMaterial(
  material: { readonly ca: Buffer; readonly cert?: Buffer | undefined; readonly key?: Buffer | undefined },
  labels: { readonly ca: string; readonly cert: string; readonly key: string } = { ca: 'CA file', cert: 'certificate file', key: 'key file' },
  now: Date = new Date(),
): TlsMaterial {
  const cas = certificates(material.ca.toString('utf8'), labels.ca);
  if ((material.cert === undefined) !== (material.key === undefined)) {
    throw new TlsFilesError(material.cert ? `${labels.cert} given without ${labels.key}` : `${labels.key} given without ${labels.cert}`);
  }
  if (!material.cert || !material.key) return { ca: material.ca };
  const [leaf] = certificates(material.cert.toString('utf8'), labels.cert) as [X509Certificate];
  let key: KeyObject;
  try {
    key = createPrivateKey(material.key);
  } catch (err) {
    throw new TlsFilesError(`${labels.key} holds no readable private key: ${(err as Error).message}`, { cause: err });
  }
  if (!leaf.checkPrivateKey(key)) throw new TlsFilesError(`${labels.key} does not belong to the certificate in ${labels.cert}`);
  if (!cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey))) {
    throw new TlsFilesError(`the certificate in ${labels.cert} (${leaf.subject.replaceAll('\n', ', ')}) is not signed by any CA in ${labels.ca}`);
  }
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() < now.getTime()) throw new TlsFilesError(`the certificate in ${labels.cert} expired on ${notAfter.toISOString()}`);
  const notBefore = new Date(leaf.validFrom);
  if (notBefore.getTime() > now.getTime()) throw new TlsFilesError(`the certificate in ${labels.cert} is not valid before ${notBefore.toISOString()}`);
  const identity = identityOf({ subjectaltname: leaf.subjectAltName });
  return { ca: material.ca, cert: material.cert, key: material.key, notAfter, identity };
}

function readFile(path: string, label: string): Buffer {
  try {
    return fs.readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TlsFilesError(`cannot read ${label} ${path}: ${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)}`, { cause: err });
  }
}

/** Reads and checks the files (see `checkTlsMaterial`). Throws `TlsFilesError`. */
export function readTlsFiles(files: TlsFiles, now: Date = new Date()): TlsMaterial {
  const labels = files.labels ?? { ca: 'CA file', cert: 'certificate file', key: 'key file' };
  const ca = readFile(files.caFile, labels.ca);
  const cert = files.certFile === undefined ? undefined : readFile(files.certFile, labels.cert);
  const key = files.keyFile === undefined ? undefined : readFile(files.keyFile, labels.key);
  return checkTlsMaterial({ ca, cert, key }, { ca: `${labels.ca} ${files.caFile}`, cert: `${labels.cert} ${files.certFile ?? ''}`, key: `${labels.key} ${files.keyFile ?? ''}` }, now);
}

type CaListener = (update: { caCertificate: Buffer } | null) => void;
type IdentityListener = (update: { certificate: Buffer; privateKey: Buffer } | null) => void;

/**
 * A grpc-js certificate provider (`grpc.experimental.CertificateProvider`) holding the current
 * material: fixed, updated by its owner (`update`), or polled from files (`fromFiles`).
 * Listeners are told asynchronously: grpc-js registers a server's watcher only after it
 * subscribed to the provider, so a synchronous first update would be lost.
 */
export class CertificateSource implements grpc.experimental.CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(private material: TlsMaterial) {}

  /** Fixed material (checked by the caller, e.g. with `checkTlsMaterial`). */
  static of(material: TlsMaterial): CertificateSource {
    return new CertificateSource(material);
  }

  /**
   * Reads the files now (throws `TlsFilesError`) and re-reads them every `reloadMs`; a changed
   * and valid version replaces the current one, an invalid one is logged and skipped.
   */
  static fromFiles(files: TlsFiles, options: { readonly reloadMs: number; readonly logger: Logger }): CertificateSource {
    const source = new CertificateSource(readTlsFiles(files));
    let lastError = '';
    source.timer = setInterval(() => {
      try {
        const next = readTlsFiles(files);
        lastError = '';
        if (source.update(next)) {
          options.logger.info({ notAfter: next.notAfter?.toISOString(), caFile: files.caFile, certFile: files.certFile }, 'reloaded TLS certificates');
        }
      } catch (err) {
        const message = (err as Error).message;
        // Once per distinct error: a half-written Secret is retried every poll.
        if (message !== lastError) options.logger.warn({ reason: message }, 'new TLS files rejected; keeping the current certificates');
        lastError = message;
      }
    }, options.reloadMs);
    source.timer.unref();
    return source;
  }

  /** The material in use. */
  get current(): TlsMaterial {
    return this.material;
  }

  /** Replaces the material; returns false (and tells nobody) when nothing changed. */
  update(material: TlsMaterial): boolean {
    const same = (a: Buffer | undefined, b: Buffer | undefined): boolean => (a === undefined ? b === undefined : b !== undefined && a.equals(b));
    const m = this.material;
    if (same(m.ca, material.ca) && same(m.cert, material.cert) && same(m.key, material.key)) return false;
    this.material = material;
    for (const l of this.caListeners) l({ caCertificate: material.ca });
    for (const l of this.identityListeners) l(this.identityUpdate());
    return true;
  }

  /** Stops polling. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private identityUpdate(): { certificate: Buffer; privateKey: Buffer } | null {
    const { cert, key } = this.material;
    return cert && key ? { certificate: cert, privateKey: key } : null;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.caListeners.has(listener)) listener({ caCertificate: this.material.ca });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identityListeners.has(listener)) listener(this.identityUpdate());
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}

/** Server credentials on `source`: client certificates verified against its CA bundle, required or optional. */
export function serverCredentials(source: CertificateSource, requireClientCertificate: boolean): grpc.ServerCredentials {
  return grpc.experimental.createCertificateProviderServerCredentials(source, source, requireClientCertificate);
}

/**
 * How a client checks the server's certificate beyond its chain: `hostname` (the usual check of
 * the dialed name against the certificate's DNS/IP names), or `member` (the certificate names a
 * member of the quorum, `urn:paxos:member:N`, whatever the name dialed: for pod IPs, which no
 * certificate can list in advance), or member `N` exactly.
 */
export type ServerIdentityCheck = 'hostname' | 'member' | { readonly member: number };

/** `tls.checkServerIdentity`-shaped verifier for `check`. */
export function serverIdentityVerifier(check: ServerIdentityCheck): (hostname: string, cert: tls.PeerCertificate) => Error | undefined {
  if (check === 'hostname') return (hostname, cert) => tls.checkServerIdentity(hostname, cert);
  return (_hostname, cert) => {
    const identity = identityOf(cert);
    if (identity.kind !== 'member') return new Error(`the server's certificate names no quorum member (${cert.subject?.CN ?? 'no CN'})`);
    if (typeof check === 'object' && identity.id !== check.member) return new Error(`the server's certificate is member ${identity.id}'s, not member ${check.member}'s`);
    return undefined;
  };
}

/** Channel credentials on `source` (its own certificate, if any, is presented as client certificate). */
export function channelCredentials(source: CertificateSource, check: ServerIdentityCheck = 'hostname'): grpc.ChannelCredentials {
  return grpc.experimental.createCertificateProviderChannelCredentials(source, source.current.cert ? source : null, {
    checkServerIdentity: serverIdentityVerifier(check),
  });
}
