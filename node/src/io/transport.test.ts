import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { Message, NodeId } from '../core/types.js';
import { loadProtos, SERVER_OPTIONS } from './proto.js';
import { PeerTransport, type TransportLimits } from './transport.js';

interface Node {
  id: NodeId;
  transport: PeerTransport;
  server: grpc.Server;
  port: number;
  inbox: Message[];
}

const logger = pino({ level: 'silent' });

async function startNodes(count: number, limits: Partial<TransportLimits> = {}): Promise<Node[]> {
  const nodes: Node[] = [];
  const ports = new Map<NodeId, number>();
  for (let id = 0; id < count; id++) {
    const inbox: Message[] = [];
    const transport = new PeerTransport({
      id,
      resolve: (peer) => (ports.has(peer) ? `127.0.0.1:${ports.get(peer)}` : undefined),
      onMessage: (m) => inbox.push(m),
      logger,
      limits,
    });
    const server = new grpc.Server(SERVER_OPTIONS);
    server.addService(loadProtos().peer, { Stream: (call: grpc.ServerDuplexStream<unknown, unknown>) => transport.handleStream(call) });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    ports.set(id, port);
    nodes.push({ id, transport, server, port, inbox });
  }
  return nodes;
}

function stop(nodes: Node[]): void {
  for (const n of nodes) {
    n.transport.close();
    n.server.forceShutdown();
  }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const hb = (from: NodeId, to: NodeId, readId: number): Message => ({
  from,
  to,
  epoch: 1,
  type: 'heartbeat',
  ballot: { round: 1, node: from },
  commit: 0,
  readId,
});

describe('PeerTransport', () => {
  let nodes: Node[] = [];
  afterEach(() => stop(nodes));

  it('flush() writes the queue to an open stream at once, not at the end of the turn', async () => {
    nodes = await startNodes(2);
    const [a] = nodes as [Node, Node];
    a.transport.send([hb(0, 1, 1)]);
    await until(() => (nodes[1] as Node).inbox.length === 1);
    a.transport.send([hb(0, 1, 2)]);
    expect(a.transport.queued(1)).toBe(1);
    a.transport.flush();
    expect(a.transport.queued(1)).toBe(0);
    await until(() => (nodes[1] as Node).inbox.length === 2);
  });

  it('delivers messages both ways, in order, over one stream per pair', async () => {
    nodes = await startNodes(2);
    const [a, b] = nodes as [Node, Node];
    a.transport.send(Array.from({ length: 1000 }, (_, i) => hb(0, 1, i + 1)));
    b.transport.send([hb(1, 0, 1)]); // both sides dial at once
    await until(() => b.inbox.length === 1000 && a.inbox.length === 1);
    expect(b.inbox.map((m) => (m.type === 'heartbeat' ? m.readId : 0))).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    // Converged: further traffic flows both ways.
    b.transport.send([hb(1, 0, 2)]);
    a.transport.send([hb(0, 1, 1001)]);
    await until(() => a.inbox.length === 2 && b.inbox.length === 1001);
    await until(() => a.transport.streams(1) === 1 && b.transport.streams(0) === 1);
  });

  it('sends a catch-up snapshot in chunks and delivers the reassembled reply', async () => {
    nodes = await startNodes(2, { snapshotChunkBytes: 1000 });
    const [a, b] = nodes as [Node, Node];
    const data = 'é'.repeat(10_000) + 'end'; // multi-byte characters split across chunks
    const reply: Message = {
      from: 0,
      to: 1,
      epoch: 1,
      type: 'catchupReply',
      entries: [],
      commit: 77,
      snapshot: { index: 77, config: { epoch: 1, members: [0, 1, 2] }, data },
    };
    a.transport.send([reply, hb(0, 1, 5)]);
    await until(() => b.inbox.some((m) => m.type === 'catchupReply'));
    expect(b.inbox.find((m) => m.type === 'catchupReply')).toEqual(reply);
    expect(b.inbox.some((m) => m.type === 'heartbeat')).toBe(true);
  });

  it('drops the oldest messages when a peer queue overflows', async () => {
    nodes = await startNodes(1, { queueMessagesMax: 10 });
    const [a] = nodes as [Node];
    // Node 5 is unreachable; the queue stays bounded meanwhile.
    a.transport.send(Array.from({ length: 25 }, (_, i) => hb(0, 5, i)));
    expect(a.transport.queued(5)).toBe(10);
  });

  it('reconnects after the peer restarts', async () => {
    nodes = await startNodes(2, { backoffMinMs: 20, backoffMaxMs: 100 });
    const [a, b] = nodes as [Node, Node];
    a.transport.send([hb(0, 1, 1)]);
    await until(() => b.inbox.length === 1);
    b.server.forceShutdown();
    b.transport.close();
    // Restart node 1 on the same port with a fresh transport.
    const inbox: Message[] = [];
    const transport = new PeerTransport({ id: 1, resolve: () => undefined, onMessage: (m) => inbox.push(m), logger });
    const server = new grpc.Server(SERVER_OPTIONS);
    server.addService(loadProtos().peer, { Stream: (call: grpc.ServerDuplexStream<unknown, unknown>) => transport.handleStream(call) });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${b.port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    nodes[1] = { ...b, transport, server, inbox };
    const deadline = Date.now() + 5000;
    let n = 2;
    while (inbox.length === 0 && Date.now() < deadline) {
      a.transport.send([hb(0, 1, n++)]);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(inbox.length).toBeGreaterThan(0);
  });
});
