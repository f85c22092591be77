/**
 * Certificates for tests, issued in-process by the operator's own PKI code
 * (operator/src/tls/pki.ts) and written to a directory as PEM files, the way the operator's
 * Secrets are mounted into pods: `ca.crt`, and `tls.crt`/`tls.key` per holder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { tlsCredentials, type ServerIdentityCheck } from '../../node/src/client/index.js';
import { createCa, issueClient, issueMember, issueOperator, type KeyPair, type Validity } from '../../operator/src/tls/pki.js';

/** Paths of one holder's files. */
export interface HolderFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Validity from one minute ago for `days`. */
export function validFor(days: number, now = Date.now()): Validity {
  return { notBefore: new Date(now - 60_000), notAfter: new Date(now + days * 86_400_000) };
}

/** A test CA with its holders' files under `dir`. */
export class TestPki {
  private constructor(
    readonly dir: string,
    /** The CA that issues from now on (see `issueFrom`). */
    public ca: KeyPair,
    private readonly names: { readonly dns: readonly string[]; readonly ips: readonly string[] },
  ) {}

  /** A fresh CA; member certificates name `host` (an IP or DNS name) and `localhost`. */
  static create(dir: string, host: string, label = 'test'): TestPki {
    fs.mkdirSync(dir, { recursive: true });
    const ca = createCa(`${label} CA`, validFor(365));
    const ip = /^\d+\.\d+\.\d+\.\d+$/.test(host);
    const pki = new TestPki(dir, ca, { dns: ['localhost', ...(ip ? [] : [host])], ips: ip ? [host] : [] });
    fs.writeFileSync(pki.caFile, ca.certPem);
    return pki;
  }

  get caFile(): string {
    return path.join(this.dir, 'ca.crt');
  }

  /** Issues later certificates from `ca` (a CA rotation); the trust bundle is left as it is. */
  issueFrom(ca: KeyPair): void {
    this.ca = ca;
  }

  /** Writes the trust bundle (e.g. old and new CA during a rotation). */
  writeTrust(pems: readonly string[]): void {
    fs.writeFileSync(`${this.caFile}.tmp`, pems.join(''));
    fs.renameSync(`${this.caFile}.tmp`, this.caFile);
  }

  /** Issues (or re-issues: a new key and serial) member `id`'s certificate into `member-<id>/`. */
  member(id: number, validity: Validity = validFor(365)): HolderFiles {
    return this.write(`member-${id}`, issueMember(this.ca, id, `member-${id}`, this.names, validity));
  }

  operator(validity: Validity = validFor(365)): HolderFiles {
    return this.write('operator', issueOperator(this.ca, validity));
  }

  client(name: string, validity: Validity = validFor(365)): HolderFiles {
    return this.write(`client-${name}`, issueClient(this.ca, name, validity));
  }

  /** Files written for `holder` (as `member`, `operator` or `client` last wrote them). */
  files(holder: string): HolderFiles {
    const d = path.join(this.dir, holder);
    return { ca: this.caFile, cert: path.join(d, 'tls.crt'), key: path.join(d, 'tls.key') };
  }

  /** Channel credentials for a holder's files. */
  credentials(files: HolderFiles, serverIdentity: ServerIdentityCheck = 'hostname'): grpc.ChannelCredentials {
    return tlsCredentials({ ca: fs.readFileSync(files.ca), cert: fs.readFileSync(files.cert), key: fs.readFileSync(files.key), serverIdentity });
  }

  /** The node flags for member `id`. */
  static nodeFlags(files: HolderFiles): string[] {
    return ['--tls-ca', files.ca, '--tls-cert', files.cert, '--tls-key', files.key];
  }

  private write(holder: string, pair: KeyPair): HolderFiles {
    const d = path.join(this.dir, holder);
    fs.mkdirSync(d, { recursive: true });
    // Write then rename, as a Secret update swaps files whole: a poll never sees half a file.
    for (const [name, pem] of [['tls.crt', pair.certPem], ['tls.key', pair.keyPem]] as const) {
      fs.writeFileSync(path.join(d, `${name}.tmp`), pem, { mode: 0o600 });
      fs.renameSync(path.join(d, `${name}.tmp`), path.join(d, name));
    }
    return this.files(holder);
  }
}
