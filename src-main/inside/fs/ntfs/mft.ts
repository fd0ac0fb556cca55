/**
 * NTFS's on-disk records: the boot sector, MFT records (with their update-sequence fixups), attributes and
 * runlists. Pure codecs over byte arrays; every offset and length inside a record is checked against it.
 */
import { DiskError } from '../../../block/errors';

export interface NtfsBoot {
  bytesPerSector: number;
  clusterSize: number;
  totalSectors: number;
  mftLcn: number;
  recordSize: number;
  indexBlockSize: number;
  serial: bigint;
}

export function parseNtfsBoot(b: Uint8Array): NtfsBoot | undefined {
  if (b.length < 512 || new TextDecoder('latin1').decode(b.subarray(3, 11)) !== 'NTFS    ') return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const bytesPerSector = v.getUint16(11, true);
  const spc = b[13];
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) return undefined;
  // Above 0x80 the byte is a negative power of two (clusters of 128 KiB and more, Windows 10).
  const clusterSize = spc > 0x80 ? 2 ** (256 - spc) : spc * bytesPerSector;
  if (clusterSize === 0 || clusterSize > 2 << 20 || (clusterSize & (clusterSize - 1)) !== 0) return undefined;
  const sizeOf = (x: number) => (x >= 0x80 ? 2 ** (256 - x) : x * clusterSize);
  const recordSize = sizeOf(b[64]);
  const indexBlockSize = sizeOf(b[68]);
  if (recordSize < 256 || recordSize > 65536 || indexBlockSize < 256 || indexBlockSize > 65536) return undefined;
  const total = v.getBigUint64(40, true);
  const mftLcn = v.getBigUint64(48, true);
  if (total > BigInt(Number.MAX_SAFE_INTEGER) || mftLcn > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return { bytesPerSector, clusterSize, totalSectors: Number(total), mftLcn: Number(mftLcn), recordSize, indexBlockSize, serial: v.getBigUint64(72, true) };
}

/** Applies the update sequence array of a FILE or INDX record in place; false when a sector's check value does not match. */
export function applyFixups(rec: Uint8Array, sectorSize: number): boolean {
  const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const usaOff = v.getUint16(4, true);
  const usaCount = v.getUint16(6, true);
  if (usaCount === 0 || usaOff + usaCount * 2 > rec.length || (usaCount - 1) * sectorSize > rec.length) return false;
  const check = v.getUint16(usaOff, true);
  for (let i = 1; i < usaCount; i++) {
    const end = i * sectorSize - 2;
    if (v.getUint16(end, true) !== check) return false;
    v.setUint16(end, v.getUint16(usaOff + i * 2, true), true);
  }
  return true;
}

export interface Attribute {
  type: number;
  name: string;
  flags: number;
  nonResident: boolean;
  /** Resident: the value. */
  value?: Uint8Array;
  /** Non-resident: the runs, the sizes, the first VCN. */
  runs?: Run[];
  startVcn?: number;
  dataSize?: number;
  initSize?: number;
  compressionUnit?: number;
}

/** A run of clusters: `lcn` null is sparse. */
export interface Run {
  vcn: number;
  length: number;
  lcn: number | null;
}

export const ATTR_ATTRIBUTE_LIST = 0x20;
export const ATTR_VOLUME_NAME = 0x60;
export const ATTR_DATA = 0x80;
export const ATTR_INDEX_ROOT = 0x90;
export const ATTR_INDEX_ALLOCATION = 0xa0;
export const FLAG_COMPRESSED = 0x0001;
export const FLAG_ENCRYPTED = 0x4000;

export interface MftRecord {
  inUse: boolean;
  isDir: boolean;
  baseRef: number;
  attrs: Attribute[];
}

/** Parses a FILE record (fixups already applied). */
export function parseRecord(rec: Uint8Array, what: string): MftRecord {
  if (new TextDecoder('latin1').decode(rec.subarray(0, 4)) !== 'FILE') throw new DiskError('ECORRUPT', `NTFS: ${what} is not a FILE record`);
  const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const flags = v.getUint16(22, true);
  const used = Math.min(v.getUint32(24, true), rec.length);
  const attrs: Attribute[] = [];
  let at = v.getUint16(20, true);
  while (at + 16 <= used) {
    const type = v.getUint32(at, true);
    if (type === 0xffffffff) break;
    const len = v.getUint32(at + 4, true);
    if (len < 16 || at + len > used) throw new DiskError('ECORRUPT', `NTFS: ${what} has an attribute that runs past the record's end`);
    const a = rec.subarray(at, at + len);
    const av = new DataView(a.buffer, a.byteOffset, a.byteLength);
    const nameLen = a[9];
    const nameOff = av.getUint16(10, true);
    if (nameOff + nameLen * 2 > len) throw new DiskError('ECORRUPT', `NTFS: ${what} has an attribute name past its end`);
    const name = new TextDecoder('utf-16le').decode(a.subarray(nameOff, nameOff + nameLen * 2));
    const attr: Attribute = { type, name, flags: av.getUint16(12, true), nonResident: a[8] !== 0 };
    if (!attr.nonResident) {
      const vlen = av.getUint32(16, true);
      const voff = av.getUint16(20, true);
      if (voff + vlen > len) throw new DiskError('ECORRUPT', `NTFS: ${what} has a resident value past its attribute's end`);
      attr.value = a.subarray(voff, voff + vlen);
    } else {
      if (len < 64) throw new DiskError('ECORRUPT', `NTFS: ${what} has a truncated non-resident attribute`);
      const n = (o: number) => Number(BigInt.asUintN(53, av.getBigUint64(o, true)));
      attr.startVcn = n(16);
      attr.compressionUnit = av.getUint16(34, true);
      attr.dataSize = n(48);
      attr.initSize = n(56);
      attr.runs = parseRuns(a.subarray(av.getUint16(32, true)), attr.startVcn, what);
    }
    attrs.push(attr);
    at += len;
  }
  return { inUse: (flags & 1) !== 0, isDir: (flags & 2) !== 0, baseRef: Number(v.getBigUint64(32, true) & 0xffffffffffffn), attrs };
}

/** Decodes a runlist: (length, lcn delta) pairs of variable width; a delta of width 0 is a sparse run. */
export function parseRuns(b: Uint8Array, startVcn: number, what: string): Run[] {
  const runs: Run[] = [];
  let at = 0;
  let lcn = 0;
  let vcn = startVcn;
  while (at < b.length && b[at] !== 0) {
    const lenBytes = b[at] & 15;
    const offBytes = b[at] >> 4;
    if (lenBytes === 0 || lenBytes > 8 || offBytes > 8 || at + 1 + lenBytes + offBytes > b.length) throw new DiskError('ECORRUPT', `NTFS: ${what} has a malformed runlist`);
    let length = 0;
    for (let i = lenBytes - 1; i >= 0; i--) length = length * 256 + b[at + 1 + i];
    let delta = 0;
    if (offBytes) {
      let d = 0n;
      for (let i = offBytes - 1; i >= 0; i--) d = (d << 8n) | BigInt(b[at + 1 + lenBytes + i]);
      delta = Number(BigInt.asIntN(offBytes * 8, d));
      lcn += delta;
    }
    if (!Number.isSafeInteger(length) || length <= 0 || lcn < 0 || !Number.isSafeInteger(lcn)) throw new DiskError('ECORRUPT', `NTFS: ${what} has an impossible run`);
    runs.push({ vcn, length, lcn: offBytes ? lcn : null });
    vcn += length;
    at += 1 + lenBytes + offBytes;
    if (runs.length > 1 << 20) throw new DiskError('ECORRUPT', `NTFS: ${what} has an absurd runlist`);
  }
  return runs;
}

/** A $FILE_NAME value: the parent, the name, its namespace, and the times. */
export interface FileName {
  parent: number;
  name: string;
  namespace: number;
  mtime: number;
  size: number;
  isDir: boolean;
}

/** NTFS times are 100 ns units since 1601. */
export function ntfsTime(t: bigint): number {
  return Number(t / 10000n) - 11644473600000;
}

export function parseFileName(b: Uint8Array): FileName | undefined {
  if (b.length < 66) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const len = b[64];
  if (66 + len * 2 > b.length) return undefined;
  return {
    parent: Number(v.getBigUint64(0, true) & 0xffffffffffffn),
    mtime: ntfsTime(v.getBigUint64(16, true)),
    size: Number(BigInt.asUintN(53, v.getBigUint64(48, true))),
    isDir: (v.getUint32(56, true) & 0x10000000) !== 0,
    namespace: b[65],
    name: new TextDecoder('utf-16le').decode(b.subarray(66, 66 + len * 2)),
  };
}
