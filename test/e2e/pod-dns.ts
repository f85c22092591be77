/**
 * In-process name resolution of pod DNS names for a client running on the host.
 *
 * The nodes' NOT_LEADER hints carry the leader's in-cluster name
 * (`demo-1.demo-peers.default.svc:7000`), which the host cannot resolve. The e2e client talks
 * to pod IPs (reachable through the cluster's bridge), so this module watches the pods
 * and answers `dns.promises.lookup` (what @grpc/grpc-js uses) for `<pod>.<service>.<ns>.svc[.cluster.local]`
 * with the pod's IP. Any other name goes to the real resolver. See FINDINGS.md.
 */
import dns from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { KubeClient, type KubeEndpoint } from '../k8s/cluster/kube-client.js';
import type { Pod } from '../k8s/cluster/k8s-types.js';

const POD_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.[a-z0-9-]+\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?$/;

/** Watches pods and resolves their headless-service names on this host. */
export class PodDns {
  /** `<ns>/<pod>` → IP. */
  readonly ips = new Map<string, string>();
  private readonly abort = new AbortController();
  private readonly client: KubeClient;
  private original: typeof dns.promises.lookup | undefined;
  private watch: Promise<void> | undefined;

  constructor(endpoint: KubeEndpoint) {
    this.client = new KubeClient(endpoint);
  }

  async start(): Promise<void> {
    let synced!: () => void;
    const ready = new Promise<void>((r) => (synced = r));
    this.watch = this.client.listWatch<Pod>('/api/v1/pods', (ev) => {
      const key = `${ev.object.metadata.namespace ?? 'default'}/${ev.object.metadata.name}`;
      const ip = ev.object.status?.podIP;
      if (ev.type === 'DELETED' || !ip) this.ips.delete(key);
      else this.ips.set(key, ip);
    }, this.abort.signal, synced);
    await ready;
    const original = dns.promises.lookup;
    this.original = original;
    const lookup = (async (hostname: string, options?: number | LookupOptions): Promise<LookupAddress | LookupAddress[]> => {
      const m = POD_NAME.exec(hostname);
      const ip = m ? this.ips.get(`${m[3]}/${m[1]}`) : undefined;
      if (ip === undefined) return original(hostname, options as LookupOptions);
      const addr: LookupAddress = { address: ip, family: 4 };
      const all = typeof options === 'object' && options.all === true;
      return all ? [addr] : addr;
    }) as typeof dns.promises.lookup;
    dns.promises.lookup = lookup;
  }

  async stop(): Promise<void> {
    if (this.original) dns.promises.lookup = this.original;
    this.original = undefined;
    this.abort.abort();
    await this.watch?.catch(() => undefined);
    this.client.close();
  }
}
