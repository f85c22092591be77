/**
 * Child processes that run in their own process group, so they (and anything they spawn) can be
 * stopped together without touching any other process on the machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/** Every group started by this module that has not been reaped yet. */
const live = new Set<ManagedProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: if the test process exits without calling stop(), kill our groups (only ours).
  process.on('exit', () => {
    for (const p of live) p.killNow();
  });
}

/**
 * Starts a tiny shell loop that SIGKILLs process group `pgid` once this Node process is gone.
 * It covers the cases the 'exit' hook cannot (SIGKILL, SIGTERM without a handler, crashes of
 * the runtime). It is stopped as soon as the group's leader exits normally.
 */
function startWatchdog(pgid: number): ChildProcess | undefined {
  try {
    const w = spawn(
      '/bin/sh',
      ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -KILL "-$2" 2>/dev/null', 'watchdog', String(process.pid), String(pgid)],
      { detached: true, stdio: 'ignore' },
    );
    w.on('error', () => undefined);
    w.unref();
    return w;
  } catch {
    return undefined;
  }
}

/** Options for {@link ManagedProcess.start}. */
export interface StartProcessOptions {
  /** Executable path. */
  readonly command: string;
  /** Arguments. */
  readonly args: readonly string[];
  /** File that receives stdout and stderr (appended). */
  readonly logFile: string;
  /** Working directory. */
  readonly cwd?: string;
  /** Environment (default: this process's environment). */
  readonly env?: NodeJS.ProcessEnv;
  /** Short name used in messages. */
  readonly name: string;
}

/** A child process that leads its own process group. */
export class ManagedProcess {
  /** Short name used in messages. */
  readonly name: string;
  /** Log file receiving stdout and stderr. */
  readonly logFile: string;
  /** Process id, which is also the process-group id. */
  readonly pid: number;
  private readonly child: ChildProcess;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;

  private constructor(name: string, logFile: string, child: ChildProcess) {
    this.name = name;
    this.logFile = logFile;
    this.child = child;
    if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve();
      });
    });
  }

  /** Starts a process in a new session/process group with output going to a log file. */
  static async start(opts: StartProcessOptions): Promise<ManagedProcess> {
    installExitHook();
    const fd = openSync(opts.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(opts.command, [...opts.args], {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        detached: true, // setsid(): the child leads a new process group
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (e) => reject(new Error(`${opts.name}: cannot start ${opts.command}: ${e.message}`)));
    });
    const p = new ManagedProcess(opts.name, opts.logFile, child);
    live.add(p);
    const watchdog = startWatchdog(p.pid);
    void p.exited.then(() => {
      // The leader is gone; make sure nothing it forked survives, then forget the group.
      p.signalGroup('SIGKILL');
      live.delete(p);
      if (watchdog?.pid !== undefined && watchdog.exitCode === null) watchdog.kill('SIGKILL');
    });
    return p;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Exit code/signal once exited. */
  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** Resolves when the process has exited. */
  waitExit(): Promise<void> {
    return this.exited;
  }

  /** Last `bytes` of the log file (for error messages). */
  logTail(bytes = 4000): string {
    try {
      const text = readFileSync(this.logFile, 'utf8');
      return text.slice(-bytes);
    } catch {
      return '';
    }
  }

  private signalGroup(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch {
      // ESRCH: the group is already empty.
    }
  }

  /** Sends SIGKILL to the group immediately (synchronous; for exit hooks). */
  killNow(): void {
    if (this.running || live.has(this)) this.signalGroup('SIGKILL');
  }

  /**
   * Stops the process group: SIGTERM, then SIGKILL after `graceMs`.
   * Only signals the group this object created.
   */
  /** SIGTERM, then SIGKILL after `graceMs`; resolves true when it had to kill. */
  async stop(graceMs = 10_000): Promise<boolean> {
    if (!this.running) {
      await this.exited;
      return false;
    }
    this.signalGroup('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    if (timer) clearTimeout(timer);
    if (timedOut) {
      this.signalGroup('SIGKILL');
      await this.exited;
    }
    return timedOut;
  }
}
