/**
 * writeZeroes of an open qcow2 image (qemu's qcow2_co_pwrite_zeroes): whole clusters become zero clusters
 * (the zero flag, or all subclusters zero with extended L2 entries), keeping host clusters the image owns as
 * preallocated ones; whole subclusters are marked zero where the cluster allows; the edges get zero data. In
 * version 2 (no zero flag) ranges that do not read as zeros already get zero data.
 */
import { toDiskError } from '../../block/errors';
import { ALL_SUBCLUSTERS, hostOf, isCompressedEntry, normalEntry, putEntry, readEntry, touchedMask, zeroEntry, type L2Entry } from './entry';
import type { Qcow2State } from './state';
import { holdsCluster, ownsCluster, releaseEntries, writeData } from './write';

/** BlockDevice.writeZeroes. */
export async function writeZeroes(d: Qcow2State, offset: number, length: number): Promise<void> {
  d.checkWritable();
  d.checkRange(offset, length);
  if (length === 0) return;
  await d.order.serial(async () => {
    await d.beginWrite();
    await zeroRange(d, offset, length);
  }).catch((err) => {
    throw toDiskError(err, d.path);
  });
}

async function writeZeroData(d: Qcow2State, offset: number, length: number): Promise<void> {
  const chunk = new Uint8Array(Math.min(length, 1 << 20));
  for (let pos = offset; pos < offset + length; pos += chunk.length) {
    await writeData(d, pos, chunk.subarray(0, Math.min(chunk.length, offset + length - pos)));
  }
}

async function zeroRange(d: Qcow2State, offset: number, length: number): Promise<void> {
  const geo = d.geometry;
  const cs = geo.clusterSize;
  // The tail of the last cluster lies past the virtual size: zeroing up to the size covers the cluster.
  const end = offset + length === d.size ? geo.alignUp(d.size) : offset + length;
  if (d.version === 2) {
    // No zero flag in version 2: clusters that already read as zero are left alone, the rest get zeros.
    // Zeros are written up to the virtual size only: `end` may lie past it (the last cluster's tail), and
    // walking to `end` would never get past the size (an empty step at the size, forever).
    const dataEnd = Math.min(end, d.size);
    for (let pos = offset; pos < dataEnd; ) {
      const stop = Math.min(dataEnd, geo.clusterEnd(pos));
      const p = await d.tables.mappedRun(pos, stop - pos);
      if (p.kind === 'zero' || (p.kind === 'unallocated' && !d.backing)) {
        pos += p.length;
        continue;
      }
      await writeZeroData(d, pos, stop - pos);
      pos = stop;
    }
    return;
  }
  const grain = geo.extendedL2 ? geo.subclusterSize : cs;
  const a = Math.min(end, Math.ceil(offset / grain) * grain);
  const b = Math.max(a, Math.floor(end / grain) * grain);
  if (a > offset) await writeZeroData(d, offset, Math.min(a, d.size) - offset);
  for (let pos = a; pos < b; ) {
    const c = geo.clusterIndex(pos);
    const g = c * cs;
    const stop = Math.min(b, g + cs);
    if (pos === g && stop === g + cs) {
      // Whole clusters up to the end of this L2 table's range.
      const spanStop = Math.min(geo.startOfCluster(b), geo.l2SpanEnd(pos));
      await zeroClusters(d, c, (spanStop - pos) / cs);
      pos = spanStop;
    } else {
      await zeroSubclusters(d, c, pos - g, stop - g);
      pos = stop;
    }
  }
  if (b < end && b < d.size) await writeZeroData(d, b, Math.min(end, d.size) - b);
}

/** Turns `n` whole clusters (within one L2 table) into zero clusters, keeping owned host clusters preallocated. */
async function zeroClusters(d: Qcow2State, c0: number, n: number): Promise<void> {
  const geo = d.geometry;
  const ext = geo.extendedL2;
  const { offset: l2off, table } = await d.tables.l2ForWrite(geo.l1IndexOfCluster(c0));
  const released: L2Entry[] = [];
  for (let j = 0; j < n; j++) {
    const idx = geo.l2IndexOfCluster(c0 + j);
    const e = readEntry(table, idx, ext);
    const keep = ownsCluster(e);
    if (!keep && holdsCluster(e)) released.push(e);
    const host = keep ? hostOf(e) : 0;
    if (ext) putEntry(table, idx, host ? normalEntry(host, ALL_SUBCLUSTERS, 0) : zeroEntry(true), true);
    else putEntry(table, idx, host ? normalEntry(host, 0, 0, true) : zeroEntry(false), false);
  }
  await d.tables.writeEntries(l2off, table, geo.l2IndexOfCluster(c0), n);
  await releaseEntries(d, released);
}

/** Extended L2: marks whole subclusters [a, b) of cluster `c` as zero, where the cluster allows it. */
async function zeroSubclusters(d: Qcow2State, c: number, a: number, b: number): Promise<void> {
  const geo = d.geometry;
  const { offset: l2off, table } = await d.tables.l2ForWrite(geo.l1IndexOfCluster(c));
  const idx = geo.l2IndexOfCluster(c);
  const e = readEntry(table, idx, geo.extendedL2);
  const start = c * geo.clusterSize;
  if (isCompressedEntry(e.hi) || (hostOf(e) && !ownsCluster(e))) {
    await writeZeroData(d, start + a, Math.min(b, d.size - start) - a);
    return;
  }
  const mask = touchedMask(a, b, geo.subclusterSize);
  putEntry(table, idx, { ...e, zeroBits: (e.zeroBits | mask) >>> 0, allocBits: (e.allocBits & ~mask) >>> 0 }, geo.extendedL2);
  await d.tables.writeEntries(l2off, table, idx, 1);
}
