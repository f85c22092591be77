/**
 * Mutual TLS and the admin identity on real node processes over real gRPC (issue 10):
 *
 * - the attack of the issue, `convert` from a client without credentials, is refused, and so it
 *   is with a TLS client without certificate, with an application client's certificate, with a
 *   member's certificate and with another quorum's operator certificate; nothing changes;
 * - a peer stream that claims another member's id, or comes from a non-member, is refused;
 * - a node with a certificate of another CA takes no part (neither sends nor receives);
 * - certificates are rotated (leaf, then the CA by overlap) under continuous writes without a
 *   restart, no write failing;
 * - bad or expired certificate files stop the node with a clear message and exit code 2.
 */
import * as grpc from '@grpc/grpc-js';
import { jest } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { AdminClient, PaxosClient, PaxosClientError, tlsCredentials } from '../../node/src/client/index.js';
import type { Config } from '../../node/src/core/types.js';
import { run as runCtl } from '../../node/src/cli/paxosctl.js';
import { loadProtos } from '../../node/src/io/proto.js';
import { CertificateSource, channelCredentials } from '../../node/src/io/tls.js';
import pino from 'pino';
import { createCa } from '../../operator/src/tls/pki.js';
import { TestPki, validFor, type HolderFiles } from './certs.js';
import { ProcessCluster, until } from './harness.js';

jest.setTimeout(180_000);

const IDS = [0, 1, 2];
const BOOT: Config = { epoch: 1, members: IDS };
const ATTACK: Config = { epoch: 9, members: [0] };

/** The gRPC code an admin call failed with (throws if it succeeded). */
async function refusedWith(call: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await call;
  } catch (err) {
    if (err instanceof PaxosClientError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('the call was accepted');
}

/** The SHA-256 fingerprint of the certificate the server at `endpoint` presents now. */
function servedFingerprint(endpoint: string, client: HolderFiles): Promise<string> {
  const [host, port] = endpoint.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host, port: Number(port), ALPNProtocols: ['h2'], servername: 'localhost',
      ca: fs.readFileSync(client.ca), cert: fs.readFileSync(client.cert), key: fs.readFileSync(client.key),
      checkServerIdentity: () => undefined,
    });
    socket.setTimeout(5000, () => socket.destroy(new Error('TLS connect timed out')));
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

function fingerprint(certFile: string): string {
  return new X509Certificate(fs.readFileSync(certFile)).fingerprint256;
}

describe('mutual TLS on real node processes', () => {
  let cluster: ProcessCluster;
  let pki: TestPki;
  let client: PaxosClient;

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ capacity: 3 });
    pki = cluster.pki as TestPki;
    for (const id of IDS) cluster.start(id, BOOT);
    await cluster.waitStable(IDS);
    client = new PaxosClient({ endpoints: cluster.endpoints(IDS), deadlineMs: 20_000, ...cluster.clientCredentials() });
    await client.put('before', 'attack');
  });

  afterAll(async () => {
    client?.close();
    await cluster?.destroy();
  });

  /** No node holds anything but the bootstrap configuration. */
  async function unchanged(): Promise<void> {
    for (const id of IDS) expect((await cluster.admin.status(cluster.endpoint(id))).config).toEqual(BOOT);
  }

  it('refuses the issue\'s attack (convert without credentials) and every caller but the operator', async () => {
    const target = cluster.endpoint(0);
    const tried: Array<{ who: string; code: number; message: string }> = [];
    const attempt = async (who: string, admin: AdminClient): Promise<number> => {
      try {
        const r = await refusedWith(admin.convert(target, ATTACK));
        tried.push({ who, ...r });
        return r.code;
      } finally {
        admin.close();
      }
    };
    // 1. plaintext, no credentials: the TLS port does not speak it.
    expect(await attempt('plaintext', new AdminClient({ deadlineMs: 3000 }))).toBe(grpc.status.UNAVAILABLE);
    // 2. TLS, trusting the CA, no client certificate: the handshake is refused.
    const caOnly = tlsCredentials({ ca: fs.readFileSync(pki.caFile) });
    expect(await attempt('no client certificate', new AdminClient({ deadlineMs: 3000, credentials: caOnly }))).toBe(grpc.status.UNAVAILABLE);
    // 3. an application client's certificate of the same CA: authenticated, not authorized.
    const app = pki.client('intruder');
    expect(await attempt('client certificate', new AdminClient({ deadlineMs: 3000, credentials: pki.credentials(app) }))).toBe(grpc.status.PERMISSION_DENIED);
    // 4. a member's certificate is not the operator's either.
    const member = pki.files('member-1');
    expect(await attempt('member certificate', new AdminClient({ deadlineMs: 3000, credentials: pki.credentials(member) }))).toBe(grpc.status.PERMISSION_DENIED);
    // 5. another quorum's operator certificate (another CA, trusting ours).
    const other = TestPki.create(path.join(cluster.root, 'other-ca'), cluster.host, 'other');
    const foreignOperator = other.operator();
    // (Built with grpc-js directly: our own library refuses such a mismatched pair up front.)
    const foreign = grpc.credentials.createSsl(fs.readFileSync(pki.caFile), fs.readFileSync(foreignOperator.key), fs.readFileSync(foreignOperator.cert));
    expect(await attempt('other quorum\'s operator', new AdminClient({ deadlineMs: 3000, credentials: foreign }))).toBe(grpc.status.UNAVAILABLE);
    // The other admin calls are the operator's too.
    const intruder = new AdminClient({ deadlineMs: 3000, credentials: pki.credentials(app) });
    try {
      for (const call of [intruder.transferLeadership(target, 1), intruder.finalize(target), intruder.register(target), intruder.snapshot(target)]) {
        expect((await refusedWith(call)).code).toBe(grpc.status.PERMISSION_DENIED);
      }
      // Status stays readable by any authenticated client.
      expect((await intruder.status(target)).config).toEqual(BOOT);
    } finally {
      intruder.close();
    }
    // Nothing changed, and the node logged who was denied.
    await unchanged();
    const denied = cluster.logs(0).split('\n').filter((l) => l.includes('admin request denied')).map((l) => JSON.parse(l) as { op: string; caller: string });
    expect(denied).toEqual(expect.arrayContaining([
      expect.objectContaining({ op: 'convert', caller: expect.stringContaining('client intruder') }),
      expect.objectContaining({ op: 'convert', caller: expect.stringContaining('member 1') }),
    ]));
    // The operator's certificate may (a harmless convert to the configuration it has).
    await cluster.admin.convert(target, BOOT);
    process.stdout.write(`refused attempts: ${JSON.stringify(tried)}\n`);
  });

  it('refuses a peer stream whose claimed id is not its certificate\'s, and one from a non-member', async () => {
    const { PeerClient } = loadProtos();
    const open = async (files: HolderFiles, from: number): Promise<{ code: number; details: string }> => {
      const peer = new PeerClient(cluster.endpoint(0), pki.credentials(files), {});
      try {
        const md = new grpc.Metadata();
        md.set('x-paxos-from', String(from));
        md.set('x-paxos-to', '0');
        const call = (peer as unknown as { Stream: (m: grpc.Metadata) => grpc.ClientDuplexStream<unknown, unknown> }).Stream(md);
        return await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the forged stream was not refused within 5 s')), 5000);
          call.on('data', () => undefined);
          call.on('error', (err: grpc.ServiceError) => {
            clearTimeout(timer);
            resolve({ code: err.code, details: err.details });
          });
        });
      } finally {
        peer.close();
      }
    };
    const forged = await open(pki.files('member-1'), 2);
    expect(forged.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(forged.details).toContain("claims to come from member 2 but the certificate is member 1's");
    expect((await open(pki.client('app'), 1)).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await open(pki.operator(), 1)).code).toBe(grpc.status.PERMISSION_DENIED);
    expect(cluster.logs(0)).toContain('peer stream refused');
  });

  it('lets no node with another CA\'s certificate take part', async () => {
    const other = TestPki.create(path.join(cluster.root, 'rogue-ca'), cluster.host, 'rogue');
    const rogue = other.member(2);
    await cluster.stop(2);
    // Node 2's own data, but a certificate of another quorum: it trusts only that CA.
    cluster.start(2, BOOT, [...TestPki.nodeFlags(rogue)]);
    const rogueAdmin = new AdminClient({ deadlineMs: 2000, credentials: other.credentials(other.operator()) });
    try {
      await until('the rogue node to answer', async () => (await rogueAdmin.status(cluster.endpoint(2)).catch(() => undefined)) !== undefined);
      const before = (await rogueAdmin.status(cluster.endpoint(2))).applied;
      for (let i = 0; i < 20; i++) await client.put(`while-rogue-${i}`, String(i));
      const leader = (await cluster.admin.status(cluster.endpoint(0))).leader as number;
      const committed = (await cluster.admin.status(cluster.endpoint(leader))).commit;
      await new Promise((r) => setTimeout(r, 1500));
      const rogueStatus = await rogueAdmin.status(cluster.endpoint(2));
      // It received nothing (its applied index did not move) and is no leader's follower.
      expect(rogueStatus.applied).toBe(before);
      expect(rogueStatus.applied).toBeLessThan(committed);
      expect(rogueStatus.ready).toBe(false);
      // The quorum's own view: node 2 is unreachable to our operator's certificate.
      expect(await cluster.status(2)).toBeUndefined();
    } finally {
      rogueAdmin.close();
    }
    // Back with its own certificate, it catches up.
    await cluster.stop(2);
    cluster.start(2, BOOT);
    await cluster.waitStable(IDS);
    expect(await client.get('while-rogue-19')).toBe('19');
  });

  it('rotates member certificates and then the CA (by overlap) under continuous writes, without a restart', async () => {
    let running = true;
    let acked = 0;
    const failures: string[] = [];
    // The writer re-reads its files too, as a client with a mounted Secret would.
    const writerSource = CertificateSource.fromFiles(
      { caFile: pki.caFile, certFile: pki.client('writer').cert, keyFile: pki.files('client-writer').key },
      { reloadMs: 200, logger: pino({ level: 'silent' }) },
    );
    const writerClient = new PaxosClient({ endpoints: cluster.endpoints(IDS), deadlineMs: 20_000, credentials: channelCredentials(writerSource) });
    const writer = (async () => {
      for (let i = 0; running; i++) {
        try {
          await writerClient.put(`rot-${i % 50}`, String(i));
          acked++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    const pids = IDS.map((id) => cluster.pid(id));
    try {
      // 1. New leaf certificates from the same CA: each node serves its new one.
      for (const id of IDS) {
        const files = pki.member(id);
        await until(`node ${id} to serve its renewed certificate`, async () => (await servedFingerprint(cluster.endpoint(id), pki.files('operator'))) === fingerprint(files.cert), 10_000);
      }
      // 2. CA rotation by overlap: trust old and new, then issue from the new, then drop the old.
      const oldCa = pki.ca;
      const newCa = createCa('cluster CA 2', validFor(365));
      pki.writeTrust([oldCa.certPem, newCa.certPem]);
      await new Promise((r) => setTimeout(r, 1000)); // every node has re-read the bundle (polls every 200 ms)
      pki.issueFrom(newCa);
      const newOperator = pki.operator();
      for (const id of IDS) {
        const files = pki.member(id);
        await until(`node ${id} to serve its certificate of the new CA`, async () => (await servedFingerprint(cluster.endpoint(id), newOperator)) === fingerprint(files.cert), 10_000);
      }
      const newClient = pki.client('app');
      pki.client('writer');
      await new Promise((r) => setTimeout(r, 1000)); // the writer has its new certificate
      pki.writeTrust([newCa.certPem]);
      await new Promise((r) => setTimeout(r, 1000));
      // The peers still talk (new streams too): a write commits after the rotation.
      const after = new PaxosClient({ endpoints: cluster.endpoints(IDS), deadlineMs: 20_000, credentials: pki.credentials(newClient) });
      try {
        await after.put('after-rotation', 'yes');
        expect(await after.get('after-rotation')).toBe('yes');
      } finally {
        after.close();
      }
      const newAdmin = new AdminClient({ deadlineMs: 3000, credentials: pki.credentials(newOperator) });
      try {
        for (const id of IDS) expect((await newAdmin.status(cluster.endpoint(id))).config).toEqual(BOOT);
      } finally {
        newAdmin.close();
      }
    } finally {
      running = false;
      await writer;
      writerClient.close();
      writerSource.close();
    }
    expect(failures).toEqual([]);
    expect(acked).toBeGreaterThan(20);
    // No node restarted: same processes throughout.
    expect(IDS.map((id) => cluster.pid(id))).toEqual(pids);
    for (const id of IDS) expect(cluster.logs(id)).toContain('reloaded TLS certificates');
    process.stdout.write(`rotation: ${acked} writes acknowledged, ${failures.length} failed\n`);
    // Open connections may still be the old handshakes: a node restarted now dials and is dialed
    // afresh, with the new CA only, and catches up.
    await cluster.stop(2);
    cluster.start(2, BOOT);
    const admin = new AdminClient({ deadlineMs: 2000, credentials: pki.credentials(pki.files('operator')) });
    try {
      await until('node 2 to rejoin with the new CA', async () => {
        const s = await admin.status(cluster.endpoint(2)).catch(() => undefined);
        return s?.ready === true;
      }, 30_000);
    } finally {
      admin.close();
    }
  });
});

describe('paxosctl --cacert --cert --key against a TLS quorum', () => {
  let cluster: ProcessCluster;
  let pki: TestPki;
  beforeAll(async () => {
    cluster = await ProcessCluster.create({ capacity: 1 });
    pki = cluster.pki as TestPki;
    cluster.start(0, { epoch: 1, members: [0] });
    await cluster.waitStable([0]);
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  async function ctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string[]; err: string[] }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCtl(['--endpoints', cluster.endpoint(0), '--deadline-ms', '3000', ...args], env, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err };
  }
  const tlsArgs = (f: HolderFiles): string[] => ['--cacert', f.ca, '--cert', f.cert, '--key', f.key];

  it('works with a client certificate; admin commands other than status need the operator\'s', async () => {
    const app = pki.client('cli');
    expect(await ctl([...tlsArgs(app), 'put', 'k', 'v'])).toMatchObject({ code: 0 });
    expect((await ctl([...tlsArgs(app), 'get', 'k'])).out).toEqual(['v']);
    expect(await ctl([...tlsArgs(app), 'status'])).toMatchObject({ code: 0 });
    const denied = await ctl([...tlsArgs(app), 'convert', cluster.endpoint(0), '{"epoch":9,"members":[0]}']);
    expect(denied.code).toBe(1);
    expect(denied.err).toEqual([expect.stringMatching(/^paxosctl: PERMISSION_DENIED: convert: permission denied: the admin API is reserved for the operator/)]);
    // The same from the environment, with the operator's certificate: allowed.
    const op = pki.operator();
    expect(await ctl(['snapshot'], { PAXOSCTL_CACERT: op.ca, PAXOSCTL_CERT: op.cert, PAXOSCTL_KEY: op.key })).toMatchObject({ code: 0 });
  });

  it('says in one line what is wrong with missing or wrong certificates', async () => {
    const app = pki.client('cli');
    const cases: Array<[string[], number, RegExp]> = [
      [['--cacert', '/nonexistent/ca.crt', 'get', 'k'], 2, /^paxosctl: TLS: cannot read --cacert \/nonexistent\/ca.crt: no such file$/],
      [['--cacert', app.ca, '--cert', app.cert, 'get', 'k'], 2, /--cert needs --key/],
      [['--cacert', app.ca, '--cert', app.cert, '--key', pki.files('operator').key, 'get', 'k'], 2, /TLS: --key .* does not belong to the certificate in --cert/],
      [['get', 'k'], 1, /requires TLS \(give --cacert/],
      [['--cacert', app.ca, 'get', 'k'], 1, /TLS: the node requires a client certificate \(--cert\/--key\)/],
      [['--cacert', TestPki.create(path.join(cluster.root, 'wrong'), cluster.host).caFile, 'get', 'k'], 1, /TLS: the node's certificate is not signed by the CA given with --cacert/],
    ];
    for (const [args, code, message] of cases) {
      const r = await ctl(args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.err.join('\n').split('\n')[0]).toMatch(message);
      if (code === 1) expect(r.err.join('\n')).not.toContain('\n');
    }
  });
});

describe('certificate files the node refuses at start', () => {
  let cluster: ProcessCluster;
  beforeAll(async () => {
    cluster = await ProcessCluster.create({ capacity: 2 });
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  const single: Config = { epoch: 1, members: [0] };
  const cases: Array<[string, () => string[], RegExp]> = [
    ['a missing key file', () => ['--tls-key', '/nonexistent/tls.key'], /TLS: cannot read --tls-key \/nonexistent\/tls.key: no such file/],
    ['an expired certificate', () => TestPki.nodeFlags((cluster.pki as TestPki).member(0, { notBefore: new Date(Date.now() - 2 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) })), /TLS: the certificate in --tls-cert .* expired on/],
    ['another member\'s certificate', () => TestPki.nodeFlags((cluster.pki as TestPki).member(1)), /names member 1, not member 0/],
    ['a certificate of another CA', () => {
      const foreign = TestPki.create(path.join(cluster.root, 'x'), cluster.host).member(0);
      return ['--tls-cert', foreign.cert, '--tls-key', foreign.key];
    }, /is not signed by any CA in --tls-ca/],
  ];
  it.each(cases)('%s: exit 2 with one clear line', async (_what, flags, message) => {
    cluster.start(0, single, flags());
    const exit = await cluster.exited(0);
    expect(exit.code).toBe(2);
    expect(exit.stderr).toMatch(message);
    (cluster.pki as TestPki).member(0); // a valid certificate again for the next case
  });
});
