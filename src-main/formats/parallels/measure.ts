/**
 * measure for Parallels targets (qemu-img has none for Parallels). The file is the header and BAT, padded to the
 * first cluster boundary (createHeader gives that data offset, as qemu-img create lays it out), then one whole
 * cluster for each guest cluster written. qemu grows the file ahead of the data but truncates it to the data's end
 * when it closes the image, and ours grows by the clusters written, so both end at the same size.
 * A .hdd bundle adds its DiskDescriptor.xml (a few KiB), which is not counted: the target's name is not known here.
 */
import { DiskError } from '../../block/errors';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { createHeader, DEFAULT_CLUSTER_SIZE, SECTOR } from './layout';

/** How many `unit`-sized units hold at least one byte of `data` (sorted, not overlapping). */
function touchedUnits(data: readonly DiffRange[], unit: number): number {
  let count = 0;
  let lastUnit = -1;
  for (const r of data) {
    if (r.length <= 0) continue;
    const first = Math.max(Math.floor(r.start / unit), lastUnit + 1);
    const end = Math.floor((r.start + r.length - 1) / unit);
    if (end >= first) count += end - first + 1;
    lastUnit = Math.max(lastUnit, end);
  }
  return count;
}

export async function measureParallels(size: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  if (opts.backingFile !== undefined) throw new DiskError('EUNSUPPORTED', 'parallels images made by create have no backing file');
  const h = createHeader(size, Number(opts.options.cluster_size ?? DEFAULT_CLUSTER_SIZE));
  const dataOff = h.dataOff * SECTOR;
  const cluster = h.tracks * SECTOR;
  const used = data === undefined ? 0 : touchedUnits(data, cluster);
  return { required: dataOff + used * cluster, fullyAllocated: dataOff + h.batEntries * cluster };
}
