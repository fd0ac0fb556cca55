/**
 * measure for VHD targets (qemu-img has none for vpc: "Block driver 'vpc' does not support size measurement").
 * The figures are the files create.ts and the device make, which are qemu's layout: a fixed image is the disk
 * (rounded to its CHS geometry) plus the 512-byte footer; a dynamic image is the footer copy, the header, the BAT
 * and the footer, plus a sector bitmap and a 2 MiB block for every block the guest data touches.
 */
import { touchedUnits } from '../../block/bytes';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { roundedImageSize } from './geometry';
import { vpcSettings } from './settings';
import { bitmapSize, DEFAULT_BLOCK_SIZE, FOOTER_SIZE, HEADER_SIZE, SECTOR } from './layout';

export async function measureVpc(requested: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const settings = vpcSettings(opts);
  const { size } = roundedImageSize(requested, settings.forceSize);
  if (settings.subformat === 'fixed') return { required: size + FOOTER_SIZE, fullyAllocated: size + FOOTER_SIZE };
  const bs = DEFAULT_BLOCK_SIZE;
  const blocks = Math.ceil(size / bs);
  const meta = SECTOR + HEADER_SIZE + Math.ceil((blocks * 4) / SECTOR) * SECTOR + FOOTER_SIZE;
  const span = bitmapSize(bs) + bs;
  const differencing = settings.backingFile !== undefined;
  // Over a parent nothing is known about what the image shares with it: every block is counted.
  const used = data === undefined ? 0 : differencing ? blocks : touchedUnits(data, bs, 0, size);
  return { required: meta + used * span, fullyAllocated: meta + blocks * span };
}
