/**
 * qemu-img check for Parallels images: the in-use mark, BAT entries past the end of the file, leaked space
 * after the last cluster, with qemu-img 7.2's messages, counts and exit codes. Beyond 7.2 (as later qemu
 * releases): clusters shared by two BAT entries and entries pointing into the header and BAT are corruptions.
 * Repairs are safer than 7.2's (see repair()).
 */
import { DiskError, throwIfAborted, toDiskError } from '../../block/errors';
import { checkReport } from '../../block/check-report';
import { ImageFile } from '../../block/file';
import type { CheckOptions, CheckProblem, CheckReport } from '../../block/types';
import { batEntryOffset, batMultiplier, dataOffsetBytes, INUSE_MAGIC, SECTOR, serializeBatEntry, serializeHeader, sharedEntries } from './layout';
import { hostBytes, readImage, type ParallelsImage } from './device';
import { forEachUsed } from '../../block/table-scan';

type RepairMode = 'none' | 'leaks' | 'all';

interface Result {
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEnd: number;
  total: number;
  allocated: number;
  fragmented: number;
}

/** The file's length as qemu sees it: in whole sectors, rounded up. */
function sizeOf(file: ImageFile): number {
  return Math.ceil(file.size / SECTOR) * SECTOR;
}

/** How a BAT entry is damaged, when it is. */
type Damage = { kind: 'outside' } | { kind: 'header' } | { kind: 'shared'; with: number };

/** Each damaged entry: outside the file (qemu 7.2's check), over the header and BAT, or sharing a cluster with an earlier entry. */
function findDamage(img: ParallelsImage, fileSize: number): Map<number, Damage> {
  const { header: h, bat } = img;
  const out = new Map<number, Damage>();
  // Entries with one value name one cluster, so they are all outside, all over the header, or all in the data area.
  const shared = new Map(sharedEntries(bat));
  // The header and BAT themselves, not data_off: a data offset that is itself damaged must not condemn good clusters.
  const start = batEntryOffset(bat.length);
  forEachUsed(bat, 0, (i, value) => {
    const off = hostBytes(h, value);
    // qemu 7.2: "off > size" — a cluster starting exactly at the end of the file is not outside.
    if (off > fileSize) out.set(i, { kind: 'outside' });
    else if (off < start) out.set(i, { kind: 'header' });
    else {
      const first = shared.get(i);
      if (first !== undefined) out.set(i, { kind: 'shared', with: first });
    }
  });
  return out;
}

function message(fixing: boolean, i: number, d: Damage): string {
  const verb = fixing ? 'Repairing' : 'ERROR';
  if (d.kind === 'outside') return `${verb} cluster ${i} is outside image`;
  if (d.kind === 'header') return `${verb} cluster ${i} lies inside the header and BAT`;
  return `${verb} cluster ${i} shares its data with cluster ${d.with}`;
}

/** The counts qemu-img 7.2 gives for the BAT as it is (allocated, fragmented, the end of the last cluster). */
function statistics(img: ParallelsImage, r: Result): void {
  const { header: h, bat } = img;
  const cs = h.tracks * SECTOR;
  let high = 0;
  let prev = 0;
  for (let i = 0; i < bat.length; i++) {
    const off = hostBytes(h, bat[i]);
    if (off === 0) {
      prev = 0;
      continue;
    }
    r.allocated++;
    if (off > high) high = off;
    if (prev !== 0 && prev + cs !== off) r.fragmented++;
    prev = off;
  }
  // qemu 7.2 says "cluster_size" here even with no cluster allocated, and so calls an empty image whose BAT
  // is longer than one cluster leaky (and its own repair of that leaves the file as it was). Later qemu, and
  // we, end an empty image at its data area.
  r.imageEnd = high === 0 ? dataOffsetBytes(h) : high + cs;
}

/** One pass over the image as it is on disk: what is wrong, in qemu-img's words. */
function examine(img: ParallelsImage, fileSize: number, problems: CheckProblem[], fixing: { errors: boolean; leaks: boolean }): { r: Result; damage: Map<number, Damage> } {
  const r: Result = { corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0, imageEnd: 0, total: img.bat.length, allocated: 0, fragmented: 0 };
  if (img.header.inUse === INUSE_MAGIC) {
    problems.push({ severity: 'corruption', kind: 'unclean', message: `${fixing.errors ? 'Repairing' : 'ERROR'} image was not closed correctly`, fixed: fixing.errors });
    r.corruptions++;
  }
  const damage = findDamage(img, fileSize);
  for (const [i, d] of damage) {
    problems.push({ severity: 'corruption', message: message(fixing.errors, i, d), fixed: fixing.errors });
    r.corruptions++;
  }
  statistics(img, r);
  if (fileSize > r.imageEnd) {
    const cs = img.header.tracks * SECTOR;
    problems.push({ severity: 'leak', message: `${fixing.leaks ? 'Repairing' : 'ERROR'} space leaked at the end of the image ${fileSize - r.imageEnd}`, fixed: fixing.leaks });
    r.leaks += Math.ceil((fileSize - r.imageEnd) / cs);
  }
  return { r, damage };
}

/**
 * Repairs in an order that a crash cannot turn into a clean-marked broken image: the in-use mark goes on
 * first (synced), then shared clusters are copied to new clusters at the end of the data area (data synced
 * before the BAT points at it), entries past the end of the file or over the BAT are cleared, the leaked
 * tail is cut off, and only then is the mark cleared. Unlike qemu 7.2 (which grows the file to the highest
 * entry it has just cleared), the file ends at its last used cluster.
 */
async function repair(file: ImageFile, img: ParallelsImage, damage: Map<number, Damage>, mode: RepairMode, r: Result, problems: CheckProblem[], opts: CheckOptions): Promise<void> {
  const { header: h, bat } = img;
  const errors = mode === 'all';
  const wasUnclean = h.inUse === INUSE_MAGIC;
  await file.write(0, serializeHeader({ ...h, inUse: INUSE_MAGIC }));
  await file.sync();
  const cs = h.tracks * SECTOR;
  const mult = batMultiplier(h);
  if (errors && damage.size > 0) {
    // Damaged entries lose their cluster first, so the end of the data area counts only good ones.
    for (const [i, d] of damage) if (d.kind !== 'shared') bat[i] = 0;
    let end = dataOffsetBytes(h);
    for (let i = 0; i < bat.length; i++) if (bat[i] !== 0 && !damage.has(i)) end = Math.max(end, hostBytes(h, bat[i]) + cs);
    end = Math.ceil(end / (mult * SECTOR)) * mult * SECTOR;
    let done = 0;
    for (const [i, d] of damage) {
      throwIfAborted(opts.signal);
      if (d.kind === 'shared') {
        const data = new Uint8Array(cs);
        await file.readZeroPadded(hostBytes(h, bat[i]), data);
        await file.write(end, data);
        await file.sync();
        bat[i] = end / SECTOR / mult;
        end += cs;
      }
      await file.write(batEntryOffset(i), serializeBatEntry(bat[i]));
      r.corruptionsFixed++;
      opts.onProgress?.(++done, damage.size);
    }
    await file.sync();
  }
  if (errors && wasUnclean) r.corruptionsFixed++;
  const after = { ...r, allocated: 0, fragmented: 0 };
  statistics(img, after);
  if (sizeOf(file) > after.imageEnd) {
    // With -r leaks alone, entries past the end of the file still count (as in qemu): nothing is cut then.
    // With -r all, space a cleared entry had hidden is a leak too, as qemu 7.2 counts it in its repairing pass.
    if (r.leaks === 0) problems.push({ severity: 'leak', message: `Repairing space leaked at the end of the image ${sizeOf(file) - after.imageEnd}`, fixed: true });
    r.leaksFixed = Math.ceil((sizeOf(file) - after.imageEnd) / cs);
    await file.truncate(after.imageEnd);
    await file.sync();
  }
  // -r leaks leaves an image that was marked in use marked: it still needs the full repair.
  if (errors || !wasUnclean) {
    await file.write(0, serializeHeader({ ...h, inUse: 0 }));
    await file.sync();
  }
}

/**
 * Checks a Parallels image and, with `repair`, fixes leaks ('leaks') or everything ('all'), then checks it
 * again as qemu-img does ("Double checking the fixed image now..."): the report's corruptions and leaks are
 * those left, the -fixed counts what the repair fixed.
 */
export async function checkParallels(path: string, mode: RepairMode, opts: CheckOptions = {}): Promise<CheckReport> {
  const fixing = { errors: mode === 'all', leaks: mode !== 'none' };
  const file = await ImageFile.open(path, mode !== 'none');
  try {
    const problems: CheckProblem[] = [];
    let img = await readImage(file);
    throwIfAborted(opts.signal);
    const first = examine(img, sizeOf(file), problems, fixing);
    const damage = first.damage;
    let r = first.r;
    const needed = (fixing.errors && r.corruptions > 0) || (fixing.leaks && r.leaks > 0);
    if (mode !== 'none' && needed) {
      if (img.header.extOff !== 0) {
        throw new DiskError('EUNSUPPORTED', `${path}: the image has a Parallels format extension (dirty bitmaps) at offset ${img.header.extOff * SECTOR}; this build does not repair such images, so that the extension stays intact`, path);
      }
      await repair(file, img, damage, mode, r, problems, opts);
      const fixed = { c: r.corruptionsFixed, l: r.leaksFixed };
      img = await readImage(file);
      ({ r } = examine(img, sizeOf(file), problems, { errors: false, leaks: false }));
      r.corruptionsFixed = fixed.c;
      r.leaksFixed = fixed.l;
    }
    return checkReport(
      path,
      'parallels',
      { ...r, checkErrors: 0, imageEndOffset: r.imageEnd, totalClusters: r.total, allocatedClusters: r.allocated, fragmentedClusters: r.fragmented },
      problems,
    );
  } catch (err) {
    const e = toDiskError(err, path);
    throw e.path ? e : new DiskError(e.code, `${path}: ${e.message}`, path);
  } finally {
    await file.close();
  }
}
