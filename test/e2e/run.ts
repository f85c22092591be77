/**
 * `npm run e2e [-- --json]`: the end-to-end scenario of e2e.test.ts in one go, without jest.
 * Starts a LocalCluster, installs the chart, applies the sample, writes continuously through
 * every scale step (SCALE_STEPS), checks invalid resources and the uninstall, prints a summary
 * (with --json: one JSON line, last) and writes test/e2e/results/latest.json. Exit 1 if a
 * check failed, 2 for bad flags.
 */
import { parseArgs } from 'node:util';
import { E2eEnv, NS, QUORUM, OPERATOR_NS, RELEASE, SCALE_STEPS, Writer, leftoversAfterUninstall, scaleStep, sleep, summarize, writeResults, RESULTS_FILE, type StepResult } from './harness.js';
import { invalidReplicaChecks } from './invalid.js';
import { badImageAndBack, rollingUpgrade } from './roll.js';

let json = false;
try {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { json: { type: 'boolean' } }, strict: true, allowPositionals: false });
  json = values.json ?? false;
} catch (e) {
  process.stderr.write(`e2e: ${(e as Error).message}\nusage: npm run e2e [-- --json]\n`);
  process.exit(2);
}

const t0 = Date.now();
const say = (m: string): void => {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${m}\n`);
};
const env = new E2eEnv();
env.log = say;
const steps: StepResult[] = [];
const problems: string[] = [];
const notes: string[] = [];
const extra: Record<string, unknown> = {};
const timings: Record<string, number> = {};
let writer: Writer | undefined;

const onSignal = (): void => {
  void (async () => {
    await writer?.stop();
    await env.stop();
    process.exit(130);
  })();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  say('starting the local cluster');
  await env.start();
  Object.assign(extra, env.runtimeInfo());
  say('helm install');
  await env.helmInstall();
  say('kubectl apply -f examples/quorum.yaml');
  const ta = Date.now();
  await env.applySample();
  await env.waitConverged(3);
  timings.available_ms = Date.now() - ta;
  timings.startup_to_available_ms = Date.now() - t0;
  say(`Available with 3 members after ${timings.available_ms} ms`);

  writer = new Writer(env.endpoints(3));
  writer.start();
  await sleep(3000);
  for (const s of SCALE_STEPS) {
    say(`step ${s.name}`);
    try {
      steps.push(await scaleStep(env, writer, s));
    } catch (e) {
      problems.push(`step ${s.name}: ${(e as Error).message}`);
      say(`step ${s.name} FAILED: ${(e as Error).message}`);
      break;
    }
  }
  if (problems.length === 0) {
    say('rolling upgrade: spec.image = the node image under a second tag');
    const image = await env.upgradeImage();
    const roll = await rollingUpgrade(env, writer, image);
    extra.rolling_upgrade = roll;
    say(`rolling upgrade ${JSON.stringify(roll)}`);
    if (roll.failed_ops !== 0 || roll.lost_writes !== 0 || !roll.linearizable) problems.push(`rolling upgrade: ${roll.failed_ops} failed, ${roll.lost_writes} lost, linearizable ${roll.linearizable}`);
    if (roll.leader_changes !== 1 || !roll.leader_last) problems.push(`rolling upgrade: ${roll.leader_changes} leader changes, order ${roll.order.join(',')} (leader was ${roll.leader_before})`);
    say('a tag that cannot run, then the good image back');
    const bad = await badImageAndBack(env, writer, image);
    extra.bad_image = bad;
    say(`bad image ${JSON.stringify(bad)}`);
    if (bad.pods_on_bad_image !== 1 || !bad.rolled_back || bad.failed_ops !== 0) problems.push(`bad image: ${JSON.stringify(bad)}`);
  }
  await writer.stop();
  if (writer.failures.length) say(`client failures: ${writer.failures.join(' | ')}`);
  writer.close();

  say('invalid resources');
  const invalid = await invalidReplicaChecks(env);
  extra.invalid_replicas = invalid.map((r) => ({ value: r.value, rejected_as_expected: r.ok, message: r.detail.split('\n').find((l) => l.includes('spec.replicas')) ?? r.detail }));
  for (const r of invalid) if (!r.ok) problems.push(`invalid replicas ${String(r.value)}: ${r.detail}`);

  say('uninstall');
  await env.kubectl(['delete', 'paxosquorum', QUORUM, '-n', NS, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  await env.helm(['uninstall', RELEASE, '-n', OPERATOR_NS, '--wait', '--timeout', '2m'], { timeoutMs: 130_000 });
  const left = await leftoversAfterUninstall(env);
  if (left.length) problems.push(`left after helm uninstall: ${left.join(', ')}`);
  notes.push(`the namespace ${OPERATOR_NS} and the CRD stay after helm uninstall (Helm deletes neither)`);
  const crd = await env.kubectl(['get', 'crd', 'paxosquorums.paxos.quorum.dev', '-o', 'name']).catch(() => '');
  if (!crd.trim()) problems.push('CRD gone after helm uninstall (Helm keeps CRDs from crds/, so it should stay)');
} catch (e) {
  problems.push((e as Error).message);
} finally {
  await writer?.stop().catch(() => undefined);
  await env.stop().catch((e: unknown) => problems.push(`stop: ${String(e)}`));
}

timings.total_ms = Date.now() - t0;
const summary = summarize(steps, { timings, problems, notes, steps_planned: SCALE_STEPS.length, ...extra });
writeResults(summary);
say(`results in ${RESULTS_FILE}`);
const ok = problems.length === 0 && steps.length === SCALE_STEPS.length && summary.failed_ops === 0 && summary.lost_writes === 0 && summary.linearizable;
if (!json) {
  for (const s of steps) say(`${s.name}: ${s.wall_ms} ms, stall ${s.max_stall_ms} ms, failed ${s.failed_ops}, refused attempts ${s.refusals} ${JSON.stringify(s.refusals_by_code)}, lost ${s.lost_writes}, ${s.writes_per_s} w/s${s.note ? ` (${s.note})` : ''}`);
  for (const n of notes) say(`note: ${n}`);
  for (const p of problems) say(`PROBLEM: ${p}`);
  say(ok ? 'e2e passed' : 'e2e FAILED');
}
const { steps: stepList, failed_ops, refusals, lost_writes, linearizable, max_stall_ms_transfer, max_stall_ms_election } = summary;
if (json) {
  const { runtime, nodes, images, rolling_upgrade, bad_image } = extra;
  process.stdout.write(`${JSON.stringify({ runtime, nodes, images, rolling_upgrade, bad_image, failed_ops, refusals, lost_writes, linearizable, max_stall_ms_transfer, max_stall_ms_election, steps: stepList })}\n`);
}
process.exit(ok ? 0 : 1);
