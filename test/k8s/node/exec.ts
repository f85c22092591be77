/**
 * Running host commands for the real-node cluster: one promise-returning helper with a deadline
 * and an error that carries the command's stderr, and a check that names the Debian package of
 * a missing command.
 */
import { execFile, spawnSync } from 'node:child_process';

/** A host command that exited non-zero, timed out or could not start. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
    cause?: unknown,
  ) {
    super(`${command} failed: ${stderr.trim().split('\n').slice(-30).join('\n') || String(cause)}`, { cause });
    this.name = 'CommandError';
  }
}

/** Options of {@link run}. */
export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Deadline; default two minutes. */
  readonly timeoutMs?: number;
  readonly input?: string;
}

/** Runs a command to completion and resolves with its stdout. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      [...args],
      { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new CommandError(`${cmd} ${args.join(' ')}`, String(stderr), err));
        else resolve(String(stdout));
      },
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input);
  });
}

/** Like {@link run} but resolves with the exit status instead of rejecting. */
export function tryRun(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return run(cmd, args, opts).then(
    (stdout) => ({ ok: true, stdout, stderr: '' }),
    (e: unknown) => ({ ok: false, stdout: '', stderr: e instanceof CommandError ? e.stderr : String(e) }),
  );
}

/** A prerequisite command, and the Debian package that provides it. */
export interface HostCommand {
  readonly command: string;
  readonly debianPackage: string;
}

/** A host prerequisite is missing; the message names what to install. */
export class PrerequisiteMissingError extends Error {
  constructor(readonly missing: readonly HostCommand[]) {
    const pkgs = [...new Set(missing.map((m) => m.debianPackage))];
    super(
      `missing ${missing.map((m) => m.command).join(', ')}: install with \`apt-get install -y ${pkgs.join(' ')}\` ` +
        '(.ci/run does this on a fresh machine)',
    );
    this.name = 'PrerequisiteMissingError';
  }
}

/** Throws {@link PrerequisiteMissingError} naming every command of `needed` not on PATH. */
export function requireCommands(needed: readonly HostCommand[]): void {
  const missing = needed.filter((n) => spawnSync('sh', ['-c', `command -v ${n.command}`], { stdio: 'ignore' }).status !== 0);
  if (missing.length > 0) throw new PrerequisiteMissingError(missing);
}
