/**
 * Who is on the other end of a TLS connection, read from its certificate.
 *
 * Every certificate of a quorum is issued by the quorum's own CA and carries exactly one
 * identity as a URI subject alternative name (the DNS names are for hostname verification):
 *
 * - `urn:paxos:member:<ordinal>`: the node with that id (pod `<quorum>-<ordinal>`);
 * - `urn:paxos:operator`: the operator, the only caller allowed to use the admin API;
 * - `urn:paxos:client:<name>`: an application client.
 *
 * A certificate with none of them, or with more than one, is `unknown`: it can still read and
 * write (with client authentication on, any certificate of the CA may), but it is neither a
 * member nor the operator. See docs/adr/0011-mutual-tls-and-admin-identity.md.
 */

/** URI SAN prefix of a member certificate. */
export const MEMBER_URI_PREFIX = 'urn:paxos:member:';
/** URI SAN of the operator's client certificate. */
export const OPERATOR_URI = 'urn:paxos:operator';
/** URI SAN prefix of an application client certificate. */
export const CLIENT_URI_PREFIX = 'urn:paxos:client:';

/** The URI SAN of member `id`. */
export function memberUri(id: number): string {
  return `${MEMBER_URI_PREFIX}${id}`;
}

/** The URI SAN of client `name`. */
export function clientUri(name: string): string {
  return `${CLIENT_URI_PREFIX}${name}`;
}

/** What a certificate says its holder is. */
export type Identity =
  | { readonly kind: 'member'; readonly id: number }
  | { readonly kind: 'operator' }
  | { readonly kind: 'client'; readonly name: string }
  | { readonly kind: 'unknown' }
  /** No (verified) certificate at all: a plaintext or a TLS connection without client certificate. */
  | { readonly kind: 'anonymous' };

/** The parts of Node's `tls.PeerCertificate` this module reads. */
export interface CertificateNames {
  readonly subjectaltname?: string | undefined;
  readonly subject?: { readonly CN?: string | string[] } | undefined;
  readonly serialNumber?: string | undefined;
}

/** The URI SANs of a certificate, from Node's `subjectaltname` string (`DNS:a, URI:b, IP Address:c`). */
export function uriNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((part) => part.startsWith('URI:'))
    .map((part) => part.slice('URI:'.length));
}

/** The identity a verified certificate names; `anonymous` without one. */
export function identityOf(cert: CertificateNames | undefined): Identity {
  if (!cert) return { kind: 'anonymous' };
  const ours = uriNames(cert.subjectaltname).filter((u) => u.startsWith('urn:paxos:'));
  if (ours.length !== 1) return { kind: 'unknown' };
  const uri = ours[0] as string;
  if (uri === OPERATOR_URI) return { kind: 'operator' };
  if (uri.startsWith(MEMBER_URI_PREFIX)) {
    const raw = uri.slice(MEMBER_URI_PREFIX.length);
    const id = Number(raw);
    return /^\d{1,7}$/.test(raw) && Number.isSafeInteger(id) ? { kind: 'member', id } : { kind: 'unknown' };
  }
  if (uri.startsWith(CLIENT_URI_PREFIX) && uri.length > CLIENT_URI_PREFIX.length) return { kind: 'client', name: uri.slice(CLIENT_URI_PREFIX.length) };
  return { kind: 'unknown' };
}

/** A one-line description of a caller for logs: identity, subject CN and serial. */
export function describeCaller(cert: CertificateNames | undefined): string {
  const identity = identityOf(cert);
  if (identity.kind === 'anonymous') return 'anonymous (no client certificate)';
  const cn = cert?.subject?.CN;
  const who = identity.kind === 'member' ? `member ${identity.id}` : identity.kind === 'client' ? `client ${identity.name}` : identity.kind;
  return `${who} (CN=${Array.isArray(cn) ? cn.join('+') : (cn ?? '')}, serial ${cert?.serialNumber ?? '?'})`;
}
