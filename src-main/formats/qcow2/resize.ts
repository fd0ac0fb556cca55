/**
 * Size changes of an open qcow2 image (qemu's qcow2_co_truncate): growing (a larger L1 table when needed),
 * shrinking (only past guest data, freeing what lay there), and preallocation (metadata or full) as create
 * asks for it.
 */
import { DiskError, toDiskError } from '../../block/errors';
import { hasZeroFlag, hostOf, isCompressedEntry, normalEntry, putEntry, readEntry, EMPTY_ENTRY, type L2Entry } from './entry';
import type { Qcow2State } from './state';
import { holdsCluster, releaseEntries } from './write';

/** BlockDevice.resize. */
export async function resize(d: Qcow2State, newSize: number, shrink: boolean): Promise<void> {
  d.checkWritable();
  if (!Number.isSafeInteger(newSize) || newSize < 0) throw new DiskError('EINVAL', `invalid size ${newSize}`);
  if (newSize % 512 !== 0) throw new DiskError('EINVAL', `${d.path}: the new size must be a multiple of 512 bytes`, d.path);
  await d.order.serial(async () => {
    if (newSize === d.size) return;
    if (d.header.nbSnapshots > 0 && d.version === 2) {
      throw new DiskError('EUNSUPPORTED', `${d.path}: a version 2 (compat=0.10) image with internal snapshots cannot be resized`, d.path);
    }
    if (newSize < d.size) {
      if (!shrink) throw new DiskError('EINVAL', `${d.path}: shrinking would lose data; use --shrink to confirm`, d.path);
      if (d.header.nbSnapshots > 0) throw new DiskError('EUNSUPPORTED', `${d.path}: an image with internal snapshots cannot be shrunk`, d.path);
      await d.beginWrite();
      await shrinkTo(d, newSize);
    } else {
      await d.beginWrite();
      const need = d.geometry.l1EntriesFor(newSize);
      if (need > d.tables.l1Size) await d.tables.growL1(need);
    }
    await d.headerState.setVirtualSize(newSize);
  }).catch((err) => {
    throw toDiskError(err, d.path);
  });
}

/** Shrinks when nothing but zero or unallocated clusters lies past the new end; frees what lay there. */
async function shrinkTo(d: Qcow2State, newSize: number): Promise<void> {
  const geo = d.geometry;
  const cs = geo.clusterSize;
  const ext = geo.extendedL2;
  const tables = d.tables;
  const l2Entries = geo.l2Entries;
  const firstGone = geo.sizeToClusters(newSize);
  const lastCluster = geo.sizeToClusters(d.size);
  const keepL1 = geo.l1EntriesFor(newSize);
  for (let l1i = geo.l1IndexOfCluster(firstGone); l1i * l2Entries < lastCluster && l1i < tables.l1Size; l1i++) {
    const { offset } = tables.l1Entry(l1i);
    if (!offset) continue;
    const table = await tables.l2Table(offset);
    for (let c = Math.max(firstGone, l1i * l2Entries); c < Math.min(lastCluster, (l1i + 1) * l2Entries); c++) {
      const e = readEntry(table, geo.l2IndexOfCluster(c), ext);
      const holdsData = isCompressedEntry(e.hi) || (ext ? e.allocBits !== 0 : hostOf(e) !== 0 && !hasZeroFlag(e.lo));
      if (holdsData) {
        throw new DiskError('EINVAL', `${d.path}: cannot shrink to ${newSize} bytes: guest data is allocated at offset ${c * cs}, past the new size`, d.path);
      }
    }
  }
  const refs = await d.refcounts();
  for (let l1i = geo.l1IndexOfCluster(firstGone); l1i * l2Entries < lastCluster && l1i < tables.l1Size; l1i++) {
    const { offset } = tables.l1Entry(l1i);
    if (!offset) continue;
    if (l1i >= keepL1) {
      // The whole table lies past the end: drop it and whatever preallocated clusters it held.
      const table = await tables.l2Table(offset);
      await tables.setL1Entry(l1i, 0, false);
      const rc = await refs.get(geo.clusterIndex(offset));
      await refs.update(offset, cs, -1);
      if (rc === 1) {
        const held: L2Entry[] = [];
        for (let k = 0; k < l2Entries; k++) held.push(readEntry(table, k, ext));
        await releaseEntries(d, held);
      }
      continue;
    }
    const { offset: l2off, table } = await tables.l2ForWrite(l1i);
    const from = geo.l2IndexOfCluster(Math.max(firstGone, l1i * l2Entries));
    const released: L2Entry[] = [];
    for (let k = from; k < l2Entries; k++) {
      const e = readEntry(table, k, ext);
      if (e.hi || e.lo || e.zeroBits || e.allocBits) released.push(e);
      putEntry(table, k, EMPTY_ENTRY, ext);
    }
    await tables.writeEntries(l2off, table, from, l2Entries - from);
    await releaseEntries(d, released);
  }
}

/**
 * Allocates an L2 table and a host cluster for every guest cluster (preallocation=metadata, as qemu lays
 * it out: each L2 table followed by its data clusters); `full` also writes zeros over the data clusters.
 * With extended L2 entries the subclusters stay unallocated, as qemu leaves them.
 */
export async function preallocate(d: Qcow2State, full: boolean): Promise<void> {
  d.checkWritable();
  await d.order.serial(async () => {
    await d.beginWrite();
    const refs = await d.refcounts();
    const geo = d.geometry;
    const cs = geo.clusterSize;
    const ext = geo.extendedL2;
    const clusters = geo.sizeToClusters(d.size);
    let end = d.file.size;
    for (let c0 = 0; c0 < clusters; ) {
      const l1i = geo.l1IndexOfCluster(c0);
      const n = Math.min(clusters, (l1i + 1) * geo.l2Entries) - c0;
      const { offset: l2off, table } = await d.tables.l2ForWrite(l1i);
      const held = (k: number) => holdsCluster(readEntry(table, geo.l2IndexOfCluster(c0 + k), ext));
      let k = 0;
      while (k < n) {
        // Runs of clusters that have no host cluster yet.
        if (held(k)) {
          k++;
          continue;
        }
        let m = 1;
        while (k + m < n && !held(k + m)) m++;
        const host = await refs.alloc(m);
        if (full) {
          const zero = new Uint8Array(Math.min(m * cs, 1 << 20));
          for (let p = 0; p < m * cs; p += zero.length) await d.file.write(host + p, zero.subarray(0, Math.min(zero.length, m * cs - p)));
        }
        for (let j = 0; j < m; j++) {
          const idx = geo.l2IndexOfCluster(c0 + k + j);
          const old = readEntry(table, idx, ext);
          const zeroFlag = !ext && hasZeroFlag(old.lo);
          putEntry(table, idx, normalEntry(host + j * cs, ext ? old.zeroBits : 0, 0, zeroFlag), ext);
        }
        await d.tables.writeEntries(l2off, table, geo.l2IndexOfCluster(c0 + k), m);
        end = Math.max(end, host + m * cs);
        k += m;
      }
      c0 += n;
    }
    // The data clusters lie within the file (as holes when only metadata is preallocated).
    if (d.file.size < end) await d.file.truncate(end);
  }).catch((err) => {
    throw toDiskError(err, d.path);
  });
}
