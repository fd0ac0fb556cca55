/**
 * The original qcow/qcow2 encryption (crypt_method 1, qemu's crypto/block-qcow.c): AES-128-CBC over
 * 512-byte sectors, the key the passphrase's first 16 bytes zero padded, the IV the sector number as a
 * little-endian 64-bit value (plain64). Weak (no key stretching, a passphrase-derived key, predictable
 * IVs): read and written for old images, created only when asked.
 */
import { SectorCipher } from './sector-cipher';
import { cString } from './secret';

export function qcowAesCipher(passphrase: Uint8Array): SectorCipher {
  const key = Buffer.alloc(16);
  const secret = cString(passphrase);
  key.set(secret.subarray(0, 16));
  try {
    return new SectorCipher({ alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' }, key);
  } finally {
    key.fill(0);
  }
}
