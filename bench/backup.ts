/**
 * `tsx bench/backup.ts [--keys N] [--value-bytes B]`: backup and restore times with real node
 * processes (the test/cluster harness, TLS on). Fills a 3-node quorum with N keys (pipelined
 * puts), takes `paxosctl snapshot save` while one writer keeps writing (its p99 put latency is
 * reported before and during the backup), verifies the file, restores it into a fresh 3-node
 * quorum with `--restore-from` and reads every key back. Prints one JSON line. A benchmark, not
 * a test: the figures depend on the machine.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { PaxosClient } from '../node/src/client/index.js';
import { run } from '../node/src/cli/paxosctl.js';
import type { Config } from '../node/src/core/types.js';
import { verifyBackupFile } from '../node/src/io/backup-file.js';
import { ProcessCluster } from '../test/cluster/harness.js';

const CONFIG3: Config = { epoch: 1, members: [0, 1, 2] };
const IDS = [0, 1, 2];

function p99(samples: number[]): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] as number * 100) / 100;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { keys: { type: 'string', default: '100000' }, 'value-bytes': { type: 'string', default: '64' } } });
  const keys = Number(values.keys);
  const value = 'v'.repeat(Number(values['value-bytes']));
  if (!Number.isInteger(keys) || keys < 1 || keys > 2_000_000) throw new Error('--keys must be an integer in 1..2000000');
  const source = await ProcessCluster.create({ capacity: 3, flags: ['--max-pending-requests', '50000'] });
  let target: ProcessCluster | undefined;
  const clients: PaxosClient[] = [];
  try {
    for (const id of IDS) source.start(id, CONFIG3);
    await source.waitStable(IDS);
    const client = new PaxosClient({ endpoints: source.endpoints(IDS), deadlineMs: 60_000, pipeline: true, ...source.clientCredentials() });
    clients.push(client);
    const fillStarted = performance.now();
    for (let i = 0; i < keys; i += 2000) await Promise.all(Array.from({ length: Math.min(2000, keys - i) }, (_, j) => client.put(`k/${i + j}`, value)));
    const fillMs = performance.now() - fillStarted;

    // One writer, sequential puts: latency before and during the backup.
    const latencies: Array<{ at: number; ms: number }> = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing && i < 10_000_000; i++) {
        const t = performance.now();
        await client.put(`w/${i % 100}`, String(i));
        latencies.push({ at: t, ms: performance.now() - t });
      }
    })();
    await new Promise((r) => setTimeout(r, 3000));
    const files = source.pki?.files('operator');
    const tls = files ? ['--cacert', files.ca, '--cert', files.cert, '--key', files.key] : [];
    const file = path.join(source.root, 'backup.paxos');
    const out: string[] = [];
    const backupStarted = performance.now();
    const code = await run(['--endpoints', source.endpoints(IDS).join(','), ...tls, '--json', 'snapshot', 'save', file], {}, { out: (l) => out.push(l), err: (l) => out.push(l) });
    const backupEnded = performance.now();
    writing = false;
    await writer;
    if (code !== 0) throw new Error(`snapshot save failed: ${out.join('\n')}`);
    const verifyStarted = performance.now();
    const meta = await verifyBackupFile(file);
    const verifyMs = performance.now() - verifyStarted;

    target = await ProcessCluster.create({ capacity: 3 });
    const restoreStarted = performance.now();
    for (const id of IDS) target.start(id, CONFIG3, ['--restore-from', file]);
    await target.waitStable(IDS, 600_000);
    const restoreMs = performance.now() - restoreStarted;
    const restored = new PaxosClient({ endpoints: target.endpoints(IDS), deadlineMs: 60_000, pipeline: true, ...target.clientCredentials() });
    clients.push(restored);
    let readBack = 0;
    const readStarted = performance.now();
    for (let i = 0; i < keys; i += 2000) {
      const got = await Promise.all(Array.from({ length: Math.min(2000, keys - i) }, (_, j) => restored.get(`k/${i + j}`)));
      readBack += got.filter((v) => v === value).length;
    }
    const readMs = performance.now() - readStarted;
    const before = latencies.filter((l) => l.at < backupStarted).map((l) => l.ms);
    const during = latencies.filter((l) => l.at >= backupStarted && l.at <= backupEnded).map((l) => l.ms);
    process.stdout.write(
      `${JSON.stringify({
        keys,
        value_bytes: value.length,
        fill_ms: Math.round(fillMs),
        backup_ms: Math.round(backupEnded - backupStarted),
        backup_bytes: fs.statSync(file).size,
        verify_ms: Math.round(verifyMs),
        restore_ms: Math.round(restoreMs),
        keys_in_backup: meta.keys,
        keys_read_back: readBack,
        read_back_ms: Math.round(readMs),
        write_p99_ms_steady: p99(before),
        write_p99_ms_during_backup: p99(during),
        writes_during_backup: during.length,
      })}\n`,
    );
  } finally {
    for (const c of clients) c.close();
    await source.destroy();
    await target?.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
