/**
 * qcow2 on-disk structures (docs/interop/qcow2.txt): the header (and its field table), header extensions, the
 * bit layout of L1/L2/refcount entries, compressed cluster descriptors and refcount entries (the snapshot table
 * codec is in snapshot/table-codec.ts). All numbers are big-endian. Pure codecs: no I/O here except
 * readLayout(), which reads and validates a header against the file's length.
 */
import { u64 as readU64 } from '../../block/bytes';
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const V2_HEADER_LENGTH = 72;
export const V3_HEADER_LENGTH = 104; // through header_length; 112 with compression_type and padding
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21; // qemu's limit: 2 MiB clusters
export const MAX_L1_BYTES = 32 * 1024 * 1024; // qemu's limit on the L1 table
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024; // qemu's limit on the refcount table
export const MAX_BACKING_NAME = 1023;
export const MAX_SNAPSHOTS = 65536;
export const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024; // the check reads no larger bitmap directory

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

/** Names of incompatible features, for messages that name what we refuse. */
export const INCOMPAT_NAMES: Record<number, string> = {
  0: 'dirty bit',
  1: 'corrupt bit',
  2: 'external data file',
  3: 'compression type',
  4: 'extended L2 entries',
};

// L1/L2/refcount-table entry bits.
export const OFLAG_COPIED = 1n << 63n;
export const OFLAG_COMPRESSED = 1n << 62n;
export const OFLAG_ZERO = 1n;
export const L1E_OFFSET_MASK = 0x00fffffffffffe00n; // bits 9-55
export const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
export const REFT_OFFSET_MASK = 0xfffffffffffffe00n; // bits 9-63
export const L1E_RESERVED_MASK = 0x7f000000000001ffn;
export const L2E_STD_RESERVED_MASK = 0x3f000000000001fen;
export const REFT_RESERVED_MASK = 0x1ffn;
/** Bitmap table entries (docs/interop/qcow2.txt, "Bitmaps"): offset bits 9-55, bit 0 "all ones". */
export const BME_RESERVED_MASK = 0xff000000000001fen;
export const BME_OFFSET_MASK = 0x00fffffffffffe00n;
export const BME_ALL_ONES = 1n;

/**
 * The header's fields: name -> byte offset and width. The one place their positions are written down; the
 * codec below, and every in-place patch of a field (header.ts, check), go through it.
 */
export const HEADER_FIELDS = {
  magic: { offset: 0, width: 4 },
  version: { offset: 4, width: 4 },
  backingFileOffset: { offset: 8, width: 8 },
  backingFileSize: { offset: 16, width: 4 },
  clusterBits: { offset: 20, width: 4 },
  size: { offset: 24, width: 8 },
  cryptMethod: { offset: 32, width: 4 },
  l1Size: { offset: 36, width: 4 },
  l1TableOffset: { offset: 40, width: 8 },
  refcountTableOffset: { offset: 48, width: 8 },
  refcountTableClusters: { offset: 56, width: 4 },
  nbSnapshots: { offset: 60, width: 4 },
  snapshotsOffset: { offset: 64, width: 8 },
  incompatibleFeatures: { offset: 72, width: 8 },
  compatibleFeatures: { offset: 80, width: 8 },
  autoclearFeatures: { offset: 88, width: 8 },
  refcountOrder: { offset: 96, width: 4 },
  headerLength: { offset: 100, width: 4 },
  compressionType: { offset: 104, width: 1 },
} as const;
export type HeaderField = keyof typeof HEADER_FIELDS;
const F = HEADER_FIELDS;

/**
 * Encodes consecutive header fields for one in-place write (so that fields that change together, like the L1
 * size and offset, change in one write). Returns the file offset and the bytes; the fields must be adjacent.
 */
export function encodeHeaderFields(fields: Partial<Record<HeaderField, number | bigint>>): { offset: number; bytes: Uint8Array } {
  const names = (Object.keys(fields) as HeaderField[]).sort((a, b) => F[a].offset - F[b].offset);
  const start = F[names[0]].offset;
  const last = F[names[names.length - 1]];
  const bytes = new Uint8Array(last.offset + last.width - start);
  const v = new DataView(bytes.buffer);
  let expect = start;
  for (const name of names) {
    const f = F[name];
    if (f.offset !== expect) throw new RangeError(`header fields ${names.join(', ')} are not adjacent`);
    const value = fields[name]!;
    const at = f.offset - start;
    if (f.width === 8) v.setBigUint64(at, BigInt(value));
    else if (f.width === 4) v.setUint32(at, Number(value));
    else v.setUint8(at, Number(value));
    expect = f.offset + f.width;
  }
  return { offset: start, bytes };
}

export interface HeaderExtension {
  type: number;
  data: Uint8Array;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Header bytes past the fields we know (kept intact on rewrite). */
  extraHeaderBytes: Uint8Array;
}

/** The header plus what it points to in the first cluster: extensions and the backing file name. */
export interface Qcow2Layout {
  header: Qcow2Header;
  extensions: HeaderExtension[];
  backingFile?: string;
  backingFormat?: string;
  dataFile?: string;
  clusterSize: number;
  refcountBits: number;
  extendedL2: boolean;
  /** Bytes per L2 entry: 8, or 16 with extended L2. */
  l2EntrySize: number;
  l2Entries: number;
}

/** A big-endian 64-bit offset or size (block/bytes.ts: beyond 2^53 is damage naming the field). */
function u64(view: DataView, off: number, path: string, what: string): number {
  return readU64(view, off, false, what, path);
}

/** Decodes and validates the fixed header. `fileSize` bounds every offset. */
export function parseHeader(buf: Uint8Array, path: string, fileSize: number): Qcow2Header {
  if (buf.length < V2_HEADER_LENGTH) throw corrupt(`${path}: qcow2 header is truncated`, path);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint32(F.magic.offset) !== QCOW2_MAGIC) throw corrupt(`${path}: not a qcow2 image (bad magic)`, path);
  const version = v.getUint32(F.version.offset);
  if (version === 1) throw new DiskError('EUNSUPPORTED', `${path}: qcow version 1 (the original QEMU format) is not supported; qemu-img convert -O qcow2 turns it into qcow2`, path);
  if (version !== 2 && version !== 3) throw new DiskError('EUNSUPPORTED', `${path}: qcow2 version ${version} is not supported (2 and 3 are)`, path);
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(v, F.backingFileOffset.offset, path, 'backing file offset'),
    backingFileSize: v.getUint32(F.backingFileSize.offset),
    clusterBits: v.getUint32(F.clusterBits.offset),
    size: u64(v, F.size.offset, path, 'virtual size'),
    cryptMethod: v.getUint32(F.cryptMethod.offset),
    l1Size: v.getUint32(F.l1Size.offset),
    l1TableOffset: u64(v, F.l1TableOffset.offset, path, 'L1 table offset'),
    refcountTableOffset: u64(v, F.refcountTableOffset.offset, path, 'refcount table offset'),
    refcountTableClusters: v.getUint32(F.refcountTableClusters.offset),
    nbSnapshots: v.getUint32(F.nbSnapshots.offset),
    snapshotsOffset: u64(v, F.snapshotsOffset.offset, path, 'snapshot table offset'),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: COMPRESSION_ZLIB,
    extraHeaderBytes: new Uint8Array(0),
  };
  if (version === 3) {
    if (buf.length < V3_HEADER_LENGTH) throw corrupt(`${path}: qcow2 v3 header is truncated`, path);
    h.incompatibleFeatures = v.getBigUint64(F.incompatibleFeatures.offset);
    h.compatibleFeatures = v.getBigUint64(F.compatibleFeatures.offset);
    h.autoclearFeatures = v.getBigUint64(F.autoclearFeatures.offset);
    h.refcountOrder = v.getUint32(F.refcountOrder.offset);
    h.headerLength = v.getUint32(F.headerLength.offset);
    if (h.headerLength < V3_HEADER_LENGTH || h.headerLength % 8 !== 0) {
      throw corrupt(`${path}: qcow2 header length ${h.headerLength} is invalid`, path);
    }
    if (h.headerLength > buf.length) throw corrupt(`${path}: qcow2 header length ${h.headerLength} exceeds the first cluster`, path);
    if (h.headerLength > F.compressionType.offset) h.compressionType = buf[F.compressionType.offset];
    if (h.headerLength > 112) h.extraHeaderBytes = buf.slice(112, h.headerLength);
  }
  if (h.clusterBits < MIN_CLUSTER_BITS || h.clusterBits > MAX_CLUSTER_BITS) {
    throw corrupt(`${path}: cluster size 2^${h.clusterBits} is outside 512 B .. 2 MiB`, path);
  }
  if (h.refcountOrder > 6) throw corrupt(`${path}: refcount width 2^${h.refcountOrder} bits exceeds 64`, path);
  const clusterSize = 2 ** h.clusterBits;
  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    throw new DiskError('EUNSUPPORTED', `${path}: the image uses unknown incompatible features (mask 0x${unknown.toString(16)})`, path);
  }
  const aligned = (off: number) => off % clusterSize === 0;
  if (!aligned(h.l1TableOffset) || !aligned(h.refcountTableOffset) || !aligned(h.snapshotsOffset)) {
    throw corrupt(`${path}: a table offset in the header is not cluster aligned`, path);
  }
  if (h.l1Size * 8 > MAX_L1_BYTES) throw corrupt(`${path}: active L1 table is too large (${h.l1Size} entries)`, path);
  if (h.l1Size > 0 && h.l1TableOffset + h.l1Size * 8 > fileSize) throw corrupt(`${path}: the L1 table lies past the end of the file`, path);
  if (h.refcountTableClusters * clusterSize > MAX_REFTABLE_BYTES) throw corrupt(`${path}: refcount table is too large`, path);
  if (h.refcountTableClusters === 0 || h.refcountTableOffset + h.refcountTableClusters * clusterSize > fileSize) {
    throw corrupt(`${path}: the refcount table lies past the end of the file`, path);
  }
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw corrupt(`${path}: too many snapshots (${h.nbSnapshots})`, path);
  if (h.nbSnapshots > 0 && h.snapshotsOffset >= fileSize) throw corrupt(`${path}: the snapshot table lies past the end of the file`, path);
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > MAX_BACKING_NAME || h.backingFileOffset + h.backingFileSize > Math.min(clusterSize, fileSize)) {
      throw corrupt(`${path}: the backing file name lies outside the first cluster`, path);
    }
  }
  // L1 must be able to map the whole virtual size.
  const l2Entries = clusterSize / (h.incompatibleFeatures & INCOMPAT_EXTL2 ? 16 : 8);
  const needL1 = Math.ceil(h.size / (clusterSize * l2Entries));
  if (needL1 > h.l1Size) throw corrupt(`${path}: the L1 table (${h.l1Size} entries) is too small for the virtual size (needs ${needL1})`, path);
  return h;
}

/** Encodes the fixed header (72 bytes for v2, headerLength for v3). */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  const len = h.version === 2 ? V2_HEADER_LENGTH : h.headerLength;
  const buf = new Uint8Array(len);
  const v = new DataView(buf.buffer);
  v.setUint32(F.magic.offset, QCOW2_MAGIC);
  v.setUint32(F.version.offset, h.version);
  v.setBigUint64(F.backingFileOffset.offset, BigInt(h.backingFileOffset));
  v.setUint32(F.backingFileSize.offset, h.backingFileSize);
  v.setUint32(F.clusterBits.offset, h.clusterBits);
  v.setBigUint64(F.size.offset, BigInt(h.size));
  v.setUint32(F.cryptMethod.offset, h.cryptMethod);
  v.setUint32(F.l1Size.offset, h.l1Size);
  v.setBigUint64(F.l1TableOffset.offset, BigInt(h.l1TableOffset));
  v.setBigUint64(F.refcountTableOffset.offset, BigInt(h.refcountTableOffset));
  v.setUint32(F.refcountTableClusters.offset, h.refcountTableClusters);
  v.setUint32(F.nbSnapshots.offset, h.nbSnapshots);
  v.setBigUint64(F.snapshotsOffset.offset, BigInt(h.snapshotsOffset));
  if (h.version === 3) {
    v.setBigUint64(F.incompatibleFeatures.offset, h.incompatibleFeatures);
    v.setBigUint64(F.compatibleFeatures.offset, h.compatibleFeatures);
    v.setBigUint64(F.autoclearFeatures.offset, h.autoclearFeatures);
    v.setUint32(F.refcountOrder.offset, h.refcountOrder);
    v.setUint32(F.headerLength.offset, h.headerLength);
    if (len > F.compressionType.offset) buf[F.compressionType.offset] = h.compressionType;
    if (len > 112) buf.set(h.extraHeaderBytes.subarray(0, len - 112), 112);
  }
  return buf;
}

/** Parses the header extensions that follow the header, up to the end of the first cluster. */
export function parseExtensions(cluster: Uint8Array, start: number, path: string): HeaderExtension[] {
  const exts: HeaderExtension[] = [];
  const v = new DataView(cluster.buffer, cluster.byteOffset, cluster.byteLength);
  let pos = start;
  while (pos + 8 <= cluster.length) {
    const type = v.getUint32(pos);
    const len = v.getUint32(pos + 4);
    if (type === EXT_END) return exts;
    if (pos + 8 + len > cluster.length) throw corrupt(`${path}: header extension 0x${type.toString(16)} runs past the first cluster`, path);
    exts.push({ type, data: cluster.slice(pos + 8, pos + 8 + len) });
    pos += 8 + Math.ceil(len / 8) * 8;
  }
  if (pos < cluster.length) throw corrupt(`${path}: header extensions are not terminated`, path);
  return exts;
}

/** Encodes header extensions followed by the end marker. */
export function serializeExtensions(exts: HeaderExtension[]): Uint8Array {
  const total = exts.reduce((n, e) => n + 8 + Math.ceil(e.data.length / 8) * 8, 0) + 8;
  const buf = new Uint8Array(total);
  const v = new DataView(buf.buffer);
  let pos = 0;
  for (const e of exts) {
    v.setUint32(pos, e.type);
    v.setUint32(pos + 4, e.data.length);
    buf.set(e.data, pos + 8);
    pos += 8 + Math.ceil(e.data.length / 8) * 8;
  }
  return buf; // the trailing 8 zero bytes are the end marker
}

/** The feature name table qemu writes into new v3 images. */
export function featureNameTable(): Uint8Array {
  const entries: Array<[number, number, string]> = [
    [0, 0, 'dirty bit'],
    [0, 1, 'corrupt bit'],
    [0, 2, 'external data file'],
    [0, 3, 'compression type'],
    [0, 4, 'extended L2 entries'],
    [1, 0, 'lazy refcounts'],
    [2, 0, 'bitmaps'],
    [2, 1, 'raw external data'],
  ];
  const buf = new Uint8Array(entries.length * 48);
  entries.forEach(([type, bit, name], i) => {
    buf[i * 48] = type;
    buf[i * 48 + 1] = bit;
    buf.set(new TextEncoder().encode(name), i * 48 + 2);
  });
  return buf;
}

/**
 * Reads the first cluster and everything in it: header, extensions, backing file name. Tables named by the
 * header must lie within `tableBound` bytes (the file's length, except for check, which opens images whose
 * tables run past the end as qemu does and reports that instead).
 */
export async function readLayout(file: ImageFile, tableBound = file.size): Promise<Qcow2Layout> {
  const path = file.path;
  // The header, its extensions and the backing name all lie in the first cluster: read just that much.
  let first = new Uint8Array(Math.min(file.size, 4096));
  await file.readExact(0, first, 'qcow2 header');
  const bits = first.length >= F.clusterBits.offset + 4 ? new DataView(first.buffer).getUint32(F.clusterBits.offset) : 0;
  if (bits > 12 && bits <= MAX_CLUSTER_BITS && file.size > first.length) {
    first = new Uint8Array(Math.min(file.size, 2 ** bits));
    await file.readExact(0, first, 'qcow2 header');
  }
  const header = parseHeader(first, path, tableBound);
  const clusterSize = 2 ** header.clusterBits;
  const cluster = first.subarray(0, Math.min(clusterSize, first.length));
  const extStart = header.version === 2 ? V2_HEADER_LENGTH : header.headerLength;
  // Extensions end at the backing file name when there is one.
  const extEnd = header.backingFileOffset ? Math.min(header.backingFileOffset, cluster.length) : cluster.length;
  const extensions = parseExtensions(cluster.subarray(0, extEnd), extStart, path);
  // Names are C strings to qemu: each ends at its first NUL (an empty backing name means none).
  const dec = new TextDecoder();
  const cString = (bytes: Uint8Array): string => {
    const nul = bytes.indexOf(0);
    return dec.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
  };
  const layout: Qcow2Layout = {
    header,
    extensions,
    clusterSize,
    refcountBits: 2 ** header.refcountOrder,
    extendedL2: (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n,
    l2EntrySize: header.incompatibleFeatures & INCOMPAT_EXTL2 ? 16 : 8,
    l2Entries: clusterSize / (header.incompatibleFeatures & INCOMPAT_EXTL2 ? 16 : 8),
  };
  if (header.backingFileOffset) {
    const name = cString(cluster.subarray(header.backingFileOffset, header.backingFileOffset + header.backingFileSize));
    if (name !== '') layout.backingFile = name;
  }
  for (const e of extensions) {
    if (e.type === EXT_BACKING_FORMAT) layout.backingFormat = cString(e.data);
    if (e.type === EXT_DATA_FILE) layout.dataFile = cString(e.data);
  }
  return layout;
}

/**
 * The bitmap directory named by the bitmaps extension (nb_bitmaps, bitmap_directory_size and _offset), when
 * qemu would use it: a program without bitmap support clears the autoclear bit, and then it is ignored.
 */
export function bitmapDirectory(layout: Qcow2Layout): { count: number; size: number; offset: number } | undefined {
  if ((layout.header.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return undefined;
  const ext = layout.extensions.find((e) => e.type === EXT_BITMAPS);
  if (!ext || ext.data.length < 24) return undefined;
  const v = new DataView(ext.data.buffer, ext.data.byteOffset, ext.data.byteLength);
  return { count: v.getUint32(0), size: Number(v.getBigUint64(8)), offset: Number(v.getBigUint64(16)) };
}

/** Offset of the compressed data and its length in bytes (an upper bound: whole sectors), from an L2 entry. */
export function compressedExtent(entry: bigint, clusterBits: number): { offset: number; length: number } {
  const x = BigInt(62 - (clusterBits - 8));
  const offsetMask = (1n << x) - 1n;
  const offset = Number(entry & offsetMask);
  const sectors = Number((entry >> x) & ((1n << (62n - x)) - 1n));
  // "additional sectors beyond the sector containing the offset"
  const length = (sectors + 1) * 512 - (offset % 512);
  return { offset, length };
}

export function encodeCompressedEntry(offset: number, length: number, clusterBits: number): bigint {
  const x = BigInt(62 - (clusterBits - 8));
  const additional = Math.floor((offset + length - 1) / 512) - Math.floor(offset / 512);
  return OFLAG_COMPRESSED | (BigInt(additional) << x) | BigInt(offset);
}

/** Reads entry `index` of a refcount block whose entries are `bits` wide (1..64; sub-byte widths LSB first). */
export function getRefcount(block: Uint8Array, index: number, bits: number): number {
  if (bits >= 8) {
    const bytes = bits / 8;
    const pos = index * bytes;
    let v = 0;
    for (let i = 0; i < bytes; i++) v = v * 256 + block[pos + i];
    return v; // exact while below 2^53, which any real refcount is
  }
  const perByte = 8 / bits;
  const byte = block[Math.floor(index / perByte)];
  const shift = (index % perByte) * bits;
  return (byte >> shift) & ((1 << bits) - 1);
}

/** Writes entry `index` of a refcount block; the caller has checked that `value` fits in `bits`. */
export function setRefcount(block: Uint8Array, index: number, bits: number, value: number): void {
  if (bits >= 8) {
    const bytes = bits / 8;
    const pos = index * bytes;
    let v = value;
    for (let i = bytes - 1; i >= 0; i--) {
      block[pos + i] = v % 256;
      v = Math.floor(v / 256);
    }
    return;
  }
  const perByte = 8 / bits;
  const at = Math.floor(index / perByte);
  const shift = (index % perByte) * bits;
  const mask = ((1 << bits) - 1) << shift;
  block[at] = (block[at] & ~mask) | ((value << shift) & mask);
}

/** The largest refcount a `bits`-wide entry holds (capped at 2^53 - 1 for 64-bit entries). */
export function maxRefcount(bits: number): number {
  return bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
}
