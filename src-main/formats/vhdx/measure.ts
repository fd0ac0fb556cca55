/**
 * measure for VHDX targets (qemu-img has none for VHDX). A VHDX file is its first MiB (identifier, headers,
 * region tables), the log, the BAT and the metadata region, then whole payload blocks appended as they are first
 * written. The figures bound both writers of the same options: ours (create.ts: metadata, then BAT, data right
 * after) and qemu's (block/vhdx.c vhdx_create_bat: BAT, metadata, and data from BAT end + 5 MiB, a fixed image's
 * payload not rounded to whole blocks). Blocks that the source leaves without data are not counted.
 */
import { touchedUnits } from '../../block/bytes';
import { DiskError } from '../../block/errors';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { alignUp } from '../../block/sizes';
import { batEntries, BLOCK_SIZE_MAX, MAX_VIRTUAL_SIZE, MiB } from './layout';
import { autoBlockSize, decodeVhdxSettings } from './settings';

/** The room qemu leaves after the BAT before its data: the 1 MiB metadata region and 4 MiB to spare. */
const QEMU_DATA_GAP = 5 * MiB;

export async function measureVhdx(requested: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const s = decodeVhdxSettings(opts.options, opts);
  const fixed = s.subformat === 'fixed';
  const differencing = s.backingFile !== undefined;
  const sectorSize = s.logicalSectorSize;
  const size = alignUp(requested, sectorSize);
  if (size > MAX_VIRTUAL_SIZE) throw new DiskError('EINVAL', 'vhdx image size too large; the maximum is 64 TiB');
  const blockSize = s.blockSize || autoBlockSize(size);
  if (blockSize > BLOCK_SIZE_MAX || (blockSize & (blockSize - 1)) !== 0) throw new DiskError('EINVAL', `vhdx block size ${blockSize} is invalid: a power of two from 1 MiB to 256 MiB`);
  const logSize = s.logSize;
  const batLength = alignUp(Math.max(batEntries(size, blockSize, sectorSize, differencing) * 8, 1), MiB);
  // Where the first payload block goes: qemu's layout is the larger (ours puts data at MiB + log + metadata + BAT).
  const qemu = MiB + logSize + batLength + QEMU_DATA_GAP;
  const blocks = Math.ceil(size / blockSize);
  // A differencing image also allocates one 1 MiB sector bitmap block per chunk of blocks it writes to.
  const chunkRatio = (2 ** 23 * sectorSize) / blockSize;
  const bitmapBytes = (n: number) => (differencing ? Math.ceil(n / chunkRatio) * MiB : 0);
  const fullyAllocated = qemu + blocks * blockSize + bitmapBytes(blocks);
  if (fixed) return { required: fullyAllocated, fullyAllocated };
  let required: number;
  if (data === undefined) required = qemu;
  // Over a backing file nothing is known about what the target shares with it: every block is counted, as qemu
  // counts every cluster for a qcow2 target with a backing file.
  else if (differencing) required = fullyAllocated;
  else required = qemu + touchedUnits(data, blockSize) * blockSize;
  return { required, fullyAllocated };
}
