/**
 * measure for UML COW targets (qemu-img has none for COW). A COW file is created as uml_mkcow makes it: header,
 * one bit per sector, then a data area as large as the disk, all of it in a sparse file of data_offset + size
 * bytes. Like a raw file, its length does not depend on what was written, so both figures are that length
 * (the disk's size is the backing file's: --size or the source's size stands for it here).
 */
import { SECTOR } from '../../block/bytes';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { cowSizes, type CowLayout } from './layout';

/** uml_mkcow's alignment of the bitmap and the data in version 3 (UML_ALIGNMENT in create.ts: the page size). */
const UML_ALIGNMENT = 4096;

export async function measureCow(requested: number, opts: CreateOptions, _data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const v3 = String(opts.options.version ?? '3') !== '2';
  const layout: CowLayout = v3 ? 'v3' : 'v2-time32';
  const size = Math.ceil(requested / SECTOR) * SECTOR;
  const { dataOffset } = cowSizes(layout, size, SECTOR, v3 ? UML_ALIGNMENT : SECTOR);
  return { required: dataOffset + size, fullyAllocated: dataOffset + size };
}
