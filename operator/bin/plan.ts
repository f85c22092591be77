/**
 * Prints the planner's whole plan for a change n -> m, or runs the model checker over every change.
 *
 *   npm run plan -- --from 3 --to 5 [--mode Transfer|Election] [--leader 0]
 *   npm run plan -- --check-all [--max 9]
 *
 * Exit codes: 0 ok, 1 the check failed (or the planner got stuck), 2 bad flags.
 */
import { parseArgs } from 'node:util';
import { checkAll } from '../src/plan/check.js';
import { formatMembers, ordinals } from '../src/plan/config.js';
import { LIVENESS_EXEMPTIONS } from '../src/plan/invariants.js';
import { planSteps } from '../src/plan/plan-steps.js';
import type { ReconfigurationMode } from '../src/plan/types.js';

const usage = `usage: npm run plan -- --from N --to M [--mode Transfer|Election] [--leader L]
       npm run plan -- --check-all [--max N]`;

/** Quorum sizes the CRD allows. */
const maxReplicas = 15;
/** The checker enumerates node sets; beyond 9 nodes a full run takes minutes. */
const maxCheckedSize = 9;

class UsageError extends Error {}

function integer(name: string, value: string | undefined, min: number, max: number): number {
  const parsed = Number(value);
  if (value === undefined || !Number.isInteger(parsed) || parsed < min || parsed > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${value ?? 'nothing'}`);
  }
  return parsed;
}

function printPlan(from: number, to: number, mode: ReconfigurationMode, leader: number): number {
  const run = planSteps(from, to, mode, leader);
  console.log(`${from} -> ${to}, ${mode} mode, leader pod ${leader}: from ${formatMembers(ordinals(from))} to ${formatMembers(ordinals(to))}`);
  run.steps.forEach(({ text }, i) => console.log(`${i + 1}. ${text}`));
  if (run.stuck === undefined) return 0;
  console.error(`the planner got stuck: ${run.stuck}`);
  return 1;
}

function printCheck(max: number): number {
  const started = process.hrtime.bigint();
  const summary = checkAll(max);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`checked ${summary.cases} changes n -> m with n, m in 1..${max} (both modes, every initial leader), `
    + `${summary.retargets} target changes midway, ${summary.states} distinct states, in ${seconds.toFixed(1)} s`);
  const { failure } = summary;
  if (failure === undefined) {
    console.log('every state: any two usable quorums intersect; a leader is electable with any one node paused, except:');
    console.log(LIVENESS_EXEMPTIONS.replace(/^/gm, '  '));
    return 0;
  }
  console.error(`FAILED: ${failure.case}`);
  failure.trail.forEach((line, i) => console.error(`  ${i + 1}. ${line}`));
  console.error(`  -> ${failure.problem}`);
  return 1;
}

function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      from: { type: 'string' }, to: { type: 'string' }, mode: { type: 'string' }, leader: { type: 'string' },
      'check-all': { type: 'boolean' }, max: { type: 'string' }, help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  if (values['check-all'] === true) {
    if (values.from !== undefined || values.to !== undefined) throw new UsageError('--check-all takes no --from or --to');
    return printCheck(integer('max', values.max ?? String(maxCheckedSize), 1, maxCheckedSize));
  }
  const from = integer('from', values.from, 1, maxReplicas);
  const to = integer('to', values.to, 1, maxReplicas);
  const mode = values.mode ?? 'Transfer';
  if (mode !== 'Transfer' && mode !== 'Election') throw new UsageError(`--mode must be Transfer or Election, got ${mode}`);
  const leader = integer('leader', values.leader ?? '0', 0, from - 1);
  return printPlan(from, to, mode, leader);
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (error) {
  // parseArgs reports unknown or malformed flags with a TypeError carrying an ERR_PARSE_ARGS_* code.
  const badFlags = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
  if (!badFlags) throw error;
  console.error(`${(error as Error).message}\n${usage}`);
  process.exitCode = 2;
}
