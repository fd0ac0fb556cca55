/**
 * The check's comparison and repairs in place (qemu's compare_refcounts(), check_oflag_copied() and the
 * clean mark at the end of a repair): stored refcounts against the ones the walk computed, fixing leaks and
 * corruptions as `fix` allows; the COPIED flag of active L1 and L2 entries against the refcounts; and the
 * dirty and corrupt bits cleared once a repair left no errors.
 */
import { throwIfAborted, toDiskError } from '../../../block/errors';
import { CheckFailed, FIX_ERRORS, FIX_LEAKS, type Checker, type Result } from './context';
import { L2_HI_OFFSET, L2_LO_OFFSET, LITTLE_ENDIAN, wordBytes, wordsView, ZERO_RUN_BYTES, zeroRun } from './words';

const TWO32 = 2 ** 32;
/** Clusters whose marks marksAgree() tests at once. */
const MARK_RUN = 256;
import { sameRun, type RefcountArray } from './imrt';
import { classify, ClusterType, HI_COMPRESSED, HI_COPIED, hex64, hostOffset, isCopiedEntry, l1Offset } from '../entry';
import { encodeHeaderFields, getRefcount, INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from '../layout';

/**
 * When a whole refcount block holds exactly the computed counts of clusters [first, end) — what a sound
 * image has everywhere — returns the last of them in use (-1 for none), compared in one native memcmp;
 * otherwise (or when the widths differ) undefined, and compare() goes cluster by cluster.
 */
function sameCounts(c: Checker, block: Uint8Array | undefined, imrt: RefcountArray, first: number, end: number): number | undefined {
  if (!block) return imrt.lastUsed(first, end) < 0 ? -1 : undefined;
  const bits = c.refcountBits;
  const mine = imrt.bytesOf(first, end, bits);
  if (!mine) return undefined;
  const stored = Buffer.from(block.subarray(0, mine.length)); // a copy: the cached block stays big-endian
  if (LITTLE_ENDIAN && bits === 16) stored.swap16();
  if (LITTLE_ENDIAN && bits === 32) stored.swap32();
  return stored.equals(mine) ? imrt.lastUsed(first, end) : undefined;
}

/** compare_refcounts(): stored against computed, fixing what `fix` allows. Returns the highest used cluster. */
export async function compare(c: Checker, res: Result, fix: number, imrt: RefcountArray): Promise<number> {
  let highest = 0;
  const per = c.refblockEntries;
  // Blocks found equal, for the COPIED check of a pass that writes nothing (copiedInTable()).
  const verified = !c.repairing && !c.dry && fix === 0 ? new Uint8Array(Math.ceil(imrt.size / per)) : undefined;
  c.verified = verified ? { imrt, blocks: verified } : undefined;
  for (let index = 0; index * per < imrt.size; index++) {
    throwIfAborted(c.signal);
    const first = index * per;
    const end = Math.min(first + per, imrt.size);
    const off = c.stored.blockOffset(index);
    if (off < 0) {
      for (let k = first; k < end; k++) {
        c.say('error', `Can't get refcount for cluster ${k}: Input/output error`);
        res.checkErrors++;
        c.unreadable++;
      }
      continue;
    }
    const block = off ? await c.stored.block(off) : undefined;
    const same = c.dry ? undefined : sameCounts(c, block, imrt, first, end);
    if (same !== undefined) {
      if (same >= 0) highest = same;
      if (verified) verified[index] = 1;
      continue;
    }
    for (let k = first; k < end; k++) {
      const rc1 = block ? getRefcount(block, k - first, c.refcountBits) : 0;
      const rc2 = imrt.get(k);
      if (rc1 > 0 || rc2 > 0) highest = k;
      if (rc1 === rc2) continue;
      let kind: 'leak' | 'corruption' | undefined;
      if (rc1 === 0) c.rebuild = true;
      else if (rc1 > rc2 && fix & FIX_LEAKS) kind = 'leak';
      else if (rc1 < rc2 && fix & FIX_ERRORS) kind = 'corruption';
      const word = kind ? 'Repairing' : rc1 < rc2 ? 'ERROR' : 'Leaked';
      // A 64-bit refcount above 2^53 is garbage, but qemu prints it exactly.
      const shown = rc1 > Number.MAX_SAFE_INTEGER && block ? new DataView(block.buffer).getBigUint64((k - first) * 8) : rc1;
      c.say(rc1 < rc2 ? 'corruption' : 'leak', `${word} cluster ${k} refcount=${shown} reference=${rc2}`);
      if (kind) {
        try {
          await c.stored.set(k, rc2);
          if (kind === 'leak') res.leaksFixed++;
          else res.corruptionsFixed++;
          continue;
        } catch (err) {
          c.say('error', `ERROR could not update the refcount of cluster ${k}: ${toDiskError(err).message}`);
        }
      }
      if (rc1 < rc2) res.corruptions++;
      else res.leaks++;
    }
  }
  return highest;
}

const withCopied = (hi: number, copied: boolean) => (copied ? (hi | HI_COPIED) >>> 0 : (hi & ~HI_COPIED) >>> 0);

/**
 * The COPIED flags of one active L2 table's entries (`w`, its words) against the stored refcounts; with
 * `repair`, the words are set right (the caller writes them). Returns how many entries were wrong.
 */
async function copiedInTable(c: Checker, res: Result, w: Uint32Array, word: string, repair: boolean): Promise<number> {
  const wpe = c.l2EntrySize / 4;
  const cs = c.clusterSize;
  // Standard entries without a data file: the entry points at a host cluster when it is not compressed
  // and has an offset (classify() gives Normal or ZeroAlloc).
  const plain = wpe === 2 && !c.dataFile;
  // In a pass that writes nothing, a refcount block compare() found equal to the computed counts is read
  // from those (the same numbers, without a lookup in the block cache per cluster).
  const known = !c.repairing && !c.dry ? c.verified : undefined;
  const counts = known?.imrt.counts;
  const bytes = wordsView(w);
  const run = ZERO_RUN_BYTES / c.l2EntrySize;
  let dirty = 0;
  for (let j = 0; j < c.l2Entries; j++) {
    if (j % run === 0 && zeroRun(bytes, j * c.l2EntrySize)) {
      j += run - 1;
      continue;
    }
    const ehi = w[j * wpe];
    const elo = w[j * wpe + 1];
    if ((ehi | elo) === 0) continue; // unallocated (or a zero cluster described by an extended bitmap)
    let host: number;
    if (plain) {
      if (ehi & HI_COMPRESSED) continue;
      host = (ehi & L2_HI_OFFSET) * TWO32 + ((elo & L2_LO_OFFSET) >>> 0);
      if (host === 0) continue;
    } else {
      const type = classify(ehi, elo, c.extL2, c.dataFile);
      if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
      host = hostOffset(ehi, elo);
    }
    const cluster = Math.floor(host / cs);
    let erc: number | undefined | null;
    if (c.dataFile) erc = 1;
    else if (known && cluster < known.imrt.size && known.blocks[Math.floor(cluster / c.refblockEntries)]) erc = counts![cluster];
    else {
      erc = c.stored.peek(cluster);
      if (erc === null) erc = await c.stored.get(cluster);
    }
    if (erc === undefined) continue;
    if ((erc === 1) !== isCopiedEntry(ehi)) {
      res.corruptions++;
      c.say('corruption', `${word} OFLAG_COPIED data cluster: l2_entry=${hex64(ehi, elo)} refcount=${await c.stored.shown(cluster, erc)}`);
      if (repair) {
        w[j * wpe] = withCopied(ehi, erc === 1);
        dirty++;
      }
    }
  }
  return dirty;
}

/**
 * Whether every entry of the active L2 tables has the COPIED flag its cluster's refcount calls for, from the
 * marks the reference walk left (context.ts activeMarks), when every stored refcount is known to equal
 * the computed one (compare() found each block equal). Then the tables need no second walk. The marks cover
 * at least the entries copiedInTable() looks at, so "true" is exact; "false" only means: walk them.
 */
function marksAgree(c: Checker): boolean {
  const marks = c.activeMarks;
  const known = c.verified;
  if (!marks || !known || c.dataFile) return false;
  const per = c.refblockEntries;
  const imrt = known.imrt;
  if (marks.length > imrt.size) return false;
  if (known.blocks.length < Math.ceil(imrt.size / per) || known.blocks.includes(0)) return false;
  const counts = imrt.counts;
  for (let k = 0; k < marks.length; k++) {
    // Most of the file is data the active tables own alone (marks 1, counts 1), or not theirs (marks 0).
    if (k % MARK_RUN === 0 && k + MARK_RUN <= marks.length) {
      if (sameRun(marks, k, MARK_RUN, 0) || (sameRun(marks, k, MARK_RUN, 1) && sameRun(counts, k, MARK_RUN, 1))) {
        k += MARK_RUN - 1;
        continue;
      }
    }
    const m = marks[k];
    // 1: only COPIED entries, which need refcount 1; 2: only entries without, which need another; 3: both.
    if (m !== 0 && (m === 3 || (m === 1) !== (counts[k] === 1))) return false;
  }
  return true;
}

/** check_oflag_copied(): the COPIED flag of active L1 and L2 entries must say "refcount is exactly 1". */
export async function checkOflagCopied(c: Checker, res: Result, fix: number): Promise<void> {
  // With -r leaks the flags are only rewritten when the refcounts are known to be right by now.
  const repair = fix & FIX_ERRORS ? true : fix & FIX_LEAKS ? res.checkErrors === 0 && res.corruptions === 0 && res.leaks === 0 : false;
  const word = repair ? 'Repairing' : 'ERROR';
  const h = c.layout.header;
  const tablesRight = !c.repairing && !c.dry && marksAgree(c);
  for (let i = 0; i < c.l1.length / 2; i++) {
    throwIfAborted(c.signal);
    let hi = c.l1[2 * i];
    const lo = c.l1[2 * i + 1];
    const l2Offset = l1Offset(hi, lo);
    if (l2Offset === 0) continue;
    const rc = await c.stored.get(Math.floor(l2Offset / c.clusterSize));
    if (rc === undefined) continue; // reported by the comparison already
    if ((rc === 1) !== isCopiedEntry(hi)) {
      res.corruptions++;
      c.say('corruption', `${word} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${await c.stored.shown(Math.floor(l2Offset / c.clusterSize), rc)}`);
      if (repair) {
        hi = withCopied(hi, rc === 1);
        const at = h.l1TableOffset + 8 * i;
        const e = new Uint8Array(8);
        new DataView(e.buffer).setUint32(0, hi);
        new DataView(e.buffer).setUint32(4, lo);
        try {
          await c.write(at, e, 'active L1 table');
        } catch (err) {
          c.say('error', `ERROR: Could not write the L1 table entry: ${toDiskError(err).message}`);
          res.checkErrors++;
          throw new CheckFailed();
        }
        if (!c.dry) await c.file.sync();
        c.l1[2 * i] = hi;
        res.corruptions--;
        res.corruptionsFixed++;
      }
    }
    if (tablesRight) continue;
    const w = await c.l2Words(l2Offset);
    const dirty = await copiedInTable(c, res, w, word, repair);
    if (dirty) {
      if (c.metadata.overlap(l2Offset, c.clusterSize, 'active L2 table')) {
        c.say('error', 'ERROR: Could not write L2 table; metadata overlap check failed: Input/output error');
        res.checkErrors++;
        throw new CheckFailed();
      }
      await c.write(l2Offset, wordBytes(w), 'unchecked');
      if (!c.dry) await c.file.sync();
      res.corruptions -= dirty;
      res.corruptionsFixed += dirty;
    }
  }
}

/** Clears the dirty bit (lazy refcounts after a crash) and the corrupt bit: the refcounts are right now. */
export async function markCleanAndConsistent(c: Checker): Promise<void> {
  const h = c.layout.header;
  if (h.version !== 3) return;
  const bits = h.incompatibleFeatures & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
  if (bits === h.incompatibleFeatures) return;
  if (!c.dry) await c.file.sync();
  const { offset, bytes } = encodeHeaderFields({ incompatibleFeatures: bits });
  await c.write(offset, bytes, 'unchecked');
  if (!c.dry) await c.file.sync();
  h.incompatibleFeatures = bits;
}
