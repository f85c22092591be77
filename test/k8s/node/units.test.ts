/**
 * The pure parts of the real-node harness: the prerequisite message, the comparison of
 * iptables dumps, the node network layout.
 */
import { PrerequisiteMissingError, requireCommands } from './exec.js';
import { normalizeIptables } from './host-state.js';
import { nodeNetwork } from './real-nodes.js';

describe('real-node harness', () => {
  it('names the Debian package of a missing command in one message', () => {
    expect(() => requireCommands([{ command: 'sh', debianPackage: 'dash' }])).not.toThrow();
    const run = (): void => requireCommands([{ command: 'no-such-command-x1', debianPackage: 'pkg-one' }, { command: 'no-such-command-x2', debianPackage: 'pkg-one' }]);
    expect(run).toThrow(PrerequisiteMissingError);
    expect(run).toThrow('missing no-such-command-x1, no-such-command-x2: install with `apt-get install -y pkg-one`');
  });

  it('compares iptables dumps by their rules: dates, counters and empty tables do not count, a rule does', () => {
    const a = '# Generated on Mon\n*filter\n:INPUT ACCEPT [5:100]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n';
    const b = '# Generated on Tue\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [9:999]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n';
    expect(normalizeIptables(a)).toBe(normalizeIptables(b));
    expect(normalizeIptables('')).toBe(normalizeIptables(a));
    const withRule = '*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n-A INPUT -j KUBE-FIREWALL\nCOMMIT\n';
    expect(normalizeIptables(withRule)).not.toBe(normalizeIptables(a));
    expect(normalizeIptables('*filter\n:INPUT DROP [0:0]\nCOMMIT\n')).not.toBe(normalizeIptables(a));
  });

  it('gives each node its own slice of the slot subnet, the gateway outside all of them', () => {
    const net = nodeNetwork(3);
    expect(net).toMatchObject({ bridge: 'kpbr3', subnet: '10.244.3.0/24', gateway: '10.244.3.1' });
    const last = (ip: string): number => Number(ip.split('.')[3]);
    const ranges = [0, 1, 2, 3, 4, 5].map((k) => net.range(k));
    for (const [i, r] of ranges.entries()) {
      expect(last(r.start)).toBeGreaterThan(1);
      expect(last(r.end)).toBeLessThan(255);
      if (i > 0) expect(last(r.start)).toBeGreaterThan(last(ranges[i - 1]!.end));
    }
  });
});
