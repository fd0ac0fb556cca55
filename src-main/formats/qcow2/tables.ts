/**
 * The mapping tables of an open qcow2 image (qemu's qcow2-cluster.c): the active L1 table, a bounded cache of
 * L2 tables, the lookup of what a guest range maps to (mappedRun), L2 tables made ready for a change (allocated,
 * or copied when shared with a snapshot), L2 entry writes, and moves of the L1 table (grow, switch).
 */
import { LruCache } from '../../block/cache';
import { endOfRun } from '../../block/table-scan';
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { WriteBackCache } from './cache';
import type { Qcow2Geometry } from './geometry';
import type { WriteOrder } from './write-order';
import type { Refcounts } from './refcount';
import {
  ClusterType,
  classify,
  HI_COPIED,
  be32,
  entryBig,
  hostOf,
  hostOffset,
  isCompressedEntry,
  l1Offset,
  readEntry,
  subclusterKind,
  SUBCLUSTERS,
  type L2Entry,
} from './entry';
import { writeHeaderFields } from './header';
import { MAX_L1_BYTES, type Qcow2Header } from './layout';

/** L2 tables kept in memory: about 16 MiB whatever the cluster size, never fewer than 4 tables. */
export function l2CacheCapacity(clusterSize: number): number {
  return Math.max(4, Math.floor((16 << 20) / clusterSize));
}

/** A guest range in one state: part of one cluster, or with standard L2 entries a run of clusters of one L2 table. */
export interface MappedRun {
  kind: 'data' | 'zero' | 'unallocated' | 'compressed';
  length: number;
  /** Host offset of the run's first byte, where the image holds a cluster for it. */
  host?: number;
  /** The compressed cluster descriptor. */
  entry?: bigint;
}

/** What the mapping tables use of the image (the device hands in itself). */
export interface TableParts {
  readonly file: ImageFile;
  readonly geometry: Qcow2Geometry;
  /** Its L1 fields are kept current when the L1 table moves. */
  readonly header: Qcow2Header;
  readonly cache: WriteBackCache;
  readonly order: WriteOrder;
  refcounts(): Promise<Refcounts>;
}

export class Tables {
  l1Size: number;
  l1Offset: number;
  /** The active L1 table as stored (big-endian entries). */
  l1: Uint8Array;
  private l1View: DataView;
  private readonly l2Cache: LruCache<number, Uint8Array>;
  private readonly g: Qcow2Geometry;

  constructor(private readonly d: TableParts) {
    this.g = d.geometry;
    this.l1Size = d.header.l1Size;
    this.l1Offset = d.header.l1TableOffset;
    this.l1 = new Uint8Array(0);
    this.l1View = new DataView(this.l1.buffer);
    this.l2Cache = new LruCache(l2CacheCapacity(this.g.clusterSize));
  }

  private get path(): string {
    return this.d.file.path;
  }

  async loadL1(): Promise<void> {
    this.l1 = this.l1Size ? await this.d.file.readBlock(this.l1Offset, this.l1Size * 8, 'L1 table') : new Uint8Array(0);
    this.l1View = new DataView(this.l1.buffer, this.l1.byteOffset, this.l1.byteLength);
  }

  /** L2 table offset from L1 entry `i` (0 = none) and whether it is marked as exclusively owned. */
  l1Entry(i: number): { offset: number; copied: boolean } {
    if (i >= this.l1Size) return { offset: 0, copied: false };
    const hi = this.l1View.getUint32(i * 8);
    const offset = l1Offset(hi, this.l1View.getUint32(i * 8 + 4));
    if (this.g.offsetInCluster(offset) !== 0) throw corrupt(`${this.path}: L1 entry ${i} points to an unaligned L2 table (0x${offset.toString(16)})`, this.path);
    return { offset, copied: (hi & HI_COPIED) !== 0 };
  }

  /**
   * The first L1 index from `from` whose entry is not zero, looking no further than the entry of byte `until`
   * (the L1 size where the table ends first: entries past it are unallocated too). Found by table-scan over the
   * table's 32-bit words, without a loop over every entry.
   */
  private zeroL1End(from: number, until: number): number {
    const last = Math.ceil(until / this.g.l2Span);
    const to = Math.min(last, this.l1Size);
    if (from >= to) return Math.max(from, last);
    if (this.l1.byteOffset % 4 !== 0) return from; // not seen (tables are read into fresh buffers): one entry at a time
    const words = new Uint32Array(this.l1.buffer, this.l1.byteOffset, this.l1Size * 2);
    const firstSet = endOfRun(words, from * 2, to * 2, 0) >> 1;
    return firstSet >= to ? last : firstSet;
  }

  async setL1Entry(i: number, offset: number, copied: boolean): Promise<void> {
    const hi = Math.floor(offset / 2 ** 32) | (copied ? HI_COPIED : 0);
    this.l1View.setUint32(i * 8, hi >>> 0);
    this.l1View.setUint32(i * 8 + 4, offset % 2 ** 32);
    await this.d.file.write(this.l1Offset + i * 8, this.l1.subarray(i * 8, i * 8 + 8));
  }

  async l2Table(offset: number): Promise<Uint8Array> {
    const { cache, order } = this.d;
    let t = this.l2Cache.get(offset) ?? cache.l2Table(offset);
    if (!t && order.posted.size) {
      // A table evicted while a write of it is under way must not be read back before that write lands.
      await Promise.allSettled(order.posted);
      t = this.l2Cache.get(offset) ?? cache.l2Table(offset);
    }
    if (!t) {
      t = await this.d.file.readBlock(offset, this.g.clusterSize, 'L2 table');
      this.l2Cache.set(offset, t);
    }
    return t;
  }

  /** Writes L2 entries [first, first + count); deferred refcount raises go to the file first (they may be what the entries point at). */
  async writeEntries(l2Offset: number, table: Uint8Array, first: number, count: number): Promise<void> {
    await this.d.cache.writeRefcounts();
    const es = this.g.l2EntrySize;
    const a = first * es;
    const b = (first + count) * es;
    await this.d.file.write(l2Offset + a, table.subarray(a, b));
    // Put the table back in the cache (it may have been evicted and re-read meanwhile).
    this.l2Cache.set(l2Offset, table);
  }

  /**
   * Defers L2 entries of new clusters whose data is written (write-back cache), and queues a write-back when
   * the cache holds more tables than the L2 cache would, so that memory stays bounded.
   */
  deferEntries(l2off: number, table: Uint8Array, first: number, count: number): void {
    const d = this.d;
    // Another table object noted for the offset cannot happen; stay correct anyway.
    if (!d.cache.noteL2(l2off, table, first, count)) d.order.post(this.writeEntries(l2off, table, first, count));
    if (d.cache.over(l2CacheCapacity(this.g.clusterSize))) d.order.queueWriteBack();
  }

  /** Drops a table from the cache (its cluster was freed). */
  forget(offset: number): void {
    this.l2Cache.delete(offset);
  }

  /** Drops cached L2 tables (after another actor rewrote them). */
  clear(): void {
    this.l2Cache.clear();
  }

  /**
   * The L2 table for L1 entry `i`, ready to be changed: allocated if missing, copied if shared with a
   * snapshot (refcount > 1), with OFLAG_COPIED set in the L1 entry.
   */
  async l2ForWrite(i: number): Promise<{ offset: number; table: Uint8Array }> {
    const d = this.d;
    const refs = await d.refcounts();
    const cs = this.g.clusterSize;
    const { offset, copied } = this.l1Entry(i);
    if (offset && copied) return { offset, table: await this.l2Table(offset) };
    if (offset) {
      const rc = await refs.get(this.g.clusterIndex(offset));
      if (rc === 0) throw corrupt(`${this.path}: L2 table ${i} is in use but its refcount is 0`, this.path);
      if (rc === 1) {
        await this.setL1Entry(i, offset, true);
        return { offset, table: await this.l2Table(offset) };
      }
      const copy = (await this.l2Table(offset)).slice();
      const fresh = await refs.alloc(1);
      await d.file.write(fresh, copy);
      this.l2Cache.set(fresh, copy);
      await this.setL1Entry(i, fresh, true);
      await refs.update(offset, cs, -1);
      return { offset: fresh, table: copy };
    }
    const fresh = await refs.alloc(1);
    const table = new Uint8Array(cs);
    await d.file.write(fresh, table);
    this.l2Cache.set(fresh, table);
    await this.setL1Entry(i, fresh, true);
    return { offset: fresh, table };
  }

  // ---------------------------------------------------------------- lookup

  /** Checks a standard entry's host offset and returns it. */
  checkedHost(e: L2Entry, guest: number): number {
    const host = hostOf(e);
    if (this.g.offsetInCluster(host) !== 0) {
      throw corrupt(`${this.path}: the cluster at guest offset ${guest} is mapped to an unaligned host offset 0x${host.toString(16)}`, this.path);
    }
    return host;
  }

  /**
   * The state of the guest range starting at `pos` (at most `maxLen` bytes): one cluster, or with standard
   * L2 entries a run of clusters of its L2 table in the same state (data: contiguous on the host).
   */
  async mappedRun(pos: number, maxLen: number): Promise<MappedRun> {
    const known = this.mappedRunIfCached(pos, maxLen);
    if (known) return known;
    const { offset: l2off } = this.l1Entry(this.g.l1Index(pos));
    return this.mappedRunInTable(await this.l2Table(l2off), pos, maxLen);
  }

  /**
   * mappedRun() without waiting, when its L2 table is in the cache (or there is none): walks over many clusters
   * then cost no promise each. Undefined when the table must be read first.
   */
  mappedRunIfCached(pos: number, maxLen: number): MappedRun | undefined {
    const { offset: l2off } = this.l1Entry(this.g.l1Index(pos));
    if (!l2off) {
      // A whole L2 table's range is unallocated, and so is that of every following L1 entry that is zero: answer
      // for all of them at once (a 1 TiB image's 2,048 entries were as many questions, and V8 compiled the path).
      return { kind: 'unallocated', length: Math.min(maxLen, this.zeroL1End(this.g.l1Index(pos) + 1, pos + maxLen) * this.g.l2Span - pos) };
    }
    const table = this.l2Cache.get(l2off);
    return table ? this.mappedRunInTable(table, pos, maxLen) : undefined;
  }

  /** mappedRun() in the given L2 table (the one of `pos`). */
  private mappedRunInTable(table: Uint8Array, pos: number, maxLen: number): MappedRun {
    const g = this.g;
    const cs = g.clusterSize;
    const l2Entries = g.l2Entries;
    const ci = g.clusterIndex(pos);
    const inner = g.offsetInCluster(pos);
    const len = Math.min(maxLen, cs - inner);
    const e = readEntry(table, g.l2IndexOfCluster(ci), g.extendedL2);
    if (isCompressedEntry(e.hi)) return { kind: 'compressed', length: len, entry: entryBig(e) };
    const host = this.checkedHost(e, ci * cs);
    if (!g.extendedL2) {
      const kind = standardKind(classify(e.hi, e.lo, false));
      // The following entries of this table in the same state (hosts contiguous where there are hosts) join
      // the run, read straight from the table's bytes: a run of clusters costs one lookup, not one each.
      let length = len;
      let idx = g.l2IndexOfCluster(ci) + 1;
      if (e.hi === 0 && e.lo === 0 && table.byteOffset % 4 === 0) {
        // Unallocated clusters (all-zero entries: most of a sparse image's tables) are skipped by table-scan, not
        // walked: 64 MiB spread over 1 TiB was half a million turns of the loop below, which V8 then compiled
        // (3.8 MB of malloc'd compiler memory that stayed).
        const want = Math.min(l2Entries, idx + Math.ceil((maxLen - length) / cs));
        const end = endOfRun(new Uint32Array(table.buffer, table.byteOffset, l2Entries * 2), idx * 2, want * 2, 0) >> 1;
        length = Math.min(maxLen, length + (end - idx) * cs);
        idx = end;
      }
      for (; length < maxLen && idx < l2Entries; idx++) {
        const p = idx * 8;
        const hi = be32(table, p);
        const lo = be32(table, p + 4);
        const t = classify(hi, lo, false);
        if (t === ClusterType.Compressed) break;
        const h = hostOffset(hi, lo);
        // A damaged entry (unaligned host) is left to its own run, which reports it.
        if (h % cs !== 0) break;
        if (standardKind(t) !== kind || (host ? h !== host + inner + length : h !== 0)) break;
        length += Math.min(cs, maxLen - length);
      }
      return host ? { kind, length, host: host + inner } : { kind, length };
    }
    if (e.zeroBits & e.allocBits) throw corrupt(`${this.path}: the cluster at guest offset ${ci * cs} has subclusters both allocated and zero`, this.path);
    if (!host && e.allocBits) throw corrupt(`${this.path}: the cluster at guest offset ${ci * cs} has allocated subclusters but no host cluster`, this.path);
    const sub = g.subclusterSize;
    const s0 = g.subclusterIndex(inner);
    const kind = subclusterKind(e, s0);
    let s = s0 + 1;
    while (s < SUBCLUSTERS && s * sub < inner + len && subclusterKind(e, s) === kind) s++;
    const length = Math.min(len, s * sub - inner);
    return host ? { kind, length, host: host + inner } : { kind, length };
  }

  // ---------------------------------------------------------------- moving the L1 table

  /** Replaces the active L1 table by a larger copy (qemu's exact-size growth), then frees the old one. */
  async growL1(entries: number): Promise<void> {
    const d = this.d;
    if (entries * 8 > MAX_L1_BYTES) throw new DiskError('EINVAL', `${this.path}: the L1 table would exceed 32 MiB (qemu's limit); the image cannot be that large with this cluster size`, this.path);
    const refs = await d.refcounts();
    const bytes = entries * 8;
    const at = await refs.alloc(this.g.sizeToClusters(bytes));
    const table = new Uint8Array(bytes);
    table.set(this.l1);
    await d.file.write(at, table);
    await d.file.sync();
    await writeHeaderFields(d.file, { l1Size: entries, l1TableOffset: at });
    // The switch is on disk before the old table is let go (a cache may otherwise keep the drop, lose the switch).
    await d.file.sync();
    const oldOffset = this.l1Offset;
    const oldSize = this.l1Size;
    this.l1 = table;
    this.l1View = new DataView(table.buffer);
    this.l1Offset = at;
    this.l1Size = entries;
    d.header.l1Size = entries;
    d.header.l1TableOffset = at;
    if (oldSize > 0) await refs.update(oldOffset, oldSize * 8, -1);
  }

  /** Points the header at another active L1 table (one write) and loads it. */
  async switchL1(offset: number, entries: number): Promise<void> {
    const d = this.d;
    await writeHeaderFields(d.file, { l1Size: entries, l1TableOffset: offset });
    this.l1Offset = offset;
    this.l1Size = entries;
    d.header.l1Size = entries;
    d.header.l1TableOffset = offset;
    await this.loadL1();
    this.l2Cache.clear();
  }
}

/** A standard entry's kind of run: zero flag, data (a host cluster), or unallocated; compressed is handled before. */
function standardKind(t: ClusterType): MappedRun['kind'] {
  return t === ClusterType.ZeroPlain || t === ClusterType.ZeroAlloc ? 'zero' : t === ClusterType.Normal ? 'data' : 'unallocated';
}
