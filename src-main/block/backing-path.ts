import { realpathSync } from 'node:fs';
import * as nodePath from 'node:path';
import { DiskError } from './errors';
import type { BackingGrantPolicy, BackingPolicy } from './types';

/**
 * Resolves a backing file name as written in an image: relative names are relative to the image's folder.
 * Under 'anywhere' and 'none' that is all (qemu-img's behaviour, the CLI). Under the folder policies the
 * decision is taken on the file the name reaches, not on the name: symbolic links (of the backing file and of
 * the folders on the way) are resolved first, so `base.raw` in the image's folder that links to a file
 * elsewhere counts as elsewhere. A file outside is only followed under a grant for exactly this image and the
 * file reached. The resolved real path is returned, and the registry opens exactly it and verifies, once the
 * file is open, that it is the file checked here (ImageFile.open under openingChecked), so a link swapped in
 * between the check and the open does not pass either.
 */
export function resolveBackingPath(imagePath: string, backingName: string, policy: BackingPolicy): string {
  const image = nodePath.resolve(imagePath);
  const dir = nodePath.dirname(image);
  const full = nodePath.resolve(dir, backingName);
  if (!checksFolder(policy)) return full;
  const real = reachedPath(full);
  const realImage = reachedPath(image);
  const inside = within(reachedPath(dir), real) || within(nodePath.dirname(realImage), real);
  if (inside) return real;
  if (typeof policy === 'object' && (policy.allows(image, real) || policy.allows(realImage, real))) return real;
  const leads = real === full ? '' : ` (a link to ${real})`;
  throw new DiskError('EOUTSIDE', `${imagePath}: its backing file ${full}${leads} lies outside the image's folder; allow it to be followed`, real);
}

/** True for the policies that decide by folder (and grants): the app and the browser host; false for the CLI's 'anywhere' and for 'none'. */
export function checksFolder(policy: BackingPolicy): boolean {
  return policy === 'inside-folder' || typeof policy === 'object';
}

/**
 * A backing file the user named themselves (OpenOptions.backingOverride): theirs to choose, so no folder rule,
 * but under a folder policy it is opened by its real path, as every backing file is (see resolveBackingPath).
 */
export function overridePath(path: string, policy: BackingPolicy): string {
  return checksFolder(policy) ? reachedPath(path) : nodePath.resolve(path);
}

/** True when `target` lies in `dir` or below it. */
export function within(dir: string, target: string): boolean {
  const rel = nodePath.relative(dir, target);
  return rel !== '' && !rel.startsWith('..') && !nodePath.isAbsolute(rel);
}

/**
 * Where a path leads once every symbolic link on the way is followed: its real path, or for a file that does
 * not exist (yet), the real path of the nearest folder above it that does, with the rest of the name appended.
 */
export function reachedPath(path: string): string {
  const full = nodePath.resolve(path);
  try {
    return realpathSync(full);
  } catch {
    const parent = nodePath.dirname(full);
    if (parent === full) return full;
    return nodePath.join(reachedPath(parent), nodePath.basename(full));
  }
}

/**
 * The backing files the user allowed to be followed during this launch, each for one image: a grant for
 * overlay → /other/base.qcow2 allows neither another backing file for that overlay nor that base for
 * another image. Kept in memory only, so a new launch asks again.
 */
export class BackingGrants {
  private readonly pairs = new Set<string>();

  private static key(imagePath: string, backingPath: string): string {
    // NUL cannot occur in a path, so the pair is unambiguous.
    return `${nodePath.resolve(imagePath)}\0${nodePath.resolve(backingPath)}`;
  }

  grant(imagePath: string, backingPath: string): void {
    this.pairs.add(BackingGrants.key(imagePath, backingPath));
  }

  allows(imagePath: string, backingPath: string): boolean {
    return this.pairs.has(BackingGrants.key(imagePath, backingPath));
  }

  /** The block layer's view of these grants; it sees grants made later too. */
  policy(ungranted: BackingGrantPolicy['ungranted']): BackingGrantPolicy {
    return { allows: (image, backing) => this.allows(image, backing), ungranted };
  }
}
