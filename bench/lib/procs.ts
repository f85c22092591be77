/**
 * Child processes the benchmark starts (nodes, etcd members, the echo server, the load
 * generator), with cleanup on normal exit, error, Ctrl-C and SIGTERM.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<number | string>;
}

/** Starts and tracks child processes; `stopAll` ends every one still running. */
export class ProcessGroup {
  private readonly procs: Managed[] = [];
  private handlersInstalled = false;
  /** Set once SIGINT/SIGTERM/SIGHUP arrived. */
  interrupted = false;
  /** Runs after the children are gone on an interrupt, before exiting (e.g. remove temp dirs). */
  onInterrupt: () => void = () => undefined;

  /** Spawns `cmd args`, stdout and stderr appended to `logFile`. */
  spawn(name: string, cmd: string, args: readonly string[], logFile: string, opts: SpawnOptions = {}): Managed {
    this.installHandlers();
    const fd = openSync(logFile, 'a');
    const child = spawn(cmd, [...args], { stdio: ['ignore', fd, fd], ...opts });
    closeSync(fd);
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
      child.once('error', (err) => resolve(`spawn error: ${err.message}`));
    });
    const m: Managed = { name, child, logFile, exited };
    this.procs.push(m);
    return m;
  }

  /** Tracks a process spawned elsewhere (e.g. with piped stdout). */
  track(name: string, child: ChildProcess, logFile = ''): Managed {
    this.installHandlers();
    const exited = new Promise<number | string>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode ?? child.signalCode ?? -1);
      child.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
    });
    const m: Managed = { name, child, logFile, exited };
    this.procs.push(m);
    return m;
  }

  /** SIGTERM everything still running, SIGKILL what is left after `graceMs`. */
  async stopAll(graceMs = 4000): Promise<void> {
    const alive = this.procs.filter((p) => p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined);
    for (const p of alive) p.child.kill('SIGTERM');
    await Promise.all(
      alive.map(async (p) => {
        const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
        await p.exited;
        clearTimeout(timer);
      }),
    );
  }

  /** Synchronous last resort (process 'exit' handler): SIGKILL whatever still runs. */
  killAllNow(): void {
    for (const p of this.procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        try {
          p.child.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  }

  private installHandlers(): void {
    if (this.handlersInstalled) return;
    this.handlersInstalled = true;
    process.once('exit', () => this.killAllNow());
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        this.interrupted = true;
        process.stderr.write(`\nbench: ${sig}, stopping everything it started...\n`);
        void this.stopAll(2000).finally(() => {
          try {
            this.onInterrupt();
          } finally {
            process.exit(130);
          }
        });
      });
    }
  }
}

/** `count` distinct free TCP ports on 127.0.0.1 (held open together, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Resident set size of `pid` in MB (VmRSS from /proc), or null when it is gone. */
export function rssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * User + system CPU seconds of `pid` so far (fields 14 and 15 of /proc/PID/stat, in clock ticks
 * of 100 Hz, Linux's USER_HZ on every architecture Node supports), or null when it is gone.
 */
export function cpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** The last `lines` lines of a log file, for error messages. */
export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
