/**
 * Encrypted qcow2 (docs/interop/qcow2.txt, "crypt_method"): 1 is the original AES (AES-128-CBC, the key the
 * passphrase's first 16 bytes, IVs from guest sector numbers), 2 is LUKS (a LUKS1 header in clusters named by
 * the FULL_DISK_ENCRYPTION header extension; IVs from host sector numbers, as qemu's crypt_physical_offset).
 * Only data clusters are encrypted: tables, refcounts and snapshots are not, so map and check need no key.
 * Compressed clusters are never encrypted (qemu refuses to write them into an encrypted image; so do we).
 *
 * The ciphers work on whole 512-byte sectors: the device widens unaligned reads and writes to sectors
 * (sector-io.ts), so that the read and write paths meet only whole sectors. This file imports neither the
 * device nor the read and write paths: state.ts names QcowEncryption, and read.ts and write.ts reach it
 * through Qcow2State (encryption, sealed). Creating an encrypted image is encrypt-new.ts; its options are
 * decoded in settings.ts.
 */
import { u64, view } from '../../block/bytes';
import { corrupt } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { OpenOptions } from '../../block/types';
import {
  CRYPT_SECTOR,
  LUKS_HEADER_BYTES,
  luksAlgorithms,
  luksInfo,
  luksKeyBytes,
  luksLayout,
  parseLuksHeader,
  passphraseNeeded,
  qcowAesCipher,
  unlockLuks,
  type LuksHeader,
  type SectorCipher,
} from '../../crypto';
import { EXT_CRYPTO, type Qcow2Layout } from './layout';
import { CRYPT_AES, CRYPT_LUKS, type EncryptionSettings } from './encryption-settings';

// The settings of a new image's encryption live in encryption-settings.ts (no ciphers there); still named here.
export { CRYPT_AES, CRYPT_LUKS, CRYPTO_EXT_PLACEHOLDER, type EncryptionSettings } from './encryption-settings';

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
export async function openEncryption(file: ImageFile, layout: Qcow2Layout, opts: Pick<OpenOptions, 'passphrase' | 'withoutKey'>): Promise<QcowEncryption | undefined> {
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


/** The clusters a new image's LUKS header takes (qemu-img measure counts them): 0 unless encrypt.format=luks. */
export function luksHeaderBytes(s: EncryptionSettings | undefined, clusterSize: number): number {
  if (s?.method !== CRYPT_LUKS) return 0;
  const keyBytes = luksKeyBytes(s.luks?.cipherAlg ?? 'aes-256', s.luks?.cipherMode ?? 'xts');
  return Math.ceil((luksLayout(keyBytes).payloadOffset * CRYPT_SECTOR) / clusterSize) * clusterSize;
}

