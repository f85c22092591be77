/**
 * `npm start` as a newcomer runs it: it prints that the sample quorum is Available and the
 * usage lines, and Ctrl-C (SIGINT) stops everything and leaves the machine as it was
 * (iptables rules, the sysctls the nodes change, network links).
 *
 * Needs root, the Debian packages that .ci/run installs and `npm run tools:build`.
 */
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../cluster/tools.js';
import { diffHost, snapshotHost } from './host-state.js';

describe('npm start', () => {
  it('prints Available and the usage lines; Ctrl-C leaves the host as it was', async () => {
    const before = await snapshotHost();
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--timeout', '400'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOCAL_CLUSTER_LOG: 'warn' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 900_000;
    while (!out.includes('Ctrl-C stops everything')) {
      if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${out.slice(-4000)}`);
      if (Date.now() > deadline) {
        child.kill('SIGINT');
        await exited;
        throw new Error(`npm start printed no usage within 15 min:\n${out.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(out).toMatch(/paxosquorum\/demo is Available/);
    expect(out).toContain('kubectl scale paxosquorum/demo --replicas=5');
    expect(out).toMatch(/image docker\.io\/paxosquorum\/node:\S+ sha256:[0-9a-f]{64}/);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toContain('iptables, sysctls and links are as before');
    expect(diffHost(before, await snapshotHost())).toEqual([]);
  }, 1_200_000);
});
