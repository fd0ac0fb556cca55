/**
 * qcow2 host cluster reference counts: the refcount table, a bounded cache of refcount blocks, cluster
 * allocation (first fit, as qemu does it, so images we grow look like the ones qemu grows) and refcount
 * changes. Every change is written through to the file at once, so callers can order their writes for crash
 * safety: a cluster's refcount is raised before anything points at it, and lowered only after nothing does.
 * The one exception is asked for by name: raises made with `defer` are noted in the image's write-back cache
 * (cache.ts), which writes them before anything that points at those clusters.
 * A crash in between leaves a leak (harmless, `check -r leaks` reclaims it), never a cluster in use with a
 * refcount of zero.
 */
import { LruCache } from '../../block/cache';
import { corrupt, DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { WriteBackCache } from './cache';
import { getRefcount, MAX_REFTABLE_BYTES, maxRefcount, setRefcount } from './layout';

/** Refcount blocks kept in memory: about 8 MiB whatever the cluster size, and never fewer than 4. */
function blockCacheCapacity(clusterSize: number): number {
  return Math.max(4, Math.floor((8 << 20) / clusterSize));
}

export interface RefcountOptions {
  file: ImageFile;
  clusterBits: number;
  refcountBits: number;
  tableOffset: number;
  tableClusters: number;
  /** Writes the refcount table location into the header (one small write, so the switch is atomic). */
  writeTableLocation: (offset: number, clusters: number) => Promise<void>;
  /** Told when a cluster's refcount drops to zero, so metadata caches keyed by host offset drop it. */
  onFreed?: (clusterOffset: number) => void;
  /** The image's write-back cache, where deferred raises are noted (a cache of its own when not given). */
  cache?: WriteBackCache;
}

export class Refcounts {
  readonly file: ImageFile;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly bits: number;
  /** Refcount entries per refcount block. */
  readonly perBlock: number;
  readonly max: number;
  tableOffset: number;
  tableClusters: number;
  /** Refcount block offsets; 0 = not allocated. */
  table: number[];
  private readonly blocks: LruCache<number, Uint8Array>;
  /** No free cluster lies below this index (qemu's free_cluster_index). */
  private freeIndex = 0;
  /** Clusters picked for a refcount block whose own refcount is not written yet; allocation skips them. */
  private readonly reserved = new Set<number>();
  /**
   * Where refcount changes made with `defer` wait to be written (per block, the changed byte range); until
   * then the block is never read back from the file.
   */
  readonly cache: WriteBackCache;
  private readonly writeTableLocation: RefcountOptions['writeTableLocation'];
  private readonly onFreed?: (clusterOffset: number) => void;

  private constructor(opts: RefcountOptions, table: number[]) {
    this.file = opts.file;
    this.clusterBits = opts.clusterBits;
    this.clusterSize = 2 ** opts.clusterBits;
    this.bits = opts.refcountBits;
    this.perBlock = (this.clusterSize * 8) / opts.refcountBits;
    this.max = maxRefcount(opts.refcountBits);
    this.tableOffset = opts.tableOffset;
    this.tableClusters = opts.tableClusters;
    this.table = table;
    this.blocks = new LruCache(blockCacheCapacity(this.clusterSize));
    this.writeTableLocation = opts.writeTableLocation;
    this.onFreed = opts.onFreed;
    this.cache = opts.cache ?? new WriteBackCache(opts.file);
  }

  /** Reads the refcount table (bounded by the file's length and qemu's 8 MiB limit). */
  static async load(opts: RefcountOptions): Promise<Refcounts> {
    const cs = 2 ** opts.clusterBits;
    const bytes = opts.tableClusters * cs;
    if (bytes > MAX_REFTABLE_BYTES) throw corrupt(`${opts.file.path}: the refcount table is too large (${opts.tableClusters} clusters)`, opts.file.path);
    const raw = await opts.file.readBlock(opts.tableOffset, bytes, 'refcount table');
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const table: number[] = new Array(bytes / 8);
    for (let i = 0; i < table.length; i++) {
      const hi = v.getUint32(i * 8);
      const lo = v.getUint32(i * 8 + 4);
      const off = hi * 2 ** 32 + lo;
      if (off === 0) {
        table[i] = 0;
        continue;
      }
      if (!Number.isSafeInteger(off) || off % cs !== 0) {
        throw corrupt(`${opts.file.path}: refcount block ${i} has an invalid offset 0x${off.toString(16)}`, opts.file.path);
      }
      table[i] = off;
    }
    return new Refcounts(opts, table);
  }

  get path(): string {
    return this.file.path;
  }

  private async block(tableIndex: number): Promise<Uint8Array | undefined> {
    const off = tableIndex < this.table.length ? this.table[tableIndex] : 0;
    if (!off) return undefined;
    let b = this.blocks.get(off) ?? this.cache.refBlock(off);
    const writing = b ? undefined : this.cache.refcountsWriting;
    if (writing) {
      // The block may be one whose deferred write is under way: read it back only once that landed.
      await writing.catch(() => undefined);
      b = this.blocks.get(off) ?? this.cache.refBlock(off);
    }
    if (!b) {
      b = await this.file.readBlock(off, this.clusterSize, `refcount block ${tableIndex}`);
      this.blocks.set(off, b);
    }
    return b;
  }

  /** The refcount of cluster `index` (0 where no refcount block covers it). */
  async get(index: number): Promise<number> {
    const b = await this.block(Math.floor(index / this.perBlock));
    return b ? getRefcount(b, index % this.perBlock, this.bits) : 0;
  }

  /**
   * Finds `n` contiguous free clusters with qemu's first-fit walk: the search starts at the lowest index that
   * may be free and moves that index past everything it looked at.
   */
  private async findFree(n: number): Promise<number> {
    let runStart = this.freeIndex;
    let runLen = 0;
    let i = this.freeIndex;
    while (runLen < n) {
      const ti = Math.floor(i / this.perBlock);
      const b = await this.block(ti);
      const blockEnd = (ti + 1) * this.perBlock;
      // Walk this refcount block synchronously: this is the hot loop of allocation.
      while (i < blockEnd && runLen < n) {
        const used = (b !== undefined && getRefcount(b, i % this.perBlock, this.bits) !== 0) || this.reserved.has(i);
        i++;
        if (used) {
          runStart = i;
          runLen = 0;
        } else runLen++;
      }
    }
    this.freeIndex = i;
    return runStart;
  }

  /** Finds `n` contiguous free clusters without counting them (the caller raises their refcounts next). */
  async findFreeClusters(n: number): Promise<number> {
    return (await this.findFree(n)) * this.clusterSize;
  }

  /** Counts clusters below `end` with a nonzero refcount, stopping once the count exceeds `stopAbove`. */
  async countInUse(end: number, stopAbove: number): Promise<number> {
    let count = 0;
    for (let i = 0; i < end && count <= stopAbove; ) {
      const ti = Math.floor(i / this.perBlock);
      const blockEnd = Math.min(end, (ti + 1) * this.perBlock);
      const b = await this.block(ti);
      if (b) count += countNonZero(b, i % this.perBlock, blockEnd - i, this.bits, stopAbove - count + 1);
      i = blockEnd;
    }
    return count;
  }

  /**
   * Allocates `n` contiguous clusters with refcount 1 and returns the byte offset of the first. With `defer`,
   * the new refcounts are only noted (see change); the caller must have them written (cache.writeRefcounts) before
   * anything on disk points at the clusters.
   */
  async alloc(n: number, defer = false): Promise<number> {
    if (n < 1) throw new DiskError('EINVAL', 'cannot allocate zero clusters');
    const start = await this.findFree(n);
    for (let i = start; i < start + n; i++) this.reserved.add(i);
    try {
      await this.change(start, n, +1, defer);
    } finally {
      for (let i = start; i < start + n; i++) this.reserved.delete(i);
    }
    return start * this.clusterSize;
  }

  /** Adds `delta` to the refcount of every cluster touched by the byte range [offset, offset + length); `defer` as in change(). */
  async update(offset: number, length: number, delta: number, defer = false): Promise<void> {
    if (length <= 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    await this.change(first, last - first + 1, delta, defer);
  }

  /**
   * Adds `delta` to the refcounts of clusters [first, first + count), one block write per refcount block.
   * With `defer` (raises only), the blocks are changed in memory and the changed bytes noted instead of
   * written, so that a run of allocations costs one write per block (cache.writeRefcounts). Structure changes on the
   * way (a new refcount block, a larger table) are still written at once.
   */
  async change(first: number, count: number, delta: number, defer = false): Promise<void> {
    if (defer && delta < 0) throw new DiskError('EINVAL', 'refcount drops are never deferred');
    let i = first;
    const end = first + count;
    while (i < end) {
      const ti = Math.floor(i / this.perBlock);
      const runEnd = Math.min(end, (ti + 1) * this.perBlock);
      if (delta > 0) await this.ensureBlock(ti);
      const b = await this.block(ti);
      if (!b) throw corrupt(`${this.path}: cluster ${i} has no refcount block but is in use`, this.path);
      const blockOff = this.table[ti];
      const freed: number[] = [];
      for (let j = i; j < runEnd; j++) {
        const k = j % this.perBlock;
        const old = getRefcount(b, k, this.bits);
        const now = old + delta;
        if (now < 0) throw corrupt(`${this.path}: the refcount of cluster ${j} would drop below zero`, this.path);
        if (now > this.max) {
          throw new DiskError('EINVAL', `${this.path}: the refcount of cluster ${j} would exceed ${this.max}, the largest a ${this.bits}-bit refcount holds`, this.path);
        }
        setRefcount(b, k, this.bits, now);
        if (now === 0) freed.push(j);
      }
      // Write back just the bytes that changed.
      const byteStart = Math.floor(((i % this.perBlock) * this.bits) / 8);
      const byteEnd = Math.ceil((((runEnd - 1) % this.perBlock) + 1) * this.bits / 8);
      if (defer) this.cache.noteRefcounts(blockOff, b, byteStart, byteEnd);
      else await this.file.write(blockOff + byteStart, b.subarray(byteStart, byteEnd));
      for (const j of freed) {
        if (j < this.freeIndex) this.freeIndex = j;
        this.onFreed?.(j * this.clusterSize);
      }
      i = runEnd;
    }
  }

  /**
   * Drops one reference per listed cluster (a cluster listed twice loses two), with one write per refcount
   * block touched instead of one per cluster: freeing the clusters of a whole L2 table (makeEmpty, discard,
   * a rewrite) then costs a handful of writes. The caller has already written (and synced) what no longer
   * points at them. Each block is checked whole before it changes, so a bad count leaves that block as it was.
   */
  async dropEach(clusters: number[]): Promise<void> {
    if (clusters.length === 0) return;
    const sorted = Float64Array.from(clusters).sort();
    for (let i = 0; i < sorted.length; ) {
      const ti = Math.floor(sorted[i] / this.perBlock);
      let j = i;
      while (j < sorted.length && Math.floor(sorted[j] / this.perBlock) === ti) j++;
      await this.dropInBlock(ti, sorted.subarray(i, j));
      i = j;
    }
  }

  /** dropEach for the sorted clusters of refcount block `ti`. */
  private async dropInBlock(ti: number, clusters: Float64Array): Promise<void> {
    const b = await this.block(ti);
    if (!b) throw corrupt(`${this.path}: cluster ${clusters[0]} has no refcount block but is in use`, this.path);
    // Validate first: every cluster's count must cover the references dropped from it.
    for (let i = 0; i < clusters.length; ) {
      let j = i + 1;
      while (j < clusters.length && clusters[j] === clusters[i]) j++;
      if (getRefcount(b, clusters[i] % this.perBlock, this.bits) < j - i) {
        throw corrupt(`${this.path}: the refcount of cluster ${clusters[i]} would drop below zero`, this.path);
      }
      i = j;
    }
    const freed: number[] = [];
    for (const c of clusters) {
      const k = c % this.perBlock;
      const now = getRefcount(b, k, this.bits) - 1;
      setRefcount(b, k, this.bits, now);
      if (now === 0) freed.push(c);
    }
    const first = clusters[0] % this.perBlock;
    const last = clusters[clusters.length - 1] % this.perBlock;
    const byteStart = Math.floor((first * this.bits) / 8);
    const byteEnd = Math.ceil(((last + 1) * this.bits) / 8);
    // Bytes in between that did not change are written as they are in memory (the block's current state).
    await this.file.write(this.table[ti] + byteStart, b.subarray(byteStart, byteEnd));
    for (const c of freed) {
      if (c < this.freeIndex) this.freeIndex = c;
      this.onFreed?.(c * this.clusterSize);
    }
  }

  /** Makes sure refcount block `ti` exists, allocating (and if need be growing the table) for it. */
  private async ensureBlock(ti: number): Promise<void> {
    if (ti < this.table.length && this.table[ti]) return;
    if (ti >= this.table.length) {
      await this.growTable(ti + 1);
      if (this.table[ti]) return; // the grown table's own refcount blocks covered it
    }
    const at = await this.findFree(1);
    this.reserved.add(at);
    try {
      const block = new Uint8Array(this.clusterSize);
      if (Math.floor(at / this.perBlock) === ti) {
        // The new block describes itself.
        setRefcount(block, at % this.perBlock, this.bits, 1);
      } else {
        // Described by another block (which this may allocate in turn; that ends at a self-describing one).
        await this.change(at, 1, +1);
      }
      if (ti >= this.table.length) await this.growTable(ti + 1);
      const off = at * this.clusterSize;
      await this.file.write(off, block);
      this.blocks.set(off, block);
      // Hook the block up last: until now nothing points at it, so a crash only leaks.
      this.table[ti] = off;
      const e = new Uint8Array(8);
      new DataView(e.buffer).setBigUint64(0, BigInt(off));
      await this.file.write(this.tableOffset + ti * 8, e);
    } finally {
      this.reserved.delete(at);
    }
  }

  /**
   * Replaces the refcount table by a larger one placed past the end of everything in use, together with
   * the refcount blocks needed to describe the new table itself. The header switches to it in one write;
   * then the old table's clusters are freed.
   */
  private async growTable(minEntries: number): Promise<void> {
    const cs = this.clusterSize;
    const entriesPerCluster = cs / 8;
    const newClusters = Math.max(Math.ceil(minEntries / entriesPerCluster), Math.ceil((this.tableClusters * 3) / 2), this.tableClusters + 1);
    if (newClusters * cs > MAX_REFTABLE_BYTES) {
      throw new DiskError('EUNSUPPORTED', `${this.path}: the refcount table would exceed 8 MiB (qemu's limit); the image cannot grow further`, this.path);
    }
    // Start past the end of the file, past anything handed out by the free-cluster search (it may not be
    // counted yet) and past anything reserved.
    let start = Math.max(Math.ceil(this.file.size / cs), this.freeIndex);
    for (const r of this.reserved) if (r >= start) start = r + 1;
    for (;;) {
      // Number of new refcount blocks needed to describe [start, start + newClusters + blocks).
      let blocks = 0;
      for (;;) {
        const end = start + newClusters + blocks;
        let need = 0;
        for (let t = Math.floor(start / this.perBlock); t <= Math.floor((end - 1) / this.perBlock); t++) {
          if (!(t < this.table.length && this.table[t])) need++;
        }
        if (need === blocks) break;
        blocks = need;
      }
      const total = newClusters + blocks;
      // The range must be free (a damaged image may count clusters past its end).
      let busy = -1;
      for (let i = start; i < start + total; i++) {
        if (this.reserved.has(i) || (await this.get(i)) !== 0) busy = i;
      }
      if (busy < 0) break;
      start = busy + 1;
    }
    const end = start + newClusters;
    const newTable = this.table.slice();
    newTable.length = newClusters * entriesPerCluster;
    newTable.fill(0, this.table.length);
    // Place the new refcount blocks right after the table.
    const newBlocks = new Map<number, Uint8Array>();
    let next = end;
    for (let t = Math.floor(start / this.perBlock); ; t++) {
      const lastCluster = next - 1;
      if (t > Math.floor(lastCluster / this.perBlock)) break;
      if (!newTable[t]) {
        newTable[t] = next * cs;
        newBlocks.set(t, new Uint8Array(cs));
        next++;
      }
    }
    const rangeEnd = next;
    // Count the table and the new blocks: in the new blocks directly, in existing ones through change().
    for (let i = start; i < rangeEnd; i++) {
      const t = Math.floor(i / this.perBlock);
      const nb = newBlocks.get(t);
      if (nb) setRefcount(nb, i % this.perBlock, this.bits, 1);
    }
    for (let i = start; i < rangeEnd; ) {
      const t = Math.floor(i / this.perBlock);
      const runEnd = Math.min(rangeEnd, (t + 1) * this.perBlock);
      if (!newBlocks.has(t)) await this.change(i, runEnd - i, +1);
      i = runEnd;
    }
    for (const [t, b] of newBlocks) await this.file.write(newTable[t], b);
    const raw = new Uint8Array(newClusters * cs);
    const v = new DataView(raw.buffer);
    newTable.forEach((off, i) => {
      if (off) v.setBigUint64(i * 8, BigInt(off));
    });
    await this.file.write(start * cs, raw);
    await this.file.sync();
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    await this.writeTableLocation(start * cs, newClusters);
    // The switch is on disk before the old table is let go (a cache may otherwise keep the drop, lose the switch).
    await this.file.sync();
    this.table = newTable;
    this.tableOffset = start * cs;
    this.tableClusters = newClusters;
    for (const [t, b] of newBlocks) this.blocks.set(newTable[t], b);
    await this.change(oldOffset / cs, oldClusters, -1);
  }

  /** Host clusters covered by the refcount structures (for callers that walk everything, like snapshots). */
  get coveredClusters(): number {
    return this.table.length * this.perBlock;
  }
}

/**
 * How many of the `n` refcount entries from `first` in a block are nonzero, counting at most `limit`. Whole
 * bytes are tested where entries are at least a byte wide: whether an entry is zero needs no decoding.
 */
function countNonZero(b: Uint8Array, first: number, n: number, bits: number, limit: number): number {
  let count = 0;
  if (bits < 8) {
    for (let j = first; j < first + n && count < limit; j++) if (getRefcount(b, j, bits) !== 0) count++;
    return count;
  }
  const bytes = bits / 8;
  for (let p = first * bytes, end = (first + n) * bytes; p < end && count < limit; p += bytes) {
    let any = 0;
    for (let k = 0; k < bytes; k++) any |= b[p + k];
    if (any !== 0) count++;
  }
  return count;
}
