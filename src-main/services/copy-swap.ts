/**
 * Copy-then-swap, for the jobs that change an image but must leave it as it was when they fail or are cancelled
 * (Check & Repair's repair, the Compact wizard's "in place, keeping a copy"): working copies a dead job left
 * beside the image are removed first (one a live job holds is left alone), the image is copied beside itself
 * (repair.ts copyImage: a reflink where the file system can, else a sparse copy), held by its write lock from
 * the moment it exists, the work is done on the copy, the copy is synced, and only then renamed over the image
 * (or to a new file). "Keep a copy" costs nothing more: the old file is kept under a second name (a hard link)
 * before the rename. A failure or a cancel removes the copy (and the kept link) and leaves the image as it was;
 * error messages name the image, never the working copy.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { isZeroRange } from '../block/bytes';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import { ImageFile } from '../block/file';
import { nativeFileOps } from '../block/native';
import { removeStaleTemporaries, tempPathFor } from './atomic';

const CHUNK = 1 << 20;

/** "disk.qcow2" → "disk.before-LABEL-2026-12-01-145500.qcow2", beside it. */
export function beforeCopyName(path: string, label: string, now = new Date()): string {
  const ext = nodePath.extname(path);
  const stem = nodePath.basename(path, ext);
  const p2 = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}-${p2(now.getMonth() + 1)}-${p2(now.getDate())}-${p2(now.getHours())}${p2(now.getMinutes())}${p2(now.getSeconds())}`;
  return nodePath.join(nodePath.dirname(path), `${stem}.before-${label}-${stamp}${ext}`);
}

/**
 * Copies `src` into the working file `dst`, which exists (empty) and is held by `holder`'s write lock: a
 * reflink when the file system offers one, else only the data runs. Returns the holder of `dst` afterwards. A
 * reflink makes a new file, so it is made under a name the clean-up of dead jobs' temporaries counts as this
 * job's (`…-TOKEN.clone.tmp`, kept while `dst` is held), locked, and renamed over `dst`.
 */
export async function copyImage(src: string, dst: string, holder: ImageFile, signal: AbortSignal | undefined, onProgress: (done: number, total: number) => void): Promise<ImageFile> {
  const clone = dst.replace(/\.tmp$/, '.clone.tmp');
  try {
    await fsp.copyFile(src, clone, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE_FORCE);
    const held = await ImageFile.open(clone, true);
    try {
      await fsp.rename(clone, dst);
    } catch (err) {
      await held.close();
      throw err;
    }
    await holder.close();
    onProgress(held.size, held.size);
    return held;
  } catch {
    await fsp.rm(clone, { force: true });
  }
  const from = await fsp.open(src, 'r');
  try {
    const { size, mode } = await from.stat();
    const to = await fsp.open(dst, 'r+');
    await to.chmod(mode & 0o777);
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      let pos = 0;
      while (pos < size) {
        throwIfAborted(signal);
        // Holes are skipped without reading them where the native helper can find them.
        if (nativeFileOps) {
          const data = nativeFileOps.seekData(from.fd, pos);
          if (data < 0 || data >= size) break;
          pos = Math.max(pos, Math.floor(data / 4096) * 4096);
        }
        const n = Math.min(CHUNK, size - pos);
        const { bytesRead } = await from.read(buf, 0, n, pos);
        if (bytesRead !== n) throw new DiskError('EIO', `${src}: the file shrank while it was copied`, src);
        // Zero runs stay holes in the copy: an image's unused space reads as zeros either way.
        let run = -1; // start of the current run of non-zero blocks
        // The last step is at n itself, which ends a run still open: a piece whose length is no multiple of
        // 4 KiB (the file's tail: a VHD's footer) must not lose its last part.
        for (let at = 0; ; at = Math.min(n, at + 4096)) {
          const zero = at >= n || isZeroRange(buf, at, Math.min(n, at + 4096));
          if (!zero && run < 0) run = at;
          if (zero && run >= 0) {
            await to.write(buf, run, at - run, pos + run);
            run = -1;
          }
          if (at >= n) break;
        }
        pos += n;
        onProgress(pos, size);
      }
      await to.truncate(size);
      await to.sync();
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
  return holder;
}

export interface CopySwapRequest<T> {
  /** The image's entry file (registry imageEntry). */
  path: string;
  /** How errors name the image (the path as the user gave it). */
  shownPath: string;
  /** Where the finished copy goes instead of over the image (which is then only read): a new file. */
  target?: string;
  /** Keep the image as it was beside it, as beforeCopyName(path, keptLabel). */
  keepCopy: boolean;
  keptLabel: string;
  signal?: AbortSignal;
  onCopyProgress: (done: number, total: number) => void;
  /** The work, done on the working copy at `tmp`. */
  work: (tmp: string) => Promise<T>;
  /** The error to give when the image cannot be replaced (the rename refused), if not the rename's own. */
  renameRefused?: (err: NodeJS.ErrnoException) => DiskError | undefined;
}

export interface CopySwapResult<T> {
  value: T;
  /** The working copy's name (gone now), for reports that must speak of the image instead. */
  tmp: string;
  keptCopy?: string;
  /** Dead jobs' working copies removed first. */
  removedTemporaries: string[];
}

export async function workOnCopy<T>(req: CopySwapRequest<T>): Promise<CopySwapResult<T>> {
  const { path } = req;
  const dest = req.target ?? path;
  const removed = await removeStaleTemporaries(dest);
  const tmp = tempPathFor(dest);
  let kept: string | undefined;
  // The working copy is held by its write lock from the moment it exists, so that another job's clean-up of dead
  // jobs' temporaries (above) tells it from a dead one's.
  let holder: ImageFile | undefined;
  try {
    holder = await ImageFile.create(tmp);
    holder = await copyImage(path, tmp, holder, req.signal, req.onCopyProgress);
    const value = await req.work(tmp);
    throwIfAborted(req.signal);
    const fh = await fsp.open(tmp, 'r+');
    await fh.sync().finally(() => fh.close());
    if (req.target === undefined && req.keepCopy) {
      kept = beforeCopyName(path, req.keptLabel);
      await fsp.link(path, kept);
    }
    await fsp.rename(tmp, dest).catch((err: NodeJS.ErrnoException) => {
      throw req.renameRefused?.(err) ?? err;
    });
    return { value, tmp, ...(kept ? { keptCopy: kept } : {}), removedTemporaries: removed };
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (kept) await fsp.rm(kept, { force: true }).catch(() => undefined);
    const e = toDiskError(err, req.shownPath);
    throw e.message.includes(tmp) ? new DiskError(e.code, e.message.split(tmp).join(path), req.shownPath) : e;
  } finally {
    await holder?.close();
  }
}
