/**
 * discard of an open qcow2 image: qemu's qcow2_co_pdiscard (full_discard off), checked against qemu-io 7.2.
 * Only whole clusters are touched (the last cluster is whole when the range runs to the end of the image);
 * each one that holds a host cluster, or any one when the image has a backing file, becomes a cluster that
 * reads as zeros — the zero flag in v3, all subclusters zero with extended L2 entries, unallocated in v2 —
 * and its host cluster (or compressed sectors) loses one reference. v2 images with a backing file are refused
 * (qemu silently skips them: without a zero flag the backing file's data would show through).
 *
 * Two departures, neither visible to qemu-img check, compare or map: qemu also allocates (or copies, when
 * shared with a snapshot) the L2 table of every range it looks at even when no entry changes; we leave such
 * tables alone. And qemu punches holes in the freed host clusters only when opened with discard=unmap; we
 * punch them whenever the native helper can (fallocate PUNCH_HOLE, after the new entries and refcounts are
 * written, so a crash leaks at worst), which is how sparsify --in-place gives the space back to the host.
 * Nothing is truncated, as qemu truncates nothing.
 */
import { DiskError, toDiskError } from '../../block/errors';
import { EMPTY_ENTRY, hostOf, isCompressedEntry, readEntry, zeroEntry, type L2Entry } from './entry';
import type { Qcow2State } from './state';
import { replaceEntries, type EntryChange } from './write';

/** BlockDevice.discard. */
export async function discard(d: Qcow2State, offset: number, length: number): Promise<void> {
  d.checkWritable();
  d.checkRange(offset, length);
  if (length === 0) return;
  const refusal = discardRefusal(d);
  if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${d.path}: ${refusal}`, d.path);
  const hasBacking = hasBackingFile(d);
  const geo = d.geometry;
  const end = offset + length;
  // Whole clusters only; the last, partial cluster counts as whole when the range reaches the virtual size.
  const first = geo.sizeToClusters(offset);
  const stop = end === d.size ? geo.sizeToClusters(end) : geo.clusterIndex(end);
  if (stop <= first) return;
  await d.order.serial(async () => {
    for (let c = first; c < stop; ) {
      const l1i = geo.l1IndexOfCluster(c);
      const tableStop = Math.min(stop, (l1i + 1) * geo.l2Entries);
      await discardInTable(d, l1i, c, tableStop, hasBacking);
      c = tableStop;
    }
  }).catch((err) => {
    throw toDiskError(err, d.path);
  });
}

/** A backing file named in the header counts even when it was not opened (info's backing policy 'none'). */
const hasBackingFile = (d: Qcow2State) => d.layout.backingFile !== undefined || d.backing !== undefined;

/**
 * BlockDevice.discardRefusal: why discard refuses on this image (undefined: it can release clusters), the words
 * discard throws, from the header alone, so a read-only device answers it before anything is written.
 */
export function discardRefusal(d: Qcow2State): string | undefined {
  if (d.version === 2 && hasBackingFile(d)) {
    return "a version 2 (compat=0.10) image with a backing file cannot discard: it has no zero flag, so released clusters would show the backing file's data";
  }
  return undefined;
}

/** What a discarded cluster's entry becomes, or undefined when it stays as it is. */
function discardedEntry(d: Qcow2State, e: L2Entry, guest: number, hasBacking: boolean): L2Entry | undefined {
  const holds = isCompressedEntry(e.hi) || d.tables.checkedHost(e, guest) !== 0;
  if (!holds && !hasBacking) return undefined; // reads as zeros already and holds nothing
  // v2 has no zero flag: the entry becomes unallocated.
  const ext = d.geometry.extendedL2;
  const next: L2Entry = ext || d.version === 3 ? zeroEntry(ext) : { ...EMPTY_ENTRY };
  const same = (e.hi >>> 0) === next.hi && (e.lo >>> 0) === next.lo && (e.zeroBits >>> 0) === (next.zeroBits >>> 0) && (e.allocBits >>> 0) === next.allocBits;
  return same ? undefined : next;
}

/** Discards clusters [c0, c1) of L2 table `l1i`: entries rewritten first, then the references dropped. */
async function discardInTable(d: Qcow2State, l1i: number, c0: number, c1: number, hasBacking: boolean): Promise<void> {
  const geo = d.geometry;
  const ext = geo.extendedL2;
  const { offset: current } = d.tables.l1Entry(l1i);
  const before = current ? await d.tables.l2Table(current) : undefined;
  const changes: EntryChange[] = [];
  for (let c = c0; c < c1; c++) {
    const idx = geo.l2IndexOfCluster(c);
    const old = before ? readEntry(before, idx, ext) : EMPTY_ENTRY;
    const next = discardedEntry(d, old, c * geo.clusterSize, hasBacking);
    if (next) changes.push({ idx, next, old });
  }
  if (changes.length === 0) return;
  await d.beginWrite();
  // A table shared with a snapshot is copied there; the copy holds the same entries as `before`.
  await replaceEntries(d, l1i, changes);
  await punchFreed(d, changes);
}

/**
 * Gives the host clusters that the discard freed (refcount now 0) back to the host file system. Runs inside
 * the discard's serial section, so no allocation can have reused one in between; a cluster still referenced
 * (by a snapshot) keeps its data. Compressed sectors are left alone (they share clusters).
 */
async function punchFreed(d: Qcow2State, changes: EntryChange[]): Promise<void> {
  if (!d.file.punchesHoles) return;
  const cs = d.geometry.clusterSize;
  const refs = await d.refcounts();
  const hosts: number[] = [];
  for (const ch of changes) {
    if (isCompressedEntry(ch.old.hi)) continue;
    const host = hostOf(ch.old);
    if (host && (await refs.get(host / cs)) === 0) hosts.push(host);
  }
  hosts.sort((a, b) => a - b);
  for (let i = 0; i < hosts.length; ) {
    let j = i + 1;
    while (j < hosts.length && hosts[j] === hosts[j - 1] + cs) j++;
    if (!(await d.file.punchHole(hosts[i], (j - i) * cs))) return;
    i = j;
  }
}
