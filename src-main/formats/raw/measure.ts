/**
 * qemu-img measure for raw targets, as qemu's raw_measure (block/raw-format.c): a raw file is as large as the disk,
 * holes or not, so both figures are the virtual size (from --size, rounded up to whole 512-byte sectors).
 */
import { SECTOR } from '../../block/bytes';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';

export async function measureRaw(size: number, _opts: CreateOptions, _data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const required = Math.ceil(size / SECTOR) * SECTOR;
  return { required, fullyAllocated: required };
}
