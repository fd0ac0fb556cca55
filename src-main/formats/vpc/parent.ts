/**
 * A differencing VHD's parent: the names its parent locators give (W2ru relative and W2ku absolute Windows
 * paths in UTF-16LE, the deprecated Wi2r/Wi2k, MacX file URLs) and the parent's file name in the header, turned
 * into paths this system can open and tried in that order through the backing-path policy; and what a child
 * records of a parent (its unique id, its modification time, its names) when it is made or rebased.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { resolveBackingPath } from '../../block/backing-path';
import { DiskError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BackingPolicy } from '../../block/types';
import type { DynamicLayout } from './image';
import { readVpcLayout } from './image';
import {
  decodeLocatorData,
  LOCATOR_MACX,
  LOCATOR_W2KU,
  LOCATOR_W2RU,
  LOCATOR_WI2K,
  LOCATOR_WI2R,
  locatorSpaceBytes,
  platformName,
  vhdTime,
} from './layout';

/** Locator data longer than this is not a path (Windows paths stop at 32767 UTF-16 units). */
const MAX_LOCATOR_BYTES = 65536;
/** The order locators are tried in: relative names first, so a moved pair of files still opens. */
const ORDER = [LOCATOR_W2RU, LOCATOR_WI2R, LOCATOR_W2KU, LOCATOR_WI2K, LOCATOR_MACX];

export interface LocatorText {
  code: string;
  text: string;
}

/** The text of each parent locator with data, in the header's order; a locator pointing outside the file is skipped. */
export async function readLocatorTexts(file: ImageFile, dyn: DynamicLayout): Promise<LocatorText[]> {
  const out: LocatorText[] = [];
  for (const l of dyn.header.locators) {
    if (l.platformCode === 0 || l.dataLength === 0) continue;
    const len = Math.min(l.dataLength, Math.max(locatorSpaceBytes(l), l.dataLength), MAX_LOCATOR_BYTES);
    if (!Number.isSafeInteger(l.dataOffset + len) || l.dataOffset + len > file.size) continue;
    const data = await file.readBlock(l.dataOffset, len, 'VHD parent locator');
    out.push({ code: platformName(l.platformCode), text: decodeLocatorData(l.platformCode, data) });
  }
  out.sort((a, b) => ORDER.indexOf(codeOf(a.code)) - ORDER.indexOf(codeOf(b.code)));
  return out;
}

const codeOf = (name: string) => ((name.charCodeAt(0) << 24) | (name.charCodeAt(1) << 16) | (name.charCodeAt(2) << 8) | name.charCodeAt(3)) >>> 0;

/** A locator's text as a path here: backslashes become slashes; drive letters and UNC paths cannot be followed. */
function asLocalPath(code: string, text: string): string | undefined {
  if (code === 'MacX') {
    const m = /^file:\/\/(?:localhost)?(\/.*)$/i.exec(text);
    if (!m) return undefined;
    try {
      return decodeURIComponent(m[1]);
    } catch {
      return undefined;
    }
  }
  if (!['W2ru', 'W2ku', 'Wi2r', 'Wi2k'].includes(code)) return undefined;
  if (/^[A-Za-z]:[\\/]/.test(text) || text.startsWith('\\\\')) return undefined;
  return text.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
}

/** The candidate names of the parent, in the order they are tried; the header's parent name (beside the image) last. */
export function parentCandidates(locators: LocatorText[], parentName: string): string[] {
  const out: string[] = [];
  for (const l of locators) {
    const p = asLocalPath(l.code, l.text);
    if (p && !out.includes(p)) out.push(p);
  }
  const base = parentName.replace(/\\/g, '/').split('/').pop();
  if (base && !out.includes(base)) out.push(base);
  return out;
}

/** The name `info` shows as the backing file: the first candidate that exists, else the first one. */
export function parentDisplayName(imagePath: string, candidates: string[]): string | undefined {
  const dir = nodePath.dirname(nodePath.resolve(imagePath));
  return candidates.find((n) => existsSync(nodePath.resolve(dir, n))) ?? candidates[0];
}

/** The parent's path under `policy`: the first candidate that exists; a refusal or no parent at all is a plain error. */
export function resolveParent(imagePath: string, candidates: string[], policy: BackingPolicy): string {
  const dir = nodePath.dirname(nodePath.resolve(imagePath));
  let refusal: DiskError | undefined;
  for (const name of candidates) {
    if (!existsSync(nodePath.resolve(dir, name))) continue;
    try {
      return resolveBackingPath(imagePath, name, policy);
    } catch (err) {
      if (err instanceof DiskError && err.code === 'EOUTSIDE') refusal ??= err;
      else throw err;
    }
  }
  if (refusal) throw refusal;
  throw new DiskError('ENOENT', `${imagePath}: its parent VHD was not found (the image names ${candidates.length ? candidates.join(', ') : 'no file'})`, imagePath);
}

/** What a child records of its parent. */
export interface ParentFacts {
  uuid: string;
  /** The parent file's modification time, in VHD time (seconds since 2000). */
  timestamp: number;
  virtualSize: number;
  /** The parent's file name (the header's parent name field). */
  name: string;
  /** Relative to the child's folder, with Windows separators (".\\base.vhd"), for the W2ru locator. */
  relative: string;
  /** The absolute path, for the W2ku locator. */
  absolute: string;
}

/** Reads the parent VHD at `full` (absolute) for a child in `childDir`. */
export async function parentFacts(childDir: string, full: string): Promise<ParentFacts> {
  let file: ImageFile;
  try {
    file = await ImageFile.open(full, false);
  } catch (err) {
    throw toDiskError(err, full);
  }
  try {
    const l = await readVpcLayout(file).catch((err) => {
      const e = toDiskError(err, full);
      throw new DiskError(e.code === 'EINVAL' ? 'EUNSUPPORTED' : e.code, `a differencing VHD needs a VHD parent: ${e.message}`, full);
    });
    const st = await fsp.stat(full);
    let rel = nodePath.relative(childDir, full).split(nodePath.sep).join('\\');
    if (!rel.startsWith('..')) rel = `.\\${rel}`;
    return { uuid: l.footer.uuid, timestamp: vhdTime(st.mtimeMs / 1000), virtualSize: l.virtualSize, name: nodePath.basename(full), relative: rel, absolute: full };
  } finally {
    await file.close();
  }
}
