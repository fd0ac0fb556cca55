/**
 * The VMDK create options decoded and checked once, for create.ts and measure.ts, with qemu-img's rules and
 * words: each value as given, or its OptionSpec's default (create-options.ts). Also the two layout choices
 * every writer of a new VMDK shares: 64 KiB grains and 2 GiB extents for the twoGbMaxExtent subformats.
 */
import type { OptionValues } from '../../../src-shared/options';
import { booleanOption, stringOption } from '../../block/option-values';
import { DiskError } from '../../block/errors';
import type { CreateOptions } from '../../block/types';
import { ADAPTER_TYPES, SUBFORMATS, VMDK_CREATE_OPTIONS } from './create-options';
import { MAX_BACKING_NAME } from './layout';

export type Subformat = (typeof SUBFORMATS)[number];

/** qemu's fixed extent size for the twoGbMaxExtent subformats. */
export const SPLIT_BYTES = 2 * 1024 * 1024 * 1024;
/** Grain size of the extents qemu-img makes: 64 KiB. */
export const GRAIN_SECTORS = 128;

export interface VmdkSettings {
  subformat: Subformat;
  adapter: string;
  hwversion: string;
  toolsversion: string;
  zeroedGrain: boolean;
  backingFile?: string;
}

/** Whether a subformat keeps its data in flat extents (no grains: no backing file, no zeroed grains). */
export function isFlat(subformat: string): boolean {
  return subformat === 'monolithicFlat' || subformat === 'twoGbMaxExtentFlat';
}

export function settingsFrom(opts: Pick<CreateOptions, 'options' | 'backingFile' | 'backingFormat'>): VmdkSettings {
  const o: OptionValues = opts.options;
  const subformat = stringOption(VMDK_CREATE_OPTIONS, o, 'subformat') as Subformat;
  if (!(SUBFORMATS as readonly string[]).includes(subformat)) throw new DiskError('EINVAL', `Unknown subformat: ${subformat}`);
  const adapter = stringOption(VMDK_CREATE_OPTIONS, o, 'adapter_type');
  if (!ADAPTER_TYPES.includes(adapter)) throw new DiskError('EINVAL', `Unknown adapter type: '${adapter}'`);
  const compat6 = booleanOption(VMDK_CREATE_OPTIONS, o, 'compat6');
  const hw = o.hwversion !== undefined && String(o.hwversion) !== 'undefined' ? String(o.hwversion) : undefined;
  if (compat6 && hw !== undefined) throw new DiskError('EINVAL', 'compat6 cannot be enabled with hwversion set');
  const zeroedGrain = booleanOption(VMDK_CREATE_OPTIONS, o, 'zeroed_grain');
  const flat = isFlat(subformat);
  if (flat && zeroedGrain) throw new DiskError('EINVAL', "Flat image can't enable zeroed grain");
  const backingFile = opts.backingFile ?? (o.backing_file !== undefined ? String(o.backing_file) : undefined);
  const backingFmt = opts.backingFormat ?? (o.backing_fmt !== undefined ? String(o.backing_fmt) : undefined);
  if (backingFile !== undefined) {
    if (flat) throw new DiskError('EINVAL', "Flat image can't have backing file");
    if (backingFmt !== undefined && backingFmt !== 'vmdk') throw new DiskError('EINVAL', `Invalid backing file format: ${backingFmt}. Must be vmdk.`);
    if (backingFile === '' || backingFile.length > MAX_BACKING_NAME || /["\r\n]/.test(backingFile)) {
      throw new DiskError('EINVAL', `the backing file name must be 1 to ${MAX_BACKING_NAME} characters, without quotes or line breaks`);
    }
  }
  // qemu's default tools version (the spec gives none: an unset value is written as this).
  const toolsversion = o.toolsversion !== undefined ? String(o.toolsversion) : '2147483647';
  for (const [k, v] of [['hwversion', hw], ['toolsversion', toolsversion]] as const) {
    if (v !== undefined && /["\r\n]/.test(v)) throw new DiskError('EINVAL', `${k} must not contain quotes or line breaks`);
  }
  return { subformat, adapter, hwversion: hw ?? (compat6 ? '6' : '4'), toolsversion, zeroedGrain, ...(backingFile !== undefined ? { backingFile } : {}) };
}
