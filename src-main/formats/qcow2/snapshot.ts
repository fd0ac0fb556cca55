/**
 * qcow2 internal snapshots (docs/interop/qcow2.txt, "Snapshots"): list, create, apply, delete and a diff of
 * two states computed from the mapping tables alone.
 *
 * Refcount model (the one qemu-img check verifies): an L2 table's refcount is the number of L1 tables (active
 * and snapshots) that point to it, and a data cluster's refcount the number of L1 tables that reach it. So
 * taking a snapshot raises by one the refcount of every L2 table and data cluster the active L1 reaches, and
 * deleting one lowers those its L1 reaches. OFLAG_COPIED (refcount exactly one) is then recomputed over the
 * active tables, the only ones where it must be exact.
 *
 * Names and ids are qemu-img's: ids "1", "2", … (one more than the largest). `apply` matches an id first,
 * then a name (as qemu-img -a does); `delete` matches a name first (qemu-img -d matches names only), then an id.
 */
import type { SnapshotInfo } from '../../../src-shared/api';
import { DiskError, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { DiffRange, SnapshotOps } from '../../block/types';
import { compressedExtent, MAX_SNAPSHOTS, readLayout } from './layout';
import { openQcow2, type Qcow2Device } from './device';
import { EMPTY_ENTRY, entryBig, HI_COPIED, hostOf, isCompressedEntry, isCopiedEntry, l1Offset as l1EntryOffset, putEntry, readEntry, type L2Entry } from './entry';
import { snapshotInfo } from './snapshot-info';
import { readSnapshotTable, serializeSnapshotTable, type SnapshotEntry, type SnapshotTable as Table } from './snapshot-table';

function readTable(dev: Qcow2Device): Promise<Table> {
  return readSnapshotTable(dev.file, dev.layout);
}

async function openForSnapshots(path: string, readOnly: boolean): Promise<Qcow2Device> {
  // Snapshots are this image's own business: its backing file is never needed.
  return openQcow2(path, {
    readOnly,
    backingPolicy: 'none',
    openBacking: async () => {
      throw new DiskError('EINVAL', 'no backing file is opened for snapshot work');
    },
  });
}

async function withImage<T>(path: string, readOnly: boolean, fn: (dev: Qcow2Device) => Promise<T>): Promise<T> {
  const dev = await openForSnapshots(path, readOnly);
  try {
    const result = readOnly ? await fn(dev) : await dev.serial(() => fn(dev));
    await dev.close();
    return result;
  } catch (err) {
    await dev.close().catch(() => undefined);
    throw toDiskError(err, path);
  }
}

function findForApply(entries: SnapshotEntry[], key: string, path: string): number {
  let i = entries.findIndex((e) => e.id === key);
  if (i < 0) i = entries.findIndex((e) => e.name === key);
  if (i < 0) throw new DiskError('EINVAL', `${path}: there is no snapshot with id or name '${key}'`, path);
  return i;
}

function findForDelete(entries: SnapshotEntry[], key: string, path: string): number {
  let i = entries.findIndex((e) => e.name === key);
  if (i < 0) i = entries.findIndex((e) => e.id === key);
  if (i < 0) throw new DiskError('EINVAL', `${path}: there is no snapshot with name or id '${key}'`, path);
  return i;
}

/** Reads an L1 table as stored (big-endian entries), bounded by the file. */
async function readL1(dev: Qcow2Device, offset: number, entries: number): Promise<Uint8Array> {
  return entries ? dev.file.readBlock(offset, entries * 8, 'snapshot L1 table') : new Uint8Array(0);
}

function l1Offset(l1: Uint8Array, i: number): number {
  const v = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  return l1EntryOffset(v.getUint32(i * 8), v.getUint32(i * 8 + 4));
}

/**
 * Adds `delta` (+1 or -1) to the refcount of every L2 table and every cluster reached from an L1 table. Data
 * refcounts change before the table's own (a freed table is read before it is let go).
 */
async function changeReachable(dev: Qcow2Device, l1: Uint8Array, delta: 1 | -1): Promise<void> {
  const refs = await dev.refcounts();
  const cs = dev.clusterSize;
  if (delta > 0 && refs.bits < 16) await checkNoOverflow(dev, l1);
  for (let i = 0; i < l1.length / 8; i++) {
    const l2 = l1Offset(l1, i);
    if (!l2) continue;
    if (l2 % cs !== 0) throw new DiskError('ECORRUPT', `${dev.path}: L1 entry ${i} points to an unaligned L2 table`, dev.path);
    const table = await dev.tables.l2Table(l2);
    // Runs of host-contiguous clusters are counted in one refcount write.
    let runStart = -1;
    let runLen = 0;
    const flush = async () => {
      if (runLen) await refs.change(runStart, runLen, delta);
      runLen = 0;
    };
    for (let k = 0; k < dev.l2Entries; k++) {
      const e = readEntry(table, k, dev.extendedL2);
      if (isCompressedEntry(e.hi)) {
        await flush();
        const { offset, length } = compressedExtent(entryBig(e), dev.clusterBits);
        await refs.update(offset - (offset % 512), length + (offset % 512), delta);
        continue;
      }
      const host = hostOf(e);
      if (!host) continue;
      const c = host / cs;
      if (runLen && runStart + runLen === c) runLen++;
      else {
        await flush();
        runStart = c;
        runLen = 1;
      }
    }
    await flush();
    await refs.change(l2 / cs, 1, delta);
  }
}

/** With narrow refcounts (below 16 bits) a snapshot can overflow them: find out before changing anything. */
async function checkNoOverflow(dev: Qcow2Device, l1: Uint8Array): Promise<void> {
  const refs = await dev.refcounts();
  const cs = dev.clusterSize;
  const extra = new Map<number, number>();
  const add = (c: number) => extra.set(c, (extra.get(c) ?? 0) + 1);
  for (let i = 0; i < l1.length / 8; i++) {
    const l2 = l1Offset(l1, i);
    if (!l2) continue;
    add(l2 / cs);
    const table = await dev.tables.l2Table(l2);
    for (let k = 0; k < dev.l2Entries; k++) {
      const e = readEntry(table, k, dev.extendedL2);
      if (isCompressedEntry(e.hi)) {
        const { offset, length } = compressedExtent(entryBig(e), dev.clusterBits);
        for (let c = Math.floor(offset / cs); c <= Math.floor((offset + length - 1) / cs); c++) add(c);
      } else if (hostOf(e)) add(hostOf(e) / cs);
    }
  }
  for (const [c, k] of extra) {
    if ((await refs.get(c)) + k > refs.max) {
      throw new DiskError('EUNSUPPORTED', `${dev.path}: its ${refs.bits}-bit refcounts cannot count clusters shared by another snapshot (the largest is ${refs.max}); convert it with a larger refcount_bits`, dev.path);
    }
  }
}

/** Recomputes OFLAG_COPIED over the active L1 table and the L2 tables it points to. */
async function fixCopiedFlags(dev: Qcow2Device): Promise<void> {
  const refs = await dev.refcounts();
  const cs = dev.clusterSize;
  for (let i = 0; i < dev.tables.l1Size; i++) {
    const { offset: l2, copied } = dev.l1Entry(i);
    if (!l2) continue;
    const l2Exclusive = (await refs.get(l2 / cs)) === 1;
    if (l2Exclusive !== copied) await dev.tables.setL1Entry(i, l2, l2Exclusive);
    const table = await dev.tables.l2Table(l2);
    let first = -1;
    let last = -1;
    for (let k = 0; k < dev.l2Entries; k++) {
      const e = readEntry(table, k, dev.extendedL2);
      let want: boolean;
      if (isCompressedEntry(e.hi)) want = false;
      else if (hostOf(e)) want = (await refs.get(hostOf(e) / cs)) === 1;
      else continue;
      const has = isCopiedEntry(e.hi);
      if (want === has) continue;
      const fixed: L2Entry = { ...e, hi: (want ? e.hi | HI_COPIED : e.hi & ~HI_COPIED) >>> 0 };
      putEntry(table, k, fixed, dev.extendedL2);
      if (first < 0) first = k;
      last = k;
    }
    if (first >= 0) await dev.tables.writeEntries(l2, table, first, last - first + 1);
  }
}

/** Writes a new snapshot table, points the header at it (one write), then frees the old one. */
async function writeTable(dev: Qcow2Device, old: Table, entries: SnapshotEntry[]): Promise<void> {
  const refs = await dev.refcounts();
  let offset = 0;
  if (entries.length) {
    const bytes = serializeSnapshotTable(entries, dev.version);
    offset = await refs.alloc(Math.ceil(bytes.length / dev.clusterSize));
    await dev.file.write(offset, bytes);
    await dev.file.sync();
  }
  const oldOffset = dev.header.snapshotsOffset;
  await dev.headerState.setSnapshotLocation(entries.length, offset);
  await dev.file.sync();
  if (old.entries.length && old.byteLength) await refs.update(oldOffset, old.byteLength, -1);
}

function nextId(entries: SnapshotEntry[]): string {
  let max = 0;
  for (const e of entries) {
    const n = /^\d+$/.test(e.id) ? Number(e.id) : 0;
    if (n > max) max = n;
  }
  return String(max + 1);
}

async function list(path: string): Promise<SnapshotInfo[]> {
  const file = await ImageFile.open(path, false);
  try {
    const layout = await readLayout(file);
    return (await readSnapshotTable(file, layout)).entries.map(snapshotInfo);
  } catch (err) {
    throw toDiskError(err, path);
  } finally {
    await file.close();
  }
}

async function create(path: string, name: string): Promise<void> {
  if (name === '') throw new DiskError('EINVAL', 'a snapshot needs a name');
  if (new TextEncoder().encode(name).length > 65535) throw new DiskError('EINVAL', 'the snapshot name is too long');
  await withImage(path, false, async (dev) => {
    const table = await readTable(dev);
    if (table.entries.length >= MAX_SNAPSHOTS) throw new DiskError('EINVAL', `${path}: the image already has ${MAX_SNAPSHOTS} snapshots, the most qcow2 allows`, path);
    await dev.beginWrite();
    const refs = await dev.refcounts();
    const tables = dev.tables;
    if (tables.l1Size > 0) await checkNoOverflowIfNarrow(dev);
    // 1. A copy of the active L1 table.
    let l1Copy = 0;
    if (tables.l1Size > 0) {
      l1Copy = await refs.alloc(Math.ceil((tables.l1Size * 8) / dev.clusterSize));
      await dev.file.write(l1Copy, tables.l1);
    }
    // 2. Everything it reaches is now shared with the snapshot.
    await changeReachable(dev, tables.l1, +1);
    await fixCopiedFlags(dev);
    await dev.file.sync();
    // 3. The snapshot table gains the entry.
    const now = Date.now();
    const extraData = new Uint8Array(24); // vm_state_size (64-bit), disk size, icount: as qemu-img writes them
    const entry: SnapshotEntry = {
      l1TableOffset: l1Copy,
      l1Size: tables.l1Size,
      id: nextId(table.entries),
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1_000_000,
      vmClockNsec: 0n,
      vmStateSize: 0,
      diskSize: dev.size,
      extraData,
    };
    await writeTable(dev, table, [...table.entries, entry]);
  });
}

/** The overflow check before anything is written (changeReachable repeats it; this keeps create all-or-nothing). */
async function checkNoOverflowIfNarrow(dev: Qcow2Device): Promise<void> {
  const refs = await dev.refcounts();
  if (refs.bits < 16) await checkNoOverflow(dev, dev.tables.l1);
}

async function apply(path: string, key: string): Promise<void> {
  await withImage(path, false, async (dev) => {
    const table = await readTable(dev);
    const sn = table.entries[findForApply(table.entries, key, path)];
    await dev.beginWrite();
    const tables = dev.tables;
    const snL1 = await readL1(dev, sn.l1TableOffset, sn.l1Size);
    if (sn.l1Size > tables.l1Size) await tables.growL1(sn.l1Size);
    // Raise what the snapshot reaches before the active table points to it.
    await changeReachable(dev, snL1, +1);
    const oldL1 = tables.l1.slice();
    const next = new Uint8Array(tables.l1Size * 8);
    next.set(snL1);
    await dev.file.write(tables.l1Offset, next);
    await dev.file.sync();
    await tables.switchL1(tables.l1Offset, tables.l1Size);
    // Only now let go of what the old active table reached.
    await changeReachable(dev, oldL1, -1);
    if (sn.diskSize !== undefined && sn.diskSize !== dev.size) await dev.headerState.setVirtualSize(sn.diskSize);
    await fixCopiedFlags(dev);
  });
}

async function remove(path: string, key: string): Promise<void> {
  await withImage(path, false, async (dev) => {
    const table = await readTable(dev);
    const idx = findForDelete(table.entries, key, path);
    const sn = table.entries[idx];
    await dev.beginWrite();
    const snL1 = await readL1(dev, sn.l1TableOffset, sn.l1Size);
    // The table forgets the snapshot first: from then on a crash can only leak clusters.
    await writeTable(dev, table, table.entries.filter((_, i) => i !== idx));
    await changeReachable(dev, snL1, -1);
    const refs = await dev.refcounts();
    if (sn.l1Size > 0) await refs.update(sn.l1TableOffset, sn.l1Size * 8, -1);
    dev.dropCaches();
    await fixCopiedFlags(dev);
  });
}

/** The L2 entry of guest cluster `c` under an L1 table, with the COPIED flag masked (it is bookkeeping). */
async function entryUnder(dev: Qcow2Device, l1: Uint8Array, c: number): Promise<L2Entry | undefined> {
  const i = Math.floor(c / dev.l2Entries);
  if (i * 8 >= l1.length) return undefined;
  const l2 = l1Offset(l1, i);
  if (!l2) return undefined;
  const e = readEntry(await dev.tables.l2Table(l2), c % dev.l2Entries, dev.extendedL2);
  return { ...e, hi: (e.hi & ~HI_COPIED) >>> 0 };
}

function sameEntry(a: L2Entry | undefined, b: L2Entry | undefined): boolean {
  const x = a ?? EMPTY_ENTRY;
  const y = b ?? EMPTY_ENTRY;
  return x.hi === y.hi && x.lo === y.lo && x.zeroBits === y.zeroBits && x.allocBits === y.allocBits;
}

async function diff(path: string, a: string, b?: string): Promise<DiffRange[]> {
  return withImage(path, true, async (dev) => {
    const table = await readTable(dev);
    const sa = table.entries[findForApply(table.entries, a, path)];
    const sb = b !== undefined ? table.entries[findForApply(table.entries, b, path)] : undefined;
    const l1a = await readL1(dev, sa.l1TableOffset, sa.l1Size);
    const l1b = sb ? await readL1(dev, sb.l1TableOffset, sb.l1Size) : dev.tables.l1;
    const sizeA = sa.diskSize ?? dev.size;
    const sizeB = sb ? (sb.diskSize ?? dev.size) : dev.size;
    const size = Math.max(sizeA, sizeB);
    const cs = dev.clusterSize;
    const clusters = Math.ceil(size / cs);
    const out: DiffRange[] = [];
    const mark = (start: number, end: number) => {
      const last = out[out.length - 1];
      if (last && last.start + last.length === start) last.length += end - start;
      else out.push({ start, length: end - start });
    };
    for (let c = 0; c < clusters; ) {
      const i = Math.floor(c / dev.l2Entries);
      const spanEnd = Math.min(clusters, (i + 1) * dev.l2Entries);
      const oa = i * 8 < l1a.length ? l1Offset(l1a, i) : 0;
      const ob = i * 8 < l1b.length ? l1Offset(l1b, i) : 0;
      if (oa === ob) {
        // The same L2 table (or none in both): the whole range maps alike.
        c = spanEnd;
        continue;
      }
      for (; c < spanEnd; c++) {
        if (!sameEntry(await entryUnder(dev, l1a, c), await entryUnder(dev, l1b, c))) mark(c * cs, Math.min(size, (c + 1) * cs));
      }
    }
    return out;
  });
}

export const qcow2Snapshots: SnapshotOps = { list, create, apply, delete: remove, diff };
