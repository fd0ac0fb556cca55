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

/**
 * What one L2 table's entries reach, as Reach counts it. Refcounts do not change while the figures are counted, so
 * a table reached from several L1 tables (snapshots share them: a thousand snapshots of one image may all point at
 * the same few tables) is walked once and its counts added for each L1 table that points to it.
 */
interface TableReach {
  single: number;
  shared: Map<number, number>;
}

async function tableReach(dev: Qcow2State, l2: number, refcountOf: (c: number) => Promise<number>): Promise<TableReach> {
  const g = dev.geometry;
  const reach = new Reach(refcountOf);
  const table = await dev.tables.l2Table(l2);
  const words = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const stride = g.extendedL2 ? 16 : 8;
  for (let k = 0; k < g.l2Entries; k++) {
    // Most entries of most tables are empty: passed over without decoding (a thousand tables of 8192 entries).
    if ((words.getUint32(k * stride) | words.getUint32(k * stride + 4)) === 0) continue;
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
  return { single: reach.single, shared: reach.shared };
}

/** The walked tables that more than one L1 table points to (by L2 offset), kept for the next snapshot's walk. */
export type SharedTables = Map<number, TableReach>;

/** How many clusters deleting `sn` frees: its L1 table, and every cluster all of whose references are its own. */
export async function clustersOnlyIn(
  dev: Qcow2State,
  sn: SnapshotEntry,
  signal?: AbortSignal,
  sharedTables: SharedTables = new Map(),
  refcountOf?: (c: number) => Promise<number>,
): Promise<number> {
  if (!refcountOf) {
    const refs = await dev.refcounts();
    refcountOf = (c: number) => refs.get(c);
  }
  const g = dev.geometry;
  const reach = new Reach(refcountOf);
  const l1 = sn.l1Size ? await dev.file.readBlock(sn.l1TableOffset, sn.l1Size * 8, 'snapshot L1 table') : new Uint8Array(0);
  const view = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  for (let i = 0; i < sn.l1Size; i++) {
    if (signal?.aborted) throw new DiskError('ECANCELLED', 'cancelled');
    const l2 = l1EntryOffset(view.getUint32(i * 8), view.getUint32(i * 8 + 4));
    if (!l2) continue;
    if (g.offsetInCluster(l2) !== 0) throw new DiskError('ECORRUPT', `${dev.path}: an L1 entry of snapshot ${sn.id} points to an unaligned L2 table`, dev.path);
    const l2Cluster = g.clusterIndex(l2);
    await reach.add(l2Cluster);
    let t = sharedTables.get(l2);
    if (!t) {
      t = await tableReach(dev, l2, refcountOf);
      // Only a table with more than one reference will be met again.
      if ((await refcountOf(l2Cluster)) > 1) sharedTables.set(l2, t);
    }
    reach.single += t.single;
    for (const [c, k] of t.shared) reach.shared.set(c, (reach.shared.get(c) ?? 0) + k);
  }
  const l1Clusters = g.sizeToClusters(sn.l1Size * 8);
  return (await reach.freed()) + l1Clusters;
}

/** Clusters of the file whose refcounts are remembered in an array (4 bytes each: 64 MiB at most). */
const MAX_REMEMBERED_CLUSTERS = 16 * 1024 * 1024;

/**
 * The refcount of a cluster, looked up once: every snapshot's walk asks for the same clusters again (a thousand
 * snapshots, a thousand times), and each lookup through the refcount block cache costs far more than an array read.
 */
async function rememberedRefcounts(dev: Qcow2State): Promise<(c: number) => Promise<number>> {
  const refs = await dev.refcounts();
  const clusters = Math.ceil(dev.file.size / dev.geometry.clusterSize);
  if (clusters > MAX_REMEMBERED_CLUSTERS) return (c) => refs.get(c);
  const known = new Int32Array(clusters).fill(-1);
  return async (c) => {
    if (c >= clusters) return refs.get(c);
    if (known[c] >= 0) return known[c];
    const r = await refs.get(c);
    if (r <= 0x7fffffff) known[c] = r;
    return r;
  };
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
    const sharedTables: SharedTables = new Map();
    const refcountOf = await rememberedRefcounts(dev);
    for (const sn of table.entries) out[sn.id] = ((await clustersOnlyIn(dev, sn, signal, sharedTables, refcountOf)) + tableClusters) * cs;
    return out;
  } catch (err) {
    throw toDiskError(err, path);
  } finally {
    await dev.close();
  }
}
