/**
 * Opening a VMDK: a monolithic sparse file (its own single extent, descriptor embedded), or a descriptor file
 * (text, or a sparse header of capacity 0 carrying one) naming extent files. Extent files resolve relative to
 * the descriptor's folder, after symlinks, through the same path policy as backing files; the parent named by
 * parentFileNameHint is opened through OpenOptions.openBacking and its CID must match our parentCID.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { SECTOR, view } from '../../block/bytes';
import { resolveBackingPath } from '../../block/backing-path';
import { DiskError, corrupt, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BackingPolicy, BlockDevice, OpenOptions } from '../../block/types';
import { FlatExtent, SparseExtent, ZeroExtent, readSparseFacts, type VmdkExtent } from './extent';
import {
  MAX_DESCRIPTOR_BYTES,
  SPARSE_DESCRIPTOR_PROBE,
  VMDK3_MAGIC,
  VMDK4_MAGIC,
  looksLikeDescriptor,
  parseDescriptor,
  type Descriptor,
} from './layout';

/** More extents than this in one descriptor is not a disk anyone made (and would open as many files). */
export const MAX_EXTENTS = 4096;

/** Where the descriptor text lives, so that a write can change its CID. */
export interface DescriptorPlace {
  file: ImageFile;
  /** Byte offset of the text in the file. */
  offset: number;
  /** Bytes the text may take (a descriptor file: any; embedded: its sectors). */
  room: number;
  embedded: boolean;
}

export interface OpenedVmdk {
  descriptor: Descriptor;
  place?: DescriptorPlace;
  extents: VmdkExtent[];
  /** Every file opened (descriptor and extents), each once. */
  files: ImageFile[];
  size: number;
}

const decoder = new TextDecoder('utf-8');

async function readText(file: ImageFile, pos: number, max: number): Promise<string> {
  if (pos >= file.size) return '';
  const len = Math.min(max, file.size - pos, MAX_DESCRIPTOR_BYTES);
  return decoder.decode(await file.readBlock(pos, len, 'vmdk descriptor'));
}

/** Extent (and parent) names resolve from the descriptor's real folder; 'none' (no backing) still confines extents. */
function extentPolicy(policy: BackingPolicy): BackingPolicy {
  return policy === 'none' ? 'inside-folder' : policy;
}

/** Resolves an extent name through the path policy, symlinks of the descriptor and of the extent resolved first. */
export async function resolveExtentPath(descriptorPath: string, name: string, policy: BackingPolicy): Promise<string> {
  const realDesc = await fsp.realpath(descriptorPath).catch(() => nodePath.resolve(descriptorPath));
  const p = extentPolicy(policy);
  const full = resolveBackingPath(realDesc, name, p);
  let real: string;
  try {
    real = await fsp.realpath(full);
  } catch (err) {
    const e = toDiskError(err, full);
    if (e.code === 'ENOENT') throw new DiskError('ENOENT', `${descriptorPath}: its extent file ${full} does not exist`, full);
    throw e;
  }
  // A symlink inside the folder may point outside it: judge where it really leads.
  if (real !== full) resolveBackingPath(realDesc, real, p);
  return real;
}

/** Opens the files of an image for reading (and writing when `writable`). */
export async function openVmdk(path: string, writable: boolean, policy: BackingPolicy): Promise<OpenedVmdk> {
  const files = new Map<string, ImageFile>();
  const open = async (p: string, rw: boolean): Promise<ImageFile> => {
    const key = nodePath.resolve(p);
    const have = files.get(key);
    if (have) return have;
    const f = await ImageFile.open(p, rw);
    files.set(key, f);
    return f;
  };
  try {
    const top = await open(path, writable);
    const result = await openFrom(top, path, writable, policy, open);
    return { ...result, files: [...files.values()] };
  } catch (err) {
    for (const f of files.values()) await f.close();
    throw toDiskError(err, path);
  }
}

async function openFrom(
  top: ImageFile,
  path: string,
  writable: boolean,
  policy: BackingPolicy,
  open: (p: string, rw: boolean) => Promise<ImageFile>,
): Promise<Omit<OpenedVmdk, 'files'>> {
  if (top.size < 4) throw corrupt(`${path}: the file is too small to be a VMDK image`, path);
  const head = await top.readExact(0, new Uint8Array(Math.min(top.size, 4096)), 'vmdk header');
  const magic = view(head).getUint32(0, true);
  if (magic === VMDK4_MAGIC || magic === VMDK3_MAGIC) {
    const facts = await readSparseFacts(top);
    let descriptor: Descriptor | undefined;
    let place: DescriptorPlace | undefined;
    if (facts.vmdk3) {
      const text = await readText(top, SECTOR, SPARSE_DESCRIPTOR_PROBE);
      try {
        descriptor = text.includes('CID') ? parseDescriptor(text, path) : undefined;
      } catch {
        descriptor = undefined;
      }
    } else if (facts.header && facts.header.descriptorOffset > 0 && facts.header.descriptorSize > 0) {
      const off = facts.header.descriptorOffset * SECTOR;
      const room = facts.header.descriptorSize * SECTOR;
      descriptor = parseDescriptor(await readText(top, off, room), path);
      place = { file: top, offset: off, room, embedded: true };
    }
    // A sparse header of capacity 0 whose embedded descriptor lists extents is a descriptor file (ESXi).
    if (facts.capacity === 0 && descriptor && descriptor.extents.length > 0) return openExtents(path, descriptor, place, writable, policy, open);
    const bytes = facts.capacity * SECTOR;
    const extent = await SparseExtent.open('SPARSE', bytes, top, writable);
    return { descriptor: descriptor ?? { extents: [], ddb: {} }, place, extents: [extent], size: bytes };
  }
  if (!looksLikeDescriptor(head)) throw new DiskError('EINVAL', `${path}: not a VMDK image (no sparse header and no descriptor)`, path);
  if (top.size > MAX_DESCRIPTOR_BYTES) throw corrupt(`${path}: the vmdk descriptor file is larger than ${MAX_DESCRIPTOR_BYTES} bytes`, path);
  const descriptor = parseDescriptor(await readText(top, 0, MAX_DESCRIPTOR_BYTES), path);
  return openExtents(path, descriptor, { file: top, offset: 0, room: MAX_DESCRIPTOR_BYTES, embedded: false }, writable, policy, open);
}

async function openExtents(
  path: string,
  d: Descriptor,
  place: DescriptorPlace | undefined,
  writable: boolean,
  policy: BackingPolicy,
  open: (p: string, rw: boolean) => Promise<ImageFile>,
): Promise<Omit<OpenedVmdk, 'files'>> {
  if (d.extents.length === 0) throw corrupt(`${path}: the vmdk descriptor lists no extents`, path);
  if (d.extents.length > MAX_EXTENTS) throw corrupt(`${path}: the vmdk descriptor lists ${d.extents.length} extents (at most ${MAX_EXTENTS} are read)`, path);
  const extents: VmdkExtent[] = [];
  let size = 0;
  for (const e of d.extents) {
    const bytes = e.sectors * SECTOR;
    size += bytes;
    if (size > Number.MAX_SAFE_INTEGER) throw corrupt(`${path}: the vmdk extents add up to an impossibly large disk`, path);
    if (e.type === 'ZERO') {
      extents.push(new ZeroExtent(e.type, bytes));
      continue;
    }
    if (e.type === 'SESPARSE') throw new DiskError('EUNSUPPORTED', `${path}: seSparse extents (VMFS 6 snapshots) are not supported`, path);
    if (e.type === 'VMFSRDM' || e.type === 'VMFSRAW') throw new DiskError('EUNSUPPORTED', `${path}: ${e.type} extents (raw device mappings) are not supported`, path);
    const rw = writable && e.access === 'RW';
    const full = await resolveExtentPath(path, e.filename, policy);
    const file = await open(full, rw);
    if (e.type === 'FLAT' || e.type === 'VMFS') extents.push(new FlatExtent(e.type, bytes, file, e.offset * SECTOR, rw && file.writable));
    else extents.push(await SparseExtent.open(e.type, bytes, file, rw && file.writable));
  }
  return { descriptor: d, place, extents, size };
}

/**
 * Opens the parent named by parentFileNameHint (none when the policy is 'none') and checks that its CID is the
 * one this image was made against; a VMDK parent that was written since makes the chain stale.
 */
export async function openParent(path: string, d: Descriptor, opts: OpenOptions): Promise<BlockDevice | undefined> {
  const hint = d.parentFileNameHint;
  if (hint === undefined || hint === '' || opts.backingPolicy === 'none') return undefined;
  const full = resolveBackingPath(path, hint, opts.backingPolicy);
  const parent = await opts.openBacking(full, undefined, true);
  const parentCid = (parent as { cid?: number }).cid;
  if (parent.format === 'vmdk' && parentCid !== undefined && d.parentCid !== undefined && d.parentCid !== 0xffffffff && parentCid !== d.parentCid) {
    await parent.close().catch(() => undefined);
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    throw corrupt(
      `${path}: the backing chain is stale: its parent ${full} has CID ${hex(parentCid)} but this image was made against CID ${hex(d.parentCid)} (the parent was changed after the child was made)`,
      path,
    );
  }
  return parent;
}
