import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { createCa, issueClient, issueMember, issueOperator } from '../../../operator/src/tls/pki.js';
import { describeCaller, identityOf } from './identity.js';
import { CertificateSource, checkTlsMaterial, readTlsFiles } from './tls.js';

const validity = { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) };
const ca = createCa('unit CA', validity);

describe('identity', () => {
  it('reads exactly one paxos URI SAN', () => {
    expect(identityOf({ subjectaltname: 'DNS:q-0.q-peers, URI:urn:paxos:member:3, IP Address:10.0.0.1' })).toEqual({ kind: 'member', id: 3 });
    expect(identityOf({ subjectaltname: 'URI:urn:paxos:operator' })).toEqual({ kind: 'operator' });
    expect(identityOf({ subjectaltname: 'URI:urn:paxos:client:app' })).toEqual({ kind: 'client', name: 'app' });
    expect(identityOf({ subjectaltname: 'URI:urn:paxos:operator, URI:urn:paxos:member:1' })).toEqual({ kind: 'unknown' });
    expect(identityOf({ subjectaltname: 'URI:urn:paxos:member:1x' })).toEqual({ kind: 'unknown' });
    expect(identityOf({ subjectaltname: 'DNS:operator' })).toEqual({ kind: 'unknown' });
    expect(identityOf(undefined)).toEqual({ kind: 'anonymous' });
    expect(describeCaller({ subjectaltname: 'URI:urn:paxos:client:app', subject: { CN: 'app' }, serialNumber: 'AB' })).toBe('client app (CN=app, serial AB)');
  });

  it('matches what the PKI issues', () => {
    const pem = (p: { certPem: string; keyPem: string }) => checkTlsMaterial({ ca: Buffer.from(ca.certPem), cert: Buffer.from(p.certPem), key: Buffer.from(p.keyPem) }).identity;
    expect(pem(issueMember(ca, 2, 'q-2', { dns: ['q-2.q-peers'] }, validity))).toEqual({ kind: 'member', id: 2 });
    expect(pem(issueOperator(ca, validity))).toEqual({ kind: 'operator' });
    expect(pem(issueClient(ca, 'app', validity))).toEqual({ kind: 'client', name: 'app' });
  });
});

describe('CertificateSource', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-unit-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (pair: { certPem: string; keyPem: string }): void => {
    fs.writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
    fs.writeFileSync(path.join(dir, 'tls.crt'), pair.certPem);
    fs.writeFileSync(path.join(dir, 'tls.key'), pair.keyPem);
  };
  const files = () => ({ caFile: path.join(dir, 'ca.crt'), certFile: path.join(dir, 'tls.crt'), keyFile: path.join(dir, 'tls.key') });

  it('swaps in a renewed certificate and keeps the last good one when the files are broken', async () => {
    write(issueMember(ca, 0, 'q-0', {}, validity));
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const source = CertificateSource.fromFiles(files(), { reloadMs: 100, logger });
    try {
      const first = source.current.cert?.toString();
      const seen: string[] = [];
      source.addIdentityCertificateListener((u) => seen.push(u?.certificate.toString() ?? 'null'));
      await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual([first]); // told at once (asynchronously) of the current material
      fs.writeFileSync(path.join(dir, 'tls.key'), 'not a key');
      await new Promise((r) => setTimeout(r, 350));
      expect(source.current.cert?.toString()).toBe(first);
      expect(lines.join('')).toContain('new TLS files rejected');
      const renewed = issueMember(ca, 0, 'q-0', {}, validity);
      write(renewed);
      await new Promise((r) => setTimeout(r, 350));
      expect(source.current.cert?.toString()).toBe(renewed.certPem);
      expect(seen.at(-1)).toBe(renewed.certPem);
      expect(lines.join('')).toContain('reloaded TLS certificates');
    } finally {
      source.close();
    }
  });

  it('refuses unusable files with one line naming the file', () => {
    write(issueMember(ca, 0, 'q-0', {}, validity));
    expect(() => readTlsFiles({ ...files(), caFile: path.join(dir, 'nope') })).toThrow(`cannot read CA file ${path.join(dir, 'nope')}: no such file`);
    fs.writeFileSync(path.join(dir, 'tls.key'), issueOperator(ca, validity).keyPem);
    expect(() => readTlsFiles(files())).toThrow(/does not belong to the certificate/);
    write(issueMember(ca, 0, 'q-0', {}, { notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 2 * 86_400_000) }));
    expect(() => readTlsFiles(files())).toThrow(/is not valid before/);
    fs.writeFileSync(path.join(dir, 'ca.crt'), 'garbage');
    expect(() => readTlsFiles(files())).toThrow(/holds no PEM certificate/);
  });
});
