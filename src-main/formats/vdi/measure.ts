/**
 * measure for VDI targets (qemu-img has none for vdi: "does not support size measurement"). The file is the
 * header and block map (createHeader's data offset, as qemu-img create lays it out), then one whole 1 MiB block
 * for each guest block written, or for every guest block in a static image.
 */
import { touchedUnits } from '../../block/bytes';
import type { CreateOptions, DiffRange, MeasureResult } from '../../block/types';
import { vdiSettings } from './settings';
import { BLOCK_SIZE, createHeader, ZERO_UUID } from './layout';

export async function measureVdi(size: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult> {
  const p = vdiSettings(size, opts);
  const h = createHeader(p.size, p.isStatic, ZERO_UUID, ZERO_UUID);
  const full = h.offsetData + h.blocksInImage * BLOCK_SIZE;
  const used = data === undefined ? 0 : touchedUnits(data, BLOCK_SIZE);
  return { required: p.isStatic ? full : h.offsetData + used * BLOCK_SIZE, fullyAllocated: full };
}
