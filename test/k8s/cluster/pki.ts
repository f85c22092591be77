/**
 * A throwaway PKI for a local control plane, generated with the `openssl` CLI.
 *
 * Everything is ECDSA P-256 (fast to generate, supported by every component) and lives in one
 * folder. Nothing here is meant to be secure beyond the lifetime of a test run.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** A certificate and its private key, as file paths. */
export interface CertPair {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM private key (unencrypted). */
  readonly key: string;
}

/** Every file the local control plane needs. */
export interface LocalPki {
  /** Folder holding all files. */
  readonly dir: string;
  /** The cluster CA (also signs CSRs in the controller-manager). */
  readonly ca: CertPair;
  /** kube-apiserver serving certificate. */
  readonly apiserver: CertPair;
  /** Cluster admin client (O=system:masters). */
  readonly admin: CertPair;
  /** kube-controller-manager client (CN=system:kube-controller-manager). */
  readonly controllerManager: CertPair;
  /** kube-scheduler client (CN=system:kube-scheduler). */
  readonly scheduler: CertPair;
  /** Client for a node agent (CN=system:node:&lt;node&gt;, O=system:nodes). */
  readonly node: CertPair;
  /** Front-proxy (request-header) CA, for the aggregation layer. */
  readonly frontProxyCa: CertPair;
  /** Front-proxy client the apiserver uses towards aggregated API servers. */
  readonly frontProxyClient: CertPair;
  /** Service-account token signing key (private) and verification key (public, PEM). */
  readonly serviceAccount: { readonly key: string; readonly pub: string };
}

/** Options for {@link generatePki}. */
export interface PkiOptions {
  /** Extra DNS names for the apiserver certificate. */
  readonly extraDnsNames?: readonly string[];
  /** Extra IP addresses for the apiserver certificate. */
  readonly extraIps?: readonly string[];
  /** Node name for the node client certificate (default `local`). */
  readonly nodeName?: string;
  /** Certificate lifetime in days (default 30). */
  readonly days?: number;
}

/** The apiserver's fixed SANs: loopback, the first service IP and the in-cluster names. */
export const APISERVER_DNS_NAMES: readonly string[] = [
  'localhost',
  'kubernetes',
  'kubernetes.default',
  'kubernetes.default.svc',
  'kubernetes.default.svc.cluster.local',
];
/** The apiserver's fixed IP SANs (10.0.0.1 is the first IP of the 10.0.0.0/24 service range). */
export const APISERVER_IPS: readonly string[] = ['127.0.0.1', '10.0.0.1'];

function openssl(args: readonly string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr?.toString() ?? err.message}`);
  }
}

function newKey(dir: string, name: string): string {
  const key = join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key], dir);
  return key;
}

/** A random positive serial number in hex, so no serial file is needed. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return `0x${b.toString('hex')}`;
}

/** What a leaf certificate names and may be used for. */
export interface LeafSpec {
  readonly name: string;
  readonly subject: string;
  readonly usage: 'server' | 'client' | 'both';
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
}

/** Issues a leaf certificate signed by `ca` into `dir` (`<name>.crt`, `<name>.key`). */
export function leaf(dir: string, ca: CertPair, spec: LeafSpec, days: number): CertPair {
  const key = newKey(dir, spec.name);
  const csr = join(dir, `${spec.name}.csr`);
  const ext = join(dir, `${spec.name}.ext`);
  const cert = join(dir, `${spec.name}.crt`);
  openssl(['req', '-new', '-key', key, '-subj', spec.subject, '-out', csr], dir);
  const eku = spec.usage === 'server' ? 'serverAuth' : spec.usage === 'client' ? 'clientAuth' : 'serverAuth, clientAuth';
  const lines = [
    '[v3]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature, keyEncipherment',
    `extendedKeyUsage = ${eku}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
  ];
  const sans = [...(spec.dns ?? []).map((d) => `DNS:${d}`), ...(spec.ips ?? []).map((ip) => `IP:${ip}`)];
  if (sans.length) lines.push(`subjectAltName = ${sans.join(', ')}`);
  writeFileSync(ext, `${lines.join('\n')}\n`);
  openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial(), '-days', String(days),
      '-sha256', '-extfile', ext, '-extensions', 'v3', '-out', cert],
    dir,
  );
  rmSync(csr, { force: true });
  rmSync(ext, { force: true });
  return { cert, key };
}

function selfSignedCa(dir: string, name: string, cn: string, days: number): CertPair {
  const key = newKey(dir, name);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    ['[v3]', 'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign, digitalSignature',
      'subjectKeyIdentifier = hash', ''].join('\n'),
  );
  openssl(
    ['req', '-x509', '-new', '-key', key, '-subj', `/CN=${cn}`, '-days', String(days), '-sha256',
      '-set_serial', serial(), '-config', ext, '-extensions', 'v3', '-out', cert],
    dir,
  );
  rmSync(ext, { force: true });
  return { cert, key };
}

/**
 * Generates a fresh PKI into `dir` (created if missing; existing files are overwritten).
 *
 * @returns the paths of every certificate and key.
 */
export function generatePki(dir: string, opts: PkiOptions = {}): LocalPki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const days = opts.days ?? 30;
  const nodeName = opts.nodeName ?? 'local';

  const ca = selfSignedCa(dir, 'ca', 'paxos-local-ca', days + 1);
  const frontProxyCa = selfSignedCa(dir, 'front-proxy-ca', 'paxos-local-front-proxy-ca', days + 1);
  const frontProxyClient = leaf(
    dir, frontProxyCa, { name: 'front-proxy-client', subject: '/CN=front-proxy-client', usage: 'client' }, days,
  );

  const apiserver = leaf(dir, ca, {
    name: 'apiserver',
    subject: '/CN=kube-apiserver',
    usage: 'server',
    dns: [...APISERVER_DNS_NAMES, ...(opts.extraDnsNames ?? [])],
    ips: [...new Set([...APISERVER_IPS, ...(opts.extraIps ?? [])])],
  }, days);
  const admin = leaf(dir, ca, { name: 'admin', subject: '/O=system:masters/CN=kubernetes-admin', usage: 'client' }, days);
  const controllerManager = leaf(
    dir, ca, { name: 'controller-manager', subject: '/CN=system:kube-controller-manager', usage: 'client' }, days,
  );
  const scheduler = leaf(dir, ca, { name: 'scheduler', subject: '/CN=system:kube-scheduler', usage: 'client' }, days);
  const node = leaf(dir, ca, { name: 'node', subject: `/O=system:nodes/CN=system:node:${nodeName}`, usage: 'both' }, days);

  const saKey = newKey(dir, 'sa');
  const saPub = join(dir, 'sa.pub');
  openssl(['pkey', '-in', saKey, '-pubout', '-out', saPub], dir);

  return {
    dir, ca, apiserver, admin, controllerManager, scheduler, node, frontProxyCa, frontProxyClient,
    serviceAccount: { key: saKey, pub: saPub },
  };
}

/** Reads a PEM file and returns it base64-encoded, as kubeconfig `*-data` fields want. */
export function pemBase64(path: string): string {
  return readFileSync(path).toString('base64');
}

/** Options for {@link writeKubeconfig}. */
export interface KubeconfigSpec {
  /** Where to write the file. */
  readonly path: string;
  /** API server URL, e.g. `https://127.0.0.1:6443`. */
  readonly server: string;
  /** CA certificate file. */
  readonly caCert: string;
  /** Client certificate and key. */
  readonly client: CertPair;
  /** User entry name (default `admin`). */
  readonly user?: string;
  /** Context/cluster name (default `local`). */
  readonly cluster?: string;
}

/** Writes a self-contained kubeconfig (certificates embedded as data). */
export function writeKubeconfig(spec: KubeconfigSpec): string {
  const cluster = spec.cluster ?? 'local';
  const user = spec.user ?? 'admin';
  const text = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${cluster}`,
    '  cluster:',
    `    server: ${spec.server}`,
    `    certificate-authority-data: ${pemBase64(spec.caCert)}`,
    'users:',
    `- name: ${user}`,
    '  user:',
    `    client-certificate-data: ${pemBase64(spec.client.cert)}`,
    `    client-key-data: ${pemBase64(spec.client.key)}`,
    'contexts:',
    `- name: ${cluster}`,
    '  context:',
    `    cluster: ${cluster}`,
    `    user: ${user}`,
    `current-context: ${cluster}`,
    '',
  ].join('\n');
  writeFileSync(spec.path, text, { mode: 0o600 });
  return spec.path;
}
