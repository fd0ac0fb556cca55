/**
 * Reading a VDI image's metadata (header and block map, bounded by the file's length), and the facts about a
 * block map that open, check and repair share: which entries are out of range or shared, and the count of
 * allocated blocks as qemu counts it.
 */
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { HEADER_SIZE, isAllocated, parseHeader, UNALLOCATED, validateHeader, type VdiHeader } from './layout';
import { forEachUsed, uint32TableFromLittleEndian } from '../../block/table-scan';

export interface VdiImage {
  header: VdiHeader;
  /** The header's 512 bytes as read: rewritten headers keep the bytes no field covers. */
  headerBytes: Uint8Array;
  bmap: Uint32Array;
}

export async function readHeader(file: ImageFile): Promise<{ header: VdiHeader; headerBytes: Uint8Array }> {
  if (file.size < HEADER_SIZE) throw corrupt(`${file.path}: the file (${file.size} bytes) is too short for a VDI header`, file.path);
  const headerBytes = await file.readBlock(0, HEADER_SIZE, 'VDI header');
  const header = parseHeader(headerBytes, file.path);
  validateHeader(header, file.path, file.size);
  return { header, headerBytes };
}

export async function readImage(file: ImageFile): Promise<VdiImage> {
  const { header, headerBytes } = await readHeader(file);
  // validateHeader has bounded the map by the file's length, so its size is safe to allocate; the bytes are read
  // into the table itself (no second copy as bytes).
  const bmap = new Uint32Array(header.blocksInImage);
  await file.readExact(header.offsetBmap, new Uint8Array(bmap.buffer), 'VDI block map');
  return { header, headerBytes, bmap: uint32TableFromLittleEndian(bmap) };
}

/** What is wrong with a block map, in qemu's terms (vdi_co_check). */
export interface BmapFindings {
  /** Guest blocks whose entry names a data block at or past blocks_in_image. */
  tooLarge: number[];
  /** Guest blocks whose data block an earlier guest block already names: [this block, the earlier one]. */
  shared: Array<[number, number]>;
  /** Entries below blocks_in_image, shared ones included: what qemu compares with blocks_allocated. */
  counted: number;
  /**
   * Guest blocks (not shared) whose data block lies at or past blocks_allocated, where qemu puts the next new
   * block: qemu's check misses this when the count still agrees (a hole below it), and the next allocation
   * would overwrite the block.
   */
  pastCount: number[];
}

export function examineBmap(h: VdiHeader, bmap: Uint32Array): BmapFindings {
  // One bit per data block marks it named (blocksInImage / 8 bytes: 128 KiB for a 1 TiB image); the guest
  // blocks naming one already named are kept, and only for those is the first namer looked up afterwards, so
  // memory follows the damage, not the image's size.
  const named = new Uint8Array(Math.ceil(h.blocksInImage / 8));
  const again: number[] = [];
  const f: BmapFindings = { tooLarge: [], shared: [], counted: 0, pastCount: [] };
  forEachUsed(bmap, UNALLOCATED, (g, e) => {
    if (!isAllocated(e)) return;
    if (e >= h.blocksInImage) {
      f.tooLarge.push(g);
      return;
    }
    f.counted++;
    const bit = 1 << (e & 7);
    if (named[e >>> 3] & bit) again.push(g);
    else {
      named[e >>> 3] |= bit;
      if (e >= h.blocksAllocated) f.pastCount.push(g);
    }
  });
  if (again.length) {
    const firstNamer = new Map<number, number>(again.map((g) => [bmap[g], -1]));
    forEachUsed(bmap, UNALLOCATED, (g, e) => {
      if (firstNamer.get(e) === -1) firstNamer.set(e, g);
    });
    for (const g of again) f.shared.push([g, firstNamer.get(bmap[g])!]);
  }
  return f;
}

/**
 * Why the image may not be written: damage that new allocations would make worse (a data block shared by two
 * guest blocks, one out of range, or one at or past blocks_allocated, where qemu puts the next new block).
 * Undefined when writing is safe. A count above the entries in use (a crash between header and block map)
 * only leaks a block, and is written over.
 */
export function writeRefusal(h: VdiHeader, bmap: Uint32Array, path: string): DiskError | undefined {
  const f = examineBmap(h, bmap);
  const repair = 'repair it first (check -r all)';
  if (f.tooLarge.length) return corrupt(`${path}: block map entry ${f.tooLarge[0]} names data block ${bmap[f.tooLarge[0]]}, past the ${h.blocksInImage} blocks of the image; ${repair}`, path);
  if (f.shared.length) return corrupt(`${path}: guest blocks ${f.shared[0][1]} and ${f.shared[0][0]} share one data block; ${repair}`, path);
  if (f.pastCount.length) {
    const g = f.pastCount[0];
    return corrupt(`${path}: block map entry ${g} names data block ${bmap[g]}, but the header counts only ${h.blocksAllocated} allocated; ${repair}`, path);
  }
  return undefined;
}
