/**
 * Who may call what, decided from the caller's verified certificate (see identity.ts):
 *
 * - the peer stream: only a member, and only as itself (its `x-paxos-from` must be the id its
 *   certificate names);
 * - the admin API's changing calls (Convert, TransferLeadership, Finalize, Register, Snapshot):
 *   only the operator;
 * - Status, Kv and Health: anyone the TLS layer let in (with `--client-auth required`, a holder
 *   of any certificate of the quorum's CA).
 *
 * Without TLS (`--insecure`) nobody can be identified and everything is open: that is what the
 * opt-out means.
 */
import { describeCaller, identityOf, type CertificateNames } from './identity.js';

/** A call, as far as access checks look at it. */
export interface CallWithAuth {
  getAuthContext(): { readonly sslPeerCertificate?: CertificateNames | undefined } | null;
}

/** The node's access decisions; a string is the refusal's reason, undefined means allowed. */
export interface AccessPolicy {
  /** Whether callers are authenticated at all (false: --insecure). */
  readonly enforced: boolean;
  /** A changing admin call. */
  admin(call: CallWithAuth): string | undefined;
  /** A peer stream that claims to come from member `claimed`. */
  peer(call: CallWithAuth, claimed: number): string | undefined;
  /** The caller, in one line, for logs. */
  caller(call: CallWithAuth): string;
}

function peerCertificate(call: CallWithAuth): CertificateNames | undefined {
  return call.getAuthContext()?.sslPeerCertificate;
}

/** `--insecure`: nothing is checked. */
export const OPEN_ACCESS: AccessPolicy = {
  enforced: false,
  admin: () => undefined,
  peer: () => undefined,
  caller: () => 'unauthenticated (TLS off)',
};

/** The policy of a node with TLS on. */
export const CERTIFICATE_ACCESS: AccessPolicy = {
  enforced: true,
  admin(call) {
    const identity = identityOf(peerCertificate(call));
    return identity.kind === 'operator' ? undefined : 'the admin API is reserved for the operator\'s certificate (urn:paxos:operator)';
  },
  peer(call, claimed) {
    const identity = identityOf(peerCertificate(call));
    if (identity.kind !== 'member') return 'the peer port is reserved for member certificates (urn:paxos:member:N)';
    if (identity.id !== claimed) return `the stream claims to come from member ${claimed} but the certificate is member ${identity.id}'s`;
    return undefined;
  },
  caller: (call) => describeCaller(peerCertificate(call)),
};
