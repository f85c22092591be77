/**
 * The node's Prometheus metrics, on a registry of its own (no global state, so that tests can
 * run several nodes in one process).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric the node exports. Names follow Prometheus conventions: unit last. */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly walSyncs: Counter;
  readonly walSyncSeconds: Histogram;
  readonly readyBatchEntries: Histogram;
  readonly proposalsBatched: Histogram;
  readonly peerMessagesSent: Counter<'peer'>;
  readonly peerMessagesDropped: Counter<'peer' | 'reason'>;
  readonly peerMessagesReceived: Counter;
  readonly peerStreams: Gauge<'direction'>;
  readonly clientRequests: Counter<'op' | 'code'>;
  readonly clientPending: Gauge;
  readonly snapshots: Counter;
  readonly commitIndex: Gauge;
  readonly appliedIndex: Gauge;
  readonly isLeader: Gauge;
  readonly ready: Gauge;

  constructor(defaultLabels: Record<string, string> = {}, processMetrics = true) {
    this.registry.setDefaultLabels(defaultLabels);
    const registers = [this.registry];
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
    this.walSyncs = new Counter({ name: 'paxos_wal_syncs_total', help: 'fdatasync calls on the write-ahead log', registers });
    this.walSyncSeconds = new Histogram({
      name: 'paxos_wal_persist_seconds',
      help: 'Time to persist one Ready (write + fdatasync)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
      registers,
    });
    this.readyBatchEntries = new Histogram({
      name: 'paxos_ready_entries',
      help: 'Entries persisted per Ready (group commit size)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers,
    });
    this.proposalsBatched = new Histogram({
      name: 'paxos_proposal_batch_commands',
      help: 'Client commands proposed together in one event-loop turn',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers,
    });
    this.peerMessagesSent = new Counter({ name: 'paxos_peer_messages_sent_total', help: 'Messages written to peer streams', labelNames: ['peer'], registers });
    this.peerMessagesDropped = new Counter({
      name: 'paxos_peer_messages_dropped_total',
      help: 'Messages dropped (queue overflow, no route, malformed)',
      labelNames: ['peer', 'reason'],
      registers,
    });
    this.peerMessagesReceived = new Counter({ name: 'paxos_peer_messages_received_total', help: 'Messages received from peers', registers });
    this.peerStreams = new Gauge({ name: 'paxos_peer_streams', help: 'Open peer streams', labelNames: ['direction'], registers });
    this.clientRequests = new Counter({ name: 'paxos_client_requests_total', help: 'Client requests by outcome', labelNames: ['op', 'code'], registers });
    this.clientPending = new Gauge({ name: 'paxos_client_pending_requests', help: 'Client requests waiting for commit or read index', registers });
    this.snapshots = new Counter({ name: 'paxos_snapshots_total', help: 'Snapshots taken locally', registers });
    this.commitIndex = new Gauge({ name: 'paxos_commit_index', help: 'Highest slot known chosen', registers });
    this.appliedIndex = new Gauge({ name: 'paxos_applied_index', help: 'Highest slot applied to the state machine', registers });
    this.isLeader = new Gauge({ name: 'paxos_is_leader', help: '1 when this node leads', registers });
    this.ready = new Gauge({ name: 'paxos_ready', help: '1 when this node has a leader and is caught up', registers });
  }
}
