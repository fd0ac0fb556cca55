/**
 * The names LUKS1 headers and qemu's options use for ciphers, modes, IV generators and hashes, and what each
 * means in bytes. Only tables and lookups: no key material lives here.
 */
import { DiskError } from '../block/errors';

export type HashAlg = 'md5' | 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512' | 'ripemd160';
export type CipherMode = 'ecb' | 'cbc' | 'xts' | 'ctr';
export type IvGenAlg = 'plain' | 'plain64' | 'essiv';
/** qemu's cipher-alg names ("aes-256"): the family and the key size of one cipher (half an XTS key). */
export type CipherAlg = string;

/** The digest length of each hash qemu's LUKS code accepts, in bytes. */
export const HASH_BYTES: Readonly<Record<HashAlg, number>> = {
  md5: 16,
  sha1: 20,
  sha224: 28,
  sha256: 32,
  sha384: 48,
  sha512: 64,
  ripemd160: 20,
};

/** Cipher families LUKS names in cipher_name, with the key sizes qemu accepts for each. */
const FAMILY_KEY_BYTES: Readonly<Record<string, readonly number[]>> = {
  aes: [16, 24, 32],
  cast5: [16],
  serpent: [16, 24, 32],
  twofish: [16, 24, 32],
};

/** Families node:crypto (OpenSSL) can run; the others can be described (info) but not unlocked. */
const RUNNABLE_FAMILIES = new Set(['aes']);

export const CIPHER_MODES: readonly CipherMode[] = ['ecb', 'cbc', 'xts', 'ctr'];
export const IVGEN_ALGS: readonly IvGenAlg[] = ['plain', 'plain64', 'essiv'];
export const HASH_ALGS = Object.keys(HASH_BYTES) as HashAlg[];

export function isHashAlg(name: string): name is HashAlg {
  return Object.prototype.hasOwnProperty.call(HASH_BYTES, name);
}

export function isCipherMode(name: string): name is CipherMode {
  return (CIPHER_MODES as readonly string[]).includes(name);
}

export function isIvGenAlg(name: string): name is IvGenAlg {
  return (IVGEN_ALGS as readonly string[]).includes(name);
}

/** One cipher as qemu names it ("aes-256") split into family and key bytes, or undefined if unknown. */
export function parseCipherAlg(alg: string): { family: string; keyBytes: number } | undefined {
  const m = /^([a-z0-9]+)-(128|192|256)$/.exec(alg);
  if (!m) return undefined;
  const keyBytes = Number(m[2]) / 8;
  return FAMILY_KEY_BYTES[m[1]]?.includes(keyBytes) ? { family: m[1], keyBytes } : undefined;
}

/**
 * The qemu cipher-alg of a LUKS header's cipher_name and key_bytes (an XTS key is two keys of the cipher),
 * or undefined when the pair names no cipher qemu knows.
 */
export function cipherAlgOf(family: string, mode: CipherMode, keyBytes: number): CipherAlg | undefined {
  const one = mode === 'xts' ? keyBytes / 2 : keyBytes;
  return FAMILY_KEY_BYTES[family]?.includes(one) ? `${family}-${one * 8}` : undefined;
}

/** Refuses a cipher this build cannot run (serpent, twofish and cast5 are not in node:crypto). */
export function requireRunnable(alg: CipherAlg): { family: string; keyBytes: number } {
  const p = parseCipherAlg(alg);
  if (!p) throw new DiskError('EINVAL', `unknown cipher '${alg}' (known: aes-128, aes-192, aes-256, cast5-128, serpent-*, twofish-*)`);
  if (!RUNNABLE_FAMILIES.has(p.family)) throw new DiskError('EUNSUPPORTED', `the cipher ${alg} is not supported by this build (aes is)`);
  return p;
}

/**
 * The cipher ESSIV encrypts sector numbers with. dm-crypt (and so qemu) keys it with the whole digest of the
 * master key, so the ESSIV cipher's key size is the digest length, not the data cipher's: aes-128 data with
 * sha256 ESSIV uses aes-256 for the IVs.
 */
export function essivCipherAlg(alg: CipherAlg, hash: HashAlg): CipherAlg {
  const p = requireRunnable(alg);
  const digest = HASH_BYTES[hash];
  if (!FAMILY_KEY_BYTES[p.family].includes(digest)) {
    throw new DiskError('EUNSUPPORTED', `ESSIV with ${hash} needs a ${p.family} key of ${digest} bytes, which does not exist`);
  }
  return `${p.family}-${digest * 8}`;
}

/** The key bytes a LUKS header records for a cipher and mode (XTS doubles them). */
export function luksKeyBytes(alg: CipherAlg, mode: CipherMode): number {
  const p = parseCipherAlg(alg);
  if (!p) throw new DiskError('EINVAL', `unknown cipher '${alg}'`);
  return mode === 'xts' ? p.keyBytes * 2 : p.keyBytes;
}
