/**
 * "In place, keeping a copy" (the Compact wizard): the image is copied beside itself (a reflink where the file
 * system can, else a sparse copy: services/repair.ts), the copy is compacted in place, and only a finished copy
 * is renamed over the image, the image as it was kept under a second name (a hard link) when asked. A cancel
 * or a failure removes the copy and leaves the image as it was.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { DiskError, throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import { imageEntry, resolveDriver } from '../../registry';
import { tempPathFor } from '../atomic';
import { copyImage } from '../repair';
import { sparsify, type SparsifyReport } from '../sparsify';

/** "disk.qcow2" → "disk.before-compact-2026-12-06-203000.qcow2", beside it. */
export function compactCopyName(path: string, now = new Date()): string {
  const ext = nodePath.extname(path);
  const stem = nodePath.basename(path, ext);
  const p2 = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}-${p2(now.getMonth() + 1)}-${p2(now.getDate())}-${p2(now.getHours())}${p2(now.getMinutes())}${p2(now.getSeconds())}`;
  return nodePath.join(nodePath.dirname(path), `${stem}.before-compact-${stamp}${ext}`);
}

export interface SwapRequest {
  path: string;
  keepCopy: boolean;
  signal?: AbortSignal;
  onProgress?: (phase: 'copy' | 'sparsify', done: number, total: number) => void;
}

export async function compactViaCopy(req: SwapRequest): Promise<SparsifyReport & { keptCopy?: string }> {
  const path = await imageEntry(req.path);
  const driver = await resolveDriver(path);
  if (await driver.spansFiles?.(path)) {
    throw new DiskError('EUNSUPPORTED', `${req.path}: a ${driver.label} image can span several files; compact it into a new image instead`, req.path);
  }
  const before = (await fsp.stat(path)).blocks * 512;
  const tmp = tempPathFor(path);
  let kept: string | undefined;
  // The working copy is held by its write lock from the moment it exists (as a repair's: services/repair.ts),
  // so that another job's clean-up of dead jobs' temporaries tells it from a dead one's.
  let holder: ImageFile | undefined;
  try {
    holder = await ImageFile.create(tmp);
    holder = await copyImage(path, tmp, holder, req.signal, (d, t) => req.onProgress?.('copy', d, t));
    const report = await sparsify({ source: tmp, sourceFormat: driver.name, inPlace: true, backingPolicy: 'inside-folder', signal: req.signal, onProgress: (d, t) => req.onProgress?.('sparsify', d, t) });
    throwIfAborted(req.signal);
    const fh = await fsp.open(tmp, 'r+');
    await fh.sync().finally(() => fh.close());
    if (req.keepCopy) {
      kept = compactCopyName(path);
      await fsp.link(path, kept);
    }
    await fsp.rename(tmp, path);
    return { ...report, source: req.path, sizeBefore: before, ...(kept ? { keptCopy: kept } : {}) };
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (kept) await fsp.rm(kept, { force: true }).catch(() => undefined);
    const e = toDiskError(err, req.path);
    throw e.message.includes(tmp) ? new DiskError(e.code, e.message.split(tmp).join(path), req.path) : e;
  } finally {
    await holder?.close();
  }
}
