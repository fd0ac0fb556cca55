import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { DiskError, toDiskError } from '../block/errors';

/** A name beside the target (same folder, so the final rename is atomic) for the file while it is written. */
export function tempPathFor(target: string): string {
  const dir = nodePath.dirname(target);
  return nodePath.join(dir, `.${nodePath.basename(target)}.diskwright-${randomBytes(4).toString('hex')}.tmp`);
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
export async function writeAtomically<T>(target: string, write: (tmpPath: string) => Promise<T>): Promise<T> {
  await checkTarget(target);
  const tmp = tempPathFor(target);
  try {
    const result = await write(tmp);
    await fsp.rename(tmp, target).catch((err) => { throw toDiskError(err, target); });
    return result;
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw aboutTarget(err, tmp, target);
  }
}
