/**
 * `info` for VMDK: the header-level facts (size, grain size, CIDs, create type, the extents list) as qemu-img
 * reports them, read without touching guest data; plus whether the chain is stale (the parent changed since).
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { corrupt, DiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { HeaderInfo } from '../../block/types';
import { cidOf, resolveExtentPath, staleCids } from './open';
import {
  COMPRESSION_DEFLATE,
  FOOTER_BYTES,
  MAX_DESCRIPTOR_BYTES,
  SECTOR,
  SPARSE_DESCRIPTOR_PROBE,
  VMDK3_MAGIC,
  VMDK4_HEADER_SIZE,
  VMDK4_MAGIC,
  parseDescriptor,
  parseFooter,
  parseVmdk3Header,
  parseVmdk4Header,
  probeVmdk,
  validateVmdk3Header,
  validateVmdk4Header,
  type Descriptor,
  type ExtentLine,
} from './layout';

/** One extent as `info` lists it (qemu-img's keys). */
export interface VmdkExtentInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'cluster-size'?: number;
  compressed?: boolean;
}

/** What a sparse extent's own header says. */
interface SparseFacts {
  sectors: number;
  grainBytes: number;
  compressed: boolean;
  unclean: boolean;
  /** The descriptor embedded in the extent, if any. */
  descriptor?: Descriptor;
}

/** Descriptors are UTF-8 (VMware's ddb.encoding); undecodable bytes become U+FFFD rather than an error. */
const decoder = new TextDecoder('utf-8');

/** Reads text at pos, at most `max` bytes and never past the end of the file. */
async function readText(file: ImageFile, pos: number, max: number): Promise<string> {
  if (pos >= file.size) return '';
  const len = Math.min(max, file.size - pos, MAX_DESCRIPTOR_BYTES);
  return decoder.decode(await file.readBlock(pos, len, 'vmdk descriptor'));
}

/** Reads a VMDK4 or VMDK3 sparse extent's header (and a stream footer when the header defers to it). */
async function readSparse(file: ImageFile): Promise<SparseFacts> {
  const path = file.path;
  if (file.size < 4) throw corrupt(`${path}: the file is too small to be a VMDK image`, path);
  const head = await file.readExact(0, new Uint8Array(Math.min(VMDK4_HEADER_SIZE, file.size)), 'vmdk header');
  const magic = new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(0, true);
  if (magic === VMDK3_MAGIC) {
    const h = parseVmdk3Header(head, path);
    validateVmdk3Header(h, path);
    // VMDK3 has no descriptor offset; qemu looks for the CIDs in the sectors after the header.
    const text = await readText(file, SECTOR, SPARSE_DESCRIPTOR_PROBE);
    let descriptor: Descriptor | undefined;
    try {
      descriptor = text.includes('CID') ? parseDescriptor(text, path) : undefined;
    } catch {
      descriptor = undefined; // ESX 2 files carry no descriptor: whatever lies there is not ours to judge
    }
    return { sectors: h.diskSectors, grainBytes: h.granularity * SECTOR, compressed: false, unclean: false, descriptor };
  }
  if (magic !== VMDK4_MAGIC) throw corrupt(`${path}: not a VMDK sparse extent (bad magic)`, path);
  let h = parseVmdk4Header(head, path);
  if (h.gdOffset === undefined) {
    // Stream-optimized: the header at the start may leave the grain directory to the footer.
    if (file.size < FOOTER_BYTES + VMDK4_HEADER_SIZE) throw corrupt(`${path}: the vmdk stream footer is missing`, path);
    const footer = await file.readBlock(file.size - 1024 - SECTOR, FOOTER_BYTES, 'vmdk footer');
    h = parseFooter(footer, path);
  }
  validateVmdk4Header(h, path, file.size);
  let descriptor: Descriptor | undefined;
  if (h.descriptorOffset > 0 && h.descriptorSize > 0) {
    const text = await readText(file, h.descriptorOffset * SECTOR, h.descriptorSize * SECTOR);
    descriptor = parseDescriptor(text, path);
  }
  return {
    sectors: h.capacity,
    grainBytes: h.granularity * SECTOR,
    compressed: h.compressAlgorithm === COMPRESSION_DEFLATE,
    unclean: h.uncleanShutdown,
    descriptor,
  };
}

/** Joins an extent name to the descriptor's path as qemu does (path_combine): relative to its folder. */
export function extentPath(descriptorPath: string, name: string): string {
  if (nodePath.isAbsolute(name)) return name;
  const slash = descriptorPath.lastIndexOf('/');
  return slash < 0 ? name : descriptorPath.slice(0, slash + 1) + name;
}

/** Extent files are only opened when they really lie in the descriptor's folder (symlinks resolved): their real path, or undefined. */
async function readableExtent(descriptorPath: string, name: string): Promise<string | undefined> {
  return resolveExtentPath(descriptorPath, name, 'inside-folder').catch(() => undefined);
}

/** One extent, its keys in qemu-img's order. */
function extentInfo(bytes: number, filename: string, format: string, facts: SparseFacts | undefined): VmdkExtentInfo {
  return {
    ...(facts?.compressed ? { compressed: true } : {}),
    'virtual-size': bytes,
    filename,
    ...(facts ? { 'cluster-size': facts.grainBytes } : {}),
    format,
  };
}

/** A descriptor's extents as info lists them; sparse extents' headers are read for their grain size. */
async function describeExtents(descriptorPath: string, extents: ExtentLine[]): Promise<VmdkExtentInfo[]> {
  const out: VmdkExtentInfo[] = [];
  for (const e of extents) {
    const filename = e.type === 'ZERO' ? '' : extentPath(descriptorPath, e.filename);
    let facts: SparseFacts | undefined;
    const real = e.type === 'SPARSE' || e.type === 'VMFSSPARSE' || e.type === 'SESPARSE' ? await readableExtent(descriptorPath, e.filename) : undefined;
    if (real !== undefined) {
      const f = await ImageFile.open(real, false);
      try {
        facts = await readSparse(f);
      } finally {
        await f.close();
      }
    }
    out.push(extentInfo(e.sectors * SECTOR, filename, e.type, facts));
  }
  return out;
}

/** qemu gives a cluster size when the first extent is sparse and every extent has the same grain size. */
function commonClusterSize(extents: VmdkExtentInfo[]): number | undefined {
  const first = extents[0]?.['cluster-size'];
  if (first === undefined) return undefined;
  return extents.every((e) => e['cluster-size'] === first) ? first : undefined;
}

/**
 * True when the parent named by the descriptor is a VMDK whose CID is no longer the child's parentCID (qemu-img
 * info says nothing of it; its reads fail). Only a parent in the image's folder is looked at: info follows no path
 * outside it on its own.
 */
async function parentIsStale(path: string, d: Descriptor | undefined): Promise<boolean> {
  const hint = d?.parentFileNameHint;
  if (d === undefined || hint === undefined || hint === '') return false;
  const parent = await readableExtent(path, hint);
  if (parent === undefined) return false;
  const cid = await cidOf(parent).catch(() => undefined);
  return staleCids(d, cid);
}

function headerInfo(virtualSize: number, d: Descriptor | undefined, extents: VmdkExtentInfo[], dirty: boolean, stale: boolean): HeaderInfo {
  const data: Record<string, unknown> = {
    ...(d?.cid !== undefined ? { cid: d.cid } : {}),
    ...(d?.parentCid !== undefined ? { 'parent-cid': d.parentCid } : {}),
    'create-type': d?.createType ?? '',
    extents,
    // Our own key (qemu has none): the parent changed after this image was made from it.
    ...(stale ? { 'parent-cid-stale': true } : {}),
  };
  const cluster = commonClusterSize(extents);
  const backing = d?.parentFileNameHint;
  return {
    format: 'vmdk',
    'virtual-size': virtualSize,
    ...(cluster !== undefined ? { 'cluster-size': cluster } : {}),
    // VMDK names no backing format; a parent of a VMDK is a VMDK (qemu reports it so too).
    ...(backing !== undefined && backing !== '' ? { 'backing-filename': backing, 'backing-filename-format': 'vmdk' } : {}),
    'dirty-flag': dirty,
    'format-specific': { type: 'vmdk', data },
    // seSparse and raw device mappings are the extents this build cannot read.
    'data-readable': !extents.some((e) => ['SESPARSE', 'VMFSRDM', 'VMFSRAW'].includes(e.format)),
  };
}

/**
 * What the descriptor and its extent files take on disk, as qemu-img counts it: the descriptor plus every other
 * extent file (only those in the descriptor's folder are looked at).
 */
async function allocatedWithExtents(file: ImageFile, extents: VmdkExtentInfo[]): Promise<number> {
  let total = await file.allocatedSize();
  const seen = new Set<string>([nodePath.resolve(file.path)]);
  for (const e of extents) {
    if (e.filename === '') continue;
    const full = await readableExtent(file.path, e.filename);
    if (full === undefined || seen.has(full)) continue;
    seen.add(full);
    const st = await fsp.stat(full).catch(() => undefined);
    if (st?.isFile()) total += st.blocks * 512;
  }
  return total;
}

async function describeDescriptorFile(file: ImageFile, d: Descriptor): Promise<HeaderInfo> {
  const path = file.path;
  if (d.extents.length === 0) throw corrupt(`${path}: the vmdk descriptor lists no extents`, path);
  const total = d.extents.reduce((n, e) => n + e.sectors, 0);
  if (total * SECTOR > Number.MAX_SAFE_INTEGER) throw corrupt(`${path}: the vmdk extents add up to an impossibly large disk`, path);
  const extents = await describeExtents(path, d.extents);
  return { ...headerInfo(total * SECTOR, d, extents, false, await parentIsStale(path, d)), 'actual-size': await allocatedWithExtents(file, extents) };
}

export async function describeVmdk(file: ImageFile): Promise<HeaderInfo> {
  const path = file.path;
  if (file.size < 4) throw corrupt(`${path}: the file is too small to be a VMDK image`, path);
  const head = await file.readExact(0, new Uint8Array(4), 'vmdk header');
  const magic = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
  if (magic === VMDK4_MAGIC || magic === VMDK3_MAGIC) {
    const s = await readSparse(file);
    // A sparse header with no capacity whose embedded descriptor lists extents is a descriptor in disguise (ESXi).
    if (s.sectors === 0 && s.descriptor && s.descriptor.extents.length > 0) return describeDescriptorFile(file, s.descriptor);
    return headerInfo(s.sectors * SECTOR, s.descriptor, [extentInfo(s.sectors * SECTOR, path, '', s)], s.unclean, await parentIsStale(path, s.descriptor));
  }
  const probeHead = await file.readExact(0, new Uint8Array(Math.min(4096, file.size)), 'vmdk descriptor');
  if (!probeVmdk(probeHead)) throw new DiskError('EINVAL', `${path}: not a VMDK image (no sparse header and no descriptor)`, path);
  const text = await readText(file, 0, MAX_DESCRIPTOR_BYTES);
  return describeDescriptorFile(file, parseDescriptor(text, path));
}

