/**
 * The check's view of on-disk tables: big-endian 64-bit entries as pairs of 32-bit words in a Uint32Array
 * (one copy and one native byte swap per table, no DataView call or bigint per entry), the word masks of
 * standard L2 entries, and the all-zero test the walks use to skip empty stretches of a table at once.
 */
import { L2E_OFFSET_MASK, L2E_STD_RESERVED_MASK } from '../layout';

/** The host offset bits of a standard L2 entry's high word (its low word's are 0xfffffe00). */
export const L2_HI_OFFSET = Number(L2E_OFFSET_MASK >> 32n);
/** The host offset bits of a standard L2 entry's low word. */
export const L2_LO_OFFSET = Number(L2E_OFFSET_MASK & 0xffffffffn);
/** The reserved bits of a standard L2 entry's high word. */
export const L2_HI_RESERVED = Number(L2E_STD_RESERVED_MASK >> 32n);

/** True on little-endian hosts, where big-endian words are byte-swapped before a Uint32Array reads them. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A table of 8-byte entries as big-endian 32-bit halves: [hi0, lo0, hi1, lo1, ...] (whole entries only).
 * One copy and one native byte swap (Buffer#swap32) instead of a DataView call per word: the check walks
 * every entry of every table, mostly while its code is still cold.
 */
export function halves(buf: Uint8Array): Uint32Array {
  return words(buf, Math.floor(buf.length / 8) * 2);
}

/** The first `count` big-endian 32-bit words of `buf`, as numbers. */
export function words(buf: Uint8Array, count: number): Uint32Array {
  const out = new Uint32Array(count);
  const bytes = new Uint8Array(out.buffer);
  bytes.set(buf.subarray(0, count * 4));
  if (LITTLE_ENDIAN && count > 0) Buffer.from(out.buffer, 0, count * 4).swap32();
  return out;
}

/** Bytes of table entries tested at once for being all zero (64 standard or 32 extended L2 entries). */
export const ZERO_RUN_BYTES = 512;
const ZERO_RUN = Buffer.alloc(ZERO_RUN_BYTES);

/** The bytes under a table's words, for zeroRun(). */
export function wordsView(w: Uint32Array): Buffer {
  return Buffer.from(w.buffer, w.byteOffset, w.byteLength);
}

/**
 * Whether the ZERO_RUN_BYTES at `pos` of `bytes` are all zero: one native compare where the walks would
 * test each of those entries in turn (most of a sparse image's L2 tables is empty).
 */
export function zeroRun(bytes: Buffer, pos: number): boolean {
  return pos + ZERO_RUN_BYTES <= bytes.length && ZERO_RUN.compare(bytes, pos, pos + ZERO_RUN_BYTES) === 0;
}

/** Words back to big-endian bytes, as a table is stored. */
export function wordBytes(w: Uint32Array): Uint8Array {
  const out = new Uint8Array(w.length * 4);
  out.set(new Uint8Array(w.buffer, w.byteOffset, w.length * 4));
  if (LITTLE_ENDIAN && w.length > 0) Buffer.from(out.buffer, 0, out.length).swap32();
  return out;
}
