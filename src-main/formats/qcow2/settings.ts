/**
 * The qcow2 create options decoded once, for create.ts and measure.ts: each value as given, or its
 * OptionSpec's default (create-options.ts, the one place a default is written). Each caller checks what it
 * must in its own words (create as qemu-img create, measure as qemu-img measure).
 */
import type { OptionValues } from '../../../src-shared/options';
import { booleanOption, numberOption, stringOption } from '../../block/option-values';
import type { CreateOptions } from '../../block/types';
import { QCOW2_CREATE_OPTIONS } from './create-options';

export interface Qcow2Settings {
  version: 2 | 3;
  clusterSize: number;
  refcountBits: number;
  lazyRefcounts: boolean;
  extendedL2: boolean;
  preallocation: string;
  backingFile?: string;
  backingFormat?: string;
}

export function decodeQcow2Settings(options: OptionValues, opts?: Pick<CreateOptions, 'backingFile' | 'backingFormat'>): Qcow2Settings {
  const compat = stringOption(QCOW2_CREATE_OPTIONS, options, 'compat');
  return {
    version: compat === '0.10' || compat === 'v2' ? 2 : 3,
    clusterSize: numberOption(QCOW2_CREATE_OPTIONS, options, 'cluster_size'),
    refcountBits: numberOption(QCOW2_CREATE_OPTIONS, options, 'refcount_bits'),
    lazyRefcounts: booleanOption(QCOW2_CREATE_OPTIONS, options, 'lazy_refcounts'),
    extendedL2: booleanOption(QCOW2_CREATE_OPTIONS, options, 'extended_l2'),
    preallocation: stringOption(QCOW2_CREATE_OPTIONS, options, 'preallocation'),
    backingFile: opts?.backingFile ?? (options.backing_file !== undefined ? String(options.backing_file) : undefined),
    backingFormat: opts?.backingFormat ?? (options.backing_fmt !== undefined ? String(options.backing_fmt) : undefined),
  };
}
