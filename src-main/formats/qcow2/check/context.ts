/**
 * The state of one check pass over an open qcow2 image (what qemu's qcow2_co_check_locked() works on): the
 * image's geometry, the refcount table and active L1 table as loaded, the stored refcounts (stored.ts),
 * the L2 tables as read (kept and read ahead by passes that write nothing), the metadata map that guards
 * repairs, bounded reads and guarded writes, and the messages and counts (qemu's BdrvCheckResult). The passes
 * themselves live in walk.ts, repair.ts and rebuild.ts; check.ts runs them.
 */
import { DiskError } from '../../../block/errors';
import type { ImageFile } from '../../../block/file';
import type { CheckProblem } from '../../../block/types';
import type { RefcountArray } from './imrt';
import { mapMetadata, type MetadataKind, type MetadataMap, type MetadataSources } from './overlap';
import { StoredRefcounts, type StoredRefcountsSource } from './stored';
import { halves, LITTLE_ENDIAN } from './words';
import { Qcow2Geometry } from '../geometry';
import { INCOMPAT_DATA_FILE, type Qcow2Layout } from '../layout';
import type { SnapshotTable } from '../snapshot/table-codec';

export const FIX_LEAKS = 1;
export const FIX_ERRORS = 2;
/** CHECK_FRAG_INFO: count allocation/fragmentation (active L1 only). */
export const FRAG_INFO = 2;

/** Beyond this many messages the rest are counted, not kept: a wrecked image must not exhaust memory. */
const MAX_PROBLEMS = 10000;
/**
 * L2 tables a pass that writes nothing keeps in memory (the first ones read, up to this many bytes), so the
 * COPIED check and snapshot L1 tables sharing them walk them again without reading them again.
 */
const L2_CACHE_BYTES = 32 * 1024 * 1024;

/** What qemu's BdrvCheckResult holds. */
export interface Result {
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

export function emptyResult(): Result {
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

/** Ends a check that cannot go on, after its message was reported (qemu's -EIO from the check). */
export class CheckFailed extends Error {}

export function hex(n: number | bigint): string {
  return n.toString(16);
}

/** One check pass over an open image. */
export class Checker implements StoredRefcountsSource, MetadataSources {
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly geometry: Qcow2Geometry;
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
  l1: Uint32Array = new Uint32Array(0);
  /**
   * Set during a dry run of the in-place repair (switch.ts): refcounts it would set are noted here and
   * read back from here, and nothing is written; the repair is then made by one switch of the header.
   */
  dry?: Map<number, number>;
  readonly stored: StoredRefcounts;
  /**
   * Set by compare() in a pass that writes nothing: the refcount blocks (by refcount table index) that hold
   * exactly the computed counts in `imrt`, so later lookups may read those instead.
   */
  verified?: { imrt: RefcountArray; blocks: Uint8Array };
  /**
   * Set by the reference walk in a pass that writes nothing: per cluster, 1 when an entry of the active L2
   * tables points at it with OFLAG_COPIED, 2 when one does without (both bits: both kinds); undefined when
   * an entry could not be marked. checkOflagCopied() uses it to skip its walk when nothing can be wrong.
   */
  activeMarks?: Uint8Array;
  /** Set when the refcount structure itself is broken and must be rebuilt (qemu's rebuild). */
  rebuild = false;
  /** Refcounts that could not be read (unaligned refcount block); a rebuild makes them moot. */
  unreadable = 0;
  /** Marks messages of a repairing pass: `fixed` tells whether the problem was repaired. */
  repairing = false;
  private omitted = 0;
  metadata!: MetadataMap;
  private readonly l2Cache = new Map<number, Uint32Array>();
  private readonly l2Pending = new Map<number, Promise<Uint32Array>>();
  private l2CacheBytes = 0;

  constructor(
    readonly file: ImageFile,
    readonly layout: Qcow2Layout,
    readonly snapshots: SnapshotTable,
    private readonly problems: CheckProblem[],
    readonly signal?: AbortSignal,
  ) {
    const h = layout.header;
    this.geometry = Qcow2Geometry.of(layout);
    this.clusterSize = this.geometry.clusterSize;
    this.clusterBits = h.clusterBits;
    this.refcountBits = layout.refcountBits;
    this.refblockEntries = (this.clusterSize * 8) / this.refcountBits;
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
   * An L2 table as big-endian words (2 per entry, 4 with extended L2 entries); past the end of the file it
   * reads as zeros. A pass that repairs nothing keeps the first tables read (L2_CACHE_BYTES): nothing changes
   * them under it. A repairing pass reads every time and may edit the words it gets (they are its own).
   */
  async l2Words(offset: number): Promise<Uint32Array> {
    const hit = this.l2Cache.get(offset);
    if (hit) return hit;
    const pending = this.l2Pending.get(offset);
    this.l2Pending.delete(offset);
    const w = await (pending ?? this.readL2(offset));
    if (!this.repairing && this.l2CacheBytes + w.byteLength <= L2_CACHE_BYTES) {
      this.l2Cache.set(offset, w);
      this.l2CacheBytes += w.byteLength;
    }
    return w;
  }

  /**
   * Starts reading an L2 table a pass that writes nothing is about to walk, so that the reads of the next
   * tables overlap the walk of this one (a failure surfaces when l2Words() asks for it).
   */
  prefetchL2(offset: number): void {
    if (this.repairing || this.l2Cache.has(offset) || this.l2Pending.has(offset)) return;
    const p = this.readL2(offset);
    p.catch(() => undefined);
    this.l2Pending.set(offset, p);
  }

  private async readL2(offset: number): Promise<Uint32Array> {
    const bytes = this.l2Entries * this.l2EntrySize;
    const w = new Uint32Array(bytes / 4);
    if (offset < this.file.size) await this.file.readZeroPadded(offset, new Uint8Array(w.buffer));
    if (LITTLE_ENDIAN) Buffer.from(w.buffer).swap32();
    return w;
  }

  /**
   * Writes metadata after checking that it does not land on another structure (`ignore`: the class being
   * rewritten); throws a DiskError naming the structure otherwise.
   */
  async write(offset: number, data: Uint8Array, ignore?: MetadataKind | 'unchecked'): Promise<void> {
    if (this.dry) return;
    // (Tables are kept and read ahead only by passes that write nothing; a belt for the day that changes.)
    this.l2Cache.clear();
    this.l2Pending.clear();
    this.l2CacheBytes = 0;
    if (ignore !== 'unchecked') {
      const hit = this.metadata.overlap(offset, data.length, ignore);
      if (hit) throw new DiskError('ECORRUPT', `Preventing invalid write on metadata (overlaps with ${hit})`);
    }
    await this.file.write(offset, data);
  }

  /** Records where every structure lies (overlap.ts). */
  mapMetadata(): void {
    this.metadata = mapMetadata(this);
  }

  async load(): Promise<void> {
    const h = this.layout.header;
    this.l2Cache.clear();
    this.l2Pending.clear();
    this.l2CacheBytes = 0;
    // Both tables at once; the refcount table's failure is the one reported when both fail.
    const [t, l1] = await Promise.allSettled([this.readTable(this.reftableOffset, this.reftableClusters * this.clusterSize), this.readTable(h.l1TableOffset, h.l1Size * 8)]);
    if (t.status === 'rejected') throw t.reason;
    if (l1.status === 'rejected') throw l1.reason;
    this.reftable = halves(t.value);
    this.reftableEntries = t.value.length / 8;
    this.stored.clear();
    this.l1 = halves(l1.value);
    this.mapMetadata();
    // A pass that writes nothing reads the refcount blocks the comparison will want while the walk runs.
    if (!this.repairing) this.stored.readAhead(Math.ceil(this.geometry.sizeToClusters(this.file.size) / this.refblockEntries));
  }

  // ---- messages ----

  say(severity: CheckProblem['severity'], message: string): void {
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
}
