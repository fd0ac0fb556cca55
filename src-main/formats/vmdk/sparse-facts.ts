/**
 * A sparse extent's facts as its header (or a stream's footer) gives them, checked against the file, and the
 * reading of its little-endian tables: what SparseExtent (extent.ts) is built on.
 */
import { DiskError, corrupt } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { SECTOR, view } from '../../block/bytes';
import {
  FOOTER_BYTES,
  FLAG_RGD,
  FLAG_ZERO_GRAIN,
  FLAG_MARKER,
  COMPRESSION_DEFLATE,
  VMDK3_MAGIC,
  VMDK4_HEADER_SIZE,
  VMDK4_MAGIC,
  parseFooter,
  parseVmdk3Header,
  parseVmdk4Header,
  validateVmdk3Header,
  validateVmdk4Header,
  type Vmdk4Header,
} from './layout';

/** qemu's bound on a grain directory (L1) size: 512 MiB / 4 entries. */
const MAX_GD_ENTRIES = (512 * 1024 * 1024) / 4;
export interface SparseFacts {
  /** Capacity in sectors, from the header. */
  capacity: number;
  grainBytes: number;
  numGtes: number;
  gdOffset: number; // bytes
  rgdOffset?: number; // bytes; only when the header's RGD flag is set
  gdEntries: number;
  zeroGrain: boolean;
  compressed: boolean;
  markers: boolean;
  version: number;
  vmdk3: boolean;
  header?: Vmdk4Header;
  /** The header said GD_AT_END: the real header is the footer's copy (a stream-optimized file). */
  footer: boolean;
}

/** Reads a sparse extent's header (and its stream footer when the header defers to it), checked against the file. */
export async function readSparseFacts(file: ImageFile): Promise<SparseFacts> {
  const path = file.path;
  if (file.size < 4) throw corrupt(`${path}: the file is too small to be a VMDK sparse extent`, path);
  const head = await file.readExact(0, new Uint8Array(Math.min(VMDK4_HEADER_SIZE, file.size)), 'vmdk header');
  const magic = view(head).getUint32(0, true);
  if (magic === VMDK3_MAGIC) {
    const h = parseVmdk3Header(head, path);
    validateVmdk3Header(h, path);
    if (h.l1dirSize > MAX_GD_ENTRIES) throw new DiskError('EUNSUPPORTED', `${path}: vmdk L1 size ${h.l1dirSize} is too big`, path);
    return {
      capacity: h.diskSectors,
      grainBytes: h.granularity * SECTOR,
      numGtes: 4096,
      gdOffset: h.l1dirOffset * SECTOR,
      gdEntries: h.l1dirSize,
      zeroGrain: false,
      compressed: false,
      markers: false,
      version: h.version,
      vmdk3: true,
      footer: false,
    };
  }
  if (magic !== VMDK4_MAGIC) throw corrupt(`${path}: not a VMDK sparse extent (bad magic)`, path);
  let h = parseVmdk4Header(head, path);
  let footer = false;
  if (h.gdOffset === undefined) {
    if (file.size < FOOTER_BYTES + VMDK4_HEADER_SIZE) throw corrupt(`${path}: the vmdk stream footer is missing`, path);
    h = parseFooter(await file.readBlock(file.size - FOOTER_BYTES, FOOTER_BYTES, 'vmdk footer'), path);
    footer = true;
  }
  validateVmdk4Header(h, path, file.size);
  const l1EntrySectors = h.numGtesPerGt * h.granularity;
  const gdEntries = h.capacity === 0 ? 0 : Math.ceil(h.capacity / l1EntrySectors);
  if (gdEntries > MAX_GD_ENTRIES) throw new DiskError('EUNSUPPORTED', `${path}: vmdk L1 size ${gdEntries} is too big`, path);
  const rgd = (h.flags & FLAG_RGD) !== 0 && h.rgdOffset > 0 ? h.rgdOffset * SECTOR : undefined;
  return {
    capacity: h.capacity,
    grainBytes: h.granularity * SECTOR,
    numGtes: h.numGtesPerGt,
    gdOffset: h.gdOffset! * SECTOR,
    ...(rgd !== undefined ? { rgdOffset: rgd } : {}),
    gdEntries,
    zeroGrain: (h.flags & FLAG_ZERO_GRAIN) !== 0,
    compressed: h.compressAlgorithm === COMPRESSION_DEFLATE,
    markers: (h.flags & FLAG_MARKER) !== 0,
    version: h.version,
    vmdk3: false,
    header: h,
    footer,
  };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * `count` little-endian 32-bit entries at `pos`, bounded by the file's length. On a little-endian host they are
 * read straight into the table's own memory: a walk over a large image reads thousands of tables, and one
 * allocation each instead of a byte buffer, a DataView and the table keeps its garbage (and peak RSS) down.
 */
export async function readTable(file: ImageFile, pos: number, count: number, what: string): Promise<Uint32Array> {
  return readTableInto(file, pos, new Uint32Array(count), what);
}

export async function readTableInto(file: ImageFile, pos: number, t: Uint32Array, what: string): Promise<Uint32Array> {
  if (!LITTLE_ENDIAN) t.set(readU32s(await file.readBlock(pos, t.length * 4, what)));
  else await file.readExact(pos, new Uint8Array(t.buffer, t.byteOffset, t.byteLength), what);
  return t;
}

export function readU32s(buf: Uint8Array): Uint32Array {
  const out = new Uint32Array(buf.length / 4);
  const v = view(buf);
  for (let i = 0; i < out.length; i++) out[i] = v.getUint32(i * 4, true);
  return out;
}

export function u32Bytes(xs: Uint32Array): Uint8Array {
  const buf = new Uint8Array(xs.length * 4);
  const v = view(buf);
  for (let i = 0; i < xs.length; i++) v.setUint32(i * 4, xs[i], true);
  return buf;
}

