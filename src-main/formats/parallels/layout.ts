/**
 * Parallels expandable image header (docs/interop/parallels.txt in qemu): a 64-byte header, the BAT right
 * after it, then the data area. Every number is little-endian. Pure codecs: no I/O here.
 */
import { SECTOR, view } from '../../block/bytes';
import { corrupt, DiskError } from '../../block/errors';
import { forEachUsed } from '../../block/table-scan';

export { SECTOR };
export const HEADER_SIZE = 64;
/** Old images: BAT entries count sectors and only the low 32 bits of nb_sectors are used. */
export const MAGIC_OLD = 'WithoutFreeSpace';
/** Images with the format extension: BAT entries count clusters. */
export const MAGIC_EXT = 'WithouFreSpacExt';
export const VERSION = 2;
/** in_use: the image is open read-write (or was not closed cleanly). */
export const INUSE_MAGIC = 0x746f6e59;
/** in_use: the image was closed. */
export const CLOSED_MAGIC = 0x312e3276;
export const FLAG_EMPTY = 1;
/** qemu's limits on the cluster size (tracks) and the BAT. */
export const MAX_TRACKS = Math.floor(0x7fffffff / 513);
export const MAX_BAT_ENTRIES = Math.floor(0x7fffffff / 4);
export const FORMAT_EXTENSION_MAGIC = 0xab234cef23dcea87n;

export interface ParallelsHeader {
  /** True for "WithouFreSpacExt" (BAT in clusters), false for "WithoutFreeSpace" (BAT in sectors). */
  extended: boolean;
  version: number;
  heads: number;
  cylinders: number;
  /** Cluster size in sectors. */
  tracks: number;
  batEntries: number;
  /** Disk size in sectors (for old images only the low 32 bits count). */
  nbSectors: number;
  inUse: number;
  /** Start of the data area in sectors; 0 means "right after the BAT" (old images only). */
  dataOff: number;
  flags: number;
  /** Format extension cluster, in sectors; 0 when absent. */
  extOff: number;
}

function magicOf(buf: Uint8Array): 'old' | 'ext' | undefined {
  if (buf.length < 16) return undefined;
  const text = String.fromCharCode(...buf.subarray(0, 16));
  return text === MAGIC_OLD ? 'old' : text === MAGIC_EXT ? 'ext' : undefined;
}

/** 100 for either magic (as qemu, which also insists on version 2 when opening); 0 otherwise. */
export function probeParallels(head: Uint8Array): number {
  return magicOf(head) ? 100 : 0;
}

export function parseHeader(buf: Uint8Array, path: string): ParallelsHeader {
  if (buf.length < HEADER_SIZE) throw corrupt(`${path}: parallels header is truncated`, path);
  const kind = magicOf(buf);
  if (!kind) throw new DiskError('EINVAL', `${path}: not a Parallels image (bad magic)`, path);
  const v = view(buf);
  const nb = v.getBigUint64(36, true);
  const ext = v.getBigUint64(56, true);
  const h: ParallelsHeader = {
    extended: kind === 'ext',
    version: v.getUint32(16, true),
    heads: v.getUint32(20, true),
    cylinders: v.getUint32(24, true),
    tracks: v.getUint32(28, true),
    batEntries: v.getUint32(32, true),
    // Old images use only the low 32 bits (qemu masks them the same way).
    nbSectors: kind === 'old' ? Number(nb & 0xffffffffn) : nb > BigInt(Number.MAX_SAFE_INTEGER) / 512n ? -1 : Number(nb),
    inUse: v.getUint32(44, true),
    dataOff: v.getUint32(48, true),
    flags: v.getUint32(52, true),
    extOff: ext > BigInt(Number.MAX_SAFE_INTEGER) / 512n ? -1 : Number(ext),
  };
  if (h.nbSectors < 0) throw corrupt(`${path}: parallels disk size of ${nb} sectors is impossibly large`, path);
  if (h.extOff < 0) throw corrupt(`${path}: parallels format extension offset ${ext} is impossibly large`, path);
  return h;
}

/** Checks the numbers qemu checks before trusting a header; `fileSize` bounds the BAT and data offset. */
export function validateHeader(h: ParallelsHeader, path: string, fileSize: number): void {
  if (h.version !== VERSION) throw new DiskError('EUNSUPPORTED', `${path}: parallels version ${h.version} is not supported (only 2 is)`, path);
  if (h.tracks === 0) throw corrupt(`${path}: invalid parallels image: zero sectors per cluster`, path);
  if (h.tracks > MAX_TRACKS) throw corrupt(`${path}: invalid parallels image: cluster of ${h.tracks} sectors is too big`, path);
  if (h.batEntries > MAX_BAT_ENTRIES) throw corrupt(`${path}: parallels BAT is too large (${h.batEntries} entries)`, path);
  if (HEADER_SIZE + h.batEntries * 4 > fileSize) throw corrupt(`${path}: the parallels BAT (${h.batEntries} entries) lies past the end of the file`, path);
  // A data offset inside the BAT or zero in an extended image breaks the spec, but qemu opens such images
  // (it recomputes the offset), so a header-level look does not refuse them either.
}

/** Sectors taken by the header and BAT. */
export function batEndSectors(h: ParallelsHeader): number {
  return Math.ceil((HEADER_SIZE + h.batEntries * 4) / SECTOR);
}

/** The data area's start in bytes: data_off, or the end of the BAT when data_off is zero. */
export function dataOffsetBytes(h: ParallelsHeader): number {
  return (h.dataOff || batEndSectors(h)) * SECTOR;
}

export function serializeHeader(h: ParallelsHeader): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE);
  const v = view(buf);
  const magic = h.extended ? MAGIC_EXT : MAGIC_OLD;
  for (let i = 0; i < 16; i++) buf[i] = magic.charCodeAt(i);
  v.setUint32(16, h.version, true);
  v.setUint32(20, h.heads, true);
  v.setUint32(24, h.cylinders, true);
  v.setUint32(28, h.tracks, true);
  v.setUint32(32, h.batEntries, true);
  v.setBigUint64(36, BigInt(h.nbSectors), true);
  v.setUint32(44, h.inUse, true);
  v.setUint32(48, h.dataOff, true);
  v.setUint32(52, h.flags, true);
  v.setBigUint64(56, BigInt(h.extOff), true);
  return buf;
}

/** qemu's limit on the disk size: fewer than 2^32 clusters. */
export const MAX_IMAGE_FACTOR = 2 ** 32;
/** qemu-img's default cluster size. */
export const DEFAULT_CLUSTER_SIZE = 1024 * 1024;
/** Geometry qemu writes; it is not used at image level. */
const HEADS = 16;
const SECTORS_PER_CYLINDER = 32;

/** Byte offset of BAT entry `idx` in the file. */
export function batEntryOffset(idx: number): number {
  return HEADER_SIZE + 4 * idx;
}

/** Sectors one unit of a BAT entry stands for: 1 in old images (sectors), the cluster in extended ones. */
export function batMultiplier(h: ParallelsHeader): number {
  return h.extended ? h.tracks : 1;
}

/**
 * The entries that name a cluster an earlier entry names too, in entry order, each with that earlier entry.
 * The values in use are sorted in a typed array (4 bytes an allocated entry, dropped afterwards) rather than
 * kept in a map per entry, so a fully allocated 1 TiB image costs 4 MiB here, not an object per cluster.
 */
export function sharedEntries(bat: Uint32Array): Array<[entry: number, first: number]> {
  let used = 0;
  forEachUsed(bat, 0, () => used++);
  const values = new Uint32Array(used);
  let k = 0;
  forEachUsed(bat, 0, (_, value) => (values[k++] = value));
  values.sort();
  const twice = new Map<number, number>();
  for (let j = 1; j < values.length; j++) if (values[j] === values[j - 1]) twice.set(values[j], -1);
  const out: Array<[number, number]> = [];
  if (twice.size === 0) return out;
  forEachUsed(bat, 0, (i, value) => {
    const first = twice.get(value);
    if (first === undefined) return;
    if (first < 0) twice.set(value, i);
    else out.push([i, first]);
  });
  return out;
}

export function serializeBatEntry(value: number): Uint8Array {
  const buf = new Uint8Array(4);
  view(buf).setUint32(0, value, true);
  return buf;
}

/**
 * The header qemu-img create writes for a disk of `size` bytes (rounded up to sectors) and a cluster of
 * `clusterSize` bytes (rounded up to sectors): extended magic, BAT entries to cover the disk, and the data
 * area starting at the first cluster boundary after the BAT. Refuses what qemu-img refuses, in its words.
 */
export function createHeader(size: number, clusterSize: number): ParallelsHeader {
  const total = Math.ceil(size / SECTOR) * SECTOR;
  const cl = Math.ceil(clusterSize / SECTOR) * SECTOR;
  if (cl / SECTOR > MAX_TRACKS) throw new DiskError('EINVAL', 'Cluster size is too large');
  if (total >= MAX_IMAGE_FACTOR * cl) throw new DiskError('EINVAL', 'Image size is too large for this cluster size');
  const batEntries = Math.ceil(total / cl);
  const batClusters = Math.ceil(batEntryOffset(batEntries) / cl);
  return {
    extended: true,
    version: VERSION,
    heads: HEADS,
    cylinders: Math.floor(total / SECTOR / HEADS / SECTORS_PER_CYLINDER),
    tracks: cl / SECTOR,
    batEntries,
    nbSectors: total / SECTOR,
    inUse: 0,
    dataOff: (batClusters * cl) / SECTOR,
    flags: 0,
    extOff: 0,
  };
}
