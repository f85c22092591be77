/**
 * `npm run bench:core`: three in-memory replicas in one process, a perfect network, batches of
 * client commands. Measures how many commands per second the pure core commits, so that we
 * know it is never the node's bottleneck. Prints a table and writes bench/results/core.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { MiniCluster } from '../../test/core/mini-cluster.js';
import type { Command } from '../src/core/types.js';

interface Row {
  readonly batch: number;
  readonly commands: number;
  readonly seconds: number;
  readonly commandsPerSecond: number;
}

function run(batch: number, totalCommands: number): Row {
  const c = MiniCluster.bootstrap([0, 1, 2], 1, { maxPendingProposals: 1 << 20, maxBatchEntries: 1024 });
  const leader = c.waitLeader();
  const value = 'x'.repeat(256);
  let seq = 0;
  const started = process.hrtime.bigint();
  let committed = 0;
  while (committed < totalCommands) {
    const commands: Command[] = [];
    for (let i = 0; i < batch; i++) {
      seq++;
      commands.push({ kind: 'kv', client: 'bench', seq, op: { type: 'put', key: `k${seq % 1000}`, value } });
    }
    const r = leader.replica.propose(commands);
    if (!r.ok) throw new Error(`refused: ${r.reason}`);
    c.deliverAll();
    committed = Math.min(...[...c.nodes.values()].map((n) => n.kv.applied));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  c.assertAgreement();
  return { batch, commands: committed, seconds, commandsPerSecond: Math.round(committed / seconds) };
}

const quick = process.argv.includes('--quick');
const total = quick ? 50_000 : 300_000;
const rows = [1, 16, 64, 256, 1024].map((b) => run(b, b === 1 ? total / 10 : total));
console.log('batch  commands  seconds  commands/s (applied on all 3 replicas)');
for (const r of rows) console.log(`${String(r.batch).padStart(5)}  ${String(r.commands).padStart(8)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.commandsPerSecond}`);
mkdirSync('bench/results', { recursive: true });
const out = { when: new Date().toISOString(), node: process.version, rows };
writeFileSync('bench/results/core.json', JSON.stringify(out, null, 2));
const best = Math.max(...rows.map((r) => r.commandsPerSecond));
console.log(JSON.stringify({ core_commands_per_s: best, target: 100_000, met: best >= 100_000 }));
