/**
 * measure for Parallels targets (qemu-img has none for Parallels). The file is the header and BAT, padded to the
 * first cluster boundary (createHeader gives that data offset, as qemu-img create lays it out), then one whole
 * cluster for each guest cluster written. qemu grows the file ahead of the data but truncates it to the data's end
 * when it closes the image, and ours grows by the clusters written, so both end at the same size.
 * A .hdd bundle adds its DiskDescriptor.xml (a few KiB), which is not counted: the target's name is not known here.
 */
import { touchedUnits } from '../../block/bytes';
import { DiskError } from '../../block/errors';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { createHeader, DEFAULT_CLUSTER_SIZE, SECTOR } from './layout';

export async function measureParallels(size: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  if (opts.backingFile !== undefined) throw new DiskError('EUNSUPPORTED', 'parallels images made by create have no backing file');
  const h = createHeader(size, Number(opts.options.cluster_size ?? DEFAULT_CLUSTER_SIZE));
  const dataOff = h.dataOff * SECTOR;
  const cluster = h.tracks * SECTOR;
  const used = data === undefined ? 0 : touchedUnits(data, cluster);
  return { required: dataOff + used * cluster, fullyAllocated: dataOff + h.batEntries * cluster };
}
