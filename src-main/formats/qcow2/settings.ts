/**
 * The qcow2 create options decoded once, for create.ts and measure.ts: each value as given, or its
 * OptionSpec's default (create-options.ts, the one place a default is written). Each caller checks what it
 * must in its own words (create as qemu-img create, measure as qemu-img measure). The encrypt.* options
 * have no defaults: they are checked here, as qemu-img create checks them, since create and measure agree.
 */
import type { OptionValues } from '../../../src-shared/options';
import { booleanOption, numberOption, stringOption } from '../../block/option-values';
import { DiskError } from '../../block/errors';
import type { CreateOptions } from '../../block/types';
import { isCipherMode, isHashAlg, isIvGenAlg } from '../../crypto/algorithms';
import { QCOW2_CREATE_OPTIONS } from './create-options';
import { CRYPT_AES, CRYPT_LUKS, type EncryptionSettings } from './encryption-settings';

export interface Qcow2Settings {
  version: 2 | 3;
  clusterSize: number;
  refcountBits: number;
  lazyRefcounts: boolean;
  extendedL2: boolean;
  preallocation: string;
  backingFile?: string;
  backingFormat?: string;
  /** Undefined when the image is not to be encrypted. */
  encryption?: EncryptionSettings;
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
    encryption: decodeEncryption(options),
  };
}

/** The encrypt.* create options (and the legacy encryption=on), as qemu-img takes them. */
function decodeEncryption(options: OptionValues): EncryptionSettings | undefined {
  const legacy = options.encryption === true || options.encryption === 'on';
  const format = options['encrypt.format'] !== undefined ? String(options['encrypt.format']) : legacy ? 'aes' : undefined;
  const luksOnly = ['encrypt.cipher-alg', 'encrypt.cipher-mode', 'encrypt.ivgen-alg', 'encrypt.ivgen-hash-alg', 'encrypt.hash-alg', 'encrypt.iter-time'].filter((k) => options[k] !== undefined);
  if (format === undefined) {
    if (luksOnly.length || options['encrypt.key-secret'] !== undefined) throw new DiskError('EINVAL', 'encrypt.* options need encrypt.format=luks (or aes)');
    return undefined;
  }
  if (format === 'aes') {
    if (luksOnly.length) throw new DiskError('EINVAL', `${luksOnly[0]} applies to encrypt.format=luks only`);
    return { method: CRYPT_AES };
  }
  if (format !== 'luks') throw new DiskError('EINVAL', `encrypt.format must be luks or aes, not '${format}'`);
  const str = (k: string) => (options[k] !== undefined ? String(options[k]) : undefined);
  const mode = str('encrypt.cipher-mode');
  const ivgen = str('encrypt.ivgen-alg');
  const ivhash = str('encrypt.ivgen-hash-alg');
  const hash = str('encrypt.hash-alg');
  if (mode !== undefined && !isCipherMode(mode)) throw new DiskError('EINVAL', `encrypt.cipher-mode ${mode} is not supported (ecb, cbc, xts, ctr)`);
  if (ivgen !== undefined && !isIvGenAlg(ivgen)) throw new DiskError('EINVAL', `encrypt.ivgen-alg ${ivgen} is not supported (plain, plain64, essiv)`);
  if (ivhash !== undefined && !isHashAlg(ivhash)) throw new DiskError('EINVAL', `encrypt.ivgen-hash-alg ${ivhash} is not supported`);
  if (hash !== undefined && !isHashAlg(hash)) throw new DiskError('EINVAL', `encrypt.hash-alg ${hash} is not supported`);
  const iterTime = options['encrypt.iter-time'] !== undefined ? Number(options['encrypt.iter-time']) : undefined;
  return {
    method: CRYPT_LUKS,
    luks: {
      ...(str('encrypt.cipher-alg') !== undefined ? { cipherAlg: str('encrypt.cipher-alg') } : {}),
      ...(mode !== undefined ? { cipherMode: mode } : {}),
      ...(ivgen !== undefined ? { ivgenAlg: ivgen } : {}),
      ...(ivhash !== undefined ? { ivgenHashAlg: ivhash } : {}),
      ...(hash !== undefined ? { hashAlg: hash } : {}),
      ...(iterTime !== undefined ? { iterTime } : {}),
    },
  };
}
