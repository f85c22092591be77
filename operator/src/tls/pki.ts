/**
 * The quorum's own small PKI: a CA per quorum and the certificates it issues (members,
 * operator, clients), each naming its holder with one URI SAN (node/src/io/identity.ts).
 * RSA-2048 keys come from node:crypto; node-forge builds and signs the certificates (node:crypto
 * cannot issue X.509). Used by the operator and by the tests that need certificates.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { OPERATOR_URI, clientUri, memberUri } from '../../../node/src/io/identity.js';

/** A certificate and its private key, both PEM. */
export interface KeyPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Validity of a certificate to issue. */
export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** What a leaf certificate is for. */
export interface LeafRequest extends Validity {
  readonly commonName: string;
  /** The identity URI (see identity.ts). */
  readonly uri: string;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Server and client authentication (members), or client only (operator, clients). */
  readonly server: boolean;
}

function newKey(): { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), keyPem };
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f; // positive
  return bytes.toString('hex');
}

function base(publicKey: forge.pki.rsa.PublicKey, validity: Validity): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = validity.notBefore;
  cert.validity.notAfter = validity.notAfter;
  return cert;
}

/** A self-signed CA certificate and key. */
export function createCa(commonName: string, validity: Validity): KeyPair {
  const key = newKey();
  const cert = base(key.publicKey, validity);
  const name = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'paxos-operator' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.keyPem };
}

/** A leaf certificate signed by `ca`. */
export function issueLeaf(ca: KeyPair, request: LeafRequest): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const key = newKey();
  const cert = base(key.publicKey, request);
  cert.setSubject([{ name: 'commonName', value: request.commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [
    { type: 6, value: request.uri },
    ...(request.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(request.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: request.server, clientAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.keyPem };
}

/** Member `ordinal`'s certificate: server and client, with the given DNS names and IPs. */
export function issueMember(ca: KeyPair, ordinal: number, commonName: string, names: { dns?: readonly string[]; ips?: readonly string[] }, validity: Validity): KeyPair {
  return issueLeaf(ca, { ...validity, commonName, uri: memberUri(ordinal), dnsNames: names.dns ?? [], ipAddresses: names.ips ?? [], server: true });
}

/** The operator's client certificate, the only one the nodes' admin API accepts. */
export function issueOperator(ca: KeyPair, validity: Validity): KeyPair {
  return issueLeaf(ca, { ...validity, commonName: 'paxos-operator', uri: OPERATOR_URI, server: false });
}

/** An application client's certificate. */
export function issueClient(ca: KeyPair, name: string, validity: Validity): KeyPair {
  return issueLeaf(ca, { ...validity, commonName: name, uri: clientUri(name), server: false });
}
