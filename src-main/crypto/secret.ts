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
  return keyError(`${path}: the image is encrypted: a passphrase is needed to read or write its data`, path);
}

/** Wipes key material (a no-op on what is already gone). */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}
