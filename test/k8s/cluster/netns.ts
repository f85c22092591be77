/**
 * Pod networking for the process kubelet: one Linux bridge in the root namespace, one network
 * namespace per pod joined to the bridge by a veth pair. Addresses come from a private /24 that
 * exists only on this machine; IP forwarding is not touched, so pods can reach the bridge's own
 * addresses (and each other) but nothing beyond this host.
 *
 * Requires root and the `ip` command (iproute2).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Runs a command, rejecting with its stderr on failure. */
export function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, [...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    child.stdin?.on('error', () => undefined); // the command may not read stdin
    child.stdin?.end(input ?? '');
  });
}

/** Parses `a.b.c.d/n` into a base address (as a number) and prefix length. */
function parseCidr(cidr: string): { base: number; bits: number } {
  const [addr, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  const parts = (addr ?? '').split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255)) || !(bits >= 8 && bits <= 30)) {
    throw new Error(`bad IPv4 CIDR ${cidr}`);
  }
  const n = (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (n & mask) >>> 0, bits };
}

function ipString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Options for {@link PodNetwork}. */
export interface PodNetworkOptions {
  /** Pod CIDR (default 10.244.0.0/24); the first address is the bridge/gateway. */
  readonly cidr?: string;
  /** Bridge name (default `kpbr0`). */
  readonly bridge?: string;
  /** Prefix of network namespace names (default `kp-`). */
  readonly nsPrefix?: string;
  /**
   * Index of the node sharing this bridge (default 0). Node k allocates pod IPs from
   * .(2+40k) to .(41+40k) of a /24 and owns node address .(250-k) (node 0: the gateway).
   */
  readonly nodeIndex?: number;
}

/** A pod's network attachment. */
export interface PodNet {
  /** Network namespace name (usable with `ip netns exec`). */
  readonly ns: string;
  /** Pod IP. */
  readonly ip: string;
  /** Host-side veth name. */
  readonly hostVeth: string;
}

/** Manages the bridge and per-pod namespaces. */
export class PodNetwork {
  /** Bridge device name. */
  readonly bridge: string;
  /** Gateway address (the bridge's address), e.g. 10.244.0.1. */
  readonly gateway: string;
  /** This node's address on the bridge (pods' hostIP, the kubelet API). */
  readonly nodeIp: string;
  /** Prefix length of the pod CIDR. */
  readonly prefix: number;
  private readonly base: number;
  private readonly size: number;
  private readonly nsPrefix: string;
  private readonly nodeIndex: number;
  private readonly first: number;
  private readonly last: number;
  private readonly used = new Map<string, PodNet>();
  private readonly extraAddrs = new Set<string>();
  private next = 0;

  constructor(opts: PodNetworkOptions = {}) {
    const { base, bits } = parseCidr(opts.cidr ?? '10.244.0.0/24');
    this.base = base;
    this.prefix = bits;
    this.size = 2 ** (32 - bits);
    this.gateway = ipString(base + 1);
    this.bridge = opts.bridge ?? 'kpbr0';
    this.nsPrefix = opts.nsPrefix ?? 'kp-';
    this.nodeIndex = opts.nodeIndex ?? 0;
    if (!Number.isInteger(this.nodeIndex) || this.nodeIndex < 0 || this.nodeIndex > 5) throw new Error('nodeIndex must be 0-5');
    if (this.size < 256 && this.nodeIndex > 0) throw new Error('several nodes need a pod CIDR of /24 or larger');
    this.nodeIp = this.nodeIndex === 0 ? this.gateway : ipString(base + 250 - this.nodeIndex);
    // Node 0 alone may use the whole range, unless other nodes share the bridge.
    this.first = 2 + 40 * this.nodeIndex;
    this.last = this.nodeIndex === 0 && this.size > 256 ? this.size - 2 : this.first + 39;
  }

  /** Creates the bridge (idempotent) and gives it the gateway address. */
  async setup(): Promise<void> {
    // Namespaces left behind by a crashed run of ours (our prefix, no processes inside).
    const list = await run('ip', ['netns', 'list']);
    for (const line of list.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      if (!name.startsWith(this.nsPrefix)) continue;
      const pids = await run('ip', ['netns', 'pids', name]).catch(() => 'unknown');
      if (pids.trim() === '') {
        await run('ip', ['netns', 'del', name]).catch(() => undefined);
        rmSync(join('/etc/netns', name), { recursive: true, force: true });
      }
    }
    const links = await run('ip', ['-o', 'link', 'show']);
    if (!new RegExp(`^\\d+: ${this.bridge}[:@]`, 'm').test(links)) {
      // Another node's kubelet may be creating it at the same moment.
      await run('ip', ['link', 'add', this.bridge, 'type', 'bridge']).catch((e: unknown) => {
        if (!String(e).includes('File exists')) throw e;
      });
    }
    await this.addAddress(`${this.gateway}/${this.prefix}`);
    if (this.nodeIp !== this.gateway) await this.addAddress(`${this.nodeIp}/${this.prefix}`);
    await run('ip', ['link', 'set', this.bridge, 'up']);
  }

  /**
   * Adds an extra address to the bridge (e.g. a service IP as /32) so pods can reach a proxy
   * listening on it. Idempotent.
   */
  async addAddress(cidr: string): Promise<void> {
    const addrs = await run('ip', ['-o', 'addr', 'show', 'dev', this.bridge]);
    if (!addrs.includes(` ${cidr} `)) {
      await run('ip', ['addr', 'add', cidr, 'dev', this.bridge]).catch((e: unknown) => {
        if (!String(e).includes('File exists')) throw e;
      });
    }
    this.extraAddrs.add(cidr);
  }

  /** Removes an address added with {@link addAddress}. */
  async removeAddress(cidr: string): Promise<void> {
    this.extraAddrs.delete(cidr);
    await run('ip', ['addr', 'del', cidr, 'dev', this.bridge]).catch(() => undefined);
  }

  private allocate(): string {
    // Round-robin, so a just-released IP is not handed out again right away.
    const taken = new Set([...this.used.values()].map((p) => p.ip));
    const slots = Math.min(this.last, this.size - 2) - this.first + 1;
    for (let n = 0; n < slots; n++) {
      const i = this.first + ((this.next + n) % slots);
      const ip = ipString(this.base + i);
      if (!taken.has(ip)) {
        this.next = i - this.first + 1;
        return ip;
      }
    }
    throw new Error('pod CIDR exhausted');
  }

  /**
   * Creates a network namespace for a pod, with loopback up, eth0 on the bridge and a default
   * route via the gateway. `key` identifies the pod (e.g. its UID).
   */
  async attach(key: string): Promise<PodNet> {
    const existing = this.used.get(key);
    if (existing) return existing;
    const id = key.replace(/[^a-zA-Z0-9]/g, '').slice(0, 8);
    const ns = `${this.nsPrefix}${id}`;
    const hostVeth = `vh${id}`;
    const ip = this.allocate();
    const net: PodNet = { ns, ip, hostVeth };
    this.used.set(key, net);
    try {
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      await run('ip', ['netns', 'add', ns]);
      // The MAC is derived from the IP (0a:58:<ip>), so a reused IP keeps its MAC and stale ARP
      // entries elsewhere stay valid.
      const mac = `0a:58:${ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
      await run('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'address', mac, 'netns', ns]);
      await run('ip', ['link', 'set', hostVeth, 'master', this.bridge, 'up']);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${ip}/${this.prefix}`, 'dev', 'eth0']);
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', this.gateway]);
    } catch (e) {
      await this.detach(key);
      throw e;
    }
    return net;
  }

  /**
   * Writes the files `ip netns exec` bind-mounts over /etc inside the namespace
   * (`/etc/netns/<ns>/hosts` and `resolv.conf`). The hosts file is rewritten in place so
   * running processes see updates.
   */
  writeEtc(ns: string, hosts: string): void {
    const dir = join('/etc/netns', ns);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'hosts'), hosts);
    // No DNS server exists: fail unknown names fast instead of timing out.
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  }

  /** Deletes a pod's namespace (and with it the veth pair) and its /etc/netns files. */
  async detach(key: string): Promise<void> {
    const net = this.used.get(key);
    if (!net) return;
    await run('ip', ['netns', 'del', net.ns]).catch(() => undefined);
    await run('ip', ['link', 'del', net.hostVeth]).catch(() => undefined);
    rmSync(join('/etc/netns', net.ns), { recursive: true, force: true });
    this.used.delete(key);
  }

  /** Detaches every pod and deletes the bridge. */
  async teardown(): Promise<void> {
    for (const key of [...this.used.keys()]) await this.detach(key);
    if (this.nodeIp !== this.gateway) await this.removeAddress(`${this.nodeIp}/${this.prefix}`);
    // Other nodes of the cluster may still use the bridge.
    const ports = await run('ip', ['-o', 'link', 'show', 'master', this.bridge]).catch(() => '');
    if (ports.trim() === '') await run('ip', ['link', 'del', this.bridge]).catch(() => undefined);
    this.extraAddrs.clear();
  }
}
