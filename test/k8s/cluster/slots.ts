/**
 * Machine-wide "slots" so several local clusters (e.g. parallel jest workers) can run at once
 * without their address ranges, bridges or network-namespace names colliding.
 *
 * Slot N owns: service CIDR 10.0.N.0/24, pod CIDR 10.244.N.0/24, bridge `kpbrN`, namespace
 * prefix `kpN-`. A slot is held by a lock file containing the owner's PID; a lock whose owner
 * is dead is taken over.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Where lock files live (tmpfs, cleared on reboot). */
export const SLOT_DIR = process.env.LOCAL_CLUSTER_SLOT_DIR ?? '/run/local-cluster-slots';
/** Number of slots. */
export const SLOT_COUNT = 64;

/** The addresses and names belonging to one slot. */
export interface SlotNetwork {
  readonly slot: number;
  /** Service CIDR, e.g. 10.0.0.0/24. */
  readonly serviceCidr: string;
  /** First service IP (the `kubernetes` service), e.g. 10.0.0.1. */
  readonly apiServiceIp: string;
  /** Pod CIDR, e.g. 10.244.0.0/24. */
  readonly podCidr: string;
  /** Bridge device name. */
  readonly bridge: string;
  /** Network-namespace name prefix. */
  readonly nsPrefix: string;
}

/** The network layout of slot `n`. */
export function slotNetwork(n: number): SlotNetwork {
  if (!Number.isInteger(n) || n < 0 || n >= SLOT_COUNT) throw new Error(`bad slot ${n}`);
  return {
    slot: n,
    serviceCidr: `10.0.${n}.0/24`,
    apiServiceIp: `10.0.${n}.1`,
    podCidr: `10.244.${n}.0/24`,
    bridge: `kpbr${n}`,
    nsPrefix: `kp${n}-`,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockPath(n: number): string {
  return join(SLOT_DIR, `slot-${n}.lock`);
}

/** Takes slot `n` if it is free (or its owner is dead). */
export function tryAcquireSlot(n: number): boolean {
  mkdirSync(SLOT_DIR, { recursive: true });
  const p = lockPath(n);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(p, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = NaN;
      try {
        owner = Number(readFileSync(p, 'utf8'));
      } catch {
        continue;
      }
      if (owner === process.pid || !Number.isInteger(owner) || owner <= 0 || alive(owner)) return false;
      rmSync(p, { force: true }); // stale
    }
  }
  return false;
}

/** Takes the lowest free slot. */
export function acquireSlot(): number {
  for (let n = 0; n < SLOT_COUNT; n++) if (tryAcquireSlot(n)) return n;
  throw new Error(`all ${SLOT_COUNT} local-cluster slots in ${SLOT_DIR} are taken`);
}

/** Releases a slot held by this process. */
export function releaseSlot(n: number): void {
  const p = lockPath(n);
  try {
    if (Number(readFileSync(p, 'utf8')) === process.pid) rmSync(p, { force: true });
  } catch {
    /* already gone */
  }
}
