/**
 * qemu-img check for VDI images, as qemu's vdi_co_check counts: each block-map entry naming a data block at or
 * past blocks_in_image is a corruption, each entry naming a data block an earlier entry already names is one,
 * and the header's blocks_allocated disagreeing with the entries below blocks_in_image is one more. Beyond qemu:
 * when the count agrees, an entry naming a block at or past it (so a hole lies below) is one too, since qemu's
 * next allocation (at index blocks_allocated) would overwrite that block.
 *
 * qemu cannot repair VDI images (check -r fails with "This image format does not support checks"); we can. The
 * repair keeps what every guest block reads now and leaves a map qemu's check finds clean: the guest blocks
 * with data get the data blocks 0..n-1 (n of them), an entry keeping its block where it can, the others
 * copied into the free blocks below n (a block shared by two guest blocks is copied for the second; one past
 * blocks_in_image is moved in range; one that reads as zeros, wholly past the end of the file or all zero
 * bytes, is marked discarded instead of copied), then the map is written, then the count. Blocks are only ever copied
 * into blocks no entry names, so a crash part way leaves every guest block reading what it read before.
 */
import { isZero } from '../../block/bytes';
import { checkReport } from '../../block/check-report';
import { DiskError, throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CheckOptions, CheckProblem, CheckReport } from '../../block/types';
import { examineBmap, readImage, type BmapFindings, type VdiImage } from './image';
import { blockHostOffset, DISCARDED, isAllocated, serializeBmap, serializeHeader } from './layout';

type RepairMode = 'none' | 'leaks' | 'all';

/** Most problems listed one by one; the counts stay exact. */
const MAX_PROBLEMS = 10000;

interface Verdict {
  corruptions: number;
  problems: CheckProblem[];
}

function judge(img: VdiImage, f: BmapFindings, fixing: boolean): Verdict {
  const { header: h, bmap } = img;
  const problems: CheckProblem[] = [];
  const verb = fixing ? 'Repairing' : 'ERROR';
  const add = (message: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ severity: 'corruption', message, fixed: fixing });
  };
  for (const g of f.tooLarge) add(`${verb}: block index ${g} too large, is ${bmap[g]}`);
  for (const [g, first] of f.shared) add(`${verb}: block index ${g} uses data block ${bmap[g]}, also used by block index ${first}`);
  let corruptions = f.tooLarge.length + f.shared.length;
  if (f.counted !== h.blocksAllocated) {
    add(`${verb}: allocated blocks mismatch, is ${f.counted}, should be ${h.blocksAllocated}`);
    corruptions++;
  } else {
    // Beyond qemu: with the count right, a block at or past it means a hole below it that the next allocation fills over this block.
    for (const g of f.pastCount) add(`${verb}: block index ${g} uses data block ${bmap[g]}, at or past the ${h.blocksAllocated} allocated: the next new block would overwrite it`);
    corruptions += f.pastCount.length;
  }
  return { corruptions, problems };
}

/**
 * True when the only damage is a count above the entries in use, every entry below it and none shared: data
 * blocks no entry names, leaked (a crash during an allocation, or while a discard packed the blocks: discard.ts).
 * The next allocation goes past every block in use, so nothing is at risk; the repair packs them.
 */
function onlyLeaked(img: VdiImage, f: BmapFindings): boolean {
  return f.tooLarge.length === 0 && f.shared.length === 0 && f.pastCount.length === 0 && f.counted < img.header.blocksAllocated;
}

/** The repair described in the header comment. */
async function repair(file: ImageFile, img: VdiImage, opts: CheckOptions): Promise<void> {
  const { header: h, bmap } = img;
  const buf = new Uint8Array(h.blockSize);
  const guests: number[] = [];
  let discarded = false;
  // Whether a data block reads as zeros, asked once per block (a damaged map may name one block hundreds of times).
  const zeroBlocks = new Map<number, boolean>();
  const readsZero = async (e: number): Promise<boolean> => {
    let z = zeroBlocks.get(e);
    if (z === undefined) {
      await file.readZeroPadded(blockHostOffset(h, e), buf);
      z = isZero(buf);
      zeroBlocks.set(e, z);
    }
    return z;
  };
  const claimed = new Uint8Array(h.blocksInImage);
  for (let g = 0; g < bmap.length; g++) {
    const e = bmap[g];
    if (!isAllocated(e)) continue;
    throwIfAborted(opts.signal);
    // A block that would have to be copied (shared, or out of range) but reads as zeros, or lies wholly past
    // the end of the file (zeros too), becomes a discarded block: zeros without data, no copy.
    const mustMove = e >= h.blocksInImage || claimed[e] === 1;
    if (blockHostOffset(h, e) >= file.size || (mustMove && (await readsZero(e)))) {
      bmap[g] = DISCARDED;
      discarded = true;
      continue;
    }
    if (e < h.blocksInImage) claimed[e] = 1;
    guests.push(g);
  }
  const n = guests.length;
  // Each data block below n keeps its first claimant; everything else moves into a block nobody names.
  const kept = new Uint8Array(n);
  const moving: number[] = [];
  for (const g of guests) {
    const e = bmap[g];
    if (e < n && !kept[e]) kept[e] = 1;
    else moving.push(g);
  }
  let free = 0;
  for (let k = 0; k < moving.length; k++) {
    throwIfAborted(opts.signal);
    const g = moving[k];
    while (kept[free]) free++;
    kept[free] = 1;
    await file.readZeroPadded(blockHostOffset(h, bmap[g]), buf);
    await file.write(blockHostOffset(h, free), buf);
    bmap[g] = free;
    opts.onProgress?.(k + 1, moving.length);
  }
  await file.sync();
  if (moving.length || discarded) {
    await file.write(h.offsetBmap, serializeBmap(bmap));
    await file.sync();
  }
  h.blocksAllocated = n;
  await file.write(0, serializeHeader(h, img.headerBytes));
  await file.sync();
}

/**
 * Checks a VDI image and, with `mode` 'all', repairs it; 'leaks' repairs only a count left too high by a crash
 * during an allocation. As qemu-img does after a repair, the image is then checked again: the report's
 * corruptions are those left, corruptions-fixed what the repair fixed.
 */
export async function checkVdi(path: string, mode: RepairMode, opts: CheckOptions = {}): Promise<CheckReport> {
  const file = await ImageFile.open(path, mode !== 'none');
  try {
    let img = await readImage(file);
    throwIfAborted(opts.signal);
    let f = examineBmap(img.header, img.bmap);
    const fix = mode === 'all' || (mode === 'leaks' && onlyLeaked(img, f));
    let v = judge(img, f, fix);
    const problems = v.problems;
    let fixed = 0;
    if (fix && v.corruptions > 0) {
      if (img.header.blockExtra !== 0) throw new DiskError('EUNSUPPORTED', `${path}: this VDI keeps extra data per block; such images are not repaired`, path);
      await repair(file, img, opts);
      fixed = v.corruptions;
      img = await readImage(file);
      f = examineBmap(img.header, img.bmap);
      v = judge(img, f, false);
      problems.push(...v.problems);
    }
    return checkReport(path, 'vdi', { checkErrors: 0, corruptions: v.corruptions, leaks: 0, corruptionsFixed: fixed, leaksFixed: 0 }, problems);
  } catch (err) {
    const e = toDiskError(err, path);
    throw e.path ? e : new DiskError(e.code, `${path}: ${e.message}`, path);
  } finally {
    await file.close();
  }
}
