import { DiskError } from '../block/errors';
import { resolveDriver } from '../block/registry';
import type { CheckReport } from '../block/types';

export interface CheckRequest {
  path: string;
  format?: string;
  repair?: 'leaks' | 'all';
  signal?: AbortSignal;
}

/** Checks (and optionally repairs) an image's metadata. Without repair the file is opened read-only. */
export async function checkImage(req: CheckRequest): Promise<CheckReport> {
  const driver = await resolveDriver(req.path, req.format);
  if (!driver.check) throw new DiskError('EUNSUPPORTED', `This image format (${driver.name}) does not support checks`, req.path);
  return driver.check(req.path, req.repair ?? 'none', req.signal);
}

/** qemu-img check's exit codes: 0 clean, 2 corruptions, 3 leaks only, 1 could not check. */
export function checkExitCode(r: CheckReport): number {
  if (r['check-errors'] > 0) return 1;
  // corruptions and leaks count what is left after a repair, as in qemu-img's JSON.
  if (r.corruptions > 0) return 2;
  if (r.leaks > 0) return 3;
  return 0;
}
