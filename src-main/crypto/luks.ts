/**
 * LUKS1 volumes: unlock a header with a passphrase, make a new header, describe one as qemu-img info does.
 * Knows no container: the caller reads the header region (a LUKS file's start, or the clusters a qcow2's
 * FULL_DISK_ENCRYPTION extension names) through `ReadAt`, and writes what `createLuks` returns.
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { DiskError } from '../block/errors';
import { luksKeyBytes, parseCipherAlg, type CipherAlg, type CipherMode, type HashAlg, type IvGenAlg } from './algorithms';
import { afMerge, afSplit } from './af-split';
import {
  LUKS_DIGEST_BYTES,
  LUKS_SALT_BYTES,
  LUKS_SLOTS,
  LUKS_STRIPES,
  encodeLuksHeader,
  luksAlgorithms,
  luksLayout,
  type LuksAlgorithms,
  type LuksHeader,
} from './luks-header';
import { iterationsPerSecond, pbkdf2 } from './pbkdf2';
import { SectorCipher, type CipherSpec } from './sector-cipher';
import { cString, keyError, WRONG_PASSPHRASE } from './secret';

/** Reads `length` bytes at `offset` from the start of the LUKS header. */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** The most key material one slot may hold (cryptsetup's 4000 stripes of a 64-byte key are 250 KiB). */
const MAX_SLOT_MATERIAL = 16 << 20;
const MIN_ITERATIONS = 1000;

export const NO_SLOT_OPENS = WRONG_PASSPHRASE;

export function cipherSpecOf(a: LuksAlgorithms): CipherSpec {
  return { alg: a.cipherAlg, mode: a.cipherMode, ivgen: a.ivgenAlg, ...(a.ivgenHashAlg ? { ivgenHash: a.ivgenHashAlg } : {}) };
}

/**
 * Opens the volume's key with `passphrase`: each active slot in turn, PBKDF2 of the passphrase with the
 * slot's salt decrypts its key material (as payload sectors from 0), AF-merge joins it, and the master key
 * is right when its PBKDF2 digest equals the header's. `regionBytes` bounds every slot's material (the file's
 * length, or the length the qcow2 extension gives). Returns the payload's cipher; the caller closes it.
 */
export async function unlockLuks(header: LuksHeader, readAt: ReadAt, regionBytes: number, passphrase: Uint8Array, where: string): Promise<{ cipher: SectorCipher; slot: number }> {
  const algs = luksAlgorithms(header, where);
  const spec = cipherSpecOf(algs);
  if (header.mkDigestIterations < 1) throw new DiskError('ECORRUPT', `${where}: the LUKS master key digest has no iterations`);
  const secret = cString(passphrase);
  const active = header.slots.map((s, i) => ({ s, i })).filter(({ s }) => s.active);
  if (active.length === 0) throw keyError(`${where}: no LUKS key slot is active: the image cannot be opened`, where);
  for (const { s, i } of active) {
    const material = header.keyBytes * s.stripes;
    const start = s.keyOffset * 512;
    if (s.stripes < 1 || s.iterations < 1 || material > MAX_SLOT_MATERIAL || start + material > regionBytes) {
      throw new DiskError('ECORRUPT', `${where}: LUKS key slot ${i} lies outside the header region or is malformed`);
    }
    const slotKey = await pbkdf2(algs.hashAlg, secret, s.salt, s.iterations, header.keyBytes);
    // The material is decrypted as sectors from 0; a short last sector decrypts as the prefix of a whole one.
    const split = Buffer.alloc(Math.ceil(material / 512) * 512);
    split.set(await readAt(start, material));
    const slotCipher = new SectorCipher(spec, slotKey);
    slotKey.fill(0);
    try {
      slotCipher.decrypt(split, 0);
    } finally {
      slotCipher.close();
    }
    const master = afMerge(algs.hashAlg, split, header.keyBytes, s.stripes);
    split.fill(0);
    const digest = await pbkdf2(algs.hashAlg, master, header.mkDigestSalt, header.mkDigestIterations, LUKS_DIGEST_BYTES);
    if (timingSafeEqual(digest, header.mkDigest)) {
      const cipher = new SectorCipher(spec, master);
      master.fill(0);
      return { cipher, slot: i };
    }
    master.fill(0);
  }
  throw keyError(`${where}: ${NO_SLOT_OPENS}`, where);
}

/** qemu-img's LUKS creation options (`-o cipher-alg=…`, or `encrypt.cipher-alg=…` for qcow2). */
export interface LuksCreateOptions {
  passphrase: Uint8Array;
  cipherAlg?: CipherAlg;
  cipherMode?: CipherMode;
  ivgenAlg?: IvGenAlg;
  ivgenHashAlg?: HashAlg;
  hashAlg?: HashAlg;
  /** Milliseconds of PBKDF2 an unlock should take on this machine (qemu's iter-time, default 2000). */
  iterTime?: number;
}

export const LUKS_DEFAULTS = { cipherAlg: 'aes-256', cipherMode: 'xts', ivgenAlg: 'plain64', hashAlg: 'sha256', iterTime: 2000 } as const;

export interface NewLuks {
  header: LuksHeader;
  /** The header and slot 0's key material, laid out over header.payloadOffset sectors: write it at the header's place. */
  region: Buffer;
  /** The payload cipher under the new master key; the caller closes it. */
  cipher: SectorCipher;
}

/**
 * A new LUKS1 header as qemu-img makes it: a random master key, its PBKDF2 digest at iter-time/8, slot 0
 * holding it for `passphrase` (PBKDF2 at iter-time, AF-split to 4000 stripes, encrypted with the slot key),
 * slots 1-7 disabled, the payload after the eighth slot's area.
 */
export async function createLuks(o: LuksCreateOptions): Promise<NewLuks> {
  const cipherAlg = o.cipherAlg ?? LUKS_DEFAULTS.cipherAlg;
  const cipherMode = o.cipherMode ?? LUKS_DEFAULTS.cipherMode;
  const ivgenAlg = o.ivgenAlg ?? LUKS_DEFAULTS.ivgenAlg;
  const hashAlg = o.hashAlg ?? LUKS_DEFAULTS.hashAlg;
  const ivgenHashAlg = o.ivgenHashAlg ?? (ivgenAlg === 'essiv' ? 'sha256' : undefined);
  const iterTime = o.iterTime ?? LUKS_DEFAULTS.iterTime;
  if (!Number.isSafeInteger(iterTime) || iterTime < 1) throw new DiskError('EINVAL', `iter-time must be a positive number of milliseconds (got ${iterTime})`);
  const parsed = parseCipherAlg(cipherAlg);
  if (!parsed) throw new DiskError('EINVAL', `unknown cipher-alg '${cipherAlg}'`);
  const spec: CipherSpec = { alg: cipherAlg, mode: cipherMode, ivgen: ivgenAlg, ...(ivgenHashAlg ? { ivgenHash: ivgenHashAlg } : {}) };
  const keyBytes = luksKeyBytes(cipherAlg, cipherMode);
  if ((keyBytes * LUKS_STRIPES) % 512 !== 0) {
    // qemu 7.2 asserts on key material that does not fill whole sectors (aes-192 outside XTS): it could not open it.
    throw new DiskError('EINVAL', `${cipherAlg} in ${cipherMode} mode is not possible in a LUKS header qemu can open (use aes-128, aes-256, or xts)`);
  }
  const secret = cString(o.passphrase);

  const master = randomBytes(keyBytes);
  const cipher = new SectorCipher(spec, master); // refuses what node:crypto cannot run, before any slow work
  const slotKeyHolder: Buffer[] = [];
  try {
    const mkDigestSalt = randomBytes(LUKS_SALT_BYTES);
    const mkDigestIterations = scaledIterations(iterationsPerSecond(hashAlg, LUKS_DIGEST_BYTES), iterTime, 8);
    const mkDigest = await pbkdf2(hashAlg, master, mkDigestSalt, mkDigestIterations, LUKS_DIGEST_BYTES);

    const { slotOffsets, payloadOffset } = luksLayout(keyBytes);
    const salt = randomBytes(LUKS_SALT_BYTES);
    const iterations = scaledIterations(iterationsPerSecond(hashAlg, keyBytes), iterTime, 1);
    const slotKey = await pbkdf2(hashAlg, secret, salt, iterations, keyBytes);
    slotKeyHolder.push(slotKey);

    const split = afSplit(hashAlg, master, LUKS_STRIPES);
    const padded = Buffer.alloc(Math.ceil(split.length / 512) * 512);
    split.copy(padded);
    split.fill(0);
    const slotCipher = new SectorCipher(spec, slotKey);
    try {
      slotCipher.encrypt(padded, 0);
    } finally {
      slotCipher.close();
    }
    const header: LuksHeader = {
      cipherName: parsed.family,
      cipherModeSpec: `${cipherMode}-${ivgenAlg}${ivgenHashAlg ? `:${ivgenHashAlg}` : ''}`,
      hashSpec: hashAlg,
      payloadOffset,
      keyBytes,
      mkDigest,
      mkDigestSalt,
      mkDigestIterations,
      uuid: randomUUID(),
      slots: slotOffsets.map((keyOffset, i) => ({
        active: i === 0,
        iterations: i === 0 ? iterations : 0,
        salt: i === 0 ? salt : Buffer.alloc(LUKS_SALT_BYTES),
        keyOffset,
        stripes: LUKS_STRIPES,
      })),
    };
    const region = Buffer.alloc(payloadOffset * 512);
    encodeLuksHeader(header).copy(region, 0);
    // Only the material's bytes (qemu writes key_bytes x stripes, not a whole last sector).
    padded.copy(region, slotOffsets[0] * 512, 0, keyBytes * LUKS_STRIPES);
    return { header, region, cipher };
  } catch (e) {
    cipher.close();
    throw e;
  } finally {
    master.fill(0);
    for (const k of slotKeyHolder) k.fill(0);
  }
}

function scaledIterations(perSecond: number, iterTime: number, divisor: number): number {
  const n = Math.floor((perSecond * iterTime) / 1000 / divisor);
  if (n > 0xffffffff) throw new DiskError('EINVAL', `iter-time ${iterTime} ms needs more PBKDF2 iterations (${n}) than a LUKS1 header can hold`);
  return Math.max(n, MIN_ITERATIONS);
}

/** One key slot in qemu-img info's words. */
export interface LuksSlotInfo {
  active: boolean;
  iters?: number;
  'key-offset': number;
  stripes?: number;
}

/** qemu-img info's `format-specific.data` of a LUKS volume (the `encrypt` object of a qcow2, less its format). */
export interface LuksInfo {
  'ivgen-alg': string;
  'ivgen-hash-alg'?: string;
  'hash-alg': string;
  'cipher-alg': string;
  uuid: string;
  'cipher-mode': string;
  slots: LuksSlotInfo[];
  'payload-offset': number;
  'master-key-iters': number;
}

/** Describes a header as qemu-img info does (in its key order); needs no passphrase. */
export function luksInfo(header: LuksHeader, where: string): LuksInfo {
  const a = luksAlgorithms(header, where);
  return {
    'ivgen-alg': a.ivgenAlg,
    ...(a.ivgenAlg === 'essiv' && a.ivgenHashAlg ? { 'ivgen-hash-alg': a.ivgenHashAlg } : {}),
    'hash-alg': a.hashAlg,
    'cipher-alg': a.cipherAlg,
    uuid: header.uuid,
    'cipher-mode': a.cipherMode,
    slots: header.slots.slice(0, LUKS_SLOTS).map((s) =>
      s.active ? { active: true, iters: s.iterations, 'key-offset': s.keyOffset * 512, stripes: s.stripes } : { active: false, 'key-offset': s.keyOffset * 512 },
    ),
    'payload-offset': header.payloadOffset * 512,
    'master-key-iters': header.mkDigestIterations,
  };
}

