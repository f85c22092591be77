/**
 * Converts between the core's plain-data types (node/src/core/types.ts) and the shapes
 * @grpc/proto-loader produces and accepts for proto/paxos.proto.
 *
 * Decoding validates: a peer is another process and possibly another version, so a
 * malformed message raises `WireFormatError` (the transport drops it) instead of reaching
 * the core as a half-formed object.
 */
import type { Ballot, Command, Config, Entry, KvOp, Message, NodeId } from '../core/types.js';

/** A message from the wire did not have the shape the contract promises. */
export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireFormatError';
  }
}

/* Wire shapes: what proto-loader decodes (defaults on, unset messages null, oneof names set). */
export interface WireBallot { round: number; node: number }
export interface WireConfig { epoch: number; members: number[]; prior?: { ids: number[] } | null }
export interface WireKvOp {
  op?: string;
  put?: { key: string; value: string } | null;
  delete?: { key: string } | null;
  cas?: { key: string; expected_absent: boolean; expected: string; value: string } | null;
  get?: { key: string } | null;
  range?: { prefix: string; limit: number } | null;
}
export interface WireCommand {
  kind?: string;
  noop?: object | null;
  kv?: { client: string; seq: number; op: WireKvOp | null } | null;
  finalize?: { config: WireConfig | null } | null;
}
export interface WireEntry { slot: number; ballot: WireBallot | null; command: WireCommand | null }
export interface WireMessage {
  from: number;
  to: number;
  epoch: number;
  body?: string;
  [variant: string]: unknown;
}

function need<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new WireFormatError(`missing ${what}`);
  return value;
}

/* ---------- encode (core → wire) ---------- */

export function encodeBallot(b: Ballot): WireBallot {
  return { round: b.round, node: b.node };
}

export function encodeConfig(c: Config): WireConfig {
  return { epoch: c.epoch, members: [...c.members], prior: c.prior ? { ids: [...c.prior] } : null };
}

function encodeOp(op: KvOp): WireKvOp {
  switch (op.type) {
    case 'put':
      return { put: { key: op.key, value: op.value } };
    case 'delete':
      return { delete: { key: op.key } };
    case 'cas':
      return { cas: { key: op.key, expected_absent: op.expected === null, expected: op.expected ?? '', value: op.value } };
    case 'get':
      return { get: { key: op.key } };
    case 'range':
      return { range: { prefix: op.prefix, limit: op.limit } };
  }
}

export function encodeCommand(c: Command): WireCommand {
  switch (c.kind) {
    case 'noop':
      return { noop: {} };
    case 'kv':
      return { kv: { client: c.client, seq: c.seq, op: encodeOp(c.op) } };
    case 'finalize':
      return { finalize: { config: encodeConfig(c.config) } };
  }
}

export function encodeEntry(e: Entry): WireEntry {
  return { slot: e.slot, ballot: encodeBallot(e.ballot), command: encodeCommand(e.command) };
}

/**
 * Encodes a message. A catch-up reply's snapshot is reduced to its metadata here; the
 * transport sends its data in chunks (see `SnapshotChunk`).
 */
export function encodeMessage(m: Message): WireMessage {
  const base = { from: m.from, to: m.to, epoch: m.epoch };
  switch (m.type) {
    case 'prevote':
      return { ...base, prevote: { round: m.round, commit: m.commit } };
    case 'prevoteReply':
      return { ...base, prevote_reply: { round: m.round, granted: m.granted } };
    case 'prepare':
      return { ...base, prepare: { ballot: encodeBallot(m.ballot), from_slot: m.fromSlot } };
    case 'promise':
      return {
        ...base,
        promise: {
          ballot: encodeBallot(m.ballot),
          ok: m.ok,
          promised: encodeBallot(m.promised),
          accepted: m.accepted.map(encodeEntry),
          commit: m.commit,
          snapshot_index: m.snapshotIndex,
        },
      };
    case 'accept':
      return { ...base, accept: { ballot: encodeBallot(m.ballot), entries: m.entries.map(encodeEntry), commit: m.commit } };
    case 'accepted':
      return {
        ...base,
        accepted: {
          ballot: encodeBallot(m.ballot),
          ok: m.ok,
          promised: encodeBallot(m.promised),
          from_slot: m.fromSlot,
          to_slot: m.toSlot,
          commit: m.commit,
        },
      };
    case 'heartbeat':
      return { ...base, heartbeat: { ballot: encodeBallot(m.ballot), commit: m.commit, read_id: m.readId } };
    case 'heartbeatReply':
      return {
        ...base,
        heartbeat_reply: { ballot: encodeBallot(m.ballot), ok: m.ok, promised: encodeBallot(m.promised), read_id: m.readId, commit: m.commit },
      };
    case 'catchupRequest':
      return { ...base, catchup_request: { from_slot: m.fromSlot } };
    case 'catchupReply':
      return {
        ...base,
        catchup_reply: {
          entries: m.entries.map(encodeEntry),
          snapshot: m.snapshot ? { index: m.snapshot.index, config: encodeConfig(m.snapshot.config) } : null,
          commit: m.commit,
          leader_hint: m.leaderHint ?? -1,
        },
      };
    case 'timeoutNow':
      return { ...base, timeout_now: {} };
    case 'fenced':
      return { ...base, fenced: { fence_epoch: m.fenceEpoch, config: encodeConfig(m.config) } };
  }
}

/* ---------- decode (wire → core) ---------- */

export function decodeBallot(b: WireBallot | null | undefined, what = 'ballot'): Ballot {
  const v = need(b, what);
  return { round: v.round, node: v.node };
}

export function decodeConfig(c: WireConfig | null | undefined, what = 'config'): Config {
  const v = need(c, what);
  const config: Config = { epoch: v.epoch, members: [...v.members] };
  return v.prior ? { ...config, prior: [...v.prior.ids] } : config;
}

function decodeOp(op: WireKvOp | null | undefined): KvOp {
  const v = need(op, 'kv op');
  switch (v.op) {
    case 'put': {
      const p = need(v.put, 'put');
      return { type: 'put', key: p.key, value: p.value };
    }
    case 'delete':
      return { type: 'delete', key: need(v.delete, 'delete').key };
    case 'cas': {
      const c = need(v.cas, 'cas');
      return { type: 'cas', key: c.key, expected: c.expected_absent ? null : c.expected, value: c.value };
    }
    case 'get':
      return { type: 'get', key: need(v.get, 'get').key };
    case 'range': {
      const r = need(v.range, 'range');
      return { type: 'range', prefix: r.prefix, limit: r.limit };
    }
    default:
      throw new WireFormatError(`unknown kv op ${String(v.op)}`);
  }
}

export function decodeCommand(c: WireCommand | null | undefined): Command {
  const v = need(c, 'command');
  switch (v.kind) {
    case 'noop':
      return { kind: 'noop' };
    case 'kv': {
      const kv = need(v.kv, 'kv command');
      return { kind: 'kv', client: kv.client, seq: kv.seq, op: decodeOp(kv.op) };
    }
    case 'finalize':
      return { kind: 'finalize', config: decodeConfig(need(v.finalize, 'finalize').config) };
    default:
      throw new WireFormatError(`unknown command kind ${String(v.kind)}`);
  }
}

export function decodeEntry(e: WireEntry): Entry {
  return { slot: e.slot, ballot: decodeBallot(e.ballot), command: decodeCommand(e.command) };
}

type Fields = Record<string, unknown>;

/**
 * Decodes a message. For a catch-up reply with a snapshot, `snapshotData` must be the
 * reassembled data (the transport supplies it); without it such a reply is rejected.
 */
export function decodeMessage(w: WireMessage, snapshotData?: string): Message {
  const base = { from: w.from as NodeId, to: w.to as NodeId, epoch: w.epoch };
  const variant = w.body;
  if (variant === undefined) throw new WireFormatError('message without body');
  const b = need(w[variant] as Fields | null | undefined, variant);
  const entries = (list: unknown): Entry[] => (list as WireEntry[]).map(decodeEntry);
  switch (variant) {
    case 'prevote':
      return { ...base, type: 'prevote', round: b.round as number, commit: b.commit as number };
    case 'prevote_reply':
      return { ...base, type: 'prevoteReply', round: b.round as number, granted: b.granted as boolean };
    case 'prepare':
      return { ...base, type: 'prepare', ballot: decodeBallot(b.ballot as WireBallot), fromSlot: b.from_slot as number };
    case 'promise':
      return {
        ...base,
        type: 'promise',
        ballot: decodeBallot(b.ballot as WireBallot),
        ok: b.ok as boolean,
        promised: decodeBallot(b.promised as WireBallot, 'promised'),
        accepted: entries(b.accepted),
        commit: b.commit as number,
        snapshotIndex: b.snapshot_index as number,
      };
    case 'accept':
      return { ...base, type: 'accept', ballot: decodeBallot(b.ballot as WireBallot), entries: entries(b.entries), commit: b.commit as number };
    case 'accepted':
      return {
        ...base,
        type: 'accepted',
        ballot: decodeBallot(b.ballot as WireBallot),
        ok: b.ok as boolean,
        promised: decodeBallot(b.promised as WireBallot, 'promised'),
        fromSlot: b.from_slot as number,
        toSlot: b.to_slot as number,
        commit: b.commit as number,
      };
    case 'heartbeat':
      return { ...base, type: 'heartbeat', ballot: decodeBallot(b.ballot as WireBallot), commit: b.commit as number, readId: b.read_id as number };
    case 'heartbeat_reply':
      return {
        ...base,
        type: 'heartbeatReply',
        ballot: decodeBallot(b.ballot as WireBallot),
        ok: b.ok as boolean,
        promised: decodeBallot(b.promised as WireBallot, 'promised'),
        readId: b.read_id as number,
        commit: b.commit as number,
      };
    case 'catchup_request':
      return { ...base, type: 'catchupRequest', fromSlot: b.from_slot as number };
    case 'catchup_reply': {
      const meta = b.snapshot as { index: number; config: WireConfig | null } | null;
      if (meta && snapshotData === undefined) throw new WireFormatError('catch-up snapshot without its data');
      const hint = b.leader_hint as number;
      return {
        ...base,
        type: 'catchupReply',
        entries: entries(b.entries),
        commit: b.commit as number,
        ...(meta ? { snapshot: { index: meta.index, config: decodeConfig(meta.config), data: snapshotData as string } } : {}),
        ...(hint >= 0 ? { leaderHint: hint } : {}),
      };
    }
    case 'timeout_now':
      return { ...base, type: 'timeoutNow' };
    case 'fenced':
      return { ...base, type: 'fenced', fenceEpoch: b.fence_epoch as number, config: decodeConfig(b.config as WireConfig) };
    default:
      throw new WireFormatError(`unknown message type ${variant}`);
  }
}
