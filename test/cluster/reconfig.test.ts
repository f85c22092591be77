/**
 * 3 → 5 → 3 through the admin API, in the order of the design note
 * (docs: /work/shared/design/online-reconfiguration.md, "The planner's order"), while a client
 * keeps writing. Every acknowledged write must be readable at the end.
 */
import { jest } from '@jest/globals';
import { PaxosClient, PaxosClientError } from '../../node/src/client/index.js';
import type { Config } from '../../node/src/core/types.js';
import { ProcessCluster, until } from './harness.js';
import { PlainWriter } from './plain-writer.js';

jest.setTimeout(300_000);

const O: Config = { epoch: 1, members: [0, 1, 2] };
const N: Config = { epoch: 2, members: [0, 1, 2, 3, 4], prior: [0, 1, 2] };
const BACK: Config = { epoch: 3, members: [0, 1, 2], prior: [0, 1, 2, 3, 4] };

describe('process cluster: online reconfiguration', () => {
  let cluster: ProcessCluster;

  afterEach(async () => cluster?.destroy());

  it('expands 3 → 5 and shrinks back to 3 while a client writes', async () => {
    cluster = await ProcessCluster.create({ capacity: 5 });
    for (const id of [0, 1, 2]) cluster.start(id, O);
    let leader = await cluster.waitStable([0, 1, 2]);

    // A writer throughout; it records what was acknowledged.
    const client = new PaxosClient({ endpoints: cluster.endpoints([0, 1, 2, 3, 4]), deadlineMs: 30_000, ...cluster.clientCredentials() });
    const acked = new Map<string, string>();
    let writing = true;
    let failures = 0;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        try {
          await client.put(`w/${i}`, String(i));
          acked.set(`w/${i}`, String(i));
        } catch (err) {
          if (!(err instanceof PaxosClientError)) throw err;
          failures++;
        }
      }
    })();

    // A client written from the proto alone (no retries): every answer but OK is a refusal it
    // sees. Reconfiguration must not cause any.
    const plain = new PlainWriter({ endpoints: cluster.endpoints([leader, ...[0, 1, 2, 3, 4].filter((id) => id !== leader)]), deadlineMs: 10_000, intervalMs: 5, lanes: 4, ...cluster.clientCredentials() });
    plain.start();

    /** The leader among the running nodes, once they all agree on it. */
    const leaderOf = async (running: number[]): Promise<number> => cluster.waitStable(running);
    /**
     * Makes a node of `wanted` lead (transferring if needed). A node being removed may win an
     * election meanwhile — the design allows it, removed nodes stay up until finalization — so
     * the operator, and this test, move leadership where the next step needs it.
     */
    const moveLeaderTo = async (running: number[], wanted: number[]): Promise<number> => {
      for (let attempt = 0; attempt < 10; attempt++) {
        const current = await leaderOf(running);
        if (wanted.includes(current)) return current;
        const target = wanted[attempt % wanted.length] as number;
        await cluster.admin.transferLeadership(cluster.endpoint(current), target).catch(() => undefined);
        await until(`leadership on ${target}`, async () => (await cluster.status(target))?.role === 'leader', 5000).catch(() => undefined);
      }
      throw new Error(`could not move leadership to one of ${wanted.join(',')}`);
    };
    const finalize = async (running: number[], wanted: number[]): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        const at = await moveLeaderTo(running, wanted);
        try {
          await cluster.admin.finalize(cluster.endpoint(at), 20_000);
          return;
        } catch (err) {
          if (attempt >= 5 || !(err instanceof PaxosClientError) || !err.retryable) throw err;
        }
      }
    };
    const caughtUp = async (id: number): Promise<void> => {
      const target = (await cluster.status(leader))?.commit ?? 0;
      await until(`node ${id} caught up`, async () => {
        const s = await cluster.status(id);
        return s !== undefined && s.caughtUp && s.leader !== undefined && s.applied >= target;
      });
    };
    const convert = async (id: number, config: Config): Promise<void> => {
      await cluster.admin.convert(cluster.endpoint(id), config);
      await until(`node ${id} on epoch ${config.epoch}`, async () => (await cluster.status(id))?.config.epoch === config.epoch);
    };

    // ---- expansion 3 → 5: k = max(1, floor(5/2) + 2 - 3) = 1 new node first.
    cluster.start(3, N, ['--joining']);
    await caughtUp(3);
    for (const f of [0, 1, 2].filter((id) => id !== leader)) {
      await convert(f, N);
      await caughtUp(f);
    }
    // The leader's turn: transfer to a converted node, then convert the old leader.
    const old = await leaderOf([0, 1, 2, 3]);
    leader = await moveLeaderTo([0, 1, 2, 3], [0, 1, 2, 3].filter((id) => id !== old));
    await convert(old, N);
    await caughtUp(old);
    cluster.start(4, N, ['--joining']);
    await caughtUp(4);
    await finalize([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]);
    leader = await leaderOf([0, 1, 2, 3, 4]);
    await until('everyone finalized epoch 2', async () => {
      const all = await Promise.all([0, 1, 2, 3, 4].map((id) => cluster.status(id)));
      return all.every((s) => s?.config.epoch === 2 && s.config.prior === undefined);
    });

    // ---- shrink 5 → 3: the removed nodes {3, 4} stay up until finalization.
    const all = [0, 1, 2, 3, 4];
    leader = await moveLeaderTo(all, [0, 1, 2]);
    for (const f of [0, 1, 2].filter((id) => id !== leader)) {
      await convert(f, BACK);
      await caughtUp(f);
    }
    await convert(leader, BACK);
    await finalize(all, [0, 1, 2]);
    await until('survivors finalized epoch 3', async () => {
      const all = await Promise.all([0, 1, 2].map((id) => cluster.status(id)));
      return all.every((s) => s?.config.epoch === 3 && s.config.prior === undefined);
    });
    await cluster.stop(4);
    await cluster.stop(3);
    leader = await leaderOf([0, 1, 2]);

    writing = false;
    await writer;
    client.close();
    await plain.stop();
    plain.close();
    // A NOT_LEADER answer is the proto's redirect: the node stopped leading (the test moves
    // leadership four times) and the client must go elsewhere. Nothing else may be refused:
    // writes that arrive while a finalize or a handover is in flight wait for it.
    const refusedOtherwise = Object.fromEntries(Object.entries(plain.counts.refused).filter(([code]) => code !== 'NOT_LEADER'));
    expect({ refusedOtherwise, samples: plain.counts.samples.filter((m) => !m.includes('NOT_LEADER')) }).toEqual({ refusedOtherwise: {}, samples: [] });
    expect(plain.counts.ok).toBeGreaterThan(10);
    expect(acked.size).toBeGreaterThan(10);
    const reader = new PaxosClient({ endpoints: cluster.endpoints([0, 1, 2]), deadlineMs: 20_000, ...cluster.clientCredentials() });
    try {
      for (const [key, value] of acked) expect(await reader.get(key)).toBe(value);
    } finally {
      reader.close();
    }
    // Failures are allowed (elections), but the writer must have kept going.
    expect(failures).toBeLessThan(acked.size);
  });
});
