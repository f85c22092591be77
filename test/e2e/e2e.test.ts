/**
 * End to end: the chart on a real control plane (etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler built from Go) and three real nodes (containerd + kubelet) running the operator
 * and node images built from this repository's Dockerfiles (ADR 0013). One cluster for the whole file. Needs `npm run tools:build` and root; fails (never
 * skips) with a clear message otherwise. `npm run e2e` runs the same scenario without jest.
 *
 * Asserted: Available with 3 members; for every scale step under continuous writes 0 failed
 * client operations, 0 lost writes, a linearizable history, members = every node's own
 * configuration; invalid replicas rejected with a readable message; nothing of the release or
 * the quorum left after `helm uninstall` (the CRD stays: Helm keeps CRDs). Stalls are reported
 * (test/e2e/results/latest.json) and only bounded generously (< 10 s).
 */
import {
  E2eEnv,
  NS,
  OPERATOR_NS,
  QUORUM,
  RELEASE,
  SCALE_STEPS,
  Writer,
  leftoversAfterUninstall,
  requireE2eTools,
  scaleStep,
  sleep,
  summarize,
  writeResults,
  type StepResult,
} from './harness.js';
import { invalidReplicaChecks } from './invalid.js';
import { badImageAndBack, rollingUpgrade } from './roll.js';

const env = new E2eEnv();
const steps: StepResult[] = [];
const notes: string[] = [];
let writer: Writer | undefined;
let startError: Error | undefined;

beforeAll(async () => {
  // Throws ToolsMissingError ("run `npm run tools:build`") or a root error: the file fails.
  requireE2eTools();
  try {
    await env.start();
  } catch (e) {
    startError = e as Error;
    throw e;
  }
}, 600_000);

afterAll(async () => {
  await writer?.stop().catch(() => undefined);
  writer?.close();
  if (steps.length) writeResults(summarize(steps, { notes, source: 'jest' }));
  await env.stop();
}, 120_000);

describe('paxos-operator end to end', () => {
  it('installs with helm and brings the sample quorum to Available with 3 members', async () => {
    if (startError) throw startError;
    await env.helmInstall();
    const deploy = JSON.parse(await env.kubectl(['get', 'deployment', '-n', OPERATOR_NS, RELEASE, '-o', 'json'])) as {
      spec: { template: { spec: { serviceAccountName: string } } };
      status: { readyReplicas?: number };
    };
    expect(deploy.status.readyReplicas).toBeGreaterThanOrEqual(1);
    expect(deploy.spec.template.spec.serviceAccountName).toBe(RELEASE);
    await env.applySample();
    await env.waitConverged(3, 180_000);
    const pq = await env.pq();
    expect(pq.status?.members).toHaveLength(3);
    expect(pq.status?.conditions?.find((c) => c.type === 'Available')?.status).toBe('True');
  }, 300_000);

  describe('scale steps under continuous writes', () => {
    beforeAll(async () => {
      writer = new Writer(env.endpoints(3));
      writer.start();
      await sleep(3000);
    });

    for (const spec of SCALE_STEPS) {
      it(`${spec.name}: converges, no failed or lost writes, linearizable`, async () => {
        if (!writer) throw new Error('writer not started');
        const r = await scaleStep(env, writer, spec);
        steps.push(r);
        process.stderr.write(`e2e step ${JSON.stringify(r)}\n`);
        expect({ step: r.name, failed_ops: r.failed_ops, failures: writer.failures.slice(0, 3) }).toEqual({ step: r.name, failed_ops: 0, failures: [] });
        expect(r.lost_writes).toBe(0);
        expect(r.linearizable).toBe(true);
        expect(r.max_stall_ms).toBeLessThan(10_000);
      }, 360_000);
    }

    it('rolling upgrade to a second tag: one pod at a time, the leader last, one change of leader, no failed writes', async () => {
      if (!writer) throw new Error('writer not started');
      const image = await env.upgradeImage();
      const r = await rollingUpgrade(env, writer, image);
      notes.push(`rolling upgrade ${JSON.stringify(r)}`);
      process.stderr.write(`e2e rolling upgrade ${JSON.stringify(r)}\n`);
      expect({ failed: r.failed_ops, lost: r.lost_writes, linearizable: r.linearizable }).toEqual({ failed: 0, lost: 0, linearizable: true });
      expect({ leader_changes: r.leader_changes, leader_last: r.leader_last, order: r.order }).toEqual({ leader_changes: 1, leader_last: true, order: r.order });
      expect(new Set(r.order).size).toBe(r.order.length);
      // A tag that cannot run stops the roll after one pod; the good image back rolls it back.
      const bad = await badImageAndBack(env, writer, image);
      process.stderr.write(`e2e bad image ${JSON.stringify(bad)}\n`);
      expect({ pods_on_bad_image: bad.pods_on_bad_image, rolled_back: bad.rolled_back, failed: bad.failed_ops }).toEqual({ pods_on_bad_image: 1, rolled_back: true, failed: 0 });
    }, 900_000);

    afterAll(async () => {
      await writer?.stop();
      const s = summarize(steps, { notes, source: 'jest' });
      process.stderr.write(`e2e summary ${JSON.stringify({ failed_ops: s.failed_ops, refusals: s.refusals, lost_writes: s.lost_writes, linearizable: s.linearizable, max_stall_ms_transfer: s.max_stall_ms_transfer, max_stall_ms_election: s.max_stall_ms_election })}\n`);
    }, 60_000);
  });

  it('rejects invalid replicas (0, -1, "five", 100) with a readable message', async () => {
    if (startError) throw startError;
    const results = await invalidReplicaChecks(env);
    for (const r of results) {
      expect({ value: r.value, ok: r.ok, detail: r.detail }).toEqual({ value: r.value, ok: true, detail: r.detail });
    }
  }, 60_000);

  it('helm uninstall (after deleting the PaxosQuorum) leaves nothing of the release, the quorum or the leader-election Lease; the CRD stays', async () => {
    if (startError) throw startError;
    await env.kubectl(['delete', 'paxosquorum', QUORUM, '-n', NS, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    await env.helm(['uninstall', RELEASE, '-n', OPERATOR_NS, '--wait', '--timeout', '2m'], { timeoutMs: 130_000 });
    // The Lease is the operator's, not the chart's: its owner reference to the operator's
    // Deployment lets the garbage collector remove it.
    expect(await leftoversAfterUninstall(env)).toEqual([]);
    // Helm installs CRDs from crds/ but never deletes them (that would delete every PaxosQuorum).
    expect((await env.kubectl(['get', 'crd', 'paxosquorums.paxos.quorum.dev', '-o', 'name'])).trim()).toBe('customresourcedefinition.apiextensions.k8s.io/paxosquorums.paxos.quorum.dev');
  }, 300_000);
});
