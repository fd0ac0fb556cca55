/**
 * Decoding of L1, L2, refcount-table and bitmap-table entries: the one place a cluster's type is decided and a
 * host offset is taken out of an entry, for the device, the check and snapshots alike. Entries are handled as
 * two 32-bit words (hi, lo) so that the hot paths of read and map do no bigint arithmetic; the word masks are
 * derived once from the 64-bit masks in layout.ts (docs/interop/qcow2.txt, "Cluster mapping").
 */
import {
  BME_ALL_ONES,
  BME_OFFSET_MASK,
  BME_RESERVED_MASK,
  L1E_OFFSET_MASK,
  L1E_RESERVED_MASK,
  L2E_OFFSET_MASK,
  L2E_STD_RESERVED_MASK,
  OFLAG_COMPRESSED,
  OFLAG_COPIED,
  OFLAG_ZERO,
  REFT_OFFSET_MASK,
  REFT_RESERVED_MASK,
} from './layout';

const hiWord = (m: bigint): number => Number((m >> 32n) & 0xffffffffn);
const loWord = (m: bigint): number => Number(m & 0xffffffffn);
const TWO32 = 2 ** 32;

/** OFLAG_COPIED in the high word: the cluster (or L2 table) has refcount exactly one. */
export const HI_COPIED = hiWord(OFLAG_COPIED);
/** OFLAG_COMPRESSED in the high word. */
export const HI_COMPRESSED = hiWord(OFLAG_COMPRESSED);
/** OFLAG_ZERO in the low word (standard L2 entries without extended L2). */
export const LO_ZERO = loWord(OFLAG_ZERO);
const L2_OFF_HI = hiWord(L2E_OFFSET_MASK);
const L2_OFF_LO = loWord(L2E_OFFSET_MASK);
const L1_OFF_HI = hiWord(L1E_OFFSET_MASK);
const L1_OFF_LO = loWord(L1E_OFFSET_MASK);
const REFT_OFF_HI = hiWord(REFT_OFFSET_MASK);
const REFT_OFF_LO = loWord(REFT_OFFSET_MASK);
const L2_RES_HI = hiWord(L2E_STD_RESERVED_MASK);
const L2_RES_LO = loWord(L2E_STD_RESERVED_MASK);
const L1_RES_HI = hiWord(L1E_RESERVED_MASK);
const L1_RES_LO = loWord(L1E_RESERVED_MASK);
const REFT_RES_LO = loWord(REFT_RESERVED_MASK);
const BME_RES_HI = hiWord(BME_RESERVED_MASK);
const BME_RES_LO = loWord(BME_RESERVED_MASK);
const BME_OFF_HI = hiWord(BME_OFFSET_MASK);
const BME_OFF_LO = loWord(BME_OFFSET_MASK);
const BME_ONES_LO = loWord(BME_ALL_ONES);

/** Subclusters per cluster with extended L2 entries, and the bitmap with all of them set. */
export const SUBCLUSTERS = 32;
export const ALL_SUBCLUSTERS = 0xffffffff;

/** One L2 entry, split into 32-bit words (bigint arithmetic is kept off the hot path). */
export interface L2Entry {
  hi: number;
  lo: number;
  /** Extended L2: "reads as zero" bits (bitmap bits 32-63) and allocation bits (bitmap bits 0-31). */
  zeroBits: number;
  allocBits: number;
}

/** qemu's QCow2ClusterType, decided from an entry's words (classify()). */
export const ClusterType = { Unallocated: 0, ZeroPlain: 1, ZeroAlloc: 2, Normal: 3, Compressed: 4 } as const;
export type ClusterType = (typeof ClusterType)[keyof typeof ClusterType];

/** The host offset of a standard L2 entry (bits 9-55); meaningless for compressed entries. */
export function hostOffset(hi: number, lo: number): number {
  return (hi & L2_OFF_HI) * TWO32 + ((lo & L2_OFF_LO) >>> 0);
}

/** The L2 table offset of an L1 entry (bits 9-55). */
export function l1Offset(hi: number, lo: number): number {
  return (hi & L1_OFF_HI) * TWO32 + ((lo & L1_OFF_LO) >>> 0);
}

/** The refcount block offset of a refcount table entry (bits 9-63). */
export function reftableOffset(hi: number, lo: number): number {
  return ((hi & REFT_OFF_HI) >>> 0) * TWO32 + ((lo & REFT_OFF_LO) >>> 0);
}

/** The data cluster offset of a bitmap table entry (bits 9-55). */
export function bitmapEntryOffset(hi: number, lo: number): number {
  return (hi & BME_OFF_HI) * TWO32 + ((lo & BME_OFF_LO) >>> 0);
}

export function isCompressedEntry(hi: number): boolean {
  return (hi & HI_COMPRESSED) !== 0;
}

export function isCopiedEntry(hi: number): boolean {
  return (hi & HI_COPIED) !== 0;
}

/** The zero flag of a standard entry (ignored with extended L2 entries, where the bitmap says it). */
export function hasZeroFlag(lo: number): boolean {
  return (lo & LO_ZERO) !== 0;
}

/**
 * The type of an L2 entry (qcow2_get_cluster_type()): compressed, a zero cluster with or without a host
 * cluster (standard entries only: extended L2 entries keep zeroes in the bitmap), normal or unallocated.
 * With an external data file, an entry without an offset but with the COPIED flag maps its cluster 1:1.
 */
export function classify(hi: number, lo: number, extendedL2: boolean, dataFile = false): ClusterType {
  if (hi & HI_COMPRESSED) return ClusterType.Compressed;
  const off = hostOffset(hi, lo);
  if (lo & LO_ZERO && !extendedL2) return off ? ClusterType.ZeroAlloc : ClusterType.ZeroPlain;
  if (off === 0) return dataFile && hi & HI_COPIED ? ClusterType.Normal : ClusterType.Unallocated;
  return ClusterType.Normal;
}

/** Reserved bits set in a standard (uncompressed) L2 entry. */
export function l2ReservedBits(hi: number, lo: number): boolean {
  return (hi & L2_RES_HI) !== 0 || (lo & L2_RES_LO) !== 0;
}

export function l1ReservedBits(hi: number, lo: number): boolean {
  return (hi & L1_RES_HI) !== 0 || (lo & L1_RES_LO) !== 0;
}

export function reftableReservedBits(lo: number): boolean {
  return (lo & REFT_RES_LO) !== 0;
}

/** A bitmap table entry that is damaged: reserved bits, or "all ones" / an unaligned offset on an allocated entry. */
export function badBitmapEntry(hi: number, lo: number, clusterSize: number): boolean {
  const offset = bitmapEntryOffset(hi, lo);
  return (hi & BME_RES_HI) !== 0 || (lo & BME_RES_LO) !== 0 || (offset !== 0 && ((lo & BME_ONES_LO) !== 0 || offset % clusterSize !== 0));
}

/** Lower-case hex of a 64-bit entry given as two 32-bit halves (qemu's %PRIx64). */
export function hex64(hi: number, lo: number): string {
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);
}

// ---------------------------------------------------------------- L2 entries in a table

export function be32(b: Uint8Array, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}

export function putBe32(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}

/** Entry `index` of an L2 table (big-endian words read by hand: no DataView per entry on the hot path of map and read). */
export function readEntry(table: Uint8Array, index: number, extendedL2: boolean): L2Entry {
  const p = index * (extendedL2 ? 16 : 8);
  return {
    hi: be32(table, p),
    lo: be32(table, p + 4),
    zeroBits: extendedL2 ? be32(table, p + 8) : 0,
    allocBits: extendedL2 ? be32(table, p + 12) : 0,
  };
}

export function putEntry(table: Uint8Array, index: number, e: L2Entry, extendedL2: boolean): void {
  const p = index * (extendedL2 ? 16 : 8);
  putBe32(table, p, e.hi);
  putBe32(table, p + 4, e.lo);
  if (extendedL2) {
    putBe32(table, p + 8, e.zeroBits);
    putBe32(table, p + 12, e.allocBits);
  }
}

/** The host offset an L2 entry holds (standard entries). */
export function hostOf(e: L2Entry): number {
  return hostOffset(e.hi, e.lo);
}

export function entryBig(e: L2Entry): bigint {
  return (BigInt(e.hi >>> 0) << 32n) | BigInt(e.lo >>> 0);
}

/** The words of a 64-bit entry (a compressed cluster descriptor from encodeCompressedEntry). */
export function fromBig(v: bigint): L2Entry {
  return { hi: Number(v >> 32n), lo: Number(v & 0xffffffffn), zeroBits: 0, allocBits: 0 };
}

/** A standard entry for the host cluster at `host`, exclusively owned (COPIED), with the zero flag if asked. */
export function normalEntry(host: number, zeroBits = 0, allocBits = 0, zeroFlag = false): L2Entry {
  return { hi: (Math.floor(host / TWO32) | HI_COPIED) >>> 0, lo: ((host % TWO32) | (zeroFlag ? LO_ZERO : 0)) >>> 0, zeroBits, allocBits };
}

/** An entry with no host cluster that reads as zeros: the zero flag, or all subclusters zero with extended L2. */
export function zeroEntry(extendedL2: boolean): L2Entry {
  return extendedL2 ? { hi: 0, lo: 0, zeroBits: ALL_SUBCLUSTERS, allocBits: 0 } : { hi: 0, lo: LO_ZERO, zeroBits: 0, allocBits: 0 };
}

export const EMPTY_ENTRY: Readonly<L2Entry> = { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 };

// ---------------------------------------------------------------- subcluster bitmaps (extended L2)

/** Subclusters touched by the byte range [a, b) of a cluster. */
export function touchedMask(a: number, b: number, subclusterSize: number): number {
  const s0 = Math.floor(a / subclusterSize);
  const s1 = Math.floor((b - 1) / subclusterSize);
  let m = 0;
  for (let s = s0; s <= s1; s++) m |= 1 << s;
  return m >>> 0;
}

/** Whether subcluster `s` of an extended entry reads as zero, holds data, or is unallocated. */
export function subclusterKind(e: L2Entry, s: number): 'zero' | 'data' | 'unallocated' {
  return (e.zeroBits >>> s) & 1 ? 'zero' : (e.allocBits >>> s) & 1 ? 'data' : 'unallocated';
}
