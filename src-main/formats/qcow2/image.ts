import { checkRange } from '../../block/bytes';
/**
 * An open qcow2 image: the L1/L2 walk (with a bounded cache of L2 tables), reads through compressed, zero,
 * unallocated and backing-file clusters, and writes with copy-on-write, cluster allocation and refcount
 * upkeep (docs/interop/qcow2.txt). Extended L2 entries (32 subclusters per cluster) are handled throughout.
 *
 * Write order, for crash safety: a new cluster's refcount is raised when it is allocated, then its data is
 * written, then the L2 entry (and L1 entry) that points to it; an old cluster's refcount is lowered only after
 * nothing points to it. A crash at any point leaks clusters at worst.
 *
 * Sequential writes of new clusters (convert) keep that order while batching: the refcount raises and the L2
 * entries are kept in memory and written in runs (refcounts first, then entries, only for clusters whose data
 * has landed), before any other kind of job, at flush and at close; and a write's data may still be on its way
 * while the next write allocates, its entries set once it has landed (see writeNewClusters).
 */
import type * as Zlib from 'node:zlib';
import type * as Fzstd from 'fzstd';
import { FORMAT_NAMES, type FormatName } from '../../../src-shared/api';
import { LruCache } from '../../block/cache';
import { corrupt, DiskError, toDiskError } from '../../block/errors';
import { resolveBackingPath } from '../../block/backing-path';
import { ImageFile } from '../../block/file';
import type { BlockDevice, Extent, OpenOptions } from '../../block/types';
import {
  COMPAT_LAZY_REFCOUNTS,
  COMPRESSION_ZLIB,
  COMPRESSION_ZSTD,
  compressedExtent,
  encodeCompressedEntry,
  INCOMPAT_COMPRESSION,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  readLayout,
  type Qcow2Header,
  type Qcow2Layout,
} from './layout';
import { Refcounts } from './refcount';

// The codecs are loaded on first use: most commands never meet a compressed cluster, and start-up time counts.
let zlibModule: typeof Zlib | undefined;
let fzstdModule: typeof Fzstd | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zlib = (): typeof Zlib => (zlibModule ??= require('node:zlib') as typeof Zlib);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fzstd = (): typeof Fzstd => (fzstdModule ??= require('fzstd') as typeof Fzstd);

/** qemu's deflate parameters for compressed clusters: raw deflate, 4 KiB window, default level. */
const DEFLATE_OPTIONS = { windowBits: 12, memLevel: 9 };

/** Clusters at least this large are compressed on the thread pool (measured: smaller ones are faster inline). */
const ASYNC_DEFLATE_MIN = 32 * 1024;

/** Compresses one cluster on the thread pool, so that several clusters are compressed at once. */
function deflateCluster(data: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => zlib().deflateRaw(data, DEFLATE_OPTIONS, (err, out) => (err ? reject(err) : resolve(out))));
}

export const HI_COPIED = 0x80000000;
const HI_COMPRESSED = 0x40000000;
const SUBCLUSTERS = 32;
const ALL_SUBCLUSTERS = 0xffffffff;

/** L2 tables kept in memory: about 16 MiB whatever the cluster size, never fewer than 4 tables. */
function l2CacheCapacity(clusterSize: number): number {
  return Math.max(4, Math.floor((16 << 20) / clusterSize));
}

/** One L2 entry, split into 32-bit words (bigint arithmetic is kept off the hot path). */
export interface L2Entry {
  hi: number;
  lo: number;
  /** Extended L2: "reads as zero" bits (bitmap bits 32-63) and allocation bits (bitmap bits 0-31). */
  zeroBits: number;
  allocBits: number;
}

/** A guest range inside one cluster with one state. */
interface Piece {
  kind: 'data' | 'zero' | 'unallocated' | 'compressed';
  length: number;
  /** Host offset of the piece's first byte, where the image holds a cluster for it. */
  host?: number;
  /** The compressed cluster descriptor. */
  entry?: bigint;
}

function be32(b: Uint8Array, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}

function putBe32(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}

export function hostOf(e: L2Entry): number {
  return (e.hi & 0x00ffffff) * 2 ** 32 + ((e.lo & 0xfffffe00) >>> 0);
}

export function entryBig(e: L2Entry): bigint {
  return (BigInt(e.hi >>> 0) << 32n) | BigInt(e.lo >>> 0);
}

/** Offsets of header fields we rewrite in place (small single writes; the rest of the header is untouched). */
const HDR_SIZE = 24;
const HDR_L1 = 36; // l1_size (4) then l1_table_offset (8)
const HDR_REFTABLE = 48; // refcount_table_offset (8) then refcount_table_clusters (4)
const HDR_SNAPSHOTS = 60; // nb_snapshots (4) then snapshots_offset (8)
const HDR_INCOMPAT = 72;
const HDR_AUTOCLEAR = 88;

export class Qcow2Device implements BlockDevice {
  readonly format = 'qcow2' as const;
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly extendedL2: boolean;
  readonly l2Entries: number;
  readonly l2EntrySize: number;
  readonly subclusterSize: number;
  readonly header: Qcow2Header;
  l1Size: number;
  l1Offset: number;
  /** The active L1 table as stored (big-endian entries). */
  l1: Uint8Array;
  private l1View: DataView;
  private readonly l2Cache: LruCache<number, Uint8Array>;
  private readonly inflated = new LruCache<number, Uint8Array>(2);
  private refs?: Refcounts;
  private writeBegun = false;
  private dirtySetByUs = false;
  private closed = false;
  /** Where the next compressed cluster may go (qemu's free_byte_offset); 0 = start a new cluster. */
  private freeByteOffset = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private preallocDetected?: boolean;
  private noFlush = false;
  /**
   * Work that writes started and no job waits for (see post and writeNewClusters): L2 writes, and new clusters
   * whose data is being written; and the first of them that failed.
   */
  private readonly posted = new Set<Promise<void>>();
  private postedFailure?: { err: unknown };
  /** Guest clusters whose new host clusters are being written; their L2 entries change when that is done. */
  private readonly landing = new Map<number, Promise<void>>();
  /**
   * L2 entries of new clusters changed in memory and not written yet: per table offset, the table and the
   * entry range. They are written (after the deferred refcounts) by writeDeferredMetadata, which every job
   * other than a plain write runs first; until then their tables are never read back from the file.
   */
  private readonly deferredL2 = new Map<number, { table: Uint8Array; lo: number; hi: number }>();
  private metadataFlushQueued = false;

  constructor(
    readonly file: ImageFile,
    readonly layout: Qcow2Layout,
    readonly readOnly: boolean,
    readonly backing: BlockDevice | undefined,
  ) {
    const h = layout.header;
    this.header = h;
    this.clusterSize = layout.clusterSize;
    this.clusterBits = h.clusterBits;
    this.extendedL2 = layout.extendedL2;
    this.l2Entries = layout.l2Entries;
    this.l2EntrySize = layout.l2EntrySize;
    this.subclusterSize = this.clusterSize / SUBCLUSTERS;
    this.l1Size = h.l1Size;
    this.l1Offset = h.l1TableOffset;
    this.l1 = new Uint8Array(0);
    this.l1View = new DataView(this.l1.buffer);
    this.l2Cache = new LruCache(l2CacheCapacity(this.clusterSize));
  }

  get path(): string {
    return this.file.path;
  }
  get size(): number {
    return this.header.size;
  }
  get version(): 2 | 3 {
    return this.header.version;
  }

  /**
   * Runs mutations one at a time, in call order. Only plain writes (`posting`) may start while L2 writes
   * posted by earlier writes are still under way; every other job waits for them first, so it sees them
   * done, in order before its own writes and syncs.
   */
  serial<T>(fn: () => Promise<T>, posting: boolean | 'settles-itself' = false): Promise<T> {
    const job = async (): Promise<T> => {
      if (posting === true) this.throwPostedFailure();
      else if (!posting) await this.settlePosted();
      return fn();
    };
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Starts an L2 write that the current job does not wait for. Allowed only for entries whose clusters'
   * data and refcounts are already written and when no refcount drop depends on the write: the file then
   * holds either the old or the new entry, and both are consistent.
   */
  private post(write: Promise<void>): void {
    const p: Promise<void> = write.then(
      () => {
        this.posted.delete(p);
      },
      (err: unknown) => {
        this.posted.delete(p);
        this.postedFailure ??= { err };
      },
    );
    this.posted.add(p);
  }

  /** Waits until no cluster of [first, last] is landing (a job that touches a cluster sees it done). */
  private async awaitLanding(first: number, last: number): Promise<void> {
    if (this.landing.size === 0) return;
    for (let c = first; c <= last; c++) {
      const l = this.landing.get(c);
      if (l) await l.catch(() => undefined);
    }
  }

  /**
   * Waits for every posted write and landing, then writes the deferred metadata; the first failure fails this.
   * Only where no allocation can run meanwhile: at the start of a job, or when no job runs.
   */
  private async settlePosted(): Promise<void> {
    while (this.posted.size) await Promise.allSettled(this.posted);
    this.throwPostedFailure();
    await this.writeDeferredMetadata();
  }

  /** Writes the deferred refcounts, then the deferred L2 entries that point at those clusters. */
  private async writeDeferredMetadata(): Promise<void> {
    await this.refs?.writeDeferred();
    if (this.deferredL2.size === 0) return;
    const all = [...this.deferredL2];
    this.deferredL2.clear();
    try {
      await Promise.all(all.map(([off, d]) => this.writeEntries(off, d.table, d.lo, d.hi - d.lo)));
    } catch (err) {
      for (const [off, d] of all) this.noteDeferredL2(off, d.table, d.lo, d.hi - d.lo);
      throw err;
    }
  }

  /** Notes changed L2 entries [first, first + count) of the table at `l2off` for writeDeferredMetadata. */
  private noteDeferredL2(l2off: number, table: Uint8Array, first: number, count: number): void {
    const d = this.deferredL2.get(l2off);
    if (d && d.table === table) {
      d.lo = Math.min(d.lo, first);
      d.hi = Math.max(d.hi, first + count);
    } else if (d) {
      // Cannot happen (a table with deferred entries is never read back from the file); stay correct anyway.
      this.post(this.writeEntries(l2off, table, first, count));
    } else this.deferredL2.set(l2off, { table, lo: first, hi: first + count });
  }

  /**
   * Defers L2 entries of new clusters whose data is written, and queues a flush of the deferred metadata when
   * it holds more tables than the L2 cache would, so that memory stays bounded.
   */
  private deferEntries(l2off: number, table: Uint8Array, first: number, count: number): void {
    this.noteDeferredL2(l2off, table, first, count);
    const limit = l2CacheCapacity(this.clusterSize);
    if (this.metadataFlushQueued || (this.deferredL2.size < limit && (this.refs?.deferredBlocks ?? 0) < limit)) return;
    this.metadataFlushQueued = true;
    // An empty job: taking its turn in the queue runs settlePosted, which writes the metadata.
    this.serial(async () => undefined).then(
      () => {
        this.metadataFlushQueued = false;
      },
      (err: unknown) => {
        this.metadataFlushQueued = false;
        this.postedFailure ??= { err };
      },
    );
  }

  private throwPostedFailure(): void {
    const f = this.postedFailure;
    if (f) {
      this.postedFailure = undefined;
      throw f.err;
    }
  }

  async loadL1(): Promise<void> {
    this.l1 = this.l1Size ? await this.file.readBlock(this.l1Offset, this.l1Size * 8, 'L1 table') : new Uint8Array(0);
    this.l1View = new DataView(this.l1.buffer, this.l1.byteOffset, this.l1.byteLength);
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
        writeTableLocation: async (offset, clusters) => {
          const b = new Uint8Array(12);
          const v = new DataView(b.buffer);
          v.setBigUint64(0, BigInt(offset));
          v.setUint32(8, clusters);
          await this.file.write(HDR_REFTABLE, b);
          h.refcountTableOffset = offset;
          h.refcountTableClusters = clusters;
        },
        onFreed: (off) => {
          this.l2Cache.delete(off);
          this.inflated.clear();
          if (this.freeByteOffset && Math.floor(this.freeByteOffset / this.clusterSize) * this.clusterSize === off) this.freeByteOffset = 0;
        },
      });
    }
    return this.refs;
  }

  // ---------------------------------------------------------------- mapping tables

  /** L2 table offset from L1 entry `i` (0 = none) and whether it is marked as exclusively owned. */
  l1Entry(i: number): { offset: number; copied: boolean } {
    if (i >= this.l1Size) return { offset: 0, copied: false };
    const hi = this.l1View.getUint32(i * 8);
    const lo = this.l1View.getUint32(i * 8 + 4);
    const offset = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
    if (offset % this.clusterSize !== 0) throw corrupt(`${this.path}: L1 entry ${i} points to an unaligned L2 table (0x${offset.toString(16)})`, this.path);
    return { offset, copied: (hi & HI_COPIED) !== 0 };
  }

  async setL1Entry(i: number, offset: number, copied: boolean): Promise<void> {
    const hi = Math.floor(offset / 2 ** 32) | (copied ? HI_COPIED : 0);
    this.l1View.setUint32(i * 8, hi >>> 0);
    this.l1View.setUint32(i * 8 + 4, offset % 2 ** 32);
    await this.file.write(this.l1Offset + i * 8, this.l1.subarray(i * 8, i * 8 + 8));
  }

  async l2Table(offset: number): Promise<Uint8Array> {
    let t = this.l2Cache.get(offset) ?? this.deferredL2.get(offset)?.table;
    if (!t && this.posted.size) {
      // A table evicted while a write of it is under way must not be read back before that write lands.
      await Promise.allSettled(this.posted);
      t = this.l2Cache.get(offset) ?? this.deferredL2.get(offset)?.table;
    }
    if (!t) {
      t = await this.file.readBlock(offset, this.clusterSize, 'L2 table');
      this.l2Cache.set(offset, t);
    }
    return t;
  }

  /** Puts a table we changed back in the cache (it may have been evicted and re-read meanwhile). */
  private keepL2(offset: number, table: Uint8Array): void {
    this.l2Cache.set(offset, table);
  }

  /** Entry `index` of an L2 table (big-endian words read by hand: no DataView per entry on the hot path of map and read). */
  readEntry(table: Uint8Array, index: number): L2Entry {
    const p = index * this.l2EntrySize;
    return {
      hi: be32(table, p),
      lo: be32(table, p + 4),
      zeroBits: this.extendedL2 ? be32(table, p + 8) : 0,
      allocBits: this.extendedL2 ? be32(table, p + 12) : 0,
    };
  }

  putEntry(table: Uint8Array, index: number, e: L2Entry): void {
    const p = index * this.l2EntrySize;
    putBe32(table, p, e.hi);
    putBe32(table, p + 4, e.lo);
    if (this.extendedL2) {
      putBe32(table, p + 8, e.zeroBits);
      putBe32(table, p + 12, e.allocBits);
    }
  }

  /** Writes L2 entries [first, first + count); deferred refcount raises go to the file first (they may be what the entries point at). */
  async writeEntries(l2Offset: number, table: Uint8Array, first: number, count: number): Promise<void> {
    await this.refs?.writeDeferred();
    const a = first * this.l2EntrySize;
    const b = (first + count) * this.l2EntrySize;
    await this.file.write(l2Offset + a, table.subarray(a, b));
    this.keepL2(l2Offset, table);
  }

  private normalEntry(host: number, zeroBits = 0, allocBits = 0, zeroFlag = false): L2Entry {
    return { hi: (Math.floor(host / 2 ** 32) | HI_COPIED) >>> 0, lo: ((host % 2 ** 32) | (zeroFlag ? 1 : 0)) >>> 0, zeroBits, allocBits };
  }

  isCompressed(e: L2Entry): boolean {
    return (e.hi & HI_COMPRESSED) !== 0;
  }

  /** Checks a standard entry's host offset and returns it. */
  private checkedHost(e: L2Entry, guest: number): number {
    const host = hostOf(e);
    if (host % this.clusterSize !== 0) {
      throw corrupt(`${this.path}: the cluster at guest offset ${guest} is mapped to an unaligned host offset 0x${host.toString(16)}`, this.path);
    }
    return host;
  }

  /**
   * The state of the guest range starting at `pos` (at most `maxLen` bytes): one cluster, or with standard
   * L2 entries a run of clusters of its L2 table in the same state (data: contiguous on the host).
   */
  private async piece(pos: number, maxLen: number): Promise<Piece> {
    const known = this.pieceNow(pos, maxLen);
    if (known) return known;
    const { offset: l2off } = this.l1Entry(Math.floor(Math.floor(pos / this.clusterSize) / this.l2Entries));
    return this.pieceIn(await this.l2Table(l2off), pos, maxLen);
  }

  /**
   * piece() without waiting, when its L2 table is in the cache (or there is none): walks over many clusters
   * then cost no promise each. Undefined when the table must be read first.
   */
  private pieceNow(pos: number, maxLen: number): Piece | undefined {
    const l1i = Math.floor(Math.floor(pos / this.clusterSize) / this.l2Entries);
    const { offset: l2off } = this.l1Entry(l1i);
    if (!l2off) {
      // A whole L2 table's range is unallocated: answer for all of it at once.
      const spanEnd = (l1i + 1) * this.l2Entries * this.clusterSize;
      return { kind: 'unallocated', length: Math.min(maxLen, spanEnd - pos) };
    }
    const table = this.l2Cache.get(l2off);
    return table ? this.pieceIn(table, pos, maxLen) : undefined;
  }

  /** piece() in the given L2 table (the one of `pos`). */
  private pieceIn(table: Uint8Array, pos: number, maxLen: number): Piece {
    const cs = this.clusterSize;
    const ci = Math.floor(pos / cs);
    const inner = pos - ci * cs;
    const len = Math.min(maxLen, cs - inner);
    const e = this.readEntry(table, ci % this.l2Entries);
    if (this.isCompressed(e)) return { kind: 'compressed', length: len, entry: entryBig(e) };
    const host = this.checkedHost(e, ci * cs);
    if (!this.extendedL2) {
      const zero = (e.lo & 1) !== 0;
      const kind: Piece['kind'] = zero ? 'zero' : host ? 'data' : 'unallocated';
      // The following entries of this table in the same state (hosts contiguous where there are hosts) join
      // the piece, read straight from the table's bytes: a run of clusters costs one piece, not one each.
      let length = len;
      for (let idx = (ci % this.l2Entries) + 1; length < maxLen && idx < this.l2Entries; idx++) {
        const p = idx * 8;
        const hi = be32(table, p);
        const lo = be32(table, p + 4);
        if (hi & HI_COMPRESSED) break;
        const h = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
        // A damaged entry (unaligned host) is left to its own piece, which reports it.
        if (h % cs !== 0) break;
        const k: Piece['kind'] = (lo & 1) !== 0 ? 'zero' : h ? 'data' : 'unallocated';
        if (k !== kind || (host ? h !== host + inner + length : h !== 0)) break;
        length += Math.min(cs, maxLen - length);
      }
      return host ? { kind, length, host: host + inner } : { kind, length };
    }
    if (e.zeroBits & e.allocBits) throw corrupt(`${this.path}: the cluster at guest offset ${ci * cs} has subclusters both allocated and zero`, this.path);
    if (!host && e.allocBits) throw corrupt(`${this.path}: the cluster at guest offset ${ci * cs} has allocated subclusters but no host cluster`, this.path);
    const sub = this.subclusterSize;
    const kindOf = (s: number): Piece['kind'] => ((e.zeroBits >>> s) & 1 ? 'zero' : (e.allocBits >>> s) & 1 ? 'data' : 'unallocated');
    const s0 = Math.floor(inner / sub);
    const kind = kindOf(s0);
    let s = s0 + 1;
    while (s < SUBCLUSTERS && s * sub < inner + len && kindOf(s) === kind) s++;
    const length = Math.min(len, s * sub - inner);
    return host ? { kind, length, host: host + inner } : { kind, length };
  }

  private checkRange(offset: number, length: number): void {
    checkRange(this.size, offset, length, this.path);
  }

  // ---------------------------------------------------------------- reading

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkRange(offset, into.length);
    try {
      await this.readAt(offset, into);
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  /** Reads guest bytes; bytes past the virtual size read as zero (for the tail of the last cluster). */
  private async readAt(offset: number, into: Uint8Array): Promise<void> {
    const end = offset + into.length;
    const limit = Math.min(end, this.size);
    if (limit < end) into.fill(0, Math.max(0, limit - offset));
    let pos = offset;
    // A pending run of host-contiguous data, read in one go.
    let runHost = -1;
    let runStart = 0;
    let runLen = 0;
    const flushRun = async () => {
      if (runLen > 0) {
        if (runHost >= this.file.size) throw corrupt(`${this.path}: guest offset ${runStart} is mapped past the end of the file (host offset 0x${runHost.toString(16)})`, this.path);
        await this.file.readZeroPadded(runHost, into.subarray(runStart - offset, runStart - offset + runLen));
      }
      runLen = 0;
    };
    // A pending run of ranges that read through to the backing file.
    let bStart = 0;
    let bLen = 0;
    const flushBacking = async () => {
      if (bLen > 0) await this.readBacking(bStart, into.subarray(bStart - offset, bStart - offset + bLen));
      bLen = 0;
    };
    while (pos < limit) {
      const p = this.pieceNow(pos, limit - pos) ?? (await this.piece(pos, limit - pos));
      const dst = into.subarray(pos - offset, pos - offset + p.length);
      if (p.kind !== 'data') await flushRun();
      if (p.kind !== 'unallocated') await flushBacking();
      switch (p.kind) {
        case 'data':
          if (runLen > 0 && runHost + runLen === p.host) runLen += p.length;
          else {
            await flushRun();
            runHost = p.host!;
            runStart = pos;
            runLen = p.length;
          }
          break;
        case 'zero':
          dst.fill(0);
          break;
        case 'unallocated':
          if (bLen > 0) bLen += p.length;
          else {
            bStart = pos;
            bLen = p.length;
          }
          break;
        case 'compressed': {
          const cluster = await this.inflate(p.entry!);
          const inner = pos % this.clusterSize;
          dst.set(cluster.subarray(inner, inner + p.length));
          break;
        }
      }
      pos += p.length;
    }
    await flushRun();
    await flushBacking();
  }

  /** Reads what the backing file holds (zeros without one, and past its end). */
  private async readBacking(offset: number, into: Uint8Array): Promise<void> {
    const b = this.backing;
    const n = b ? Math.max(0, Math.min(into.length, b.size - offset)) : 0;
    if (n > 0) await b!.read(offset, into.subarray(0, n));
    into.fill(0, n);
  }

  /** Decompresses one compressed cluster (bounded to one cluster of output). */
  private async inflate(entry: bigint): Promise<Uint8Array> {
    const { offset, length } = compressedExtent(entry, this.clusterBits);
    const cached = this.inflated.get(offset);
    if (cached) return cached;
    if (offset >= this.file.size) throw corrupt(`${this.path}: a compressed cluster lies past the end of the file (host offset 0x${offset.toString(16)})`, this.path);
    const src = await this.file.readBlock(offset, Math.min(length, this.file.size - offset), 'compressed cluster');
    if (this.header.compressionType === COMPRESSION_ZSTD) {
      const c = inflateZstd(src, this.clusterSize);
      if (!c) throw corrupt(`${this.path}: the zstd-compressed cluster at host offset 0x${offset.toString(16)} cannot be decompressed`, this.path);
      this.inflated.set(offset, c);
      return c;
    }
    let out: Buffer;
    try {
      // Raw deflate, as qemu writes it; the stream may be cut at a sector end once a cluster is produced.
      out = zlib().inflateRawSync(src, { finishFlush: zlib().constants.Z_SYNC_FLUSH, maxOutputLength: this.clusterSize });
    } catch {
      throw corrupt(`${this.path}: the compressed cluster at host offset 0x${offset.toString(16)} cannot be decompressed`, this.path);
    }
    if (out.length !== this.clusterSize) {
      throw corrupt(`${this.path}: the compressed cluster at host offset 0x${offset.toString(16)} holds ${out.length} bytes, not a cluster`, this.path);
    }
    const c = new Uint8Array(out.buffer, out.byteOffset, out.length);
    this.inflated.set(offset, c);
    return c;
  }

  // ---------------------------------------------------------------- status

  async status(offset: number, length: number): Promise<Extent> {
    this.checkRange(offset, length);
    if (length === 0) throw new DiskError('EINVAL', `${this.path}: status of an empty range`, this.path);
    try {
      return await this.statusAt(offset, length);
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  private async statusAt(offset: number, length: number): Promise<Extent> {
    const end = offset + length;
    const kindOf = (p: Piece): Extent['kind'] => (p.kind === 'compressed' ? 'data' : p.kind);
    const first = this.pieceNow(offset, length) ?? (await this.piece(offset, length));
    const kind = kindOf(first);
    // Compressed data has no host offset that qemu-img map would show.
    const host = first.kind === 'compressed' ? undefined : first.host;
    let pos = offset + first.length;
    while (pos < end) {
      const p = this.pieceNow(pos, end - pos) ?? (await this.piece(pos, end - pos));
      if (kindOf(p) !== kind) break;
      const pHost = p.kind === 'compressed' ? undefined : p.host;
      if ((host === undefined) !== (pHost === undefined)) break;
      if (host !== undefined && pHost !== host + (pos - offset)) break;
      pos += p.length;
    }
    const ext: Extent = { kind, length: pos - offset, ...(host !== undefined ? { hostOffset: host } : {}) };
    if (kind === 'data' && host !== undefined && (await this.metadataPreallocated())) return this.refineByHostHoles(ext, host);
    return ext;
  }

  /**
   * qemu-img detects images whose clusters were preallocated without data (preallocation=metadata: far
   * more clusters are counted in use than the file has blocks) and then asks the file system which of
   * those clusters are holes, reporting them as data that reads as zero. We do the same so that `map`
   * agrees with qemu-img's.
   */
  private async metadataPreallocated(): Promise<boolean> {
    if (this.preallocDetected === undefined) {
      this.preallocDetected = false;
      if (this.file.seesHoles) {
        const refs = await this.refcounts();
        const realClusters = Math.floor((await this.file.allocatedSize()) / this.clusterSize);
        const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
        const endCluster = Math.ceil(this.file.size / this.clusterSize);
        this.preallocDetected = (await refs.countInUse(endCluster, threshold)) > threshold;
      }
    }
    return this.preallocDetected;
  }

  private refineByHostHoles(ext: Extent, host: number): Extent {
    const size = this.file.size;
    if (host >= size) return { ...ext, readsAsZero: true };
    const a = this.file.allocationAt(host);
    if (!a.data && a.end >= size) return { ...ext, readsAsZero: true }; // a hole to the end of the file
    const len = Math.min(ext.length, a.end - host);
    return a.data ? { ...ext, length: len } : { ...ext, length: len, readsAsZero: true };
  }

  // ---------------------------------------------------------------- writing

  private checkWritable(): void {
    if (this.readOnly) throw new DiskError('EREADONLY', `${this.path}: opened read-only`, this.path);
    if (this.closed) throw new DiskError('EINVAL', `${this.path}: the image is closed`, this.path);
  }

  /**
   * Before the first change: clear the autoclear feature bits (we keep none of what they vouch for, e.g.
   * persistent bitmaps, so they must not claim to be consistent), and with lazy refcounts mark the image
   * dirty until it is closed cleanly.
   */
  async beginWrite(): Promise<void> {
    if (this.writeBegun) return;
    this.writeBegun = true;
    await this.refcounts();
    const h = this.header;
    if (h.version !== 3) return;
    if (h.autoclearFeatures !== 0n) {
      h.autoclearFeatures = 0n;
      await this.writeU64(HDR_AUTOCLEAR, 0n);
    }
    if ((h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n && (h.incompatibleFeatures & INCOMPAT_DIRTY) === 0n) {
      h.incompatibleFeatures |= INCOMPAT_DIRTY;
      await this.writeU64(HDR_INCOMPAT, h.incompatibleFeatures);
      await this.file.sync();
      this.dirtySetByUs = true;
    }
  }

  private async writeU64(pos: number, value: bigint): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value);
    await this.file.write(pos, b);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, data.length);
    // New clusters' data may still be landing when the job ends (the next write starts meanwhile); the write
    // is done when they have landed.
    const landings: Array<Promise<void>> = [];
    await this.serial(async () => {
      await this.beginWrite();
      await this.writeData(offset, data, landings);
    }, true).catch((err) => {
      throw toDiskError(err, this.path);
    });
    await Promise.all(landings).catch((err) => {
      throw toDiskError(err, this.path);
    });
  }

  /**
   * Writes guest data, one L2 table's range at a time. With `landings`, the data of new clusters may still be
   * on its way when this returns: their completions are pushed there. Without, this waits for them.
   */
  private async writeData(offset: number, data: Uint8Array, landings?: Array<Promise<void>>): Promise<void> {
    const span = this.l2Entries * this.clusterSize;
    const own = landings ?? [];
    let pos = offset;
    const end = offset + data.length;
    try {
      while (pos < end) {
        const spanEnd = Math.min(end, (Math.floor(pos / span) + 1) * span);
        await this.writeSpan(pos, data.subarray(pos - offset, spanEnd - offset), own);
        pos = spanEnd;
      }
    } finally {
      if (!landings) await Promise.allSettled(own);
    }
    if (!landings) await Promise.all(own);
  }

  /**
   * The L2 table for L1 entry `i`, ready to be changed: allocated if missing, copied if shared with a
   * snapshot (refcount > 1), with OFLAG_COPIED set in the L1 entry.
   */
  async l2ForWrite(i: number): Promise<{ offset: number; table: Uint8Array }> {
    const refs = await this.refcounts();
    const cs = this.clusterSize;
    const { offset, copied } = this.l1Entry(i);
    if (offset && copied) return { offset, table: await this.l2Table(offset) };
    if (offset) {
      const rc = await refs.get(offset / cs);
      if (rc === 0) throw corrupt(`${this.path}: L2 table ${i} is in use but its refcount is 0`, this.path);
      if (rc === 1) {
        await this.setL1Entry(i, offset, true);
        return { offset, table: await this.l2Table(offset) };
      }
      const copy = (await this.l2Table(offset)).slice();
      const fresh = await refs.alloc(1);
      await this.file.write(fresh, copy);
      this.l2Cache.set(fresh, copy);
      await this.setL1Entry(i, fresh, true);
      await refs.update(offset, cs, -1);
      return { offset: fresh, table: copy };
    }
    const fresh = await refs.alloc(1);
    const table = new Uint8Array(cs);
    await this.file.write(fresh, table);
    this.l2Cache.set(fresh, table);
    await this.setL1Entry(i, fresh, true);
    return { offset: fresh, table };
  }

  /** Releases what an L2 entry held: a host cluster or the sectors of a compressed cluster. */
  async releaseEntry(e: L2Entry): Promise<void> {
    const refs = await this.refcounts();
    if (this.isCompressed(e)) {
      const { offset, length } = compressedExtent(entryBig(e), this.clusterBits);
      const start = offset - (offset % 512);
      await refs.update(start, length + (offset % 512), -1);
      return;
    }
    const host = hostOf(e);
    if (host) await refs.update(host, this.clusterSize, -1);
  }

  /** True when the cluster can be written where it is: its own (refcount 1) uncompressed host cluster. */
  private ownsCluster(e: L2Entry): boolean {
    return !this.isCompressed(e) && hostOf(e) !== 0 && (e.hi & HI_COPIED) !== 0;
  }

  /** Writes `data` at guest `pos`; the range lies within one L2 table's range. */
  private async writeSpan(pos: number, data: Uint8Array, landings: Array<Promise<void>>): Promise<void> {
    const cs = this.clusterSize;
    const end = pos + data.length;
    const firstCluster = Math.floor(pos / cs);
    const lastCluster = Math.floor((end - 1) / cs);
    await this.awaitLanding(firstCluster, lastCluster);
    const l1i = Math.floor(firstCluster / this.l2Entries);
    const { offset: l2off, table } = await this.l2ForWrite(l1i);
    let c = firstCluster;
    while (c <= lastCluster) {
      const e = this.readEntry(table, c % this.l2Entries);
      if (this.ownsCluster(e)) {
        await this.writeInPlace(c, e, pos, data, l2off, table);
        c++;
        continue;
      }
      // A run of clusters that all need new host clusters: allocate them together.
      let n = 1;
      while (c + n <= lastCluster && !this.ownsCluster(this.readEntry(table, (c + n) % this.l2Entries))) n++;
      await this.writeNewClusters(c, n, pos, data, l2off, table, landings);
      c += n;
    }
  }

  /** Current guest content of [start, start + into.length), for filling the parts of a cluster not written. */
  private async readOld(start: number, into: Uint8Array): Promise<void> {
    await this.readAt(start, into);
  }

  /**
   * Gives guest clusters [c0, c0 + n) new host clusters holding `data` (and their old content where `data`
   * covers them only in part). The refcounts are raised first and the L2 entries change only once the data is
   * written. When no old cluster is freed, that last part happens after this returns ("landing", pushed to
   * `landings`), so that the next write's data goes to the file meanwhile, and the refcounts and entries are
   * written later in runs (deferred): refcounts before entries, entries after their data.
   */
  private async writeNewClusters(c0: number, n: number, pos: number, data: Uint8Array, l2off: number, table: Uint8Array, landings: Array<Promise<void>>): Promise<void> {
    const cs = this.clusterSize;
    const end = pos + data.length;
    const refs = await this.refcounts();
    const old: L2Entry[] = [];
    for (let j = 0; j < n; j++) old.push(this.readEntry(table, (c0 + j) % this.l2Entries));
    let buf: Uint8Array;
    if (pos <= c0 * cs && end >= (c0 + n) * cs) {
      // Whole clusters (the usual case in a sequential copy): written straight from the caller's buffer.
      buf = data.subarray(c0 * cs - pos, (c0 + n) * cs - pos);
    } else {
      buf = new Uint8Array(n * cs);
      for (let j = 0; j < n; j++) {
        const g = (c0 + j) * cs;
        const ws = Math.max(pos, g);
        const we = Math.min(end, g + cs);
        const slot = buf.subarray(j * cs, (j + 1) * cs);
        if (ws > g || we < g + cs) await this.readOld(g, slot);
        slot.set(data.subarray(ws - pos, we - pos), ws - g);
      }
    }
    const released = old.filter((o) => this.isCompressed(o) || hostOf(o) !== 0);
    if (released.length === 0) {
      // Nothing is freed, so nothing waits for the metadata: the refcounts are raised in memory (written before
      // any L2 entry, see writeEntries), the entries change when the data has landed and are written later
      // with the others of their table; until then no other job touches these clusters (awaitLanding).
      const host = await refs.alloc(n, true);
      const written = this.file.write(host, buf);
      const landing = written.then(() => {
        this.putNewEntries(c0, n, pos, end, host, old, table);
        this.deferEntries(l2off, table, c0 % this.l2Entries, n);
      });
      for (let j = 0; j < n; j++) this.landing.set(c0 + j, landing);
      const landed = () => {
        for (let j = 0; j < n; j++) if (this.landing.get(c0 + j) === landing) this.landing.delete(c0 + j);
      };
      this.post(landing.finally(landed));
      landings.push(landing);
      return;
    }
    // Old clusters are freed: refcount raised, data written, entries written, and only then the old dropped.
    const host = await refs.alloc(n);
    await this.file.write(host, buf);
    this.putNewEntries(c0, n, pos, end, host, old, table);
    await this.writeEntries(l2off, table, c0 % this.l2Entries, n);
    for (const o of released) await this.releaseEntry(o);
  }

  /** The L2 entries of clusters [c0, c0 + n) newly at `host`, after guest bytes [pos, end) were written there. */
  private putNewEntries(c0: number, n: number, pos: number, end: number, host: number, old: L2Entry[], table: Uint8Array): void {
    const cs = this.clusterSize;
    for (let j = 0; j < n; j++) {
      const g = (c0 + j) * cs;
      let zeroBits = 0;
      let allocBits = 0;
      if (this.extendedL2) {
        const touched = this.touchedMask(Math.max(pos, g) - g, Math.min(end, g + cs) - g);
        const o = old[j];
        if (this.isCompressed(o)) allocBits = ALL_SUBCLUSTERS;
        else {
          allocBits = (o.allocBits | touched) >>> 0;
          zeroBits = (o.zeroBits & ~touched) >>> 0;
        }
      }
      this.putEntry(table, (c0 + j) % this.l2Entries, this.normalEntry(host + j * cs, zeroBits, allocBits));
    }
  }

  /** Subclusters touched by the byte range [a, b) of a cluster. */
  private touchedMask(a: number, b: number): number {
    const s0 = Math.floor(a / this.subclusterSize);
    const s1 = Math.floor((b - 1) / this.subclusterSize);
    let m = 0;
    for (let s = s0; s <= s1; s++) m |= 1 << s;
    return m >>> 0;
  }

  private async writeInPlace(c: number, e: L2Entry, pos: number, data: Uint8Array, l2off: number, table: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const g = c * cs;
    const ws = Math.max(pos, g) - g;
    const we = Math.min(pos + data.length, g + cs) - g;
    const host = hostOf(e);
    const part = data.subarray(g + ws - pos, g + we - pos);
    if (!this.extendedL2) {
      if ((e.lo & 1) === 0) {
        await this.file.write(host + ws, part);
        return;
      }
      // A preallocated zero cluster: the whole cluster is written (zeros around the data), then the zero flag goes.
      const buf = new Uint8Array(cs);
      buf.set(part, ws);
      await this.file.write(host, buf);
      this.putEntry(table, c % this.l2Entries, this.normalEntry(host));
      await this.writeEntries(l2off, table, c % this.l2Entries, 1);
      return;
    }
    // Subclusters not allocated yet are written whole, their untouched edges filled with their old content.
    const sub = this.subclusterSize;
    const touched = this.touchedMask(ws, we);
    const a = Math.floor(ws / sub) * sub;
    const b = Math.min(cs, Math.ceil(we / sub) * sub);
    const buf = new Uint8Array(b - a);
    if (a < ws) await this.readOld(g + a, buf.subarray(0, ws - a));
    if (we < b) await this.readOld(g + we, buf.subarray(we - a));
    buf.set(part, ws - a);
    await this.file.write(host + a, buf);
    const allocBits = (e.allocBits | touched) >>> 0;
    const zeroBits = (e.zeroBits & ~touched) >>> 0;
    if (allocBits !== e.allocBits || zeroBits !== e.zeroBits) {
      this.putEntry(table, c % this.l2Entries, { ...e, allocBits, zeroBits });
      await this.writeEntries(l2off, table, c % this.l2Entries, 1);
    }
  }

  // ---------------------------------------------------------------- zeroes

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (length === 0) return;
    await this.serial(async () => {
      await this.beginWrite();
      await this.zeroRange(offset, length);
    }).catch((err) => {
      throw toDiskError(err, this.path);
    });
  }

  private async writeZeroData(offset: number, length: number): Promise<void> {
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let pos = offset; pos < offset + length; pos += chunk.length) {
      await this.writeData(pos, chunk.subarray(0, Math.min(chunk.length, offset + length - pos)));
    }
  }

  private async zeroRange(offset: number, length: number): Promise<void> {
    const cs = this.clusterSize;
    // The tail of the last cluster lies past the virtual size: zeroing up to the size covers the cluster.
    const end = offset + length === this.size ? Math.ceil(this.size / cs) * cs : offset + length;
    if (this.version === 2) {
      // No zero flag in version 2: clusters that already read as zero are left alone, the rest get zeros.
      // Zeros are written up to the virtual size only: `end` may lie past it (the last cluster's tail), and
      // walking to `end` would never get past the size (an empty step at the size, forever).
      const dataEnd = Math.min(end, this.size);
      for (let pos = offset; pos < dataEnd; ) {
        const stop = Math.min(dataEnd, (Math.floor(pos / cs) + 1) * cs);
        const p = await this.piece(pos, stop - pos);
        if (p.kind === 'zero' || (p.kind === 'unallocated' && !this.backing)) {
          pos += p.length;
          continue;
        }
        await this.writeZeroData(pos, stop - pos);
        pos = stop;
      }
      return;
    }
    const grain = this.extendedL2 ? this.subclusterSize : cs;
    const a = Math.min(end, Math.ceil(offset / grain) * grain);
    const b = Math.max(a, Math.floor(end / grain) * grain);
    if (a > offset) await this.writeZeroData(offset, Math.min(a, this.size) - offset);
    for (let pos = a; pos < b; ) {
      const c = Math.floor(pos / cs);
      const g = c * cs;
      const stop = Math.min(b, g + cs);
      if (pos === g && stop === g + cs) {
        // Whole clusters up to the end of this L2 table's range.
        const span = this.l2Entries * cs;
        const spanStop = Math.min(Math.floor(b / cs) * cs, (Math.floor(pos / span) + 1) * span);
        await this.zeroClusters(c, (spanStop - pos) / cs);
        pos = spanStop;
      } else {
        await this.zeroSubclusters(c, pos - g, stop - g);
        pos = stop;
      }
    }
    if (b < end && b < this.size) await this.writeZeroData(b, Math.min(end, this.size) - b);
  }

  /** Turns `n` whole clusters (within one L2 table) into zero clusters, keeping owned host clusters preallocated. */
  private async zeroClusters(c0: number, n: number): Promise<void> {
    const { offset: l2off, table } = await this.l2ForWrite(Math.floor(c0 / this.l2Entries));
    const released: L2Entry[] = [];
    for (let j = 0; j < n; j++) {
      const idx = (c0 + j) % this.l2Entries;
      const e = this.readEntry(table, idx);
      const keep = this.ownsCluster(e);
      if (!keep && (this.isCompressed(e) || hostOf(e))) released.push(e);
      const host = keep ? hostOf(e) : 0;
      if (this.extendedL2) {
        this.putEntry(table, idx, host ? this.normalEntry(host, ALL_SUBCLUSTERS, 0) : { hi: 0, lo: 0, zeroBits: ALL_SUBCLUSTERS, allocBits: 0 });
      } else {
        this.putEntry(table, idx, host ? this.normalEntry(host, 0, 0, true) : { hi: 0, lo: 1, zeroBits: 0, allocBits: 0 });
      }
    }
    await this.writeEntries(l2off, table, c0 % this.l2Entries, n);
    for (const e of released) await this.releaseEntry(e);
  }

  /** Extended L2: marks whole subclusters [a, b) of cluster `c` as zero, where the cluster allows it. */
  private async zeroSubclusters(c: number, a: number, b: number): Promise<void> {
    const { offset: l2off, table } = await this.l2ForWrite(Math.floor(c / this.l2Entries));
    const idx = c % this.l2Entries;
    const e = this.readEntry(table, idx);
    if (this.isCompressed(e) || (hostOf(e) && !this.ownsCluster(e))) {
      await this.writeZeroData(c * this.clusterSize + a, Math.min(b, this.size - c * this.clusterSize) - a);
      return;
    }
    const mask = this.touchedMask(a, b);
    this.putEntry(table, idx, { ...e, zeroBits: (e.zeroBits | mask) >>> 0, allocBits: (e.allocBits & ~mask) >>> 0 });
    await this.writeEntries(l2off, table, idx, 1);
  }

  // ---------------------------------------------------------------- discard

  /**
   * qemu's discard (qcow2_co_pdiscard, full_discard off), checked against qemu-io 7.2: only whole clusters
   * are touched (the last cluster is whole when the range runs to the end of the image); each one that holds
   * a host cluster, or any one when the image has a backing file, becomes a cluster that reads as zeros —
   * the zero flag in v3, all subclusters zero with extended L2 entries, unallocated in v2 — and its host
   * cluster (or compressed sectors) loses one reference. v2 images with a backing file are refused (qemu
   * silently skips them: without a zero flag the backing file's data would show through).
   *
   * Two departures, neither visible to qemu-img check, compare or map: qemu also allocates (or copies, when
   * shared with a snapshot) the L2 table of every range it looks at even when no entry changes; we leave such
   * tables alone. And qemu punches holes in the freed host clusters; Node cannot, so the file keeps its
   * length and blocks (the clusters are free for reuse). Nothing is truncated, as qemu truncates nothing.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (length === 0) return;
    const hasBacking = this.layout.backingFile !== undefined || this.backing !== undefined;
    if (this.version === 2 && hasBacking) {
      throw new DiskError(
        'EUNSUPPORTED',
        `${this.path}: a version 2 (compat=0.10) image with a backing file cannot discard: it has no zero flag, so released clusters would show the backing file's data`,
        this.path,
      );
    }
    const cs = this.clusterSize;
    const end = offset + length;
    const first = Math.ceil(offset / cs);
    const stop = end === this.size ? Math.ceil(end / cs) : Math.floor(end / cs);
    if (stop <= first) return;
    await this.serial(async () => {
      for (let c = first; c < stop; ) {
        const l1i = Math.floor(c / this.l2Entries);
        const tableStop = Math.min(stop, (l1i + 1) * this.l2Entries);
        await this.discardInTable(l1i, c, tableStop, hasBacking);
        c = tableStop;
      }
    }).catch((err) => {
      throw toDiskError(err, this.path);
    });
  }

  /** What a discarded cluster's entry becomes, or undefined when it stays as it is. */
  private discardedEntry(e: L2Entry, guest: number, hasBacking: boolean): L2Entry | undefined {
    const holds = this.isCompressed(e) || this.checkedHost(e, guest) !== 0;
    if (!holds && !hasBacking) return undefined; // reads as zeros already and holds nothing
    const next: L2Entry = this.extendedL2
      ? { hi: 0, lo: 0, zeroBits: ALL_SUBCLUSTERS, allocBits: 0 }
      : { hi: 0, lo: this.version === 3 ? 1 : 0, zeroBits: 0, allocBits: 0 };
    const same = (e.hi >>> 0) === next.hi && (e.lo >>> 0) === next.lo && (e.zeroBits >>> 0) === (next.zeroBits >>> 0) && (e.allocBits >>> 0) === next.allocBits;
    return same ? undefined : next;
  }

  /** Discards clusters [c0, c1) of L2 table `l1i`: entries rewritten first, then the references dropped. */
  private async discardInTable(l1i: number, c0: number, c1: number, hasBacking: boolean): Promise<void> {
    const cs = this.clusterSize;
    const { offset: current } = this.l1Entry(l1i);
    const before = current ? await this.l2Table(current) : undefined;
    const empty: L2Entry = { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 };
    const changes: Array<{ idx: number; next: L2Entry; old: L2Entry }> = [];
    for (let c = c0; c < c1; c++) {
      const idx = c % this.l2Entries;
      const old = before ? this.readEntry(before, idx) : empty;
      const next = this.discardedEntry(old, c * cs, hasBacking);
      if (next) changes.push({ idx, next, old });
    }
    if (changes.length === 0) return;
    await this.beginWrite();
    // A table shared with a snapshot is copied here; the copy holds the same entries as `before`.
    const { offset: l2off, table } = await this.l2ForWrite(l1i);
    for (const ch of changes) this.putEntry(table, ch.idx, ch.next);
    const lo = changes[0].idx;
    const hi = changes[changes.length - 1].idx;
    await this.writeEntries(l2off, table, lo, hi - lo + 1);
    const released = changes.filter((ch) => this.isCompressed(ch.old) || hostOf(ch.old) !== 0);
    if (released.length === 0) return;
    // The new entries reach the disk before any refcount drops: a crash in between leaks clusters, and a
    // freed cluster can never be handed out again while an entry on disk still points at it.
    await this.file.sync();
    for (const ch of released) await this.releaseEntry(ch.old);
  }

  // ---------------------------------------------------------------- compressed writes

  async writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, data.length);
    const cs = this.clusterSize;
    if (offset % cs !== 0 || (data.length !== cs && offset + data.length !== this.size)) {
      throw new DiskError('EINVAL', `${this.path}: compressed writes must cover whole clusters`, this.path);
    }
    // This build compresses with zlib only; in a zstd image such clusters are stored uncompressed (valid).
    const zlibImage = this.header.compressionType === COMPRESSION_ZLIB;
    const full = data.length === cs ? data : (() => { const b = new Uint8Array(cs); b.set(data); return b; })();
    // Large clusters are compressed on the thread pool before this write's turn in the queue comes, so that the
    // clusters of a convert are compressed side by side; allocation still happens in call order. Below 32 KiB
    // a thread pool round trip costs more than it saves.
    const packing = !zlibImage ? undefined : cs >= ASYNC_DEFLATE_MIN ? deflateCluster(full) : Promise.resolve(zlib().deflateRawSync(full, DEFLATE_OPTIONS));
    packing?.catch(() => undefined);
    await this.serial(async () => {
      await this.beginWrite();
      if (!packing) {
        await this.writeData(offset, data);
        return;
      }
      // Data that does not shrink is stored plain.
      const packed = await packing;
      if (packed.length >= cs) {
        await this.writeData(offset, data);
        return;
      }
      // The refcount raise is deferred (written before any L2 entry, see writeEntries); the data is written now.
      const host = await this.allocBytes(packed.length, true);
      await this.file.write(host, packed);
      await this.awaitLanding(offset / cs, offset / cs);
      const { offset: l2off, table } = await this.l2ForWrite(Math.floor(offset / cs / this.l2Entries));
      const idx = (offset / cs) % this.l2Entries;
      const old = this.readEntry(table, idx);
      const ce = encodeCompressedEntry(host, packed.length, this.clusterBits);
      this.putEntry(table, idx, { hi: Number(ce >> 32n), lo: Number(ce & 0xffffffffn), zeroBits: 0, allocBits: 0 });
      if (!this.isCompressed(old) && hostOf(old) === 0) {
        // Nothing is freed, so nothing waits for the L2 write: it goes with the others of its table.
        this.deferEntries(l2off, table, idx, 1);
        return;
      }
      await this.writeEntries(l2off, table, idx, 1);
      await this.releaseEntry(old);
    }, true).catch((err) => {
      throw toDiskError(err, this.path);
    });
  }

  /** Allocates `size` bytes for compressed data, packing clusters one after another as qemu does. */
  private async allocBytes(size: number, defer = false): Promise<number> {
    const refs = await this.refcounts();
    const cs = this.clusterSize;
    let offset = this.freeByteOffset;
    let freeIn = offset ? cs - (offset % cs) : 0;
    if (freeIn === cs) {
      offset = 0;
      freeIn = 0;
    }
    // A cluster whose refcount is at its width's maximum (1-bit refcounts: one user) takes no more: start a new one, as qemu does.
    if (offset && (await refs.get(Math.floor(offset / cs))) >= refs.max) {
      offset = 0;
      freeIn = 0;
    }
    if (!offset || freeIn < size) {
      const next = await refs.findFreeClusters(1);
      if (!offset || Math.ceil(offset / cs) * cs !== next) offset = next;
    }
    await refs.update(offset, size, +1, defer);
    this.freeByteOffset = offset + size;
    return offset;
  }

  // ---------------------------------------------------------------- size

  async resize(newSize: number, shrink: boolean): Promise<void> {
    this.checkWritable();
    if (!Number.isSafeInteger(newSize) || newSize < 0) throw new DiskError('EINVAL', `invalid size ${newSize}`);
    if (newSize % 512 !== 0) throw new DiskError('EINVAL', `${this.path}: the new size must be a multiple of 512 bytes`, this.path);
    await this.serial(async () => {
      if (newSize === this.size) return;
      if (this.header.nbSnapshots > 0 && this.version === 2) {
        throw new DiskError('EUNSUPPORTED', `${this.path}: a version 2 (compat=0.10) image with internal snapshots cannot be resized`, this.path);
      }
      if (newSize < this.size) {
        if (!shrink) throw new DiskError('EINVAL', `${this.path}: shrinking would lose data; use --shrink to confirm`, this.path);
        if (this.header.nbSnapshots > 0) throw new DiskError('EUNSUPPORTED', `${this.path}: an image with internal snapshots cannot be shrunk`, this.path);
        await this.beginWrite();
        await this.shrinkTo(newSize);
      } else {
        await this.beginWrite();
        const need = Math.ceil(Math.ceil(newSize / this.clusterSize) / this.l2Entries);
        if (need > this.l1Size) await this.growL1(need);
      }
      await this.writeU64(HDR_SIZE, BigInt(newSize));
      this.header.size = newSize;
    }).catch((err) => {
      throw toDiskError(err, this.path);
    });
  }

  /** Replaces the active L1 table by a larger copy (qemu's exact-size growth), then frees the old one. */
  async growL1(entries: number): Promise<void> {
    if (entries * 8 > 32 * 1024 * 1024) throw new DiskError('EINVAL', `${this.path}: the L1 table would exceed 32 MiB (qemu's limit); the image cannot be that large with this cluster size`, this.path);
    const refs = await this.refcounts();
    const cs = this.clusterSize;
    const bytes = entries * 8;
    const at = await refs.alloc(Math.ceil(bytes / cs));
    const table = new Uint8Array(bytes);
    table.set(this.l1);
    await this.file.write(at, table);
    await this.file.sync();
    const hdr = new Uint8Array(12);
    const v = new DataView(hdr.buffer);
    v.setUint32(0, entries);
    v.setBigUint64(4, BigInt(at));
    await this.file.write(HDR_L1, hdr);
    const oldOffset = this.l1Offset;
    const oldSize = this.l1Size;
    this.l1 = table;
    this.l1View = new DataView(table.buffer);
    this.l1Offset = at;
    this.l1Size = entries;
    this.header.l1Size = entries;
    this.header.l1TableOffset = at;
    if (oldSize > 0) await refs.update(oldOffset, oldSize * 8, -1);
  }

  /** Shrinks when nothing but zero or unallocated clusters lies past the new end; frees what lay there. */
  private async shrinkTo(newSize: number): Promise<void> {
    const cs = this.clusterSize;
    const firstGone = Math.ceil(newSize / cs);
    const lastCluster = Math.ceil(this.size / cs);
    const keepL1 = Math.ceil(firstGone / this.l2Entries);
    for (let l1i = Math.floor(firstGone / this.l2Entries); l1i * this.l2Entries < lastCluster && l1i < this.l1Size; l1i++) {
      const { offset } = this.l1Entry(l1i);
      if (!offset) continue;
      const table = await this.l2Table(offset);
      for (let c = Math.max(firstGone, l1i * this.l2Entries); c < Math.min(lastCluster, (l1i + 1) * this.l2Entries); c++) {
        const e = this.readEntry(table, c % this.l2Entries);
        const holdsData = this.isCompressed(e) || (this.extendedL2 ? e.allocBits !== 0 : hostOf(e) !== 0 && (e.lo & 1) === 0);
        if (holdsData) {
          throw new DiskError('EINVAL', `${this.path}: cannot shrink to ${newSize} bytes: guest data is allocated at offset ${c * cs}, past the new size`, this.path);
        }
      }
    }
    const refs = await this.refcounts();
    for (let l1i = Math.floor(firstGone / this.l2Entries); l1i * this.l2Entries < lastCluster && l1i < this.l1Size; l1i++) {
      const { offset } = this.l1Entry(l1i);
      if (!offset) continue;
      if (l1i >= keepL1) {
        // The whole table lies past the end: drop it and whatever preallocated clusters it held.
        const table = await this.l2Table(offset);
        await this.setL1Entry(l1i, 0, false);
        const rc = await refs.get(offset / cs);
        await refs.update(offset, cs, -1);
        if (rc === 1) for (let k = 0; k < this.l2Entries; k++) await this.releaseEntry(this.readEntry(table, k));
        continue;
      }
      const { offset: l2off, table } = await this.l2ForWrite(l1i);
      const from = Math.max(firstGone, l1i * this.l2Entries) % this.l2Entries;
      const released: L2Entry[] = [];
      for (let k = from; k < this.l2Entries; k++) {
        const e = this.readEntry(table, k);
        if (e.hi || e.lo || e.zeroBits || e.allocBits) released.push(e);
        this.putEntry(table, k, { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 });
      }
      await this.writeEntries(l2off, table, from, this.l2Entries - from);
      for (const e of released) await this.releaseEntry(e);
    }
  }

  /**
   * Allocates an L2 table and a host cluster for every guest cluster (preallocation=metadata, as qemu lays
   * it out: each L2 table followed by its data clusters); `full` also writes zeros over the data clusters.
   * With extended L2 entries the subclusters stay unallocated, as qemu leaves them.
   */
  async preallocate(full: boolean): Promise<void> {
    this.checkWritable();
    await this.serial(async () => {
      await this.beginWrite();
      const refs = await this.refcounts();
      const cs = this.clusterSize;
      const clusters = Math.ceil(this.size / cs);
      let end = this.file.size;
      for (let c0 = 0; c0 < clusters; ) {
        const l1i = Math.floor(c0 / this.l2Entries);
        const n = Math.min(clusters, (l1i + 1) * this.l2Entries) - c0;
        const { offset: l2off, table } = await this.l2ForWrite(l1i);
        let k = 0;
        while (k < n) {
          // Runs of clusters that have no host cluster yet.
          if (hostOf(this.readEntry(table, (c0 + k) % this.l2Entries)) || this.isCompressed(this.readEntry(table, (c0 + k) % this.l2Entries))) {
            k++;
            continue;
          }
          let m = 1;
          while (k + m < n && !hostOf(this.readEntry(table, (c0 + k + m) % this.l2Entries)) && !this.isCompressed(this.readEntry(table, (c0 + k + m) % this.l2Entries))) m++;
          const host = await refs.alloc(m);
          if (full) {
            const zero = new Uint8Array(Math.min(m * cs, 1 << 20));
            for (let p = 0; p < m * cs; p += zero.length) await this.file.write(host + p, zero.subarray(0, Math.min(zero.length, m * cs - p)));
          }
          for (let j = 0; j < m; j++) {
            const idx = (c0 + k + j) % this.l2Entries;
            const old = this.readEntry(table, idx);
            const zeroFlag = !this.extendedL2 && (old.lo & 1) !== 0;
            this.putEntry(table, idx, this.normalEntry(host + j * cs, this.extendedL2 ? old.zeroBits : 0, 0, zeroFlag));
          }
          await this.writeEntries(l2off, table, (c0 + k) % this.l2Entries, m);
          end = Math.max(end, host + m * cs);
          k += m;
        }
        c0 += n;
      }
      // The data clusters lie within the file (as holes when only metadata is preallocated).
      if (this.file.size < end) await this.file.truncate(end);
    }).catch((err) => {
      throw toDiskError(err, this.path);
    });
  }

  // ---------------------------------------------------------------- header and lifetime

  /** Rewrites nb_snapshots and snapshots_offset together (one write). */
  async writeSnapshotLocation(count: number, offset: number): Promise<void> {
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setUint32(0, count);
    v.setBigUint64(4, BigInt(offset));
    await this.file.write(HDR_SNAPSHOTS, b);
    this.header.nbSnapshots = count;
    this.header.snapshotsOffset = offset;
  }

  /** Points the header at another active L1 table (one write) and loads it. */
  async switchL1(offset: number, entries: number): Promise<void> {
    const hdr = new Uint8Array(12);
    const v = new DataView(hdr.buffer);
    v.setUint32(0, entries);
    v.setBigUint64(4, BigInt(offset));
    await this.file.write(HDR_L1, hdr);
    this.l1Offset = offset;
    this.l1Size = entries;
    this.header.l1Size = entries;
    this.header.l1TableOffset = offset;
    await this.loadL1();
    this.l2Cache.clear();
  }

  async setVirtualSize(size: number): Promise<void> {
    await this.writeU64(HDR_SIZE, BigInt(size));
    this.header.size = size;
  }

  /** Drops cached L2 tables (after another actor rewrote them). */
  dropCaches(): void {
    this.l2Cache.clear();
    this.inflated.clear();
  }

  /** cache=unsafe: no syncs at flush and close (the other syncs of rare metadata moves stay). */
  skipFlushes(): void {
    this.noFlush = true;
  }

  async flush(): Promise<void> {
    if (this.noFlush) return;
    await this.serial(() => this.file.sync());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Posted writes are waited for inside the job, so that the file is closed even when one of them failed.
    await this.serial(async () => {
      this.closed = true;
      try {
        await this.settlePosted();
        if (this.dirtySetByUs) {
          if (!this.noFlush) await this.file.sync();
          this.header.incompatibleFeatures &= ~INCOMPAT_DIRTY;
          await this.writeU64(HDR_INCOMPAT, this.header.incompatibleFeatures);
        }
        if (!this.readOnly && !this.noFlush) await this.file.sync();
      } finally {
        await this.file.close();
        await this.backing?.close();
      }
    }, 'settles-itself');
  }

}

/** The largest zstd window we accept: a frame header from the file decides how much the decoder allocates. */
const MAX_ZSTD_WINDOW = 8 << 20;

/**
 * Decompresses one zstd-compressed cluster (qemu's compression_type=zstd): a single frame, possibly followed
 * by sector padding, producing exactly one cluster. Returns undefined when the data is not such a frame.
 */
function inflateZstd(src: Uint8Array, clusterSize: number): Uint8Array | undefined {
  if (src.length < 6 || src[0] !== 0x28 || src[1] !== 0xb5 || src[2] !== 0x2f || src[3] !== 0xfd) return undefined;
  const flags = src[4];
  const singleSegment = (flags >> 5) & 1;
  const sizeFlag = flags >> 6;
  const dictBytes = [0, 1, 2, 4][flags & 3];
  if (singleSegment) {
    // The window is the content size, given right after the dictionary id.
    const at = 5 + dictBytes;
    const n = sizeFlag ? 1 << sizeFlag : 1;
    if (src.length < at + n) return undefined;
    let size = 0;
    for (let i = n - 1; i >= 0; i--) size = size * 256 + src[at + i];
    if (sizeFlag === 1) size += 256;
    if (size > clusterSize) return undefined;
  } else {
    const base = 2 ** (10 + (src[5] >> 3));
    if (base + (base / 8) * (src[5] & 7) > MAX_ZSTD_WINDOW) return undefined;
  }
  const out = new Uint8Array(clusterSize);
  let got = 0;
  const d = new (fzstd().Decompress)((chunk: Uint8Array) => {
    const take = Math.min(chunk.length, clusterSize - got);
    out.set(chunk.subarray(0, take), got);
    got += take;
  });
  try {
    d.push(src, true);
  } catch {
    // The padding after the frame is not another frame; what counts is a whole cluster produced before it.
  }
  return got === clusterSize ? out : undefined;
}

/** What qemu's backing format names mean to us. */
function backingFormatName(name: string | undefined, path: string): FormatName | undefined {
  if (name === undefined || name === '') return undefined;
  if (name === 'file' || name === 'host_device') return 'raw';
  if ((FORMAT_NAMES as readonly string[]).includes(name)) return name as FormatName;
  throw new DiskError('EUNSUPPORTED', `${path}: its backing file has format '${name}', which is not supported`, path);
}

/** Checks the header's feature bits against what this driver handles; `writable` adds the write-time rules. */
export function checkFeatures(layout: Qcow2Layout, path: string, writable: boolean): void {
  const h = layout.header;
  if (h.cryptMethod !== 0) {
    throw new DiskError('EUNSUPPORTED', `${path}: encrypted qcow2 images (${h.cryptMethod === 1 ? 'AES' : h.cryptMethod === 2 ? 'LUKS' : `method ${h.cryptMethod}`}) are not supported`, path);
  }
  if (h.incompatibleFeatures & INCOMPAT_DATA_FILE) {
    throw new DiskError('EUNSUPPORTED', `${path}: the image keeps its data in an external data file${layout.dataFile ? ` (${layout.dataFile})` : ''}, which is not supported`, path);
  }
  const typeBit = (h.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (typeBit !== (h.compressionType !== COMPRESSION_ZLIB)) {
    throw corrupt(`${path}: the compression type field (${h.compressionType}) disagrees with the compression type feature bit`, path);
  }
  if (h.compressionType !== COMPRESSION_ZLIB && h.compressionType !== COMPRESSION_ZSTD) {
    throw new DiskError('EUNSUPPORTED', `${path}: unknown compression type ${h.compressionType}`, path);
  }
  if (layout.extendedL2 && h.clusterBits < 14) throw corrupt(`${path}: extended L2 entries need clusters of at least 16 KiB`, path);
  if (writable) {
    if (h.incompatibleFeatures & INCOMPAT_DIRTY) {
      throw new DiskError('EUNCLEAN', `${path}: the image was not closed cleanly; repair it with check -r all first`, path);
    }
    if (h.incompatibleFeatures & INCOMPAT_CORRUPT) {
      throw new DiskError('ECORRUPT', `${path}: the image is marked corrupt; it can only be opened read-only (repair it with check -r all)`, path);
    }
  }
}

/** Opens a qcow2 image and, when the policy allows, its backing file. */
export async function openQcow2(path: string, opts: OpenOptions): Promise<Qcow2Device> {
  const file = await ImageFile.open(path, !opts.readOnly);
  let backing: BlockDevice | undefined;
  try {
    const layout = await readLayout(file);
    checkFeatures(layout, path, !opts.readOnly);
    if (layout.backingFile !== undefined && opts.backingPolicy !== 'none') {
      const full = resolveBackingPath(path, layout.backingFile, opts.backingPolicy);
      backing = await opts.openBacking(full, backingFormatName(layout.backingFormat, path), true);
    }
    const dev = new Qcow2Device(file, layout, opts.readOnly, backing);
    await dev.loadL1();
    if (!opts.readOnly) await dev.refcounts();
    return dev;
  } catch (err) {
    await file.close();
    await backing?.close().catch(() => undefined);
    throw toDiskError(err, path);
  }
}
