/**
 * Messages between simulated nodes travel as the real transport sends them: `encodeMessage`
 * of the codec (node/src/io/codec.ts) into the proto shapes, serialised into a `PeerBatch` by
 * the PeerService's own protobuf serialiser, parsed back on arrival and decoded (validated) by
 * `decodeMessage`. A snapshot goes as the transport sends one: a chunk carrying the reply
 * header and the data. Every delivered copy is a fresh object, as over a socket.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Message, NodeId } from '../../node/src/core/types.js';
import { decodeMessage, encodeMessage, type WireMessage } from '../../node/src/io/codec.js';
import { loadProtos } from '../../node/src/io/proto.js';

/** A message in flight: its addresses (for the network's cuts) and its encoding. */
export interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly wire: Buffer;
}

interface WireItem {
  item?: string;
  message?: WireMessage | null;
  chunk?: { transfer_id: number; offset: number; total_bytes: number; data: Buffer; reply: WireMessage | null } | null;
}

let stream: grpc.MethodDefinition<{ items: WireItem[] }, { items: WireItem[] }> | undefined;
function peerStream(): grpc.MethodDefinition<{ items: WireItem[] }, { items: WireItem[] }> {
  stream ??= (loadProtos().peer as unknown as Record<string, grpc.MethodDefinition<{ items: WireItem[] }, { items: WireItem[] }>>).Stream;
  if (stream === undefined) throw new Error('PeerService.Stream missing from the proto');
  return stream;
}

/** Encodes `m` for the network. */
export function encode(m: Message): Envelope {
  const header = encodeMessage(m);
  const snapshotData = m.type === 'catchupReply' && m.snapshot !== undefined ? m.snapshot.data : undefined;
  let item: WireItem;
  if (snapshotData === undefined) {
    item = { message: header };
  } else {
    const data = Buffer.from(snapshotData, 'utf8');
    item = { chunk: { transfer_id: 1, offset: 0, total_bytes: data.length, data, reply: header } };
  }
  return { from: m.from, to: m.to, wire: peerStream().requestSerialize({ items: [item] }) };
}

/** Decodes what arrived; throws `WireFormatError` for a malformed message (the transport drops it). */
export function decode(e: Envelope): Message {
  const batch = peerStream().requestDeserialize(e.wire);
  const item = batch.items[0];
  if (item?.item === 'message' && item.message) return decodeMessage(item.message);
  if (item?.item === 'chunk' && item.chunk?.reply) return decodeMessage(item.chunk.reply, Buffer.from(item.chunk.data).toString('utf8'));
  throw new Error(`undecodable envelope from ${e.from} to ${e.to}`);
}
