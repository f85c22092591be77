/**
 * Test doubles for the node side only (the API server in these tests is real):
 *
 * - {@link SimNodes}: a {@link NodeAdmin} that keeps per-node configuration and a leader, with
 *   the admin calls' contract (convert persists a config and pauses a leader; transfer moves
 *   leadership; finalize drops prior on every node holding the joint configuration);
 * - {@link FakeKubelet}: marks pods Running and Ready through the status subresource and boots
 *   each new node from the bootstrap ConfigMap, as a real node reads PAXOS_BOOTSTRAP_CONFIG.
 */
import * as grpc from '@grpc/grpc-js';
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import type { KubeClients } from '../../operator/src/k8s/client.js';
import { Resources, resourcePath } from '../../operator/src/k8s/rest.js';
import { NodeAdminError, type NodeAdmin, type NodeStatus } from '../../operator/src/controller/node-admin.js';
import { BOOTSTRAP_CONFIG_KEY, emptyStartIsLoss, parseBootstrap, podOrdinal, selectorString } from '../../operator/src/controller/resources.js';
import type { NodeConfig } from '../../operator/src/plan/config.js';

/** Simulated nodes of one quorum, addressed by pod name. */
export class SimNodes implements NodeAdmin {
  readonly nodes = new Map<number, { config: NodeConfig; unregistered: boolean }>();
  leader: number | undefined;
  readonly calls: string[] = [];

  constructor(private readonly name: string) {}

  private ordinal(address: string): number {
    const ordinal = podOrdinal(this.name, address);
    if (ordinal === undefined || !this.nodes.has(ordinal)) throw new NodeAdminError('call', address, grpc.status.UNAVAILABLE, 'no such node');
    return ordinal;
  }

  /** `unregistered`: a new server's first start that waits for Register, as a real node does. */
  boot(ordinal: number, config: NodeConfig, unregistered = false): void {
    if (this.nodes.has(ordinal)) return;
    this.nodes.set(ordinal, { config, unregistered });
    if (this.leader === undefined) this.leader = this.elect();
  }

  remove(ordinal: number): void {
    this.nodes.delete(ordinal);
    if (this.leader === ordinal) this.leader = this.elect();
  }

  /** The node with the newest configuration and the lowest ordinal that is one of its members. */
  private elect(): number | undefined {
    const entries = [...this.nodes.entries()].sort(([a], [b]) => a - b);
    const newest = Math.max(...entries.map(([, node]) => node.config.epoch));
    return entries.find(([ordinal, node]) => node.config.epoch === newest && node.config.members.includes(ordinal))?.[0];
  }

  async status(address: string): Promise<NodeStatus> {
    const ordinal = this.ordinal(address);
    const node = this.nodes.get(ordinal) as { config: NodeConfig; unregistered: boolean };
    return {
      id: ordinal, role: this.leader === ordinal ? 'leader' : 'follower', leader: this.leader, config: node.config,
      fenceEpoch: node.config.epoch, commit: 10, applied: 10, caughtUp: true, transferring: false, ready: true, unregistered: node.unregistered,
      lag: this.leader === ordinal ? [...this.nodes.keys()].map((id) => ({ id, lag: 0 })) : [],
    };
  }

  async convert(address: string, config: NodeConfig): Promise<void> {
    const ordinal = this.ordinal(address);
    this.calls.push(`convert ${ordinal} e${config.epoch}`);
    const node = this.nodes.get(ordinal) as { config: NodeConfig };
    if (config.epoch >= node.config.epoch) node.config = config;
    if (this.leader === ordinal) this.leader = this.elect();
  }

  async register(address: string): Promise<void> {
    const ordinal = this.ordinal(address);
    this.calls.push(`register ${ordinal}`);
    (this.nodes.get(ordinal) as { unregistered: boolean }).unregistered = false;
  }

  async transferLeadership(address: string, target: number): Promise<void> {
    const ordinal = this.ordinal(address);
    this.calls.push(`transfer ${ordinal}->${target}`);
    if (this.leader !== ordinal) throw new NodeAdminError('TransferLeadership', address, grpc.status.FAILED_PRECONDITION, 'not the leader');
    this.leader = target;
  }

  async finalize(address: string): Promise<void> {
    const ordinal = this.ordinal(address);
    this.calls.push(`finalize ${ordinal}`);
    const joint = this.nodes.get(ordinal)?.config;
    if (this.leader !== ordinal || joint?.prior === undefined) {
      throw new NodeAdminError('Finalize', address, grpc.status.FAILED_PRECONDITION, 'not a leader on a joint configuration');
    }
    for (const node of this.nodes.values()) {
      if (node.config.epoch === joint.epoch && node.config.prior !== undefined) node.config = { epoch: joint.epoch, members: joint.members };
    }
  }

  close(): void {}
}

/** Plays the kubelet for the pods of one quorum: Running + Ready, node booted from the ConfigMap. */
export class FakeKubelet {
  constructor(private readonly clients: KubeClients, private readonly namespace: string, private readonly name: string, private readonly sim: SimNodes) {}

  /** One sync: start pods that are not Running yet, forget nodes whose pods are gone. */
  async sync(): Promise<void> {
    const { rest } = this.clients;
    const pods = await rest.get<{ items: V1Pod[] }>(resourcePath(Resources.pods, this.namespace), { labelSelector: selectorString(this.name) });
    const present = new Set<number>();
    for (const pod of pods.items) {
      const ordinal = podOrdinal(this.name, pod.metadata?.name ?? '');
      if (ordinal === undefined || pod.metadata?.deletionTimestamp !== undefined) continue;
      present.add(ordinal);
      if (pod.status?.phase === 'Running') continue;
      const configMap = await rest.get<V1ConfigMap>(resourcePath(Resources.configMaps, this.namespace, `${this.name}-bootstrap`));
      const bootstrap = parseBootstrap(configMap.data);
      if (bootstrap === undefined) continue;
      // As node/src/io/config.ts `startsUnregistered` decides it from PAXOS_BOOTSTRAP_CONFIG.
      const asked = (JSON.parse(configMap.data?.[BOOTSTRAP_CONFIG_KEY] ?? '{}') as { register?: unknown }).register === true;
      this.sim.boot(ordinal, bootstrap.config, asked && bootstrap.joining && !emptyStartIsLoss(bootstrap, ordinal));
      const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      await rest.mergePatch(resourcePath(Resources.pods, this.namespace, pod.metadata?.name, 'status'), {
        status: {
          phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }],
          conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }, { type: 'ContainersReady', status: 'True', lastTransitionTime: now }],
        },
      });
    }
    // A node's disk outlives its pod (a deleted pod comes back on the same volume); only a
    // scale-down deletes the volume (PVC retention whenScaled: Delete).
    const sts = await rest.get<{ spec?: { replicas?: number } }>(resourcePath(Resources.statefulSets, this.namespace, this.name))
      .catch(() => undefined);
    if (sts === undefined) return;
    const replicas = sts.spec?.replicas ?? 0;
    for (const ordinal of [...this.sim.nodes.keys()]) if (!present.has(ordinal) && ordinal >= replicas) this.sim.remove(ordinal);
  }
}
