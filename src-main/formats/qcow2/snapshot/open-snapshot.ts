/**
 * A qcow2 image seen as it was when one of its internal snapshots was taken: the device reads through the
 * snapshot's L1 table and has the disk size recorded with it. The snapshot browser's map, `convert -l` (export
 * a snapshot as a new image) and `convert --keep-snapshots` read snapshots through it. Read-only: writing
 * through a snapshot's tables would change the snapshot.
 */
import { DiskError } from '../../../block/errors';
import type { ImageFile } from '../../../block/file';
import type { Qcow2Layout } from '../layout';
import { readSnapshotTable, type SnapshotEntry } from './table-codec';

/** The snapshot `key` names: an id first, then a name, as qemu-img convert -l and snapshot -a look them up. */
export function findSnapshot(entries: SnapshotEntry[], key: string, path: string): SnapshotEntry {
  const found = entries.find((e) => e.id === key) ?? entries.find((e) => e.name === key);
  if (!found) throw new DiskError('EINVAL', `${path}: there is no snapshot with id or name '${key}'`, path);
  return found;
}

/**
 * Points `layout` (as read at open) at the snapshot's L1 table and disk size, so that a device built on it reads
 * the snapshot. The table's entries were bounded by the file when read (readSnapshotTable).
 */
export async function pointAtSnapshot(file: ImageFile, layout: Qcow2Layout, key: string, readOnly: boolean): Promise<void> {
  if (!readOnly) throw new DiskError('EINVAL', `${file.path}: a snapshot is opened read-only (revert to it to write on from there)`, file.path);
  const sn = findSnapshot((await readSnapshotTable(file, layout)).entries, key, file.path);
  layout.header.l1Size = sn.l1Size;
  layout.header.l1TableOffset = sn.l1TableOffset;
  if (sn.diskSize !== undefined) layout.header.size = sn.diskSize;
}
