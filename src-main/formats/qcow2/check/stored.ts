/**
 * The refcounts a qcow2 image stores, as the check reads them: refcount blocks through a bounded cache
 * (block/cache.ts) with a memo of the block used last, read ahead by passes that write nothing, and written
 * back one entry at a time by the in-place repairs (or noted only, during a dry run: switch.ts).
 */
import { LruCache } from '../../../block/cache';
import { DiskError } from '../../../block/errors';
import { reftableOffset } from '../entry';
import { getRefcount, setRefcount } from '../layout';

/** The block layer's limit on request offsets (INT64_MAX, less alignment): metadata beyond it cannot be read. */
const MAX_READABLE_OFFSET = 2 ** 63 - 2 ** 32;
/** Stored refcount blocks kept in memory by the check. */
const STORED_BLOCKS_CACHED = 64;
/** At most this many bytes of refcount blocks are read ahead of the comparison. */
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/** What the stored refcounts use of the check (the Checker, context.ts, hands in itself). */
export interface StoredRefcountsSource {
  readonly clusterSize: number;
  readonly refcountBits: number;
  /** Refcount entries per refcount block. */
  readonly refblockEntries: number;
  /** The refcount table as loaded, as big-endian halves (it is reloaded: read it each time). */
  readonly reftable: Uint32Array;
  readonly reftableEntries: number;
  /** Set during a dry run of the in-place repair: refcounts are noted here instead of written. */
  readonly dry?: Map<number, number>;
  readPadded(offset: number, length: number): Promise<Uint8Array>;
  /** A guarded metadata write (never over another structure). */
  write(offset: number, data: Uint8Array, ignore: 'refcount block'): Promise<void>;
}

/** The refcounts stored in the image, read through a bounded cache of refcount blocks (block/cache.ts). */
export class StoredRefcounts {
  private readonly cache = new LruCache<number, Uint8Array>(STORED_BLOCKS_CACHED);
  /** The block used last (most lookups fall in the same block as the one before). */
  private lastOffset = -1;
  private lastBlock: Uint8Array | undefined;
  private readonly pending = new Map<number, Promise<Uint8Array>>();

  constructor(private readonly c: StoredRefcountsSource) {}

  clear(): void {
    this.cache.clear();
    this.pending.clear();
    this.lastOffset = -1;
    this.lastBlock = undefined;
  }

  /** Offset of refcount block `index` (0 = none), or -1 when the table entry is not cluster aligned. */
  blockOffset(index: number): number {
    const c = this.c;
    if (index >= c.reftableEntries) return 0;
    const off = reftableOffset(c.reftable[2 * index], c.reftable[2 * index + 1]);
    // qemu cannot read at offsets near 2^63 (the block layer refuses them) or inside a cluster.
    if (off % c.clusterSize !== 0 || off > MAX_READABLE_OFFSET) return -1;
    return off;
  }

  /**
   * Starts reading the refcount blocks of the first `count` refcount table entries (as many as the cache
   * keeps), for a pass that writes nothing; block() takes them from here.
   */
  readAhead(count: number): void {
    const most = Math.min(STORED_BLOCKS_CACHED, Math.floor(READ_AHEAD_BYTES / this.c.clusterSize));
    for (let index = 0; index < count && this.pending.size < most; index++) {
      const off = this.blockOffset(index);
      if (off <= 0 || this.pending.has(off)) continue;
      const p = this.c.readPadded(off, this.c.clusterSize);
      p.catch(() => undefined); // a failure surfaces when block() asks for it
      this.pending.set(off, p);
    }
  }

  async block(offset: number): Promise<Uint8Array> {
    if (offset === this.lastOffset && this.lastBlock) return this.lastBlock;
    let b = this.cache.get(offset);
    if (!b) {
      const ahead = this.pending.get(offset);
      this.pending.delete(offset);
      b = await (ahead ?? this.c.readPadded(offset, this.c.clusterSize));
      this.cache.set(offset, b);
    }
    // The memo always holds the block object last handed out for its offset, so writes through set() land in it.
    this.lastOffset = offset;
    this.lastBlock = b;
    return b;
  }

  /**
   * The stored refcount of a cluster when no read is needed: a number, undefined when it cannot be read
   * (unaligned refcount block), or null when its refcount block must be read first (get() does). The walks
   * call this once per allocated cluster: an await each would cost more than the rest of the check.
   */
  peek(cluster: number): number | undefined | null {
    const c = this.c;
    if (c.dry) {
      const planned = c.dry.get(cluster);
      if (planned !== undefined) return planned;
    }
    const index = Math.floor(cluster / c.refblockEntries);
    const off = this.blockOffset(index);
    if (off < 0) return undefined;
    if (off === 0) return 0;
    let b: Uint8Array | undefined;
    if (off === this.lastOffset) b = this.lastBlock;
    else {
      b = this.cache.get(off);
      if (!b) return null;
      this.lastOffset = off;
      this.lastBlock = b;
    }
    return getRefcount(b!, cluster - index * c.refblockEntries, c.refcountBits);
  }

  /** The stored refcount of a cluster, or undefined when it cannot be read (unaligned refcount block). */
  async get(cluster: number): Promise<number | undefined> {
    const v = this.peek(cluster);
    if (v !== null) return v;
    await this.block(this.blockOffset(Math.floor(cluster / this.c.refblockEntries)));
    return this.peek(cluster) as number;
  }

  /** A refcount for a message: 64-bit values above 2^53 (garbage, but qemu prints them) read exactly. */
  async shown(cluster: number, value: number): Promise<number | bigint> {
    const c = this.c;
    if (value <= Number.MAX_SAFE_INTEGER || c.refcountBits !== 64) return value;
    const index = Math.floor(cluster / c.refblockEntries);
    const b = await this.block(this.blockOffset(index));
    return new DataView(b.buffer).getBigUint64((cluster - index * c.refblockEntries) * 8);
  }

  /** Sets a stored refcount; only called for clusters whose refcount block exists. */
  async set(cluster: number, value: number): Promise<void> {
    const c = this.c;
    if (c.dry) {
      c.dry.set(cluster, value);
      return;
    }
    const index = Math.floor(cluster / c.refblockEntries);
    const off = this.blockOffset(index);
    if (off <= 0) throw new DiskError('EIO', `no refcount block for cluster ${cluster}`);
    const b = await this.block(off);
    const e = cluster - index * c.refblockEntries;
    setRefcount(b, e, c.refcountBits, value);
    const bytes = c.refcountBits >= 8 ? c.refcountBits / 8 : 1;
    const start = c.refcountBits >= 8 ? e * bytes : Math.floor(e / (8 / c.refcountBits));
    await c.write(off + start, b.subarray(start, start + bytes), 'refcount block');
  }
}
