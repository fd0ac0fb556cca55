/**
 * Internal snapshots (qcow2): the CLI's `snapshot` command and the app's snapshot browser. The format's
 * SnapshotOps do the work; this adds what a person needs around it: the listing with whether the image can
 * take snapshot work now, the space each one holds, its map, and the difference of two drawn as a map.
 */
import type { MapPicture, SnapshotDiff, SnapshotInfo, SnapshotListing } from '../../src-shared/api';
import { DiskError, throwIfAborted, toDiskError } from '../block/errors';
import { openImage, resolveDriver } from '../registry';
import type { DiffRange, SnapshotOps } from '../block/types';
import { mapPicture } from './map';
import { inspectImage } from './info';
import { heldAgainstWriting, lockHolderOf } from '../block/lock';
import { constants as fsc, promises as fsp } from 'node:fs';

async function opsFor(path: string, format?: string): Promise<SnapshotOps> {
  const d = await resolveDriver(path, format);
  if (!d.snapshots) throw new DiskError('EUNSUPPORTED', `${d.name} images have no internal snapshots (qcow2 does)`, path);
  return d.snapshots;
}

export async function listSnapshots(path: string, format?: string): Promise<SnapshotInfo[]> {
  return (await opsFor(path, format)).list(path);
}
export async function createSnapshot(path: string, name: string, format?: string): Promise<void> {
  return (await opsFor(path, format)).create(path, name);
}
export async function applySnapshot(path: string, name: string, format?: string): Promise<void> {
  return (await opsFor(path, format)).apply(path, name);
}
export async function deleteSnapshot(path: string, name: string, format?: string): Promise<void> {
  return (await opsFor(path, format)).delete(path, name);
}
export async function diffSnapshots(path: string, a: string, b?: string, format?: string): Promise<DiffRange[]> {
  return (await opsFor(path, format)).diff(path, a, b);
}

/** A snapshot with the same name given to apply's "save the current state first" (qemu-img does not check names). */
async function refuseTakenName(path: string, name: string, format?: string): Promise<void> {
  if ((await listSnapshots(path, format)).some((s) => s.name === name)) {
    throw new DiskError('EEXIST', `${path}: a snapshot named '${name}' exists already`, path);
  }
}

/** Takes a snapshot named `name`, refusing a name already taken (qemu-img would make a second one). */
export async function createNamedSnapshot(path: string, name: string, format?: string): Promise<void> {
  await refuseTakenName(path, name, format);
  await createSnapshot(path, name, format);
}

/**
 * Reverts to `snapshot`; with `saveCurrentAs`, the state being left is first kept as a snapshot of that name
 * (the browser's "keep the current state" box). When that snapshot cannot be taken, nothing is reverted.
 */
export async function revertToSnapshot(opts: { path: string; snapshot: string; saveCurrentAs?: string; format?: string; signal?: AbortSignal }): Promise<void> {
  throwIfAborted(opts.signal);
  if (opts.saveCurrentAs !== undefined) await createNamedSnapshot(opts.path, opts.saveCurrentAs, opts.format);
  throwIfAborted(opts.signal);
  await applySnapshot(opts.path, opts.snapshot, opts.format);
}

/**
 * Whether the image can take snapshot work now, found without opening it for writing (which would take the
 * write lock for a moment and refuse a VM starting then): the file must be writable, the image closed cleanly
 * and not marked corrupt, and no other program may hold it against writing.
 */
async function writeRefusal(path: string): Promise<SnapshotListing['refusal']> {
  try {
    await fsp.access(path, fsc.W_OK).catch(() => {
      throw new DiskError('EACCES', `${path}: the file is read-only`, path);
    });
    const info = await inspectImage(path, { backingPolicy: 'none' });
    if (info['dirty-flag']) throw new DiskError('EUNCLEAN', `${path}: the image was not closed cleanly; repair it first (Check & Repair)`, path);
    if (info['format-specific']?.data.corrupt === true) throw new DiskError('ECORRUPT', `${path}: the image is marked corrupt; repair it first (Check & Repair)`, path);
    if (await heldAgainstWriting(path)) throw new DiskError('EBUSY', `${path}: the image is in use by ${await lockHolderOf(path)}; close it there first`, path);
    return undefined;
  } catch (err) {
    return toDiskError(err, path).toDto();
  }
}

/**
 * The snapshot browser's listing; an image of a format without snapshots lists none. A format that reads the
 * disk sizes with its table (qcow2) answers in one open, whatever the number of snapshots; opening a view per
 * snapshot, each reading the whole table again, took 5–8 s at 1,000 snapshots.
 */
export async function snapshotListing(path: string): Promise<SnapshotListing> {
  const d = await resolveDriver(path);
  if (d.snapshots?.listWithSizes) {
    const { snapshots, diskSizes, currentSize } = await d.snapshots.listWithSizes(path);
    return { snapshots, currentSize, diskSizes, refusal: await writeRefusal(path) };
  }
  const dev = await openImage(path, { readOnly: true, backingPolicy: 'none' });
  const currentSize = dev.size;
  await dev.close();
  if (!d.snapshots) return { snapshots: [], currentSize, diskSizes: {} };
  const snapshots = await d.snapshots.list(path);
  // The disk size each was taken at: what its view of the image says.
  const diskSizes: Record<string, number> = {};
  for (const s of snapshots) {
    const view = await openImage(path, { readOnly: true, backingPolicy: 'none', snapshot: s.id });
    diskSizes[s.id] = view.size;
    await view.close();
  }
  return { snapshots, currentSize, diskSizes, refusal: await writeRefusal(path) };
}

/** For each snapshot id, the bytes that deleting it would free. */
export async function snapshotSpace(path: string, signal?: AbortSignal): Promise<Record<string, number>> {
  const ops = await opsFor(path);
  if (!ops.exclusiveBytes) throw new DiskError('EUNSUPPORTED', `${path}: this format cannot tell the space each snapshot holds`, path);
  return ops.exclusiveBytes(path, signal);
}

/** The allocation map of one snapshot. Its backing file is not followed: the picture is the image's own tables. */
export function snapshotMapPicture(path: string, snapshot: string, buckets: number): Promise<MapPicture> {
  return mapPicture(path, buckets, { snapshot, backingPolicy: 'none' });
}

/** Where `a` and `b` (or now) differ, summed and drawn into buckets as the map is. */
export async function snapshotDiffPicture(path: string, a: string, b: string | undefined, buckets: number): Promise<SnapshotDiff> {
  const ranges = await diffSnapshots(path, a, b);
  const dev = await openImage(path, { readOnly: true, backingPolicy: 'none' });
  const virtualSize = dev.size;
  await dev.close();
  const n = Math.max(1, Math.min(4096, Math.floor(buckets)));
  // The diff can reach past today's size when a snapshot was taken at a larger one.
  const extent = Math.max(virtualSize, ...ranges.map((r) => r.start + r.length));
  const bucketSize = Math.max(1, Math.ceil(extent / n));
  const out = new Array<number>(n).fill(0);
  let bytes = 0;
  for (const r of ranges) {
    bytes += r.length;
    for (let pos = r.start; pos < r.start + r.length; ) {
      const i = Math.floor(pos / bucketSize);
      const end = Math.min(r.start + r.length, (i + 1) * bucketSize);
      out[i] += (end - pos) / bucketSize;
      pos = end;
    }
  }
  return { bytes, ranges: ranges.length, virtualSize: extent, bucketSize, buckets: out.map((v) => Math.min(1, v)) };
}
