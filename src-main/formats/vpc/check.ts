/**
 * `check` for VHD. qemu has no check for vpc ("This image format does not support checks"), so this one checks
 * what qemu and the spec rely on, in qemu-img check's report shape with blocks as the clusters:
 * - the footer: its checksum (a bad one makes qemu refuse the image), the copy at offset 0 of a dynamic image and
 *   the one at the end agreeing; a missing or damaged copy is a corruption that repair rewrites from the good one;
 * - the dynamic header's checksum (qemu ignores it, Microsoft's tools do not): a corruption, repaired;
 * - every allocated block inside the file and overlapping neither the footer copy, the header, the BAT, the parent
 *   locators, the end footer nor another block (corruptions; repair cannot tell which claim is right);
 * - space after the last block before the footer that no block uses (a crash between allocating a block and
 *   writing its BAT entry leaves this): leaks, which repair gives back by moving the footer and cutting the file.
 * A differencing image's parent that is missing or not the disk it was made over is reported but not counted.
 */
import * as nodePath from 'node:path';
import { checkReport } from '../../block/check-report';
import { throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BackingPolicy, CheckOptions, CheckProblem, CheckReport } from '../../block/types';
import { readVpcLayout, type VpcLayout } from './image';
import { BAT_UNUSED, DISK_DIFFERENCING, DISK_FIXED, FOOTER_SIZE, footerChecksumOk, HEADER_SIZE, headerChecksumOk, locatorSpaceBytes, parseFooter, SECTOR, serializeDynamicHeader, serializeFooter } from './layout';
import { parentCandidates, readLocatorTexts, resolveParent } from './parent';

const MAX_PROBLEMS = 10000;

interface Findings {
  corruptions: number;
  leaks: number;
  problems: CheckProblem[];
  allocated: number;
  /** Repairs to make: rewrite the end footer / the start copy / the header; cut the file to `cutAt` + a footer. */
  endFooter: boolean;
  startFooter: boolean;
  header: boolean;
  cutAt?: number;
}

export async function checkVpc(path: string, repair: 'none' | 'leaks' | 'all', opts: CheckOptions = {}): Promise<CheckReport> {
  const file = await ImageFile.open(path, repair !== 'none');
  try {
    let l: VpcLayout;
    try {
      l = await readVpcLayout(file);
    } catch (err) {
      const e = toDiskError(err, path);
      if (e.code === 'ECANCELLED') throw e;
      return checkReport(path, 'vpc', { checkErrors: 1, corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0 }, [{ severity: 'error', message: e.message }]);
    }
    const warnings = await parentProblem(file, l, opts.backingPolicy ?? 'inside-folder');
    const found = await scan(file, l, opts);
    let corruptionsFixed = 0;
    let leaksFixed = 0;
    let problems = found.problems;
    if (repair !== 'none' && (found.corruptions > 0 || found.leaks > 0)) {
      const fixed = await mend(file, l, found, repair);
      const again = await scan(file, await readVpcLayout(file), opts);
      corruptionsFixed = Math.max(0, found.corruptions - again.corruptions);
      leaksFixed = fixed.leaks ? Math.max(0, found.leaks - again.leaks) : 0;
      problems = [...found.problems.map((p) => ({ ...p, fixed: true })), ...again.problems];
      found.corruptions = again.corruptions;
      found.leaks = again.leaks;
    }
    const blocks = l.dyn ? Math.ceil(l.virtualSize / l.dyn.blockSize) : 0;
    return checkReport(
      path,
      'vpc',
      {
        checkErrors: 0,
        corruptions: found.corruptions,
        leaks: found.leaks,
        corruptionsFixed,
        leaksFixed,
        imageEndOffset: file.size,
        totalClusters: blocks,
        allocatedClusters: found.allocated,
      },
      [...warnings, ...problems],
    );
  } finally {
    await file.close();
  }
}

async function scan(file: ImageFile, l: VpcLayout, opts: CheckOptions): Promise<Findings> {
  const f: Findings = { corruptions: 0, leaks: 0, problems: [], allocated: 0, endFooter: false, startFooter: false, header: false };
  const corrupt = (message: string) => {
    f.corruptions++;
    if (f.problems.length < MAX_PROBLEMS) f.problems.push({ severity: 'corruption', message });
  };
  if (!l.endFooterOk) {
    corrupt(l.footerFrom === 'start' ? 'ERROR the footer at the end of the file is missing or damaged (the copy at offset 0 is sound)' : 'ERROR the footer is damaged');
    f.endFooter = true;
  }
  if (l.diskType === DISK_FIXED) {
    // The guest's data lies before the footer: a shorter data area means the image was cut (reads past it give the footer's bytes, then zeros).
    const dataEnd = file.size - FOOTER_SIZE;
    if (l.footerFrom === 'end' && l.virtualSize > dataEnd) corrupt(`ERROR the data area (${dataEnd} bytes) is shorter than the disk (${l.virtualSize} bytes); the image has been truncated`);
    return f;
  }
  const dyn = l.dyn!;
  if (!l.startFooterOk) {
    corrupt('ERROR the footer copy at offset 0 is missing or damaged (the footer at the end is sound)');
    f.startFooter = true;
  } else if (l.endFooterOk) {
    const end = await file.readBlock(file.size - FOOTER_SIZE, FOOTER_SIZE, 'VHD footer');
    const start = await file.readBlock(0, FOOTER_SIZE, 'VHD footer');
    if (!Buffer.from(start).equals(Buffer.from(end))) {
      corrupt('ERROR the footer copy at offset 0 differs from the footer at the end');
      f.endFooter = true;
    }
  }
  const hb = await file.readBlock(dyn.headerOffset, HEADER_SIZE, 'VHD dynamic header');
  if (!headerChecksumOk(hb)) {
    corrupt("ERROR the dynamic header's checksum is incorrect");
    f.header = true;
  }
  // The areas blocks must stay out of, then every block; sorted, neighbours must not overlap.
  const footerAt = l.endFooterOk ? file.size - FOOTER_SIZE : file.size;
  const areas: Array<{ from: number; to: number; what: string }> = [
    { from: 0, to: FOOTER_SIZE, what: 'the footer copy' },
    { from: dyn.headerOffset, to: dyn.headerOffset + HEADER_SIZE, what: 'the dynamic header' },
    { from: dyn.batOffset, to: dyn.batOffset + dyn.bat.length * 4, what: 'the BAT' },
  ];
  dyn.header.locators.forEach((loc, i) => {
    if (loc.platformCode !== 0 && loc.dataLength > 0) areas.push({ from: loc.dataOffset, to: loc.dataOffset + Math.max(loc.dataLength, locatorSpaceBytes(loc)), what: `parent locator ${i}` });
  });
  const span = dyn.bitmapSize + dyn.blockSize;
  const blocks: Array<{ from: number; to: number; what: string; block: boolean }> = [];
  for (let i = 0; i < dyn.bat.length; i++) {
    if (i % 65536 === 0) {
      throwIfAborted(opts.signal);
      opts.onProgress?.(i, dyn.bat.length);
    }
    const e = dyn.bat[i];
    if (e === BAT_UNUSED) continue;
    f.allocated++;
    const from = e * SECTOR;
    if (from + span > footerAt) corrupt(`ERROR block ${i} (offset ${from}) reaches past the data area into the footer or past the end of the file`);
    blocks.push({ from, to: from + span, what: `block ${i}`, block: true });
  }
  const all = [...areas.map((a) => ({ ...a, block: false })), ...blocks].sort((a, b) => a.from - b.from || a.to - b.to);
  let last: (typeof all)[number] | undefined;
  for (const r of all) {
    if (last && r.from < last.to && (r.block || last.block)) corrupt(`ERROR ${r.what} (offset ${r.from}) overlaps ${last.what}`);
    if (!last || r.to > last.to) last = r;
  }
  // Leaked space: past the last structure, before the footer.
  const used = all.reduce((m, r) => Math.max(m, r.to), 0);
  const usedEnd = Math.ceil(used / SECTOR) * SECTOR;
  if (l.endFooterOk && usedEnd < footerAt) {
    f.leaks += Math.ceil((footerAt - usedEnd) / span);
    f.problems.push({ severity: 'leak', message: `Leaked space: ${footerAt - usedEnd} bytes after the last block (offset ${usedEnd}) are used by no block` });
    f.cutAt = usedEnd;
  }
  opts.onProgress?.(dyn.bat.length, dyn.bat.length);
  return f;
}

async function mend(file: ImageFile, l: VpcLayout, f: Findings, repair: 'leaks' | 'all'): Promise<{ leaks: boolean }> {
  const footer = serializeFooter(l.footer);
  if (repair === 'all') {
    if (f.header && l.dyn) await file.write(l.dyn.headerOffset, serializeDynamicHeader(l.dyn.header));
    if (f.startFooter) await file.write(0, footer);
    if (f.endFooter) {
      // A fixed image's footer goes after its data; a dynamic image's after everything (where cutAt says, or at the end).
      const at = l.diskType === DISK_FIXED ? fixedFooterAt(file, l) : l.endFooterOk ? file.size - FOOTER_SIZE : Math.ceil(file.size / SECTOR) * SECTOR;
      await file.write(at, footer);
    }
    await file.sync();
  }
  if (f.cutAt !== undefined) {
    await file.write(f.cutAt, footer);
    await file.sync();
    await file.truncate(f.cutAt + FOOTER_SIZE);
    await file.sync();
    return { leaks: true };
  }
  return { leaks: false };
}

/** Where a fixed image's footer belongs: after current_size bytes of data when the file has room, else at the end. */
function fixedFooterAt(file: ImageFile, l: VpcLayout): number {
  const cur = Number(l.footer.currentSize);
  return Number.isSafeInteger(cur) && cur <= file.size ? cur : Math.ceil(file.size / SECTOR) * SECTOR;
}

/** A differencing image's parent that cannot be found or is not the disk the image was made over: reported, not counted. */
async function parentProblem(file: ImageFile, l: VpcLayout, policy: BackingPolicy): Promise<CheckProblem[]> {
  if (l.diskType !== DISK_DIFFERENCING) return [];
  try {
    const dyn = l.dyn!;
    const parentPath = resolveParent(file.path, parentCandidates(await readLocatorTexts(file, dyn), dyn.header.parentName), policy);
    const pf = await ImageFile.open(parentPath, false);
    try {
      const tail = await pf.readBlock(pf.size - FOOTER_SIZE, FOOTER_SIZE, 'VHD footer').catch(() => undefined);
      const head = await pf.readBlock(0, FOOTER_SIZE, 'VHD footer');
      const bytes = tail && footerChecksumOk(tail) && parseFooter(tail) ? tail : head;
      const pfooter = parseFooter(bytes);
      if (!pfooter) return [{ severity: 'error', message: `Warning: the parent ${nodePath.basename(parentPath)} is not a VHD` }];
      if (pfooter.uuid !== dyn.header.parentUuid) {
        return [{ severity: 'error', message: `Warning: the parent ${parentPath} is not the disk this image was made over (parent id ${pfooter.uuid}, the image names ${dyn.header.parentUuid})` }];
      }
    } finally {
      await pf.close();
    }
  } catch (err) {
    return [{ severity: 'error', message: `Warning: ${toDiskError(err, file.path).message}` }];
  }
  return [];
}
