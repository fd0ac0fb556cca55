/**
 * A format's check result in qemu-img check's terms: what every driver counted (CheckCounts) turned into the
 * one CheckReport the services and faces show, so that every format reports the same fields the same way.
 */
import type { CheckProblem, CheckReport, FormatName } from './types';

/** What a format's check counted, in qemu-img check's terms. */
export interface CheckCounts {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset?: number;
  totalClusters?: number;
  allocatedClusters?: number;
  fragmentedClusters?: number;
  compressedClusters?: number;
}

/** A CheckReport with qemu-img check's JSON keys; the cluster figures are left out when zero, as qemu-img leaves them out. */
export function checkReport(path: string, format: FormatName, c: CheckCounts, problems: CheckProblem[]): CheckReport {
  const report: CheckReport = {
    filename: path,
    format,
    'check-errors': c.checkErrors,
    corruptions: c.corruptions,
    leaks: c.leaks,
    'corruptions-fixed': c.corruptionsFixed,
    'leaks-fixed': c.leaksFixed,
    problems,
  };
  if (c.imageEndOffset) report['image-end-offset'] = c.imageEndOffset;
  if (c.totalClusters) report['total-clusters'] = c.totalClusters;
  if (c.allocatedClusters) report['allocated-clusters'] = c.allocatedClusters;
  if (c.fragmentedClusters) report['fragmented-clusters'] = c.fragmentedClusters;
  if (c.compressedClusters) report['compressed-clusters'] = c.compressedClusters;
  return report;
}
