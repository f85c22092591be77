/**
 * Kubernetes nodes on this machine made of the real parts: per node a containerd and a kubelet
 * (v1.35.4); for the cluster one kube-proxy (iptables mode, ClusterIP Services), CoreDNS (the
 * `kubernetes` plugin: Service and headless pod names) and a local-volume provisioner.
 *
 * Network: one Linux bridge per cluster slot (`kpbrN`, 10.244.N.1/24) shared by every node's
 * CNI bridge plugin, each node handing out its own slice of the subnet, so pods on different
 * nodes reach each other as on a flat pod network. The API server, the kubelets and CoreDNS
 * serve on the bridge address; pods reach the API server through the `kubernetes` Service.
 * Nothing listens beyond loopback and the bridge.
 *
 * {@link RealNodes.stop} puts the machine back: every sandbox is removed through the CRI
 * (crictl: CNI teardown, unmounts), the processes end, leftover mounts under the run folder are
 * unmounted, cgroups removed, the bridge deleted, and the iptables rules and sysctls that the
 * kubelet, kube-proxy and CNI changed are restored from the snapshot taken before start.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { LocalControlPlane } from '../cluster/control-plane.js';
import { KubeClient, type KubeList, type KubeObject } from '../cluster/kube-client.js';
import { leaf, writeKubeconfig } from '../cluster/pki.js';
import { ManagedProcess } from '../cluster/process.js';
import { requireTools, toolsBinDir } from '../cluster/tools.js';
import { Containerd } from './containerd.js';
import { requireCommands, run, tryRun } from './exec.js';
import { restoreHost, snapshotHost, type HostSnapshot } from './host-state.js';
import type { ImageSet } from './images.js';
import { Kubelet } from './kubelet.js';
import { LocalVolumeProvisioner } from './provisioner.js';

/** Host commands the nodes need, with their Debian packages. */
export const NODE_COMMANDS = [
  { command: 'containerd', debianPackage: 'containerd' },
  { command: 'ctr', debianPackage: 'containerd' },
  { command: 'runc', debianPackage: 'runc' },
  { command: 'iptables', debianPackage: 'iptables' },
  { command: 'iptables-save', debianPackage: 'iptables' },
  { command: 'ip', debianPackage: 'iproute2' },
  { command: 'mount', debianPackage: 'mount' },
] as const;

/** The bridge, subnet and addresses of a cluster slot. */
export interface NodeNetwork {
  readonly bridge: string;
  readonly subnet: string;
  /** The bridge's address: gateway of the pods, address of API server, kubelets and DNS. */
  readonly gateway: string;
  /** Pod address range of node `k`. */
  range(k: number): { start: string; end: string };
}

/** The network of slot `slot` (the same /24 the control plane's slot reserves for pods). */
export function nodeNetwork(slot: number): NodeNetwork {
  const prefix = `10.244.${slot}`;
  return {
    bridge: `kpbr${slot}`,
    subnet: `${prefix}.0/24`,
    gateway: `${prefix}.1`,
    range: (k) => ({ start: `${prefix}.${10 + 40 * k}`, end: `${prefix}.${49 + 40 * k}` }),
  };
}

/** Creates the cluster's bridge with its address (before the API server binds to it). */
export async function createBridge(net: NodeNetwork): Promise<void> {
  await tryRun('ip', ['link', 'delete', net.bridge]);
  await run('ip', ['link', 'add', net.bridge, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${net.gateway}/24`, 'dev', net.bridge]);
  await run('ip', ['link', 'set', net.bridge, 'up']);
}

/** Options of {@link RealNodes.start}. */
export interface RealNodesOptions {
  readonly controlPlane: LocalControlPlane;
  readonly network: NodeNetwork;
  readonly images: ImageSet;
  /** Number of nodes (default 3). */
  readonly nodes?: number;
  readonly logger: Logger;
  /** Host state recorded before anything was changed (default: taken at start). */
  readonly hostSnapshot?: HostSnapshot;
}

interface NodeParts {
  readonly name: string;
  readonly dir: string;
  readonly containerd: Containerd;
  readonly kubelet: Kubelet;
}

interface NodeObject extends KubeObject {
  status?: { conditions?: { type: string; status: string }[]; nodeInfo?: { containerRuntimeVersion?: string; kubeletVersion?: string } };
}

/** The cgroup v1 hierarchies mounted on this machine (where kubelets create pod cgroups). */
function cgroupHierarchies(): string[] {
  try {
    return readdirSync('/sys/fs/cgroup').map((d) => join('/sys/fs/cgroup', d));
  } catch {
    return [];
  }
}

/** Removes a cgroup folder tree bottom-up (cgroup folders can only be rmdir'ed when empty). */
function removeCgroupTree(path: string): void {
  if (!existsSync(path)) return;
  for (const e of readdirSync(path, { withFileTypes: true })) {
    if (e.isDirectory()) removeCgroupTree(join(path, e.name));
  }
  try {
    rmdirSync(path);
  } catch {
    /* still in use or not a cgroup: left for the next run's cleanup */
  }
}

/** Unmounts everything mounted below `dir`, deepest first. */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await tryRun('umount', ['-l', m]);
}

/** The nodes of one local cluster. */
export class RealNodes {
  private readonly nodes: NodeParts[] = [];
  private kubeProxy: ManagedProcess | undefined;
  private coredns: ManagedProcess | undefined;
  private provisioner: LocalVolumeProvisioner | undefined;
  private client: KubeClient | undefined;
  private snapshot: HostSnapshot | undefined;
  private opts: RealNodesOptions | undefined;
  private runtimeDir = '';
  private crictl = '';

  /** Names of the nodes, in order. */
  get nodeNames(): string[] {
    return this.nodes.map((n) => n.name);
  }

  /** Starts every node and the cluster services, and waits until all nodes are Ready. */
  async start(opts: RealNodesOptions): Promise<void> {
    this.opts = opts;
    requireCommands(NODE_COMMANDS);
    const binDir = toolsBinDir();
    const bins = requireTools(['kubelet', 'kube-proxy', 'coredns', 'crictl'], binDir);
    this.crictl = bins.crictl;
    const cp = opts.controlPlane;
    const pki = cp.pki;
    if (!pki) throw new Error('control plane not started');
    this.snapshot = opts.hostSnapshot ?? (await snapshotHost());
    const { network: net, logger: log } = opts;
    const root = join(cp.runDir, 'nodes');
    const slot = cp.network?.slot ?? 0;
    this.runtimeDir = join('/run', 'paxos-lc', String(slot));
    const logs = join(cp.runDir, 'logs');
    mkdirSync(logs, { recursive: true });
    this.client = new KubeClient({ server: cp.server, caFile: pki.ca.cert, certFile: pki.admin.cert, keyFile: pki.admin.key });

    const count = opts.nodes ?? 3;
    for (let k = 0; k < count; k++) {
      const name = `local-${k}`;
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true });
      const cert = leaf(dir, pki.ca, { name: 'node-client', subject: `/O=system:nodes/CN=system:node:${name}`, usage: 'client' }, 30);
      const kubeconfig = writeKubeconfig({ path: join(dir, 'kubelet.kubeconfig'), server: cp.server, caCert: pki.ca.cert, client: cert, user: `system:node:${name}` });
      const range = net.range(k);
      const containerd = new Containerd({
        nodeName: name,
        dir,
        runDir: join(this.runtimeDir, String(k)),
        sandboxImage: opts.images.pause.ref,
        bridge: net.bridge,
        podSubnet: net.subnet,
        gateway: net.gateway,
        rangeStart: range.start,
        rangeEnd: range.end,
      });
      const kubelet = new Kubelet({
        binary: bins.kubelet,
        nodeName: name,
        dir,
        kubeconfig,
        clientCaFile: pki.ca.cert,
        runtimeEndpoint: containerd.endpoint,
        address: net.gateway,
        port: 10250 + 10 * slot + k,
        healthzPort: 20250 + 10 * slot + k,
        clusterDns: net.gateway,
        cgroupRoot: `/paxos-local/slot-${slot}/${name}`,
      });
      this.nodes.push({ name, dir, containerd, kubelet });
    }
    // The nodes come up side by side: most of the time goes into unpacking the images.
    await Promise.all(
      this.nodes.map(async ({ name, containerd, kubelet }) => {
        await containerd.start(join(logs, `containerd-${name}.log`));
        for (const image of [opts.images.pause, opts.images.node, opts.images.operator]) await containerd.importImage(image.archive);
        await kubelet.start(join(logs, `kubelet-${name}.log`));
        log.info({ node: name }, 'node started');
      }),
    );

    // kube-proxy: one for the machine, since all nodes share its network stack.
    const proxyCert = leaf(join(root), pki.ca, { name: 'kube-proxy', subject: '/CN=system:kube-proxy', usage: 'client' }, 30);
    const proxyKubeconfig = writeKubeconfig({ path: join(root, 'kube-proxy.kubeconfig'), server: cp.server, caCert: pki.ca.cert, client: proxyCert, user: 'system:kube-proxy' });
    this.kubeProxy = await ManagedProcess.start({
      name: 'kube-proxy',
      command: bins['kube-proxy'],
      args: [
        `--kubeconfig=${proxyKubeconfig}`,
        '--proxy-mode=iptables',
        `--hostname-override=${this.nodes[0]?.name ?? 'local-0'}`,
        `--cluster-cidr=${net.subnet}`,
        // Replies of a Service backend on the same bridge must come back through the host.
        '--masquerade-all',
        `--metrics-bind-address=127.0.0.1:${21249 + 10 * slot}`,
        `--healthz-bind-address=127.0.0.1:${21256 + 10 * slot}`,
        `--nodeport-addresses=${net.gateway}/32`,
        '--iptables-localhost-nodeports=false',
        // Leave the host's conntrack sysctls alone.
        '--conntrack-max-per-core=0',
        '--conntrack-tcp-timeout-established=0',
        '--conntrack-tcp-timeout-close-wait=0',
        '--v=1',
      ],
      logFile: join(logs, 'kube-proxy.log'),
    });

    // CoreDNS on the bridge address: cluster names only; nothing is forwarded off the machine.
    const corefile = join(root, 'Corefile');
    writeFileSync(
      corefile,
      [
        `cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {`,
        `  bind ${net.gateway}`,
        '  errors',
        `  kubernetes cluster.local in-addr.arpa ip6.arpa {`,
        `    kubeconfig ${cp.kubeconfigPath} local`,
        '    pods insecure',
        '    fallthrough in-addr.arpa ip6.arpa',
        '  }',
        '  cache 5',
        '}',
        `.:53 {`,
        `  bind ${net.gateway}`,
        '  template ANY ANY {',
        '    rcode NXDOMAIN',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    this.coredns = await ManagedProcess.start({ name: 'coredns', command: bins.coredns, args: ['-conf', corefile], logFile: join(logs, 'coredns.log') });

    this.provisioner = new LocalVolumeProvisioner({ client: this.client, volumesDir: join(root, 'volumes'), logger: log.child({ component: 'provisioner' }) });
    await this.provisioner.start();
    await this.waitReady(180_000);
  }

  /** Waits until every node reports Ready. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nodes = (await this.client!.call<KubeList<NodeObject>>('GET', '/api/v1/nodes')).items;
      const ready = nodes.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      if (ready.length >= this.nodes.length) return;
      for (const n of this.nodes) {
        if (!n.kubelet.running) throw new Error(`kubelet of ${n.name} exited:\n${n.kubelet.logTail()}`);
      }
      for (const p of [this.kubeProxy, this.coredns]) {
        if (p && !p.running) throw new Error(`${p.name} exited:\n${p.logTail()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`nodes not Ready after ${timeoutMs / 1000} s (ready: ${ready.map((n) => n.metadata.name).join(', ') || 'none'}):\n${this.nodes[0]?.kubelet.logTail() ?? ''}`);
      }
      await sleep(500);
    }
  }

  /** Imports an image archive into every node's containerd (as a registry push would make it pullable). */
  async importImage(archive: string): Promise<void> {
    for (const n of this.nodes) await n.containerd.importImage(archive);
  }

  /** Stops the kubelet of node `name` (the node goes NotReady; its pods stop being served). */
  async stopNode(name: string): Promise<void> {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    await n.kubelet.stop();
    await this.removeSandboxes(n);
  }

  /** Starts again the kubelet of a node stopped with {@link stopNode}. */
  async startNode(name: string): Promise<void> {
    const n = this.nodes.find((x) => x.name === name);
    if (!n || !this.opts) throw new Error(`no node ${name}`);
    await n.kubelet.start(join(this.opts.controlPlane.runDir, 'logs', `kubelet-${name}.log`));
  }

  private async removeSandboxes(n: NodeParts): Promise<void> {
    const r = await tryRun(this.crictl, ['--runtime-endpoint', n.containerd.endpoint, '--timeout', '30s', 'rmp', '--all', '--force'], { timeoutMs: 120_000 });
    if (!r.ok) this.opts?.logger.warn({ node: n.name, err: r.stderr.trim() }, 'crictl rmp failed');
  }

  /** Stops everything and puts the host back; returns what could not be restored. */
  async stop(): Promise<string[]> {
    this.provisioner?.stop();
    await Promise.all(this.nodes.map((n) => n.kubelet.stop()));
    await Promise.all(
      this.nodes.map(async (n) => {
        await this.removeSandboxes(n);
        await n.containerd.stop();
      }),
    );
    await this.kubeProxy?.stop(5000);
    await this.coredns?.stop(5000);
    this.client?.close();
    const problems: string[] = [];
    for (const n of this.nodes) {
      await unmountBelow(n.dir);
      for (const h of cgroupHierarchies()) removeCgroupTree(join(h, n.kubelet.cgroupRoot));
    }
    const slot = this.opts?.controlPlane.network?.slot ?? 0;
    for (const h of cgroupHierarchies()) removeCgroupTree(join(h, 'paxos-local', `slot-${slot}`));
    if (this.runtimeDir) {
      await unmountBelow(this.runtimeDir);
      rmSync(this.runtimeDir, { recursive: true, force: true });
    }
    if (this.opts) await tryRun('ip', ['link', 'delete', this.opts.network.bridge]);
    if (this.snapshot) problems.push(...(await restoreHost(this.snapshot)));
    this.nodes.length = 0;
    return problems;
  }
}
