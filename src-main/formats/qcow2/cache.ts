/**
 * The write-back metadata cache of an open qcow2 image: refcount blocks and L2 tables changed in memory and
 * not written yet, with the byte (refcount) or entry (L2) range that changed. One cache serves both kinds so
 * that their order on disk is decided in one place, as qemu's qcow2-cache.c orders them with cache
 * dependencies:
 *
 * - refcount blocks are written before any L2 entry (an entry may point at a cluster whose refcount was
 *   raised in the same batch: the refcount must be on disk first, or a crash leaves a cluster in use with
 *   refcount zero);
 * - an L2 entry is noted here only once its cluster's data has landed (the device's landing, see write.ts),
 *   so writing the entries never gets ahead of the data.
 *
 * Until its write has landed, a table noted here is never read back from the file: lookups ask the cache first.
 * Only raises are ever deferred (a refcount drop waits for nothing to point at the cluster, and is written
 * at once by Refcounts).
 */
import type { ImageFile } from '../../block/file';

interface Dirty {
  table: Uint8Array;
  lo: number;
  hi: number;
}

/** Writes L2 entries [first, first + count) of the table at `offset` (the device's own writer). */
export type L2Writer = (offset: number, table: Uint8Array, first: number, count: number) => Promise<void>;

export class WriteBackCache {
  /** Refcount blocks with deferred raises: per block offset, the block and the changed byte range. */
  private readonly refBlocks = new Map<number, Dirty>();
  /** L2 tables with deferred entries of new clusters: per table offset, the table and the entry range. */
  private readonly l2Tables = new Map<number, Dirty>();
  /** The write of the refcount blocks under way, if any (a block in it must not be read back before it lands). */
  private writingRefs?: Promise<unknown>;

  constructor(private readonly file: ImageFile) {}

  // ---------------------------------------------------------------- refcount blocks

  /** The in-memory refcount block at `offset` if it holds deferred changes. */
  refBlock(offset: number): Uint8Array | undefined {
    return this.refBlocks.get(offset)?.table;
  }

  /** The refcount block write under way, if any. */
  get refcountsWriting(): Promise<unknown> | undefined {
    return this.writingRefs;
  }

  /** Notes that bytes [lo, hi) of the refcount block at `offset` changed in memory. */
  noteRefcounts(offset: number, block: Uint8Array, lo: number, hi: number): void {
    note(this.refBlocks, offset, block, lo, hi);
  }

  /** Refcount blocks with deferred changes not written yet. */
  get dirtyRefBlocks(): number {
    return this.refBlocks.size;
  }

  /**
   * Writes every deferred refcount change. The caller writes what points at the clusters (L2 entries) only
   * after this; no allocation may run meanwhile (the device calls it from its serialized jobs).
   */
  async writeRefcounts(): Promise<void> {
    if (this.refBlocks.size === 0) return;
    const all = [...this.refBlocks];
    this.refBlocks.clear();
    const writing = Promise.all(all.map(([off, d]) => this.file.write(off + d.lo, d.table.subarray(d.lo, d.hi))));
    this.writingRefs = writing;
    try {
      await writing;
    } catch (err) {
      // Still owed: noted again, merged with whatever was deferred meanwhile.
      for (const [off, d] of all) note(this.refBlocks, off, d.table, d.lo, d.hi);
      throw err;
    } finally {
      if (this.writingRefs === writing) this.writingRefs = undefined;
    }
  }

  // ---------------------------------------------------------------- L2 tables

  /** The in-memory L2 table at `offset` if it holds deferred entries. */
  l2Table(offset: number): Uint8Array | undefined {
    return this.l2Tables.get(offset)?.table;
  }

  /**
   * Notes changed L2 entries [first, first + count) of `table` at `offset`. False when another table object
   * is noted for that offset (cannot happen: a table with deferred entries is never read back from the file);
   * the caller then writes the entries itself.
   */
  noteL2(offset: number, table: Uint8Array, first: number, count: number): boolean {
    const d = this.l2Tables.get(offset);
    if (d && d.table !== table) return false;
    note(this.l2Tables, offset, table, first, first + count);
    return true;
  }

  /** Whether the cache holds more than `limit` tables of either kind (then it is time to write it back). */
  over(limit: number): boolean {
    return this.l2Tables.size >= limit || this.refBlocks.size >= limit;
  }

  /** Writes everything: the refcount blocks, then the L2 entries that point at those clusters. */
  async writeBack(writeL2: L2Writer): Promise<void> {
    await this.writeRefcounts();
    if (this.l2Tables.size === 0) return;
    const all = [...this.l2Tables];
    this.l2Tables.clear();
    try {
      await Promise.all(all.map(([off, d]) => writeL2(off, d.table, d.lo, d.hi - d.lo)));
    } catch (err) {
      for (const [off, d] of all) note(this.l2Tables, off, d.table, d.lo, d.hi);
      throw err;
    }
  }
}

/** Adds [lo, hi) of `table` at `offset` to a dirty map, merging with what is noted there. */
function note(map: Map<number, Dirty>, offset: number, table: Uint8Array, lo: number, hi: number): void {
  const d = map.get(offset);
  if (d) {
    d.lo = Math.min(d.lo, lo);
    d.hi = Math.max(d.hi, hi);
  } else map.set(offset, { table, lo, hi });
}
