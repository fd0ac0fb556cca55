/**
 * VHDX on-disk structures (Microsoft's VHDX Format Specification 1.0): the file identifier, the two headers,
 * the region table, the metadata table and the metadata items that describe the virtual disk. Every number is
 * little-endian; GUIDs are stored mixed-endian (the first three fields little-endian, the last eight bytes as
 * they are). Pure codecs: no I/O here.
 */
import { readGuid, u64 as sharedU64, view, writeGuid } from '../../block/bytes';
import { corrupt } from '../../block/errors';

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const FILE_SIGNATURE = 'vhdxfile';
export const HEADER1_OFFSET = 64 * KiB;
export const HEADER2_OFFSET = 128 * KiB;
export const HEADER_SIZE = 4 * KiB;
export const REGION_TABLE1_OFFSET = 192 * KiB;
export const REGION_TABLE2_OFFSET = 256 * KiB;
export const REGION_TABLE_SIZE = 64 * KiB;
export const METADATA_TABLE_SIZE = 64 * KiB;
export const MAX_REGION_ENTRIES = 2047;
export const MAX_METADATA_ENTRIES = 2047;
export const BLOCK_SIZE_MIN = 1 * MiB;
export const BLOCK_SIZE_MAX = 256 * MiB;
/** The spec's largest virtual disk: 64 TiB. */
export const MAX_VIRTUAL_SIZE = 64 * 1024 * 1024 * MiB;

/** Signatures as little-endian numbers: "head", "regi", and "metadata" as 8 ASCII bytes. */
export const HEADER_SIGNATURE = 0x64616568;
export const REGION_SIGNATURE = 0x69676572;
export const METADATA_SIGNATURE = 'metadata';

export const REGION_ENTRY_REQUIRED = 1;
export const META_IS_USER = 1 << 0;
export const META_IS_VIRTUAL_DISK = 1 << 1;
export const META_IS_REQUIRED = 1 << 2;
export const PARAMS_LEAVE_BLOCKS_ALLOCATED = 1 << 0;
export const PARAMS_HAS_PARENT = 1 << 1;

// Region and metadata item GUIDs, in their canonical text form.
export const BAT_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e';
export const FILE_PARAMETERS_GUID = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const VIRTUAL_DISK_SIZE_GUID = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const PAGE83_GUID = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const LOGICAL_SECTOR_SIZE_GUID = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const PHYSICAL_SECTOR_SIZE_GUID = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const PARENT_LOCATOR_GUID = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';
/** The parent locator type for a VHDX parent. */
export const PARENT_LOCATOR_VHDX_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';
export const ZERO_GUID = '00000000-0000-0000-0000-000000000000';

// ---- CRC-32C (Castagnoli), the checksum of headers, region tables and log entries ----

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** The checksum of a structure whose own 4-byte checksum field at `at` counts as zero. */
export function checksumWithHole(buf: Uint8Array, at: number): number {
  const copy = new Uint8Array(buf); // a copy even of a Buffer, whose slice() would share the bytes
  copy.fill(0, at, at + 4);
  return crc32c(copy);
}

export function checksumValid(buf: Uint8Array, at: number): boolean {
  return view(buf).getUint32(at, true) === checksumWithHole(buf, at);
}

/** Writes the checksum of `buf` into its field at `at`. */
export function setChecksum(buf: Uint8Array, at: number): void {
  view(buf).setUint32(at, checksumWithHole(buf, at), true);
}

// GUIDs are read and written by the shared helpers (mixed-endian, as Microsoft stores them).
export { readGuid, writeGuid };

const u64 = (v: DataView, at: number, what: string, path: string): number => sharedU64(v, at, true, `vhdx ${what}`, path);

// ---- the file identifier ----

export function probeVhdx(head: Uint8Array): number {
  if (head.length < 8) return 0;
  for (let i = 0; i < 8; i++) if (head[i] !== FILE_SIGNATURE.charCodeAt(i)) return 0;
  return 100;
}

/** The creator string (UTF-16LE, up to 256 characters) that follows the signature. */
export function parseCreator(buf: Uint8Array): string {
  const end = Math.min(buf.length, 8 + 512);
  const chars = buf.subarray(8, end);
  let n = 0;
  while (n + 1 < chars.length && (chars[n] !== 0 || chars[n + 1] !== 0)) n += 2;
  return new TextDecoder('utf-16le').decode(chars.subarray(0, n));
}

// ---- headers ----

export interface VhdxHeader {
  sequenceNumber: bigint;
  fileWriteGuid: string;
  dataWriteGuid: string;
  logGuid: string;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: number;
}

/** Decodes one 4 KiB header; returns undefined when its signature, checksum or version is wrong (as the spec says). */
export function parseHeader(buf: Uint8Array, path: string): VhdxHeader | undefined {
  if (buf.length < HEADER_SIZE) return undefined;
  const v = view(buf);
  if (v.getUint32(0, true) !== HEADER_SIGNATURE) return undefined;
  if (!checksumValid(buf.subarray(0, HEADER_SIZE), 4)) return undefined;
  const version = v.getUint16(66, true);
  if (version !== 1) return undefined;
  return {
    sequenceNumber: v.getBigUint64(8, true),
    fileWriteGuid: readGuid(buf, 16),
    dataWriteGuid: readGuid(buf, 32),
    logGuid: readGuid(buf, 48),
    logVersion: v.getUint16(64, true),
    version,
    logLength: v.getUint32(68, true),
    logOffset: u64(v, 72, 'log offset', path),
  };
}

/** Encodes a header into 4 KiB with its checksum. */
export function serializeHeader(h: VhdxHeader): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE);
  const v = view(buf);
  v.setUint32(0, HEADER_SIGNATURE, true);
  v.setBigUint64(8, h.sequenceNumber, true);
  writeGuid(buf, 16, h.fileWriteGuid);
  writeGuid(buf, 32, h.dataWriteGuid);
  writeGuid(buf, 48, h.logGuid);
  v.setUint16(64, h.logVersion, true);
  v.setUint16(66, h.version, true);
  v.setUint32(68, h.logLength, true);
  v.setBigUint64(72, BigInt(h.logOffset), true);
  setChecksum(buf, 4);
  return buf;
}

/**
 * Picks the current header: the valid one, or of two valid ones the one with the higher sequence number.
 * Two valid headers with the same number are only accepted when they are identical (Disk2VHD writes those).
 */
export function chooseHeader(h1: Uint8Array, h2: Uint8Array, path: string): { header: VhdxHeader; index: 0 | 1 } {
  const a = parseHeader(h1, path);
  const b = parseHeader(h2, path);
  if (a && !b) return { header: a, index: 0 };
  if (b && !a) return { header: b, index: 1 };
  if (!a || !b) throw corrupt(`${path}: no valid VHDX header found (both copies fail their checksum)`, path);
  if (a.sequenceNumber > b.sequenceNumber) return { header: a, index: 0 };
  if (b.sequenceNumber > a.sequenceNumber) return { header: b, index: 1 };
  if (Buffer.compare(h1.subarray(0, 80), h2.subarray(0, 80)) === 0) return { header: a, index: 0 };
  throw corrupt(`${path}: the two VHDX headers differ but have the same sequence number`, path);
}

// ---- region table ----

export interface RegionEntry {
  guid: string;
  fileOffset: number;
  length: number;
  required: boolean;
}

export function parseRegionTable(buf: Uint8Array, path: string, fileSize: number): RegionEntry[] {
  if (buf.length < REGION_TABLE_SIZE) throw corrupt(`${path}: vhdx region table is truncated`, path);
  const v = view(buf);
  if (v.getUint32(0, true) !== REGION_SIGNATURE) throw corrupt(`${path}: vhdx region table has a bad signature`, path);
  if (!checksumValid(buf.subarray(0, REGION_TABLE_SIZE), 4)) throw corrupt(`${path}: vhdx region table fails its checksum`, path);
  const count = v.getUint32(8, true);
  if (count > MAX_REGION_ENTRIES) throw corrupt(`${path}: vhdx region table has too many entries (${count})`, path);
  const entries: RegionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + i * 32;
    const e: RegionEntry = {
      guid: readGuid(buf, at),
      fileOffset: u64(v, at + 16, 'region offset', path),
      length: v.getUint32(at + 24, true),
      required: (v.getUint32(at + 28, true) & REGION_ENTRY_REQUIRED) !== 0,
    };
    if (e.fileOffset % MiB !== 0 || e.length % MiB !== 0 || e.fileOffset < MiB) {
      throw corrupt(`${path}: vhdx region ${e.guid} is not aligned to 1 MiB`, path);
    }
    if (e.fileOffset + e.length > fileSize) throw corrupt(`${path}: vhdx region ${e.guid} lies past the end of the file`, path);
    for (const o of entries) {
      if (e.fileOffset < o.fileOffset + o.length && o.fileOffset < e.fileOffset + e.length) {
        throw corrupt(`${path}: vhdx regions ${o.guid} and ${e.guid} overlap`, path);
      }
    }
    if (entries.some((o) => o.guid === e.guid)) throw corrupt(`${path}: vhdx region ${e.guid} is listed twice`, path);
    entries.push(e);
  }
  return entries;
}

export function serializeRegionTable(entries: RegionEntry[]): Uint8Array {
  const buf = new Uint8Array(REGION_TABLE_SIZE);
  const v = view(buf);
  v.setUint32(0, REGION_SIGNATURE, true);
  v.setUint32(8, entries.length, true);
  entries.forEach((e, i) => {
    const at = 16 + i * 32;
    writeGuid(buf, at, e.guid);
    v.setBigUint64(at + 16, BigInt(e.fileOffset), true);
    v.setUint32(at + 24, e.length, true);
    v.setUint32(at + 28, e.required ? REGION_ENTRY_REQUIRED : 0, true);
  });
  setChecksum(buf, 4);
  return buf;
}

// ---- metadata table ----

export interface MetadataEntry {
  itemId: string;
  /** Offset from the start of the metadata region. */
  offset: number;
  length: number;
  isUser: boolean;
  isVirtualDisk: boolean;
  isRequired: boolean;
}

/** Decodes the metadata table; `regionLength` bounds every item. */
export function parseMetadataTable(buf: Uint8Array, path: string, regionLength: number): MetadataEntry[] {
  if (buf.length < 32) throw corrupt(`${path}: vhdx metadata table is truncated`, path);
  for (let i = 0; i < 8; i++) if (buf[i] !== METADATA_SIGNATURE.charCodeAt(i)) throw corrupt(`${path}: vhdx metadata table has a bad signature`, path);
  const v = view(buf);
  const count = v.getUint16(10, true);
  if (count > MAX_METADATA_ENTRIES || 32 + count * 32 > Math.min(buf.length, METADATA_TABLE_SIZE)) {
    throw corrupt(`${path}: vhdx metadata table has too many entries (${count})`, path);
  }
  const entries: MetadataEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = 32 + i * 32;
    const flags = v.getUint32(at + 24, true);
    const e: MetadataEntry = {
      itemId: readGuid(buf, at),
      offset: v.getUint32(at + 16, true),
      length: v.getUint32(at + 20, true),
      isUser: (flags & META_IS_USER) !== 0,
      isVirtualDisk: (flags & META_IS_VIRTUAL_DISK) !== 0,
      isRequired: (flags & META_IS_REQUIRED) !== 0,
    };
    if (e.length > 0 && (e.offset < METADATA_TABLE_SIZE || e.offset + e.length > regionLength)) {
      throw corrupt(`${path}: vhdx metadata item ${e.itemId} lies outside the metadata region`, path);
    }
    if (!e.isUser && entries.some((o) => o.itemId === e.itemId && !o.isUser)) throw corrupt(`${path}: vhdx metadata item ${e.itemId} is listed twice`, path);
    entries.push(e);
  }
  return entries;
}

export function serializeMetadataTable(entries: MetadataEntry[]): Uint8Array {
  const buf = new Uint8Array(METADATA_TABLE_SIZE);
  const v = view(buf);
  for (let i = 0; i < 8; i++) buf[i] = METADATA_SIGNATURE.charCodeAt(i);
  v.setUint16(10, entries.length, true);
  entries.forEach((e, i) => {
    const at = 32 + i * 32;
    writeGuid(buf, at, e.itemId);
    v.setUint32(at + 16, e.offset, true);
    v.setUint32(at + 20, e.length, true);
    v.setUint32(at + 24, (e.isUser ? META_IS_USER : 0) | (e.isVirtualDisk ? META_IS_VIRTUAL_DISK : 0) | (e.isRequired ? META_IS_REQUIRED : 0), true);
  });
  return buf;
}

// ---- metadata items ----

export interface FileParameters {
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
}

export function parseFileParameters(buf: Uint8Array, path: string): FileParameters {
  if (buf.length < 8) throw corrupt(`${path}: vhdx file parameters are truncated`, path);
  const v = view(buf);
  const blockSize = v.getUint32(0, true);
  const bits = v.getUint32(4, true);
  if (blockSize < BLOCK_SIZE_MIN || blockSize > BLOCK_SIZE_MAX || (blockSize & (blockSize - 1)) !== 0) {
    throw corrupt(`${path}: vhdx block size ${blockSize} is invalid (a power of two from 1 MiB to 256 MiB)`, path);
  }
  return { blockSize, leaveBlocksAllocated: (bits & PARAMS_LEAVE_BLOCKS_ALLOCATED) !== 0, hasParent: (bits & PARAMS_HAS_PARENT) !== 0 };
}

export function serializeFileParameters(p: FileParameters): Uint8Array {
  const buf = new Uint8Array(8);
  const v = view(buf);
  v.setUint32(0, p.blockSize, true);
  v.setUint32(4, (p.leaveBlocksAllocated ? PARAMS_LEAVE_BLOCKS_ALLOCATED : 0) | (p.hasParent ? PARAMS_HAS_PARENT : 0), true);
  return buf;
}

export function parseVirtualDiskSize(buf: Uint8Array, path: string): number {
  if (buf.length < 8) throw corrupt(`${path}: vhdx virtual disk size is truncated`, path);
  const size = u64(view(buf), 0, 'virtual disk size', path);
  if (size > MAX_VIRTUAL_SIZE) throw corrupt(`${path}: vhdx virtual disk size ${size} exceeds 64 TiB`, path);
  return size;
}

export function parseSectorSize(buf: Uint8Array, path: string, what: string): number {
  if (buf.length < 4) throw corrupt(`${path}: vhdx ${what} is truncated`, path);
  const n = view(buf).getUint32(0, true);
  if (n !== 512 && n !== 4096) throw corrupt(`${path}: vhdx ${what} ${n} is invalid (512 or 4096)`, path);
  return n;
}

/** The parent locator: a type GUID and key/value pairs in UTF-16LE (parent_linkage, relative_path, …). */
export interface ParentLocator {
  type: string;
  entries: Record<string, string>;
}

export function parseParentLocator(buf: Uint8Array, path: string): ParentLocator {
  if (buf.length < 20) throw corrupt(`${path}: vhdx parent locator is truncated`, path);
  const v = view(buf);
  const type = readGuid(buf, 0);
  const count = v.getUint16(18, true);
  if (20 + count * 12 > buf.length) throw corrupt(`${path}: vhdx parent locator has more entries than fit`, path);
  const dec = new TextDecoder('utf-16le');
  const entries: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const at = 20 + i * 12;
    const keyOff = v.getUint32(at, true);
    const valueOff = v.getUint32(at + 4, true);
    const keyLen = v.getUint16(at + 8, true);
    const valueLen = v.getUint16(at + 10, true);
    if (keyOff + keyLen > buf.length || valueOff + valueLen > buf.length) throw corrupt(`${path}: vhdx parent locator entry ${i} lies outside the locator`, path);
    entries[dec.decode(buf.subarray(keyOff, keyOff + keyLen))] = dec.decode(buf.subarray(valueOff, valueOff + valueLen));
  }
  return { type, entries };
}

export function serializeParentLocator(p: ParentLocator): Uint8Array {
  const pairs = Object.entries(p.entries).map(([k, val]) => [Buffer.from(k, 'utf16le'), Buffer.from(val, 'utf16le')] as const);
  const headerLen = 20 + pairs.length * 12;
  const total = headerLen + pairs.reduce((n, [k, val]) => n + k.length + val.length, 0);
  const buf = new Uint8Array(total);
  const v = view(buf);
  writeGuid(buf, 0, p.type);
  v.setUint16(18, pairs.length, true);
  let pos = headerLen;
  pairs.forEach(([k, val], i) => {
    const at = 20 + i * 12;
    v.setUint32(at, pos, true);
    buf.set(k, pos);
    pos += k.length;
    v.setUint32(at + 4, pos, true);
    buf.set(val, pos);
    pos += val.length;
    v.setUint16(at + 8, k.length, true);
    v.setUint16(at + 10, val.length, true);
  });
  return buf;
}

/** The parent's file name a reader should try first: relative path, then the Windows absolute path. */
export function parentFileName(p: ParentLocator): string | undefined {
  const e = p.entries;
  return e.relative_path ?? e.absolute_win32_path ?? e.volume_path;
}

/** The number of BAT entries: payload blocks plus, for differencing images, one bitmap entry per chunk. */
export function batEntries(virtualSize: number, blockSize: number, logicalSectorSize: number, hasParent: boolean): number {
  const chunkRatio = (2 ** 23 * logicalSectorSize) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  if (dataBlocks === 0) return 0;
  return hasParent ? Math.ceil(dataBlocks / chunkRatio) * (chunkRatio + 1) : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
}

// ---- BAT entries ----

/** Payload block states (the low 3 bits of a BAT entry). */
export const PAYLOAD_NOT_PRESENT = 0;
export const PAYLOAD_UNDEFINED = 1;
export const PAYLOAD_ZERO = 2;
export const PAYLOAD_UNMAPPED = 3;
/** qemu 0.95-era images wrote 5 for unmapped; readers accept it as unmapped. */
export const PAYLOAD_UNMAPPED_V095 = 5;
export const PAYLOAD_FULLY_PRESENT = 6;
export const PAYLOAD_PARTIALLY_PRESENT = 7;
/** The states in which a block reads as zeros whatever lies below (ZERO, and those qemu reads alike). */
export const ZERO_STATES: readonly number[] = [PAYLOAD_ZERO, PAYLOAD_UNDEFINED, PAYLOAD_UNMAPPED, PAYLOAD_UNMAPPED_V095];
/** Sector bitmap block states. */
export const SB_NOT_PRESENT = 0;
export const SB_PRESENT = 6;
/** A sector bitmap block is 1 MiB; each bit stands for one logical sector. */
export const SECTOR_BITMAP_SIZE = MiB;

export interface BatEntry {
  state: number;
  /** Byte offset in the file (FileOffsetMB × 1 MiB); 0 when the entry names none. */
  offset: number;
}

/** Decodes the 64-bit entry at `at`: state in bits 0–2, the file offset in MiB in bits 20–63. */
export function parseBatEntry(buf: Uint8Array, at: number): BatEntry {
  const v = view(buf);
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  // hi × 2^12 + lo >> 20 MiB; hi below 2^21 keeps the byte offset under 2^53, and no file is larger.
  const mb = hi * 4096 + (lo >>> 20);
  return { state: lo & 7, offset: hi >= 2 ** 21 ? Number.MAX_SAFE_INTEGER : mb * MiB };
}

export function serializeBatEntry(e: BatEntry, buf: Uint8Array, at: number): void {
  const mb = Math.floor(e.offset / MiB);
  const v = view(buf);
  v.setUint32(at, ((mb % 4096) * 2 ** 20 + (e.state & 7)) >>> 0, true);
  v.setUint32(at + 4, Math.floor(mb / 4096), true);
}

/** Payload blocks per sector bitmap block: 2^23 sectors are described by one 1 MiB bitmap. */
export function chunkRatio(blockSize: number, logicalSectorSize: number): number {
  return (2 ** 23 * logicalSectorSize) / blockSize;
}

/** The BAT index of payload block `block`: after every chunk of payload entries comes one bitmap entry. */
export function payloadBatIndex(block: number, ratio: number): number {
  return block + Math.floor(block / ratio);
}

/** The BAT index of the sector bitmap entry for chunk `chunk`. */
export function bitmapBatIndex(chunk: number, ratio: number): number {
  return chunk * (ratio + 1) + ratio;
}
