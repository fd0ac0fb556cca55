/**
 * The on-disk structures of VHD (Virtual PC, Hyper-V before VHDX, Azure; qemu's `vpc`), all big-endian: the
 * 512-byte footer (at the end of every image, and copied to offset 0 of dynamic and differencing images), the
 * 1024-byte dynamic disk header ("cxsparse") with its parent fields and eight parent locators, and the BAT.
 * Pure codecs: no I/O. Offsets follow Microsoft's "Virtual Hard Disk Image Format Specification" and qemu's
 * block/vpc.c; the rules for the size the guest sees are qemu's (virtualSizeOf).
 */
import { DiskError } from '../../block/errors';
import { view } from '../../block/bytes';

export const FOOTER_SIZE = 512;
export const HEADER_SIZE = 1024;
export const SECTOR = 512;
export const FOOTER_COOKIE = 'conectix';
export const HEADER_COOKIE = 'cxsparse';
export const DISK_FIXED = 2;
export const DISK_DYNAMIC = 3;
export const DISK_DIFFERENCING = 4;
/** A BAT entry of a block that is not allocated. */
export const BAT_UNUSED = 0xffffffff;
/** qemu's default (and only) block size for new images: 2 MiB. */
export const DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024;
/** Seconds from the Unix epoch to 2000-01-01T00:00:00Z, where VHD time stamps count from. */
export const VHD_EPOCH = 946684800;
/** The largest geometry, 65535 x 16 x 255: qemu reads such an image's size from current_size. */
export const MAX_CHS_SECTORS = 65535 * 16 * 255;
/** The largest disk qemu opens or makes: 2040 GiB (0xff000000 sectors). */
export const MAX_SECTORS = 0xff000000;
/** Platform codes of parent locators. */
export const LOCATOR_W2RU = 0x57327275; // 'W2ru': relative Windows path, UTF-16LE
export const LOCATOR_W2KU = 0x57326b75; // 'W2ku': absolute Windows path, UTF-16LE
export const LOCATOR_WI2R = 0x57693272; // 'Wi2r': relative path, deprecated (ANSI)
export const LOCATOR_WI2K = 0x5769326b; // 'Wi2k': absolute path, deprecated (ANSI)
export const LOCATOR_MAC = 0x4d616320; // 'Mac ': a Mac OS alias blob (not followable here)
export const LOCATOR_MACX = 0x4d616358; // 'MacX': a file URL, UTF-8

const ascii = (buf: Uint8Array, at: number, n: number) => String.fromCharCode(...buf.subarray(at, at + n));
const putAscii = (buf: Uint8Array, at: number, s: string) => {
  for (let i = 0; i < s.length; i++) buf[at + i] = s.charCodeAt(i) & 0xff;
};

/** The one's complement of the byte sum, skipping the 4 checksum bytes at `skip` (VHD's footer and header checksum). */
export function vhdChecksum(buf: Uint8Array, skip: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < skip || i >= skip + 4) sum += buf[i];
  return ~sum >>> 0;
}

export interface Footer {
  features: number;
  version: number;
  /** Offset of the dynamic header; all ones (2^64 - 1) for a fixed disk, kept as the bigint it is. */
  dataOffset: bigint;
  /** Seconds since 2000-01-01 UTC. */
  timestamp: number;
  creatorApp: string; // four characters: 'vpc ', 'qemu', 'qem2', 'win ', 'd2v ', 'tap\0', 'CTXS'
  creatorVersion: number;
  creatorOs: string; // 'Wi2k', 'Mac '
  originalSize: bigint;
  currentSize: bigint;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  diskType: number;
  checksum: number;
  /** The 16 bytes of the disk's unique id, as hex text in byte order (a child names its parent by it). */
  uuid: string;
  savedState: number;
}

/** Decodes a footer; undefined when the cookie is not "conectix". The checksum is returned as stored (see footerChecksumOk). */
export function parseFooter(buf: Uint8Array): Footer | undefined {
  if (buf.length < FOOTER_SIZE || ascii(buf, 0, 8) !== FOOTER_COOKIE) return undefined;
  const v = view(buf);
  return {
    features: v.getUint32(8),
    version: v.getUint32(12),
    dataOffset: v.getBigUint64(16),
    timestamp: v.getUint32(24),
    creatorApp: ascii(buf, 28, 4),
    creatorVersion: v.getUint32(32),
    creatorOs: ascii(buf, 36, 4),
    originalSize: v.getBigUint64(40),
    currentSize: v.getBigUint64(48),
    cylinders: v.getUint16(56),
    heads: buf[58],
    sectorsPerTrack: buf[59],
    diskType: v.getUint32(60),
    checksum: v.getUint32(64),
    uuid: uuidText(buf, 68),
    savedState: buf[84],
  };
}

/** True when the footer's stored checksum matches its bytes. */
export function footerChecksumOk(buf: Uint8Array): boolean {
  return view(buf).getUint32(64) === vhdChecksum(buf.subarray(0, FOOTER_SIZE), 64);
}

/** Encodes a footer with a fresh checksum (the stored `checksum` field is ignored). */
export function serializeFooter(f: Footer): Uint8Array {
  const buf = new Uint8Array(FOOTER_SIZE);
  const v = view(buf);
  putAscii(buf, 0, FOOTER_COOKIE);
  v.setUint32(8, f.features);
  v.setUint32(12, f.version);
  v.setBigUint64(16, f.dataOffset);
  v.setUint32(24, f.timestamp >>> 0);
  putAscii(buf, 28, f.creatorApp.padEnd(4, ' ').slice(0, 4));
  v.setUint32(32, f.creatorVersion);
  putAscii(buf, 36, f.creatorOs.padEnd(4, ' ').slice(0, 4));
  v.setBigUint64(40, f.originalSize);
  v.setBigUint64(48, f.currentSize);
  v.setUint16(56, f.cylinders);
  buf[58] = f.heads;
  buf[59] = f.sectorsPerTrack;
  v.setUint32(60, f.diskType);
  putUuid(buf, 68, f.uuid);
  buf[84] = f.savedState;
  v.setUint32(64, vhdChecksum(buf, 64));
  return buf;
}

export interface ParentLocator {
  platformCode: number;
  /** Bytes reserved for the locator's data (the spec says sectors; Windows writes bytes; see locatorSpaceBytes). */
  dataSpace: number;
  dataLength: number;
  dataOffset: number;
}

export interface DynamicHeader {
  /** Next structure; all ones (qemu writes 64 bits of ones, as Microsoft's tools expect). */
  dataOffset: bigint;
  tableOffset: bigint;
  version: number;
  maxTableEntries: number;
  blockSize: number;
  checksum: number;
  parentUuid: string;
  parentTimestamp: number;
  /** The parent's file name, from its UTF-16BE field (terminated by the first NUL). */
  parentName: string;
  locators: ParentLocator[];
}

const LOCATORS_AT = 576;

/** Decodes a dynamic disk header; undefined when the cookie is not "cxsparse". */
export function parseDynamicHeader(buf: Uint8Array): DynamicHeader | undefined {
  if (buf.length < HEADER_SIZE || ascii(buf, 0, 8) !== HEADER_COOKIE) return undefined;
  const v = view(buf);
  const locators: ParentLocator[] = [];
  for (let i = 0; i < 8; i++) {
    const at = LOCATORS_AT + i * 24;
    const off = v.getBigUint64(at + 16);
    locators.push({
      platformCode: v.getUint32(at),
      dataSpace: v.getUint32(at + 4),
      dataLength: v.getUint32(at + 8),
      dataOffset: off > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(off),
    });
  }
  return {
    dataOffset: v.getBigUint64(8),
    tableOffset: v.getBigUint64(16),
    version: v.getUint32(24),
    maxTableEntries: v.getUint32(28),
    blockSize: v.getUint32(32),
    checksum: v.getUint32(36),
    parentUuid: uuidText(buf, 40),
    parentTimestamp: v.getUint32(56),
    parentName: decodeUtf16(buf.subarray(64, 576), false),
    locators,
  };
}

export function headerChecksumOk(buf: Uint8Array): boolean {
  return view(buf).getUint32(36) === vhdChecksum(buf.subarray(0, HEADER_SIZE), 36);
}

/** Encodes a dynamic header with a fresh checksum. */
export function serializeDynamicHeader(h: DynamicHeader): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE);
  const v = view(buf);
  putAscii(buf, 0, HEADER_COOKIE);
  v.setBigUint64(8, h.dataOffset);
  v.setBigUint64(16, h.tableOffset);
  v.setUint32(24, h.version);
  v.setUint32(28, h.maxTableEntries);
  v.setUint32(32, h.blockSize);
  putUuid(buf, 40, h.parentUuid);
  v.setUint32(56, h.parentTimestamp >>> 0);
  const name = encodeUtf16(h.parentName, false);
  if (name.length > 512) throw new DiskError('EINVAL', `the parent's file name '${h.parentName}' is longer than the 256 characters a VHD header holds`);
  buf.set(name, 64);
  h.locators.slice(0, 8).forEach((l, i) => {
    const at = LOCATORS_AT + i * 24;
    v.setUint32(at, l.platformCode);
    v.setUint32(at + 4, l.dataSpace);
    v.setUint32(at + 8, l.dataLength);
    v.setBigUint64(at + 16, BigInt(l.dataOffset));
  });
  v.setUint32(36, vhdChecksum(buf, 36));
  return buf;
}

/**
 * The bytes a locator reserves. The spec counts data space in sectors, Windows and Xen write bytes: like
 * libvhd, a value below 512 is taken as sectors, a multiple of 512 as bytes.
 */
export function locatorSpaceBytes(l: ParentLocator): number {
  return l.dataSpace < SECTOR ? l.dataSpace * SECTOR : l.dataSpace;
}

/** The four-character text of a platform code ('W2ru'). */
export function platformName(code: number): string {
  return String.fromCharCode((code >>> 24) & 0xff, (code >>> 16) & 0xff, (code >>> 8) & 0xff, code & 0xff);
}

/** Text of a locator's data: UTF-16LE for the W2 codes, UTF-8 for MacX and the deprecated ANSI codes. */
export function decodeLocatorData(code: number, data: Uint8Array): string {
  if (code === LOCATOR_W2RU || code === LOCATOR_W2KU) return decodeUtf16(data, true);
  const s = new TextDecoder().decode(data);
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}

export function encodeLocatorData(code: number, text: string): Uint8Array {
  if (code === LOCATOR_W2RU || code === LOCATOR_W2KU) return encodeUtf16(text, true);
  return new TextEncoder().encode(text);
}

/** UTF-16 text up to the first NUL code unit. */
export function decodeUtf16(buf: Uint8Array, littleEndian: boolean): string {
  const v = view(buf);
  let s = '';
  for (let i = 0; i + 1 < buf.length; i += 2) {
    const c = v.getUint16(i, littleEndian);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

export function encodeUtf16(text: string, littleEndian: boolean): Uint8Array {
  const buf = new Uint8Array(text.length * 2);
  const v = view(buf);
  for (let i = 0; i < text.length; i++) v.setUint16(i * 2, text.charCodeAt(i), littleEndian);
  return buf;
}

function uuidText(buf: Uint8Array, at: number): string {
  const h = Array.from(buf.subarray(at, at + 16), (b) => b.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function putUuid(buf: Uint8Array, at: number, text: string): void {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new DiskError('EINVAL', `'${text}' is not a UUID`);
  for (let i = 0; i < 16; i++) buf[at + i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
}

export const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

/** Bytes of the sector bitmap in front of each block: one bit per sector, rounded up to whole sectors. */
export function bitmapSize(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}

/** Whether a block's sector bitmap marks sector `s` (MSB first: bit 7 of byte 0 is sector 0). */
export function bitmapBit(bitmap: Uint8Array, s: number): boolean {
  return (bitmap[s >>> 3] & (0x80 >>> (s & 7))) !== 0;
}

export function setBitmapBits(bitmap: Uint8Array, from: number, to: number): void {
  for (let s = from; s < to; s++) bitmap[s >>> 3] |= 0x80 >>> (s & 7);
}

/**
 * Whether qemu takes the size the guest sees from current_size rather than from the CHS geometry: for the
 * creators known to mean current_size (Hyper-V 'win ', qemu's force_size 'qem2', Disk2vhd 'd2v ', XenServer
 * 'tap\0', XenConverter 'CTXS'), and for any image whose geometry is the largest one (65535 x 16 x 255),
 * whose CHS product would cut the disk short.
 */
export function usesCurrentSize(f: Pick<Footer, 'creatorApp' | 'cylinders' | 'heads' | 'sectorsPerTrack'>): boolean {
  if (['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'].includes(f.creatorApp)) return true;
  return f.cylinders * f.heads * f.sectorsPerTrack === MAX_CHS_SECTORS;
}

/** The size the guest sees, in bytes, as qemu computes it (whole sectors). */
export function virtualSizeOf(f: Footer): number {
  if (!usesCurrentSize(f)) return f.cylinders * f.heads * f.sectorsPerTrack * SECTOR;
  const cur = f.currentSize > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(f.currentSize);
  return Math.floor(cur / SECTOR) * SECTOR;
}

/** A VHD time stamp (seconds since 2000) for a Unix time in seconds. */
export function vhdTime(unixSeconds: number): number {
  return Math.max(0, Math.floor(unixSeconds) - VHD_EPOCH) >>> 0;
}

/** An ISO date for a VHD time stamp. */
export function vhdTimeText(t: number): string {
  return new Date((t + VHD_EPOCH) * 1000).toISOString().replace('.000Z', 'Z');
}

export const DISK_TYPE_NAMES: Record<number, string> = { [DISK_FIXED]: 'fixed', [DISK_DYNAMIC]: 'dynamic', [DISK_DIFFERENCING]: 'differencing' };
