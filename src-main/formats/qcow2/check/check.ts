/**
 * `qemu-img check` for qcow2: rebuilds every cluster's reference count in memory from the metadata that
 * points at clusters, compares it with the stored refcounts and, when asked, repairs what qemu-img's repair
 * repairs. Verdicts, counts, messages and exit codes follow qemu-img 7.2 (block/qcow2-refcount.c), which the
 * interop tests hold us to; the code is our own. This file runs the passes; the pass state is in
 * context.ts (stored refcounts in stored.ts, tables as words in words.ts), the reference
 * walk in walk.ts and structures.ts, comparison and in-place repairs in repair.ts, the
 * rebuild of the refcount structure in rebuild.ts, the in-memory refcounts in imrt.ts and the
 * metadata overlap map in overlap.ts.
 *
 * Like qemu, metadata that lies past the end of the file reads as zeros and is reported rather than refused,
 * so a damaged image still gets a verdict. Memory is bounded by the file: one refcount array entry (1-4 bytes)
 * and one mark byte per cluster of the file, tables never larger than the file holds, at most 32 MiB of L2
 * tables kept and a few tables read ahead (by passes that write nothing).
 *
 * Where we knowingly differ from qemu-img's repair:
 * - a refcount block "outside the image" is reached by growing the file only within reason (qemu grows it to
 *   any size, even terabytes); farther ones are dropped by rebuilding the refcount structure instead;
 * - refcounts that cannot be read (an unaligned refcount block) are repaired by the rebuild, where qemu stops
 *   because it marked the image corrupt on the way;
 * - clusters freed by the repair keep their bytes (qemu discards them from the file); nothing reads them;
 * - snapshot table damage is reported, not rewritten (that needs cluster allocation).
 */
import { DiskError, toDiskError } from '../../../block/errors';
import { ImageFile } from '../../../block/file';
import type { CheckProblem, CheckReport, CheckOptions } from '../../../block/types';
import { CheckFailed, Checker, emptyResult, FIX_ERRORS, FIX_LEAKS, type Result } from './context';
import { RefcountArray } from './imrt';
import { checkOflagCopied, compare, markCleanAndConsistent } from './repair';
import { calculate } from './walk';
import { checkReport } from '../../../block/check-report';
import { readLayout } from '../layout';
import { validateHeader } from '../header';
import { readSnapshotTable } from '../snapshot/table-codec';

export type RepairMode = 'none' | 'leaks' | 'all';

/** qcow2_check_refcounts(). Returns false when the check could not finish (qemu's -EIO). */
async function checkRefcounts(c: Checker, res: Result, fix: number): Promise<boolean> {
  try {
    await checkRefcountsOrFail(c, res, fix);
    return true;
  } catch (err) {
    if (!(err instanceof CheckFailed)) throw err;
    // A message on the exception is a failure not counted yet; without one it was reported where it happened.
    if (err.message) {
      c.say('error', err.message);
      res.checkErrors++;
    }
    return false;
  }
}

async function checkRefcountsOrFail(c: Checker, res: Result, fix: number): Promise<void> {
  const h = c.layout.header;
  const nbClusters = Math.ceil(c.file.size / c.clusterSize);
  const imrt = new RefcountArray(c.refcountBits, nbClusters);
  res.totalClusters = Math.ceil((Math.floor(h.size / 512) * 512) / c.clusterSize);
  c.rebuild = false;
  await calculate(c, res, fix, imrt);
  const preCompare = { ...res };
  const unreadableBefore = c.unreadable;
  let highest = await compare(c, res, 0, imrt);
  if (c.rebuild && fix & FIX_ERRORS) {
    const old = { ...res };
    let freshLeaks = 0;
    c.say('corruption', 'Rebuilding refcount structure');
    const { rebuildStructure } = await import('./rebuild');
    await rebuildStructure(c, imrt);
    // Refcounts that could not be read belonged to the old structure, which is gone.
    res.checkErrors -= c.unreadable - unreadableBefore;
    res.corruptions = 0;
    res.leaks = 0;
    c.rebuild = false;
    imrt.clear();
    await calculate(c, res, 0, imrt);
    if (fix & FIX_LEAKS) {
      // The old structure is leaked now; fixing that is part of the rebuild, only leftovers count.
      const saved = { ...res };
      const fresh = emptyResult();
      highest = await compare(c, fresh, FIX_LEAKS, imrt);
      if (c.rebuild) c.say('corruption', 'ERROR rebuilt refcount structure is still broken');
      freshLeaks = fresh.leaks;
      Object.assign(res, saved);
    }
    if (res.corruptions < old.corruptions) res.corruptionsFixed += old.corruptions - res.corruptions;
    if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
    res.leaks += freshLeaks;
  } else if (fix) {
    if (c.rebuild) throw new CheckFailed('ERROR need to rebuild refcount structures');
    if (res.leaks || res.corruptions) {
      Object.assign(res, preCompare);
      // The repairs' code (and the write path it uses) is loaded only when there is something to repair.
      const { leakMakesExclusive, repairBySwitch } = await import('./switch');
      if (fix & FIX_LEAKS && (await leakMakesExclusive(c, imrt))) highest = await repairBySwitch(c, res, fix, imrt);
      else highest = await compare(c, res, fix, imrt);
    }
  }
  await checkOflagCopied(c, res, fix);
  res.imageEndOffset = (highest + 1) * c.clusterSize;
}

/** qcow2_co_check_locked(): the refcount check, then a clean/consistent mark when a repair left no errors. */
async function run(c: Checker, fix: number): Promise<Result> {
  const res = emptyResult();
  c.repairing = fix !== 0;
  await c.load();
  // qcow2_check_read_snapshot_table(): v3 snapshot entries carry at least 16 bytes of extra data. We report
  // it; rewriting the snapshot table (qemu's repair) needs cluster allocation, which the check does not do.
  let snapshotCorruptions = 0;
  if (c.layout.header.version === 3) {
    c.snapshots.entries.forEach((sn, i) => {
      if (sn.extraData.length < 16) {
        c.say('corruption', `ERROR snapshot table entry ${i} is incomplete`);
        snapshotCorruptions++;
      }
    });
  }
  const ok = await checkRefcounts(c, res, fix);
  res.corruptions += snapshotCorruptions;
  if (ok && fix && res.checkErrors === 0 && res.corruptions === 0) await markCleanAndConsistent(c);
  c.finishMessages();
  return res;
}

async function checkPass(file: ImageFile, fix: number, problems: CheckProblem[], signal?: AbortSignal): Promise<Result> {
  const layout = await readLayout(file, Number.MAX_SAFE_INTEGER);
  validateHeader(layout, file.path);
  // Alignment and tables past the end of the file are the check's to report, as qemu does.
  const snapshots = await readSnapshotTable(file, layout, true);
  return run(new Checker(file, layout, snapshots, problems, signal), fix);
}

/**
 * Checks a qcow2 image and, with `repair`, fixes leaks ('leaks') or everything qemu-img fixes ('all'), then
 * checks the image again the way qemu-img does ("Double checking the fixed image now..."). The report's
 * corruptions and leaks are those left after the repair; the -fixed counts are what the repair fixed.
 */
export async function checkQcow2(path: string, repair: RepairMode, opts: CheckOptions = {}): Promise<CheckReport> {
  const signal = opts.signal;
  const fix = repair === 'all' ? FIX_LEAKS | FIX_ERRORS : repair === 'leaks' ? FIX_LEAKS : 0;
  const file = await ImageFile.open(path, fix !== 0);
  try {
    const problems: CheckProblem[] = [];
    let res = await checkPass(file, fix, problems, signal);
    if (fix) await file.sync(); // the repair is on disk before the double check reads it back
    const fixedCorruptions = res.corruptionsFixed;
    const fixedLeaks = res.leaksFixed;
    if (fix && (fixedCorruptions || fixedLeaks)) {
      res = await checkPass(file, 0, problems, signal);
      res.corruptionsFixed = fixedCorruptions;
      res.leaksFixed = fixedLeaks;
    }
    return checkReport(path, 'qcow2', res, problems);
  } catch (err) {
    const e = toDiskError(err, path);
    throw e.path ? e : new DiskError(e.code, `${path}: ${e.message}`, path);
  } finally {
    await file.close();
  }
}
