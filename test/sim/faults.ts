import type { NodeId } from '../../node/src/core/types.js';
import { CALM, type NetworkFaults } from './network.js';
import type { Rng } from './rng.js';
import type { World } from './world.js';

/** How hard a run's fault phase is. Drawn per seed, so that the seeds cover calm and stormy runs. */
export interface FaultProfile {
  readonly network: NetworkFaults;
  /** Probability per tick that a running node crashes. */
  readonly crashRate: number;
  /** A crashed node restarts after a downtime in this range of ticks. */
  readonly downtimeTicks: readonly [number, number];
  /** Probability per tick that a running node pauses (it resumes on its own). */
  readonly pauseRate: number;
  readonly pauseTicks: readonly [number, number];
  /** Probability per tick, while the network is whole, that a partition starts. */
  readonly partitionRate: number;
  readonly partitionTicks: readonly [number, number];
  /** Partition shapes to draw from. `oldNew` cuts the original members from the added ones. */
  readonly partitionKinds: readonly PartitionKind[];
  /** Probability that an answer to a client is lost. */
  readonly replyLossRate: number;
  /** The disks' faults (drawn apart from the rest, see `randomDiskProfile`). */
  readonly disk?: DiskFaultProfile;
}

/** How a run's disks fail. Crashes always lose unsynced writes and may tear the last one. */
export interface DiskFaultProfile {
  /** Probability that an fsync/fdatasync fails with EIO (the node stops and is restarted). */
  readonly syncFailRate: number;
  /** Probability per tick that a running node's disk fills up, for a time in `fullTicks`. */
  readonly fullRate: number;
  readonly fullTicks: readonly [number, number];
  /**
   * Probability that a crash also flips a bit in the middle of the node's log (the node must
   * refuse to start; its volume is then replaced). Only where the operator model repairs a lost
   * disk (the amnesia workload).
   */
  readonly bitFlipChance: number;
}

/** A random disk profile, from its own stream so that the other draws of a seed stay as they were. */
export function randomDiskProfile(rng: Rng, repairs: boolean): DiskFaultProfile {
  return {
    syncFailRate: rng.pick([0, 0, 0.0003, 0.001]),
    fullRate: rng.pick([0, 0, 0.001, 0.003]),
    fullTicks: [5, rng.pick([20, 60])],
    bitFlipChance: repairs ? rng.pick([0, 0.2, 0.5]) : 0,
  };
}

/** Shapes of network partitions. */
export type PartitionKind = 'split' | 'isolate' | 'oneWay' | 'bridge' | 'oldNew';

/** A random profile for the normal workload. */
export function randomProfile(rng: Rng): FaultProfile {
  const maxDelay = rng.pick([1, 2, 4, 8]);
  return {
    network: {
      dropRate: rng.pick([0, 0.01, 0.05, 0.1]),
      duplicateRate: rng.pick([0, 0.01, 0.05]),
      minDelayTicks: 1,
      maxDelayTicks: maxDelay,
    },
    crashRate: rng.pick([0, 0.002, 0.004]),
    downtimeTicks: [5, rng.pick([40, 150])],
    pauseRate: rng.pick([0, 0.002, 0.005]),
    pauseTicks: [5, rng.pick([30, 100])],
    partitionRate: rng.pick([0, 0.004, 0.01]),
    partitionTicks: [10, rng.pick([60, 200])],
    partitionKinds: ['split', 'isolate', 'oneWay', 'bridge'],
    replyLossRate: rng.pick([0, 0.02, 0.1]),
  };
}

/**
 * Injects crashes, restarts and partitions during the fault phase, and undoes them all at its
 * end. One partition at a time; any number of crashed nodes (safety must not depend on it).
 */
export class FaultInjector {
  private readonly restarts = new Map<NodeId, number>();
  /** Full disks and the tick at which they have space again. */
  private readonly fullUntil = new Map<NodeId, number>();
  private healAt: number | undefined;
  private flipped = false;

  constructor(
    private readonly rng: Rng,
    private readonly profile: FaultProfile,
    /** The original members of the reconfiguration in progress, for `oldNew` partitions. */
    private readonly oldMembers: () => readonly NodeId[],
    /** Whether a bit flip may be injected now (the operator model can repair one more lost disk). */
    private readonly mayLoseDisk: () => boolean = () => false,
  ) {}

  /** Starts the fault phase. */
  begin(world: World): void {
    world.network.faults = this.profile.network;
    world.setDiskFaults({ syncFailRate: this.profile.disk?.syncFailRate ?? 0 });
  }

  /** One tick of the fault phase. */
  tick(world: World): void {
    const now = world.now;
    for (const [id, at] of [...this.restarts]) {
      if (at > now) continue;
      this.restarts.delete(id);
      world.restart(id);
    }
    if (this.healAt !== undefined && now >= this.healAt) {
      world.network.heal();
      this.healAt = undefined;
      world.trace.log(now, 'network healed');
    }
    if (this.rng.chance(this.profile.crashRate)) {
      const up = world.ids().filter((id) => world.node(id)?.up);
      if (up.length > 0) {
        const id = this.rng.pick(up);
        world.crash(id);
        this.restarts.set(id, now + this.rng.range(...this.profile.downtimeTicks));
        const disk = this.profile.disk;
        if (disk !== undefined && !this.flipped && this.rng.chance(disk.bitFlipChance) && this.mayLoseDisk()) this.flipped = world.flipBit(id);
      }
    }
    const disk = this.profile.disk;
    for (const [id, at] of [...this.fullUntil]) {
      if (at > now) continue;
      this.fullUntil.delete(id);
      world.setDiskFull(id, false);
    }
    if (disk !== undefined && this.rng.chance(disk.fullRate)) {
      const up = world.ids().filter((id) => world.node(id)?.up && !this.fullUntil.has(id));
      if (up.length > 0) {
        const id = this.rng.pick(up);
        world.setDiskFull(id, true);
        this.fullUntil.set(id, now + this.rng.range(...disk.fullTicks));
      }
    }
    if (this.rng.chance(this.profile.pauseRate)) {
      const up = world.ids().filter((id) => world.node(id)?.up);
      if (up.length > 0) world.pause(this.rng.pick(up), now + this.rng.range(...this.profile.pauseTicks));
    }
    if (this.healAt === undefined && this.rng.chance(this.profile.partitionRate)) this.partition(world);
  }

  /** Ends the fault phase: heals the network, restarts every crashed node, calms the network. */
  end(world: World): void {
    world.network.heal();
    world.network.faults = { ...CALM, maxDelayTicks: Math.min(2, this.profile.network.maxDelayTicks) };
    world.setDiskFaults({ syncFailRate: 0 });
    for (const id of this.fullUntil.keys()) world.setDiskFull(id, false);
    this.fullUntil.clear();
    this.healAt = undefined;
    this.restarts.clear();
    for (const id of world.ids()) world.restart(id);
    world.trace.log(world.now, 'fault phase over: network healed, every node running');
  }

  private partition(world: World): void {
    const ids = world.ids();
    if (ids.length < 2) return;
    const kind = this.rng.pick(this.profile.partitionKinds);
    const shuffled = this.rng.shuffle(ids);
    const net = world.network;
    let what: string;
    switch (kind) {
      case 'split': {
        const cut = this.rng.range(1, ids.length - 1);
        const groups = [shuffled.slice(0, cut).sort(), shuffled.slice(cut).sort()];
        net.partition(groups);
        what = `partition ${groups.map((g) => `{${g.join(',')}}`).join(' | ')}`;
        break;
      }
      case 'isolate': {
        const id = shuffled[0] as NodeId;
        net.partition([[id], ids.filter((x) => x !== id)]);
        what = `isolate ${id}`;
        break;
      }
      case 'oneWay': {
        const links = this.rng.range(1, ids.length);
        const cuts: string[] = [];
        for (let i = 0; i < links; i++) {
          const [a, b] = this.rng.shuffle(ids) as [NodeId, NodeId];
          net.cut(a, b);
          cuts.push(`${a}>${b}`);
        }
        what = `cut links ${cuts.join(' ')}`;
        break;
      }
      case 'bridge': {
        if (ids.length < 3) return;
        const [bridge, ...rest] = shuffled as [NodeId, ...NodeId[]];
        const cut = this.rng.range(1, rest.length - 1);
        const groups = [rest.slice(0, cut).sort(), rest.slice(cut).sort()];
        net.partition(groups);
        what = `partition ${groups.map((g) => `{${g.join(',')}}`).join(' | ')} bridged by ${bridge}`;
        break;
      }
      case 'oldNew': {
        // Split brain bait: a majority of the old members (with the leader, if it is old) on one
        // side, everyone else (the new nodes and the other old members) on the other.
        const old = this.oldMembers().filter((id) => ids.includes(id));
        const leader = world.leader()?.id;
        const others = this.rng.shuffle(old.filter((id) => id !== leader));
        const side = [...(leader !== undefined && old.includes(leader) ? [leader] : []), ...others].slice(0, Math.floor(old.length / 2) + 1).sort();
        const rest = ids.filter((id) => !side.includes(id));
        if (side.length === 0 || rest.length === 0) return;
        net.partition([side, rest]);
        what = `partition old {${side.join(',')}} | {${rest.join(',')}}`;
        break;
      }
    }
    this.healAt = world.now + this.rng.range(...this.profile.partitionTicks);
    world.trace.log(world.now, `${what} until ${this.healAt}`);
  }
}
