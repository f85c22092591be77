/**
 * Opt-in latency tracing of the write path, for `bench/trace.ts`. Off unless the environment
 * names a directory in `PAXOS_TRACE_DIR`; then every `trace(stage, key)` records a monotonic
 * timestamp (CLOCK_MONOTONIC via `process.hrtime`, comparable across processes of one machine)
 * and the process writes them to `<dir>/trace-<pid>.txt` when it exits. When off, a call costs
 * one branch.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.PAXOS_TRACE_DIR;

/** True when tracing is on in this process. */
export const tracing = dir !== undefined && dir !== '';

const events: string[] = [];

/** Records that `stage` happened now for `key` (a slot, a session/seq, a peer). */
export function trace(stage: string, key: string | number): void {
  if (!tracing) return;
  events.push(`${process.hrtime.bigint()} ${stage} ${key}`);
}

if (tracing) {
  process.on('exit', () => {
    try {
      writeFileSync(join(dir as string, `trace-${process.pid}.txt`), `${events.join('\n')}\n`);
    } catch {
      /* the directory is gone (the tracing script removed it): nothing to keep */
    }
  });
}

/** The events recorded so far in this process, as `<ns> <stage> <key>` lines. */
export function traceEvents(): readonly string[] {
  return events;
}
