/**
 * What a new qcow2 image's encryption is to be, without the ciphers: settings.ts and create.ts need these
 * names for every image, and encryption.ts, which holds the ciphers, loads node:crypto (about 10 ms at start),
 * so a plain create or convert must not import it. encryption.ts re-exports all of this.
 */
import type { LuksCreateOptions } from '../../crypto/luks';
import { EXT_CRYPTO } from './layout';

/** qcow2 header crypt_method values. */
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

/** How a new image is to be encrypted (decoded from the encrypt.* create options in settings.ts). */
export interface EncryptionSettings {
  method: typeof CRYPT_AES | typeof CRYPT_LUKS;
  luks?: Omit<LuksCreateOptions, 'passphrase'>;
}

/** The placeholder FULL_DISK_ENCRYPTION extension create.ts writes into a new LUKS image's header (filled by encrypt-new.ts). */
export const CRYPTO_EXT_PLACEHOLDER = { type: EXT_CRYPTO, data: new Uint8Array(16) };
