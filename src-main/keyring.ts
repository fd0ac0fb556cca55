/**
 * The passphrases of encrypted images, held in the main process while their images are in use, by the real
 * path of the image file. The CLI fills it from --object secret / --image-opts / the no-echo prompt; the app
 * from its passphrase dialog, and forgets (wipes) a key when the image's session ends. The registry looks a
 * key up for every image it opens, backing files included, so no service passes passphrases around.
 * A key is never logged, put in an error message, written to a file, or sent back over the API.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';

const keys = new Map<string, Uint8Array>();

/** The name a key is held under: the file's real path (a symlink and its target share one key). */
export function keyName(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    return abs; // not there (yet): a create names its target before it exists
  }
}

/** Holds a copy of `passphrase` for the image at `path`, replacing (and wiping) any key held before. */
export function rememberKey(path: string, passphrase: Uint8Array): void {
  const name = keyName(path);
  keys.get(name)?.fill(0);
  keys.set(name, Uint8Array.from(passphrase));
}

/** The key held for the image at `path`, if any. */
export function keyFor(path: string): Uint8Array | undefined {
  return keys.get(keyName(path));
}

/** Wipes and drops the key of the image at `path`. */
export function forgetKey(path: string): void {
  const name = keyName(path);
  keys.get(name)?.fill(0);
  keys.delete(name);
}

/** Wipes and drops every key (the app's quit, a CLI command's end). */
export function forgetAllKeys(): void {
  for (const k of keys.values()) k.fill(0);
  keys.clear();
}
