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

/**
 * Asks a person for the passphrase of an encrypted image that needs one (the CLI's no-echo prompt on a
 * terminal); undefined when nobody can be asked. Installed by a face; none by default.
 */
export type KeyAsker = (path: string, attempt: number) => Promise<Uint8Array | undefined>;
let asker: KeyAsker | undefined;
/** Paths whose held key came from asking (a wrong one may be asked for again; a given one is not). */
const asked = new Map<string, number>();
/** How many times a person is asked for one image's passphrase before its refusal stands (as cryptsetup). */
const ASK_TRIES = 3;

export function setKeyAsker(fn: KeyAsker | undefined): void {
  asker = fn;
  asked.clear();
}

/**
 * After an open of the image at `path` was refused for want of a key (`needed`) or for a wrong one, the key to
 * try next: asked for (and held) when an asker is installed, the key was not given some other way, and tries
 * remain; otherwise undefined and the refusal stands.
 */
export async function askForKey(path: string, needed: boolean): Promise<Uint8Array | undefined> {
  const name = keyName(path);
  if (!asker || (!needed && !asked.has(name)) || (needed && keys.has(name) && !asked.has(name))) return undefined;
  const attempt = (asked.get(name) ?? 0) + 1;
  if (attempt > ASK_TRIES) return undefined;
  const key = await asker(path, attempt);
  if (!key) return undefined;
  rememberKey(path, key);
  key.fill(0);
  asked.set(name, attempt);
  return keyFor(path);
}
