/**
 * A COW file's backing file: where it is (the recorded name, or one the user names instead, as `uml_moo -b`
 * does for a COW file made inside a chroot), and whether it is still the file the COW file was made over.
 * UML records the backing file's size and mtime and refuses to boot when either changed, since the sectors
 * the COW file does not hold would then read someone else's data; acceptBackingChange records the new
 * facts when the user says the change is harmless.
 */
import { promises as fsp } from 'node:fs';
import { overridePath, resolveBackingPath } from '../../block/backing-path';
import { corrupt, DiskError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BackingPolicy, OpenOptions } from '../../block/types';
import { markAccepts, withCommitMark, type CommitMark } from './commit-mark';
import { cowSizes, MAX_HEADER_SIZE, parseHeader, patchBackingFacts, type CowHeader } from './layout';

/**
 * What the caller may say about a COW file's backing file (OpenOptions' fields): accept a size or mtime that
 * differ from the recorded ones (UML would refuse), or name the backing file to use instead of the recorded
 * name (`uml_moo -b`; relative to the current folder).
 */
export type CowOpenOptions = Pick<OpenOptions, 'acceptChangedBacking' | 'backingOverride'>;

/** The size and whole-second mtime of a file, as UML compares them. */
export interface BackingFacts {
  size: number;
  mtime: number;
}

/**
 * Reads the COW header of an open file and checks that its bitmap lies inside the file (uml_mkcow makes the
 * file data_offset + size long) and its data addresses fit a number: a damaged size fails here, not later.
 */
export async function readCowHeader(file: ImageFile): Promise<{ head: Uint8Array; header: CowHeader }> {
  const path = file.path;
  const head = await file.readBlock(0, Math.min(MAX_HEADER_SIZE, file.size), 'COW header');
  const h = parseHeader(head, path, file.size);
  const { bitmapOffset, bitmapLength } = cowSizes(h.layout, h.size, h.sectorSize, h.alignment);
  if (!Number.isSafeInteger(h.dataOffset + h.size)) throw corrupt(`${path}: its size (${h.size}) is impossibly large`, path);
  if (bitmapOffset + bitmapLength > file.size) {
    throw corrupt(`${path}: its bitmap (${bitmapLength} bytes at offset ${bitmapOffset}, for a ${h.size}-byte disk) lies past the end of the file (${file.size} bytes)`, path);
  }
  return { head, header: h };
}

/**
 * The absolute path of the backing file to open, or undefined when there is none to follow (no name, or the
 * policy is 'none'). A name the user gave (override) is theirs to choose, so the folder policy does not apply.
 */
export function locateBacking(path: string, h: CowHeader, policy: BackingPolicy, override?: string): string | undefined {
  if (policy === 'none') return undefined;
  if (override !== undefined) return overridePath(override, policy);
  if (h.backingFile === '') return undefined;
  return resolveBackingPath(path, h.backingFile, policy);
}

/** Size and mtime of the file at `full`; a plain DiskError when it is missing or not a file. */
export async function backingFacts(cowPath: string, full: string): Promise<BackingFacts> {
  let st;
  try {
    st = await fsp.stat(full, { bigint: true });
  } catch (err) {
    const e = toDiskError(err, full);
    if (e.code === 'ENOENT') throw new DiskError('ENOENT', `${cowPath}: its backing file ${full} does not exist`, full);
    throw e;
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('EINVAL', `${cowPath}: its backing file ${full} is not a file`, full);
  // The header keeps 32 bits of whole seconds (UML's time32_t).
  return { size: Number(st.size), mtime: Number((st.mtimeNs / 1_000_000_000n) & 0xffffffffn) };
}

const when = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');

/** A sentence saying how the backing file changed, or undefined when it matches the header. */
export function describeChange(h: CowHeader, now: BackingFacts): string | undefined {
  const parts: string[] = [];
  if (now.size !== h.size) parts.push(`its size is ${now.size} bytes, not the recorded ${h.size}`);
  if (now.mtime !== h.mtime) parts.push(`it was modified at ${when(now.mtime)}, not at the recorded ${when(h.mtime)}`);
  return parts.length ? parts.join(' and ') : undefined;
}

/**
 * Refuses a backing file that changed since the COW file was made, unless the caller accepts it. While a commit
 * into the backing file runs (`mark`: commit-mark.ts), its mtime from before the commit or from the commit's
 * writes is accepted too; its size must still be the recorded one.
 */
export async function verifyBacking(cowPath: string, h: CowHeader, full: string, accept: boolean, mark?: CommitMark): Promise<void> {
  const now = await backingFacts(cowPath, full);
  const change = describeChange(h, now);
  if (change === undefined || accept) return;
  if (mark && now.size === h.size && markAccepts(mark, now.mtime)) return;
  throw new DiskError(
    'EBACKINGCHANGED',
    `${cowPath}: its backing file ${full} changed since the COW file was made (${change}); UML refuses such a pair. Accept the change only if the backing file still holds what the COW file was made over`,
    cowPath,
  );
}

/**
 * Records the backing file's current size and mtime in the COW header (the driver side of "accept the changed
 * base"), so that UML and uml_moo take the pair again. `backingOverride` names the actual backing file, as
 * `uml_moo -b`; the recorded name is kept. A new size is refused when it would move the bitmap or the data.
 * Returns the facts before and after.
 */
export async function acceptBackingChange(cowPath: string, opts: { backingOverride?: string } = {}): Promise<{ before: BackingFacts; after: BackingFacts }> {
  const file = await ImageFile.open(cowPath, true);
  try {
    const { head, header: h } = await readCowHeader(file);
    const full = locateBacking(cowPath, h, 'anywhere', opts.backingOverride);
    if (full === undefined) throw new DiskError('EINVAL', `${cowPath}: the COW file names no backing file`, cowPath);
    const now = await backingFacts(cowPath, full);
    const before = { size: h.size, mtime: h.mtime };
    if (now.size !== h.size) {
      const a = cowSizes(h.layout, h.size, h.sectorSize, h.alignment);
      const b = cowSizes(h.layout, now.size, h.sectorSize, h.alignment);
      if (a.dataOffset !== b.dataOffset || a.bitmapOffset !== b.bitmapOffset) {
        throw new DiskError('EUNSUPPORTED', `${cowPath}: the backing file's new size (${now.size} bytes) would move the COW file's data; make a new COW file instead`, cowPath);
      }
    }
    // The facts recorded now are the whole truth: a commit's mark (commit-mark.ts) goes with them.
    await file.write(0, withCommitMark(patchBackingFacts(head, h, now.mtime, now.size), h, undefined));
    await file.sync();
    return { before, after: now };
  } catch (err) {
    throw toDiskError(err, cowPath);
  } finally {
    await file.close();
  }
}
