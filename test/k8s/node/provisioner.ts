/**
 * A small dynamic provisioner for the local cluster's default StorageClass `local`: for every
 * claim the scheduler has placed (`volume.kubernetes.io/selected-node`), it creates a folder on
 * that node and a `local` PersistentVolume pinned to the node, pre-bound to the claim; the
 * kube-controller-manager's PV controller completes the binding as on any cluster. Released
 * volumes of ours are deleted with their folder (reclaim policy Delete).
 *
 * It polls the API server once a second rather than watching: a handful of claims, and a poll
 * cannot miss an event.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { KubeApiError, type KubeClient, type KubeList, type KubeObject } from '../cluster/kube-client.js';

/** The provisioner name in the StorageClass and on the volumes it made. */
export const PROVISIONER_NAME = 'paxos.local/hostpath';
/** Name of the default StorageClass. */
export const STORAGE_CLASS = 'local';

interface Pvc extends KubeObject {
  spec: { storageClassName?: string; accessModes?: string[]; resources?: { requests?: { storage?: string } }; volumeName?: string };
  status?: { phase?: string };
}

interface Pv extends KubeObject {
  spec: { local?: { path: string }; claimRef?: { namespace: string; name: string; uid: string } };
  status?: { phase?: string };
}

/** Options of {@link LocalVolumeProvisioner}. */
export interface ProvisionerOptions {
  readonly client: KubeClient;
  /** Folder holding one sub-folder per node, holding one folder per volume. */
  readonly volumesDir: string;
  readonly logger: Logger;
}

/** The provisioner loop; {@link start} creates the StorageClass, {@link stop} ends the loop. */
export class LocalVolumeProvisioner {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;

  constructor(private readonly opts: ProvisionerOptions) {}

  /** Creates the default StorageClass (if absent) and starts polling. */
  async start(): Promise<void> {
    try {
      await this.opts.client.create('/apis/storage.k8s.io/v1/storageclasses', {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: STORAGE_CLASS, annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
        provisioner: PROVISIONER_NAME,
        reclaimPolicy: 'Delete',
        volumeBindingMode: 'WaitForFirstConsumer',
      });
    } catch (e) {
      if (!(e instanceof KubeApiError && e.reason === 'AlreadyExists')) throw e;
    }
    const tick = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        void this.pass().finally(tick);
      }, 1000);
    };
    tick();
  }

  /** Stops polling (volumes stay). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One reconcile pass over claims and volumes; errors are logged and retried next pass. */
  async pass(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { client } = this.opts;
      const pvcs = await client.call<KubeList<Pvc>>('GET', '/api/v1/persistentvolumeclaims');
      const pvs = await client.call<KubeList<Pv>>('GET', '/api/v1/persistentvolumes');
      const names = new Set(pvs.items.map((p) => p.metadata.name));
      for (const pvc of pvcs.items) {
        const node = pvc.metadata.annotations?.['volume.kubernetes.io/selected-node'];
        if (pvc.status?.phase !== 'Pending' || !node || pvc.spec.volumeName) continue;
        if ((pvc.spec.storageClassName ?? STORAGE_CLASS) !== STORAGE_CLASS) continue;
        const name = `pvc-${pvc.metadata.uid}`;
        if (names.has(name)) continue;
        await this.provision(pvc, node, name);
      }
      for (const pv of pvs.items) {
        if (pv.status?.phase !== 'Released' || pv.metadata.annotations?.['pv.kubernetes.io/provisioned-by'] !== PROVISIONER_NAME) continue;
        if (pv.spec.local?.path) rmSync(pv.spec.local.path, { recursive: true, force: true });
        await client.delete(`/api/v1/persistentvolumes/${pv.metadata.name}`);
        this.opts.logger.info({ pv: pv.metadata.name }, 'deleted released volume');
      }
    } catch (e) {
      this.opts.logger.warn({ err: String(e) }, 'provisioner pass failed; retrying');
    } finally {
      this.busy = false;
    }
  }

  private async provision(pvc: Pvc, node: string, name: string): Promise<void> {
    const path = join(this.opts.volumesDir, node, name);
    // World-writable like rancher's local-path-provisioner: the pod's user owns what it writes.
    mkdirSync(path, { recursive: true });
    chmodSync(path, 0o777); // mkdir's mode is cut by the umask

    await this.opts.client.create('/api/v1/persistentvolumes', {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name, annotations: { 'pv.kubernetes.io/provisioned-by': PROVISIONER_NAME } },
      spec: {
        capacity: { storage: pvc.spec.resources?.requests?.storage ?? '1Gi' },
        accessModes: pvc.spec.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Delete',
        storageClassName: STORAGE_CLASS,
        volumeMode: 'Filesystem',
        claimRef: { namespace: pvc.metadata.namespace, name: pvc.metadata.name, uid: pvc.metadata.uid },
        local: { path },
        nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] }] } },
      },
    });
    this.opts.logger.info({ pv: name, claim: `${pvc.metadata.namespace}/${pvc.metadata.name}`, node }, 'provisioned volume');
  }
}
