import * as nodePath from 'node:path';
import { DiskError } from './errors';
import type { BackingPolicy } from './types';

/**
 * Resolves a backing file name as written in an image: relative names are relative to the image's folder.
 * A path that leaves that folder is only followed when the caller's policy allows it.
 */
export function resolveBackingPath(imagePath: string, backingName: string, policy: BackingPolicy): string {
  const dir = nodePath.dirname(nodePath.resolve(imagePath));
  const full = nodePath.resolve(dir, backingName);
  if (policy === 'inside-folder') {
    const rel = nodePath.relative(dir, full);
    if (rel.startsWith('..') || nodePath.isAbsolute(rel)) {
      throw new DiskError('EOUTSIDE', `${imagePath}: its backing file ${full} lies outside the image's folder; allow it to be followed`, full);
    }
  }
  return full;
}
