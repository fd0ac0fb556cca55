/**
 * Disk encryption below the formats: LUKS1 headers and key slots, the sector ciphers, qcow's legacy AES.
 * Imports only block/ and node:crypto, and knows no image format's layout.
 */
export { SectorCipher, CRYPT_SECTOR, type CipherSpec } from './sector-cipher';
export { createLuks, unlockLuks, luksInfo, cipherSpecOf, NO_SLOT_OPENS, LUKS_DEFAULTS, type LuksCreateOptions, type LuksInfo, type NewLuks, type ReadAt } from './luks';
export { parseLuksHeader, encodeLuksHeader, hasLuksMagic, luksAlgorithms, luksLayout, LUKS_HEADER_BYTES, type LuksHeader } from './luks-header';
export { qcowAesCipher } from './qcow-aes';
export { passphraseNeeded, keyError, keyRefusal, wipe } from './secret';
export { HASH_ALGS, CIPHER_MODES, IVGEN_ALGS, luksKeyBytes, isHashAlg, isCipherMode, isIvGenAlg, parseCipherAlg, type HashAlg, type CipherMode, type IvGenAlg, type CipherAlg } from './algorithms';
