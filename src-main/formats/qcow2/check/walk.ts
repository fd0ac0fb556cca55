/**
 * The check's reference walk (qemu's calculate_refcounts() and what it calls): every structure that points
 * at clusters — header, active and snapshot L1/L2 tables, snapshot table, refcount table and blocks, crypto
 * header, bitmaps — counted into the in-memory refcount table, with the damage found on the way reported in
 * qemu-img's words (and, for unaligned preallocated clusters, repaired). The L1 and L2 tables are walked
 * here, the rest in structures.ts. Sound entries, which are nearly all of them, take fast paths (a run
 * of data clusters at a time, compressed clusters inline, empty stretches skipped at once); anything else
 * takes qemu's path entry by entry, so messages and counts are qemu-img's either way.
 */
import { throwIfAborted, toDiskError } from '../../../block/errors';
import { CheckFailed, FIX_ERRORS, FRAG_INFO, hex, type Checker, type Result } from './context';
import { halves, L2_HI_OFFSET, L2_HI_RESERVED, wordBytes, wordsView, ZERO_RUN_BYTES, zeroRun } from './words';
import { sameRun, type RefcountArray } from './imrt';
import { checkBitmaps, checkRefblocks, incRefcounts } from './structures';
import {
  classify,
  ClusterType,
  HI_COMPRESSED,
  HI_COPIED,
  hasZeroFlag,
  hex64,
  hostOffset,
  isCopiedEntry,
  l1Offset,
  l1ReservedBits,
  l2ReservedBits,
  zeroEntry,
} from '../entry';
import { EXT_CRYPTO } from '../layout';

const TWO32 = 2 ** 32;

/** C's %#x: "0x…", but plain "0" for zero. */
function altHex(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

/**
 * A compressed entry's host range, from its words: the offset takes the low 62 - (cluster_bits - 8) bits,
 * the count of additional sectors the bits above it up to bit 61 (layout.ts compressedExtent(), without
 * bigints: the walk meets one per compressed cluster).
 */
export function compressedRange(hi: number, lo: number, clusterBits: number): { offset: number; length: number } {
  const hiBits = 30 - (clusterBits - 8); // offset bits in the high word (17-29 for 2 MiB-512 byte clusters)
  const offset = (hi & ((1 << hiBits) - 1)) * TWO32 + (lo >>> 0);
  const sectors = (hi >>> hiBits) & ((1 << (30 - hiBits)) - 1);
  return { offset, length: (sectors + 1) * 512 - (offset % 512) };
}

/** L2 tables (and snapshot L1 tables) read ahead of the walk. */
const READ_AHEAD = 4;
/** Snapshot L1 tables larger than this are read when their walk comes (2 GiB of guest per KiB with 64k clusters). */
const L1_READ_AHEAD_BYTES = 1024 * 1024;

/** Runs shorter than this are counted one by one: a native compare costs more than a few entries. */
const MIN_RUN = 8;

/** Marks clusters [k, k+r) of the active tables with `bit` (context.ts activeMarks). */
function markRun(marks: Uint8Array, k: number, r: number, bit: number): void {
  if (r >= MIN_RUN && sameRun(marks, k, r, 0)) marks.fill(bit, k, k + r);
  else for (let j = 0; j < r; j++) marks[k + j] |= bit;
}

/** check_refcounts_l2(). */
async function checkL2(c: Checker, res: Result, imrt: RefcountArray, l2Offset: number, flags: number, fix: number, active: boolean): Promise<void> {
  throwIfAborted(c.signal);
  const w = await c.l2Words(l2Offset);
  const wpe = c.l2EntrySize / 4; // words per entry
  const ext = wpe === 4;
  const cs = c.clusterSize;
  const fileSize = c.file.size;
  const frag = (flags & FRAG_INFO) !== 0;
  // The common entry (standard, plain data, cluster aligned, no flag but COPIED, no reserved bit) is counted
  // inline: the bits tested below are the compressed flag and reserved bits of the high word, and the zero
  // flag, reserved bits and sub-cluster offset bits of the low word (bits 0 to cluster_bits-1). Every other
  // entry takes the general path, qemu's check_refcounts_l2() entry by entry.
  const plain = !ext && !c.dataFile;
  const hiBad = HI_COMPRESSED | L2_HI_RESERVED;
  const loBad = cs - 1;
  const cHiBits = 30 - (c.clusterBits - 8); // compressed entries: offset bits in the high word, then the sector count
  const cOffsetMask = (1 << cHiBits) - 1;
  const cSectorMask = (1 << (30 - cHiBits)) - 1;
  const max = imrt.max;
  let counts = imrt.counts;
  let size = imrt.size;
  // The active tables' COPIED flags, noted for checkOflagCopied() (context.ts activeMarks).
  const marks = active ? c.activeMarks : undefined;
  const bytes = wordsView(w);
  const run = ZERO_RUN_BYTES / c.l2EntrySize; // entries per zeroRun()
  const n = c.l2Entries;
  let nextContiguous = 0;
  for (let i = 0; i < n; i++) {
    if (i % run === 0 && zeroRun(bytes, i * c.l2EntrySize)) {
      i += run - 1;
      continue;
    }
    const p = i * wpe;
    let hi = w[p];
    const lo = w[p + 1];
    if (plain) {
      if ((hi | lo) === 0) continue;
      if ((hi & hiBad) === 0 && (lo & loBad) === 0 && (hi & L2_HI_OFFSET) + lo !== 0) {
        const offset = (hi & L2_HI_OFFSET) * TWO32 + lo;
        // The entries after it that continue it (same flags, the next host clusters) form a run, taken at
        // once: qemu-img lays data out so. (A low word that would carry into the high one ends the run.)
        let r = 1;
        while (i + r < n && w[p + 2 * r] === hi && w[p + 2 * r + 1] === lo + r * cs) r++;
        if (frag) {
          res.allocatedClusters += r;
          if (nextContiguous && offset !== nextContiguous) res.fragmentedClusters++;
          nextContiguous = offset + r * cs;
        }
        const k = offset / cs;
        if (marks) {
          if (k + r <= marks.length) markRun(marks, k, r, hi & HI_COPIED ? 1 : 2);
          else c.activeMarks = undefined;
        }
        if (r >= MIN_RUN && offset + (r - 1) * cs < fileSize && imrt.incSameRun(k, r)) {
          i += r - 1;
          continue;
        }
        for (let j = 0; j < r; j++) {
          if (offset + j * cs < fileSize && k + j < size && counts[k + j] < max) counts[k + j]++;
          else {
            incRefcounts(c, res, imrt, offset + j * cs, cs);
            counts = imrt.counts;
            size = imrt.size;
          }
        }
        i += r - 1;
        continue;
      }
      if ((hi & (HI_COMPRESSED | HI_COPIED)) === HI_COMPRESSED) {
        // A compressed cluster (compressedRange() inline), counted here when its one or two clusters lie
        // in the file and neither overflows.
        const offset = (hi & cOffsetMask) * TWO32 + lo;
        const end = offset + (((hi >>> cHiBits) & cSectorMask) + 1) * 512 - (offset % 512);
        const first = Math.floor(offset / cs);
        const last = Math.floor((end - 1) / cs);
        if (end - fileSize < cs && last < size && last - first <= 1 && counts[first] < max && counts[last] < max) {
          counts[first]++;
          if (last !== first) counts[last]++;
          if (frag) {
            res.allocatedClusters++;
            res.compressedClusters++;
            res.fragmentedClusters++;
          }
          continue;
        }
      }
    }
    const bmHi = ext ? w[p + 2] : 0; // "zero" bits
    const bmLo = ext ? w[p + 3] : 0; // "allocated" bits
    if (hi === 0 && lo === 0 && bmHi === 0 && bmLo === 0) continue;
    const type = classify(hi, lo, c.extL2, c.dataFile);
    if (type !== ClusterType.Compressed && l2ReservedBits(hi, lo)) {
      c.say('corruption', `ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
      res.corruptions++;
    }
    switch (type) {
      case ClusterType.Compressed: {
        if (isCopiedEntry(hi)) {
          hi = (hi & ~HI_COPIED) >>> 0;
          const { offset } = compressedRange(hi, lo, c.clusterBits);
          c.say('corruption', `ERROR: coffset=0x${hex(offset)}: copied flag must never be set for compressed clusters`);
          res.corruptions++;
        }
        if (c.dataFile) {
          c.say('corruption', `ERROR compressed cluster ${i} with data file, entry=0x${hex64(hi, lo)}`);
          res.corruptions++;
          continue;
        }
        if (bmHi || bmLo) {
          c.say('corruption', `ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex64(hi, lo)}`);
          res.corruptions++;
          continue;
        }
        const { offset, length } = compressedRange(hi, lo, c.clusterBits);
        incRefcounts(c, res, imrt, offset, length);
        if (frag) {
          res.allocatedClusters++;
          res.compressedClusters++;
          // Compressed clusters share sectors with their neighbours: qemu counts them all as fragmented.
          res.fragmentedClusters++;
        }
        break;
      }
      case ClusterType.ZeroAlloc:
      case ClusterType.Normal: {
        const offset = hostOffset(hi, lo);
        if (c.extL2 && (bmHi & bmLo) !== 0) {
          c.say('corruption', `ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
          res.corruptions++;
        }
        if (offset % cs !== 0) {
          res.corruptions++;
          const containsData = c.extL2 ? bmLo !== 0 : !hasZeroFlag(lo);
          if (!containsData) {
            const repair = (fix & FIX_ERRORS) !== 0;
            c.say('corruption', `${repair ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
            if (repair && (await zeroL2Entry(c, res, l2Offset, w, i, active))) continue;
          } else {
            c.say('corruption', `ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
          }
        }
        if (frag) {
          res.allocatedClusters++;
          if (nextContiguous && offset !== nextContiguous) res.fragmentedClusters++;
          nextContiguous = offset + cs;
        }
        if (marks) {
          const k = Math.floor(offset / cs);
          if (k < marks.length && !c.dataFile) marks[k] |= hi & HI_COPIED ? 1 : 2;
          else c.activeMarks = undefined;
        }
        if (!c.dataFile) incRefcounts(c, res, imrt, offset, cs);
        break;
      }
      case ClusterType.ZeroPlain:
        break;
      case ClusterType.Unallocated:
        if (c.extL2 && bmLo !== 0) {
          c.say('corruption', 'ERROR: Unallocated cluster has non-zero subcluster allocation map');
          res.corruptions++;
        }
        break;
    }
  }
}

/**
 * fix_l2_entry_by_zero(): turns an entry into a plain zero cluster (all subclusters zero with extended L2).
 * The caller has counted the corruption; returns true when it was repaired. `w` is the table's words (a
 * repairing pass's own copy), edited to match what is written.
 */
async function zeroL2Entry(c: Checker, res: Result, l2Offset: number, w: Uint32Array, i: number, active: boolean): Promise<boolean> {
  const es = c.l2EntrySize;
  const at = l2Offset + i * es;
  // qemu's check stops when the entry would be written over other metadata.
  if (c.metadata.overlap(at, es, active ? 'active L2 table' : undefined)) {
    c.say('error', 'ERROR: Overlap check failed');
    res.checkErrors++;
    throw new CheckFailed();
  }
  const p = (i * es) / 4;
  if (es === 16) {
    // Subclusters that were allocated or zero read as zero now.
    const zeroBits = (w[p + 2] | w[p + 3]) >>> 0;
    w.set([0, 0, zeroBits, 0], p);
  } else {
    const z = zeroEntry(false);
    w.set([z.hi, z.lo], p);
  }
  try {
    await c.write(at, wordBytes(w.subarray(p, p + es / 4)), 'unchecked');
    await c.file.sync();
  } catch (err) {
    c.say('error', `ERROR: Failed to overwrite L2 table entry: ${toDiskError(err).message}`);
    res.checkErrors++;
    return false;
  }
  res.corruptions--;
  res.corruptionsFixed++;
  return true;
}

/** check_refcounts_l1(). */
async function checkL1(c: Checker, res: Result, imrt: RefcountArray, l1TableOffset: number, l1Size: number, flags: number, fix: number, active: boolean, readAhead?: Promise<Uint8Array>): Promise<void> {
  if (l1Size === 0) return;
  incRefcounts(c, res, imrt, l1TableOffset, l1Size * 8);
  const l1 = active && l1TableOffset === c.layout.header.l1TableOffset ? c.l1 : halves(await (readAhead ?? c.readTable(l1TableOffset, l1Size * 8)));
  let ahead = 0;
  for (let i = 0; i < l1.length / 2; i++) {
    const hi = l1[2 * i];
    const lo = l1[2 * i + 1];
    if (hi === 0 && lo === 0) continue;
    // The next few tables are read while this one is walked (passes that write nothing only).
    for (ahead = Math.max(ahead, i + 1); ahead < l1.length / 2 && ahead <= i + READ_AHEAD; ahead++) {
      if ((l1[2 * ahead] | l1[2 * ahead + 1]) !== 0) c.prefetchL2(l1Offset(l1[2 * ahead], l1[2 * ahead + 1]));
    }
    if (l1ReservedBits(hi, lo)) {
      c.say('corruption', `ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
      res.corruptions++;
    }
    const l2Offset = l1Offset(hi, lo);
    incRefcounts(c, res, imrt, l2Offset, c.clusterSize);
    if (l2Offset % c.clusterSize !== 0) {
      c.say('corruption', `ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
      res.corruptions++;
    }
    await checkL2(c, res, imrt, l2Offset, flags, fix, active);
  }
}

/** calculate_refcounts(): everything that references clusters. */
export async function calculate(c: Checker, res: Result, fix: number, imrt: RefcountArray): Promise<void> {
  const h = c.layout.header;
  c.activeMarks = c.repairing ? undefined : new Uint8Array(imrt.size);
  incRefcounts(c, res, imrt, 0, c.clusterSize);
  const snaps = c.snapshots.entries;
  // A pass that writes nothing reads the snapshots' (small) L1 tables a few ahead of their walks.
  const ahead = new Map<number, Promise<Uint8Array>>();
  const readAhead = (from: number) => {
    for (let j = from; !c.repairing && j < Math.min(snaps.length, from + READ_AHEAD); j++) {
      const sn = snaps[j];
      if (ahead.has(j) || sn.l1TableOffset % c.clusterSize !== 0 || sn.l1Size === 0 || sn.l1Size * 8 > L1_READ_AHEAD_BYTES) continue;
      const p = c.readTable(sn.l1TableOffset, sn.l1Size * 8);
      p.catch(() => undefined); // a failure surfaces when checkL1() awaits it
      ahead.set(j, p);
    }
  };
  readAhead(0);
  await checkL1(c, res, imrt, h.l1TableOffset, h.l1Size, FRAG_INFO, fix, true);
  if (c.dataFile && snaps.length) {
    c.say('corruption', `ERROR ${snaps.length} snapshots in image with data file`);
    res.corruptions++;
  }
  for (let j = 0; j < snaps.length; j++) {
    const sn = snaps[j];
    readAhead(j + 1);
    if (sn.l1TableOffset % c.clusterSize !== 0) {
      c.say('corruption', `ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${altHex(sn.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
      res.corruptions++;
      continue;
    }
    await checkL1(c, res, imrt, sn.l1TableOffset, sn.l1Size, 0, fix, false, ahead.get(j));
    ahead.delete(j);
  }
  incRefcounts(c, res, imrt, h.snapshotsOffset, c.snapshots.byteLength);
  incRefcounts(c, res, imrt, c.reftableOffset, c.reftableClusters * c.clusterSize);
  const crypto = c.layout.extensions.find((e) => e.type === EXT_CRYPTO);
  if (crypto && crypto.data.length >= 16) {
    const cv = new DataView(crypto.data.buffer, crypto.data.byteOffset, crypto.data.byteLength);
    const off = cv.getBigUint64(0);
    const len = cv.getBigUint64(8);
    if (off + len > BigInt(Number.MAX_SAFE_INTEGER)) {
      c.say('corruption', `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(off)} size 0x${hex(len)}`);
      res.corruptions++;
    } else incRefcounts(c, res, imrt, Number(off), Number(len));
  }
  await checkBitmaps(c, res, imrt);
  await checkRefblocks(c, res, fix, imrt);
}
