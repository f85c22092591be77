/** Invalid PaxosQuorums the API server must reject with a readable message. */
import type { E2eEnv } from './harness.js';

/** Each invalid `spec.replicas` and a fragment its rejection message must contain. */
export const INVALID_REPLICAS: readonly { value: unknown; expect: RegExp }[] = [
  { value: 0, expect: /spec\.replicas.*(should be greater than or equal to 1|between 1 and 15)/ },
  { value: -1, expect: /spec\.replicas.*(should be greater than or equal to 1|between 1 and 15)/ },
  { value: 'five', expect: /spec\.replicas.*must be of type integer/ },
  { value: 100, expect: /spec\.replicas.*(should be less than or equal to 15|between 1 and 15)/ },
];

export interface InvalidResult {
  value: unknown;
  ok: boolean;
  detail: string;
}

/** Applies each invalid resource (a fresh name, so no existing object is touched) and checks the rejection. */
export async function invalidReplicaChecks(env: E2eEnv): Promise<InvalidResult[]> {
  const out: InvalidResult[] = [];
  for (const { value, expect } of INVALID_REPLICAS) {
    const manifest = JSON.stringify({
      apiVersion: 'paxos.quorum.dev/v1alpha1',
      kind: 'PaxosQuorum',
      metadata: { name: 'invalid', namespace: 'default' },
      spec: { replicas: value },
    });
    try {
      await env.kubectl(['apply', '-f', '-'], { input: manifest });
      await env.kubectl(['delete', 'paxosquorum', 'invalid', '-n', 'default', '--wait=false']).catch(() => undefined);
      out.push({ value, ok: false, detail: 'accepted by the API server' });
    } catch (e) {
      const msg = (e as Error).message;
      out.push({ value, ok: expect.test(msg), detail: msg.trim() });
    }
  }
  return out;
}
