/**
 * CRC-32 (IEEE 802.3, the polynomial of zlib and gzip) for framing write-ahead-log records.
 *
 * Node ≥ 20.15 ships a native `zlib.crc32`; older 20.x releases do not, so a table-driven
 * fallback computes the same function. A test checks that both agree.
 */
import * as zlib from 'node:zlib';

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The portable implementation; exported for the agreement test. */
export function crc32Portable(data: Uint8Array, initial = 0): number {
  let crc = ~initial >>> 0;
  for (let i = 0; i < data.length; i++) crc = (TABLE[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return ~crc >>> 0;
}

type NativeCrc32 = (data: Uint8Array, value?: number) => number;
const native = (zlib as unknown as { crc32?: NativeCrc32 }).crc32;

/** CRC-32 of `data`, continuing from `initial` (the CRC of the bytes before it). */
export const crc32: (data: Uint8Array, initial?: number) => number =
  typeof native === 'function' ? (data, initial = 0) => native(data, initial) >>> 0 : crc32Portable;
