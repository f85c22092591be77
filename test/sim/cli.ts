/**
 * The simulator's command line: `npm run sim -- [flags]`.
 *
 *   --seeds N                 run seeds start..start+N-1 (default: 100 seeds)
 *   --start S                 first seed of --seeds (default 1)
 *   --seed S                  run one seed with a verbose trace
 *   --json                    print one JSON summary line last
 *   --unsafe-plain-majorities the core counts plain majorities of `members` (split brain expected)
 *   --split-brain             the workload that makes split brain likely (unsafe-style changes)
 *   --amnesia MODE            members lose their disks; `protected` (the node's rule plus the
 *                             planner's repair) must pass, `unprotected` is expected to fail
 *
 * Exit status: 0 when every seed passed, 1 on a violation, 2 on bad flags.
 */
import { parseFlags, USAGE } from './cli-flags.js';
import { describeFailure, hitDiskFault, runSeed, type RunResult } from './run.js';

async function main(argv: readonly string[]): Promise<number> {
  const flags = parseFlags(argv);
  if (typeof flags === 'string') {
    process.stderr.write(`${flags}\n${USAGE}\n`);
    return 2;
  }
  const seeds = flags.seed !== undefined ? [flags.seed] : Array.from({ length: flags.seeds }, (_, i) => flags.start + i);
  const verbose = flags.seed !== undefined ? (line: string): void => void process.stdout.write(`${line}\n`) : undefined;
  const started = Date.now();
  let violations = 0;
  let failedSeeds = 0;
  let reconfigurations = 0;
  let ops = 0;
  let diskFaults = 0;
  let reconfiguredSeeds = 0;
  let firstFailure: RunResult | undefined;
  for (const seed of seeds) {
    const result = await runSeed({
      seed, unsafePlainMajorities: flags.unsafe, splitBrain: flags.splitBrain, verbose,
      ...(flags.amnesia === undefined ? {} : { amnesia: flags.amnesia }),
    });
    reconfigurations += result.reconfigurations;
    if (result.reconfigurations > 0) reconfiguredSeeds++;
    if (hitDiskFault(result)) diskFaults++;
    ops += result.ops;
    if (result.violations.length > 0) {
      violations += result.violations.length;
      failedSeeds++;
      firstFailure ??= result;
      process.stdout.write(`${describeFailure(result)}\n`);
    } else if (verbose !== undefined) {
      process.stdout.write(`seed ${seed} passed: ${result.reconfigurations}/${result.reconfigurationsStarted} reconfigurations, ${result.ops} operations, ${result.ticks} ticks\n`);
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const perMinute = Math.round((seeds.length * 60_000) / Math.max(1, Date.now() - started));
  const summary = `${seeds.length} seeds, ${failedSeeds} failed (${violations} violations), ${reconfigurations} reconfigurations (${reconfiguredSeeds} seeds), ${diskFaults} seeds with a disk fault, ${ops} operations in ${seconds} s (${perMinute} seeds/min)`;
  if (flags.json) {
    process.stderr.write(`${summary}\n`);
    process.stdout.write(`${JSON.stringify({ seeds: seeds.length, violations, reconfigurations, reconfigured_seeds: reconfiguredSeeds, disk_faults: diskFaults, ops, seeds_per_minute: perMinute })}\n`);
  } else {
    process.stdout.write(`${summary}\n`);
    if (firstFailure !== undefined) process.stdout.write(`reproduce: npm run sim -- --seed ${firstFailure.seed}${flags.unsafe ? ' --unsafe-plain-majorities' : ''}${flags.splitBrain ? ' --split-brain' : ''}${flags.amnesia === undefined ? '' : ` --amnesia ${flags.amnesia}`}\n`);
  }
  return failedSeeds === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
