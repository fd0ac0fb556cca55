/**
 * User-Mode Linux COW headers (arch/um/drivers/cow_user.c), versions 1, 2 and 3, and the version-2 variant
 * qemu's old cow driver wrote. The file is: header, a bitmap with one bit per sector (set = the sector lives in
 * this file, clear = read the backing file), then the sectors themselves. Version 2 and 3 numbers are
 * big-endian; version 1 was written in the host's byte order, which the magic reveals. Pure codecs: no I/O.
 */
import { view } from '../../block/bytes';
import { corrupt, DiskError } from '../../block/errors';

export const COW_MAGIC = 0x4f4f4f4d; // "OOOM"
export const PATH_LEN_V1 = 256;
export const PATH_LEN_V2 = 4096; // MAXPATHLEN on Linux
export const PATH_LEN_V3 = 4096;
export const PATH_LEN_QEMU = 1024;

/**
 * The byte layouts a COW header may have:
 * - v1: host-endian, 256-byte path, 32-bit mtime;
 * - v2: the kernel's packed struct with a 4096-byte path and a 32-bit (i386) or 64-bit (x86_64) time_t;
 * - v2-qemu: qemu's cow.c struct with a 1024-byte path, unpacked (size 8-aligned on x86_64, 4-aligned on i386);
 * - v3: the packed struct uml_mkcow writes; v3-broken: the unpacked struct some 64-bit builds wrote before 2006.
 */
export type CowLayout = 'v1' | 'v2-time32' | 'v2-time64' | 'v2-qemu' | 'v2-qemu-i386' | 'v3' | 'v3-broken';

interface Offsets {
  path: number;
  pathLen: number;
  mtime: number;
  mtimeBytes: 4 | 8;
  size: number;
  sectorSize: number;
  alignment?: number;
  cowFormat?: number;
  headerSize: number;
}

export const LAYOUTS: Record<CowLayout, Offsets> = {
  v1: { path: 8, pathLen: PATH_LEN_V1, mtime: 264, mtimeBytes: 4, size: 268, sectorSize: 276, headerSize: 280 },
  'v2-time32': { path: 8, pathLen: PATH_LEN_V2, mtime: 4104, mtimeBytes: 4, size: 4108, sectorSize: 4116, headerSize: 4120 },
  // sizeof() of this unpacked struct on x86_64 is 4128 (padded to 8), and the bitmap starts there.
  'v2-time64': { path: 8, pathLen: PATH_LEN_V2, mtime: 4104, mtimeBytes: 8, size: 4112, sectorSize: 4120, headerSize: 4128 },
  'v2-qemu': { path: 8, pathLen: PATH_LEN_QEMU, mtime: 1032, mtimeBytes: 4, size: 1040, sectorSize: 1048, headerSize: 1056 },
  'v2-qemu-i386': { path: 8, pathLen: PATH_LEN_QEMU, mtime: 1032, mtimeBytes: 4, size: 1036, sectorSize: 1044, headerSize: 1048 },
  v3: { path: 32, pathLen: PATH_LEN_V3, mtime: 8, mtimeBytes: 4, size: 12, sectorSize: 20, alignment: 24, cowFormat: 28, headerSize: 4128 },
  'v3-broken': { path: 36, pathLen: PATH_LEN_V3, mtime: 8, mtimeBytes: 8, size: 16, sectorSize: 24, alignment: 28, cowFormat: 32, headerSize: 4136 },
};

/** The most bytes any layout's header takes. */
export const MAX_HEADER_SIZE = 4136;


export interface CowHeader {
  version: 1 | 2 | 3;
  layout: CowLayout;
  littleEndian: boolean;
  backingFile: string;
  mtime: number;
  size: number;
  sectorSize: number;
  /** Bitmap and data alignment (v3); for v1/v2 the sector size. */
  alignment: number;
  cowFormat: number;
  bitmapOffset: number;
  dataOffset: number;
}

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** 100 when the first bytes hold the COW magic (big-endian, or little-endian for version 1). */
export function probeCow(head: Uint8Array): number {
  if (head.length < 8) return 0;
  const v = view(head);
  if (v.getUint32(0, false) === COW_MAGIC) return 100;
  if (v.getUint32(0, true) === COW_MAGIC && v.getUint32(4, true) === 1) return 100;
  return 0;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Where the bitmap and the data start, as the kernel (or qemu, for its own layout) computes them. */
export function cowSizes(layout: CowLayout, size: number, sectorSize: number, alignment: number): { bitmapOffset: number; bitmapLength: number; dataOffset: number } {
  const headerSize = LAYOUTS[layout].headerSize;
  if (layout === 'v2-qemu' || layout === 'v2-qemu-i386') {
    const sectors = Math.floor(size / 512);
    const bitmapLength = Math.ceil(sectors / 8);
    return { bitmapOffset: headerSize, bitmapLength, dataOffset: roundUp(headerSize + bitmapLength, 512) };
  }
  if (layout === 'v3' || layout === 'v3-broken') {
    const bitmapOffset = roundUp(headerSize, alignment);
    const bitmapLength = Math.ceil(Math.ceil(size / sectorSize) / 8);
    return { bitmapOffset, bitmapLength, dataOffset: roundUp(bitmapOffset + bitmapLength, alignment) };
  }
  // Versions 1 and 2 keep the kernel's old rounding (it can drop the last bitmap byte; the data offset follows it).
  const bitmapLength = Math.floor((size + sectorSize - 1) / (8 * sectorSize));
  return { bitmapOffset: headerSize, bitmapLength, dataOffset: roundUp(headerSize + bitmapLength, sectorSize) };
}

function readAt(buf: Uint8Array, layout: CowLayout, littleEndian: boolean): CowHeader | string {
  const o = LAYOUTS[layout];
  if (buf.length < o.headerSize) return 'the header is truncated';
  const v = view(buf);
  const le = littleEndian;
  const size64 = v.getBigUint64(o.size, le);
  if (size64 > BigInt(Number.MAX_SAFE_INTEGER)) return `its size (${size64}) is impossibly large`;
  const size = Number(size64);
  const sectorSize = v.getUint32(o.sectorSize, le);
  if (!isPowerOfTwo(sectorSize) || sectorSize < 512 || sectorSize > 65536) return `its sector size (${sectorSize}) is invalid`;
  const alignment = o.alignment !== undefined ? v.getUint32(o.alignment, le) : sectorSize;
  if (!isPowerOfTwo(alignment) || alignment > 1 << 24) return `its alignment (${alignment}) is invalid`;
  const cowFormat = o.cowFormat !== undefined ? v.getUint32(o.cowFormat, le) : 0;
  const pathBytes = buf.subarray(o.path, o.path + o.pathLen);
  const nul = pathBytes.indexOf(0);
  if (nul < 0) return 'its backing file name is not terminated';
  const backingFile = new TextDecoder().decode(pathBytes.subarray(0, nul));
  // Writers of the 8-byte layouts stored htonl(mtime) in a little-endian 64-bit field: the big-endian 32-bit
  // value sits in the field's first four bytes (uml_moo reads it the same way, "bug-to-bug compatible").
  const mtime = v.getUint32(o.mtime, le);
  const { bitmapOffset, dataOffset } = cowSizes(layout, size, sectorSize, alignment);
  const version = layout === 'v1' ? 1 : layout.startsWith('v2') ? 2 : 3;
  return { version, layout, littleEndian, backingFile, mtime, size, sectorSize, alignment, cowFormat, bitmapOffset, dataOffset };
}

/**
 * Decodes a COW header. `fileSize` decides between the version-2 layouts: the one whose numbers are sane and
 * whose bitmap fits in the file wins.
 */
export function parseHeader(buf: Uint8Array, path: string, fileSize: number): CowHeader {
  if (buf.length < 8) throw corrupt(`${path}: COW header is truncated`, path);
  const v = view(buf);
  let le: boolean;
  if (v.getUint32(0, false) === COW_MAGIC) le = false;
  else if (v.getUint32(0, true) === COW_MAGIC) le = true;
  else throw new DiskError('EINVAL', `${path}: not a UML COW image (bad magic)`, path);
  const version = v.getUint32(4, le);
  let candidates: CowLayout[];
  if (version === 1) candidates = ['v1'];
  else if (le) throw new DiskError('EUNSUPPORTED', `${path}: little-endian COW version ${version} is not supported`, path);
  else if (version === 2) candidates = ['v2-time32', 'v2-time64', 'v2-qemu', 'v2-qemu-i386'];
  else if (version === 3) {
    // The kernel's own test: a real path never starts with four zero bytes, but the broken layout's cow_format does.
    candidates = buf.length >= 36 && v.getUint32(32, false) === 0 ? ['v3-broken'] : ['v3'];
  } else throw new DiskError('EUNSUPPORTED', `${path}: COW version ${version} is not supported (1, 2 and 3 are)`, path);
  let firstProblem: string | undefined;
  for (const layout of candidates) {
    const r = readAt(buf, layout, le);
    if (typeof r === 'string') {
      firstProblem ??= r;
      continue;
    }
    const bitmapEnd = cowSizes(layout, r.size, r.sectorSize, r.alignment);
    if (candidates.length > 1 && bitmapEnd.bitmapOffset + bitmapEnd.bitmapLength > fileSize) {
      firstProblem ??= 'its bitmap lies past the end of the file';
      continue;
    }
    if (r.cowFormat !== 0) throw new DiskError('EUNSUPPORTED', `${path}: COW bitmap format ${r.cowFormat} is not supported (only 0 is)`, path);
    return r;
  }
  throw corrupt(`${path}: damaged COW version ${version} header: ${firstProblem ?? 'no layout fits'}`, path);
}

/** Encodes a header in the given layout (used by tests and by writers of new COW files, which use v3). */
export function serializeHeader(h: Omit<CowHeader, 'bitmapOffset' | 'dataOffset' | 'version'> & { layout: CowLayout }): Uint8Array {
  const o = LAYOUTS[h.layout];
  const buf = new Uint8Array(o.headerSize);
  const v = view(buf);
  const le = h.layout === 'v1' ? h.littleEndian : false;
  v.setUint32(0, COW_MAGIC, le);
  v.setUint32(4, h.layout === 'v1' ? 1 : h.layout.startsWith('v2') ? 2 : 3, le);
  const name = new TextEncoder().encode(h.backingFile);
  if (name.length >= o.pathLen) throw new DiskError('EINVAL', `the backing file name is longer than ${o.pathLen - 1} bytes`);
  buf.set(name, o.path);
  v.setUint32(o.mtime, h.mtime >>> 0, le); // an 8-byte field keeps its other four bytes zero (see readAt)
  v.setBigUint64(o.size, BigInt(h.size), le);
  v.setUint32(o.sectorSize, h.sectorSize, le);
  if (o.alignment !== undefined) v.setUint32(o.alignment, h.alignment, le);
  if (o.cowFormat !== undefined) v.setUint32(o.cowFormat, h.cowFormat, le);
  return buf;
}

/**
 * Rewrites the recorded backing file facts (mtime, size) in a copy of a header's bytes, leaving every other
 * byte as it was (the name's tail after its terminator included).
 */
export function patchBackingFacts(head: Uint8Array, h: CowHeader, mtime: number, size: number): Uint8Array {
  const o = LAYOUTS[h.layout];
  const out = head.slice(0, o.headerSize);
  const v = view(out);
  v.setUint32(o.mtime, mtime >>> 0, h.littleEndian);
  v.setBigUint64(o.size, BigInt(size), h.littleEndian);
  return out;
}

/**
 * A copy of a header's bytes naming a new backing file (rebase): the name field is rewritten whole (zeros after
 * the name, as uml_mkcow leaves it), with the new file's mtime and size; every other byte stays as it was.
 */
export function patchBackingName(head: Uint8Array, h: CowHeader, name: string, mtime: number, size: number): Uint8Array {
  const o = LAYOUTS[h.layout];
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0 || bytes.length >= o.pathLen) throw new DiskError('EINVAL', `a backing file name for this COW file must be 1 to ${o.pathLen - 1} bytes long`);
  const out = patchBackingFacts(head, h, mtime, size);
  out.fill(0, o.path, o.path + o.pathLen);
  out.set(bytes, o.path);
  return out;
}

/** How many sectors have a bit in the bitmap: all of them for v3 and qemu's layout, fewer for v1/v2 (old rounding). */
export function sectorsWithBits(h: CowHeader): number {
  const { bitmapLength } = cowSizes(h.layout, h.size, h.sectorSize, h.alignment);
  return Math.min(Math.ceil(h.size / h.sectorSize), bitmapLength * 8);
}
