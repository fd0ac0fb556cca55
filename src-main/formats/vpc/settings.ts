/**
 * The VHD create options decoded and checked once, for create.ts and measure.ts, with qemu-img's rules and
 * words: the subformat, force_size (each its OptionSpec's default when not given), and the parent of a
 * differencing image (given as -b or as -o backing_file; a fixed VHD cannot have one, and the parent is a VHD).
 */
import { booleanOption, stringOption } from '../../block/option-values';
import { DiskError } from '../../block/errors';
import type { CreateOptions } from '../../block/types';
import { VPC_CREATE_OPTIONS } from './create-options';

export interface VpcSettings {
  subformat: 'dynamic' | 'fixed';
  forceSize: boolean;
  backingFile?: string;
  backingFormat?: string;
}

export function vpcSettings(opts: Pick<CreateOptions, 'options' | 'backingFile' | 'backingFormat'>): VpcSettings {
  const o = opts.options;
  const subformat = stringOption(VPC_CREATE_OPTIONS, o, 'subformat');
  if (subformat !== 'dynamic' && subformat !== 'fixed') throw new DiskError('EINVAL', `vpc subformat '${subformat}' is not known (dynamic or fixed)`);
  const backingFile = opts.backingFile ?? (o.backing_file !== undefined ? String(o.backing_file) : undefined);
  const backingFormat = opts.backingFormat ?? (o.backing_fmt !== undefined ? String(o.backing_fmt) : undefined);
  if (backingFile !== undefined && subformat === 'fixed') throw new DiskError('EINVAL', 'a differencing VHD cannot be fixed');
  // A fixed VHD parent probes as raw where it is not named .vhd: its footer is what decides (parentFacts).
  if (backingFormat !== undefined && backingFormat !== 'vpc' && backingFormat !== 'raw') throw new DiskError('EUNSUPPORTED', `a differencing VHD needs a VHD parent, not ${backingFormat}`);
  return { subformat, forceSize: booleanOption(VPC_CREATE_OPTIONS, o, 'force_size'), backingFile, backingFormat };
}
