/**
 * "In place, keeping a copy" (the Compact wizard): the copy-then-swap of services/copy-swap.ts (shared with
 * Check & Repair), the work on the copy being a compaction in place. A cancel or a failure removes the copy and
 * leaves the image as it was.
 */
import { promises as fsp } from 'node:fs';
import { DiskError } from '../../block/errors';
import { imageEntry, resolveDriver } from '../../registry';
import { beforeCopyName, workOnCopy } from '../copy-swap';
import { sparsify, type SparsifyReport } from '../sparsify';

/** "disk.qcow2" → "disk.before-compact-2026-12-06-203000.qcow2", beside it. */
export function compactCopyName(path: string, now = new Date()): string {
  return beforeCopyName(path, 'compact', now);
}

export interface SwapRequest {
  path: string;
  keepCopy: boolean;
  signal?: AbortSignal;
  onProgress?: (phase: 'copy' | 'sparsify', done: number, total: number) => void;
}

/**
 * Why "in place, keeping a copy" refuses an image before the compaction itself could (one copied file cannot
 * hold an image of several files), in words after "cannot compact in place (…)"; undefined when it may run.
 * For the app's preview to offer in place only where this and the compaction's own refusal agree.
 */
export async function copySwapRefusal(shownPath: string): Promise<string | undefined> {
  const path = await imageEntry(shownPath);
  const driver = await resolveDriver(path);
  return (await driver.spansFiles?.(path)) ? `a ${driver.label} image can span several files` : undefined;
}

export async function compactViaCopy(req: SwapRequest): Promise<SparsifyReport & { keptCopy?: string }> {
  const path = await imageEntry(req.path);
  const driver = await resolveDriver(path);
  const refusal = await copySwapRefusal(req.path);
  if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${req.path}: ${refusal}; compact it into a new image instead`, req.path);
  const before = (await fsp.stat(path)).blocks * 512;
  const done = await workOnCopy({
    path,
    shownPath: req.path,
    keepCopy: req.keepCopy,
    keptLabel: 'compact',
    signal: req.signal,
    onCopyProgress: (d, t) => req.onProgress?.('copy', d, t),
    work: (tmp) => sparsify({ source: tmp, sourceFormat: driver.name, inPlace: true, backingPolicy: 'inside-folder', signal: req.signal, onProgress: (d, t) => req.onProgress?.('sparsify', d, t) }),
  });
  return { ...done.value, source: req.path, sizeBefore: before, ...(done.keptCopy ? { keptCopy: done.keptCopy } : {}) };
}
