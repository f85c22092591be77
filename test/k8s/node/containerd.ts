/**
 * One containerd per Kubernetes node, with its own root, state, socket, CNI configuration and
 * pod address range, so that several kubelets on one machine do not see (and garbage-collect)
 * each other's pods.
 *
 * Pitfalls of this machine solved here:
 * - root lacks CAP_SYS_RESOURCE, so runc cannot lower `oom_score_adj` below its current value:
 *   without `restrict_oom_score_adj = true` every sandbox fails with
 *   `can't get final child's PID from pipe: EOF`;
 * - no registry is reachable: the sandbox (pause) image and our images are imported from OCI
 *   archives into the `k8s.io` namespace instead of pulled.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ManagedProcess } from '../cluster/process.js';
import { run, tryRun } from './exec.js';

/** Where the Debian package containernetworking-plugins installs the CNI plugins. */
export const CNI_BIN_DIR = '/usr/lib/cni';

/** Options of one node's containerd. */
export interface ContainerdOptions {
  /** Node name (used in messages). */
  readonly nodeName: string;
  /** Persistent folder of this node (containerd root, CNI state). */
  readonly dir: string;
  /** Short run-time folder (socket paths are limited to 108 bytes). */
  readonly runDir: string;
  /** The sandbox image reference, already imported with {@link Containerd.importImage}. */
  readonly sandboxImage: string;
  /** Bridge shared by every node of the cluster. */
  readonly bridge: string;
  /** Pod subnet (the bridge's), e.g. 10.244.3.0/24. */
  readonly podSubnet: string;
  /** Gateway = the bridge's address, e.g. 10.244.3.1. */
  readonly gateway: string;
  /** This node's share of the subnet: first and last pod address. */
  readonly rangeStart: string;
  readonly rangeEnd: string;
}

/** A containerd process configured for one kubelet. */
export class Containerd {
  private proc: ManagedProcess | undefined;
  readonly socket: string;
  readonly cniConfDir: string;

  constructor(readonly opts: ContainerdOptions) {
    this.socket = join(opts.runDir, 'containerd.sock');
    this.cniConfDir = join(opts.dir, 'cni', 'net.d');
  }

  /** `unix://…` endpoint for the kubelet and crictl. */
  get endpoint(): string {
    return `unix://${this.socket}`;
  }

  private writeConfig(): string {
    const { dir, runDir } = this.opts;
    mkdirSync(this.cniConfDir, { recursive: true });
    mkdirSync(runDir, { recursive: true });
    // One network for this node's pods: the shared bridge, this node's slice of the subnet.
    writeFileSync(
      join(this.cniConfDir, '10-paxos-local.conflist'),
      `${JSON.stringify(
        {
          cniVersion: '0.4.0',
          name: 'paxos-local',
          plugins: [
            {
              type: 'bridge',
              bridge: this.opts.bridge,
              isGateway: true,
              ipMasq: false,
              hairpinMode: true,
              ipam: {
                type: 'host-local',
                dataDir: join(dir, 'cni', 'ipam'),
                ranges: [[{ subnet: this.opts.podSubnet, rangeStart: this.opts.rangeStart, rangeEnd: this.opts.rangeEnd, gateway: this.opts.gateway }]],
                routes: [{ dst: '0.0.0.0/0' }],
              },
            },
            { type: 'portmap', capabilities: { portMappings: true } },
          ],
        },
        null,
        2,
      )}\n`,
    );
    const config = join(dir, 'containerd.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = "${join(dir, 'containerd')}"`,
        `state = "${join(runDir, 'state')}"`,
        // Snapshotters this machine has no use for only add start-up noise.
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
        '[grpc]',
        `  address = "${this.socket}"`,
        '[ttrpc]',
        `  address = "${this.socket}.ttrpc"`,
        '[debug]',
        `  address = ""`,
        '[metrics]',
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(dir, 'opt')}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${this.opts.sandboxImage}"`,
        '  restrict_oom_score_adj = true',
        '  disable_apparmor = true',
        '  enable_selinux = false',
        '  enable_cdi = false',
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    snapshotter = "overlayfs"',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        '        SystemdCgroup = false',
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        `    bin_dir = "${CNI_BIN_DIR}"`,
        `    conf_dir = "${this.cniConfDir}"`,
        '    max_conf_num = 1',
        '',
      ].join('\n'),
    );
    return config;
  }

  /** Starts containerd and waits until its CRI answers. */
  async start(logFile: string): Promise<void> {
    const config = this.writeConfig();
    this.proc = await ManagedProcess.start({ name: `containerd ${this.opts.nodeName}`, command: 'containerd', args: ['--config', config], logFile });
    const deadline = Date.now() + 30_000;
    while (!existsSync(this.socket) || !(await tryRun('ctr', ['--address', this.socket, 'version'], { timeoutMs: 5000 })).ok) {
      if (!this.proc.running) throw new Error(`containerd of ${this.opts.nodeName} exited:\n${this.proc.logTail()}`);
      if (Date.now() > deadline) throw new Error(`containerd of ${this.opts.nodeName} did not answer within 30 s:\n${this.proc.logTail()}`);
      await sleep(200);
    }
  }

  /** Imports an OCI archive into the `k8s.io` namespace (where the CRI looks for images). */
  async importImage(archive: string): Promise<void> {
    await run('ctr', ['--address', this.socket, '--namespace', 'k8s.io', 'images', 'import', archive], { timeoutMs: 600_000 });
  }

  /** Stops containerd (its shims and containers must have been removed before, by crictl). */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p) await p.stop(15_000);
  }
}
