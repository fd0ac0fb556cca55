/**
 * The space each internal snapshot holds alone: what deleting it would give back. No other tool shows it;
 * the snapshot browser puts it beside each snapshot and in the delete confirmation.
 *
 * Refcount model (operations.ts): a cluster's refcount is the number of references to it from all L1 tables
 * (the active one and every snapshot's): an L2 table is counted once per L1 entry pointing to it, a data
 * cluster once per L1 table reaching it, a compressed cluster's host clusters once per compressed entry. Deleting
 * snapshot S lowers each cluster by the number of references S's tables make to it, so the clusters it frees
 * are exactly those whose refcount equals S's own reference count — plus S's L1 table itself.
 */
import { DiskError, toDiskError } from '../../../block/errors';
import { compressedExtent } from '../layout';
import { openQcow2 } from '../device';
import { entryBig, hostOf, isCompressedEntry, l1Offset as l1EntryOffset, readEntry } from '../entry';
import { readSnapshotTable, type SnapshotEntry } from './table-codec';
import type { Qcow2State } from '../state';

/** Clusters reached from one L1 table: plain clusters counted once are the common case, kept as a number. */
class Reach {
  /** References to clusters whose refcount is 1 (each is freed when the only reference goes). */
  single = 0;
  /** References to clusters with a higher refcount: freed only if every one of them comes from this snapshot. */
  readonly shared = new Map<number, number>();
  constructor(private readonly refcountOf: (c: number) => Promise<number>) {}

  async add(c: number): Promise<void> {
    // A cluster with refcount 1 reached twice would be damage (check reports it as a corruption), so a
    // refcount of 1 means this is its one reference and it is counted at once, without memory.
    if ((await this.refcountOf(c)) === 1) this.single++;
    else this.shared.set(c, (this.shared.get(c) ?? 0) + 1);
  }

  async freed(): Promise<number> {
    let n = this.single;
    for (const [c, k] of this.shared) if ((await this.refcountOf(c)) === k) n++;
    return n;
  }
}

/** How many clusters deleting `sn` frees: its L1 table, and every cluster all of whose references are its own. */
export async function clustersOnlyIn(dev: Qcow2State, sn: SnapshotEntry, signal?: AbortSignal): Promise<number> {
  const refs = await dev.refcounts();
  const g = dev.geometry;
  const reach = new Reach((c) => refs.get(c));
  const l1 = sn.l1Size ? await dev.file.readBlock(sn.l1TableOffset, sn.l1Size * 8, 'snapshot L1 table') : new Uint8Array(0);
  const view = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  for (let i = 0; i < sn.l1Size; i++) {
    if (signal?.aborted) throw new DiskError('ECANCELLED', 'cancelled');
    const l2 = l1EntryOffset(view.getUint32(i * 8), view.getUint32(i * 8 + 4));
    if (!l2) continue;
    if (g.offsetInCluster(l2) !== 0) throw new DiskError('ECORRUPT', `${dev.path}: an L1 entry of snapshot ${sn.id} points to an unaligned L2 table`, dev.path);
    await reach.add(g.clusterIndex(l2));
    const table = await dev.tables.l2Table(l2);
    for (let k = 0; k < g.l2Entries; k++) {
      const e = readEntry(table, k, g.extendedL2);
      if (isCompressedEntry(e.hi)) {
        const { offset, length } = compressedExtent(entryBig(e), g.clusterBits);
        const { first, last } = g.clusterRange(offset, length);
        for (let c = first; c <= last; c++) await reach.add(c);
      } else {
        const host = hostOf(e);
        if (host) await reach.add(g.clusterIndex(host));
      }
    }
  }
  const l1Clusters = g.sizeToClusters(sn.l1Size * 8);
  return (await reach.freed()) + l1Clusters;
}

/** SnapshotOps.exclusiveBytes: for each snapshot id, the bytes deleting it would give back. */
export async function exclusiveBytes(path: string, signal?: AbortSignal): Promise<Record<string, number>> {
  const dev = await openQcow2(path, {
    readOnly: true,
    backingPolicy: 'none', // the image's own refcounts are the whole story
    openBacking: async () => {
      throw new DiskError('EINVAL', 'no backing file is opened to count snapshot space');
    },
  });
  try {
    const out: Record<string, number> = {};
    const table = await readSnapshotTable(dev.file, dev.layout);
    // Deleting the only snapshot also lets the snapshot table go (an empty table takes no clusters).
    const g = dev.geometry;
    const cs = g.clusterSize;
    const span = g.clusterRange(dev.header.snapshotsOffset, table.byteLength);
    const tableClusters = table.entries.length === 1 ? span.last - span.first + 1 : 0;
    for (const sn of table.entries) out[sn.id] = ((await clustersOnlyIn(dev, sn, signal)) + tableClusters) * cs;
    return out;
  } catch (err) {
    throw toDiskError(err, path);
  } finally {
    await dev.close();
  }
}
