/**
 * Summarises a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): self time by function
 * and by file/package, and total time of our own node/src functions (self + callees).
 *
 *   npx tsx bench/profile-summary.ts /tmp/paxos-bench-XXXX/profiles/ours-0.cpuprofile [top]
 */
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
if (!file) {
  process.stderr.write('usage: profile-summary.ts FILE.cpuprofile [top]\n');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfUs = new Map<number, number>();
prof.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
const totalUs = prof.endTime - prof.startTime;

const short = (url: string): string => {
  if (!url) return '(native/vm)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `npm:${nm[1]}`;
  const m = /\/work\/main\/(.*)$/.exec(url.replace('file://', ''));
  return m ? (m[1] as string) : url.replace('file://', '').replace(/^node:/, 'node:');
};

const fnSelf = new Map<string, number>();
const fileSelf = new Map<string, number>();
const oursTotal = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id);
  if (!n) continue;
  const f = n.callFrame;
  const key = `${f.functionName || '(anonymous)'}  ${short(f.url)}:${f.lineNumber + 1}`;
  fnSelf.set(key, (fnSelf.get(key) ?? 0) + us);
  const fk = short(f.url);
  fileSelf.set(fk, (fileSelf.get(fk) ?? 0) + us);
  // inclusive time of our own functions: walk up, count each distinct function once
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const cf = byId.get(cur)?.callFrame;
    if (cf && cf.url.includes('/node/src/')) {
      const k = `${cf.functionName || '(anonymous)'}  ${short(cf.url)}:${cf.lineNumber + 1}`;
      if (!seen.has(k)) {
        seen.add(k);
        oursTotal.set(k, (oursTotal.get(k) ?? 0) + us);
      }
    }
  }
}
const pct = (us: number): string => `${((100 * us) / totalUs).toFixed(1).padStart(5)}%`;
const show = (title: string, m: Map<string, number>): void => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}\n`);
};
process.stdout.write(`${file}: ${(totalUs / 1e6).toFixed(1)} s wall, ${prof.samples.length} samples\n`);
show('self time by file / package', fileSelf);
show('self time by function', fnSelf);
show('inclusive time of node/src functions', oursTotal);
