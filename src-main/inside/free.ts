/**
 * The disk's free space, as the file systems themselves mark it, for compaction (issue 23): per partition, the
 * free byte ranges of a browsable file system (ext block bitmaps, FAT free clusters, NTFS $Bitmap), a swap
 * area's pages after its header, and the space no partition covers. A file system not cleanly unmounted or
 * with a journal to replay gives nothing (its bitmaps cannot be trusted), and neither does any file system
 * whose allocation is not read (XFS, Btrfs, LVM, LUKS, unknown): each partition says why.
 */
import { DiskError } from '../block/errors';
import { openFileSystem } from './fs';
import { mergeRanges } from './fs/reader';
import { wholeDisk, type ByteSource } from './source';
import { inspectDisk } from './inspect';
import type { ByteRange, DiskLayout, PartitionInfo } from './types';

export interface PartitionFree {
  number: number;
  /** The file system's type word, or '' for none. */
  type: string;
  /** 'mapped': the ranges come from its allocation map; 'kept': nothing of it is free (see reason). */
  status: 'mapped' | 'kept';
  reason?: string;
  freeBytes: number;
}

export interface DiskFreeMap {
  layout: DiskLayout;
  /** Free byte ranges of the disk (disk offsets), sorted and merged. */
  ranges: ByteRange[];
  partitions: PartitionFree[];
  /** Bytes outside every partition counted free (GPT: inside the usable area; MBR: after the first partition, outside the extended one). */
  unpartitionedBytes: number;
}

const DIRTY = ['not cleanly unmounted', 'journal needs recovery', 'errors detected'];

export async function diskFreeMap(src: ByteSource): Promise<DiskFreeMap> {
  const layout = await inspectDisk(src);
  const disk = wholeDisk(src);
  const ranges: ByteRange[] = [];
  const partitions: PartitionFree[] = [];
  const damaged = layout.findings.some((f) => f.severity === 'error');
  for (const p of layout.partitions) {
    if (p.kind === 'extended') continue;
    const fs = p.filesystem;
    const entry: PartitionFree = { number: p.number, type: fs?.type ?? '', status: 'kept', freeBytes: 0 };
    partitions.push(entry);
    const inside = clip(p, disk.size);
    if (!fs || !inside) {
      entry.reason = 'no file system';
      continue;
    }
    const dirty = fs.flags?.filter((f) => DIRTY.includes(f)) ?? [];
    if (dirty.length) {
      entry.reason = `${dirty.join(', ')}: run fsck in the guest first`;
      continue;
    }
    let free: ByteRange[];
    if (fs.type === 'swap' && fs.blockSize) {
      // A swap area holds nothing across boots: everything after its header page is free.
      free = [{ start: fs.blockSize, length: Math.max(0, Math.min(fs.size, inside) - fs.blockSize) }];
    } else if (fs.browsable) {
      try {
        free = await (await openFileSystem(disk.sub(p.start, inside, `partition ${p.number}`))).freeRanges();
      } catch (err) {
        if (!(err instanceof DiskError)) throw err;
        entry.reason = err.message;
        continue;
      }
    } else {
      entry.reason = fs.type === 'unknown' ? 'unknown file system: copied as it is' : `the allocation of ${fs.type} is not read: copied as it is`;
      continue;
    }
    entry.status = 'mapped';
    for (const r of free) {
      const end = Math.min(r.start + r.length, inside);
      if (end > r.start) {
        ranges.push({ start: p.start + r.start, length: end - r.start });
        entry.freeBytes += end - r.start;
      }
    }
  }
  const gaps = damaged ? [] : unpartitioned(layout);
  const unpartitionedBytes = gaps.reduce((n, r) => n + r.length, 0);
  return { layout, ranges: mergeRanges([...ranges, ...gaps]), partitions, unpartitionedBytes };
}

function clip(p: PartitionInfo, diskSize: number): number | undefined {
  if (p.start >= diskSize) return undefined;
  return Math.min(p.size, diskSize - p.start);
}

/**
 * Space no partition covers. GPT: within the usable sectors (the tables and the backup are kept). MBR: only after
 * the first partition's start (the gap before it often holds a boot loader) and outside the extended partition
 * (its EBRs lie in its gaps). A disk whose table has errors gives none.
 */
function unpartitioned(l: DiskLayout): ByteRange[] {
  if (l.table === null || !l.partitions.length) return [];
  const ss = l.sectorSize;
  const parts = [...l.partitions].sort((a, b) => a.start - b.start);
  let lo: number;
  let hi: number;
  if (l.table === 'gpt') {
    lo = (l.firstUsable ?? 34) * ss;
    hi = ((l.lastUsable ?? Math.floor(l.size / ss) - 34) + 1) * ss;
  } else {
    lo = parts[0].start;
    hi = l.size;
  }
  const out: ByteRange[] = [];
  let pos = lo;
  for (const p of parts) {
    if (p.start > pos) out.push({ start: pos, length: Math.min(p.start, hi) - pos });
    pos = Math.max(pos, p.start + p.size);
  }
  if (hi > pos) out.push({ start: pos, length: hi - pos });
  return out.filter((r) => r.length > 0);
}
