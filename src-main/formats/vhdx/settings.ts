/**
 * The VHDX create options decoded once, for create.ts and measure.ts: each value as given, or its OptionSpec's
 * default (create-options.ts), and the sizes both derive from them (qemu's automatic block size, the log and
 * the virtual size in whole units). create.ts checks the rest (a parent's sector and block size win there).
 */
import type { OptionValues } from '../../../src-shared/options';
import { booleanOption, numberOption, stringOption } from '../../block/option-values';
import { alignUp } from '../../block/sizes';
import type { CreateOptions } from '../../block/types';
import { VHDX_CREATE_OPTIONS } from './create-options';
import { MiB } from './layout';

const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

/** qemu's choice of block size for a disk of `size` bytes when none is given (block_size=0). */
export function autoBlockSize(size: number): number {
  if (size > 32 * TiB) return 64 * MiB;
  if (size > 100 * GiB) return 32 * MiB;
  if (size > GiB) return 16 * MiB;
  return 8 * MiB;
}

export interface VhdxSettings {
  subformat: string;
  /** As asked for; a differencing image takes its parent's instead. */
  logicalSectorSize: number;
  /** Rounded up to whole MiB; 0 = choose by the disk size (autoBlockSize), or the parent's. */
  blockSize: number;
  /** Rounded up to whole MiB, at least 1 MiB. */
  logSize: number;
  blockStateZero: boolean;
  backingFile?: string;
  backingFormat?: string;
}

export function decodeVhdxSettings(options: OptionValues, opts?: Pick<CreateOptions, 'backingFile' | 'backingFormat'>): VhdxSettings {
  return {
    subformat: stringOption(VHDX_CREATE_OPTIONS, options, 'subformat'),
    logicalSectorSize: numberOption(VHDX_CREATE_OPTIONS, options, 'logical_sector_size'),
    blockSize: alignUp(numberOption(VHDX_CREATE_OPTIONS, options, 'block_size'), MiB),
    logSize: alignUp(Math.max(numberOption(VHDX_CREATE_OPTIONS, options, 'log_size'), MiB), MiB),
    blockStateZero: booleanOption(VHDX_CREATE_OPTIONS, options, 'block_state_zero'),
    backingFile: opts?.backingFile ?? (options.backing_file !== undefined ? String(options.backing_file) : undefined),
    backingFormat: opts?.backingFormat ?? (options.backing_fmt !== undefined ? String(options.backing_fmt) : undefined),
  };
}
