/** How a partition is shown on the bar, over the map and in the card: its colour, and its one-line label. */
import type { DiskLayout, InsidePartition } from '../../../src-shared/api';
import { formatBytes, formatPercent } from '../../text';
import { partitionTypeName } from './partitionTypes';

/** Partition hues (tokens.css --partition-1…8): apart from the map's own colours, so an outline never reads as a map kind. */
const HUES = Array.from({ length: 8 }, (_, i) => `var(--partition-${i + 1})`);

/** The partitions that hold space of their own (an MBR extended partition only holds the logical ones). */
export function volumes(layout: DiskLayout): InsidePartition[] {
  return layout.partitions.filter((p) => p.kind !== 'extended');
}

export function hueOf(layout: DiskLayout, p: InsidePartition): string {
  return HUES[Math.max(0, volumes(layout).indexOf(p)) % HUES.length];
}

/** The share of the file system in use, or undefined where its file system does not say. */
export function usedShare(p: InsidePartition): number | undefined {
  const fs = p.filesystem;
  if (!fs || fs.used === undefined || !(fs.size > 0)) return undefined;
  return Math.min(1, Math.max(0, fs.used / fs.size));
}

/** "ext4 · 42.0% used" / "no file system". */
export function fsSummary(p: InsidePartition): string {
  const fs = p.filesystem;
  if (!fs) return 'no file system';
  const share = usedShare(p);
  const type = fs.type === 'unknown' ? 'unknown file system' : fs.type;
  return share === undefined ? type : `${type} · ${formatPercent(share)} used`;
}

/** "Partition 2 (Linux filesystem, 48 MiB): ext4 · 42.0% used": the bar segment's title and accessible name. */
export function describePartition(layout: DiskLayout, p: InsidePartition): string {
  const type = partitionTypeName(layout.table, p.type) ?? p.type;
  const what = p.number === 0 ? 'The whole disk' : `Partition ${p.number}`;
  return `${what} (${[type, p.name, formatBytes(p.size)].filter(Boolean).join(', ')}): ${fsSummary(p)}`;
}
