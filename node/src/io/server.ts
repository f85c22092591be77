/**
 * The node process assembled: storage, replica, driver, peer transport, gRPC services, the
 * HTTP probe endpoint and the tick timer. `NodeServer.start` brings it up; `shutdown` takes
 * it down gracefully (SIGTERM).
 */
import * as grpc from '@grpc/grpc-js';
import type * as http from 'node:http';
import type { Logger } from 'pino';
import { Replica, freshState, replicaOptions } from '../core/replica.js';
import type { NodeId, PersistedState } from '../core/types.js';
import { CERTIFICATE_ACCESS, OPEN_ACCESS } from './access.js';
import { adminHandlers } from './admin-service.js';
import { bootstrapConfigOf, clientAddress, lostDataAtStart, peerAddress, startsUnregistered, type NodeConfig } from './config.js';
import { Driver } from './driver.js';
import { HealthState } from './health.js';
import { startHttp } from './http.js';
import { kvHandlers } from './kv-service.js';
import { NodeMetrics } from './metrics.js';
import { SERVER_OPTIONS, loadProtos } from './proto.js';
import { Storage } from './storage.js';
import { readBackupFile } from './backup-file.js';
import * as fs from 'node:fs';
import { trace } from './trace.js';
import { CertificateSource, TlsFilesError, channelCredentials, serverCredentials } from './tls.js';
import { PeerTransport } from './transport.js';

/** The data directory is fresh and no bootstrap configuration was given. */
export class MissingBootstrapError extends Error {
  constructor(dir: string) {
    super(`data directory ${dir} is empty and no --bootstrap-config was given`);
    this.name = 'MissingBootstrapError';
  }
}

/** `--restore-from` was given for a data directory that already holds state. */
export class RestoreRefusedError extends Error {
  constructor(dir: string, reason: string) {
    super(`refusing to restore into ${dir}: ${reason}`);
    this.name = 'RestoreRefusedError';
  }
}

/** Options beyond the validated config (tests inject these). */
export interface NodeServerOptions {
  readonly logger: Logger;
  /** Called when the node must stop at once (a storage failure). */
  readonly onFatal: (err: unknown) => void;
  /** Process-wide default metrics (off when several nodes share a process). */
  readonly processMetrics?: boolean;
}

function bind(server: grpc.Server, host: string, port: number, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(`${host}:${port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound))));
}

/**
 * Loads the node's TLS files (throws `TlsFilesError`) and checks that the certificate is this
 * member's: a node started with another member's certificate would be refused by every peer.
 */
function openCertificates(config: NodeConfig, log: Logger): CertificateSource | undefined {
  const tls = config.tls;
  if (!tls) return undefined;
  const source = CertificateSource.fromFiles(
    { caFile: tls.caFile, certFile: tls.certFile, keyFile: tls.keyFile, labels: { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key' } },
    { reloadMs: tls.reloadMs, logger: log.child({ component: 'tls' }) },
  );
  const identity = source.current.identity;
  if (identity?.kind !== 'member' || identity.id !== config.id) {
    source.close();
    const named = identity?.kind === 'member' ? `member ${identity.id}` : (identity?.kind ?? 'nothing');
    throw new TlsFilesError(`the certificate in --tls-cert ${tls.certFile} names ${named}, not member ${config.id} (URI SAN urn:paxos:member:${config.id})`);
  }
  return source;
}

/** Whether `dir` exists and holds any file (a subdirectory that is empty does not count). */
function hasData(dir: string): boolean {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  return names.some((name) => {
    const p = `${dir}/${name}`;
    return !fs.statSync(p).isDirectory() || hasData(p);
  });
}

/** A running node. */
export class NodeServer {
  private tickTimer: NodeJS.Timeout | undefined;
  private shuttingDown: Promise<void> | undefined;

  private constructor(
    readonly config: NodeConfig,
    readonly driver: Driver,
    private readonly transport: PeerTransport,
    private readonly grpcServers: grpc.Server[],
    private readonly httpServer: http.Server | undefined,
    private readonly health: HealthState,
    readonly metrics: NodeMetrics,
    private readonly log: Logger,
    private readonly certificates: CertificateSource | undefined,
    /** The ports actually bound (useful with port 0). */
    readonly ports: { readonly peer: number; readonly client: number; readonly metrics: number },
  ) {}

  /** Opens storage (recovering or bootstrapping), then starts serving. */
  static async start(config: NodeConfig, options: NodeServerOptions): Promise<NodeServer> {
    const log = options.logger;
    // Before storage: a node without usable certificates must not touch its data directory.
    const certificates = openCertificates(config, log);
    const access = certificates ? CERTIFICATE_ACCESS : OPEN_ACCESS;
    if (!certificates) log.warn({}, 'TLS is off (--insecure): peers and clients are not authenticated, anyone reaching the ports can reconfigure this node');
    const metrics = new NodeMetrics({ node: String(config.id) }, options.processMetrics ?? true);
    const storageLog = log.child({ component: 'storage' });
    // A restore reads and verifies the whole backup before the data directory is touched.
    const restore = config.restoreFrom === undefined ? undefined : await readBackupFile(config.restoreFrom);
    if (restore && hasData(config.dataDir)) throw new RestoreRefusedError(config.dataDir, 'the data directory already holds data (restore only into an empty one)');
    const { storage, state: recovered } = Storage.open(config.dataDir, { logger: storageLog });
    let state: PersistedState;
    if (restore) {
      if (recovered) throw new RestoreRefusedError(config.dataDir, 'the data directory already holds state');
      const bootstrap = bootstrapConfigOf(config);
      if (!bootstrap) throw new MissingBootstrapError(config.dataDir);
      // A fresh configuration over the backup's data: the source quorum's members and ballots
      // are not carried over, only its state machine at the backup's index.
      const hard = { ...freshState(bootstrap).hard, commit: restore.snapshot.index };
      state = storage.initializeFromSnapshot(hard, { index: restore.snapshot.index, config: bootstrap, data: restore.snapshot.data });
      storageLog.info(
        { from: config.restoreFrom, index: restore.meta.index, keys: restore.meta.keys, sha256: restore.meta.sha256, sourceEpoch: restore.meta.epoch, sourceMembers: restore.meta.members, sourceVersion: restore.meta.nodeVersion, config: bootstrap },
        'restored data directory from a backup',
      );
    } else if (recovered) {
      state = recovered;
      storageLog.info(
        { entries: recovered.entries.length, snapshot: recovered.snapshot?.index ?? 0, config: recovered.hard.config, commit: recovered.hard.commit },
        'recovered state',
      );
    } else {
      const bootstrap = bootstrapConfigOf(config);
      if (!bootstrap) throw new MissingBootstrapError(config.dataDir);
      // An empty directory for a node that already voted means its disk was lost: it must not
      // vote until repaired (lostDataAtStart says when that is).
      const existingVoter = lostDataAtStart(config);
      const unregistered = startsUnregistered(config);
      const hard = freshState(bootstrap).hard;
      state = storage.initialize(existingVoter ? { ...hard, dataLoss: {} } : unregistered ? { ...hard, unregistered: true } : hard);
      if (existingVoter) {
        storageLog.warn(
          { config: bootstrap },
          'empty data directory for an existing member: its earlier votes are lost, so it will not vote until a repair reconfiguration (see docs/data-dir.md)',
        );
      } else {
        storageLog.info({ config: bootstrap, joining: config.joining, unregistered }, 'initialized fresh data directory');
      }
    }

    const tickTicks = (ms: number): number => Math.max(1, Math.round(ms / config.tickMs));
    const replica = new Replica(
      replicaOptions({
        id: config.id,
        random: Math.random,
        snapshotData: (index) => storage.snapshotData(index),
        electionTimeoutTicks: tickTicks(config.electionTimeoutMs),
        heartbeatTicks: tickTicks(config.heartbeatMs),
        joining: config.joining,
      }),
      state,
    );
    const resolvePeer = (id: NodeId): string | undefined => peerAddress(config, id);
    const resolveClient = (id: NodeId): string | undefined => clientAddress(config, id);
    // The driver and the transport refer to each other; the sink indirection breaks the cycle.
    const late: { transport?: PeerTransport } = {};
    const driver = new Driver({
      replica,
      storage,
      state,
      sink: { send: (messages) => late.transport?.send(messages), flush: () => late.transport?.flush() },
      logger: log.child({ component: 'driver' }),
      metrics,
      limits: { maxPendingRequests: config.maxPendingRequests, requestTimeoutMs: config.requestTimeoutMs, snapshotThreshold: config.snapshotThreshold },
      clientAddress: resolveClient,
      onFatal: options.onFatal,
    });
    const transport = new PeerTransport({
      id: config.id,
      resolve: resolvePeer,
      onMessage: (m) => driver.receive(m),
      logger: log.child({ component: 'transport' }),
      metrics,
      access,
      ...(certificates ? { credentials: (peer: NodeId) => channelCredentials(certificates, { member: peer }) } : {}),
    });
    late.transport = transport;

    const protos = loadProtos();
    const health = new HealthState();
    const peerServer = new grpc.Server(SERVER_OPTIONS);
    peerServer.addService(protos.peer, { Stream: (call: grpc.ServerDuplexStream<unknown, unknown>) => transport.handleStream(call) });
    const clientPort = config.clientPort ?? config.peerPort;
    const shared = clientPort === config.peerPort;
    const clientServer = shared ? peerServer : new grpc.Server(SERVER_OPTIONS);
    const apiLog = log.child({ component: 'api' });
    clientServer.addService(protos.kv, kvHandlers(driver, apiLog, metrics));
    clientServer.addService(protos.admin, adminHandlers(driver, apiLog, resolveClient, access, (index) => storage.snapshotPath(index)));
    clientServer.addService(protos.health, health.handlers());
    if (!shared) peerServer.addService(protos.health, health.handlers());

    // The peer port always wants a member certificate; the client port one of the CA unless
    // --client-auth none (a shared port follows the client setting; the peer service still
    // refuses non-members, see access.ts).
    const requireClientCert = config.tls?.clientAuth !== 'none';
    const credentialsFor = (peerPort: boolean): grpc.ServerCredentials =>
      certificates ? serverCredentials(certificates, peerPort && !shared ? true : requireClientCert) : grpc.ServerCredentials.createInsecure();
    const boundPeer = await bind(peerServer, config.listenHost, config.peerPort, credentialsFor(true));
    const boundClient = shared ? boundPeer : await bind(clientServer, config.listenHost, clientPort, credentialsFor(false));
    const servers = shared ? [peerServer] : [peerServer, clientServer];

    let httpServer: http.Server | undefined;
    let metricsPort = 0;
    // A port of 0 disables HTTP unless explicitly asked for an ephemeral port by tests (-1 is not valid).
    if (config.metricsPort !== 0) {
      httpServer = await startHttp(config.listenHost, config.metricsPort, {
        get ready() {
          return driver.ready;
        },
        registry: metrics.registry,
      });
      const address = httpServer.address();
      metricsPort = typeof address === 'object' && address ? address.port : config.metricsPort;
    }

    const node = new NodeServer(config, driver, transport, servers, httpServer, health, metrics, log, certificates, {
      peer: boundPeer,
      client: boundClient,
      metrics: metricsPort,
    });
    node.tickTimer = setInterval(() => {
      driver.tick();
      health.set(driver.ready);
    }, config.tickMs);
    trace('node', config.id);
    log.info(
      {
        id: config.id, peerPort: boundPeer, clientPort: boundClient, metricsPort, config: state.hard.config,
        tls: certificates ? { clientAuth: config.tls?.clientAuth, certificateNotAfter: certificates.current.notAfter?.toISOString() } : false,
      },
      'node started',
    );
    return node;
  }

  /**
   * Graceful stop: refuse new requests, let in-flight ones finish (bounded by the grace
   * period), stop ticking, close streams and servers, sync and close the log.
   */
  shutdown(): Promise<void> {
    this.shuttingDown ??= this.doShutdown();
    return this.shuttingDown;
  }

  private async doShutdown(): Promise<void> {
    this.log.info({}, 'shutting down');
    this.health.close();
    this.driver.stopAccepting();
    await this.driver.settle(this.config.shutdownGraceMs);
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.transport.close();
    await this.driver.stop();
    await Promise.all(
      this.grpcServers.map(
        (s) =>
          new Promise<void>((resolve) => {
            // Give open calls a moment to finish, then cut them.
            const force = setTimeout(() => s.forceShutdown(), 1000);
            s.tryShutdown(() => {
              clearTimeout(force);
              resolve();
            });
          }),
      ),
    );
    if (this.httpServer) {
      this.httpServer.closeAllConnections();
      await new Promise<void>((resolve) => this.httpServer?.close(() => resolve()));
    }
    this.certificates?.close();
    this.log.info({}, 'stopped');
  }

  /** Stops without grace (tests simulating a crash use kill -9 on a process instead). */
  forceStop(): void {
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.transport.close();
    for (const s of this.grpcServers) s.forceShutdown();
    this.certificates?.close();
    this.httpServer?.closeAllConnections();
    this.httpServer?.close();
    void this.driver.stop();
  }
}
