/**
 * Checking a COW file (qemu-img never had a check for it; the report keeps qemu-img check's shape, with
 * sectors as the clusters). What can be wrong beyond a damaged header, which fails like an open:
 * - bits set past the last sector (in the bitmap's last byte): corruption; repair clears them;
 * - sectors marked present whose data lies past the end of the file (a truncated copy): they read as zeros
 *   now; corruption; repair extends the file to the length uml_mkcow gives it, which keeps those zeros;
 * - a backing file that is missing or changed since the COW file was made: reported, not counted, since the
 *   COW file itself is sound (acceptBackingChange or the actual backing file's name settles it).
 */
import { throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BackingPolicy, CheckOptions, CheckProblem, CheckReport } from '../../block/types';
import { backingFacts, describeChange, locateBacking, readCowHeader } from './backing';
import { commitMarkOf, markAccepts, type CommitMark } from './commit-mark';
import { CowBitmap } from './bitmap';
import { cowSizes, sectorsWithBits, type CowHeader } from './layout';

interface Findings {
  allocated: number;
  /** Bits set past the last sector, as a mask of the bitmap's last byte (0 when none). */
  strayMask: number;
  /** Sectors marked present whose data lies (partly) past the end of the file. */
  pastEnd: number;
  problems: CheckProblem[];
}

async function scan(file: ImageFile, h: CowHeader, opts: CheckOptions): Promise<Findings> {
  const ss = h.sectorSize;
  const sectors = Math.ceil(h.size / ss);
  const bits = sectorsWithBits(h);
  const bitmap = new CowBitmap(file, h.bitmapOffset, bits);
  const problems: CheckProblem[] = [];
  let allocated = 0;
  let pastEnd = 0;
  const firstPastEnd = Math.max(0, Math.floor((file.size - h.dataOffset) / ss)); // first sector not wholly in the file
  for (let s = 0; s < bits; ) {
    throwIfAborted(opts.signal);
    const run = await bitmap.run(s, Math.min(bits, s + (1 << 20)));
    if (run.set) {
      allocated += run.end - s;
      const from = Math.max(s, firstPastEnd);
      const end = Math.min(run.end, sectors);
      // The last sector may be partial: it is whole when the file reaches the end of the disk.
      const lastOk = h.dataOffset + h.size <= file.size;
      if (end > from && !lastOk) pastEnd += end - from;
    }
    s = run.end;
    opts.onProgress?.(s, bits);
  }
  if (pastEnd > 0) problems.push({ severity: 'corruption', message: `ERROR ${pastEnd} sectors are marked present but lie past the end of the file (${file.size} bytes); they read as zeros` });
  let strayMask = 0;
  const { bitmapLength } = cowSizes(h.layout, h.size, h.sectorSize, h.alignment);
  if (bitmapLength * 8 > sectors) {
    const last = (await file.readBlock(h.bitmapOffset + bitmapLength - 1, 1, 'COW bitmap'))[0];
    strayMask = last & ~((1 << (sectors % 8)) - 1) & 0xff;
    if (strayMask !== 0) problems.push({ severity: 'corruption', message: `ERROR the bitmap marks sectors past the end of the disk (${sectors} sectors) as present` });
  }
  return { allocated, strayMask, pastEnd, problems };
}

/** The backing file's state, as a problem that is reported but not counted. */
async function backingProblem(path: string, h: CowHeader, mark: CommitMark | undefined, policy: BackingPolicy): Promise<CheckProblem | undefined> {
  try {
    const full = locateBacking(path, h, policy);
    if (full === undefined) return undefined;
    const now = await backingFacts(path, full);
    const change = describeChange(h, now);
    if (change && mark && now.size === h.size && markAccepts(mark, now.mtime)) {
      return { severity: 'error', message: `Warning: a commit into the backing file ${full} did not finish (${change}); the COW file still holds all of its data and reads the same over it. Commit again to finish` };
    }
    return change ? { severity: 'error', message: `Warning: the backing file ${full} changed since the COW file was made (${change}); UML refuses such a pair` } : undefined;
  } catch (err) {
    return { severity: 'error', message: `Warning: ${toDiskError(err, path).message}` };
  }
}

export async function checkCow(path: string, repair: 'none' | 'leaks' | 'all', opts: CheckOptions = {}): Promise<CheckReport> {
  const fix = repair === 'all';
  const file = await ImageFile.open(path, fix);
  try {
    const { head, header: h } = await readCowHeader(file);
    let f = await scan(file, h, opts);
    const report = (found: Findings, fixed: number, extra: CheckProblem[]): CheckReport => ({
      filename: path,
      format: 'cow',
      'check-errors': 0,
      corruptions: found.problems.filter((p) => p.severity === 'corruption').length,
      leaks: 0,
      'corruptions-fixed': fixed,
      'leaks-fixed': 0,
      'image-end-offset': file.size,
      'total-clusters': Math.ceil(h.size / h.sectorSize),
      'allocated-clusters': found.allocated,
      'fragmented-clusters': 0,
      problems: [...extra, ...found.problems],
    });
    const warn = await backingProblem(path, h, commitMarkOf(head, h), opts.backingPolicy ?? 'inside-folder');
    const warnings = warn ? [warn] : [];
    const count = f.problems.length;
    if (!fix || count === 0) return report(f, 0, warnings);
    const fixedProblems = f.problems.map((p) => ({ ...p, fixed: true }));
    if (f.strayMask !== 0) {
      const { bitmapLength } = cowSizes(h.layout, h.size, h.sectorSize, h.alignment);
      const at = h.bitmapOffset + bitmapLength - 1;
      const last = (await file.readBlock(at, 1, 'COW bitmap'))[0];
      await file.write(at, Uint8Array.of(last & ~f.strayMask));
    }
    if (f.pastEnd > 0) await file.truncate(h.dataOffset + h.size);
    await file.sync();
    f = await scan(file, h, opts);
    return report(f, count - f.problems.length, [...warnings, ...fixedProblems]);
  } catch (err) {
    throw toDiskError(err, path);
  } finally {
    await file.close();
  }
}
