/**
 * paxosctl: the command-line client of a Paxos quorum.
 *
 *   paxosctl [--endpoints h:p,h:p] [--cacert F [--cert F --key F]] [--json] [--deadline-ms N] COMMAND ...
 *
 * Exit codes: 0 success, 1 the operation failed (including "not found" and a CAS mismatch),
 * 2 usage errors.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Config } from '../core/types.js';
import type * as grpc from '@grpc/grpc-js';
import { AdminClient, PaxosClient, PaxosClientError, TlsFilesError, tlsCredentialsFromFiles, type NodeStatus } from '../client/index.js';
import { renderTable } from './table.js';
import { BackupFileError, encodeTrailer, verifyBackupFile, type BackupMeta } from '../io/backup-file.js';

export const USAGE = `usage: paxosctl [--endpoints h:p,...] [--cacert F [--cert F --key F]] [--json] [--deadline-ms N] COMMAND

key-value commands (sent to the leader, found from any endpoint):
  put KEY VALUE                 set KEY; prints the previous value
  get KEY                       linearizable read (exit 1 when absent)
  del KEY                       delete KEY; prints the previous value
  cas KEY EXPECTED VALUE        set KEY if it equals EXPECTED (--expect-absent: if absent)
  range PREFIX [--limit N]      keys with PREFIX, in order

admin commands:
  status                        one row per endpoint: role, epoch, commit, applied, lag, caught-up
  convert ENDPOINT CONFIG_JSON  convert one node, e.g. '{"epoch":2,"members":[0,1,2,3,4],"prior":[0,1,2]}'
  transfer TARGET_ID            ask the leader to hand leadership to node TARGET_ID
  finalize                      ask the leader to finalize the reconfiguration
  snapshot [ENDPOINT]           snapshot now (all endpoints when none given)
  snapshot save FILE            consistent backup from the leader into FILE (via FILE.tmp, fsync,
                                checksum, rename); prints index, keys, size, sha256. Needs the
                                operator's certificate; deadline 10 min unless --deadline-ms
  snapshot verify FILE          check a backup file's trailer and SHA-256 (exit 1 when bad)
  register ENDPOINT             let a new server vote (only once its empty restart would be
                                recognised as a lost disk; the operator does this itself)

options:
  --endpoints LIST   client endpoints (env PAXOSCTL_ENDPOINTS; default 127.0.0.1:7001)
  --json             machine-readable output
  --deadline-ms N    deadline per command (default 5000; finalize gets 3x)
  --cacert FILE      TLS: CA bundle that signed the nodes' certificates (env PAXOSCTL_CACERT);
                     without it paxosctl speaks plaintext (a node with --insecure)
  --cert FILE        client certificate (env PAXOSCTL_CERT); the admin commands other than
                     status need the operator's (Secret <quorum>-tls-operator)
  --key FILE         its private key (env PAXOSCTL_KEY)
  --server-identity hostname|member
                     how a node's certificate is matched: hostname (default; the endpoint's name
                     must be in it) or member (any member certificate of the CA: for pod IPs)
`;

/** A usage error: exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failed operation that is not an RPC error (not found, CAS mismatch): exit code 1. */
export class OperationFailed extends Error {
  constructor(
    message: string,
    readonly result?: unknown,
  ) {
    super(message);
    this.name = 'OperationFailed';
  }
}

/** Where the CLI writes; injectable for tests. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

interface Globals {
  endpoints: string[];
  json: boolean;
  deadlineMs: number;
  /** --deadline-ms was given (else long transfers get their own default). */
  deadlineGiven: boolean;
  limit: number;
  expectAbsent: boolean;
  tls: { cacert: string; cert: string | undefined; key: string | undefined; serverIdentity: 'hostname' | 'member' } | undefined;
}

function parse(argv: readonly string[], env: NodeJS.ProcessEnv): { globals: Globals; command: string | undefined; args: string[]; help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        endpoints: { type: 'string' },
        json: { type: 'boolean' },
        'deadline-ms': { type: 'string' },
        limit: { type: 'string' },
        'expect-absent': { type: 'boolean' },
        cacert: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'server-identity': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  const endpoints = (v.endpoints ?? env.PAXOSCTL_ENDPOINTS ?? '127.0.0.1:7001').split(',').map((s) => s.trim()).filter(Boolean);
  for (const e of endpoints) if (!/^[^\s:]+:\d+$/.test(e)) throw new UsageError(`endpoint "${e}" is not host:port`);
  const int = (name: string, raw: string | undefined, dflt: number): number => {
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer`);
    return n;
  };
  const [command, ...args] = parsed.positionals;
  const cacert = v.cacert ?? (env.PAXOSCTL_CACERT || undefined);
  const cert = v.cert ?? (env.PAXOSCTL_CERT || undefined);
  const key = v.key ?? (env.PAXOSCTL_KEY || undefined);
  if (!cacert && (cert || key)) throw new UsageError('--cert/--key need --cacert (the CA that signed the nodes\' certificates)');
  if ((cert === undefined) !== (key === undefined)) throw new UsageError(cert ? '--cert needs --key' : '--key needs --cert');
  const serverIdentity = v['server-identity'] ?? (env.PAXOSCTL_SERVER_IDENTITY || 'hostname');
  if (serverIdentity !== 'hostname' && serverIdentity !== 'member') throw new UsageError('--server-identity must be hostname or member');
  return {
    globals: {
      endpoints,
      json: v.json ?? false,
      deadlineMs: int('deadline-ms', v['deadline-ms'], 5000),
      deadlineGiven: v['deadline-ms'] !== undefined,
      limit: int('limit', v.limit, 1000),
      expectAbsent: v['expect-absent'] ?? false,
      tls: cacert ? { cacert, cert, key, serverIdentity } : undefined,
    },
    command,
    args,
    help: v.help ?? false,
  };
}

function arity(command: string, args: string[], min: number, max = min): void {
  if (args.length < min || args.length > max) throw new UsageError(`${command}: expected ${min === max ? min : `${min}-${max}`} argument(s), got ${args.length}`);
}

function parseConfig(raw: string): Config {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new UsageError('CONFIG_JSON is not valid JSON');
  }
  const c = v as { epoch?: unknown; members?: unknown; prior?: unknown };
  const ids = (x: unknown): x is number[] => Array.isArray(x) && x.every((i) => Number.isInteger(i) && i >= 0);
  if (!Number.isInteger(c.epoch) || !ids(c.members) || (c.prior !== undefined && !ids(c.prior))) {
    throw new UsageError('CONFIG_JSON must be {"epoch":N,"members":[ids],"prior"?:[ids]}');
  }
  return c.prior === undefined ? { epoch: c.epoch as number, members: c.members } : { epoch: c.epoch as number, members: c.members, prior: c.prior as number[] };
}

/** Statuses of all endpoints; an unreachable one is reported, not fatal. */
async function statuses(admin: AdminClient, endpoints: string[]): Promise<Array<{ endpoint: string; status?: NodeStatus; error?: string }>> {
  return Promise.all(
    endpoints.map((endpoint) =>
      admin.status(endpoint).then(
        (status) => ({ endpoint, status }),
        (err: unknown) => ({ endpoint, error: (err as Error).message }),
      ),
    ),
  );
}

async function leaderEndpoint(admin: AdminClient, endpoints: string[]): Promise<string> {
  const all = await statuses(admin, endpoints);
  const leader = all.find((s) => s.status?.role === 'leader');
  if (leader) return leader.endpoint;
  const hinted = all.find((s) => s.status?.leaderAddr)?.status?.leaderAddr;
  if (hinted) return hinted;
  throw new OperationFailed('no leader found at the given endpoints');
}

function statusTable(rows: Array<{ endpoint: string; status?: NodeStatus; error?: string }>): string {
  const leader = rows.find((r) => r.status?.role === 'leader')?.status;
  const header = ['MEMBER', 'ENDPOINT', 'ROLE', 'EPOCH', 'CONFIG', 'COMMIT', 'APPLIED', 'LAG', 'CAUGHT-UP'];
  const body = rows.map(({ endpoint, status: s, error }) => {
    if (!s) return ['?', endpoint, 'unreachable', '', '', '', '', '', error ?? ''];
    const config = `${s.config.members.join(',')}${s.config.prior ? ` (prior ${s.config.prior.join(',')})` : ''}`;
    const lag = s.role === 'leader' ? '-' : leader?.lag[s.id] !== undefined ? String(leader.lag[s.id]) : '?';
    // A member that lost its volume is not a voter until repaired: say so where people look.
    const role = s.dataLoss === 'suspended' ? `${s.role} (data lost, not voting)` : s.dataLoss === 'repairing' ? `${s.role} (repairing)`
      : s.unregistered ? `${s.role} (unregistered, not voting)` : s.role;
    return [String(s.id), endpoint, role, String(s.config.epoch), config, String(s.commit), String(s.applied), lag, s.caughtUp ? 'yes' : 'no'];
  });
  return renderTable(header, body);
}

/** Default deadline of `snapshot save` (a large state takes a while to stream). */
const SAVE_DEADLINE_MS = 600_000;

/**
 * `snapshot save`: streams a backup from `leader` into `file`.tmp (a chunk written before the
 * next is taken), checks the size and SHA-256 against the metadata, appends the trailer,
 * fsyncs, renames to `file` and fsyncs the directory. The temp file is removed on failure.
 */
async function saveBackup(admin: AdminClient, leader: string, file: string, deadlineMs: number): Promise<{ file: string; meta: BackupMeta; size: number; ms: number }> {
  const started = performance.now();
  const tmp = `${file}.tmp`;
  const handle = await fs.promises.open(tmp, 'w');
  let closed = false;
  try {
    const hash = createHash('sha256');
    let bytes = 0;
    const wire = await admin.backup(
      leader,
      async (chunk) => {
        hash.update(chunk);
        await handle.write(chunk, 0, chunk.length, bytes);
        bytes += chunk.length;
      },
      deadlineMs,
    );
    const sha256 = hash.digest('hex');
    if (bytes !== wire.bytes) throw new OperationFailed(`backup from ${leader}: received ${bytes} bytes, the node sent ${wire.bytes}`);
    if (sha256 !== wire.sha256) throw new OperationFailed(`backup from ${leader}: checksum mismatch: received data has SHA-256 ${sha256}, the node computed ${wire.sha256}`);
    const meta: BackupMeta = { index: wire.index, epoch: wire.epoch, members: wire.members, nodeVersion: wire.node_version, keys: wire.keys, bytes: wire.bytes, sha256: wire.sha256 };
    const trailer = encodeTrailer(meta);
    await handle.write(trailer, 0, trailer.length, bytes);
    await handle.sync();
    await handle.close();
    closed = true;
    // What is on disk, not what was meant to be: read it back before it takes the final name.
    await verifyBackupFile(tmp);
    await fs.promises.rename(tmp, file);
    const dir = await fs.promises.open(path.dirname(path.resolve(file)), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return { file, meta, size: bytes + trailer.length, ms: Math.round(performance.now() - started) };
  } catch (err) {
    if (!closed) await handle.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}

/** Runs one CLI invocation and returns the exit code. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let tlsGiven = false;
  let kv: PaxosClient | undefined;
  let admin: AdminClient | undefined;
  try {
    const { globals: g, command, args, help } = parse(argv, env);
    if (help || command === undefined || command === 'help') {
      (help || command === 'help' ? io.out : io.err)(USAGE);
      return help || command === 'help' ? 0 : 2;
    }
    const print = (human: string, json: unknown): void => io.out(g.json ? JSON.stringify(json) : human);
    tlsGiven = g.tls !== undefined;
    const credentials: grpc.ChannelCredentials | undefined = g.tls ? tlsCredentialsFromFiles(g.tls) : undefined;
    const kvClient = (): PaxosClient => (kv ??= new PaxosClient({ endpoints: g.endpoints, deadlineMs: g.deadlineMs, ...(credentials ? { credentials } : {}) }));
    const adminClient = (): AdminClient => (admin ??= new AdminClient({ deadlineMs: Math.min(g.deadlineMs, 5000), ...(credentials ? { credentials } : {}) }));
    const show = (v: string | null): string => (v === null ? '(absent)' : v);
    switch (command) {
      case 'put': {
        arity(command, args, 2);
        const previous = await kvClient().put(args[0] as string, args[1] as string);
        print(`OK (previous: ${show(previous)})`, { ok: true, previous });
        return 0;
      }
      case 'get': {
        arity(command, args, 1);
        const value = await kvClient().get(args[0] as string);
        if (value === null) throw new OperationFailed(`key "${args[0]}" not found`, { found: false });
        print(value, { found: true, value });
        return 0;
      }
      case 'del':
      case 'delete': {
        arity(command, args, 1);
        const previous = await kvClient().delete(args[0] as string);
        print(`OK (previous: ${show(previous)})`, { ok: true, previous });
        return 0;
      }
      case 'cas': {
        arity(command, args, g.expectAbsent ? 2 : 3);
        const [key, a, b] = args as [string, string, string?];
        const expected = g.expectAbsent ? null : a;
        const value = g.expectAbsent ? a : (b as string);
        const r = await kvClient().cas(key, expected, value);
        if (!r.succeeded) throw new OperationFailed(`compare failed: current value is ${show(r.current)}`, r);
        print('OK', r);
        return 0;
      }
      case 'range': {
        arity(command, args, 0, 1);
        const entries = await kvClient().range(args[0] ?? '', g.limit);
        print(entries.map((e) => `${e.key}\t${e.value}`).join('\n'), entries);
        return 0;
      }
      case 'status': {
        arity(command, args, 0);
        const rows = await statuses(adminClient(), g.endpoints);
        print(statusTable(rows), rows);
        return rows.some((r) => r.status) ? 0 : 1;
      }
      case 'convert': {
        arity(command, args, 2);
        const config = parseConfig(args[1] as string);
        await adminClient().convert(args[0] as string, config);
        print(`converted ${args[0]} to epoch ${config.epoch}`, { ok: true });
        return 0;
      }
      case 'transfer': {
        arity(command, args, 1);
        const target = Number(args[0]);
        if (!Number.isInteger(target) || target < 0) throw new UsageError('TARGET_ID must be a node id');
        const leader = await leaderEndpoint(adminClient(), g.endpoints);
        await adminClient().transferLeadership(leader, target);
        print(`transfer to node ${target} started at ${leader}`, { ok: true, leader });
        return 0;
      }
      case 'finalize': {
        arity(command, args, 0);
        const leader = await leaderEndpoint(adminClient(), g.endpoints);
        await adminClient().finalize(leader, g.deadlineMs * 3);
        print(`finalized at ${leader}`, { ok: true, leader });
        return 0;
      }
      case 'snapshot': {
        if (args[0] === 'save') {
          arity('snapshot save', args.slice(1), 1);
          const leader = await leaderEndpoint(adminClient(), g.endpoints);
          const r = await saveBackup(adminClient(), leader, args[1] as string, g.deadlineGiven ? g.deadlineMs : SAVE_DEADLINE_MS);
          print(
            `saved ${r.file} from ${leader}: index ${r.meta.index}, ${r.meta.keys} keys, ${r.size} bytes, sha256 ${r.meta.sha256} (${r.ms} ms)`,
            { ok: true, file: r.file, leader, index: r.meta.index, epoch: r.meta.epoch, members: r.meta.members, nodeVersion: r.meta.nodeVersion, keys: r.meta.keys, bytes: r.size, sha256: r.meta.sha256, ms: r.ms },
          );
          return 0;
        }
        if (args[0] === 'verify') {
          arity('snapshot verify', args.slice(1), 1);
          let meta: BackupMeta;
          try {
            meta = await verifyBackupFile(args[1] as string);
          } catch (err) {
            if (err instanceof BackupFileError) throw new OperationFailed(err.message, { ok: false, reason: err.reason });
            throw err;
          }
          print(`${args[1]}: OK: index ${meta.index}, ${meta.keys} keys, epoch ${meta.epoch}, members ${meta.members.join(',')}, node ${meta.nodeVersion}, ${meta.bytes} bytes of data, sha256 ${meta.sha256}`, { ok: true, ...meta });
          return 0;
        }
        arity(command, args, 0, 1);
        const targets = args[0] ? [args[0]] : g.endpoints;
        const results = await Promise.all(targets.map(async (endpoint) => ({ endpoint, index: await adminClient().snapshot(endpoint) })));
        print(results.map((r) => `${r.endpoint}\tsnapshot at ${r.index}`).join('\n'), results);
        return 0;
      }
      case 'register': {
        arity(command, args, 1);
        await adminClient().register(args[0] as string);
        print(`registered ${args[0]}`, { ok: true });
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`paxosctl: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof OperationFailed) {
      io.err(`paxosctl: ${err.message}`);
      return 1;
    }
    if (err instanceof TlsFilesError) {
      io.err(`paxosctl: TLS: ${err.message}`);
      return 2;
    }
    if (err instanceof PaxosClientError) {
      io.err(`paxosctl: ${err.codeName}: ${explain(err, tlsGiven)}`);
      return 1;
    }
    io.err(`paxosctl: ${(err as Error).message}`);
    return 1;
  } finally {
    kv?.close();
    admin?.close();
  }
}

/**
 * The error in one line, with what a TLS failure most likely means: grpc-js reports a failed
 * handshake as UNAVAILABLE with the TLS library's words somewhere in a longer text.
 */
export function explain(err: PaxosClientError, tlsGiven: boolean): string {
  const m = err.message;
  const hint = (why: string): string => `${why} (${m.replace(/\s+/g, ' ').slice(0, 200)})`;
  if (/self[- ]signed certificate|unable to verify|unable to get (local )?issuer|certificate signature failure/i.test(m)) {
    return hint('TLS: the node\'s certificate is not signed by the CA given with --cacert');
  }
  if (/certificate has expired|CERT_HAS_EXPIRED|certificate expired|alert number 45/i.test(m)) return hint('TLS: a certificate has expired');
  if (/Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID/i.test(m)) return hint('TLS: the endpoint\'s name is not in the node\'s certificate');
  if (/certificate required|alert number 116|peer did not return a certificate/i.test(m)) return hint('TLS: the node requires a client certificate (--cert/--key)');
  if (/unknown ca|alert number 48|bad certificate|alert number 42/i.test(m)) return hint('TLS: the node does not accept this client certificate (signed by another CA?)');
  if (/wrong version number|packet length too long|http\/1|Protocol error|ECONNRESET|Connection dropped|Failed to connect/i.test(m)) {
    return hint(tlsGiven
      ? 'could not connect: the node is unreachable, or it refused this client certificate (one of another CA?)'
      : 'could not connect: the node is unreachable, or it requires TLS (give --cacert, and --cert/--key)');
  }
  return m.replace(/\s+/g, ' ');
}

/** True when this module is the process entry (run via bin/paxosctl.js or `npm run paxosctl`). */
function isEntry(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isEntry()) {
  run(process.argv.slice(2), process.env, {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  }).then((code) => process.exit(code));
}
