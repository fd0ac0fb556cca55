/**
 * The reference walk's counting, and its walk of the structures other than L1 and L2 tables (qemu's
 * qcow2_inc_refcounts_imrt(), qcow2_check_bitmaps_refcounts() and check_refblocks()): regions counted into the
 * in-memory refcounts, the bitmap directory and tables, the refcount table entries and refcount blocks, with
 * the damage found on the way reported in qemu-img's words (and a refcount block past the end repaired).
 */
import { FIX_ERRORS, hex, type Checker, type Result } from './context';
import type { RefcountArray } from './imrt';
import { badBitmapEntry, bitmapEntryOffset, reftableOffset, reftableReservedBits } from '../entry';
import { bitmapDirectory, MAX_BITMAP_DIRECTORY_BYTES, MAX_L1_BYTES } from '../layout';

/** A refcount block "outside the image" is only fixed by growing the file when that stays modest. */
const MAX_GROW_FOR_REFBLOCK = 64 * 1024 * 1024;
/** qcow2_inc_refcounts_imrt(). */
export function incRefcounts(c: Checker, res: Result, imrt: RefcountArray, offset: number, size: number): void {
  if (size <= 0) return;
  // The last cluster may be only partly written, so up to one cluster past the end of the file is fine.
  if (offset + size - c.file.size >= c.clusterSize) {
    c.say('corruption', `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`);
    res.corruptions++;
    return;
  }
  const first = Math.floor(offset / c.clusterSize);
  const last = Math.floor((offset + size - 1) / c.clusterSize);
  for (let k = first; k <= last; k++) {
    const rc = imrt.get(k);
    if (rc >= imrt.max) {
      c.say(
        'corruption',
        `ERROR: overflow cluster offset=0x${hex(k * c.clusterSize)}\nUse qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing`,
      );
      res.corruptions++;
      continue;
    }
    imrt.set(k, rc + 1);
  }
}

/** qcow2_check_bitmaps_refcounts(): the bitmap directory, bitmap tables and bitmap data clusters. */
export async function checkBitmaps(c: Checker, res: Result, imrt: RefcountArray): Promise<void> {
  // qemu ignores the extension when a program without bitmap support cleared the autoclear bit.
  const bm = bitmapDirectory(c.layout);
  if (!bm || bm.count === 0) return;
  const { count: nb, size: dirSize, offset: dirOffset } = bm;
  incRefcounts(c, res, imrt, dirOffset, dirSize);
  if (dirOffset % c.clusterSize !== 0 || dirOffset + dirSize > c.file.size || dirSize > MAX_BITMAP_DIRECTORY_BYTES) {
    res.corruptions++;
    return;
  }
  const dir = await c.readPadded(dirOffset, dirSize);
  const dv = new DataView(dir.buffer);
  let pos = 0;
  for (let n = 0; n < nb; n++) {
    if (pos + 24 > dir.length) {
      res.corruptions++;
      return;
    }
    const tableOffset = Number(dv.getBigUint64(pos));
    const tableSize = dv.getUint32(pos + 8);
    const nameSize = dv.getUint16(pos + 18);
    const extraSize = dv.getUint32(pos + 20);
    pos += Math.ceil((24 + extraSize + nameSize) / 8) * 8;
    if (pos > dir.length) {
      res.corruptions++;
      return;
    }
    incRefcounts(c, res, imrt, tableOffset, tableSize * 8);
    if (tableOffset % c.clusterSize !== 0 || tableSize * 8 > MAX_L1_BYTES || tableOffset + tableSize * 8 > c.file.size) {
      res.corruptions++;
      return;
    }
    const table = await c.readTable(tableOffset, tableSize * 8);
    const tv = new DataView(table.buffer);
    for (let i = 0; i < table.length / 8; i++) {
      const hi = tv.getUint32(i * 8);
      const lo = tv.getUint32(i * 8 + 4);
      // Reserved bits, the "all ones" flag on an allocated entry, or an unaligned offset.
      if (badBitmapEntry(hi, lo, c.clusterSize)) {
        res.corruptions++;
        continue;
      }
      const offset = bitmapEntryOffset(hi, lo);
      if (offset !== 0) incRefcounts(c, res, imrt, offset, c.clusterSize);
    }
  }
}

/** check_refblocks(): refcount table entries and the refcount blocks themselves. */
export async function checkRefblocks(c: Checker, res: Result, fix: number, imrt: RefcountArray): Promise<void> {
  for (let i = 0; i < c.reftableEntries; i++) {
    const hi = c.reftable[2 * i];
    const lo = c.reftable[2 * i + 1];
    // An empty entry references nothing (offset 0 is inside any image the header could be read from).
    if ((hi | lo) === 0 && imrt.size > 0) continue;
    if (reftableReservedBits(lo)) {
      c.say('corruption', `ERROR refcount table entry ${i} has reserved bits set`);
      res.corruptions++;
      c.rebuild = true;
      continue;
    }
    const offset = reftableOffset(hi, lo);
    if (offset % c.clusterSize !== 0) {
      c.say('corruption', `ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      res.corruptions++;
      c.rebuild = true;
      continue;
    }
    const cluster = offset / c.clusterSize;
    if (cluster >= imrt.size) {
      res.corruptions++;
      const repair = (fix & FIX_ERRORS) !== 0;
      c.say('corruption', `${repair ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
      if (repair) {
        // qemu grows the file so that the block exists (it reads as zeros); we only do so within reason
        // and otherwise leave it to the rebuild, which drops the entry.
        const end = offset + c.clusterSize;
        if (end - c.file.size <= Math.max(c.file.size, MAX_GROW_FOR_REFBLOCK)) {
          await c.file.truncate(end);
          imrt.resize(Math.ceil(c.file.size / c.clusterSize));
          res.corruptions--;
          res.corruptionsFixed++;
          incRefcounts(c, res, imrt, offset, c.clusterSize);
        } else {
          c.rebuild = true;
          c.say('error', 'ERROR could not resize image: the refcount block lies too far past the end of the file');
        }
      }
      continue;
    }
    if (offset !== 0) {
      incRefcounts(c, res, imrt, offset, c.clusterSize);
      const rc = imrt.get(cluster);
      if (rc !== 1) {
        c.say('corruption', `ERROR refcount block ${i} refcount=${rc}`);
        res.corruptions++;
        c.rebuild = true;
      }
    }
  }
}
