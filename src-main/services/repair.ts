/**
 * Repair that leaves the image as it was when it fails or is cancelled: the copy-then-swap of copy-swap.ts, the
 * work on the copy being the format's check with repair. "Keep a copy" then costs nothing more: the old file is
 * kept under a second name (a hard link) before the rename.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import type { CheckReport, RepairResult } from '../../src-shared/api';
import { DiskError } from '../block/errors';
import type { BackingPolicy } from '../block/types';
import { imageEntry, resolveDriver } from '../registry';
import { beforeCopyName, workOnCopy } from './copy-swap';

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
  /** Where the check may follow extents, parents and backing files (the app: its grants). */
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  /** phase 'copy' (bytes) while the working copy is made, then 'repair' (the format's own unit). */
  onProgress?: (phase: 'copy' | 'repair', done: number, total: number) => void;
}

/** "disk.qcow2" → "disk.before-repair-2026-12-01-145500.qcow2", beside it. */
export function keptCopyName(path: string, now = new Date()): string {
  return beforeCopyName(path, 'repair', now);
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
  const done = await workOnCopy({
    path,
    shownPath: req.path,
    target,
    keepCopy: req.keepCopy,
    keptLabel: 'repair',
    signal: req.signal,
    onCopyProgress: (d, t) => req.onProgress?.('copy', d, t),
    work: (tmp) => {
      // The phase starts (and shows) even for a format whose check reports no finer progress.
      req.onProgress?.('repair', 0, 1);
      return driver.check!(tmp, req.mode, { backingPolicy: req.backingPolicy, signal: req.signal, onProgress: (d, t) => req.onProgress?.('repair', d, t) });
    },
    // The image cannot be replaced (chattr +i, a read-only folder or medium): say it is writing that is refused.
    renameRefused: (err) => (target === undefined && (err.code === 'EPERM' || err.code === 'EACCES' || err.code === 'EROFS') ? notWritable(req.path) : undefined),
  });
  const removed = done.removedTemporaries;
  return {
    report: aboutImage(done.value, done.tmp, target ?? req.path),
    ...(done.keptCopy ? { keptCopy: done.keptCopy } : {}),
    ...(removed.length ? { removedTemporaries: removed } : {}),
  };
}
