import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { toDiskError } from '../block/errors';

/** A name beside the target (same folder, so the final rename is atomic) for the file while it is written. */
export function tempPathFor(target: string): string {
  const dir = nodePath.dirname(target);
  return nodePath.join(dir, `.${nodePath.basename(target)}.diskwright-${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes a new file beside the target and renames it into place when `write` succeeds; on failure or cancel
 * the partial file is removed and the target is untouched.
 */
export async function writeAtomically<T>(target: string, write: (tmpPath: string) => Promise<T>): Promise<T> {
  const tmp = tempPathFor(target);
  try {
    const result = await write(tmp);
    await fsp.rename(tmp, target);
    return result;
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw toDiskError(err, target);
  }
}
