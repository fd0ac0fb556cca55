import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { DiskError, toDiskError } from '../block/errors';
import { isLockedByOthers, lockingAvailable } from '../block/lock';

/** A name beside the target (same folder, so the final rename is atomic) for the file while it is written. */
export function tempPathFor(target: string): string {
  const dir = nodePath.dirname(target);
  return nodePath.join(dir, `.${nodePath.basename(target)}.diskwright-${randomBytes(4).toString('hex')}.tmp`);
}

/** How long a temporary file must have been left alone to count as stale where locks cannot tell. */
const STALE_AFTER_MS = 10 * 60 * 1000;

/**
 * Removes what an earlier, killed convert or create to the same target left behind: its hidden temporary
 * files (`.NAME.diskwright-XXXXXXXX.tmp` beside the target). One still being written by a live diskwright
 * holds its write lock and is left alone (where locks are unavailable: one touched in the last ten minutes).
 * Returns the paths removed, for the caller to mention.
 */
export async function removeStaleTemporaries(target: string): Promise<string[]> {
  const dir = nodePath.dirname(nodePath.resolve(target));
  const base = nodePath.basename(target);
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(`.${base}.diskwright-`) || !/\.diskwright-[0-9a-f]{8}\.tmp$/.test(name) || name.length !== base.length + 25) continue;
    const path = nodePath.join(dir, name);
    if (await stillWritten(path)) continue;
    await fsp.rm(path, { force: true }).then(
      () => removed.push(path),
      () => undefined,
    );
  }
  return removed;
}

async function stillWritten(path: string): Promise<boolean> {
  const st = await fsp.stat(path).catch(() => undefined);
  if (!st?.isFile()) return true; // not ours to remove
  if (!lockingAvailable()) return Date.now() - st.mtimeMs < STALE_AFTER_MS;
  const fh = await fsp.open(path, 'r').catch(() => undefined);
  if (!fh) return true;
  try {
    return isLockedByOthers(fh.fd);
  } finally {
    await fh.close();
  }
}

/** Fails with a plain message naming the target when it is a folder, or its folder is missing or not a folder. */
export async function checkTarget(target: string): Promise<void> {
  const dir = nodePath.dirname(nodePath.resolve(target));
  const st = await fsp.stat(dir).catch((err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DiskError('ENOENT', `${target}: the folder ${dir} does not exist`, target);
    throw toDiskError(err, dir);
  });
  if (!st.isDirectory()) throw new DiskError('EINVAL', `${target}: ${dir} is not a folder`, target);
  const existing = await fsp.stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new DiskError('EISDIR', `${target}: is a directory, not an image`, target);
}

/**
 * The error as the user should read it: about the target they named, never about the hidden temporary file
 * it is being written as ("…/.out.raw.diskwright-3d1e22f4.tmp: no space left" becomes "…/out.raw: no space left").
 */
export function aboutTarget(err: unknown, tmp: string | undefined, target: string): DiskError {
  const e = toDiskError(err, target);
  if (tmp === undefined || (!e.message.includes(tmp) && e.path !== tmp)) return e;
  return new DiskError(e.code, e.message.split(tmp).join(target), target);
}

/**
 * Writes a new file beside the target and renames it into place when `write` succeeds; on failure or cancel
 * the partial file is removed and the target is untouched.
 */
export async function writeAtomically<T>(target: string, write: (tmpPath: string) => Promise<T>, extraFilesOf?: (result: T) => string[]): Promise<T> {
  await checkTarget(target);
  const tmp = tempPathFor(target);
  let result: T | undefined;
  try {
    result = await write(tmp);
    await fsp.rename(tmp, target).catch((err) => { throw toDiskError(err, target); });
    return result;
  } catch (err) {
    // The temporary may be a folder (a Parallels .hdd bundle); files written beside it go too.
    await fsp.rm(tmp, { force: true, recursive: true }).catch(() => undefined);
    if (result !== undefined && extraFilesOf) for (const f of extraFilesOf(result)) await fsp.rm(f, { force: true }).catch(() => undefined);
    throw aboutTarget(err, tmp, target);
  }
}
