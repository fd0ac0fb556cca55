/**
 * Check (and repair in place): the format's own check, as `qemu-img check [-r leaks|all]`, and qemu-img's exit
 * codes. The app's repair goes through repair.ts instead, which mends a copy.
 */
import { DiskError } from '../block/errors';
import { imageEntry, resolveDriver } from '../registry';
import type { BackingPolicy, CheckReport } from '../block/types';

export interface CheckRequest {
  path: string;
  format?: string;
  repair?: 'leaks' | 'all';
  /** Where the check may follow extents, parents and backing files (the CLI: anywhere, as qemu-img; the app: its grants). */
  backingPolicy?: BackingPolicy;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** Checks (and optionally repairs) an image's metadata. Without repair the file is opened read-only. */
export async function checkImage(req: CheckRequest): Promise<CheckReport> {
  const path = await imageEntry(req.path);
  const driver = await resolveDriver(path, req.format);
  if (!driver.check) throw new DiskError('EUNSUPPORTED', `This image format (${driver.name}) does not support checks`, req.path);
  return driver.check(path, req.repair ?? 'none', { backingPolicy: req.backingPolicy, signal: req.signal, onProgress: req.onProgress });
}

/** qemu-img check's exit codes: 0 clean, 2 corruptions, 3 leaks only, 1 could not check. */
export function checkExitCode(r: CheckReport): number {
  if (r['check-errors'] > 0) return 1;
  // corruptions and leaks count what is left after a repair, as in qemu-img's JSON.
  if (r.corruptions > 0) return 2;
  if (r.leaks > 0) return 3;
  return 0;
}
