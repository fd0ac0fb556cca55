/**
 * The one reader of the snapshot table, for info (driver.ts), snapshots (snapshot.ts) and check: one size
 * limit (MAX_SNAPSHOT_TABLE_BYTES), and never more than the file holds past the table's offset.
 */
import { corrupt } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { MAX_SNAPSHOT_TABLE_BYTES, parseSnapshotTable, type Qcow2Layout, type SnapshotEntry } from './layout';

export interface SnapshotTable {
  entries: SnapshotEntry[];
  /** Bytes the table takes in the file (each entry padded to 8 bytes). */
  byteLength: number;
}

/**
 * Reads and decodes the snapshot table. `forCheck`: an entry's unaligned L1 table or one past the end of the
 * file is left for the check to report (as qemu's check does) instead of refused here.
 */
export async function readSnapshotTable(file: ImageFile, layout: Qcow2Layout, forCheck = false): Promise<SnapshotTable> {
  const h = layout.header;
  if (h.nbSnapshots === 0) return { entries: [], byteLength: 0 };
  if (h.snapshotsOffset >= file.size) throw corrupt(`${file.path}: the snapshot table lies past the end of the file`, file.path);
  const len = Math.min(file.size - h.snapshotsOffset, MAX_SNAPSHOT_TABLE_BYTES);
  const buf = await file.readBlock(h.snapshotsOffset, len, 'snapshot table');
  return forCheck
    ? parseSnapshotTable(buf, h.nbSnapshots, file.path, 1, Number.MAX_SAFE_INTEGER)
    : parseSnapshotTable(buf, h.nbSnapshots, file.path, layout.clusterSize, file.size);
}
