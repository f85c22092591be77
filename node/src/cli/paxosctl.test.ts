import { run } from './paxosctl.js';
import { renderTable } from './table.js';

const capture = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
};

describe('paxosctl', () => {
  it('exits 2 with usage on unknown commands, bad arity and bad flags', async () => {
    for (const argv of [['bogus'], ['put', 'onlykey'], ['--nope'], [], ['--endpoints', 'nohostport', 'get', 'a'], ['convert', 'h:1', '{bad']]) {
      const c = capture();
      expect(await run(argv, {}, c.io)).toBe(2);
      expect(c.err.join('\n')).toContain('usage: paxosctl');
    }
  });

  it('prints help with exit 0', async () => {
    const c = capture();
    expect(await run(['--help'], {}, c.io)).toBe(0);
    expect(c.out.join('\n')).toContain('status');
  });

  it('fails with exit 1 and a clear message when no node answers', async () => {
    const c = capture();
    expect(await run(['--endpoints', '127.0.0.1:1', '--deadline-ms', '300', 'get', 'k'], {}, c.io)).toBe(1);
    expect(c.err.join('\n')).toMatch(/^paxosctl: (DEADLINE_EXCEEDED|UNAVAILABLE): /);
  });

  it('renders aligned tables', () => {
    expect(renderTable(['A', 'BB'], [['xyz', '1'], ['q', '22']])).toBe('A    BB\nxyz  1\nq    22');
  });
});
