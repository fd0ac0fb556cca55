/**
 * The disk's layout with each partition's file system, and the opening of one volume's files.
 */
import { DiskError } from '../block/errors';
import { identify, openFileSystem } from './fs';
import type { FileSystemReader } from './fs/reader';
import { Window, wholeDisk, type ByteSource } from './source';
import { readTable } from './tables';
import type { DiskLayout, Finding, PartitionInfo } from './types';

/** The number given to the one volume of a disk with no table but a file system at offset 0. */
export const WHOLE_DISK = 0;

export async function inspectDisk(src: ByteSource, opts: { sectorSize?: number } = {}): Promise<DiskLayout> {
  const disk = wholeDisk(src);
  const findings: Finding[] = [];
  const t = await readTable(disk, findings, opts.sectorSize);
  const partitions: PartitionInfo[] = t.partitions;
  let firstBytes: string | undefined;
  if (t.table === null) {
    const fs = await identify(disk);
    if (fs.type !== 'unknown') partitions.push({ number: WHOLE_DISK, start: 0, size: disk.size, type: '', name: 'whole disk', filesystem: fs });
    else {
      firstBytes = fs.firstBytes ?? '';
      findings.push({ severity: 'info', code: 'nothing-recognised', message: `no partition table and no known file system; ${startInWords(firstBytes)}` });
    }
  } else {
    for (const p of partitions) {
      if (p.kind === 'extended') continue;
      const win = partitionWindow(disk, p);
      if (win) p.filesystem = await identify(win);
    }
  }
  const usable = t.firstUsable !== undefined ? { firstUsable: t.firstUsable, lastUsable: t.lastUsable } : {};
  return { table: t.table, sectorSize: t.sectorSize, size: disk.size, ...(t.id ? { id: t.id } : {}), ...usable, partitions, findings, ...(firstBytes !== undefined ? { firstBytes } : {}) };
}

/** The disk's first bytes (hex, space-separated) as a sentence: a start of only zeros in words, not a row of 00s. */
function startInWords(hexBytes: string): string {
  const bytes = hexBytes.split(/\s+/).filter((b) => b !== '');
  if (bytes.length === 0) return 'the disk is empty';
  if (bytes.every((b) => /^0+$/.test(b))) return `the disk's first ${bytes.length} bytes are zeros`;
  return `the disk starts with ${hexBytes}`;
}

/** The bytes of a partition, clipped to the disk (a partition past the end is read as far as the disk goes). */
function partitionWindow(disk: Window, p: PartitionInfo): Window | undefined {
  if (p.start >= disk.size) return undefined;
  return disk.sub(p.start, Math.min(p.size, disk.size - p.start), `partition ${p.number}`);
}

/**
 * Opens the file system of one partition (by number) or, with `number` undefined, the only one there is to
 * open: the whole-disk volume, or the single partition whose file system diskwright reads.
 */
export interface OpenVolume {
  layout: DiskLayout;
  partition: PartitionInfo;
  fs: FileSystemReader;
  /** The partition's bytes, which FileRun.diskOffset counts from. */
  volume: ByteSource;
}

export async function openVolume(src: ByteSource, number?: number): Promise<OpenVolume> {
  const layout = await inspectDisk(src);
  let p: PartitionInfo | undefined;
  if (number !== undefined) {
    p = layout.partitions.find((x) => x.number === number);
    if (!p) throw new DiskError('ENOENT', `there is no partition ${number} (the disk has ${layout.partitions.map((x) => x.number).join(', ') || 'none'})`);
  } else {
    const readable = layout.partitions.filter((x) => x.filesystem?.browsable);
    if (readable.length === 1) p = readable[0];
    else if (readable.length === 0) throw new DiskError('EUNSUPPORTED', 'no partition holds a file system diskwright can read (ext2/3/4, FAT, NTFS)');
    else throw new DiskError('EINVAL', `the disk has several file systems (partitions ${readable.map((x) => x.number).join(', ')}); name one as IMAGE:N:/PATH`);
  }
  const win = partitionWindow(wholeDisk(src), p);
  if (!win) throw new DiskError('ECORRUPT', `partition ${p.number} lies past the end of the disk`);
  return { layout, partition: p, fs: await openFileSystem(win), volume: win };
}
