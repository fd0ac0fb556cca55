/**
 * Passphrases and the errors about them. A passphrase is bytes (UTF-8 of what was typed or given as a
 * secret) and never enters a message, a log or a file: errors name the image, not the secret.
 */
import { DiskError } from '../block/errors';

/** The passphrase as qemu uses it: up to its first NUL byte (qemu passes it as a C string). */
export function cString(passphrase: Uint8Array): Uint8Array {
  const end = passphrase.indexOf(0);
  return end < 0 ? passphrase : passphrase.subarray(0, end);
}

/** A refusal about keys (wrong or missing passphrase). */
export function keyError(message: string, path?: string): DiskError {
  return new DiskError('EACCES', message, path);
}

/** The error when an encrypted image is opened for its data without a passphrase. */
export function passphraseNeeded(path: string): DiskError {
  return keyError(`${path}: ${PASSPHRASE_NEEDED}`, path);
}

const PASSPHRASE_NEEDED = 'the image is encrypted: a passphrase is needed to read or write its data';
/** The refusal of a LUKS passphrase that opens no key slot. */
export const WRONG_PASSPHRASE = 'the passphrase does not open any key slot';

/** Whether `err` refuses an open for want of a passphrase ('needed') or for a wrong one ('wrong'): a face may ask again. */
export function keyRefusal(err: unknown): 'needed' | 'wrong' | undefined {
  if (!(err instanceof DiskError) || err.code !== 'EACCES') return undefined;
  if (err.message.endsWith(PASSPHRASE_NEEDED)) return 'needed';
  if (err.message.endsWith(WRONG_PASSPHRASE)) return 'wrong';
  return undefined;
}

/** Wipes key material (a no-op on what is already gone). */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}
