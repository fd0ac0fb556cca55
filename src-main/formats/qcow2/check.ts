/**
 * `qemu-img check` for qcow2: rebuilds every cluster's reference count in memory from the metadata that
 * points at clusters, compares it with the stored refcounts and, when asked, repairs what qemu-img's repair
 * repairs. Verdicts, counts, messages and exit codes follow qemu-img 7.2 (block/qcow2-refcount.c), which the
 * interop tests hold us to; the code is our own.
 *
 * Like qemu, metadata that lies past the end of the file reads as zeros and is reported rather than refused,
 * so a damaged image still gets a verdict. Memory is bounded by the file: one refcount array entry (1-4 bytes)
 * per cluster of the file, tables read one at a time and never larger than the file holds.
 *
 * Where we knowingly differ from qemu-img's repair:
 * - a refcount block "outside the image" is reached by growing the file only within reason (qemu grows it to
 *   any size, even terabytes); farther ones are dropped by rebuilding the refcount structure instead;
 * - refcounts that cannot be read (an unaligned refcount block) are repaired by the rebuild, where qemu stops
 *   because it marked the image corrupt on the way;
 * - clusters freed by the repair keep their bytes (qemu discards them from the file); nothing reads them;
 * - snapshot table damage is reported, not rewritten (that needs cluster allocation).
 */
import { DiskError, throwIfAborted, toDiskError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { CheckProblem, CheckReport, CheckOptions } from '../../block/types';
import {
  AUTOCLEAR_BITMAPS,
  EXT_BITMAPS,
  EXT_CRYPTO,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  MAX_L1_BYTES,
  MAX_SNAPSHOTS,
  compressedExtent,
  getRefcount,
  parseSnapshotTable,
  readLayout,
  setRefcount,
  type Qcow2Layout,
  type SnapshotEntry,
} from './layout';

export type RepairMode = 'none' | 'leaks' | 'all';

const FIX_LEAKS = 1;
const FIX_ERRORS = 2;
/** CHECK_FRAG_INFO: count allocation/fragmentation (active L1 only). */
const FRAG_INFO = 2;

/** qemu refuses to check images with more clusters than this (INT_MAX). */
const MAX_CLUSTERS = 2 ** 31 - 1;
/** Our own ceiling on the in-memory refcount array. */
const MAX_REFCOUNT_ARRAY_BYTES = 1024 * 1024 * 1024;
/** A refcount block "outside the image" is only fixed by growing the file when that stays modest. */
const MAX_GROW_FOR_REFBLOCK = 64 * 1024 * 1024;
/** Beyond this many messages the rest are counted, not kept: a wrecked image must not exhaust memory. */
const MAX_PROBLEMS = 10000;
/** The block layer's limit on request offsets (INT64_MAX, less alignment): metadata beyond it cannot be read. */
const MAX_READABLE_OFFSET = 2 ** 63 - 2 ** 32;
/** Header field offsets. */
const HDR_REFTABLE_OFFSET = 48;
const HDR_INCOMPAT = 72;

const TWO32 = 2 ** 32;

/** What qemu's BdrvCheckResult holds. */
interface Result {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
}

function emptyResult(): Result {
  return {
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
  };
}

/** Lower-case hex of a 64-bit entry given as two 32-bit halves (qemu's %PRIx64). */
function hex64(hi: number, lo: number): string {
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString(16);
}

function hex(n: number | bigint): string {
  return n.toString(16);
}

/** C's %#x: "0x…", but plain "0" for zero. */
function altHex(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

/**
 * The in-memory refcount table (qemu's IMRT): one counter per cluster, in the narrowest typed array that
 * holds the image's refcount width, saturating at the largest refcount the image can store.
 */
export class RefcountArray {
  private data: Uint8Array | Uint16Array | Uint32Array;
  private length: number;
  /** The largest value an entry holds; reaching it again is qemu's "overflow". */
  readonly max: number;
  private readonly bytesPer: 1 | 2 | 4;

  /** `size` clusters; a little spare capacity saves a full copy when a reference lands just past the end. */
  constructor(refcountBits: number, size: number) {
    this.bytesPer = refcountBits <= 8 ? 1 : refcountBits <= 16 ? 2 : 4;
    this.max = refcountBits >= 32 ? TWO32 - 1 : 2 ** refcountBits - 1;
    this.checkedSize(size);
    this.data = this.make(size + 2);
    this.length = size;
  }

  private make(n: number): Uint8Array | Uint16Array | Uint32Array {
    return this.bytesPer === 1 ? new Uint8Array(n) : this.bytesPer === 2 ? new Uint16Array(n) : new Uint32Array(n);
  }

  /** Refuses sizes that would not fit our memory budget, before allocating. */
  private checkedSize(size: number): number {
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_CLUSTERS || size * this.bytesPer > MAX_REFCOUNT_ARRAY_BYTES) {
      throw new DiskError('EUNSUPPORTED', `the image has too many clusters (${size}) to check in memory`);
    }
    return size;
  }

  get size(): number {
    return this.length;
  }

  get(i: number): number {
    return i < this.length ? this.data[i] : 0;
  }

  set(i: number, v: number): void {
    if (i >= this.length) this.resize(i + 1);
    this.data[i] = v;
  }

  /** Grows (never shrinks) the logical size; new entries are zero. */
  resize(n: number): void {
    if (n <= this.length) return;
    if (n > this.data.length) {
      const grown = this.make(this.checkedSize(Math.max(n, Math.min(MAX_CLUSTERS, Math.ceil(this.data.length * 1.5)))));
      grown.set(this.data);
      this.data = grown;
    }
    this.length = n;
  }

  clear(): void {
    this.data.fill(0);
  }
}

/** The standard (non-compressed) host offset of an L1/L2/refcount entry: bits 9-55. */
function stdOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
}

const enum ClusterType {
  Unallocated,
  ZeroPlain,
  ZeroAlloc,
  Normal,
  Compressed,
}


interface Snapshots {
  entries: SnapshotEntry[];
  byteLength: number;
}

async function readSnapshotsForCheck(file: ImageFile, layout: Qcow2Layout): Promise<Snapshots> {
  const h = layout.header;
  if (h.nbSnapshots === 0) return { entries: [], byteLength: 0 };
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw new DiskError('ECORRUPT', `${file.path}: too many snapshots (${h.nbSnapshots})`, file.path);
  if (h.snapshotsOffset >= file.size) throw new DiskError('ECORRUPT', `${file.path}: the snapshot table lies past the end of the file`, file.path);
  const len = Math.min(file.size - h.snapshotsOffset, 64 * 1024 * 1024);
  const buf = await file.readBlock(h.snapshotsOffset, len, 'snapshot table');
  // Alignment (cluster size 1 here) and tables past the end of the file are the check's to report, as qemu does.
  return parseSnapshotTable(buf, h.nbSnapshots, file.path, 1, Number.MAX_SAFE_INTEGER);
}

/** The refcounts stored in the image, read through a small cache of refcount blocks. */
class StoredRefcounts {
  private readonly cache = new Map<number, Uint8Array>();

  constructor(
    private readonly c: Checker,
  ) {}

  clear(): void {
    this.cache.clear();
  }

  /** Offset of refcount block `index` (0 = none), or -1 when the table entry is not cluster aligned. */
  blockOffset(index: number): number {
    const c = this.c;
    if (index >= c.reftableEntries) return 0;
    const off = c.reftable[2 * index] * TWO32 + ((c.reftable[2 * index + 1] & 0xfffffe00) >>> 0);
    // qemu cannot read at offsets near 2^63 (the block layer refuses them) or inside a cluster.
    if (off % c.cs !== 0 || off > MAX_READABLE_OFFSET) return -1;
    return off;
  }

  async block(offset: number): Promise<Uint8Array> {
    let b = this.cache.get(offset);
    if (b) return b;
    b = await this.c.readPadded(offset, this.c.cs);
    if (this.cache.size >= 64) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(offset, b);
    return b;
  }

  /** The stored refcount of a cluster, or undefined when it cannot be read (unaligned refcount block). */
  async get(cluster: number): Promise<number | undefined> {
    const c = this.c;
    const index = Math.floor(cluster / c.refblockEntries);
    const off = this.blockOffset(index);
    if (off < 0) return undefined;
    if (off === 0) return 0;
    const b = await this.block(off);
    return getRefcount(b, cluster - index * c.refblockEntries, c.refcountBits);
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

/** Ends a check that cannot go on, after its message was reported (qemu's -EIO from the check). */
class CheckFailed extends Error {}

/** The classes of metadata qemu's overlap check knows (in its default "cached" mode, without inactive L2s). */
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
type MetadataKind = (typeof METADATA_KINDS)[number];

/**
 * Where the image's metadata lies, so that a repair never writes one structure over another: our
 * counterpart of qemu's qcow2_check_metadata_overlap(). Cluster-sized tables are kept per cluster (as a set
 * of kinds: damaged images put two structures in one cluster), the few others as byte ranges.
 */
class MetadataMap {
  private readonly clusters = new Map<number, number>();
  private readonly ranges: Array<{ start: number; end: number; kind: MetadataKind }> = [];

  constructor(private readonly cs: number) {}

  add(kind: MetadataKind, offset: number, size: number): void {
    if (size <= 0 || !Number.isFinite(offset)) return;
    if (offset % this.cs === 0 && size === this.cs) {
      const k = offset / this.cs;
      this.clusters.set(k, (this.clusters.get(k) ?? 0) | (1 << METADATA_KINDS.indexOf(kind)));
    } else this.ranges.push({ start: offset, end: offset + size, kind });
  }

  /** The structure a write of [offset, offset+size) would hit, widened to whole clusters as qemu does. */
  overlap(offset: number, size: number, ignore?: MetadataKind): MetadataKind | undefined {
    const first = Math.floor(offset / this.cs);
    const end = Math.ceil((offset + size) / this.cs);
    const ignored = ignore ? 1 << METADATA_KINDS.indexOf(ignore) : 0;
    for (let k = first; k < end; k++) {
      const kinds = (this.clusters.get(k) ?? 0) & ~ignored;
      if (kinds) return METADATA_KINDS[31 - Math.clz32(kinds & -kinds)];
    }
    for (const r of this.ranges) {
      if (r.kind !== ignore && r.start < end * this.cs && r.end > first * this.cs) return r.kind;
    }
    return undefined;
  }
}

/** One check pass over an open image, qemu's qcow2_co_check_locked(). */
class Checker {
  readonly cs: number;
  readonly cb: number;
  readonly refcountBits: number;
  readonly refblockEntries: number;
  readonly l2Entries: number;
  readonly l2EntrySize: number;
  readonly extL2: boolean;
  readonly dataFile: boolean;
  /** Refcount table entries as big-endian halves: [hi0, lo0, hi1, lo1, ...]. */
  reftable: Uint32Array = new Uint32Array(0);
  reftableEntries = 0;
  reftableOffset: number;
  reftableClusters: number;
  /** Active L1 table as loaded at "open", as halves. */
  private l1: Uint32Array = new Uint32Array(0);
  readonly stored: StoredRefcounts;
  private rebuild = false;
  /** Refcounts that could not be read (unaligned refcount block); a rebuild makes them moot. */
  private unreadable = 0;
  /** Marks messages of a repairing pass: `fixed` tells whether the problem was repaired. */
  private repairing = false;
  private omitted = 0;
  private metadata!: MetadataMap;

  constructor(
    private readonly file: ImageFile,
    private readonly layout: Qcow2Layout,
    private readonly snapshots: Snapshots,
    private readonly problems: CheckProblem[],
    private readonly signal?: AbortSignal,
  ) {
    const h = layout.header;
    this.cs = layout.clusterSize;
    this.cb = h.clusterBits;
    this.refcountBits = layout.refcountBits;
    this.refblockEntries = (this.cs * 8) / this.refcountBits;
    this.l2Entries = layout.l2Entries;
    this.l2EntrySize = layout.l2EntrySize;
    this.extL2 = layout.extendedL2;
    this.dataFile = (h.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
    this.reftableOffset = h.refcountTableOffset;
    this.reftableClusters = h.refcountTableClusters;
    this.stored = new StoredRefcounts(this);
  }

  // ---- I/O ----

  /** Reads `length` bytes; what lies past the end of the file reads as zeros (as qemu's file driver does). */
  async readPadded(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    if (offset < this.file.size) await this.file.readZeroPadded(offset, buf);
    return buf;
  }

  /**
   * Reads a table of 8-byte entries, allocating no more than the file holds from `offset`: entries past the
   * end of the file are zero (unused), so they are simply not returned.
   */
  async readTable(offset: number, bytes: number): Promise<Uint8Array> {
    const avail = Math.max(0, Math.min(bytes, this.file.size - offset));
    return this.readPadded(offset, avail - (avail % 8));
  }

  /**
   * Writes metadata after checking that it does not land on another structure (`ignore`: the class being
   * rewritten); throws a DiskError naming the structure otherwise.
   */
  async write(offset: number, data: Uint8Array, ignore?: MetadataKind | 'unchecked'): Promise<void> {
    if (ignore !== 'unchecked') {
      const hit = this.metadata.overlap(offset, data.length, ignore);
      if (hit) throw new DiskError('ECORRUPT', `Preventing invalid write on metadata (overlaps with ${hit})`);
    }
    await this.file.write(offset, data);
  }

  /** Records where every structure lies (header, tables, L2 tables, refcount blocks, snapshots, bitmaps). */
  private mapMetadata(): void {
    const h = this.layout.header;
    const m = new MetadataMap(this.cs);
    m.add('main header', 0, this.cs);
    m.add('active L1 table', h.l1TableOffset, h.l1Size * 8);
    for (let i = 0; i < this.l1.length / 2; i++) {
      const off = stdOffset(this.l1[2 * i], this.l1[2 * i + 1]);
      if (off) m.add('active L2 table', off, this.cs);
    }
    m.add('refcount table', this.reftableOffset, this.reftableClusters * this.cs);
    for (let i = 0; i < this.reftableEntries; i++) {
      const off = this.reftable[2 * i] * TWO32 + ((this.reftable[2 * i + 1] & 0xfffffe00) >>> 0);
      if (off) m.add('refcount block', off, this.cs);
    }
    m.add('snapshot table', h.snapshotsOffset, this.snapshots.byteLength);
    for (const sn of this.snapshots.entries) m.add('inactive L1 table', sn.l1TableOffset, sn.l1Size * 8);
    const bm = this.layout.extensions.find((e) => e.type === EXT_BITMAPS);
    if (bm && bm.data.length >= 24 && (h.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n) {
      const v = new DataView(bm.data.buffer, bm.data.byteOffset, bm.data.byteLength);
      m.add('bitmap directory', Number(v.getBigUint64(16)), Number(v.getBigUint64(8)));
    }
    this.metadata = m;
  }

  async load(): Promise<void> {
    const h = this.layout.header;
    await this.loadReftable();
    const l1 = await this.readTable(h.l1TableOffset, h.l1Size * 8);
    this.l1 = halves(l1);
    this.mapMetadata();
  }

  private async loadReftable(): Promise<void> {
    const t = await this.readTable(this.reftableOffset, this.reftableClusters * this.cs);
    this.reftable = halves(t);
    this.reftableEntries = t.length / 8;
    this.stored.clear();
  }

  // ---- messages ----

  private say(severity: CheckProblem['severity'], message: string): void {
    if (this.problems.length >= MAX_PROBLEMS) {
      this.omitted++;
      return;
    }
    const p: CheckProblem = { severity, message };
    if (this.repairing) p.fixed = message.startsWith('Repairing');
    this.problems.push(p);
  }

  finishMessages(): void {
    if (this.omitted > 0) this.problems.push({ severity: 'error', message: `(${this.omitted} further messages were left out)` });
    this.omitted = 0;
  }

  // ---- building the in-memory refcounts ----

  /** qcow2_inc_refcounts_imrt(). */
  private incRefcounts(res: Result, imrt: RefcountArray, offset: number, size: number): void {
    if (size <= 0) return;
    // The last cluster may be only partly written, so up to one cluster past the end of the file is fine.
    if (offset + size - this.file.size >= this.cs) {
      this.say('corruption', `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`);
      res.corruptions++;
      return;
    }
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) {
      const rc = imrt.get(k);
      if (rc >= imrt.max) {
        this.say(
          'corruption',
          `ERROR: overflow cluster offset=0x${hex(k * this.cs)}\nUse qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing`,
        );
        res.corruptions++;
        continue;
      }
      imrt.set(k, rc + 1);
    }
  }

  private clusterType(hi: number, lo: number): ClusterType {
    if (hi & 0x40000000) return ClusterType.Compressed;
    const off = stdOffset(hi, lo);
    if (lo & 1 && !this.extL2) return off ? ClusterType.ZeroAlloc : ClusterType.ZeroPlain;
    if (off === 0) return this.dataFile && hi & 0x80000000 ? ClusterType.Normal : ClusterType.Unallocated;
    return ClusterType.Normal;
  }

  /** check_refcounts_l2(). */
  private async checkL2(res: Result, imrt: RefcountArray, l2Offset: number, flags: number, fix: number, active: boolean): Promise<void> {
    throwIfAborted(this.signal);
    const es = this.l2EntrySize;
    const table = await this.readPadded(l2Offset, this.l2Entries * es);
    const v = new DataView(table.buffer);
    let nextContiguous = 0;
    for (let i = 0; i < this.l2Entries; i++) {
      let hi = v.getUint32(i * es);
      const lo = v.getUint32(i * es + 4);
      const bmHi = es === 16 ? v.getUint32(i * es + 8) : 0; // "zero" bits
      const bmLo = es === 16 ? v.getUint32(i * es + 12) : 0; // "allocated" bits
      if (hi === 0 && lo === 0 && bmHi === 0 && bmLo === 0) continue;
      const type = this.clusterType(hi, lo);
      if (type !== ClusterType.Compressed && (hi & 0x3f000000 || lo & 0x1fe)) {
        this.say('corruption', `ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
        res.corruptions++;
      }
      switch (type) {
        case ClusterType.Compressed: {
          if (hi & 0x80000000) {
            hi &= 0x7fffffff;
            const { offset } = compressedExtent((BigInt(hi) << 32n) | BigInt(lo), this.cb);
            this.say('corruption', `ERROR: coffset=0x${hex(offset)}: copied flag must never be set for compressed clusters`);
            res.corruptions++;
          }
          if (this.dataFile) {
            this.say('corruption', `ERROR compressed cluster ${i} with data file, entry=0x${hex64(hi, lo)}`);
            res.corruptions++;
            continue;
          }
          if (bmHi || bmLo) {
            this.say('corruption', `ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex64(hi, lo)}`);
            res.corruptions++;
            continue;
          }
          const { offset, length } = compressedExtent((BigInt(hi) << 32n) | BigInt(lo), this.cb);
          this.incRefcounts(res, imrt, offset, length);
          if (flags & FRAG_INFO) {
            res.allocatedClusters++;
            res.compressedClusters++;
            // Compressed clusters share sectors with their neighbours: qemu counts them all as fragmented.
            res.fragmentedClusters++;
          }
          break;
        }
        case ClusterType.ZeroAlloc:
        case ClusterType.Normal: {
          const offset = stdOffset(hi, lo);
          if (this.extL2 && (bmHi & bmLo) !== 0) {
            this.say('corruption', `ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
            res.corruptions++;
          }
          if (offset % this.cs !== 0) {
            res.corruptions++;
            const containsData = this.extL2 ? bmLo !== 0 : (lo & 1) === 0;
            if (!containsData) {
              const repair = (fix & FIX_ERRORS) !== 0;
              this.say('corruption', `${repair ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
              if (repair && (await this.zeroL2Entry(res, l2Offset, table, i, active))) continue;
            } else {
              this.say('corruption', `ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
            }
          }
          if (flags & FRAG_INFO) {
            res.allocatedClusters++;
            if (nextContiguous && offset !== nextContiguous) res.fragmentedClusters++;
            nextContiguous = offset + this.cs;
          }
          if (!this.dataFile) this.incRefcounts(res, imrt, offset, this.cs);
          break;
        }
        case ClusterType.ZeroPlain:
          break;
        case ClusterType.Unallocated:
          if (this.extL2 && bmLo !== 0) {
            this.say('corruption', 'ERROR: Unallocated cluster has non-zero subcluster allocation map');
            res.corruptions++;
          }
          break;
      }
    }
  }

  /**
   * fix_l2_entry_by_zero(): turns an entry into a plain zero cluster (all subclusters zero with extended L2).
   * The caller has counted the corruption; returns true when it was repaired.
   */
  private async zeroL2Entry(res: Result, l2Offset: number, table: Uint8Array, i: number, active: boolean): Promise<boolean> {
    const es = this.l2EntrySize;
    const at = l2Offset + i * es;
    // qemu's check stops when the entry would be written over other metadata.
    if (this.metadata.overlap(at, es, active ? 'active L2 table' : undefined)) {
      this.say('error', 'ERROR: Overlap check failed');
      res.checkErrors++;
      throw new CheckFailed();
    }
    const v = new DataView(table.buffer);
    if (es === 16) {
      const bmLo = v.getUint32(i * es + 12);
      const bmHi = v.getUint32(i * es + 8);
      v.setUint32(i * es + 8, (bmHi | bmLo) >>> 0);
      v.setUint32(i * es + 12, 0);
      v.setUint32(i * es, 0);
      v.setUint32(i * es + 4, 0);
    } else {
      v.setUint32(i * es, 0);
      v.setUint32(i * es + 4, 1); // QCOW_OFLAG_ZERO
    }
    try {
      await this.write(at, table.subarray(i * es, i * es + es), 'unchecked');
      await this.file.sync();
    } catch (err) {
      this.say('error', `ERROR: Failed to overwrite L2 table entry: ${toDiskError(err).message}`);
      res.checkErrors++;
      return false;
    }
    res.corruptions--;
    res.corruptionsFixed++;
    return true;
  }

  /** check_refcounts_l1(). */
  private async checkL1(res: Result, imrt: RefcountArray, l1Offset: number, l1Size: number, flags: number, fix: number, active: boolean): Promise<void> {
    if (l1Size === 0) return;
    this.incRefcounts(res, imrt, l1Offset, l1Size * 8);
    const l1 = active && l1Offset === this.layout.header.l1TableOffset ? this.l1 : halves(await this.readTable(l1Offset, l1Size * 8));
    for (let i = 0; i < l1.length / 2; i++) {
      const hi = l1[2 * i];
      const lo = l1[2 * i + 1];
      if (hi === 0 && lo === 0) continue;
      if (hi & 0x7f000000 || lo & 0x1ff) {
        this.say('corruption', `ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
        res.corruptions++;
      }
      const l2Offset = stdOffset(hi, lo);
      this.incRefcounts(res, imrt, l2Offset, this.cs);
      if (l2Offset % this.cs !== 0) {
        this.say('corruption', `ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
        res.corruptions++;
      }
      await this.checkL2(res, imrt, l2Offset, flags, fix, active);
    }
  }

  /** qcow2_check_bitmaps_refcounts(): the bitmap directory, bitmap tables and bitmap data clusters. */
  private async checkBitmaps(res: Result, imrt: RefcountArray): Promise<void> {
    const h = this.layout.header;
    // qemu ignores the extension when a program without bitmap support cleared the autoclear bit.
    if ((h.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return;
    const ext = this.layout.extensions.find((e) => e.type === EXT_BITMAPS);
    if (!ext || ext.data.length < 24) return;
    const ev = new DataView(ext.data.buffer, ext.data.byteOffset, ext.data.byteLength);
    const nb = ev.getUint32(0);
    const dirSize = Number(ev.getBigUint64(8));
    const dirOffset = Number(ev.getBigUint64(16));
    if (nb === 0) return;
    this.incRefcounts(res, imrt, dirOffset, dirSize);
    if (dirOffset % this.cs !== 0 || dirOffset + dirSize > this.file.size || dirSize > 64 * 1024 * 1024) {
      res.corruptions++;
      return;
    }
    const dir = await this.readPadded(dirOffset, dirSize);
    const dv = new DataView(dir.buffer);
    let pos = 0;
    for (let n = 0; n < nb; n++) {
      if (pos + 24 > dir.length) {
        res.corruptions++;
        return;
      }
      const tableOffset = Number(dv.getBigUint64(pos));
      const tableSize = dv.getUint32(pos + 8);
      const nameSize = dv.getUint16(pos + 18);
      const extraSize = dv.getUint32(pos + 20);
      pos += Math.ceil((24 + extraSize + nameSize) / 8) * 8;
      if (pos > dir.length) {
        res.corruptions++;
        return;
      }
      this.incRefcounts(res, imrt, tableOffset, tableSize * 8);
      if (tableOffset % this.cs !== 0 || tableSize * 8 > MAX_L1_BYTES || tableOffset + tableSize * 8 > this.file.size) {
        res.corruptions++;
        return;
      }
      const table = await this.readTable(tableOffset, tableSize * 8);
      const tv = new DataView(table.buffer);
      for (let i = 0; i < table.length / 8; i++) {
        const hi = tv.getUint32(i * 8);
        const lo = tv.getUint32(i * 8 + 4);
        const offset = stdOffset(hi, lo);
        // Reserved bits, the "all ones" flag on an allocated entry, or an unaligned offset.
        if (hi & 0xff000000 || lo & 0x1fe || (offset !== 0 && (lo & 1 || offset % this.cs !== 0))) {
          res.corruptions++;
          continue;
        }
        if (offset !== 0) this.incRefcounts(res, imrt, offset, this.cs);
      }
    }
  }

  /** check_refblocks(): refcount table entries and the refcount blocks themselves. */
  private async checkRefblocks(res: Result, fix: number, imrt: RefcountArray): Promise<void> {
    for (let i = 0; i < this.reftableEntries; i++) {
      const hi = this.reftable[2 * i];
      const lo = this.reftable[2 * i + 1];
      if (lo & 0x1ff) {
        this.say('corruption', `ERROR refcount table entry ${i} has reserved bits set`);
        res.corruptions++;
        this.rebuild = true;
        continue;
      }
      const offset = hi * TWO32 + lo;
      if (offset % this.cs !== 0) {
        this.say('corruption', `ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
        res.corruptions++;
        this.rebuild = true;
        continue;
      }
      const cluster = offset / this.cs;
      if (cluster >= imrt.size) {
        res.corruptions++;
        const repair = (fix & FIX_ERRORS) !== 0;
        this.say('corruption', `${repair ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
        if (repair) {
          // qemu grows the file so that the block exists (it reads as zeros); we only do so within reason
          // and otherwise leave it to the rebuild, which drops the entry.
          const end = offset + this.cs;
          if (end - this.file.size <= Math.max(this.file.size, MAX_GROW_FOR_REFBLOCK)) {
            await this.file.truncate(end);
            imrt.resize(Math.ceil(this.file.size / this.cs));
            res.corruptions--;
            res.corruptionsFixed++;
            this.incRefcounts(res, imrt, offset, this.cs);
          } else {
            this.rebuild = true;
            this.say('error', 'ERROR could not resize image: the refcount block lies too far past the end of the file');
          }
        }
        continue;
      }
      if (offset !== 0) {
        this.incRefcounts(res, imrt, offset, this.cs);
        const rc = imrt.get(cluster);
        if (rc !== 1) {
          this.say('corruption', `ERROR refcount block ${i} refcount=${rc}`);
          res.corruptions++;
          this.rebuild = true;
        }
      }
    }
  }

  /** calculate_refcounts(): everything that references clusters. */
  private async calculate(res: Result, fix: number, imrt: RefcountArray): Promise<void> {
    const h = this.layout.header;
    this.incRefcounts(res, imrt, 0, this.cs);
    await this.checkL1(res, imrt, h.l1TableOffset, h.l1Size, FRAG_INFO, fix, true);
    const snaps = this.snapshots.entries;
    if (this.dataFile && snaps.length) {
      this.say('corruption', `ERROR ${snaps.length} snapshots in image with data file`);
      res.corruptions++;
    }
    for (const sn of snaps) {
      if (sn.l1TableOffset % this.cs !== 0) {
        this.say('corruption', `ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${altHex(sn.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
        res.corruptions++;
        continue;
      }
      await this.checkL1(res, imrt, sn.l1TableOffset, sn.l1Size, 0, fix, false);
    }
    this.incRefcounts(res, imrt, h.snapshotsOffset, this.snapshots.byteLength);
    this.incRefcounts(res, imrt, this.reftableOffset, this.reftableClusters * this.cs);
    const crypto = this.layout.extensions.find((e) => e.type === EXT_CRYPTO);
    if (crypto && crypto.data.length >= 16) {
      const cv = new DataView(crypto.data.buffer, crypto.data.byteOffset, crypto.data.byteLength);
      const off = cv.getBigUint64(0);
      const len = cv.getBigUint64(8);
      if (off + len > BigInt(Number.MAX_SAFE_INTEGER)) {
        this.say('corruption', `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(off)} size 0x${hex(len)}`);
        res.corruptions++;
      } else this.incRefcounts(res, imrt, Number(off), Number(len));
    }
    await this.checkBitmaps(res, imrt);
    await this.checkRefblocks(res, fix, imrt);
  }

  /** compare_refcounts(): stored against computed, fixing what `fix` allows. Returns the highest used cluster. */
  private async compare(res: Result, fix: number, imrt: RefcountArray): Promise<number> {
    let highest = 0;
    const per = this.refblockEntries;
    for (let index = 0; index * per < imrt.size; index++) {
      throwIfAborted(this.signal);
      const first = index * per;
      const end = Math.min(first + per, imrt.size);
      const off = this.stored.blockOffset(index);
      if (off < 0) {
        for (let k = first; k < end; k++) {
          this.say('error', `Can't get refcount for cluster ${k}: Input/output error`);
          res.checkErrors++;
          this.unreadable++;
        }
        continue;
      }
      const block = off ? await this.stored.block(off) : undefined;
      for (let k = first; k < end; k++) {
        const rc1 = block ? getRefcount(block, k - first, this.refcountBits) : 0;
        const rc2 = imrt.get(k);
        if (rc1 > 0 || rc2 > 0) highest = k;
        if (rc1 === rc2) continue;
        let kind: 'leak' | 'corruption' | undefined;
        if (rc1 === 0) this.rebuild = true;
        else if (rc1 > rc2 && fix & FIX_LEAKS) kind = 'leak';
        else if (rc1 < rc2 && fix & FIX_ERRORS) kind = 'corruption';
        const word = kind ? 'Repairing' : rc1 < rc2 ? 'ERROR' : 'Leaked';
        // A 64-bit refcount above 2^53 is garbage, but qemu prints it exactly.
        const shown = rc1 > Number.MAX_SAFE_INTEGER && block ? new DataView(block.buffer).getBigUint64((k - first) * 8) : rc1;
        this.say(rc1 < rc2 ? 'corruption' : 'leak', `${word} cluster ${k} refcount=${shown} reference=${rc2}`);
        if (kind) {
          try {
            await this.stored.set(k, rc2);
            if (kind === 'leak') res.leaksFixed++;
            else res.corruptionsFixed++;
            continue;
          } catch (err) {
            this.say('error', `ERROR could not update the refcount of cluster ${k}: ${toDiskError(err).message}`);
          }
        }
        if (rc1 < rc2) res.corruptions++;
        else res.leaks++;
      }
    }
    return highest;
  }

  /** check_oflag_copied(): the COPIED flag of active L1 and L2 entries must say "refcount is exactly 1". */
  private async checkOflagCopied(res: Result, fix: number): Promise<void> {
    // With -r leaks the flags are only rewritten when the refcounts are known to be right by now.
    const repair = fix & FIX_ERRORS ? true : fix & FIX_LEAKS ? res.checkErrors === 0 && res.corruptions === 0 && res.leaks === 0 : false;
    const word = repair ? 'Repairing' : 'ERROR';
    const h = this.layout.header;
    const es = this.l2EntrySize;
    for (let i = 0; i < this.l1.length / 2; i++) {
      throwIfAborted(this.signal);
      let hi = this.l1[2 * i];
      const lo = this.l1[2 * i + 1];
      const l2Offset = stdOffset(hi, lo);
      if (l2Offset === 0) continue;
      const rc = await this.stored.get(Math.floor(l2Offset / this.cs));
      if (rc === undefined) continue; // reported by the comparison already
      if ((rc === 1) !== ((hi & 0x80000000) !== 0)) {
        res.corruptions++;
        this.say('corruption', `${word} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${await this.stored.shown(Math.floor(l2Offset / this.cs), rc)}`);
        if (repair) {
          hi = rc === 1 ? (hi | 0x80000000) >>> 0 : hi & 0x7fffffff;
          const at = h.l1TableOffset + 8 * i;
          const e = new Uint8Array(8);
          new DataView(e.buffer).setUint32(0, hi);
          new DataView(e.buffer).setUint32(4, lo);
          try {
            await this.write(at, e, 'active L1 table');
          } catch (err) {
            this.say('error', `ERROR: Could not write the L1 table entry: ${toDiskError(err).message}`);
            res.checkErrors++;
            throw new CheckFailed();
          }
          await this.file.sync();
          this.l1[2 * i] = hi;
          res.corruptions--;
          res.corruptionsFixed++;
        }
      }
      const table = await this.readPadded(l2Offset, this.l2Entries * es);
      const v = new DataView(table.buffer);
      let dirty = 0;
      for (let j = 0; j < this.l2Entries; j++) {
        const ehi = v.getUint32(j * es);
        const elo = v.getUint32(j * es + 4);
        const type = this.clusterType(ehi, elo);
        if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
        const erc = this.dataFile ? 1 : await this.stored.get(Math.floor(stdOffset(ehi, elo) / this.cs));
        if (erc === undefined) continue;
        if ((erc === 1) !== ((ehi & 0x80000000) !== 0)) {
          res.corruptions++;
          this.say('corruption', `${word} OFLAG_COPIED data cluster: l2_entry=${hex64(ehi, elo)} refcount=${await this.stored.shown(Math.floor(stdOffset(ehi, elo) / this.cs), erc)}`);
          if (repair) {
            v.setUint32(j * es, erc === 1 ? (ehi | 0x80000000) >>> 0 : ehi & 0x7fffffff);
            dirty++;
          }
        }
      }
      if (dirty) {
        if (this.metadata.overlap(l2Offset, this.cs, 'active L2 table')) {
          this.say('error', 'ERROR: Could not write L2 table; metadata overlap check failed: Input/output error');
          res.checkErrors++;
          throw new CheckFailed();
        }
        await this.write(l2Offset, table, 'unchecked');
        await this.file.sync();
        res.corruptions -= dirty;
        res.corruptionsFixed += dirty;
      }
    }
  }

  // ---- rebuilding the refcount structure ----

  /** alloc_clusters_imrt(): finds `count` free clusters in the in-memory table, growing it at the end if needed. */
  private allocInImrt(count: number, imrt: RefcountArray, firstFree: { v: number }): number {
    let cluster = firstFree.v;
    let contiguous = 0;
    let firstGap = true;
    for (; cluster < imrt.size && contiguous < count; cluster++) {
      if (imrt.get(cluster) === 0) {
        contiguous++;
        if (firstGap) {
          firstFree.v = cluster;
          firstGap = false;
        }
      } else contiguous = 0;
    }
    if (contiguous < count) imrt.resize(cluster + count - contiguous);
    cluster -= contiguous;
    for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
    return cluster * this.cs;
  }

  /** The on-disk refcount block `index`, encoded from the in-memory refcounts. */
  private encodeRefblock(imrt: RefcountArray, index: number): Uint8Array {
    const block = new Uint8Array(this.cs);
    const first = index * this.refblockEntries;
    const end = Math.min(first + this.refblockEntries, imrt.size);
    for (let k = first; k < end; k++) {
      const rc = imrt.get(k);
      if (rc) setRefcount(block, k - first, this.refcountBits, rc);
    }
    return block;
  }

  /**
   * rebuild_refcounts_write_refblocks(): writes a refcount block for every used cluster in [first, end),
   * allocating blocks (inside the range they cover where possible) as needed. Returns true when the new
   * refcount table had to grow.
   */
  private async writeRefblocks(imrt: RefcountArray, firstCluster: number, endCluster: number, table: { e: number[] }): Promise<boolean> {
    const firstFree = { v: 0 };
    let grown = false;
    let end = endCluster;
    for (let cluster = firstCluster; cluster < end; ) {
      throwIfAborted(this.signal);
      if (imrt.get(cluster) === 0) {
        cluster++;
        continue;
      }
      const index = Math.floor(cluster / this.refblockEntries);
      const start = index * this.refblockEntries;
      let blockOffset = table.e[index] ?? 0;
      if (!blockOffset) {
        // Blocks written earlier already hold their final counts, so allocate from this block's own range.
        if (firstFree.v < start) firstFree.v = start;
        blockOffset = this.allocInImrt(1, imrt, firstFree);
        const blockCluster = blockOffset / this.cs;
        // The block that counts this new block must be written as well.
        if (blockCluster >= end) end = blockCluster + 1;
        if (table.e.length <= index) {
          const per = this.cs / 8;
          const n = Math.ceil((index + 1) / per) * per;
          if (n * 8 > 8 * 1024 * 1024) throw new CheckFailed('ERROR the new refcount table would be too large');
          while (table.e.length < n) table.e.push(0);
          grown = true;
        }
        table.e[index] = blockOffset;
      }
      try {
        await this.write(blockOffset, this.encodeRefblock(imrt, index));
      } catch (err) {
        throw new CheckFailed(`ERROR writing refblock: ${toDiskError(err).message}`);
      }
      cluster = start + this.refblockEntries;
    }
    return grown;
  }

  /**
   * rebuild_refcount_structure(): new refcount blocks and table placed in clusters that nothing uses, written
   * before the header is switched to them, so a crash leaves the old (if wrong) structure in place.
   */
  private async rebuildStructure(imrt: RefcountArray): Promise<void> {
    this.stored.clear();
    const table = { e: [] as number[] };
    await this.writeRefblocks(imrt, 0, imrt.size, table);
    let tableOffset: number;
    let tableClusters: number;
    for (;;) {
      tableClusters = Math.ceil((table.e.length * 8) / this.cs);
      tableOffset = this.allocInImrt(tableClusters, imrt, { v: 0 });
      const start = tableOffset / this.cs;
      // The refcount blocks covering the table now count it; a larger table needs a new place.
      if (!(await this.writeRefblocks(imrt, start, start + tableClusters, table))) break;
    }
    await this.file.sync();
    const buf = new Uint8Array(tableClusters * this.cs);
    const bv = new DataView(buf.buffer);
    table.e.forEach((e, i) => bv.setBigUint64(i * 8, BigInt(e)));
    try {
      await this.write(tableOffset, buf);
    } catch (err) {
      throw new CheckFailed(`ERROR writing reftable: ${toDiskError(err).message}`);
    }
    await this.file.sync();
    const hdr = new Uint8Array(12);
    const hv = new DataView(hdr.buffer);
    hv.setBigUint64(0, BigInt(tableOffset));
    hv.setUint32(8, tableClusters);
    await this.write(HDR_REFTABLE_OFFSET, hdr, 'unchecked');
    await this.file.sync();
    this.reftableOffset = tableOffset;
    this.reftableClusters = tableClusters;
    this.reftable = new Uint32Array(table.e.length * 2);
    table.e.forEach((e, i) => {
      this.reftable[2 * i] = Math.floor(e / TWO32);
      this.reftable[2 * i + 1] = e % TWO32;
    });
    this.reftableEntries = table.e.length;
    this.mapMetadata();
  }

  /** qcow2_check_refcounts(). Returns false when the check could not finish (qemu's -EIO). */
  private async checkRefcounts(res: Result, fix: number): Promise<boolean> {
    try {
      await this.checkRefcountsOrFail(res, fix);
      return true;
    } catch (err) {
      if (!(err instanceof CheckFailed)) throw err;
      // A message on the exception is a failure not counted yet; without one it was reported where it happened.
      if (err.message) {
        this.say('error', err.message);
        res.checkErrors++;
      }
      return false;
    }
  }

  private async checkRefcountsOrFail(res: Result, fix: number): Promise<void> {
    const h = this.layout.header;
    const nbClusters = Math.ceil(this.file.size / this.cs);
    const imrt = new RefcountArray(this.refcountBits, nbClusters);
    res.totalClusters = Math.ceil((Math.floor(h.size / 512) * 512) / this.cs);
    this.rebuild = false;
    await this.calculate(res, fix, imrt);
    const preCompare = { ...res };
    const unreadableBefore = this.unreadable;
    let highest = await this.compare(res, 0, imrt);
    if (this.rebuild && fix & FIX_ERRORS) {
      const old = { ...res };
      let freshLeaks = 0;
      this.say('corruption', 'Rebuilding refcount structure');
      await this.rebuildStructure(imrt);
      // Refcounts that could not be read belonged to the old structure, which is gone.
      res.checkErrors -= this.unreadable - unreadableBefore;
      res.corruptions = 0;
      res.leaks = 0;
      this.rebuild = false;
      imrt.clear();
      await this.calculate(res, 0, imrt);
      if (fix & FIX_LEAKS) {
        // The old structure is leaked now; fixing that is part of the rebuild, only leftovers count.
        const saved = { ...res };
        const fresh = emptyResult();
        highest = await this.compare(fresh, FIX_LEAKS, imrt);
        if (this.rebuild) this.say('corruption', 'ERROR rebuilt refcount structure is still broken');
        freshLeaks = fresh.leaks;
        Object.assign(res, saved);
      }
      if (res.corruptions < old.corruptions) res.corruptionsFixed += old.corruptions - res.corruptions;
      if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
      res.leaks += freshLeaks;
    } else if (fix) {
      if (this.rebuild) throw new CheckFailed('ERROR need to rebuild refcount structures');
      if (res.leaks || res.corruptions) {
        Object.assign(res, preCompare);
        highest = await this.compare(res, fix, imrt);
      }
    }
    await this.checkOflagCopied(res, fix);
    res.imageEndOffset = (highest + 1) * this.cs;
  }

  /** qcow2_co_check_locked(): the refcount check, then a clean/consistent mark when a repair left no errors. */
  async run(fix: number): Promise<Result> {
    const res = emptyResult();
    this.repairing = fix !== 0;
    await this.load();
    // qcow2_check_read_snapshot_table(): v3 snapshot entries carry at least 16 bytes of extra data. We report
    // it; rewriting the snapshot table (qemu's repair) needs cluster allocation, which the check does not do.
    let snapshotCorruptions = 0;
    if (this.layout.header.version === 3) {
      this.snapshots.entries.forEach((sn, i) => {
        if (sn.extraData.length < 16) {
          this.say('corruption', `ERROR snapshot table entry ${i} is incomplete`);
          snapshotCorruptions++;
        }
      });
    }
    const ok = await this.checkRefcounts(res, fix);
    res.corruptions += snapshotCorruptions;
    if (ok && fix && res.checkErrors === 0 && res.corruptions === 0) await this.markCleanAndConsistent();
    this.finishMessages();
    return res;
  }

  /** Clears the dirty bit (lazy refcounts after a crash) and the corrupt bit: the refcounts are right now. */
  private async markCleanAndConsistent(): Promise<void> {
    const h = this.layout.header;
    if (h.version !== 3) return;
    const bits = h.incompatibleFeatures & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
    if (bits === h.incompatibleFeatures) return;
    await this.file.sync();
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, bits);
    await this.write(HDR_INCOMPAT, b, 'unchecked');
    await this.file.sync();
    h.incompatibleFeatures = bits;
  }
}

function halves(buf: Uint8Array): Uint32Array {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Uint32Array(Math.floor(buf.length / 8) * 2);
  for (let i = 0; i < out.length; i++) out[i] = v.getUint32(i * 4);
  return out;
}

async function checkPass(file: ImageFile, fix: number, problems: CheckProblem[], signal?: AbortSignal): Promise<Result> {
  const layout = await readLayout(file, Number.MAX_SAFE_INTEGER);
  const snapshots = await readSnapshotsForCheck(file, layout);
  return new Checker(file, layout, snapshots, problems, signal).run(fix);
}

/**
 * Checks a qcow2 image and, with `repair`, fixes leaks ('leaks') or everything qemu-img fixes ('all'), then
 * checks the image again the way qemu-img does ("Double checking the fixed image now..."). The report's
 * corruptions and leaks are those left after the repair; the -fixed counts are what the repair fixed.
 */
export async function checkQcow2(path: string, repair: RepairMode, opts: CheckOptions = {}): Promise<CheckReport> {
  const signal = opts.signal;
  const fix = repair === 'all' ? FIX_LEAKS | FIX_ERRORS : repair === 'leaks' ? FIX_LEAKS : 0;
  const file = await ImageFile.open(path, fix !== 0);
  try {
    const problems: CheckProblem[] = [];
    let res = await checkPass(file, fix, problems, signal);
    if (fix) await file.sync(); // the repair is on disk before the double check reads it back
    const fixedCorruptions = res.corruptionsFixed;
    const fixedLeaks = res.leaksFixed;
    if (fix && (fixedCorruptions || fixedLeaks)) {
      res = await checkPass(file, 0, problems, signal);
      res.corruptionsFixed = fixedCorruptions;
      res.leaksFixed = fixedLeaks;
    }
    const report: CheckReport = {
      filename: path,
      format: 'qcow2',
      'check-errors': res.checkErrors,
      corruptions: res.corruptions,
      leaks: res.leaks,
      'corruptions-fixed': res.corruptionsFixed,
      'leaks-fixed': res.leaksFixed,
      problems,
    };
    // qemu-img leaves these out when they are zero.
    if (res.imageEndOffset) report['image-end-offset'] = res.imageEndOffset;
    if (res.totalClusters) report['total-clusters'] = res.totalClusters;
    if (res.allocatedClusters) report['allocated-clusters'] = res.allocatedClusters;
    if (res.fragmentedClusters) report['fragmented-clusters'] = res.fragmentedClusters;
    if (res.compressedClusters) report['compressed-clusters'] = res.compressedClusters;
    return report;
  } catch (err) {
    const e = toDiskError(err, path);
    throw e.path ? e : new DiskError(e.code, `${path}: ${e.message}`, path);
  } finally {
    await file.close();
  }
}
