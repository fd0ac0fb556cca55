/**
 * An open qcow2 image as a BlockDevice (docs/interop/qcow2.txt): it implements Qcow2State (state.ts) — the
 * image's state and its parts, each in its own file: mapping tables (tables.ts), write-back metadata cache
 * (cache.ts), job order (write-order.ts), header (header.ts), compressed clusters (compressed-clusters.ts),
 * refcounts (refcount.ts), cluster arithmetic (geometry.ts) — and the BlockDevice calls, which delegate to
 * read.ts, write.ts, zero.ts, discard.ts, compress.ts, resize.ts and backing-edit.ts. Extended L2 entries
 * (32 subclusters per cluster) are handled throughout.
 */
import { checkRange } from '../../block/bytes';
import { DiskError, toDiskError, readOnlyError } from '../../block/errors';
import { resolveBackingPath } from '../../block/backing-path';
import { ImageFile } from '../../block/file';
import type { BlockDevice, Extent, OpenOptions } from '../../block/types';
import { WriteBackCache } from './cache';
import { writeCompressed } from './compress';
import { CompressedClusters } from './compressed-clusters';
import { discard, discardRefusal } from './discard';
import type { QcowEncryption } from './encryption';
import { makeEmpty, setBackingFile } from './backing-edit';
import { backingFormatName, checkFeatures, HeaderState } from './header';
import { WriteOrder } from './write-order';
import { readLayout, type Qcow2Header, type Qcow2Layout } from './layout';
import { readAt, statusAt } from './read';
import { Refcounts } from './refcount';
import { readAligned, sectorAligned, writeAligned, writeZeroesAligned } from './sector-io';
import { preallocate, resize } from './resize';
import { pointAtSnapshot } from './snapshot/open-snapshot';
import { readSnapshotTable } from './snapshot/table-codec';
import type { Qcow2State } from './state';
import { Qcow2Geometry } from './geometry';
import { Tables } from './tables';
import { write } from './write';
import { writeZeroes } from './zero';
import { copyIn, storedAt } from './copy-in';

export class Qcow2Device implements BlockDevice, Qcow2State {
  readonly format = 'qcow2' as const;
  readonly geometry: Qcow2Geometry;
  readonly header: Qcow2Header;
  readonly headerState: HeaderState;
  readonly cache: WriteBackCache;
  readonly order: WriteOrder;
  readonly tables: Tables;
  readonly compressed: CompressedClusters;
  private refs?: Refcounts;
  private closed = false;
  private noFlush = false;
  /** WriteOrder.jobsStarted when the last flush synced (-1: never). */
  private flushedAtJob = -1;
  /** The data cipher of an encrypted image (encryption.ts); data I/O is in whole sectors then. */
  encryption?: QcowEncryption;
  /** Whether the image looks preallocated with metadata only (read.ts decides it once). */
  preallocDetected?: boolean;

  constructor(
    readonly file: ImageFile,
    readonly layout: Qcow2Layout,
    readonly readOnly: boolean,
    readonly backing: BlockDevice | undefined,
  ) {
    const h = layout.header;
    this.header = h;
    this.geometry = Qcow2Geometry.of(layout);
    this.headerState = new HeaderState(file, h);
    this.cache = new WriteBackCache(file);
    this.tables = new Tables(this);
    const writeL2 = (off: number, table: Uint8Array, first: number, count: number) => this.tables.writeEntries(off, table, first, count);
    this.order = new WriteOrder(() => this.cache.writeBack(writeL2));
    this.compressed = new CompressedClusters(this);
  }

  get path(): string {
    return this.file.path;
  }
  /** BlockDevice.clusterSize: the allocation unit convert, rebase and rw write whole. */
  get clusterSize(): number {
    return this.geometry.clusterSize;
  }
  get size(): number {
    return this.header.size;
  }
  get version(): 2 | 3 {
    return this.header.version;
  }

  /** L2 table offset from L1 entry `i` (0 = none) and whether it is marked as exclusively owned. */
  l1Entry(i: number): { offset: number; copied: boolean } {
    return this.tables.l1Entry(i);
  }

  /** The refcount structures, loaded on first use. */
  async refcounts(): Promise<Refcounts> {
    if (!this.refs) {
      const h = this.header;
      this.refs = await Refcounts.load({
        file: this.file,
        clusterBits: h.clusterBits,
        refcountBits: this.layout.refcountBits,
        tableOffset: h.refcountTableOffset,
        tableClusters: h.refcountTableClusters,
        cache: this.cache,
        writeTableLocation: (offset, clusters) => this.headerState.setRefcountTable(offset, clusters),
        onFreed: (off) => {
          this.tables.forget(off);
          this.compressed.onFreed(off);
        },
      });
    }
    return this.refs;
  }

  /** Before the first change (header.ts): refcounts loaded, autoclear bits cleared, dirty bit set with lazy refcounts. */
  beginWrite(): Promise<void> {
    return this.headerState.beginWrite(() => this.refcounts());
  }

  /** Runs a mutation in the image's job order (write-order.ts). */
  serial<T>(fn: () => Promise<T>, posting: boolean | 'settles-itself' = false): Promise<T> {
    return this.order.serial(fn, posting);
  }

  checkRange(offset: number, length: number): void {
    checkRange(this.size, offset, length, this.path);
  }

  checkWritable(): void {
    if (this.readOnly) throw readOnlyError(this.path);
    if (this.closed) throw new DiskError('EINVAL', `${this.path}: the image is closed`, this.path);
  }

  // ---------------------------------------------------------------- BlockDevice

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkRange(offset, into.length);
    try {
      if (this.encryption && !sectorAligned(offset, into.length)) await readAligned(this, offset, into);
      else await readAt(this, offset, into);
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  async status(offset: number, length: number): Promise<Extent> {
    this.checkRange(offset, length);
    if (length === 0) throw new DiskError('EINVAL', `${this.path}: status of an empty range`, this.path);
    try {
      return await statusAt(this, offset, length);
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.encryption && !sectorAligned(offset, data.length)) return writeAligned(this, offset, data);
    return write(this, offset, data);
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    if (this.encryption && !sectorAligned(offset, length)) return writeZeroesAligned(this, offset, length);
    return writeZeroes(this, offset, length);
  }

  storedAt(offset: number, length: number): Promise<{ file: ImageFile; offset: number; length: number } | undefined> {
    return storedAt(this, offset, length);
  }

  copyIn(offset: number, length: number, from: ImageFile, fromOffset: number): Promise<number> {
    return copyIn(this, offset, length, from, fromOffset);
  }

  /** Data as it goes to host offset `host` (guest `guest`): encrypted in a copy when the image is encrypted. */
  sealed(data: Uint8Array, host: number, guest: number): Uint8Array {
    return this.encryption ? this.encryption.encrypted(data, host, guest) : data;
  }

  discard(offset: number, length: number): Promise<void> {
    return discard(this, offset, length);
  }

  /**
   * BlockDevice.discardRefusal: discard.ts's, from the header; a read-only device adds what opening it for
   * writing refuses (not closed cleanly, marked corrupt), so a look before writing says it in the run's words.
   */
  discardRefusal(): string | undefined {
    const refusal = discardRefusal(this);
    if (refusal !== undefined || !this.readOnly) return refusal;
    try {
      checkFeatures(this.layout, this.path, true);
      return undefined;
    } catch (err) {
      return toDiskError(err, this.path).message.replace(`${this.path}: `, '');
    }
  }

  writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    // As qemu: compressed clusters are never encrypted, so they are not written into an encrypted image.
    if (this.encryption) return Promise.reject(new DiskError('EUNSUPPORTED', `${this.path}: compressed clusters cannot be written into an encrypted image`, this.path));
    return writeCompressed(this, offset, data);
  }

  resize(newSize: number, shrink: boolean): Promise<void> {
    return resize(this, newSize, shrink);
  }

  setBackingFile(name: string | undefined, format: string | undefined): Promise<void> {
    return setBackingFile(this, name, format);
  }

  makeEmpty(): Promise<void> {
    return makeEmpty(this);
  }

  preallocate(full: boolean): Promise<void> {
    return preallocate(this, full);
  }

  /** Drops cached L2 tables and inflated clusters (after another actor rewrote them). */
  dropCaches(): void {
    this.tables.clear();
    this.compressed.clear();
  }

  /** cache=unsafe: no syncs at flush and close (the other syncs of rare metadata moves stay). */
  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  async flush(): Promise<void> {
    if (this.noFlush) return;
    await this.order.serial(async () => {
      await this.file.sync();
      this.flushedAtJob = this.order.jobsStarted;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Posted writes are waited for inside the job, so that the file is closed even when one of them failed.
    await this.order.serial(async () => {
      this.closed = true;
      try {
        await this.order.settle();
        // Nothing ran since a flush (this close is the one job after it): that sync holds everything already.
        const flushedJustBefore = this.flushedAtJob === this.order.jobsStarted - 1;
        const headerWritten = await this.headerState.markClean(this.noFlush);
        if (!this.readOnly && !this.noFlush && (headerWritten || !flushedJustBefore)) await this.file.sync();
      } finally {
        this.encryption?.close();
        await this.file.close();
        await this.backing?.close();
      }
    }, 'settles-itself');
  }
}

/** Opens a qcow2 image and, when the policy allows, its backing file. */
export async function openQcow2(path: string, opts: OpenOptions): Promise<Qcow2Device> {
  const file = await ImageFile.open(path, !opts.readOnly);
  let backing: BlockDevice | undefined;
  let encryption: QcowEncryption | undefined;
  try {
    const layout = await readLayout(file);
    checkFeatures(layout, path, !opts.readOnly);
    // The snapshot table is read at open as qemu reads it, so a damaged one stops map and convert as it stops info.
    await readSnapshotTable(file, layout);
    if (opts.snapshot !== undefined) await pointAtSnapshot(file, layout, opts.snapshot, opts.readOnly);
    if (layout.backingFile !== undefined && opts.backingPolicy !== 'none') {
      const full = resolveBackingPath(path, layout.backingFile, opts.backingPolicy);
      backing = await opts.openBacking(full, backingFormatName(layout.backingFormat, path), true);
    }
    const dev = new Qcow2Device(file, layout, opts.readOnly, backing);
    // The ciphers (and node:crypto) are loaded only for an encrypted image: info of a plain one stays quick.
    if (layout.header.cryptMethod !== 0) dev.encryption = encryption = await (await import('./encryption')).openEncryption(file, layout, opts);
    await dev.tables.loadL1();
    if (!opts.readOnly) await dev.refcounts();
    return dev;
  } catch (err) {
    encryption?.close();
    await file.close();
    await backing?.close().catch(() => undefined);
    throw toDiskError(err, path);
  }
}
