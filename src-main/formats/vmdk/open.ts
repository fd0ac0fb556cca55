/**
 * Opening a VMDK: a monolithic sparse file (its own single extent, descriptor embedded), or a descriptor file
 * (text, or a sparse header of capacity 0 carrying one) naming extent files. Extent files resolve relative to
 * the descriptor's folder and are judged by where they really lie (symlinks resolved), under the same policy and
 * grants as backing files; the parent named by parentFileNameHint is opened through OpenOptions.openBacking and its
 * CID must match our parentCID unless the caller accepts a stale chain. Also the descriptor alone (readDescriptor,
 * cidOf) for info and for recording a new parent.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { SECTOR, view } from '../../block/bytes';
import { overridePath, resolveBackingPath } from '../../block/backing-path';
import { DiskError, corrupt, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BackingPolicy, BlockDevice, OpenOptions } from '../../block/types';
import { FlatExtent, SparseExtent, ZeroExtent, readSparseFacts, type SparseFacts, type VmdkExtent } from './extent';
import {
  MAX_DESCRIPTOR_BYTES,
  PARENT_CID_BEFORE_COMMIT,
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

/** True when `target` lies in `dir` or below it. */
function within(dir: string, target: string): boolean {
  const rel = nodePath.relative(dir, target);
  return rel !== '' && !rel.startsWith('..') && !nodePath.isAbsolute(rel);
}

/**
 * Resolves an extent name as qemu does (relative to the descriptor's folder) and decides by where it really
 * lies: symlinks of the descriptor and of the extent are resolved first, so a link inside the folder that leads
 * outside it counts as outside. An extent outside is read under 'anywhere', or under a grant policy holding a
 * grant for this descriptor and this extent (the app asks exactly as it does for backing files); otherwise it
 * is refused with EOUTSIDE naming the extent's absolute path, the pair the grant is made for.
 */
export async function resolveExtentPath(descriptorPath: string, name: string, policy: BackingPolicy): Promise<string> {
  const given = nodePath.resolve(descriptorPath);
  const realDesc = await fsp.realpath(descriptorPath).catch(() => given);
  const dir = nodePath.dirname(realDesc);
  const full = nodePath.resolve(dir, name);
  let real: string;
  try {
    real = await fsp.realpath(full);
  } catch (err) {
    const e = toDiskError(err, full);
    if (e.code === 'ENOENT') throw new DiskError('ENOENT', `${descriptorPath}: its extent file ${full} does not exist`, full);
    throw e;
  }
  const p = extentPolicy(policy);
  if (p === 'anywhere' || within(dir, real)) return real;
  if (typeof p === 'object' && (p.allows(given, real) || p.allows(realDesc, real) || p.allows(given, full))) return real;
  throw new DiskError('EOUTSIDE', `${descriptorPath}: its extent file ${real} lies outside the image's folder; allow it to be read`, real);
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

/** A VMDK file's descriptor and where its text lies, read without opening any extent. */
export interface DescriptorFacts {
  descriptor?: Descriptor;
  place?: DescriptorPlace;
  /** The file's own sparse extent header, when it has one. */
  sparse?: SparseFacts;
}

/** Reads the descriptor of an open VMDK file: embedded in a sparse header, or the file itself. EINVAL when not VMDK. */
export async function readDescriptor(top: ImageFile, path: string): Promise<DescriptorFacts> {
  if (top.size < 4) throw corrupt(`${path}: the file is too small to be a VMDK image`, path);
  const head = await top.readExact(0, new Uint8Array(Math.min(top.size, 4096)), 'vmdk header');
  const magic = view(head).getUint32(0, true);
  if (magic === VMDK4_MAGIC || magic === VMDK3_MAGIC) {
    const sparse = await readSparseFacts(top);
    if (sparse.vmdk3) {
      const text = await readText(top, SECTOR, SPARSE_DESCRIPTOR_PROBE);
      try {
        return { sparse, descriptor: text.includes('CID') ? parseDescriptor(text, path) : undefined };
      } catch {
        return { sparse };
      }
    }
    if (sparse.header && sparse.header.descriptorOffset > 0 && sparse.header.descriptorSize > 0) {
      const off = sparse.header.descriptorOffset * SECTOR;
      const room = sparse.header.descriptorSize * SECTOR;
      return { sparse, descriptor: parseDescriptor(await readText(top, off, room), path), place: { file: top, offset: off, room, embedded: true } };
    }
    return { sparse };
  }
  if (!looksLikeDescriptor(head)) throw new DiskError('EINVAL', `${path}: not a VMDK image (no sparse header and no descriptor)`, path);
  if (top.size > MAX_DESCRIPTOR_BYTES) throw corrupt(`${path}: the vmdk descriptor file is larger than ${MAX_DESCRIPTOR_BYTES} bytes`, path);
  const descriptor = parseDescriptor(await readText(top, 0, MAX_DESCRIPTOR_BYTES), path);
  return { descriptor, place: { file: top, offset: 0, room: MAX_DESCRIPTOR_BYTES, embedded: false } };
}

/** The CID of the image at `path` when it is a VMDK with a descriptor; undefined for any other file. */
export async function cidOf(path: string): Promise<number | undefined> {
  const f = await ImageFile.open(path, false);
  try {
    const head = await f.readExact(0, new Uint8Array(Math.min(f.size, 4096)), 'header');
    if (head.length < 4 || (view(head).getUint32(0, true) !== VMDK4_MAGIC && view(head).getUint32(0, true) !== VMDK3_MAGIC && !looksLikeDescriptor(head))) return undefined;
    return (await readDescriptor(f, path)).descriptor?.cid;
  } finally {
    await f.close();
  }
}

async function openFrom(
  top: ImageFile,
  path: string,
  writable: boolean,
  policy: BackingPolicy,
  open: (p: string, rw: boolean) => Promise<ImageFile>,
): Promise<Omit<OpenedVmdk, 'files'>> {
  const { descriptor, place, sparse } = await readDescriptor(top, path);
  if (sparse) {
    // A sparse header of capacity 0 whose embedded descriptor lists extents is a descriptor file (ESXi).
    if (sparse.capacity === 0 && descriptor && descriptor.extents.length > 0) return openExtents(path, descriptor, place, writable, policy, open);
    const bytes = sparse.capacity * SECTOR;
    const extent = await SparseExtent.open('SPARSE', bytes, top, writable);
    return { descriptor: descriptor ?? { extents: [], ddb: {} }, place, extents: [extent], size: bytes };
  }
  return openExtents(path, descriptor!, place, writable, policy, open);
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

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

/**
 * Opens the parent named by parentFileNameHint (none when the policy is 'none'; OpenOptions.backingOverride when
 * the recorded name is not where it lies) and checks that its CID is the one this image was made against. A VMDK
 * parent written since makes the chain stale: VMware refuses such a chain and qemu fails its reads, so it is
 * refused with EBACKINGCHANGED unless the caller says to read it anyway (acceptChangedBacking).
 */
export async function openParent(path: string, d: Descriptor, opts: OpenOptions): Promise<BlockDevice | undefined> {
  const hint = d.parentFileNameHint;
  if (hint === undefined || hint === '' || opts.backingPolicy === 'none') return undefined;
  const full = opts.backingOverride !== undefined ? overridePath(opts.backingOverride, opts.backingPolicy) : resolveBackingPath(path, hint, opts.backingPolicy);
  const parent = await opts.openBacking(full, undefined, true);
  const parentCid = (parent as { cid?: number }).cid;
  if (staleCids(d, parent.format === 'vmdk' ? parentCid : undefined) && !opts.acceptChangedBacking) {
    await parent.close().catch(() => undefined);
    throw new DiskError(
      'EBACKINGCHANGED',
      `${path}: the chain is stale: the parent ${full} changed after this image was made from it (its CID is ${hex8(parentCid!)}, this image expects ${hex8(d.parentCid!)}); VMware refuses such a chain, so it is read only if you accept that the parent changed`,
      path,
    );
  }
  return parent;
}

/**
 * True when a child's parentCID names another content than its VMDK parent's CID (ffffffff: no parent recorded).
 * While a commit into the parent hands its identity over, the child accepts the parent's CID from before the
 * commit too (descriptor.ts PARENT_CID_BEFORE_COMMIT), and no other.
 */
export function staleCids(d: Descriptor, parentCid: number | undefined): boolean {
  if (parentCid === undefined || d.parentCid === undefined || d.parentCid === 0xffffffff || parentCid === d.parentCid) return false;
  const before = d.ddb[PARENT_CID_BEFORE_COMMIT];
  return !(before !== undefined && /^[0-9a-f]{1,8}$/i.test(before.trim()) && parseInt(before, 16) === parentCid);
}
