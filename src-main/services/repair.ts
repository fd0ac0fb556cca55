/**
 * Repair that leaves the image as it was when it fails or is cancelled: the image is copied beside itself
 * (reflinked where the file system can, else a sparse copy that skips holes and zero runs), the copy is
 * repaired, and only a finished repair is renamed over the image. "Keep a copy" then costs nothing more: the
 * old file is kept under a second name (a hard link) before the rename.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import type { CheckReport, RepairResult } from '../../src-shared/api';
import { isZeroRange } from '../block/bytes';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import { ImageFile } from '../block/file';
import { nativeFileOps } from '../block/native';
import { imageEntry, resolveDriver } from '../registry';
import { removeStaleTemporaries, tempPathFor } from './atomic';

export interface RepairRequest {
  path: string;
  format?: string;
  mode: 'leaks' | 'all';
  keepCopy: boolean;
  /**
   * Where the repaired image goes instead of over the image (which is then only read): for an image that cannot
   * be written (write-protected, read-only media). A new file; the image is left as it is.
   */
  target?: string;
  signal?: AbortSignal;
  /** phase 'copy' (bytes) while the working copy is made, then 'repair' (the format's own unit). */
  onProgress?: (phase: 'copy' | 'repair', done: number, total: number) => void;
}

const CHUNK = 1 << 20;

/** "disk.qcow2" → "disk.before-repair-2026-12-01-1455.qcow2", beside it. */
export function keptCopyName(path: string, now = new Date()): string {
  const ext = nodePath.extname(path);
  const stem = nodePath.basename(path, ext);
  const p2 = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}-${p2(now.getMonth() + 1)}-${p2(now.getDate())}-${p2(now.getHours())}${p2(now.getMinutes())}${p2(now.getSeconds())}`;
  return nodePath.join(nodePath.dirname(path), `${stem}.before-repair-${stamp}${ext}`);
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
        for (let at = 0; at <= n; at += 4096) {
          const zero = at === n || isZeroRange(buf, at, Math.min(n, at + 4096));
          if (!zero && run < 0) run = at;
          if (zero && run >= 0) {
            await to.write(buf, run, Math.min(at, n) - run, pos + run);
            run = -1;
          }
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

/** The report speaks of the image, not of the working copy it was made on. */
function aboutImage(report: CheckReport, tmp: string, path: string): CheckReport {
  return {
    ...report,
    filename: path,
    problems: report.problems.map((p) => ({ ...p, message: p.message.split(tmp).join(path) })),
  };
}

/** Writing the image is refused though reading it is not. */
function notWritable(path: string): DiskError {
  return new DiskError('EACCES', `${path}: the image can be read but not written (write-protected, or on read-only media); the repaired image can be saved as a new file instead`, path);
}

/** Repairs the image at req.path (see the file's comment for how it stays safe). */
export async function repairImage(req: RepairRequest): Promise<RepairResult> {
  const path = await imageEntry(req.path);
  const driver = await resolveDriver(path, req.format);
  if (!driver.check) throw new DiskError('EUNSUPPORTED', `This image format (${driver.name}) does not support checks`, req.path);
  if (await driver.spansFiles?.(path)) {
    throw new DiskError('EUNSUPPORTED', `${req.path}: a ${driver.label} image can span several files; repair it in place with diskwright check -r ${req.mode}`, req.path);
  }
  const target = req.target === undefined ? undefined : nodePath.resolve(req.target);
  if (target !== undefined && target === path) throw new DiskError('EINVAL', `${req.path}: the repaired copy must go to a new file, not over the image`, req.path);
  if (target === undefined) {
    await fsp.access(path, fsc.W_OK).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EPERM' || err.code === 'EACCES' || err.code === 'EROFS') throw notWritable(req.path);
    });
  }
  // Working copies a killed repair left beside the image (or its new file) go first (one a live repair holds is
  // left alone).
  const removed = await removeStaleTemporaries(target ?? path);
  const tmp = tempPathFor(target ?? path);
  let kept: string | undefined;
  // The working copy is held by its write lock from the moment it exists, so that the clean-up above, run by
  // another job, tells it from a dead one's.
  let holder: ImageFile | undefined;
  try {
    holder = await ImageFile.create(tmp);
    holder = await copyImage(path, tmp, holder, req.signal, (d, t) => req.onProgress?.('copy', d, t));
    // The phase starts (and shows) even for a format whose check reports no finer progress.
    req.onProgress?.('repair', 0, 1);
    const report = await driver.check(tmp, req.mode, { signal: req.signal, onProgress: (d, t) => req.onProgress?.('repair', d, t) });
    throwIfAborted(req.signal);
    const fh = await fsp.open(tmp, 'r+');
    await fh.sync().finally(() => fh.close());
    if (target !== undefined) {
      await fsp.rename(tmp, target);
      return { report: aboutImage(report, tmp, target), ...(removed.length ? { removedTemporaries: removed } : {}) };
    }
    if (req.keepCopy) {
      kept = keptCopyName(path);
      await fsp.link(path, kept);
    }
    await fsp.rename(tmp, path).catch((err: NodeJS.ErrnoException) => {
      // The image cannot be replaced (chattr +i, a read-only folder or medium): say it is writing that is refused.
      if (err.code === 'EPERM' || err.code === 'EACCES' || err.code === 'EROFS') throw notWritable(req.path);
      throw err;
    });
    return { report: aboutImage(report, tmp, req.path), ...(kept ? { keptCopy: kept } : {}), ...(removed.length ? { removedTemporaries: removed } : {}) };
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (kept) await fsp.rm(kept, { force: true }).catch(() => undefined);
    const e = toDiskError(err, req.path);
    throw e.message.includes(tmp) ? new DiskError(e.code, e.message.split(tmp).join(path), req.path) : e;
  } finally {
    await holder?.close();
  }
}
