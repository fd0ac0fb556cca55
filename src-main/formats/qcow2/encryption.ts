/**
 * Encrypted qcow2 (docs/interop/qcow2.txt, "crypt_method"): 1 is the original AES (AES-128-CBC, the key the
 * passphrase's first 16 bytes, IVs from guest sector numbers), 2 is LUKS (a LUKS1 header in clusters named by
 * the FULL_DISK_ENCRYPTION header extension; IVs from host sector numbers, as qemu's crypt_physical_offset).
 * Only data clusters are encrypted: tables, refcounts and snapshots are not, so map and check need no key.
 * Compressed clusters are never encrypted (qemu refuses to write them into an encrypted image; so do we).
 *
 * The ciphers work on whole 512-byte sectors: the device widens unaligned reads and writes to sectors
 * (readAligned, writeAligned), so that the read and write paths meet only whole sectors.
 */
import { u64, view } from '../../block/bytes';
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { OptionValues } from '../../../src-shared/options';
import {
  CRYPT_SECTOR,
  LUKS_HEADER_BYTES,
  createLuks,
  isCipherMode,
  isHashAlg,
  isIvGenAlg,
  luksAlgorithms,
  luksInfo,
  luksKeyBytes,
  luksLayout,
  parseLuksHeader,
  passphraseNeeded,
  qcowAesCipher,
  unlockLuks,
  type LuksCreateOptions,
  type LuksHeader,
  type SectorCipher,
} from '../../crypto';
import type { Qcow2Device } from './device';
import { writeHeaderFields } from './header';
import { EXT_CRYPTO, type Qcow2Layout } from './layout';
import { readAt } from './read';
import { write } from './write';
import { writeZeroes } from './zero';

export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

/**
 * The key a caller hands to open or create. (Meant for block/types.ts OpenOptions and CreateOptions as
 * `passphrase?: Uint8Array`; read here through this type until it is there.)
 */
export interface KeyOptions {
  /** The passphrase's bytes (UTF-8 of what was typed or the secret's data); never logged or echoed. */
  passphrase?: Uint8Array;
  /**
   * Opens an encrypted image without its key for what needs no data (map, check, info, snapshots, resize):
   * only data is encrypted, so metadata work goes on and data reads and writes refuse. Without it (and
   * without a passphrase) the open itself refuses, as qemu's does, so convert, compare and read fail first.
   */
  withoutKey?: boolean;
}

/** The LUKS header's place in the file, from the FULL_DISK_ENCRYPTION extension, bounded by the file. */
export function luksRegion(layout: Qcow2Layout, fileSize: number, path: string): { offset: number; length: number } {
  const ext = layout.extensions.find((e) => e.type === EXT_CRYPTO);
  if (!ext) throw corrupt(`${path}: LUKS-encrypted, but the header has no FULL_DISK_ENCRYPTION extension`, path);
  if (ext.data.length < 16) throw corrupt(`${path}: the FULL_DISK_ENCRYPTION header extension is too short`, path);
  const v = view(ext.data);
  const offset = u64(v, 0, false, 'the LUKS header offset', path);
  const length = u64(v, 8, false, 'the LUKS header length', path);
  if (offset % layout.clusterSize !== 0) throw corrupt(`${path}: the LUKS header offset ${offset} is not a multiple of the cluster size`, path);
  if (length < LUKS_HEADER_BYTES || offset + length > fileSize) throw corrupt(`${path}: the LUKS header (${length} bytes at ${offset}) does not fit in the file`, path);
  return { offset, length };
}

async function readLuksHeader(file: ImageFile, layout: Qcow2Layout): Promise<{ header: LuksHeader; region: { offset: number; length: number } }> {
  const region = luksRegion(layout, file.size, file.path);
  const header = parseLuksHeader(await file.readBlock(region.offset, LUKS_HEADER_BYTES, 'LUKS header'), `${file.path}: LUKS header`);
  luksAlgorithms(header, file.path);
  return { header, region };
}

/** The data cipher of an open encrypted image; without a passphrase it is locked and refuses data I/O. */
export class QcowEncryption {
  constructor(
    readonly method: number,
    private readonly cipher: SectorCipher | undefined,
    private readonly path: string,
  ) {}

  get locked(): boolean {
    return this.cipher === undefined;
  }

  private sector(host: number, guest: number): number {
    return (this.method === CRYPT_AES ? guest : host) / CRYPT_SECTOR;
  }

  /** Decrypts data read from host offset `host` (guest offset `guest`) in place. */
  decrypt(buf: Uint8Array, host: number, guest: number): void {
    if (!this.cipher) throw passphraseNeeded(this.path);
    this.cipher.decrypt(buf, this.sector(host, guest));
  }

  /** The encrypted copy of `buf` to write at host offset `host` (guest `guest`); the caller's data is left as it is. */
  encrypted(buf: Uint8Array, host: number, guest: number): Uint8Array {
    if (!this.cipher) throw passphraseNeeded(this.path);
    const copy = Buffer.allocUnsafeSlow(buf.length);
    copy.set(buf);
    this.cipher.encrypt(copy, this.sector(host, guest));
    return copy;
  }

  /** Wipes the key. */
  close(): void {
    this.cipher?.close();
  }
}

/**
 * The encryption of an image being opened, or undefined for a plain one. Without a passphrase the open
 * refuses, unless it asks for `withoutKey` (then data reads and writes refuse).
 * LUKS: a wrong passphrase is refused ("does not open any key slot"). AES has no way to tell: a wrong
 * passphrase reads garbage, as in qemu.
 */
export async function openEncryption(file: ImageFile, layout: Qcow2Layout, opts: KeyOptions): Promise<QcowEncryption | undefined> {
  const method = layout.header.cryptMethod;
  const path = file.path;
  if (method === 0) return undefined;
  if (layout.header.size % CRYPT_SECTOR !== 0) throw corrupt(`${path}: an encrypted image's size must be whole 512-byte sectors`, path);
  const luks = method === CRYPT_LUKS ? await readLuksHeader(file, layout) : undefined;
  if (!opts.passphrase) {
    if (!opts.withoutKey) throw passphraseNeeded(path);
    return new QcowEncryption(method, undefined, path);
  }
  if (!luks) return new QcowEncryption(method, qcowAesCipher(opts.passphrase), path);
  const { region, header } = luks;
  const readLuks = (at: number, length: number) => file.readBlock(region.offset + at, length, 'LUKS key material');
  const { cipher } = await unlockLuks(header, readLuks, region.length, opts.passphrase, path);
  return new QcowEncryption(method, cipher, path);
}

/** qemu-img info's `encrypt` object: {format: aes}, or the LUKS header described (in qemu's key order). */
export async function describeEncryption(file: ImageFile, layout: Qcow2Layout): Promise<Record<string, unknown> | undefined> {
  const method = layout.header.cryptMethod;
  if (method === 0) return undefined;
  if (method === CRYPT_AES) return { format: 'aes' };
  const { header } = await readLuksHeader(file, layout);
  const { slots, 'payload-offset': payloadOffset, 'master-key-iters': iters, 'cipher-mode': mode, ...head } = luksInfo(header, file.path);
  return { ...head, format: 'luks', 'cipher-mode': mode, slots, 'payload-offset': payloadOffset, 'master-key-iters': iters };
}

// ---------------------------------------------------------------- aligned I/O

const down = (x: number) => Math.floor(x / CRYPT_SECTOR) * CRYPT_SECTOR;
const up = (x: number) => Math.ceil(x / CRYPT_SECTOR) * CRYPT_SECTOR;
export const sectorAligned = (offset: number, length: number): boolean => offset % CRYPT_SECTOR === 0 && length % CRYPT_SECTOR === 0;

/** A read that does not cover whole sectors: the sectors it touches are read (and decrypted) whole. */
export async function readAligned(d: Qcow2Device, offset: number, into: Uint8Array): Promise<void> {
  const a = down(offset);
  const bounce = new Uint8Array(up(offset + into.length) - a);
  await readAt(d, a, bounce);
  into.set(bounce.subarray(offset - a, offset - a + into.length));
}

/** A write that does not cover whole sectors: the edge sectors are read, patched, and written whole. */
export async function writeAligned(d: Qcow2Device, offset: number, data: Uint8Array): Promise<void> {
  const a = down(offset);
  const b = up(offset + data.length);
  const bounce = new Uint8Array(b - a);
  if (a < offset) await d.read(a, bounce.subarray(0, CRYPT_SECTOR));
  if (offset + data.length < b) await d.read(b - CRYPT_SECTOR, bounce.subarray(bounce.length - CRYPT_SECTOR));
  bounce.set(data, offset - a);
  await write(d, a, bounce);
}

/** Zeroes that do not cover whole sectors: the whole sectors inside as zeroes, the edges as written zero bytes. */
export async function writeZeroesAligned(d: Qcow2Device, offset: number, length: number): Promise<void> {
  const end = offset + length;
  const a = up(offset);
  const b = down(end);
  if (a >= b) return writeAligned(d, offset, new Uint8Array(length));
  if (offset < a) await writeAligned(d, offset, new Uint8Array(a - offset));
  await writeZeroes(d, a, b - a);
  if (end > b) await writeAligned(d, b, new Uint8Array(end - b));
}

// ---------------------------------------------------------------- create

export interface EncryptionSettings {
  method: typeof CRYPT_AES | typeof CRYPT_LUKS;
  luks?: Omit<LuksCreateOptions, 'passphrase'>;
}

/** The encrypt.* create options, as qemu-img takes them; undefined when the image is not to be encrypted. */
export function encryptionSettings(options: OptionValues): EncryptionSettings | undefined {
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

/** The clusters a new image's LUKS header takes (qemu-img measure counts them): 0 unless encrypt.format=luks. */
export function luksHeaderBytes(options: OptionValues, clusterSize: number): number {
  const s = encryptionSettings(options);
  if (s?.method !== CRYPT_LUKS) return 0;
  const keyBytes = luksKeyBytes(s.luks?.cipherAlg ?? 'aes-256', s.luks?.cipherMode ?? 'xts');
  return Math.ceil((luksLayout(keyBytes).payloadOffset * CRYPT_SECTOR) / clusterSize) * clusterSize;
}

/** The placeholder FULL_DISK_ENCRYPTION extension create.ts writes into a new LUKS image's header (filled by encryptNewImage). */
export const CRYPTO_EXT_PLACEHOLDER = { type: EXT_CRYPTO, data: new Uint8Array(16) };

/**
 * Makes a freshly created (empty) image encrypted, as qemu-img create lays it out: the LUKS header region in
 * clusters allocated after the L1 table, the extension pointing at it, then crypt_method set last (until then
 * the image is a valid plain one). The device is left holding the new key, for preallocation.
 */
export async function encryptNewImage(d: Qcow2Device, s: EncryptionSettings, opts: KeyOptions): Promise<void> {
  if (!opts.passphrase) throw new DiskError('EINVAL', "encrypt.key-secret is required: the image's passphrase");
  if (s.method === CRYPT_AES) {
    await writeHeaderFields(d.file, { cryptMethod: CRYPT_AES });
    d.header.cryptMethod = CRYPT_AES;
    d.encryption = new QcowEncryption(CRYPT_AES, qcowAesCipher(opts.passphrase), d.path);
    return;
  }
  const made = await createLuks({ ...s.luks, passphrase: opts.passphrase });
  try {
    const refs = await d.refcounts();
    const length = made.region.length;
    const offset = await refs.alloc(Math.ceil(length / d.clusterSize));
    await d.file.write(offset, made.region);
    const ext = new Uint8Array(16);
    view(ext).setBigUint64(0, BigInt(offset));
    view(ext).setBigUint64(8, BigInt(length));
    await d.file.write(await extensionDataOffset(d, EXT_CRYPTO), ext);
    await d.file.sync();
    await writeHeaderFields(d.file, { cryptMethod: CRYPT_LUKS });
    d.header.cryptMethod = CRYPT_LUKS;
  } catch (e) {
    made.cipher.close();
    throw e;
  }
  d.encryption = new QcowEncryption(CRYPT_LUKS, made.cipher, d.path);
}

/** Where the data of header extension `type` lies in the file (the extensions follow the header, 8-aligned). */
async function extensionDataOffset(d: Qcow2Device, type: number): Promise<number> {
  const first = await d.file.readBlock(0, Math.min(d.clusterSize, d.file.size));
  const v = view(first);
  let pos = d.header.headerLength;
  while (pos + 8 <= first.length) {
    const t = v.getUint32(pos);
    const len = v.getUint32(pos + 4);
    if (t === type) return pos + 8;
    if (t === 0) break;
    pos += 8 + Math.ceil(len / 8) * 8;
  }
  throw new DiskError('EINVAL', `${d.path}: the new image has no header extension 0x${type.toString(16)}`);
}
