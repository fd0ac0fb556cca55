/**
 * Unlock: the app's passphrase dialog hands a passphrase for one image (or a new image's target); it is checked
 * here and then held in the keyring (src-main/keyring.ts) for as long as the app's session with that image lasts.
 * The registry gives the held key to every open of that file, backing files included, so nothing else passes
 * passphrases around. A key is never returned, logged or written anywhere; what the caller handed in is wiped.
 */
import { DiskError } from '../block/errors';
import { forgetKey, keyFor, rememberKey } from '../keyring';
import { openImage } from '../registry';
import { inspectImage } from './info';

/**
 * Checks `passphrase` against the encrypted image at `path` by opening it, and holds it for the image. A wrong
 * LUKS passphrase is refused in the engine's one line (nothing is then held, and a key held before stays as it
 * was). The legacy AES has nothing to check a passphrase against: it is held as given, as qemu would use it.
 * `passphrase` is wiped before this returns, whatever happens.
 */
export async function unlockImage(path: string, passphrase: Uint8Array): Promise<void> {
  const previous = keyFor(path);
  const keptPrevious = previous ? Uint8Array.from(previous) : undefined;
  try {
    const info = await inspectImage(path, { backingChain: false });
    if (!info.encrypted) throw new DiskError('EINVAL', `${info.filename}: the image is not encrypted; it needs no passphrase`, info.filename);
    rememberKey(info.filename, passphrase);
    try {
      // Only this image is opened: a backing file is unlocked on its own, under its own name.
      const dev = await openImage(info.filename, { readOnly: true, backingPolicy: 'none' });
      await dev.close();
    } catch (err) {
      if (keptPrevious) rememberKey(info.filename, keptPrevious);
      else forgetKey(info.filename);
      throw err;
    }
  } finally {
    passphrase.fill(0);
    keptPrevious?.fill(0);
  }
}

/**
 * Holds the passphrase a new encrypted image at `path` is to be made with (create and convert take it from the
 * keyring under the target's name). Nothing is checked: there is no image yet. `passphrase` is wiped.
 */
export function holdTargetKey(path: string, passphrase: Uint8Array): void {
  try {
    rememberKey(path, passphrase);
  } finally {
    passphrase.fill(0);
  }
}

/** Wipes and drops the key held for `path`, if any. */
export function forgetImageKey(path: string): void {
  forgetKey(path);
}
