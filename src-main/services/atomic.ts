/**
 * New files written beside their target and renamed into place only when complete: a cancelled, failed or killed
 * create or convert leaves no half-written image. Also the clean-up of temporaries a killed job left behind.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { DiskError, toDiskError } from '../block/errors';
import { isLockedByOthers, lockingAvailable } from '../block/lock';
import type { CreatedFiles } from '../block/types';
import { randomBytesQuick } from '../block/random';

/** A name beside the target (same folder, so the final rename is atomic) for the file while it is written. */
export function tempPathFor(target: string): string {
  const dir = nodePath.dirname(target);
  return nodePath.join(dir, `.${nodePath.basename(target)}.diskwright-${randomBytesQuick(4).toString('hex')}.tmp`);
}

/**
 * The stem every file of the temporary `tmp` (from tempPathFor) starts with: `.NAME.diskwright-TOKEN.`, which
 * names the image itself (`….tmp`), the files written beside it (`….EXTRA.tmp`, see temporaryOf) and, for a
 * bundle folder, what it holds.
 */
export function temporaryStem(tmp: string): string {
  return tmp.slice(0, -'tmp'.length);
}

/** How long a temporary file must have been left alone to count as stale where locks cannot tell. */
const STALE_AFTER_MS = 10 * 60 * 1000;

/**
 * What a temporary name beside the target holds, or undefined for any other name. The image itself is written
 * as `.NAME.diskwright-TOKEN.tmp`; files written beside it by the same job (VMDK extents, the VMDK descriptor
 * rewritten with a new CID) as `.NAME.diskwright-TOKEN.EXTRA.tmp`, EXTRA being the name the file gets once the
 * image is complete (formats/vmdk/create.ts follows this pattern: formats cannot import this module).
 */
function temporaryOf(name: string, base: string): { token: string; extra?: string } | undefined {
  const prefix = `.${base}.diskwright-`;
  if (!name.startsWith(prefix)) return undefined;
  const m = /^([0-9a-f]{8})(?:\.(.+))?\.tmp$/.exec(name.slice(prefix.length));
  if (!m) return undefined;
  return m[2] === undefined ? { token: m[1] } : { token: m[1], extra: m[2] };
}

/**
 * Removes what an earlier, killed convert or create to the same target left behind: its hidden temporary
 * files (`.NAME.diskwright-XXXXXXXX.tmp` beside the target, and the `.NAME.diskwright-XXXXXXXX.EXTRA.tmp` files
 * written with it). One still being written by a live diskwright holds its write lock and is left alone (where
 * locks are unavailable: one touched in the last ten minutes), and so are the extra files of an image still
 * being written. A job killed between giving its extra files their final names and renaming its image into
 * place leaves those final names behind too, as hard links of its temporaries: a file of such a name is removed
 * when it is the very same file (device and inode) as a stale temporary of an image that never reached its place.
 * Returns the paths removed, for the caller to mention.
 */
export async function removeStaleTemporaries(target: string): Promise<string[]> {
  const dir = nodePath.dirname(nodePath.resolve(target));
  const base = nodePath.basename(target);
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const images = new Map<string, boolean>(); // token -> the image temporary is stale
  const extras: Array<{ name: string; token: string; extra: string }> = [];
  for (const name of names) {
    const t = temporaryOf(name, base);
    if (!t) continue;
    if (t.extra === undefined) images.set(t.token, !(await stillWritten(nodePath.join(dir, name))));
    else extras.push({ name, token: t.token, extra: t.extra });
  }
  // Decided before anything is removed: an extra is judged by its image temporary as it is now.
  const doomed: string[] = [];
  for (const [token, stale] of images) if (stale) doomed.push(nodePath.join(dir, `.${base}.diskwright-${token}.tmp`));
  for (const e of extras) {
    const path = nodePath.join(dir, e.name);
    const image = images.get(e.token);
    if (image === false || (await stillWritten(path))) continue;
    if (image === true && !e.extra.includes('/') && e.extra !== base && (await sameFile(path, nodePath.join(dir, e.extra)))) doomed.push(nodePath.join(dir, e.extra));
    doomed.push(path);
  }
  const removed: string[] = [];
  for (const path of doomed) {
    // A temporary may be a folder: a Parallels .hdd bundle being written (stillWritten looked at every file in it).
    await fsp.rm(path, { force: true, recursive: true }).then(
      () => removed.push(path),
      () => undefined,
    );
  }
  return removed;
}

/** True when both paths name the same file (a hard link of it): neither is a link to follow. */
async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([fsp.lstat(a).catch(() => undefined), fsp.lstat(b).catch(() => undefined)]);
  return x !== undefined && y !== undefined && x.isFile() && y.isFile() && x.dev === y.dev && x.ino === y.ino;
}

async function stillWritten(path: string): Promise<boolean> {
  const st = await fsp.lstat(path).catch(() => undefined);
  if (st?.isDirectory()) return folderStillWritten(path);
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

/**
 * A temporary folder (a bundle a killed convert was writing) is stale when every entry is a regular file that
 * no live writer holds. Anything else in it (a folder, a link) means it is not what we write: it stays.
 */
async function folderStillWritten(dir: string): Promise<boolean> {
  const names = await fsp.readdir(dir).catch(() => undefined);
  if (names === undefined) return true;
  for (const name of names) {
    const path = nodePath.join(dir, name);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (!st?.isFile() || (await stillWritten(path))) return true;
  }
  // An empty one may be a live job's that has not made its first file yet: only an old one goes.
  if (names.length === 0) {
    const st = await fsp.stat(dir).catch(() => undefined);
    return st === undefined || Date.now() - st.mtimeMs < STALE_AFTER_MS;
  }
  return false;
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
 * The files a create wrote beside its image (VMDK extents) under hidden temporary names, which the image names
 * while it is written. Once the image is complete and flushed, place() makes the image name their final names
 * and gives each its final name as a hard link, just before the image itself is renamed into place; settle()
 * then drops the temporary names. A link never replaces a file: a file of a final name made by someone else
 * meanwhile fails the job instead. Where the file system has no hard links, the file is renamed after a check
 * that the name is free (a crash right then leaves a final name that cannot be proved ours, so it stays).
 */
export class ExtraFiles {
  /** Final names this job made, removed by discard(). */
  private readonly placed: string[] = [];
  constructor(private readonly made?: CreatedFiles) {}

  /** The final paths of the files, in order. */
  get finals(): string[] {
    return this.made ? this.made.extraFiles.map((f) => f.final) : [];
  }

  async place(): Promise<void> {
    if (!this.made || this.made.extraFiles.length === 0) return;
    await this.made.nameFinal();
    for (const { temp, final } of this.made.extraFiles) {
      await linkNew(temp, final);
      this.placed.push(final);
    }
  }

  /** After the image's rename: the temporary names go (the files live on under their final names). */
  async settle(): Promise<void> {
    for (const { temp } of this.made?.extraFiles ?? []) await fsp.rm(temp, { force: true }).catch(() => undefined);
    this.placed.length = 0;
  }

  /** The job failed: every name it made goes, and only those. */
  async discard(): Promise<void> {
    for (const f of this.placed.splice(0)) await fsp.rm(f, { force: true }).catch(() => undefined);
    for (const { temp } of this.made?.extraFiles ?? []) await fsp.rm(temp, { force: true }).catch(() => undefined);
  }
}

async function linkNew(temp: string, final: string): Promise<void> {
  const taken = () => new DiskError('EEXIST', `${final}: a file of this name appeared while the new image was written; it was left as it is and the new image was not made`, final);
  try {
    await fsp.link(temp, final);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (await sameFile(temp, final)) return;
      throw taken();
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw toDiskError(err, final);
  }
  if (await fsp.lstat(final).then(() => true, () => false)) throw taken();
  await fsp.rename(temp, final).catch((err) => {
    throw toDiskError(err, final);
  });
}

/**
 * Writes a new file beside the target and renames it into place when `write` succeeds; on failure or cancel
 * the partial file is removed and the target is untouched. What an earlier, killed job to the same target left
 * behind goes first. Files written beside the new file (`extrasOf` its result) get their final names just
 * before the rename, and are removed on failure.
 */
export async function writeAtomically<T>(target: string, write: (tmpPath: string) => Promise<T>, extrasOf?: (result: T) => ExtraFiles): Promise<T> {
  await checkTarget(target);
  await removeStaleTemporaries(target);
  const tmp = tempPathFor(target);
  let extras: ExtraFiles | undefined;
  try {
    const result = await write(tmp);
    extras = extrasOf?.(result);
    await extras?.place();
    await fsp.rename(tmp, target).catch((err) => { throw toDiskError(err, target); });
    await extras?.settle();
    return result;
  } catch (err) {
    // The temporary may be a folder (a Parallels .hdd bundle); files written beside it go too.
    await fsp.rm(tmp, { force: true, recursive: true }).catch(() => undefined);
    await extras?.discard();
    throw aboutTarget(err, tmp, target);
  }
}
