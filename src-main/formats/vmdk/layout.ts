/**
 * VMDK on-disk structures: the VMDK4 sparse extent header ("KDMV"), the older VMDK3 / ESX sparse header
 * ("COWD"), the stream-optimized footer, and the text descriptor (embedded in a sparse extent or a file of its
 * own). Every binary number is little-endian. Pure codecs: no I/O here.
 */
import { corrupt, DiskError } from '../../block/errors';

export const SECTOR = 512;
/** "KDMV" as a little-endian 32-bit number (the bytes 'K','D','M','V'). */
export const VMDK4_MAGIC = 0x564d444b;
/** "COWD" as a little-endian 32-bit number. */
export const VMDK3_MAGIC = 0x44574f43;
export const VMDK4_HEADER_SIZE = 512;
/** gd_offset value meaning "the grain directory is located by the footer" (stream-optimized files). */
export const GD_AT_END = 0xffffffffffffffffn;

export const FLAG_NL_DETECT = 1 << 0;
export const FLAG_RGD = 1 << 1;
export const FLAG_ZERO_GRAIN = 1 << 2;
export const FLAG_COMPRESS = 1 << 16;
export const FLAG_MARKER = 1 << 17;
export const COMPRESSION_NONE = 0;
export const COMPRESSION_DEFLATE = 1;

/** Stream-optimized marker types. */
export const MARKER_END_OF_STREAM = 0;
export const MARKER_GRAIN_TABLE = 1;
export const MARKER_GRAIN_DIRECTORY = 2;
export const MARKER_FOOTER = 3;

/** qemu's limits: grains of at most 2^21 sectors (1 GiB), grain tables of at most 512 entries. */
export const MAX_GRAIN_SECTORS = 0x200000;
export const MAX_GTES_PER_GT = 512;
/** A descriptor is text; qemu reads at most 1 MiB of it, and so do we. */
export const MAX_DESCRIPTOR_BYTES = (1 << 20) - 1;
/** qemu reads the CIDs of a sparse extent from 20 sectors at 0x200, whatever desc_offset says. */
export const SPARSE_DESCRIPTOR_PROBE = 20 * SECTOR;
export const MAX_VERSION = 3;

/** The create types a descriptor file may declare (VMware's Virtual Disk Format 1.1 and qemu). */
export const EXTENT_TYPES = ['FLAT', 'SPARSE', 'ZERO', 'VMFS', 'VMFSSPARSE', 'VMFSRDM', 'VMFSRAW', 'SESPARSE'] as const;
export type ExtentType = (typeof EXTENT_TYPES)[number];
export const EXTENT_ACCESS = ['RW', 'RDONLY', 'NOACCESS'] as const;
export type ExtentAccess = (typeof EXTENT_ACCESS)[number];

/** The VMDK4 sparse extent header (hosted sparse extents, version 1-3). Sector counts are sectors of 512 B. */
export interface Vmdk4Header {
  version: number;
  flags: number;
  capacity: number; // sectors
  granularity: number; // sectors per grain
  descriptorOffset: number; // sectors
  descriptorSize: number; // sectors
  numGtesPerGt: number;
  rgdOffset: number; // sectors
  /** Sectors; undefined when the header says GD_AT_END (look in the footer). */
  gdOffset: number | undefined;
  overhead: number; // sectors: where grains start
  uncleanShutdown: boolean;
  /** The four bytes '\n', ' ', '\r', '\n' that detect line-ending mangling. */
  checkBytesValid: boolean;
  compressAlgorithm: number;
}

/** The VMDK3 (ESX 2 "COWD") sparse header; every field is a 32-bit little-endian number after the magic. */
export interface Vmdk3Header {
  version: number;
  flags: number;
  diskSectors: number;
  granularity: number; // sectors per grain
  l1dirOffset: number; // sectors
  l1dirSize: number; // entries
  fileSectors: number;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

function u64(v: DataView, off: number, what: string, path: string): number {
  const x = v.getBigUint64(off, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${path}: vmdk ${what} (${x}) is impossibly large`, path);
  return Number(x);
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Decodes a VMDK4 header (the first 512 bytes of a sparse extent, or the footer's copy). */
export function parseVmdk4Header(buf: Uint8Array, path: string): Vmdk4Header {
  if (buf.length < 79) throw corrupt(`${path}: vmdk header is truncated`, path);
  const v = view(buf);
  if (v.getUint32(0, true) !== VMDK4_MAGIC) throw corrupt(`${path}: not a VMDK sparse extent (bad magic)`, path);
  const gdRaw = v.getBigUint64(56, true);
  const h: Vmdk4Header = {
    version: v.getUint32(4, true),
    flags: v.getUint32(8, true),
    capacity: u64(v, 12, 'capacity', path),
    granularity: u64(v, 20, 'grain size', path),
    descriptorOffset: u64(v, 28, 'descriptor offset', path),
    descriptorSize: u64(v, 36, 'descriptor size', path),
    numGtesPerGt: v.getUint32(44, true),
    rgdOffset: u64(v, 48, 'redundant grain directory offset', path),
    gdOffset: gdRaw === GD_AT_END ? undefined : u64(v, 56, 'grain directory offset', path),
    overhead: u64(v, 64, 'grain offset', path),
    uncleanShutdown: buf[72] !== 0,
    checkBytesValid: buf[73] === 0x0a && buf[74] === 0x20 && buf[75] === 0x0d && buf[76] === 0x0a,
    compressAlgorithm: v.getUint16(77, true),
  };
  return h;
}

/** Checks a VMDK4 header's numbers the way qemu does before trusting them; `fileSize` bounds the offsets. */
export function validateVmdk4Header(h: Vmdk4Header, path: string, fileSize: number): void {
  if (h.version > MAX_VERSION) throw new DiskError('EUNSUPPORTED', `${path}: VMDK version ${h.version} is not supported (1 to 3 are)`, path);
  if (h.numGtesPerGt > MAX_GTES_PER_GT) throw corrupt(`${path}: vmdk grain table size ${h.numGtesPerGt} is too big (at most ${MAX_GTES_PER_GT} entries)`, path);
  if (h.granularity === 0 || h.granularity > MAX_GRAIN_SECTORS) throw corrupt(`${path}: vmdk grain size of ${h.granularity} sectors is invalid`, path);
  if (h.numGtesPerGt === 0 && h.capacity > 0) throw corrupt(`${path}: vmdk grain table size is zero`, path);
  if (h.capacity * SECTOR > Number.MAX_SAFE_INTEGER) throw corrupt(`${path}: vmdk capacity of ${h.capacity} sectors is impossibly large`, path);
  if (h.overhead * SECTOR > fileSize) {
    throw corrupt(`${path}: vmdk file is truncated: the header says grains start at byte ${h.overhead * SECTOR} but the file has ${fileSize} bytes`, path);
  }
}

/** Encodes a VMDK4 header into 512 bytes. */
export function serializeVmdk4Header(h: Vmdk4Header): Uint8Array {
  const buf = new Uint8Array(VMDK4_HEADER_SIZE);
  const v = view(buf);
  v.setUint32(0, VMDK4_MAGIC, true);
  v.setUint32(4, h.version, true);
  v.setUint32(8, h.flags, true);
  v.setBigUint64(12, BigInt(h.capacity), true);
  v.setBigUint64(20, BigInt(h.granularity), true);
  v.setBigUint64(28, BigInt(h.descriptorOffset), true);
  v.setBigUint64(36, BigInt(h.descriptorSize), true);
  v.setUint32(44, h.numGtesPerGt, true);
  v.setBigUint64(48, BigInt(h.rgdOffset), true);
  v.setBigUint64(56, h.gdOffset === undefined ? GD_AT_END : BigInt(h.gdOffset), true);
  v.setBigUint64(64, BigInt(h.overhead), true);
  buf[72] = h.uncleanShutdown ? 1 : 0;
  if (h.checkBytesValid) buf.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  v.setUint16(77, h.compressAlgorithm, true);
  return buf;
}

export const VMDK3_HEADER_SIZE = 44; // magic + ten 32-bit fields

export function parseVmdk3Header(buf: Uint8Array, path: string): Vmdk3Header {
  if (buf.length < VMDK3_HEADER_SIZE) throw corrupt(`${path}: vmdk (COWD) header is truncated`, path);
  const v = view(buf);
  if (v.getUint32(0, true) !== VMDK3_MAGIC) throw corrupt(`${path}: not a VMDK3 sparse extent (bad magic)`, path);
  const f = (i: number) => v.getUint32(4 + i * 4, true);
  return {
    version: f(0),
    flags: f(1),
    diskSectors: f(2),
    granularity: f(3),
    l1dirOffset: f(4),
    l1dirSize: f(5),
    fileSectors: f(6),
    cylinders: f(7),
    heads: f(8),
    sectorsPerTrack: f(9),
  };
}

export function validateVmdk3Header(h: Vmdk3Header, path: string): void {
  if (h.granularity === 0 || h.granularity > MAX_GRAIN_SECTORS) throw corrupt(`${path}: vmdk grain size of ${h.granularity} sectors is invalid`, path);
}

export function serializeVmdk3Header(h: Vmdk3Header): Uint8Array {
  const buf = new Uint8Array(VMDK3_HEADER_SIZE);
  const v = view(buf);
  v.setUint32(0, VMDK3_MAGIC, true);
  const fields = [h.version, h.flags, h.diskSectors, h.granularity, h.l1dirOffset, h.l1dirSize, h.fileSectors, h.cylinders, h.heads, h.sectorsPerTrack];
  fields.forEach((x, i) => v.setUint32(4 + i * 4, x, true));
  return buf;
}

/**
 * The stream-optimized footer sits 1024 bytes before the end of the file: a footer marker sector, the header
 * copy (with the real gd_offset), then the end-of-stream marker sector. Returns the header copy.
 */
export const FOOTER_BYTES = 3 * SECTOR;
export function parseFooter(buf: Uint8Array, path: string): Vmdk4Header {
  if (buf.length < FOOTER_BYTES) throw corrupt(`${path}: vmdk footer is truncated`, path);
  const v = view(buf);
  // qemu does not look at the footer marker's value (VMware writes 1, the header copy's size in sectors).
  const markerOk = v.getUint32(8, true) === 0 && v.getUint32(12, true) === MARKER_FOOTER;
  const eosOk = v.getBigUint64(2 * SECTOR, true) === 0n && v.getUint32(2 * SECTOR + 8, true) === 0 && v.getUint32(2 * SECTOR + 12, true) === MARKER_END_OF_STREAM;
  if (!markerOk || !eosOk || v.getUint32(SECTOR, true) !== VMDK4_MAGIC) throw corrupt(`${path}: the vmdk stream footer is invalid`, path);
  const h = parseVmdk4Header(buf.subarray(SECTOR, 2 * SECTOR), path);
  if (h.gdOffset === undefined) throw corrupt(`${path}: the vmdk stream footer does not locate the grain directory`, path);
  return h;
}

/** Encodes a footer (marker, header copy, end-of-stream marker). */
export function serializeFooter(h: Vmdk4Header): Uint8Array {
  const buf = new Uint8Array(FOOTER_BYTES);
  const v = view(buf);
  v.setBigUint64(0, 1n, true); // one sector of metadata follows: the header copy
  v.setUint32(12, MARKER_FOOTER, true);
  buf.set(serializeVmdk4Header(h), SECTOR);
  v.setUint32(2 * SECTOR + 12, MARKER_END_OF_STREAM, true);
  return buf;
}

// ---- the text descriptor ----

export interface ExtentLine {
  access: ExtentAccess;
  sectors: number;
  type: ExtentType;
  /** The file name as written (relative names are relative to the descriptor's folder). */
  filename: string;
  /** Start within the extent file, in sectors (FLAT and VMFS extents). */
  offset: number;
}

/**
 * The ddb key (without "ddb.") under which a child keeps its parent's CID from before a commit into the parent,
 * while the commit runs (services/commit.ts): parentCID already names the parent's next CID, and either is
 * accepted. Its name holds no "CID" in capitals, since qemu finds the CID and parentCID lines by substring.
 */
export const PARENT_CID_BEFORE_COMMIT = 'diskwright.parentCidBeforeCommit';

export interface Descriptor {
  version?: number;
  cid?: number;
  parentCid?: number;
  createType?: string;
  parentFileNameHint?: string;
  extents: ExtentLine[];
  /** ddb.* entries, without the quotes. */
  ddb: Record<string, string>;
}

/** The longest backing file name qemu keeps. */
export const MAX_BACKING_NAME = 4095;

function unquote(s: string): string {
  const t = s.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}

function parseCid(value: string, key: string, path: string): number {
  const t = unquote(value);
  if (!/^[0-9a-fA-F]{1,8}$/.test(t)) throw corrupt(`${path}: vmdk descriptor ${key} '${t.slice(0, 40)}' is not a hexadecimal number`, path);
  return parseInt(t, 16);
}

const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\S+)(?:\s+"([^"\r\n]*)"(?:\s+(\d+))?)?\s*$/;

/**
 * Parses descriptor text: `key=value` lines, extent lines (`RW 204800 SPARSE "name.vmdk"`), comments. Text after
 * the first NUL byte is ignored (an embedded descriptor is padded with zeros).
 */
export function parseDescriptor(text: string, path: string): Descriptor {
  const nul = text.indexOf('\0');
  const body = nul >= 0 ? text.slice(0, nul) : text;
  const d: Descriptor = { extents: [], ddb: {} };
  for (const rawLine of body.split('\n')) {
    const line = rawLine.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const ext = EXTENT_LINE.exec(line);
    if (ext) {
      const [, access, sectorsText, typeText, filename, offsetText] = ext;
      if (!(EXTENT_TYPES as readonly string[]).includes(typeText)) {
        throw new DiskError('EUNSUPPORTED', `${path}: vmdk extent type '${typeText.slice(0, 20)}' is not supported`, path);
      }
      const type = typeText as ExtentType;
      const sectors = Number(sectorsText);
      if (!Number.isSafeInteger(sectors) || sectors * SECTOR > Number.MAX_SAFE_INTEGER) throw corrupt(`${path}: vmdk extent of ${sectorsText.slice(0, 30)} sectors is impossibly large`, path);
      if (type !== 'ZERO' && filename === undefined) throw corrupt(`${path}: vmdk extent line names no file: ${line.slice(0, 80)}`, path);
      if (type === 'FLAT' && offsetText === undefined) throw corrupt(`${path}: vmdk FLAT extent line has no offset: ${line.slice(0, 80)}`, path);
      const offset = offsetText === undefined ? 0 : Number(offsetText);
      if (!Number.isSafeInteger(offset) || offset * SECTOR > Number.MAX_SAFE_INTEGER) throw corrupt(`${path}: vmdk extent offset is impossibly large`, path);
      d.extents.push({ access: access as ExtentAccess, sectors, type, filename: filename ?? '', offset });
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) continue; // unknown line: VMware tools ignore these too
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    switch (key) {
      case 'version': {
        const n = Number(unquote(value));
        if (Number.isInteger(n)) d.version = n;
        break;
      }
      case 'CID':
        d.cid = parseCid(value, key, path);
        break;
      case 'parentCID':
        d.parentCid = parseCid(value, key, path);
        break;
      case 'createType':
        d.createType = unquote(value);
        break;
      case 'parentFileNameHint': {
        const name = unquote(value);
        if (name.length > MAX_BACKING_NAME) throw corrupt(`${path}: vmdk parentFileNameHint is longer than ${MAX_BACKING_NAME} characters`, path);
        d.parentFileNameHint = name;
        break;
      }
      default:
        if (key.startsWith('ddb.')) d.ddb[key.slice(4)] = unquote(value);
    }
  }
  return d;
}

/** Writes a descriptor the way qemu lays one out. */
export function serializeDescriptor(d: Descriptor): string {
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  const lines = ['# Disk DescriptorFile', `version=${d.version ?? 1}`, `CID=${hex(d.cid ?? 0)}`, `parentCID=${hex(d.parentCid ?? 0xffffffff)}`];
  lines.push(`createType="${d.createType ?? 'monolithicSparse'}"`);
  if (d.parentFileNameHint !== undefined) lines.push(`parentFileNameHint="${d.parentFileNameHint}"`);
  lines.push('', '# Extent description');
  for (const e of d.extents) {
    const name = e.type === 'ZERO' ? '' : ` "${e.filename}"`;
    const off = e.type === 'FLAT' || (e.type === 'VMFS' && e.offset) ? ` ${e.offset}` : '';
    lines.push(`${e.access} ${e.sectors} ${e.type}${name}${off}`);
  }
  lines.push('', '# The Disk Data Base', '#DDB', '');
  for (const [k, v] of Object.entries(d.ddb)) lines.push(`ddb.${k} = "${v}"`);
  return lines.join('\n') + '\n';
}

/**
 * qemu's probe for a text descriptor: comment lines and lines of spaces may come first, then the first other
 * line must be `version=1`, `version=2` or `version=3` ending in \n or \r\n.
 */
export function looksLikeDescriptor(head: Uint8Array): boolean {
  let p = 0;
  const end = head.length;
  const at = (s: string) => {
    if (end - p < s.length) return false;
    for (let i = 0; i < s.length; i++) if (head[p + i] !== s.charCodeAt(i)) return false;
    return true;
  };
  while (p < end) {
    if (head[p] === 0x23 /* # */) {
      while (p < end && head[p] !== 0x0a) p++;
      p++;
      continue;
    }
    if (head[p] === 0x20) {
      while (p < end && head[p] === 0x20) p++;
      if (p < end && head[p] === 0x0d) p++;
      if (p === end || head[p] !== 0x0a) return false;
      p++;
      continue;
    }
    for (const n of ['1', '2', '3']) if (at(`version=${n}\n`) || at(`version=${n}\r\n`)) return true;
    return false;
  }
  return false;
}

/** Probe score: 100 for a sparse extent magic or a text descriptor, 0 otherwise. */
export function probeVmdk(head: Uint8Array): number {
  if (head.length >= 4) {
    const magic = view(head).getUint32(0, true);
    if (magic === VMDK4_MAGIC || magic === VMDK3_MAGIC) return 100;
  }
  return looksLikeDescriptor(head) ? 100 : 0;
}

// ---- stream-optimized markers ----

/**
 * A stream marker: 8 bytes of value (a grain's guest sector, or a metadata marker's size in sectors), 4 bytes
 * of size (a grain's compressed byte count; 0 for metadata markers), then for metadata markers 4 bytes of type.
 * A grain's compressed bytes follow its 12-byte marker directly; a metadata marker fills a whole sector.
 */
export const GRAIN_MARKER_BYTES = 12;

export interface GrainMarker {
  lba: number; // guest sector of the grain
  size: number; // compressed bytes after the marker
}

export function parseGrainMarker(buf: Uint8Array, path: string): GrainMarker {
  if (buf.length < GRAIN_MARKER_BYTES) throw corrupt(`${path}: vmdk grain marker is truncated`, path);
  const v = view(buf);
  return { lba: u64(v, 0, 'grain marker sector', path), size: v.getUint32(8, true) };
}

export function serializeGrainMarker(lba: number, size: number): Uint8Array {
  const buf = new Uint8Array(GRAIN_MARKER_BYTES);
  const v = view(buf);
  v.setBigUint64(0, BigInt(lba), true);
  v.setUint32(8, size, true);
  return buf;
}

/** A metadata marker sector (grain table, grain directory, footer, end of stream): `sectors` of metadata follow. */
export function serializeMetaMarker(type: number, sectors: number): Uint8Array {
  const buf = new Uint8Array(SECTOR);
  const v = view(buf);
  v.setBigUint64(0, BigInt(sectors), true);
  v.setUint32(12, type, true);
  return buf;
}

export interface MetaMarker {
  sectors: number;
  size: number;
  type: number;
}

export function parseMetaMarker(buf: Uint8Array, path: string): MetaMarker {
  if (buf.length < 16) throw corrupt(`${path}: vmdk stream marker is truncated`, path);
  const v = view(buf);
  return { sectors: u64(v, 0, 'marker value', path), size: v.getUint32(8, true), type: v.getUint32(12, true) };
}

// ---- sparse extent geometry ----

/** Where qemu (and VMware) put the metadata of a fresh hosted sparse extent; every number in sectors. */
export interface SparseGeometry {
  gtCount: number; // grain tables (= grain directory entries)
  gdSectors: number; // one grain directory
  gtSectors: number; // one grain table
  rgdOffset: number;
  gdOffset: number;
  overhead: number; // first grain, a whole number of grains
}

/**
 * qemu's vmdk_init_extent: descriptor at sector 1 (20 sectors), then the redundant directory and all its grain
 * tables, then the directory and its tables, grains from the next grain boundary.
 */
export function sparseGeometry(capacity: number, granularity: number, numGtes = MAX_GTES_PER_GT, descSectors = 20): SparseGeometry {
  const gtCount = Math.ceil(capacity / (numGtes * granularity));
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR);
  const gtSectors = Math.ceil((numGtes * 4) / SECTOR);
  const rgdOffset = 1 + descSectors;
  const gdOffset = rgdOffset + gdSectors + gtSectors * gtCount;
  const overhead = Math.ceil((gdOffset + gdSectors + gtSectors * gtCount) / granularity) * granularity;
  return { gtCount, gdSectors, gtSectors, rgdOffset, gdOffset, overhead };
}
