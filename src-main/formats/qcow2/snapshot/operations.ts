/**
 * qcow2 internal snapshots (docs/interop/qcow2.txt, "Snapshots"): list, create, apply, delete and a diff of
 * two states computed from the mapping tables alone.
 *
 * Refcount model (the one qemu-img check verifies): an L2 table's refcount is the number of L1 tables (active
 * and snapshots) that point to it, and a data cluster's refcount the number of L1 tables that reach it.
 * OFLAG_COPIED (refcount exactly one) must be exact in the active tables. Create, apply and delete change
 * refcounts and flags together, so they are written as new structures and switched to with one header
 * write (commit.ts): a crash at any step leaves the old image or the new one, never a mix.
 *
 * Names and ids are qemu-img's: ids "1", "2", … (one more than the largest). `apply` matches an id first,
 * then a name (as qemu-img -a does); `delete` matches a name first (qemu-img -d matches names only), then an id.
 */
import type { SnapshotInfo } from '../../../../src-shared/api';
import { DiskError, toDiskError } from '../../../block/errors';
import { ImageFile } from '../../../block/file';
import type { DiffRange, SnapshotOps } from '../../../block/types';
import { MAX_SNAPSHOTS, readLayout } from '../layout';
import { openQcow2, type Qcow2Device } from '../device';
import { EMPTY_ENTRY, HI_COPIED, l1Offset as l1EntryOffset, readEntry, type L2Entry } from '../entry';
import { clearCopiedFlags, commitSnapshotChange, type L1Ref } from './commit';
import { snapshotInfo } from './entry-to-info';
import { readSnapshotTable, type SnapshotEntry, type SnapshotTable as Table } from './table-codec';

function readTable(dev: Qcow2Device): Promise<Table> {
  return readSnapshotTable(dev.file, dev.layout);
}

async function openForSnapshots(path: string, readOnly: boolean): Promise<Qcow2Device> {
  // Snapshots are this image's own business: its backing file is never needed, nor (metadata only) its key.
  return openQcow2(path, {
    readOnly,
    backingPolicy: 'none',
    withoutKey: true,
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

/**
 * SnapshotOps.listWithSizes: the list, each snapshot's disk size (its extra data's, else the image's size, as a
 * view opened on it reads) and the size now, from one open of the file.
 */
export async function listWithSizes(path: string): Promise<{ snapshots: SnapshotInfo[]; diskSizes: Record<string, number>; currentSize: number }> {
  const file = await ImageFile.open(path, false);
  try {
    const layout = await readLayout(file);
    const entries = (await readSnapshotTable(file, layout)).entries;
    const currentSize = layout.header.size;
    const diskSizes: Record<string, number> = {};
    for (const e of entries) diskSizes[e.id] = e.diskSize ?? currentSize;
    return { snapshots: entries.map(snapshotInfo), diskSizes, currentSize };
  } catch (err) {
    throw toDiskError(err, path);
  } finally {
    await file.close();
  }
}

/** What a new snapshot may carry over from elsewhere (convert --keep-snapshots recreates snapshots exactly). */
export interface SnapshotMeta {
  name: string;
  /** Unique among the image's snapshots; by default one more than the largest numeric id (qemu-img's rule). */
  id?: string;
  dateSec?: number;
  dateNsec?: number;
  vmClockNs?: bigint | number;
  icount?: number;
}

function checkMeta(meta: SnapshotMeta, entries: SnapshotEntry[], path: string): void {
  const enc = new TextEncoder();
  if (meta.name === '') throw new DiskError('EINVAL', 'a snapshot needs a name');
  if (enc.encode(meta.name).length > 65535) throw new DiskError('EINVAL', 'the snapshot name is too long');
  if (meta.id !== undefined && (meta.id === '' || enc.encode(meta.id).length > 65535)) throw new DiskError('EINVAL', 'a snapshot id must be 1 to 65535 bytes long');
  const u32 = (v: number | undefined, what: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) throw new DiskError('EINVAL', `the snapshot's ${what} must be a whole number from 0 to 4294967295`);
  };
  u32(meta.dateSec, 'date (seconds)');
  u32(meta.dateNsec, 'date (nanoseconds)');
  if (meta.dateNsec !== undefined && meta.dateNsec >= 1e9) throw new DiskError('EINVAL', "the snapshot's date nanoseconds must be below one billion");
  const clock = meta.vmClockNs === undefined ? 0n : BigInt(meta.vmClockNs);
  if (clock < 0n || clock >= 1n << 64n) throw new DiskError('EINVAL', "the snapshot's VM clock must fit in 64 bits and not be negative");
  if (meta.icount !== undefined && (!Number.isSafeInteger(meta.icount) || meta.icount < -1)) throw new DiskError('EINVAL', "the snapshot's instruction count must be a whole number (-1 for none)");
  if (entries.some((e) => e.name === meta.name)) throw new DiskError('EEXIST', `${path}: a snapshot named '${meta.name}' already exists`, path);
  if (meta.id !== undefined && entries.some((e) => e.id === meta.id)) throw new DiskError('EEXIST', `${path}: a snapshot with id '${meta.id}' already exists`, path);
  if (entries.length >= MAX_SNAPSHOTS) throw new DiskError('EINVAL', `${path}: the image already has ${MAX_SNAPSHOTS} snapshots, the most qcow2 allows`, path);
}

/**
 * Takes a snapshot with the given id, date, VM clock and instruction count (defaults: the next id, now, 0,
 * none). The old active L1 table and its L2 tables become the snapshot's; the active layer gets a new L1
 * table sharing the L2 tables whose flags need no change, and copies of the others (commit.ts says why, and
 * how a crash can only leak).
 */
export async function createSnapshotWithMeta(path: string, meta: SnapshotMeta): Promise<void> {
  await withImage(path, false, async (dev) => {
    const table = await readTable(dev);
    checkMeta(meta, table.entries, path);
    await dev.beginWrite();
    const tables = dev.tables;
    const now = Date.now();
    // vm_state_size (64-bit), disk size, icount (qemu-img writes 0; -1 means none recorded).
    const extraData = new Uint8Array(24);
    new DataView(extraData.buffer).setBigInt64(16, BigInt(meta.icount ?? 0));
    const entry: SnapshotEntry = {
      l1TableOffset: tables.l1Size ? tables.l1Offset : 0,
      l1Size: tables.l1Size,
      id: meta.id ?? nextId(table.entries),
      name: meta.name,
      dateSec: meta.dateSec ?? Math.floor(now / 1000),
      dateNsec: meta.dateNsec ?? (now % 1000) * 1_000_000,
      vmClockNsec: BigInt(meta.vmClockNs ?? 0),
      vmStateSize: 0,
      diskSize: dev.size,
      extraData,
    };
    const old: L1Ref = { offset: tables.l1Offset, entries: tables.l1Size, bytes: tables.l1.slice() };
    await commitSnapshotChange(dev, { activeFrom: old.bytes, activeEntries: old.entries, release: [], snapshots: [...table.entries, entry], oldTable: table });
    await clearCopiedFlags(dev, old);
  });
}

/** SnapshotOps.create: `meta` reproduces a copied snapshot (convert --keep-snapshots). */
async function create(path: string, name: string, meta?: Omit<SnapshotMeta, 'name'>): Promise<void> {
  await createSnapshotWithMeta(path, { ...meta, name });
}

async function apply(path: string, key: string): Promise<void> {
  await withImage(path, false, async (dev) => {
    const table = await readTable(dev);
    const sn = table.entries[findForApply(table.entries, key, path)];
    await dev.beginWrite();
    const tables = dev.tables;
    const snL1 = await readL1(dev, sn.l1TableOffset, sn.l1Size);
    // The active L1 keeps its size when larger (qemu's goto never shrinks it); the rest reads as unallocated.
    const entries = Math.max(tables.l1Size, sn.l1Size);
    const size = sn.diskSize !== undefined && sn.diskSize !== dev.size ? sn.diskSize : undefined;
    await commitSnapshotChange(dev, {
      activeFrom: snL1,
      activeEntries: entries,
      release: [{ offset: tables.l1Offset, entries: tables.l1Size, bytes: tables.l1.slice() }],
      oldTable: table,
      virtualSize: size,
    });
  });
}

async function remove(path: string, key: string): Promise<void> {
  await withImage(path, false, async (dev) => {
    const table = await readTable(dev);
    const idx = findForDelete(table.entries, key, path);
    const sn = table.entries[idx];
    await dev.beginWrite();
    const tables = dev.tables;
    const snL1 = await readL1(dev, sn.l1TableOffset, sn.l1Size);
    const active: L1Ref = { offset: tables.l1Offset, entries: tables.l1Size, bytes: tables.l1.slice() };
    // The active layer is rewritten too: clusters it shared with the snapshot may be its own again (OFLAG_COPIED).
    await commitSnapshotChange(dev, {
      activeFrom: active.bytes,
      activeEntries: active.entries,
      release: [{ offset: sn.l1TableOffset, entries: sn.l1Size, bytes: snL1 }, active],
      snapshots: table.entries.filter((_, i) => i !== idx),
      oldTable: table,
    });
  });
}

/** The L2 entry of guest cluster `c` under an L1 table, with the COPIED flag masked (it is bookkeeping). */
async function entryUnder(dev: Qcow2Device, l1: Uint8Array, c: number): Promise<L2Entry | undefined> {
  const g = dev.geometry;
  const i = g.l1IndexOfCluster(c);
  if (i * 8 >= l1.length) return undefined;
  const l2 = l1Offset(l1, i);
  if (!l2) return undefined;
  const e = readEntry(await dev.tables.l2Table(l2), g.l2IndexOfCluster(c), g.extendedL2);
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
    const g = dev.geometry;
    const cs = g.clusterSize;
    const clusters = g.sizeToClusters(size);
    const out: DiffRange[] = [];
    const mark = (start: number, end: number) => {
      const last = out[out.length - 1];
      if (last && last.start + last.length === start) last.length += end - start;
      else out.push({ start, length: end - start });
    };
    for (let c = 0; c < clusters; ) {
      const i = g.l1IndexOfCluster(c);
      const spanEnd = Math.min(clusters, (i + 1) * g.l2Entries);
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
