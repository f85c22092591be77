import { X509Certificate } from 'node:crypto';
import { jest } from '@jest/globals';
import { checkTlsMaterial } from '../../../node/src/io/tls.js';
import { CA_OVERLAP_MS, CA_VALIDITY_DAYS, TLS_KEYS, desiredTls, type CurrentTls, type DesiredTls, type TlsSettings } from './secrets.js';

jest.setTimeout(120_000);

const DAY = 86_400_000;
const settings: TlsSettings = { enabled: true, clientAuth: 'Required', certificateValidityDays: 365, renewBeforeDays: 30 };
const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(T0 + ms);
const run = (current: CurrentTls, now: Date, members = 3): Promise<DesiredTls> => desiredTls({ name: 'q', namespace: 'ns', members, settings, now, current });
const state = (d: DesiredTls): CurrentTls => ({ ca: d.ca, members: d.members, operator: d.operator, client: d.client });
const serial = (pem: string | undefined): string => new X509Certificate(pem ?? '').serialNumber;
const cas = (bundle: string | undefined): number => (bundle ?? '').split('BEGIN CERTIFICATE').length - 1;

describe('desiredTls', () => {
  let fresh: DesiredTls;
  beforeAll(async () => {
    fresh = await run({}, at(0));
  });

  it('creates a CA and a certificate per member, for the operator and a client, that check out', () => {
    expect([...fresh.changed].sort()).toEqual(['ca', 'client', 'members', 'operator']);
    const m1 = checkTlsMaterial({ ca: Buffer.from(fresh.members[TLS_KEYS.bundle] ?? ''), cert: Buffer.from(fresh.members[TLS_KEYS.memberCert(1)] ?? ''), key: Buffer.from(fresh.members[TLS_KEYS.memberKey(1)] ?? '') }, undefined, at(DAY));
    expect(m1.identity).toEqual({ kind: 'member', id: 1 });
    const san = new X509Certificate(fresh.members[TLS_KEYS.memberCert(1)] ?? '').subjectAltName;
    expect(san).toContain('DNS:q-1.q-peers.ns.svc');
    expect(san).toContain('DNS:q.ns.svc.cluster.local');
    const op = checkTlsMaterial({ ca: Buffer.from(fresh.operator[TLS_KEYS.bundle] ?? ''), cert: Buffer.from(fresh.operator[TLS_KEYS.cert] ?? ''), key: Buffer.from(fresh.operator[TLS_KEYS.key] ?? '') }, undefined, at(DAY));
    expect(op.identity).toEqual({ kind: 'operator' });
    expect(fresh.notAfter.getTime()).toBe(at(365 * DAY).getTime());
  });

  it('changes nothing on the next pass, adds a member when the quorum grows', async () => {
    const again = await run(state(fresh), at(DAY));
    expect(again.changed.size).toBe(0);
    const grown = await run(state(fresh), at(DAY), 5);
    expect([...grown.changed]).toEqual(['members']);
    expect(grown.members[TLS_KEYS.memberCert(0)]).toBe(fresh.members[TLS_KEYS.memberCert(0)]);
    expect(grown.members[TLS_KEYS.memberCert(4)]).toBeDefined();
  });

  it('renews a leaf renewBeforeDays before its expiry, not earlier', async () => {
    expect((await run(state(fresh), at(334 * DAY))).changed.size).toBe(0);
    const renewed = await run(state(fresh), at(336 * DAY));
    expect([...renewed.changed].sort()).toEqual(['client', 'members', 'operator']);
    expect(serial(renewed.members[TLS_KEYS.memberCert(0)])).not.toBe(serial(fresh.members[TLS_KEYS.memberCert(0)]));
    expect(renewed.ca).toEqual(fresh.ca);
    expect(renewed.notes.join(' ')).toContain('renewed the member 0 certificate');
  });

  it('rotates the CA by overlap: trust both, then re-issue from the new one, then drop the old', async () => {
    // Leaves renewed late in the CA's life, so that only the CA is due.
    const caExpiry = T0 + CA_VALIDITY_DAYS * DAY;
    const late = await run({ ca: fresh.ca }, new Date(caExpiry - 100 * DAY));
    const start = new Date(caExpiry - 29 * DAY);
    const a = await run(state(late), start);
    expect(a.changed.has('ca')).toBe(true);
    expect(cas(a.members[TLS_KEYS.bundle])).toBe(2);
    expect(a.members[TLS_KEYS.memberCert(0)]).toBe(late.members[TLS_KEYS.memberCert(0)]); // phase A: leaves stay
    const b = await run(state(a), new Date(start.getTime() + CA_OVERLAP_MS));
    expect(cas(b.members[TLS_KEYS.bundle])).toBe(2);
    expect(b.members[TLS_KEYS.memberCert(0)]).not.toBe(late.members[TLS_KEYS.memberCert(0)]); // phase B: from the new CA
    const newCa = b.ca[TLS_KEYS.bundle] ?? '';
    expect(checkTlsMaterial({ ca: Buffer.from(newCa), cert: Buffer.from(b.members[TLS_KEYS.memberCert(0)] ?? ''), key: Buffer.from(b.members[TLS_KEYS.memberKey(0)] ?? '') }, undefined, new Date(start.getTime() + CA_OVERLAP_MS)).identity).toEqual({ kind: 'member', id: 0 });
    const c = await run(state(b), new Date(start.getTime() + 2 * CA_OVERLAP_MS));
    expect(cas(c.members[TLS_KEYS.bundle])).toBe(1);
    expect(c.ca[TLS_KEYS.previousCa]).toBeUndefined();
    expect(c.members[TLS_KEYS.memberCert(0)]).toBe(b.members[TLS_KEYS.memberCert(0)]);
    expect(c.notes.join(' ')).toContain('CA rotation complete');
  });
});
