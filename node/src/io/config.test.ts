import { ConfigError, clientAddress, lostDataAtStart, parseNodeConfig, peerAddress, startsUnregistered, type NodeConfig } from './config.js';

const ok = (argv: string[], env: NodeJS.ProcessEnv = {}): NodeConfig => {
  const tls = argv.some((a) => a.startsWith('--tls-') || a === '--insecure') || Object.keys(env).some((k) => k.startsWith('PAXOS_TLS_') || k === 'PAXOS_INSECURE');
  const c = parseNodeConfig(tls ? argv : [...argv, '--insecure'], env);
  if (c === 'help') throw new Error('help');
  return c;
};
const issues = (argv: string[], env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    parseNodeConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('node config', () => {
  it('parses flags, with defaults', () => {
    const c = ok(['--id', '1', '--data-dir', '/d', '--peers', '0=a:7001,1=b:7001,2=c:7001', '--bootstrap-config', '{"epoch":1,"members":[0,1,2]}']);
    expect(c).toMatchObject({ id: 1, dataDir: '/d', peerPort: 7001, tickMs: 50, joining: false, bootstrapConfig: { epoch: 1, members: [0, 1, 2] } });
    expect(peerAddress(c, 2)).toBe('c:7001');
    expect(peerAddress(c, 7)).toBeUndefined();
  });

  it('takes --restore-from only with a fresh configuration for a new quorum', () => {
    const base = ['--id', '0', '--data-dir', '/d', '--peer-template', 'p-{i}:7001', '--insecure', '--restore-from', '/b.paxos'];
    expect(ok([...base, '--bootstrap-config', '{"epoch":1,"members":[0,1,2]}']).restoreFrom).toBe('/b.paxos');
    expect(issues(base)).toEqual([expect.stringMatching(/^--restore-from: needs --bootstrap-config/)]);
    expect(issues([...base, '--joining', '--bootstrap-config', '{"epoch":1,"members":[0,1,2]}'])).toEqual([expect.stringMatching(/^--restore-from: cannot be combined with --joining/)]);
    expect(issues([...base, '--bootstrap-config', '{"epoch":2,"members":[0,1,2],"prior":[0,1]}'])).toEqual([expect.stringMatching(/^--restore-from: .*"prior"/)]);
  });

  it('tells a lost disk from a first start: joining as a voter, or as a new server that already ran', () => {
    const start = (id: number, bootstrap: object, joining: boolean): boolean => lostDataAtStart(ok([
      '--id', String(id), '--data-dir', '/d', '--peer-template', 'p-{i}:7001', '--bootstrap-config', JSON.stringify(bootstrap), ...(joining ? ['--joining'] : []),
    ]));
    expect(start(1, { epoch: 1, members: [0, 1, 2] }, false)).toBe(false); // a brand-new quorum
    expect(start(1, { epoch: 1, members: [0, 1, 2] }, true)).toBe(true); // a member restarted empty
    const expanding = { epoch: 2, members: [0, 1, 2, 3, 4], prior: [0, 1, 2] };
    expect(start(2, expanding, true)).toBe(true); // an original member
    expect(start(3, expanding, true)).toBe(false); // a new server's first start
    expect(start(3, { ...expanding, started: [3] }, true)).toBe(true); // ... and after it ran
    expect(start(4, { ...expanding, started: [3] }, true)).toBe(false);
  });

  it('starts a new server unregistered only when asked to, and only on its first start', () => {
    const start = (id: number, bootstrap: object, joining: boolean): boolean => startsUnregistered(ok([
      '--id', String(id), '--data-dir', '/d', '--peer-template', 'p-{i}:7001', '--bootstrap-config', JSON.stringify(bootstrap), ...(joining ? ['--joining'] : []),
    ]));
    const expanding = { epoch: 2, members: [0, 1, 2, 3, 4], prior: [0, 1, 2] };
    expect(start(3, expanding, true)).toBe(false); // no "register": votes at once, as before
    expect(start(3, { ...expanding, register: true }, true)).toBe(true); // the operator's new server
    expect(start(3, { ...expanding, register: true, started: [3] }, true)).toBe(false); // a loss instead
    expect(start(2, { ...expanding, register: true }, true)).toBe(false); // an original member: a loss
    expect(start(1, { epoch: 1, members: [0, 1, 2], register: true }, false)).toBe(false); // a brand-new quorum
  });

  it('takes the id from the StatefulSet hostname and addresses from a template', () => {
    const c = ok(['--data-dir', '/d', '--peer-template', 'paxos-{i}.paxos-headless:7001', '--client-port', '7002'], { HOSTNAME: 'paxos-4' });
    expect(c.id).toBe(4);
    expect(peerAddress(c, 9)).toBe('paxos-9.paxos-headless:7001');
    expect(clientAddress(c, 9)).toBe('paxos-9.paxos-headless:7002');
  });

  it('reports every problem readably', () => {
    const found = issues(['--id=-1', '--peers', '0=a', '--heartbeat-ms', '2000', '--bootstrap-config', '{"epoch":0,"members":[1,1]}']);
    const text = found.join('\n');
    expect(text).toContain('--id');
    expect(text).toContain('--data-dir');
    expect(text).toContain('host:port');
    expect(text).toContain('--bootstrap-config');
    expect(issues(['--election-timeout-ms', 'soon', '--insecure'])).toEqual(['--election-timeout-ms: "soon" is not a number']);
    expect(issues(['--what'])[0]).toMatch(/Unknown option/);
  });

  it('requires heartbeats shorter than the election timeout', () => {
    const text = issues(['--id', '0', '--data-dir', '/d', '--peers', '0=a:1', '--heartbeat-ms', '900', '--election-timeout-ms', '800']).join('\n');
    expect(text).toContain('heartbeat-ms must be below election-timeout-ms');
  });

  describe('TLS', () => {
    const base = ['--id', '0', '--data-dir', '/d', '--peers', '0=a:1'];
    it('is required: without the files or --insecure the node does not start', () => {
      expect(issues(base).join('\n')).toContain('give --tls-ca, --tls-cert and --tls-key (or --insecure');
    });

    it('takes the three files from flags or environment, client auth required by default', () => {
      expect(ok([...base, '--tls-ca', 'ca', '--tls-cert', 'c', '--tls-key', 'k']).tls).toEqual({ caFile: 'ca', certFile: 'c', keyFile: 'k', clientAuth: 'required', reloadMs: 10_000 });
      expect(ok(base, { PAXOS_TLS_CA: 'ca', PAXOS_TLS_CERT: 'c', PAXOS_TLS_KEY: 'k', PAXOS_CLIENT_AUTH: 'None', PAXOS_TLS_RELOAD_MS: '500' }).tls)
        .toEqual({ caFile: 'ca', certFile: 'c', keyFile: 'k', clientAuth: 'none', reloadMs: 500 });
      expect(ok([...base, '--insecure']).tls).toBeUndefined();
      expect(ok(['--data-dir', '/d', '--peer-template', 'p-{i}:1', '--tls-ca', '/t/ca.crt', '--tls-cert', '/t/member-{i}.crt', '--tls-key', '/t/member-{i}.key'], { HOSTNAME: 'q-4' }).tls)
        .toMatchObject({ caFile: '/t/ca.crt', certFile: '/t/member-4.crt', keyFile: '/t/member-4.key' });
      expect(ok(base, { PAXOS_INSECURE: 'true' }).tls).toBeUndefined();
    });

    it('names what is missing or contradictory', () => {
      expect(issues([...base, '--tls-ca', 'ca']).join('\n')).toContain('missing: --tls-cert, --tls-key');
      expect(issues([...base, '--insecure', '--tls-ca', 'ca']).join('\n')).toContain('cannot be combined');
      expect(issues([...base, '--tls-ca', 'ca', '--tls-cert', 'c', '--tls-key', 'k', '--client-auth', 'maybe']).join('\n')).toContain('--client-auth: "maybe"');
      expect(issues([...base, '--tls-ca', 'ca', '--tls-cert', 'c', '--tls-key', 'k', '--tls-reload-ms', '5']).join('\n')).toContain('--tls-reload-ms');
    });
  });
});
