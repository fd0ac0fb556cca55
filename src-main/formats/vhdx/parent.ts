/**
 * A differencing image's parent: the file names its parent locator gives (relative_path, volume_path,
 * absolute_win32_path, as Hyper-V writes them with Windows separators) turned into paths this system can open,
 * tried in the spec's order, each through the backing-path policy; the parent opened and checked against the
 * locator's linkage.
 */
import { existsSync } from 'node:fs';
import * as nodePath from 'node:path';
import { resolveBackingPath } from '../../block/backing-path';
import { corrupt, DiskError } from '../../block/errors';
import type { BackingPolicy, BlockDevice, OpenOptions } from '../../block/types';
import type { ParentLocator } from './layout';

/** The locator's names as paths here: backslashes become slashes; drive letters and volume GUID paths cannot be followed on this system. */
export function parentCandidates(p: ParentLocator): string[] {
  const out: string[] = [];
  const rel = p.entries.relative_path;
  if (rel) out.push(rel.replace(/\\/g, '/').replace(/^(\.\/)+/, ''));
  for (const key of ['volume_path', 'absolute_win32_path']) {
    let v = p.entries[key];
    if (!v) continue;
    v = v.replace(/^\\\\\?\\/, '');
    if (/^[A-Za-z]:[\\/]/.test(v) || /^Volume\{/i.test(v)) continue; // a Windows drive or volume: not reachable here
    out.push(v.replace(/\\/g, '/'));
  }
  return out;
}

/** The name `info` shows as the backing file: the first candidate that exists beside the image, else the first one. */
export function parentDisplayName(imagePath: string, p: ParentLocator): string | undefined {
  const c = parentCandidates(p);
  const dir = nodePath.dirname(nodePath.resolve(imagePath));
  return c.find((n) => existsSync(nodePath.resolve(dir, n))) ?? c[0] ?? p.entries.relative_path ?? p.entries.absolute_win32_path;
}

/** The parent's path under `policy`: the first candidate that exists; refusals and absences are plain errors. */
export function resolveParent(imagePath: string, p: ParentLocator, policy: BackingPolicy): string {
  const c = parentCandidates(p);
  let refusal: DiskError | undefined;
  for (const name of c) {
    const dir = nodePath.dirname(nodePath.resolve(imagePath));
    if (!existsSync(nodePath.resolve(dir, name))) continue;
    try {
      return resolveBackingPath(imagePath, name, policy);
    } catch (err) {
      if (err instanceof DiskError && err.code === 'EOUTSIDE') refusal ??= err;
      else throw err;
    }
  }
  if (refusal) throw refusal;
  const tried = Object.entries(p.entries)
    .filter(([k]) => k !== 'parent_linkage' && k !== 'parent_linkage2')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  throw new DiskError('ENOENT', `${imagePath}: its parent image was not found (the locator names ${tried || 'no file'})`, imagePath);
}

/** The GUID text of a linkage value as the locator stores it ("{…}"), lower-case and without braces. */
export function linkageGuid(v: string | undefined): string | undefined {
  return v?.replace(/[{}]/g, '').toLowerCase();
}

/**
 * Opens a differencing image's parent (opts.openBacking) and checks that it is the one the locator links to: a
 * VHDX parent's data write GUID (`guidOf`; undefined for another format) must be parent_linkage, or
 * parent_linkage2 (commit's handover), and the parent must be at least as large as the image.
 */
export async function openParent(
  path: string,
  loc: ParentLocator,
  virtualSize: number,
  opts: OpenOptions,
  guidOf: (parent: BlockDevice) => string | undefined,
): Promise<BlockDevice> {
  const parentPath = resolveParent(path, loc, opts.backingPolicy);
  const parent = await opts.openBacking(parentPath, 'vhdx', true);
  try {
    const linkage = linkageGuid(loc.entries.parent_linkage);
    const theirs = guidOf(parent);
    if (theirs !== undefined && linkage !== theirs && linkageGuid(loc.entries.parent_linkage2) !== theirs) {
      throw new DiskError('ECORRUPT', `${path}: the chain is stale: its parent ${parentPath} was changed after this image was made (parent linkage ${linkage ?? 'missing'}, parent's data write GUID ${theirs})`, path);
    }
    if (parent.size < virtualSize) throw corrupt(`${path}: its parent ${parentPath} is smaller (${parent.size} bytes) than the image (${virtualSize})`, path);
    return parent;
  } catch (err) {
    await parent.close().catch(() => undefined);
    throw err;
  }
}
