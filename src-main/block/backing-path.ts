import * as nodePath from 'node:path';
import { DiskError } from './errors';
import type { BackingGrantPolicy, BackingPolicy } from './types';

/**
 * Resolves a backing file name as written in an image: relative names are relative to the image's folder.
 * A path that leaves that folder is only followed when the caller's policy allows it: 'anywhere', or a
 * grant policy holding a grant for exactly this image and this backing file.
 */
export function resolveBackingPath(imagePath: string, backingName: string, policy: BackingPolicy): string {
  const image = nodePath.resolve(imagePath);
  const dir = nodePath.dirname(image);
  const full = nodePath.resolve(dir, backingName);
  if (policy === 'inside-folder' || typeof policy === 'object') {
    const rel = nodePath.relative(dir, full);
    const outside = rel.startsWith('..') || nodePath.isAbsolute(rel);
    if (outside && !(typeof policy === 'object' && policy.allows(image, full))) {
      throw new DiskError('EOUTSIDE', `${imagePath}: its backing file ${full} lies outside the image's folder; allow it to be followed`, full);
    }
  }
  return full;
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
