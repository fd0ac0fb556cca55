/**
 * Encrypting a freshly created (empty) qcow2 image as qemu-img create lays it out: the LUKS header region in
 * clusters allocated after the L1 table, the FULL_DISK_ENCRYPTION extension (create.ts left a placeholder)
 * pointing at it, then crypt_method set last, so that until then the image is a valid plain one.
 */
import { view } from '../../block/bytes';
import { DiskError } from '../../block/errors';
import { createLuks, qcowAesCipher } from '../../crypto';
import { CRYPT_AES, CRYPT_LUKS, QcowEncryption, type EncryptionSettings } from './encryption';
import { writeHeaderFields } from './header';
import { EXT_CRYPTO } from './layout';
import type { Qcow2State } from './state';

/** Encrypts the new image `d`; returns the data cipher, for the device to hold (preallocation writes through it). */
export async function encryptNewImage(d: Qcow2State, s: EncryptionSettings, passphrase: Uint8Array | undefined): Promise<QcowEncryption> {
  if (!passphrase) throw new DiskError('EINVAL', "encrypt.key-secret is required: the image's passphrase");
  if (s.method === CRYPT_AES) {
    await writeHeaderFields(d.file, { cryptMethod: CRYPT_AES });
    d.header.cryptMethod = CRYPT_AES;
    return new QcowEncryption(CRYPT_AES, qcowAesCipher(passphrase), d.path);
  }
  const made = await createLuks({ ...s.luks, passphrase });
  try {
    const refs = await d.refcounts();
    const length = made.region.length;
    const offset = await refs.alloc(Math.ceil(length / d.geometry.clusterSize));
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
  return new QcowEncryption(CRYPT_LUKS, made.cipher, d.path);
}

/** Where the data of header extension `type` lies in the file (the extensions follow the header, 8-aligned). */
async function extensionDataOffset(d: Qcow2State, type: number): Promise<number> {
  const first = await d.file.readBlock(0, Math.min(d.geometry.clusterSize, d.file.size));
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
