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
import { readFileSync, writeFileSync } from 'node:fs';
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

/** Strips the comment lines (dates, generator) of iptables-save so two dumps compare equal. */
export function normalizeIptables(dump: string): string {
  return dump
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]$/, '[0:0]'))
    .join('\n');
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
  const r4 = await tryRun('iptables-restore', [], { input: before.iptables });
  if (!r4.ok) problems.push(`iptables-restore: ${r4.stderr.trim()}`);
  if (before.ip6tables) {
    const r6 = await tryRun('ip6tables-restore', [], { input: before.ip6tables });
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
