/**
 * Leader discovery against fake nodes (real gRPC, scripted answers): NOT_LEADER hints whose
 * address is usable are followed directly; an unresolvable hint (an in-cluster DNS name seen
 * from outside) is replaced by the configured endpoint of the hinted leader id.
 */
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../io/proto.js';
import { PaxosClient } from './paxos-client.js';

interface Header {
  client_id: string;
  seq: number;
}

/** A scripted node: the leader applies puts, the others answer NOT_LEADER with `hint`. */
class FakeNode {
  readonly puts: Header[] = [];
  statusCalls = 0;
  private constructor(
    public id: number,
    private readonly server: grpc.Server,
    readonly port: number,
    private readonly cluster: FakeCluster,
  ) {}

  static async start(id: number, cluster: FakeCluster): Promise<FakeNode> {
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const node = new FakeNode(id, server, port, cluster);
    server.addService(loadProtos().kv, {
      Put: (call: grpc.ServerUnaryCall<{ header: Header }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        node.puts.push({ ...call.request.header });
        if (cluster.leader === node.id) {
          cb(null, { previous: null });
          return;
        }
        const metadata = new grpc.Metadata();
        metadata.set('x-paxos-error', 'not-leader');
        metadata.set('x-paxos-leader-id', String(cluster.leader));
        metadata.set('x-paxos-leader-addr', cluster.hint(cluster.leader));
        cb({ code: grpc.status.UNAVAILABLE, details: `not the leader; leader is ${cluster.leader}`, metadata });
      },
    });
    server.addService(loadProtos().admin, {
      Status: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        node.statusCalls++;
        cb(null, { id: node.id, role: cluster.leader === node.id ? 'leader' : 'follower', leader: cluster.leader, leader_addr: cluster.hint(cluster.leader) });
      },
    });
    return node;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

interface FakeCluster {
  leader: number;
  hint: (id: number) => string;
}

describe('PaxosClient leader hints', () => {
  const cluster: FakeCluster = { leader: 1, hint: () => '' };
  let nodes: FakeNode[] = [];
  const statusCalls = (): number => nodes.reduce((n, x) => n + x.statusCalls, 0);

  beforeEach(async () => {
    nodes = [];
    for (let id = 0; id < 3; id++) nodes.push(await FakeNode.start(id, cluster));
    cluster.leader = 1;
  });
  afterEach(() => nodes.forEach((n) => n.stop()));

  it('reaches the leader through the configured endpoint of the hinted id when the hint does not resolve', async () => {
    cluster.hint = (id) => `demo-${id}.nonexistent.invalid:7000`;
    const [n0, n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    // Not in id order: the client must learn which endpoint is which node.
    const client = new PaxosClient({ endpoints: [n2.endpoint, n0.endpoint, n1.endpoint], deadlineMs: 3000, clientId: 'c' });
    try {
      const t0 = Date.now();
      expect(await client.put('k', 'v')).toBeNull();
      expect(Date.now() - t0).toBeLessThan(1500); // no walk until the deadline
      expect(client.leaderEndpoint).toBe(n1.endpoint);
      expect(n1.puts).toEqual([{ client_id: 'c/63', seq: 1 }]);
      expect(n2.puts).toEqual([{ client_id: 'c/63', seq: 1 }]); // asked once, same session and seq
      expect(statusCalls()).toBe(3);

      // Leadership moves to node 0; its hint does not resolve either: the learnt map is used
      // without asking again, and the unusable name is not tried in between.
      cluster.leader = 0;
      expect(await client.put('k', 'w')).toBeNull();
      expect(client.leaderEndpoint).toBe(n0.endpoint);
      expect(n0.puts).toEqual([{ client_id: 'c/63', seq: 2 }]);
      expect(statusCalls()).toBe(3);
    } finally {
      client.close();
    }
  });

  it('learns the map again when an endpoint turns out to be another node', async () => {
    cluster.hint = (id) => `demo-${id}.nonexistent.invalid:7000`;
    const [n0, n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    const client = new PaxosClient({ endpoints: [n2.endpoint, n0.endpoint, n1.endpoint], deadlineMs: 3000, backoffMinMs: 5 });
    try {
      await client.put('k', 'v');
      expect(statusCalls()).toBe(3);
      // Pods rescheduled, addresses swapped: n1 is now node 0, n0 node 1, and node 1 leads.
      // The client's map still says node 1 is at n1, which now names node 1 as the leader.
      n0.id = 1;
      n1.id = 0;
      expect(await client.put('k', 'w')).toBeNull();
      expect(client.leaderEndpoint).toBe(n0.endpoint);
      expect(statusCalls()).toBe(6);
    } finally {
      client.close();
    }
  });

  it('reports every failed attempt to onAttemptError, also those its retries hid', async () => {
    const [n0, n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    cluster.hint = (id) => `localhost:${(nodes[id] as FakeNode).port}`;
    const seen: string[] = [];
    const client = new PaxosClient({
      endpoints: [n2.endpoint, n0.endpoint],
      deadlineMs: 3000,
      onAttemptError: (e, endpoint) => seen.push(`${e.notLeader ? 'NOT_LEADER' : e.codeName}@${endpoint}`),
    });
    try {
      expect(await client.put('k', 'v')).toBeNull();
      expect(n1.puts).toHaveLength(1);
      expect(seen).toEqual([`NOT_LEADER@${n2.endpoint}`]);
    } finally {
      client.close();
    }
  });

  it('follows a resolvable hint directly, without Status calls', async () => {
    const [n0, n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    // Same node, other spelling: proves the client went to the hinted address itself.
    cluster.hint = (id) => `localhost:${(nodes[id] as FakeNode).port}`;
    const client = new PaxosClient({ endpoints: [n2.endpoint, n0.endpoint], deadlineMs: 3000 });
    try {
      expect(await client.put('k', 'v')).toBeNull();
      expect(client.leaderEndpoint).toBe(`localhost:${n1.port}`);
      expect(n1.puts).toHaveLength(1);
      expect(statusCalls()).toBe(0);
    } finally {
      client.close();
    }
  });

  it('does not loop on an unusable hint whose id has no configured endpoint; keeps the deadline', async () => {
    cluster.hint = () => 'nonexistent.invalid:7000';
    const [n0, , n2] = nodes as [FakeNode, FakeNode, FakeNode];
    const client = new PaxosClient({ endpoints: [n2.endpoint, n0.endpoint], deadlineMs: 800, backoffMinMs: 20, backoffMaxMs: 50 });
    try {
      const t0 = Date.now();
      await expect(client.put('k', 'v')).rejects.toMatchObject({ codeName: 'DEADLINE_EXCEEDED' });
      expect(Date.now() - t0).toBeLessThan(2000);
      const asked = [...n0.puts, ...n2.puts];
      expect(new Set(asked.map((h) => `${h.client_id}#${h.seq}`)).size).toBe(1); // one session and seq throughout
      // Status is asked at most once per second, not on every NOT_LEADER.
      expect(statusCalls()).toBeLessThanOrEqual(2);
    } finally {
      client.close();
    }
  });
});
