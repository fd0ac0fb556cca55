/**
 * VirtualBox VDI on-disk structures (VirtualBox's VDICore.h, qemu's block/vdi.c): a 512-byte header (a 64-byte
 * pre-header text, the signature and version, then the version 1.1 header), the block map (one little-endian
 * u32 per guest block: the index of its data block in the data area), then the data blocks. Pure codecs: no I/O.
 */
import { readGuid, SECTOR, view, writeGuid } from '../../block/bytes';
import { corrupt, DiskError } from '../../block/errors';
import { HOST_LITTLE_ENDIAN } from '../../block/table-scan';

export { SECTOR };
export const HEADER_SIZE = 512;
export const SIGNATURE = 0xbeda107f;
/** Version 1.1, the only one qemu reads (VirtualBox has written it since 2008). */
export const VERSION_1_1 = 0x00010001;
/** The header size VirtualBox writes for 1.1 (with the LCHS geometry); qemu-img writes 0x180, without it. */
export const HEADER_SIZE_1_1_PLUS = 400;
export const HEADER_SIZE_QEMU = 0x180;
export const BLOCK_SIZE = 1 << 20;

export const TYPE_DYNAMIC = 1;
export const TYPE_STATIC = 2;
export const TYPE_UNDO = 3;
export const TYPE_DIFFERENCING = 4;

/** A block never written: arbitrary content (qemu reads zeros; a differencing image reads its parent). */
export const UNALLOCATED = 0xffffffff;
/** A block discarded: reads as zeros, in a differencing image too. */
export const DISCARDED = 0xfffffffe;
export const isAllocated = (entry: number): boolean => entry < DISCARDED;

/**
 * qemu's limit: the block map is read in one piece of at most INT_MAX bytes once rounded up to a sector, so
 * at most (2^31 - 512) / 4 blocks, and a disk of at most that many MiB.
 */
export const MAX_BLOCKS = (2 ** 31 - SECTOR) / 4;
export const MAX_DISK_SIZE = MAX_BLOCKS * BLOCK_SIZE;

/** The pre-header texts writers put first; only informative (neither qemu nor VirtualBox checks it). */
export const TEXT_QEMU = '<<< QEMU VM Virtual Disk Image >>>\n';
export const KNOWN_TEXTS = [
  '<<< Oracle VM VirtualBox Disk Image >>>\n',
  '<<< Sun VirtualBox Disk Image >>>\n',
  '<<< Sun xVM VirtualBox Disk Image >>>\n',
  '<<< innotek VirtualBox Disk Image >>>\n',
  TEXT_QEMU,
];

export const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
  sectorSize: number;
}

export interface VdiHeader {
  /** The pre-header text, up to its first NUL. */
  text: string;
  signature: number;
  version: number;
  headerSize: number;
  imageType: number;
  imageFlags: number;
  description: string;
  /** File offset of the block map, in bytes. */
  offsetBmap: number;
  /** File offset of data block 0, in bytes. */
  offsetData: number;
  /** The legacy geometry (cylinders, heads, sectors) and the sector size qemu insists is 512. */
  legacy: Geometry;
  diskSize: number;
  blockSize: number;
  /** Bytes VirtualBox keeps before each block's data (always 0 in practice; qemu ignores the field). */
  blockExtra: number;
  blocksInImage: number;
  blocksAllocated: number;
  /** VirtualBox's uuidCreate: the image's identity, which a child's link UUID names. */
  uuidImage: string;
  /** VirtualBox's uuidModify: changed when the image is written (qemu sets it once, at create). */
  uuidLastSnap: string;
  /** VirtualBox's uuidLinkage: in a differencing image, the parent's image UUID. */
  uuidLink: string;
  /** VirtualBox's uuidParentModify: in a differencing image, the parent's last-modification UUID when linked. */
  uuidParent: string;
  /** The logical (BIOS) geometry, only in headers of 400 bytes or more. */
  lchs?: Geometry;
}

const TEXT_AT = 0;
const DESCRIPTION_AT = 0x54;
const DESCRIPTION_SIZE = 256;

function cString(buf: Uint8Array, at: number, size: number): string {
  const bytes = buf.subarray(at, at + size);
  const end = bytes.indexOf(0);
  return Buffer.from(bytes.subarray(0, end < 0 ? size : end)).toString('utf8');
}

function putCString(buf: Uint8Array, at: number, size: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length >= size) throw new DiskError('EINVAL', `'${text.slice(0, 40)}…' is longer than the ${size - 1} bytes a VDI header has room for`);
  buf.fill(0, at, at + size);
  buf.set(bytes, at);
}

function readGeometry(v: DataView, at: number): Geometry {
  return { cylinders: v.getUint32(at, true), heads: v.getUint32(at + 4, true), sectors: v.getUint32(at + 8, true), sectorSize: v.getUint32(at + 12, true) };
}

function writeGeometry(v: DataView, at: number, g: Geometry): void {
  v.setUint32(at, g.cylinders, true);
  v.setUint32(at + 4, g.heads, true);
  v.setUint32(at + 8, g.sectors, true);
  v.setUint32(at + 12, g.sectorSize, true);
}

/** 100 when the signature is at its place (qemu's probe), 0 otherwise. */
/**
 * Why an image that keeps extra data per block is not written (undefined for every other): the words both a
 * write (device allocate) and a discard refuse with, so that sparsify's dry run and the run say the same.
 */
export function blockExtraRefusal(h: VdiHeader): string | undefined {
  return h.blockExtra !== 0 ? `this VDI keeps ${h.blockExtra} bytes of extra data per block; such images are read but not written` : undefined;
}

export function probeVdi(head: Uint8Array): number {
  return head.length >= HEADER_SIZE && view(head).getUint32(0x40, true) === SIGNATURE ? 100 : 0;
}

/** Decodes the header's fields; nothing is checked here but that the bytes exist (see validateHeader). */
export function parseHeader(buf: Uint8Array, path: string): VdiHeader {
  if (buf.length < HEADER_SIZE) throw corrupt(`${path}: the VDI header is truncated (${buf.length} of ${HEADER_SIZE} bytes)`, path);
  const v = view(buf);
  const size = v.getBigUint64(0x170, true);
  const headerSize = v.getUint32(0x48, true);
  return {
    text: cString(buf, TEXT_AT, 0x40),
    signature: v.getUint32(0x40, true),
    version: v.getUint32(0x44, true),
    headerSize,
    imageType: v.getUint32(0x4c, true),
    imageFlags: v.getUint32(0x50, true),
    description: cString(buf, DESCRIPTION_AT, DESCRIPTION_SIZE),
    offsetBmap: v.getUint32(0x154, true),
    offsetData: v.getUint32(0x158, true),
    legacy: readGeometry(v, 0x15c),
    // Past 2^53 it cannot be a number; such a size fails validation as too large (qemu's limit is far below).
    diskSize: size > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(size),
    blockSize: v.getUint32(0x178, true),
    blockExtra: v.getUint32(0x17c, true),
    blocksInImage: v.getUint32(0x180, true),
    blocksAllocated: v.getUint32(0x184, true),
    uuidImage: readGuid(buf, 0x188),
    uuidLastSnap: readGuid(buf, 0x198),
    uuidLink: readGuid(buf, 0x1a8),
    uuidParent: readGuid(buf, 0x1b8),
    ...(headerSize >= HEADER_SIZE_1_1_PLUS ? { lchs: readGeometry(v, 0x1c8) } : {}),
  };
}

/**
 * Encodes `h` into 512 bytes. `base` (the header as read) keeps the bytes no field covers, as qemu rewrites the
 * header it read; without it they are zero. UUIDs are stored as VirtualBox stores them (first three fields
 * little-endian), which qemu turns around on read too.
 */
export function serializeHeader(h: VdiHeader, base?: Uint8Array): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE);
  if (base) buf.set(base.subarray(0, HEADER_SIZE));
  const v = view(buf);
  putCString(buf, TEXT_AT, 0x40, h.text);
  v.setUint32(0x40, h.signature, true);
  v.setUint32(0x44, h.version, true);
  v.setUint32(0x48, h.headerSize, true);
  v.setUint32(0x4c, h.imageType, true);
  v.setUint32(0x50, h.imageFlags, true);
  putCString(buf, DESCRIPTION_AT, DESCRIPTION_SIZE, h.description);
  v.setUint32(0x154, h.offsetBmap, true);
  v.setUint32(0x158, h.offsetData, true);
  writeGeometry(v, 0x15c, h.legacy);
  v.setBigUint64(0x170, BigInt(h.diskSize), true);
  v.setUint32(0x178, h.blockSize, true);
  v.setUint32(0x17c, h.blockExtra, true);
  v.setUint32(0x180, h.blocksInImage, true);
  v.setUint32(0x184, h.blocksAllocated, true);
  writeGuid(buf, 0x188, h.uuidImage);
  writeGuid(buf, 0x198, h.uuidLastSnap);
  writeGuid(buf, 0x1a8, h.uuidLink);
  writeGuid(buf, 0x1b8, h.uuidParent);
  if (h.lchs) writeGeometry(v, 0x1c8, h.lchs);
  return buf;
}

/** The guest size qemu gives the image: the header's size rounded up to a sector (VBoxManage convertfromraw writes odd sizes). */
export function guestSize(h: VdiHeader): number {
  return Math.ceil(h.diskSize / SECTOR) * SECTOR;
}

/** True for a differencing image: one that names a parent (VirtualBox's linkage UUID). */
export function isDifferencing(h: VdiHeader): boolean {
  return h.uuidLink !== ZERO_UUID;
}

/** Bytes the block map takes as qemu reads it: whole sectors. */
export function bmapBytes(h: VdiHeader): number {
  return Math.ceil((h.blocksInImage * 4) / SECTOR) * SECTOR;
}

/** Where data block `entry` (a block map value) starts in the file: VirtualBox puts blockExtra bytes before each block's data. */
export function blockHostOffset(h: VdiHeader, entry: number): number {
  return h.offsetData + entry * (h.blockSize + h.blockExtra) + h.blockExtra;
}

/**
 * qemu's open checks, in its order and with its wording, and ours on top: the block map must lie inside the
 * file (`fileSize`). A parent (link UUID) is accepted here: qemu refuses it, VirtualBox reads it, and so do we.
 */
export function validateHeader(h: VdiHeader, path: string, fileSize: number): void {
  const unsupported = (why: string) => new DiskError('EUNSUPPORTED', `${path}: unsupported VDI image (${why})`, path);
  if (h.diskSize > MAX_DISK_SIZE) throw unsupported(`size is ${h.diskSize} bytes, the most supported is ${MAX_DISK_SIZE}`);
  if (h.signature !== SIGNATURE) throw new DiskError('EINVAL', `${path}: not a VDI image (bad signature ${h.signature.toString(16).padStart(8, '0')})`, path);
  if (h.version !== VERSION_1_1) throw unsupported(`version ${h.version >>> 16}.${h.version & 0xffff}; only 1.1 is read`);
  if (h.offsetBmap % SECTOR !== 0) throw unsupported(`unaligned block map offset 0x${h.offsetBmap.toString(16)}`);
  if (h.offsetData % SECTOR !== 0) throw unsupported(`unaligned data offset 0x${h.offsetData.toString(16)}`);
  if (h.legacy.sectorSize !== SECTOR) throw unsupported(`sector size ${h.legacy.sectorSize} is not ${SECTOR}`);
  if (h.blockSize !== BLOCK_SIZE) throw unsupported(`block size ${h.blockSize} is not ${BLOCK_SIZE}`);
  if (guestSize(h) > h.blocksInImage * h.blockSize) throw unsupported(`disk size ${h.diskSize}, the block map has room for ${h.blocksInImage * h.blockSize}`);
  if (h.blocksInImage > MAX_BLOCKS) throw unsupported(`too many blocks ${h.blocksInImage}, the most is ${MAX_BLOCKS}`);
  if (h.blockExtra % SECTOR !== 0 || h.blockExtra > BLOCK_SIZE) throw unsupported(`block extra data of ${h.blockExtra} bytes`);
  if (h.offsetBmap < HEADER_SIZE && h.blocksInImage > 0) throw corrupt(`${path}: the VDI block map (offset ${h.offsetBmap}) overlaps the header`, path);
  if (h.offsetBmap + h.blocksInImage * 4 > fileSize) {
    throw corrupt(`${path}: the VDI block map (${h.blocksInImage} entries at offset ${h.offsetBmap}) lies past the end of the file (${fileSize} bytes)`, path);
  }
}

/**
 * The entries [from, to) of the map as the file holds them: on a little-endian host a view of the table's own
 * bytes (no copy, no loop over the entries), else serializeBmap's copy.
 */
export function bmapAsStored(bmap: Uint32Array, from = 0, to = bmap.length): Uint8Array {
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(bmap.buffer, bmap.byteOffset + from * 4, (to - from) * 4);
  return serializeBmap(bmap, from, to);
}

/** The entries [from, to) of the map as little-endian bytes. */
export function serializeBmap(bmap: Uint32Array, from = 0, to = bmap.length): Uint8Array {
  const out = new Uint8Array((to - from) * 4);
  const v = view(out);
  for (let i = from; i < to; i++) v.setUint32((i - from) * 4, bmap[i], true);
  return out;
}

/** The header qemu-img create writes (uuids given by the caller); its block map follows at 512, its data after the map. */
export function createHeader(size: number, isStatic: boolean, uuidImage: string, uuidLastSnap: string): VdiHeader {
  const blocks = Math.ceil(size / BLOCK_SIZE);
  const bmap = Math.ceil((blocks * 4) / SECTOR) * SECTOR;
  return {
    text: TEXT_QEMU,
    signature: SIGNATURE,
    version: VERSION_1_1,
    headerSize: HEADER_SIZE_QEMU,
    imageType: isStatic ? TYPE_STATIC : TYPE_DYNAMIC,
    imageFlags: 0,
    description: '',
    offsetBmap: HEADER_SIZE,
    offsetData: HEADER_SIZE + bmap,
    legacy: { cylinders: 0, heads: 0, sectors: 0, sectorSize: SECTOR },
    diskSize: size,
    blockSize: BLOCK_SIZE,
    blockExtra: 0,
    blocksInImage: blocks,
    blocksAllocated: isStatic ? blocks : 0,
    uuidImage,
    uuidLastSnap,
    uuidLink: ZERO_UUID,
    uuidParent: ZERO_UUID,
  };
}

/** The name of an image type, as VirtualBox calls them. */
export function typeName(t: number): string {
  return t === TYPE_DYNAMIC ? 'dynamic' : t === TYPE_STATIC ? 'static' : t === TYPE_UNDO ? 'undo' : t === TYPE_DIFFERENCING ? 'differencing' : `unknown (${t})`;
}
