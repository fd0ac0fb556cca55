/**
 * The check's map of where the image's metadata lies, so that a repair never writes one structure over
 * another: our counterpart of qemu's qcow2_check_metadata_overlap() (in its default "cached" mode, without
 * inactive L2 tables), and the walk that fills it from the header, tables, snapshots and bitmaps.
 */
import { l1Offset, reftableOffset } from '../entry';
import { bitmapDirectory, type Qcow2Layout } from '../layout';
import type { SnapshotTable } from '../snapshot/table-codec';

/** The classes of metadata qemu's overlap check knows. */
const METADATA_KINDS = [
  'main header',
  'active L1 table',
  'active L2 table',
  'refcount table',
  'refcount block',
  'snapshot table',
  'inactive L1 table',
  'bitmap directory',
] as const;
export type MetadataKind = (typeof METADATA_KINDS)[number];

/**
 * Where the metadata lies. Cluster-sized tables are kept per cluster (as a set of kinds: damaged images put
 * two structures in one cluster), the few others as byte ranges.
 */
export class MetadataMap {
  private readonly clusters = new Map<number, number>();
  private readonly ranges: Array<{ start: number; end: number; kind: MetadataKind }> = [];

  constructor(private readonly clusterSize: number) {}

  add(kind: MetadataKind, offset: number, size: number): void {
    if (size <= 0 || !Number.isFinite(offset)) return;
    if (offset % this.clusterSize === 0 && size === this.clusterSize) {
      const k = offset / this.clusterSize;
      this.clusters.set(k, (this.clusters.get(k) ?? 0) | (1 << METADATA_KINDS.indexOf(kind)));
    } else this.ranges.push({ start: offset, end: offset + size, kind });
  }

  /** The structure a write of [offset, offset+size) would hit, widened to whole clusters as qemu does. */
  overlap(offset: number, size: number, ignore?: MetadataKind): MetadataKind | undefined {
    const first = Math.floor(offset / this.clusterSize);
    const end = Math.ceil((offset + size) / this.clusterSize);
    const ignored = ignore ? 1 << METADATA_KINDS.indexOf(ignore) : 0;
    for (let k = first; k < end; k++) {
      const kinds = (this.clusters.get(k) ?? 0) & ~ignored;
      if (kinds) return METADATA_KINDS[31 - Math.clz32(kinds & -kinds)];
    }
    for (const r of this.ranges) {
      if (r.kind !== ignore && r.start < end * this.clusterSize && r.end > first * this.clusterSize) return r.kind;
    }
    return undefined;
  }
}

/** What the map is drawn from: the image's layout and tables as the check loaded them (the Checker hands in itself). */
export interface MetadataSources {
  readonly layout: Qcow2Layout;
  readonly clusterSize: number;
  /** The active L1 table as big-endian halves. */
  readonly l1: Uint32Array;
  /** The refcount table as big-endian halves, its entries, offset and clusters. */
  readonly reftable: Uint32Array;
  readonly reftableEntries: number;
  readonly reftableOffset: number;
  readonly reftableClusters: number;
  readonly snapshots: SnapshotTable;
}

/** Records where every structure lies (header, tables, L2 tables, refcount blocks, snapshots, bitmaps). */
export function mapMetadata(c: MetadataSources): MetadataMap {
  const h = c.layout.header;
  const cs = c.clusterSize;
  const m = new MetadataMap(cs);
  m.add('main header', 0, cs);
  m.add('active L1 table', h.l1TableOffset, h.l1Size * 8);
  for (let i = 0; i < c.l1.length / 2; i++) {
    if ((c.l1[2 * i] | c.l1[2 * i + 1]) === 0) continue;
    const off = l1Offset(c.l1[2 * i], c.l1[2 * i + 1]);
    if (off) m.add('active L2 table', off, cs);
  }
  m.add('refcount table', c.reftableOffset, c.reftableClusters * cs);
  for (let i = 0; i < c.reftableEntries; i++) {
    if ((c.reftable[2 * i] | c.reftable[2 * i + 1]) === 0) continue;
    const off = reftableOffset(c.reftable[2 * i], c.reftable[2 * i + 1]);
    if (off) m.add('refcount block', off, cs);
  }
  m.add('snapshot table', h.snapshotsOffset, c.snapshots.byteLength);
  for (const sn of c.snapshots.entries) m.add('inactive L1 table', sn.l1TableOffset, sn.l1Size * 8);
  const bm = bitmapDirectory(c.layout);
  if (bm) m.add('bitmap directory', bm.offset, bm.size);
  return m;
}
