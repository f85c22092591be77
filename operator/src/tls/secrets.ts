/**
 * What the TLS Secrets of a quorum must hold, from what they hold now and the time: the CA
 * kept in `<name>-tls-ca`, member certificates (one per ordinal, with the pod and Service DNS
 * names) in `<name>-tls-members` (mounted into every pod), the operator's admin certificate in
 * `<name>-tls-operator` and one application client certificate in `<name>-tls-client`, each
 * with the trust bundle as `ca.crt`.
 *
 * Renewal: a leaf is re-issued when it is missing, unreadable, not signed by the CA it should
 * be, or within `renewBeforeDays` of its expiry. The CA is rotated by overlap when it nears its
 * own expiry: (A) a new CA is made and trusted beside the old one (bundle old+new) for
 * `overlapMs`, so that every pod has re-read the bundle; (B) then every leaf is re-issued from
 * the new CA; (C) `overlapMs` later the old CA leaves the bundle. A pod that reads the new files
 * at any point of this trusts every certificate it can meet. See ADR 0011.
 */
import { X509Certificate } from 'node:crypto';
import { clientUri, memberUri, OPERATOR_URI } from '../../../node/src/io/identity.js';
import { createCa, issueLeaf, newKey, type KeyPair } from './pki.js';

/** The quorum's TLS settings (spec.tls, defaults applied). */
export interface TlsSettings {
  readonly enabled: boolean;
  readonly clientAuth: 'Required' | 'None';
  readonly certificateValidityDays: number;
  readonly renewBeforeDays: number;
}

/** Names of the TLS Secrets of quorum `name`. */
export function tlsSecretNames(name: string): { readonly ca: string; readonly members: string; readonly operator: string; readonly client: string } {
  return { ca: `${name}-tls-ca`, members: `${name}-tls-members`, operator: `${name}-tls-operator`, client: `${name}-tls-client` };
}

/** Keys inside the Secrets. */
export const TLS_KEYS = {
  bundle: 'ca.crt',
  caKey: 'ca.key',
  previousCa: 'previous-ca.crt',
  rotatedAt: 'rotated-at',
  cert: 'tls.crt',
  key: 'tls.key',
  memberCert: (ordinal: number): string => `member-${ordinal}.crt`,
  memberKey: (ordinal: number): string => `member-${ordinal}.key`,
} as const;

/** Where the pods mount the members Secret; the node replaces `{i}` by its id. */
export const TLS_MOUNT = '/etc/paxos/tls';

/** How long old and new CA are both trusted in a CA rotation, per phase (kubelet Secret sync is about a minute, the node re-reads every 10 s). */
export const CA_OVERLAP_MS = 10 * 60_000;
/** Validity of a CA: several leaf lifetimes, so that CA rotations are rare. */
export const CA_VALIDITY_DAYS = 5 * 365;

/** Secret contents, decoded (PEM text). */
export type SecretData = Readonly<Record<string, string>>;

/** The four Secrets as they are (absent: undefined). */
export interface CurrentTls {
  readonly ca?: SecretData | undefined;
  readonly members?: SecretData | undefined;
  readonly operator?: SecretData | undefined;
  readonly client?: SecretData | undefined;
}

/** What they must hold, which changed, and why (for Events). */
export interface DesiredTls {
  readonly ca: SecretData;
  readonly members: SecretData;
  readonly operator: SecretData;
  readonly client: SecretData;
  readonly changed: ReadonlySet<keyof CurrentTls>;
  readonly notes: readonly string[];
  /** Earliest expiry of any leaf, for status. */
  readonly notAfter: Date;
}

/** Input of {@link desiredTls}. */
export interface TlsInput {
  readonly name: string;
  readonly namespace: string;
  /** Member certificates for ordinals 0..members-1. */
  readonly members: number;
  readonly settings: TlsSettings;
  readonly now: Date;
  readonly current: CurrentTls;
}

const DAY_MS = 86_400_000;

function parse(pem: string | undefined): X509Certificate | undefined {
  if (!pem) return undefined;
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

/** DNS names of member `ordinal`: pod (via the headless Service), client Service, loopback (with IP 127.0.0.1: `kubectl port-forward`). */
export function memberDnsNames(name: string, namespace: string, ordinal: number): string[] {
  const pod = `${name}-${ordinal}`;
  const peers = `${name}-peers`;
  const domains = (host: string): string[] => [host, `${host}.${namespace}`, `${host}.${namespace}.svc`, `${host}.${namespace}.svc.cluster.local`];
  return [pod, ...domains(`${pod}.${peers}`), ...domains(name), 'localhost'];
}

/** The TLS Secrets' desired contents. Pure apart from key generation (off the event loop) and serial numbers. */
export async function desiredTls(input: TlsInput): Promise<DesiredTls> {
  const { now, settings } = input;
  const changed = new Set<keyof CurrentTls>();
  const notes: string[] = [];
  const leafValidity = { notBefore: new Date(now.getTime() - 5 * 60_000), notAfter: new Date(now.getTime() + settings.certificateValidityDays * DAY_MS) };
  const renewAt = (cert: X509Certificate): number => Date.parse(cert.validTo) - settings.renewBeforeDays * DAY_MS;

  // The CA, and the rotation phase.
  let caData: Record<string, string> = { ...(input.current.ca ?? {}) };
  let caCert = parse(caData[TLS_KEYS.bundle]);
  if (caCert === undefined || !caData[TLS_KEYS.caKey]) {
    const ca = createCa(`${input.namespace}/${input.name} paxos CA`, { notBefore: leafValidity.notBefore, notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS) }, await newKey());
    caData = { [TLS_KEYS.bundle]: ca.certPem, [TLS_KEYS.caKey]: ca.keyPem };
    caCert = new X509Certificate(ca.certPem);
    changed.add('ca');
    notes.push('created the quorum CA');
  } else if (caData[TLS_KEYS.previousCa] === undefined && now.getTime() >= Date.parse(caCert.validTo) - Math.max(settings.renewBeforeDays * DAY_MS, 2 * CA_OVERLAP_MS)) {
    const oldExpiry = new Date(caCert.validTo).toISOString();
    const ca = createCa(`${input.namespace}/${input.name} paxos CA`, { notBefore: leafValidity.notBefore, notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS) }, await newKey());
    caData = { [TLS_KEYS.bundle]: ca.certPem, [TLS_KEYS.caKey]: ca.keyPem, [TLS_KEYS.previousCa]: caData[TLS_KEYS.bundle] as string, [TLS_KEYS.rotatedAt]: now.toISOString() };
    caCert = new X509Certificate(ca.certPem);
    changed.add('ca');
    notes.push(`CA rotation started (the old CA expires ${oldExpiry}): old and new CA are both trusted`);
  }
  const rotatedRaw = caData[TLS_KEYS.rotatedAt];
  const rotatedAt = rotatedRaw ? Date.parse(rotatedRaw) : undefined;
  const elapsed = rotatedAt === undefined ? Infinity : now.getTime() - rotatedAt;
  if (caData[TLS_KEYS.previousCa] !== undefined && elapsed >= 2 * CA_OVERLAP_MS) {
    const { [TLS_KEYS.previousCa]: _old, [TLS_KEYS.rotatedAt]: _at, ...rest } = caData;
    caData = rest;
    changed.add('ca');
    notes.push('CA rotation complete: the old CA is no longer trusted');
  }
  const previous = parse(caData[TLS_KEYS.previousCa]);
  // Phase A: leaves stay as they are (signed by either CA); from phase B on they must be the new CA's.
  const issueFromNewOnly = previous === undefined || elapsed >= CA_OVERLAP_MS;
  const ca: KeyPair = { certPem: caData[TLS_KEYS.bundle] as string, keyPem: caData[TLS_KEYS.caKey] as string };
  const bundle = previous ? `${ca.certPem.trim()}\n${(caData[TLS_KEYS.previousCa] as string).trim()}\n` : ca.certPem;
  const trusted = [caCert, ...(previous ? [previous] : [])];
  let earliest = Infinity;

  /** The leaf in `cert`/`key` if it may stay, else a new one. */
  const leaf = async (what: string, certPem: string | undefined, keyPem: string | undefined, uri: string, commonName: string, dns: string[], server: boolean, ips: string[] = []): Promise<KeyPair> => {
    const cert = parse(certPem);
    const signers = issueFromNewOnly ? [caCert] : trusted;
    const stays = cert !== undefined && keyPem !== undefined
      && signers.some((c) => cert.checkIssued(c) && cert.verify(c.publicKey))
      && now.getTime() < renewAt(cert)
      && cert.subjectAltName?.includes(`URI:${uri}`) === true
      && dns.every((d) => cert.subjectAltName?.includes(`DNS:${d}`) === true);
    if (stays) {
      earliest = Math.min(earliest, Date.parse(cert.validTo));
      return { certPem: certPem as string, keyPem: keyPem as string };
    }
    notes.push(cert === undefined ? `issued the ${what} certificate` : `renewed the ${what} certificate (it expires ${new Date(cert.validTo).toISOString()})`);
    earliest = Math.min(earliest, leafValidity.notAfter.getTime());
    return issueLeaf(ca, { ...leafValidity, commonName, uri, dnsNames: dns, ipAddresses: ips, server }, await newKey());
  };

  const members: Record<string, string> = { [TLS_KEYS.bundle]: bundle };
  const cm = input.current.members ?? {};
  for (let i = 0; i < input.members; i++) {
    const pair = await leaf(`member ${i}`, cm[TLS_KEYS.memberCert(i)], cm[TLS_KEYS.memberKey(i)], memberUri(i), `${input.name}-${i}`, memberDnsNames(input.name, input.namespace, i), true, ['127.0.0.1']);
    members[TLS_KEYS.memberCert(i)] = pair.certPem;
    members[TLS_KEYS.memberKey(i)] = pair.keyPem;
  }
  // Certificates of ordinals beyond the current size stay: a pod of a shrink may still run.
  for (const [key, value] of Object.entries(cm)) if (!(key in members) && /^member-\d+\.(crt|key)$/.test(key)) members[key] = value;

  const holder = async (what: string, current: SecretData | undefined, uri: string, commonName: string): Promise<Record<string, string>> => {
    const pair = await leaf(what, current?.[TLS_KEYS.cert], current?.[TLS_KEYS.key], uri, commonName, [], false);
    return { [TLS_KEYS.bundle]: bundle, [TLS_KEYS.cert]: pair.certPem, [TLS_KEYS.key]: pair.keyPem };
  };
  const operator = await holder('operator', input.current.operator, OPERATOR_URI, 'paxos-operator');
  const client = await holder('client', input.current.client, clientUri(input.name), `${input.name}-client`);

  const same = (a: SecretData | undefined, b: SecretData): boolean =>
    a !== undefined && Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  if (!same(input.current.members, members)) changed.add('members');
  if (!same(input.current.operator, operator)) changed.add('operator');
  if (!same(input.current.client, client)) changed.add('client');
  return { ca: caData, members, operator, client, changed, notes, notAfter: new Date(earliest) };
}
