/**
 * What the real nodes change on the host, recorded before they start and put back after they
 * stop: the sysctls the kubelet and the CNI bridge set, the iptables rules of the kubelet,
 * kube-proxy and the CNI plugins, and the network links the cluster created.
 *
 * The kubelet (with `protectKernelDefaults: false`) sets `vm.overcommit_memory=1`,
 * `vm.panic_on_oom=0`, `kernel.panic=10`, `kernel.panic_on_oops=1` and the root key quotas; the
 * bridge plugin with `isGateway` sets `net.ipv4.ip_forward=1`; kube-proxy may set
 * `net.ipv4.conf.all.route_localnet` and the bridge-netfilter switches.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { run, tryRun } from './exec.js';

/** The sysctls that the node components are known to change. */
export const TOUCHED_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
] as const;

/** A snapshot of the host state that the cluster changes. */
export interface HostSnapshot {
  /** sysctl (path under /proc/sys) → value; absent keys did not exist. */
  readonly sysctls: Readonly<Record<string, string>>;
  /** `iptables-save` / `ip6tables-save` output. */
  readonly iptables: string;
  readonly ip6tables: string;
  /** Names of the network links. */
  readonly links: readonly string[];
}

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${key}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The tables of an iptables-save dump: name → its lines (comments and counters dropped). */
function parseTables(dump: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const raw of dump.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      current = [];
      tables.set(line.slice(1), current);
    } else if (line !== 'COMMIT') current?.push(line.replace(/\[\d+:\d+\]$/, '[0:0]'));
  }
  return tables;
}

/** A table that holds only built-in chains accepting everything filters nothing. */
function isEmptyTable(lines: readonly string[]): boolean {
  return lines.every((l) => /^:\S+ ACCEPT \[0:0\]$/.test(l));
}

/** A dump in a form where equal rule sets compare equal (no dates, counters, empty tables). */
export function normalizeIptables(dump: string): string {
  return [...parseTables(dump)]
    .filter(([, lines]) => !isEmptyTable(lines))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, lines]) => `*${name}\n${lines.join('\n')}`)
    .join('\n');
}

/**
 * An iptables-restore input that brings every table back to `before`: iptables-restore flushes
 * only the tables it is given, so tables created since (by the kubelet, kube-proxy, CNI) are
 * given empty.
 */
function restoreInput(before: string, now: string): string {
  const was = parseTables(before);
  const out: string[] = [];
  for (const name of new Set([...was.keys(), ...parseTables(now).keys()])) {
    const lines = was.get(name) ?? [];
    out.push(`*${name}`, ...lines, 'COMMIT');
  }
  return `${out.join('\n')}\n`;
}

/** Takes a snapshot of the sysctls, iptables rules and links. */
export async function snapshotHost(): Promise<HostSnapshot> {
  const sysctls: Record<string, string> = {};
  for (const key of TOUCHED_SYSCTLS) {
    const v = readSysctl(key);
    if (v !== undefined) sysctls[key] = v;
  }
  const links = (await run('ip', ['-o', 'link', 'show']))
    .split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n);
  return {
    sysctls,
    iptables: await run('iptables-save', []),
    ip6tables: (await tryRun('ip6tables-save', [])).stdout,
    links,
  };
}

/** Puts back what {@link snapshotHost} recorded; returns what could not be restored. */
export async function restoreHost(before: HostSnapshot): Promise<string[]> {
  const problems: string[] = [];
  const r4 = await tryRun('iptables-restore', [], { input: restoreInput(before.iptables, await run('iptables-save', [])) });
  if (!r4.ok) problems.push(`iptables-restore: ${r4.stderr.trim()}`);
  const now6 = (await tryRun('ip6tables-save', [])).stdout;
  if (now6 || before.ip6tables) {
    const r6 = await tryRun('ip6tables-restore', [], { input: restoreInput(before.ip6tables, now6) });
    if (!r6.ok) problems.push(`ip6tables-restore: ${r6.stderr.trim()}`);
  }
  for (const [key, value] of Object.entries(before.sysctls)) {
    if (readSysctl(key) === value) continue;
    try {
      writeFileSync(`/proc/sys/${key}`, value);
    } catch (e) {
      problems.push(`sysctl ${key.replaceAll('/', '.')}=${value}: ${String(e)}`);
    }
  }
  const now = await snapshotHost();
  for (const link of now.links) {
    if (before.links.includes(link)) continue;
    const r = await tryRun('ip', ['link', 'delete', link]);
    if (!r.ok) problems.push(`ip link delete ${link}: ${r.stderr.trim()}`);
  }
  return problems;
}

/** Differences between two snapshots, one line each (empty when the host is as it was). */
export function diffHost(before: HostSnapshot, after: HostSnapshot): string[] {
  const out: string[] = [];
  for (const key of new Set([...Object.keys(before.sysctls), ...Object.keys(after.sysctls)])) {
    if (before.sysctls[key] !== after.sysctls[key]) out.push(`sysctl ${key}: ${before.sysctls[key]} -> ${after.sysctls[key]}`);
  }
  if (normalizeIptables(before.iptables) !== normalizeIptables(after.iptables)) out.push('iptables rules differ');
  if (normalizeIptables(before.ip6tables) !== normalizeIptables(after.ip6tables)) out.push('ip6tables rules differ');
  const added = after.links.filter((l) => !before.links.includes(l));
  const removed = before.links.filter((l) => !after.links.includes(l));
  if (added.length) out.push(`links added: ${added.join(', ')}`);
  if (removed.length) out.push(`links removed: ${removed.join(', ')}`);
  return out;
}

/** Lock file held while a cluster's nodes change the host (one cluster at a time). */
const HOST_LOCK = '/run/paxos-lc/host.lock';

function lockOwnerAlive(): boolean {
  try {
    const pid = Number(readFileSync(HOST_LOCK, 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the machine-wide lock for changing iptables, sysctls and links, waiting (up to
 * `timeoutMs`) while another live process holds it: two clusters restoring snapshots of the
 * host taken at different times would undo each other's rules.
 */
export async function acquireHostLock(timeoutMs = 1_800_000): Promise<void> {
  mkdirSync(dirname(HOST_LOCK), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      writeFileSync(HOST_LOCK, String(process.pid), { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (!lockOwnerAlive()) {
        rmSync(HOST_LOCK, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another local cluster holds ${HOST_LOCK} (pid ${readFileSync(HOST_LOCK, 'utf8')}); stop it first`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Releases the lock taken by {@link acquireHostLock} (only if this process holds it). */
export function releaseHostLock(): void {
  try {
    if (Number(readFileSync(HOST_LOCK, 'utf8')) === process.pid) rmSync(HOST_LOCK, { force: true });
  } catch {
    /* not held */
  }
}
