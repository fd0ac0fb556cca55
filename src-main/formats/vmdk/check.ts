/**
 * `check` for VMDK as qemu-img's vmdk check does it: walk the disk grain by grain (a flat extent at once) and
 * stop at the first grain whose data would lie past the end of its extent file ("points after EOF", a
 * corruption: qemu-img exits 1, "Check failed") or whose grain table cannot be read (a check error). qemu has
 * no repair for VMDK; asking for one gives the same "does not support checks" answer (exit 63).
 */
import { SECTOR } from '../../block/bytes';
import { DiskError, throwIfAborted, toDiskError } from '../../block/errors';
import type { CheckOptions, CheckReport } from '../../block/types';
import { FlatExtent, GTE_ZEROED, SparseExtent } from './extent';
import { openVmdk } from './open';

export async function checkVmdk(path: string, repair: 'none' | 'leaks' | 'all', opts: CheckOptions = {}): Promise<CheckReport> {
  if (repair !== 'none') throw new DiskError('EUNSUPPORTED', 'This image format (vmdk) does not support checks (repair)', path);
  const report: CheckReport = {
    filename: path,
    format: 'vmdk',
    'check-errors': 0,
    corruptions: 0,
    leaks: 0,
    'corruptions-fixed': 0,
    'leaks-fixed': 0,
    problems: [],
  };
  // Extents outside the image's folder are followed as the caller's policy says (the CLI: anywhere; the app: its grants).
  const o = await openVmdk(path, false, opts.backingPolicy ?? 'inside-folder');
  try {
    const total = o.extents.reduce((n, e) => n + (e instanceof SparseExtent ? Math.ceil(e.bytes / e.grainBytes) : 1), 0);
    let done = 0;
    let start = 0; // guest sector where the extent starts
    outer: for (const e of o.extents) {
      if (e instanceof FlatExtent) {
        if (e.start >= e.file.size) {
          report.corruptions++;
          report.problems.push({ severity: 'corruption', message: `ERROR: cluster offset for sector ${start} points after EOF` });
          break;
        }
        opts.onProgress?.(++done, total);
      } else if (e instanceof SparseExtent) {
        const grainSectors = e.grainBytes / SECTOR;
        const grains = Math.ceil(e.bytes / e.grainBytes);
        for (let g = 0; g < grains; g++) {
          if (g % 4096 === 0) throwIfAborted(opts.signal);
          const sector = start + g * grainSectors;
          let entry: number;
          try {
            entry = g * e.grainBytes < e.facts.capacity * SECTOR ? await e.entry(g) : 0;
          } catch (err) {
            report['check-errors']++;
            report.problems.push({ severity: 'error', message: `ERROR: could not get cluster_offset for sector ${sector} (${toDiskError(err, path).message})` });
            break outer;
          }
          const zeroed = entry === GTE_ZEROED && e.facts.zeroGrain;
          if (entry !== 0 && !zeroed && entry * SECTOR >= e.file.size) {
            report.corruptions++;
            report.problems.push({ severity: 'corruption', message: `ERROR: cluster offset for sector ${sector} points after EOF` });
            break outer;
          }
          opts.onProgress?.(++done, total);
        }
      }
      start += e.bytes / SECTOR;
    }
    // qemu-img cannot finish a check that found damage ("Check failed"): exit 1, like a check error.
    if (report.corruptions > 0) report['check-errors']++;
    return report;
  } finally {
    for (const f of o.files) await f.close();
  }
}
