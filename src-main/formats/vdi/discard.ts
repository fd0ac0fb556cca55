/**
 * Releasing VDI blocks (discard; sparsify in place). A dynamic image's whole blocks inside the range get the
 * entry "not allocated" (0xFFFFFFFF: zeros), a differencing image's "discarded" (0xFFFFFFFE: zeros too, where
 * "not allocated" would show the parent), as qemu's block/vdi.c and VirtualBox read them. The data blocks they
 * held are then given back by packing, as VBoxManage compact does: the last data blocks move into the holes,
 * blocks_allocated drops and the file is cut after the new last block. qemu's check compares blocks_allocated
 * with the entries in use, and new blocks go at index blocks_allocated, so a VDI cannot keep holes.
 *
 * Crash order (every step leaves an image that reads the same; at worst the count is too high, a leak that
 * `check -r leaks` corrects, as after a crash inside an allocating write):
 *  1. the changed block-map sectors, then a sync (the freed data blocks are unreferenced from here);
 *  2. each moving block copied into a hole (which nothing references), then a sync;
 *  3. the moved blocks' entries pointed at their new places, then a sync (their old places unreferenced);
 *  4. the header's lower blocks_allocated, then a sync; 5. the file cut after the last block.
 * A static image keeps every block in place: its released blocks become holes in the file (fallocate), as a
 * raw file's do, where this system can punch them.
 */
import { DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { blockExtraRefusal, blockHostOffset, DISCARDED, isAllocated, SECTOR, serializeBmap, TYPE_STATIC, UNALLOCATED, type VdiHeader } from './layout';

const ENTRIES_PER_SECTOR = SECTOR / 4;

/** What releasing and packing need of an open image (VdiDevice). */
export interface VdiSpace {
  readonly file: ImageFile;
  readonly header: VdiHeader;
  readonly bmap: Uint32Array;
  readonly size: number;
  /** Unallocated blocks read a parent (a differencing image). */
  readonly readsThrough: boolean;
  readonly noFlush: boolean;
  writeHeader(): Promise<void>;
}

const STATIC_CANNOT_PUNCH = 'a static VDI keeps every block in place, and this system cannot punch holes in the file';

/**
 * BlockDevice.discardRefusal: why releasing blocks refuses on this image (undefined: it can), the words
 * releaseBlocks throws, from the header and whether this system can punch holes, asked before anything is written.
 */
export function discardRefusal(h: VdiHeader, punchesHoles: boolean): string | undefined {
  const extra = blockExtraRefusal(h);
  if (extra !== undefined) return extra;
  if (h.imageType === TYPE_STATIC && !punchesHoles) return STATIC_CANNOT_PUNCH;
  return undefined;
}

/** Writes the block-map sectors holding entries [first, last]. */
async function writeMap(s: VdiSpace, first: number, last: number): Promise<void> {
  const from = Math.floor(first / ENTRIES_PER_SECTOR) * ENTRIES_PER_SECTOR;
  const to = Math.min(s.bmap.length, (Math.floor(last / ENTRIES_PER_SECTOR) + 1) * ENTRIES_PER_SECTOR);
  await s.file.write(s.header.offsetBmap + from * 4, serializeBmap(s.bmap, from, to));
}

async function sync(s: VdiSpace): Promise<void> {
  if (!s.noFlush) await s.file.sync();
}

/**
 * Releases the whole blocks inside [offset, offset + length) (the last, partial block counts as whole when the
 * range runs to the disk's end). Returns true when data blocks were unreferenced, so that pack() has work.
 */
export async function releaseBlocks(s: VdiSpace, offset: number, length: number): Promise<boolean> {
  const h = s.header;
  const bs = h.blockSize;
  const refusal = discardRefusal(h, s.file.punchesHoles);
  if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${s.file.path}: ${refusal}`, s.file.path);
  const first = Math.ceil(offset / bs);
  const end = Math.min(s.bmap.length, offset + length >= s.size ? Math.ceil(s.size / bs) : Math.floor((offset + length) / bs));
  if (first >= end) return false;
  if (h.imageType === TYPE_STATIC) {
    for (let g = first; g < end; g++) {
      if (!isAllocated(s.bmap[g])) continue;
      const host = blockHostOffset(h, s.bmap[g]);
      // The system can, but this file system may not (EOPNOTSUPP): the same refusal, found here.
      if (!(await s.file.punchHole(host, bs))) throw new DiskError('EUNSUPPORTED', `${s.file.path}: ${STATIC_CANNOT_PUNCH}`, s.file.path);
    }
    return false;
  }
  // Zeros either way: "discarded" where "not allocated" would read the parent.
  const value = s.readsThrough ? DISCARDED : UNALLOCATED;
  let lo = -1;
  let hi = -1;
  let freed = false;
  for (let g = first; g < end; g++) {
    const e = s.bmap[g];
    if (e === value || (e === DISCARDED && !s.readsThrough)) continue;
    if (isAllocated(e)) freed = true;
    s.bmap[g] = value;
    if (lo < 0) lo = g;
    hi = g;
  }
  if (lo >= 0) await writeMap(s, lo, hi);
  return freed;
}

/**
 * Gives back the data blocks no entry references: the last blocks move into the holes, the count drops and the
 * file is cut. Returns the file's new length.
 */
export async function packBlocks(s: VdiSpace): Promise<number> {
  const h = s.header;
  const bs = h.blockSize;
  const count = h.blocksAllocated;
  await sync(s); // the map as releaseBlocks left it, before any block moves into a hole it made
  const owner = new Int32Array(count).fill(-1);
  for (let g = 0; g < s.bmap.length; g++) {
    const e = s.bmap[g];
    if (isAllocated(e) && e < count) owner[e] = g;
  }
  let live = 0;
  for (let i = 0; i < count; i++) if (owner[i] >= 0) live++;
  const newCount = live;
  // Holes below the new count, filled from the live blocks at or past it (as many of each).
  const holes: number[] = [];
  const movers: number[] = [];
  for (let i = 0; i < newCount; i++) if (owner[i] < 0) holes.push(i);
  for (let i = newCount; i < count; i++) if (owner[i] >= 0) movers.push(i);
  if (holes.length !== movers.length) throw new Error('vdi pack: holes and moving blocks disagree');
  if (movers.length > 0) {
    const buf = new Uint8Array(bs);
    for (let k = 0; k < movers.length; k++) {
      await s.file.readZeroPadded(blockHostOffset(h, movers[k]), buf);
      await s.file.write(blockHostOffset(h, holes[k]), buf);
    }
    await sync(s);
    for (let k = 0; k < movers.length; k++) s.bmap[owner[movers[k]]] = holes[k];
    // One write per run of map sectors that changed (a moved block's sector, not the map between them).
    const sectors = [...new Set(movers.map((m) => Math.floor(owner[m] / ENTRIES_PER_SECTOR)))].sort((a, b) => a - b);
    for (let i = 0; i < sectors.length; ) {
      let j = i + 1;
      while (j < sectors.length && sectors[j] === sectors[j - 1] + 1) j++;
      await writeMap(s, sectors[i] * ENTRIES_PER_SECTOR, sectors[j - 1] * ENTRIES_PER_SECTOR);
      i = j;
    }
    await sync(s);
  }
  if (newCount !== count) {
    h.blocksAllocated = newCount;
    await s.writeHeader();
    await sync(s);
  }
  const end = Math.max(h.offsetData, h.offsetBmap + s.bmap.length * 4, blockHostOffset(h, newCount));
  if (s.file.size > end) await s.file.truncate(end);
  return s.file.size;
}
