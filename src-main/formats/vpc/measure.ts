/**
 * measure for VHD targets (qemu-img has none for vpc: "Block driver 'vpc' does not support size measurement").
 * The figures are the files create.ts and the device make, which are qemu's layout: a fixed image is the disk
 * (rounded to its CHS geometry) plus the 512-byte footer; a dynamic image is the footer copy, the header, the BAT
 * and the footer, plus a sector bitmap and a 2 MiB block for every block the guest data touches.
 */
import { touchedUnits } from '../../block/bytes';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { roundedImageSize } from './geometry';
import { bitmapSize, DEFAULT_BLOCK_SIZE, FOOTER_SIZE, HEADER_SIZE, SECTOR } from './layout';

const isOn = (v: unknown) => v === true || v === 'on' || v === 'true';

export async function measureVpc(requested: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const o = opts.options;
  const { size } = roundedImageSize(requested, isOn(o.force_size));
  if (String(o.subformat ?? 'dynamic') === 'fixed') return { required: size + FOOTER_SIZE, fullyAllocated: size + FOOTER_SIZE };
  const bs = DEFAULT_BLOCK_SIZE;
  const blocks = Math.ceil(size / bs);
  const meta = SECTOR + HEADER_SIZE + Math.ceil((blocks * 4) / SECTOR) * SECTOR + FOOTER_SIZE;
  const span = bitmapSize(bs) + bs;
  const differencing = opts.backingFile !== undefined || o.backing_file !== undefined;
  // Over a parent nothing is known about what the image shares with it: every block is counted.
  const used = data === undefined ? 0 : differencing ? blocks : touchedUnits(data, bs, 0, size);
  return { required: meta + used * span, fullyAllocated: meta + blocks * span };
}
