/**
 * `check` for VHDX, as qemu-img 7.2's: a pending log is a check error without repair (qemu cannot open the image
 * read-only) and is replayed into the file by any repair (counted as one corruption fixed); then every present
 * payload block is checked against the end of the file and against the header area, the log, the BAT and the
 * metadata region (overlaps are corruptions). Nothing in the file is changed without a repair.
 */
import { throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CheckOptions, CheckProblem, CheckReport } from '../../block/types';
import { Bat, MetaPages } from './bat';
import { readVhdxLayout, VhdxFile, type VhdxLayout } from './image';
import { MiB, PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT, SB_PRESENT, SECTOR_BITMAP_SIZE } from './layout';

const MAX_PROBLEMS = 10000;

export async function checkVhdx(path: string, repair: 'none' | 'leaks' | 'all', opts: CheckOptions = {}): Promise<CheckReport> {
  const report: CheckReport = { filename: path, format: 'vhdx', 'check-errors': 0, corruptions: 0, leaks: 0, 'corruptions-fixed': 0, 'leaks-fixed': 0, problems: [] };
  const problem = (p: CheckProblem) => {
    if (report.problems.length < MAX_PROBLEMS) report.problems.push(p);
  };
  const file = await ImageFile.open(path, repair !== 'none');
  try {
    const vhdxFile = new VhdxFile(file);
    let layout: VhdxLayout;
    try {
      layout = await readVhdxLayout(vhdxFile, repair !== 'none');
    } catch (err) {
      const e = toDiskError(err, path);
      if (e.code === 'ECANCELLED') throw e;
      report['check-errors']++;
      problem({ severity: 'error', message: e.message });
      return report;
    }
    if (layout.replayed.length > 0) {
      if (repair === 'none') {
        report['check-errors']++;
        problem({ severity: 'error', message: `${path}: the log holds ${layout.replayed.length} update(s) not yet in place; replay it with check -r all` });
      } else {
        report['corruptions-fixed']++;
        problem({ severity: 'corruption', message: `the log held ${layout.replayed.length} update(s) not yet in place; replayed into the file`, fixed: true });
      }
    }
    await checkBlocks(vhdxFile, layout, report, problem, opts);
    return report;
  } finally {
    await file.close();
  }
}

async function checkBlocks(vhdxFile: VhdxFile, layout: VhdxLayout, report: CheckReport, problem: (p: CheckProblem) => void, opts: CheckOptions): Promise<void> {
  const bat = new Bat(layout, new MetaPages(vhdxFile), () => vhdxFile.size);
  const fileSize = vhdxFile.size;
  // Fixed areas a block must not overlap: the first MiB (identifier, headers, region tables), the log and the regions.
  const fixedAreas: Array<[number, number, string]> = [[0, MiB, 'the header area']];
  if (layout.header.logLength > 0) fixedAreas.push([layout.header.logOffset, layout.header.logOffset + layout.header.logLength, 'the log']);
  for (const r of layout.regions) fixedAreas.push([r.fileOffset, r.fileOffset + r.length, r === layout.bat ? 'the BAT' : r === layout.metadata ? 'the metadata region' : `region ${r.guid}`]);
  const corrupt = (message: string) => {
    report.corruptions++;
    problem({ severity: 'corruption', message });
  };
  const total = layout.batEntries;
  for (let i = 0; i < total; i++) {
    if (i % 65536 === 0) {
      throwIfAborted(opts.signal);
      opts.onProgress?.(i, total);
    }
    const e = await bat.entry(i);
    const isBitmap = (i + 1) % (bat.ratio + 1) === 0;
    if (isBitmap && !layout.hasParent) continue; // a slot only differencing images use
    const present = isBitmap ? e.state === SB_PRESENT : e.state === PAYLOAD_FULLY_PRESENT || e.state === PAYLOAD_PARTIALLY_PRESENT;
    if (!present) continue;
    // A payload block's length is what the disk uses of it: the last block of a disk may be shorter (qemu counts it so).
    const block = i - Math.floor(i / (bat.ratio + 1));
    const len = isBitmap ? SECTOR_BITMAP_SIZE : Math.min(layout.blockSize, layout.virtualSize - block * layout.blockSize);
    if (e.offset >= fileSize) {
      corrupt(`VHDX BAT entry ${i} start offset ${e.offset} points after end of file (${fileSize}); the image has probably been truncated`);
      continue;
    }
    if (e.offset + len > fileSize) {
      corrupt(`VHDX BAT entry ${i} end offset ${e.offset + len - 1} points after end of file (${fileSize}); the image has probably been truncated`);
      continue;
    }
    const hit = fixedAreas.find(([a, b]) => e.offset < b && a < e.offset + len);
    if (hit) corrupt(`VHDX BAT entry ${i} (offset ${e.offset}) overlaps ${hit[2]}`);
  }
  // Two entries naming the same place in the file are not reported: qemu-img 7.2 does not either, and the verdicts follow it.
  opts.onProgress?.(total, total);
}
