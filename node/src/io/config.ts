/**
 * The node's configuration, from command-line flags with environment fallbacks, validated
 * with zod. Invalid configuration is reported as a readable list and the process exits 2.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import type { Config, NodeId } from '../core/types.js';

const nodeId = z.number().int().min(0).max(1_000_000);

const configSchema = z
  .object({
    epoch: z.number().int().min(1),
    members: z.array(nodeId).min(1),
    prior: z.array(nodeId).min(1).optional(),
    /** New servers of the change in progress that already ran (see `lostDataAtStart`). */
    started: z.array(nodeId).optional(),
    /**
     * Whoever runs the change registers new servers (AdminService.Register): a new server's
     * first start on an empty disk votes for nobody until then (see `startsUnregistered`).
     */
    register: z.boolean().optional(),
  })
  .refine((c) => new Set(c.members).size === c.members.length, 'members must be distinct')
  .refine((c) => c.prior === undefined || new Set(c.prior).size === c.prior.length, 'prior members must be distinct');

const port = z.number().int().min(0).max(65535);
const positiveMs = z.number().int().min(1).max(600_000);

/** Validated node configuration. */
export const nodeConfigSchema = z
  .object({
    id: nodeId,
    dataDir: z.string().min(1),
    /** Explicit peer addresses, id → host:port of the peer (gRPC) port. */
    peers: z.record(z.string(), z.string().regex(/^[^\s:]+:\d+$/, 'must be host:port')).default({}),
    /** A template such as `paxos-{i}.paxos-headless:7001`, used for ids not in `peers`. */
    peerTemplate: z.string().includes('{i}').optional(),
    listenHost: z.string().min(1).default('0.0.0.0'),
    peerPort: port.default(7001),
    /** Port of the client services (Kv, Admin, Health); equal to `peerPort` means one server. */
    clientPort: port.optional(),
    /** 0 disables the HTTP metrics/health endpoint. */
    metricsPort: port.default(9090),
    bootstrapConfig: configSchema.optional(),
    joining: z.boolean().default(false),
    /** A backup file (paxosctl snapshot save) to start an empty data directory from. */
    restoreFrom: z.string().min(1).optional(),
    electionTimeoutMs: positiveMs.default(1000),
    heartbeatMs: positiveMs.default(200),
    tickMs: z.number().int().min(1).max(10_000).default(50),
    /** Snapshot and compact once this many entries were applied since the last snapshot. */
    snapshotThreshold: z.number().int().min(1).default(10_000),
    maxPendingRequests: z.number().int().min(1).default(10_000),
    /** Server-side bound on how long one request may wait for commit or a read index. */
    requestTimeoutMs: positiveMs.default(10_000),
    /** How long SIGTERM waits for in-flight requests before closing. */
    shutdownGraceMs: positiveMs.default(5_000),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /**
     * Mutual TLS on the peer and client ports (absent: plaintext, which the command line allows
     * only with an explicit --insecure). See docs/adr/0011-mutual-tls-and-admin-identity.md.
     */
    tls: z
      .object({
        caFile: z.string().min(1),
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
        /** `required`: the client port accepts only clients with a certificate of the CA; `none`: any TLS client. */
        clientAuth: z.enum(['required', 'none']).default('required'),
        /** How often the files are re-read for a renewed certificate. */
        reloadMs: z.number().int().min(100).max(3_600_000).default(10_000),
      })
      .optional(),
  })
  .refine((c) => c.restoreFrom === undefined || c.bootstrapConfig !== undefined, { message: 'needs --bootstrap-config (the new quorum\'s configuration)', path: ['restoreFrom'] })
  .refine((c) => c.restoreFrom === undefined || !c.joining, { message: 'cannot be combined with --joining (a restore starts a new quorum)', path: ['restoreFrom'] })
  .refine((c) => c.restoreFrom === undefined || c.bootstrapConfig?.prior === undefined, { message: 'the --bootstrap-config of a restore cannot have "prior"', path: ['restoreFrom'] })
  .refine((c) => c.heartbeatMs < c.electionTimeoutMs, { message: 'heartbeat-ms must be below election-timeout-ms', path: ['heartbeatMs'] })
  .refine((c) => c.tickMs <= c.heartbeatMs, { message: 'tick-ms must not exceed heartbeat-ms', path: ['tickMs'] })
  .refine((c) => c.peerTemplate !== undefined || Object.keys(c.peers).length > 0 || c.bootstrapConfig?.members.length === 1, {
    message: 'give --peers or --peer-template (a single-member bootstrap needs neither)',
    path: ['peers'],
  });

export type NodeConfig = z.infer<typeof nodeConfigSchema>;

/** Raised for invalid configuration; `issues` are human-readable lines. */
export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

const FLAGS = {
  id: { type: 'string' },
  'data-dir': { type: 'string' },
  peers: { type: 'string' },
  'peer-template': { type: 'string' },
  listen: { type: 'string' },
  'peer-port': { type: 'string' },
  'client-port': { type: 'string' },
  'metrics-port': { type: 'string' },
  'bootstrap-config': { type: 'string' },
  joining: { type: 'boolean' },
  'restore-from': { type: 'string' },
  'election-timeout-ms': { type: 'string' },
  'heartbeat-ms': { type: 'string' },
  'tick-ms': { type: 'string' },
  'snapshot-threshold': { type: 'string' },
  'max-pending-requests': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  'shutdown-grace-ms': { type: 'string' },
  'log-level': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'client-auth': { type: 'string' },
  'tls-reload-ms': { type: 'string' },
  insecure: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

/** The usage text printed by `--help` and on configuration errors. */
export const USAGE = `usage: paxos-node --id N --data-dir DIR (--peers 0=h:p,1=h:p,... | --peer-template 'paxos-{i}.svc:7001')
                  (--tls-ca F --tls-cert F --tls-key F | --insecure) [options]

  --id N                   this node's id (env PAXOS_ID; else the -N suffix of HOSTNAME)
  --data-dir DIR           data directory (env PAXOS_DATA_DIR)
  --peers LIST             id=host:port of each peer's gRPC port (env PAXOS_PEERS)
  --peer-template T        address of node i, '{i}' replaced (env PAXOS_PEER_TEMPLATE)
  --listen HOST            bind address (default 0.0.0.0)
  --peer-port P            gRPC port for peers (default 7001; env PAXOS_PEER_PORT)
  --client-port P          gRPC port for Kv/Admin/Health (default: the peer port, one server)
  --metrics-port P         HTTP /metrics, /healthz, /readyz (default 9090, 0 = off)
  --bootstrap-config JSON  {"epoch":1,"members":[0,1,2],"prior":[...],"started":[...]} for an empty
                           data dir ("started": new servers of the change that already ran;
                           "register": true: a new server votes only after AdminService.Register)
                           (env PAXOS_BOOTSTRAP_CONFIG); ignored once the dir holds state
  --joining                a new node joining a running quorum: catch up before campaigning
  --restore-from FILE      start an empty data dir from a backup (paxosctl snapshot save), verified
                           by checksum first, with the --bootstrap-config configuration; refused
                           when the data dir holds data (env PAXOS_RESTORE_FROM)
  --election-timeout-ms N  default 1000      --heartbeat-ms N  default 200
  --tick-ms N              default 50        --snapshot-threshold N  entries, default 10000
  --max-pending-requests N default 10000     --request-timeout-ms N  default 10000
  --shutdown-grace-ms N    default 5000      --log-level L  default info (env PAXOS_LOG_LEVEL)
  --tls-ca FILE            CA bundle (PEM) trusted for peers and clients (env PAXOS_TLS_CA)
  --tls-cert FILE          this member's certificate, naming urn:paxos:member:<id> (env PAXOS_TLS_CERT;
                           '{i}' in any of the three paths is replaced by the id)
  --tls-key FILE           its private key (env PAXOS_TLS_KEY); the three files are re-read
                           every --tls-reload-ms (default 10000) and swapped in without a restart
  --client-auth MODE       required (default): clients need a certificate of the CA; none: any
                           TLS client may read and write (env PAXOS_CLIENT_AUTH). The peer port
                           always requires a member certificate, admin calls the operator's
  --insecure               no TLS at all, no authentication (env PAXOS_INSECURE=true)
`;

function num(flag: string, raw: string | undefined, issues: string[]): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n)) issues.push(`--${flag}: "${raw}" is not a number`);
  return n;
}

function parsePeers(raw: string | undefined, issues: string[]): Record<string, string> | undefined {
  if (!raw) return undefined;
  const peers: Record<string, string> = {};
  for (const part of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)=(.+)$/.exec(part);
    if (!m) issues.push(`--peers: "${part}" is not id=host:port`);
    else peers[m[1] as string] = m[2] as string;
  }
  return peers;
}

/**
 * Parses flags and environment into a validated config. Throws `ConfigError`; returns
 * `'help'` when `--help` was given.
 */
export function parseNodeConfig(argv: readonly string[], env: NodeJS.ProcessEnv): NodeConfig | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: [...argv], options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
  if (values.help) return 'help';
  const s = (flag: string, envName?: string): string | undefined => (values[flag] as string | undefined) ?? (envName ? env[envName] : undefined);
  const issues: string[] = [];
  // Reported together with the others, not instead of them.
  const tlsIssues: string[] = [];
  let id = num('id', s('id', 'PAXOS_ID'), issues);
  if (id === undefined && env.HOSTNAME) {
    const m = /-(\d+)$/.exec(env.HOSTNAME);
    if (m) id = Number(m[1]);
  }
  let bootstrap: unknown;
  const rawBootstrap = s('bootstrap-config', 'PAXOS_BOOTSTRAP_CONFIG');
  if (rawBootstrap) {
    try {
      bootstrap = JSON.parse(rawBootstrap);
    } catch {
      issues.push('--bootstrap-config: not valid JSON');
    }
  }
  const candidate = {
    id,
    dataDir: s('data-dir', 'PAXOS_DATA_DIR'),
    peers: parsePeers(s('peers', 'PAXOS_PEERS'), issues),
    peerTemplate: s('peer-template', 'PAXOS_PEER_TEMPLATE'),
    listenHost: s('listen', 'PAXOS_LISTEN'),
    peerPort: num('peer-port', s('peer-port', 'PAXOS_PEER_PORT'), issues),
    clientPort: num('client-port', s('client-port', 'PAXOS_CLIENT_PORT'), issues),
    metricsPort: num('metrics-port', s('metrics-port', 'PAXOS_METRICS_PORT'), issues),
    bootstrapConfig: bootstrap,
    joining: (values.joining as boolean | undefined) ?? (env.PAXOS_JOINING === 'true' || env.PAXOS_JOINING === '1'),
    restoreFrom: s('restore-from', 'PAXOS_RESTORE_FROM'),
    electionTimeoutMs: num('election-timeout-ms', s('election-timeout-ms'), issues),
    heartbeatMs: num('heartbeat-ms', s('heartbeat-ms'), issues),
    tickMs: num('tick-ms', s('tick-ms'), issues),
    snapshotThreshold: num('snapshot-threshold', s('snapshot-threshold', 'PAXOS_SNAPSHOT_THRESHOLD'), issues),
    maxPendingRequests: num('max-pending-requests', s('max-pending-requests'), issues),
    requestTimeoutMs: num('request-timeout-ms', s('request-timeout-ms'), issues),
    shutdownGraceMs: num('shutdown-grace-ms', s('shutdown-grace-ms'), issues),
    logLevel: s('log-level', 'PAXOS_LOG_LEVEL'),
    tls: tlsOf(s, num, tlsIssues, (values.insecure as boolean | undefined) ?? (env.PAXOS_INSECURE === 'true' || env.PAXOS_INSECURE === '1')),
  };
  if (issues.length > 0) throw new ConfigError([...issues, ...tlsIssues]);
  const parsed = nodeConfigSchema.safeParse(Object.fromEntries(Object.entries(candidate).filter(([, v]) => v !== undefined)));
  if (!parsed.success) {
    throw new ConfigError([
      ...parsed.error.issues.map((i) => `${i.path.length ? `${flagName(String(i.path[0] === 'tls' ? (i.path[1] ?? 'tls') : i.path[0]))}: ` : ''}${i.message}`),
      ...tlsIssues,
    ]);
  }
  if (tlsIssues.length > 0) throw new ConfigError(tlsIssues);
  const config = parsed.data;
  if (!config.tls) return config;
  // `{i}` in a path is this node's id: one Secret holding every member's files is mounted into
  // every pod of the StatefulSet, and each node picks its own.
  const own = (path: string): string => path.replaceAll('{i}', String(config.id));
  return { ...config, tls: { ...config.tls, caFile: own(config.tls.caFile), certFile: own(config.tls.certFile), keyFile: own(config.tls.keyFile) } };
}

/** The `tls` part of the candidate config: all three files, or --insecure, never neither or both. */
function tlsOf(
  s: (flag: string, envName?: string) => string | undefined,
  num: (flag: string, raw: string | undefined, issues: string[]) => number | undefined,
  issues: string[],
  insecure: boolean,
): object | undefined {
  const files = { caFile: s('tls-ca', 'PAXOS_TLS_CA'), certFile: s('tls-cert', 'PAXOS_TLS_CERT'), keyFile: s('tls-key', 'PAXOS_TLS_KEY') };
  const given = Object.values(files).filter((f) => f !== undefined && f !== '').length;
  const clientAuth = s('client-auth', 'PAXOS_CLIENT_AUTH')?.toLowerCase();
  if (insecure) {
    if (given > 0) issues.push('--insecure: cannot be combined with --tls-ca/--tls-cert/--tls-key');
    return undefined;
  }
  if (given === 0) {
    issues.push('TLS: give --tls-ca, --tls-cert and --tls-key (or --insecure to run without TLS and authentication)');
    return undefined;
  }
  if (given < 3) {
    issues.push(`TLS: --tls-ca, --tls-cert and --tls-key go together (missing: ${Object.entries(files).filter(([, f]) => !f).map(([k]) => flagName(k)).join(', ')})`);
    return undefined;
  }
  if (clientAuth !== undefined && clientAuth !== 'required' && clientAuth !== 'none') issues.push(`--client-auth: "${clientAuth}" is not required or none`);
  const reloadMs = num('tls-reload-ms', s('tls-reload-ms', 'PAXOS_TLS_RELOAD_MS'), issues);
  return { ...files, ...(clientAuth ? { clientAuth } : {}), ...(reloadMs !== undefined ? { reloadMs } : {}) };
}

function flagName(key: string): string {
  const tlsFlags: Record<string, string> = { caFile: 'tls-ca', certFile: 'tls-cert', keyFile: 'tls-key', reloadMs: 'tls-reload-ms' };
  return `--${tlsFlags[key] ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`).replace('listen-host', 'listen')}`;
}

/** The peer (gRPC) address of node `id`, or undefined when unknown. */
export function peerAddress(config: NodeConfig, id: NodeId): string | undefined {
  return config.peers[String(id)] ?? config.peerTemplate?.replaceAll('{i}', String(id));
}

/**
 * The client address of node `id`, for NOT_LEADER hints: the host of its peer address with
 * the client port. All nodes of a quorum use the same ports.
 */
export function clientAddress(config: NodeConfig, id: NodeId): string | undefined {
  const peer = peerAddress(config, id);
  if (peer === undefined || config.clientPort === undefined || config.clientPort === config.peerPort) return peer;
  return `${peer.slice(0, peer.lastIndexOf(':'))}:${config.clientPort}`;
}

/**
 * Whether a node about to initialise an empty data directory has in fact lost one: it joins a
 * running quorum and is already one of its voters (in `prior` if there is one, else in
 * `members`), or it is a new server of the change in progress that has already run (`started`).
 * A new server's first start is the only empty start that is not a loss. See ADR 0007.
 */
export function lostDataAtStart(config: NodeConfig): boolean {
  const b = config.bootstrapConfig;
  return config.joining && b !== undefined && votedBefore(b, config.id);
}

/**
 * Whether node `id`, joining under bootstrap configuration `b`, has voted before: it is a voter
 * of the running quorum (in `prior` if there is one, else in `members`) or a new server of the
 * change named in `started`. The operator registers a new server only once this holds for the
 * bootstrap it has stored (see `lostDataAtStart`, `startsUnregistered`).
 */
export function votedBefore(b: { readonly members: readonly NodeId[]; readonly prior?: readonly NodeId[]; readonly started?: readonly NodeId[] }, id: NodeId): boolean {
  return (b.prior ?? b.members).includes(id) || (b.started ?? []).includes(id);
}

/**
 * Whether a new server's first start on an empty disk must wait for AdminService.Register
 * before it votes. Until whoever runs the change has recorded that this server ran (`started`),
 * losing its disk would go unnoticed: it could promise or accept, restart empty, and vote
 * against what it forgot. Asked for by `"register": true` in the bootstrap configuration (the
 * operator always does); a start that `lostDataAtStart` flags is a loss instead.
 */
export function startsUnregistered(config: NodeConfig): boolean {
  return config.joining && config.bootstrapConfig?.register === true && !lostDataAtStart(config);
}

/** The bootstrap configuration in the core's type. */
export function bootstrapConfigOf(config: NodeConfig): Config | undefined {
  const b = config.bootstrapConfig;
  if (!b) return undefined;
  return b.prior ? { epoch: b.epoch, members: b.members, prior: b.prior } : { epoch: b.epoch, members: b.members };
}
