/**
 * The VDI create options decoded and checked once, for create.ts and measure.ts, with qemu-img's rules and
 * words: the size qemu-img uses (rounded up to a sector, at most VirtualBox's limit) and whether the image is
 * static (the OptionSpec's default when not given).
 */
import { booleanOption } from '../../block/option-values';
import { DiskError } from '../../block/errors';
import type { CreateOptions } from '../../block/types';
import { VDI_CREATE_OPTIONS } from './create-options';
import { MAX_DISK_SIZE, SECTOR } from './layout';

export interface VdiSettings {
  size: number;
  isStatic: boolean;
}

export function vdiSettings(size: number, opts: Pick<CreateOptions, 'options' | 'backingFile'>): VdiSettings {
  if (opts.backingFile) throw new DiskError('EUNSUPPORTED', "vdi images made by create have no backing file (a differencing VDI names its parent by UUID; make one by rebasing a VDI onto a parent beside it)");
  const rounded = Math.ceil(size / SECTOR) * SECTOR;
  if (rounded > MAX_DISK_SIZE) throw new DiskError('EUNSUPPORTED', `Unsupported VDI image size (size is ${rounded} bytes, the most supported is ${MAX_DISK_SIZE})`);
  return { size: rounded, isStatic: booleanOption(VDI_CREATE_OPTIONS, opts.options, 'static') };
}
