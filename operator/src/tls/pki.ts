/**
 * The quorum's own small PKI: a CA per quorum and the certificates it issues (members,
 * operator, clients), each naming its holder with one URI SAN (node/src/io/identity.ts).
 * RSA-2048 keys and signatures come from node:crypto; node-forge only builds the certificate
 * structure (node:crypto cannot issue X.509). Used by the operator and by the tests that need certificates.
 */
import { createPrivateKey, generateKeyPair, generateKeyPairSync, randomBytes, sign as nodeSign } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { OPERATOR_URI, clientUri, memberUri } from '../../../node/src/io/identity.js';

const generateKeyPairAsync = promisify(generateKeyPair);

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

/** A fresh RSA-2048 key pair, PEM; generated off the event loop (the operator also renews its Lease). */
export interface NewKey {
  readonly keyPem: string;
  readonly publicKeyPem: string;
}

const RSA = { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } } as const;

/** A new key, asynchronously (libuv thread pool). */
export async function newKey(): Promise<NewKey> {
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', RSA);
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

/** A new key, blocking (tests). */
export function newKeySync(): NewKey {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', RSA);
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f; // positive
  return bytes.toString('hex');
}

function base(publicKeyPem: string, validity: Validity): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = validity.notBefore;
  cert.validity.notAfter = validity.notAfter;
  return cert;
}

/**
 * Signs `cert` with `signerKeyPem` through node:crypto (PKCS#1 v1.5, SHA-256): forge builds
 * the structure, native code does the RSA work (forge's own RSA is far slower).
 */
function sign(cert: forge.pki.Certificate, signerKeyPem: string): void {
  const signer = createPrivateKey(signerKeyPem);
  const nativeKey = {
    sign: (): string => {
      // forge sets tbsCertificate right before it asks the key to sign (x509.js, cert.sign).
      const tbsCertificate = (cert as unknown as { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate;
      const tbs = Buffer.from(forge.asn1.toDer(tbsCertificate).getBytes(), 'binary');
      return nodeSign('sha256', tbs, signer).toString('binary');
    },
  };
  cert.sign(nativeKey as unknown as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
}

/** A self-signed CA certificate with `key` (default: a new one, blocking). */
export function createCa(commonName: string, validity: Validity, key: NewKey = newKeySync()): KeyPair {
  const cert = base(key.publicKeyPem, validity);
  const name = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'paxos-operator' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  sign(cert, key.keyPem);
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.keyPem };
}

/** A leaf certificate for `key` (default: a new one, blocking) signed by `ca`. */
export function issueLeaf(ca: KeyPair, request: LeafRequest, key: NewKey = newKeySync()): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const cert = base(key.publicKeyPem, request);
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
  sign(cert, ca.keyPem);
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
