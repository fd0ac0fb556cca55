/**
 * The extents a VMDK disk is made of: FLAT/VMFS (a run of a plain file), ZERO (no file), and sparse ones:
 * VMDK4 hosted sparse ("KDMV", stream-optimized included) and VMDK3/ESX sparse ("COWD", VMFSSPARSE). Each maps
 * extent-relative byte ranges to pieces (data at a host offset, inside a compressed grain, zero, unallocated);
 * sparse extents also allocate grains and grain tables for writes, keeping both grain directories in step.
 */
import { Inflater } from '../../block/inflate';
import { DiskError, corrupt } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import { LruCache } from '../../block/cache';
import { endOfRun } from '../../block/table-scan';
import { SECTOR, view } from '../../block/bytes';
import {
  GRAIN_MARKER_BYTES,
  parseGrainMarker,
} from './layout';
import { readSparseFacts, readTable, readTableInto, readU32s, u32Bytes, type SparseFacts } from './sparse-facts';

export { readSparseFacts, type SparseFacts } from './sparse-facts';

/** What one extent-relative range is: every byte of `length` shares it. */

/** One zlib stream for every compressed grain this process reads (reads are synchronous, one at a time). */
const inflater = new Inflater(false);
export type Piece =
  | { kind: 'data'; length: number; host: number }
  | { kind: 'compressed'; length: number; grainHost: number; inGrain: number }
  | { kind: 'zero'; length: number }
  | { kind: 'unallocated'; length: number };

export interface VmdkExtent {
  /** FLAT, ZERO, SPARSE, VMFS, VMFSSPARSE as the descriptor says (SPARSE for a monolithic sparse file). */
  readonly type: string;
  /** Guest bytes this extent covers. */
  readonly bytes: number;
  readonly file?: ImageFile;
  readonly writable: boolean;
  /** What [off, off + up to max) is. `wide`: runs of compressed grains come as one piece (status, not read). */
  lookup(off: number, max: number, wide?: boolean): Promise<Piece>;
}

/** A run of a plain file starting at `start` bytes; bytes past the file's end read as zeros (a sparse file). */
export class FlatExtent implements VmdkExtent {
  constructor(readonly type: string, readonly bytes: number, readonly file: ImageFile, readonly start: number, readonly writable: boolean) {}
  async lookup(off: number, max: number): Promise<Piece> {
    return { kind: 'data', length: max, host: this.start + off };
  }
}

/** A ZERO extent: no file, reads as zeros. */
export class ZeroExtent implements VmdkExtent {
  readonly writable = false;
  constructor(readonly type: string, readonly bytes: number) {}
  async lookup(_off: number, max: number): Promise<Piece> {
    return { kind: 'zero', length: max };
  }
}

/** Grain tables kept in memory per extent; a table is 2 KiB (VMDK4) or 16 KiB (COWD). */
const GT_CACHE_TABLES = 256;
/** The "zeroed grain" grain table entry. */
export const GTE_ZEROED = 1;

/** A sparse extent: a grain directory of grain tables whose entries give each grain's sector in the file. */
export class SparseExtent implements VmdkExtent {
  private readonly gts: LruCache<number, Uint32Array>;
  /** Where the next grain or grain table goes: the end of the file, in whole sectors. */
  private nextSector: number;
  /** The last grain inflated, kept for the reads that follow it. */
  private lastGrain?: { host: number; data: Uint8Array };
  /** Where a compressed grain's bytes are read, and where they are inflated (lastGrain's data lives there). */
  private packedBuf?: Uint8Array;
  private grainBuf?: Uint8Array;
  /** Where tableOf reads a table that may turn out empty, and whether a read into it is under way. */
  private lookScratch?: Uint32Array;
  private lookScratchBusy = false;
  /** The run of the file (a hole or data) that the last allocation query found, for tableInHole. */
  private allocation?: { from: number; end: number; data: boolean };

  private constructor(
    readonly type: string,
    readonly bytes: number,
    readonly file: ImageFile,
    readonly facts: SparseFacts,
    private readonly gd: Uint32Array,
    private readonly rgd: Uint32Array | undefined,
    readonly writable: boolean,
  ) {
    this.gts = new LruCache(GT_CACHE_TABLES);
    this.nextSector = Math.ceil(file.size / SECTOR);
  }

  static async open(type: string, bytes: number, file: ImageFile, writable: boolean): Promise<SparseExtent> {
    const f = await readSparseFacts(file);
    const path = file.path;
    if (type === 'SESPARSE') throw new DiskError('EUNSUPPORTED', `${path}: seSparse extents are not supported`, path);
    const gdBytes = f.gdEntries * 4;
    const gd = readU32s(await file.readBlock(f.gdOffset, gdBytes, 'vmdk grain directory'));
    const rgd = f.rgdOffset !== undefined ? readU32s(await file.readBlock(f.rgdOffset, gdBytes, 'vmdk redundant grain directory')) : undefined;
    return new SparseExtent(type, bytes, file, f, gd, rgd, writable);
  }

  /** The grain directory as read (sectors of each grain table; 0 = none). */
  get directory(): Uint32Array {
    return this.gd;
  }

  get grainBytes(): number {
    return this.facts.grainBytes;
  }

  /** The grain table of directory entry `i` (undefined when it has none), bounded by the file's length. */
  private async table(i: number): Promise<Uint32Array | undefined> {
    if (i >= this.gd.length || this.gd[i] === 0) return undefined;
    const cached = this.gts.get(i);
    if (cached) return cached;
    const t = await readTable(this.file, this.gd[i] * SECTOR, this.facts.numGtes, 'vmdk grain table');
    // A write may have loaded and changed the table while this read was under way: its copy is the newer one.
    const meanwhile = this.gts.get(i);
    if (meanwhile) return meanwhile;
    this.gts.set(i, t);
    return t;
  }

  /** The grain table entry of grain `g` (0 when unallocated). */
  async entry(g: number): Promise<number> {
    const t = await this.table(Math.floor(g / this.facts.numGtes));
    return t ? t[g % this.facts.numGtes] : 0;
  }

  /**
   * Pieces run across grains of the same kind (contiguous for data), so that status and reads take big steps.
   * The grains of one table are looked at without an await each: walking the 1M grains of a sparse 64 GiB
   * image one await and one cache lookup at a time took ~1 s of CPU and most of its garbage.
   */
  async lookup(off: number, max: number, wide = false): Promise<Piece> {
    const gb = this.facts.grainBytes;
    // Past the header's capacity (a descriptor that promises more than the extent holds) nothing is allocated.
    if (off >= this.facts.capacity * SECTOR) return { kind: 'unallocated', length: max };
    const span = this.facts.numGtes * gb;
    const first = this.pieceIn(await this.tableOf(off), off, Math.min(max, gb - (off % gb)));
    if (first.kind === 'compressed' && !wide) return first;
    let len = first.length;
    while (len < max) {
      const pos = off + len;
      const t = await this.tableOf(pos);
      // The rest of this table's span, grain by grain, synchronously.
      const spanEnd = Math.min(off + max, (Math.floor(pos / span) + 1) * span);
      if (t === undefined) {
        // No table, or one of zeros: every grain of the span is unallocated, at once (not 512 turns of the loop
        // below per table: a 1 TiB image has 32,768 tables).
        if (first.kind !== 'unallocated') break;
        len = spanEnd - off;
        continue;
      }
      let same = true;
      // Entry by entry without an object per grain (a 1 TiB image has 16M grains: objects for each grew the
      // young generation and the peak RSS with the virtual size).
      while (off + len < spanEnd) {
        const p = off + len;
        const e = t ? t[Math.floor(p / gb) % this.facts.numGtes] : 0;
        if (!this.continues(first, e, p, len)) {
          same = false;
          break;
        }
        len += Math.min(spanEnd - p, gb - (p % gb));
      }
      if (!same) break;
    }
    return { ...first, length: len };
  }

  /**
   * The grain table holding guest offset `off`, for looking at only; undefined when every grain of it is
   * unallocated (its directory entry is empty, or the table holds only zeros). qemu-img creates every table up
   * front: a table of zeros is read into a buffer kept for the next and not cached, so a walk over a large, mostly
   * empty image allocates nothing per table, and a table lying in a hole of the file is not read at all. Callers
   * use the table before their next await (lookup); writers take theirs from table(), which caches what it reads.
   */
  private async tableOf(off: number): Promise<Uint32Array | undefined> {
    const i = Math.floor(off / this.facts.grainBytes / this.facts.numGtes);
    if (i >= this.gd.length || this.gd[i] === 0) return undefined;
    const cached = this.gts.get(i);
    if (cached || this.lookScratchBusy) return cached ?? this.table(i);
    if (this.tableInHole(this.gd[i] * SECTOR, this.facts.numGtes * 4)) return undefined;
    this.lookScratchBusy = true;
    try {
      const t = (this.lookScratch ??= new Uint32Array(this.facts.numGtes));
      await readTableInto(this.file, this.gd[i] * SECTOR, t, 'vmdk grain table');
      if (endOfRun(t, 0, t.length, 0) === t.length) return undefined;
      const meanwhile = this.gts.get(i);
      if (meanwhile) return meanwhile;
      const own = t.slice();
      this.gts.set(i, own);
      return own;
    } finally {
      this.lookScratchBusy = false;
    }
  }

  /**
   * Whether the grain table at byte `at` of the file lies wholly in a hole, so that it reads as zeros (a 1 TiB
   * image qemu-img made has 32,768 tables, ~64 MiB of them never written: reading them was ~1 s of a convert).
   * Asked of a read-only extent where the file's holes can be seen; one query answers for every table in the same
   * run of the file. A table past the end of the file is not in a hole: it is read, and refused there.
   */
  private tableInHole(at: number, bytes: number): boolean {
    if (this.writable || !this.file.seesHoles) return false;
    let a = this.allocation;
    if (a === undefined || at < a.from || at >= a.end) {
      const found = this.file.allocationAt(at);
      a = this.allocation = { from: at, end: found.end, data: found.data };
    }
    return !a.data && at + bytes <= a.end;
  }

  /** What the grain at `off` is, from its table `t` (`len` bytes of it, within the grain). */
  /** Whether grain table entry `e` (for guest `p`, `len` bytes after `first` began) continues the piece `first` (pieceIn's kinds, without building a piece). */
  private continues(first: Piece, e: number, p: number, len: number): boolean {
    const kind = e === 0 ? 'unallocated' : e === GTE_ZEROED && this.facts.zeroGrain ? 'zero' : this.facts.compressed ? 'compressed' : 'data';
    if (kind !== first.kind) return false;
    return kind !== 'data' || (first.kind === 'data' && e * SECTOR + (p % this.facts.grainBytes) === first.host + len);
  }

  private pieceIn(t: Uint32Array | undefined, off: number, len: number): Piece {
    const gb = this.facts.grainBytes;
    const e = t ? t[Math.floor(off / gb) % this.facts.numGtes] : 0;
    if (e === 0) return { kind: 'unallocated', length: len };
    if (e === GTE_ZEROED && this.facts.zeroGrain) return { kind: 'zero', length: len };
    if (this.facts.compressed) return { kind: 'compressed', length: len, grainHost: e * SECTOR, inGrain: off % gb };
    return { kind: 'data', length: len, host: e * SECTOR + (off % gb) };
  }

  /** Inflates the grain whose marker (or bare zlib stream) is at `host`, bounded by the file and the grain size: its inflated bytes, which a short grain has fewer of than a grain (zeros follow). */
  async grain(host: number): Promise<Uint8Array> {
    if (this.lastGrain?.host === host) return this.lastGrain.data;
    const path = this.file.path;
    const gb = this.facts.grainBytes;
    let start = host;
    let size: number;
    if (this.facts.markers) {
      const m = parseGrainMarker(await this.file.readExact(host, new Uint8Array(GRAIN_MARKER_BYTES), 'vmdk grain marker'), path);
      start = host + GRAIN_MARKER_BYTES;
      size = m.size;
      if (size === 0 || size > 2 * gb + 1024) throw corrupt(`${path}: vmdk compressed grain at offset ${host} has an invalid size (${size})`, path);
    } else {
      size = Math.min(2 * gb + 1024, this.file.size - host);
    }
    if (start + size > this.file.size) throw corrupt(`${path}: vmdk compressed grain at offset ${host} runs past the end of the file`, path);
    // The compressed bytes and the grain go into buffers kept for the next grain (reads of a device are one at a
    // time and copy out at once): converting a stream made no garbage buffer per grain then.
    const scratchSize = 2 * gb + 1024;
    this.packedBuf ??= new Uint8Array(scratchSize);
    const packed = this.packedBuf.subarray(0, size);
    await this.file.readExact(start, packed, 'vmdk compressed grain');
    // One byte of room past the grain tells a grain that inflates to more than a grain (refused, as qemu does).
    this.grainBuf ??= new Uint8Array(gb + 1);
    this.lastGrain = undefined;
    const got = inflater.inflate(packed, this.grainBuf);
    if (got < 0) throw corrupt(`${path}: vmdk compressed grain at offset ${host} does not decompress`, path);
    if (got > gb) throw corrupt(`${path}: vmdk compressed grain at offset ${host} inflates to more than a grain`, path);
    // Only the inflated bytes: a short grain reads as zeros after them, which the reader fills in for the range it
    // wants. Filling the rest of the grain here cost a memset of the whole grain size, which a damaged header can
    // make 1 GiB per read (the fuzz suite's streamOptimized case 206 took 8 s per 64 KiB).
    const data = this.grainBuf.subarray(0, got);
    this.lastGrain = { host, data };
    return data;
  }

  /** Refuses writes this extent cannot take, with the reason. */
  checkWritable(): void {
    const path = this.file.path;
    const refusal = this.writeRefusal();
    if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${path}: ${refusal}`, path);
    if (!this.writable) throw new DiskError('EREADONLY', `${path}: the extent is read-only`, path);
  }

  /** Why this extent's kind can never be written (whatever mode it was opened in), or undefined. */
  writeRefusal(): string | undefined {
    if (this.facts.compressed || this.facts.markers || this.facts.footer) {
      return 'writing into an existing streamOptimized (compressed) VMDK is not supported; convert it to another subformat first';
    }
    if (!this.facts.vmdk3 && this.facts.version === 3) return 'VMDK version 3 images can only be opened read-only';
    return undefined;
  }

  /** Appends `sectors` sectors at the end of the file (never over existing bytes) and returns their first sector. */
  private allocate(sectors: number): number {
    const at = this.nextSector;
    this.nextSector += sectors;
    return at;
  }

  /** Makes sure grain table `i` exists, in both directories; a new one is appended zeroed. */
  private async ensureTable(i: number): Promise<Uint32Array> {
    const have = await this.table(i);
    if (have) return have;
    if (i >= this.gd.length) throw corrupt(`${this.file.path}: vmdk grain directory is too small for the disk`, this.file.path);
    const tableSectors = Math.ceil((this.facts.numGtes * 4) / SECTOR);
    const zero = new Uint8Array(tableSectors * SECTOR);
    // Tables first, then the directory entries pointing at them: a crash in between leaves only unused space.
    if (this.rgd) {
      const r = this.allocate(tableSectors);
      await this.file.write(r * SECTOR, zero);
      this.rgd[i] = r;
      await this.writeDirEntry(this.facts.rgdOffset!, i, r);
    }
    const p = this.allocate(tableSectors);
    await this.file.write(p * SECTOR, zero);
    this.gd[i] = p;
    await this.writeDirEntry(this.facts.gdOffset, i, p);
    const t = new Uint32Array(this.facts.numGtes);
    this.gts.set(i, t);
    return t;
  }

  private async writeDirEntry(dirOffset: number, i: number, value: number): Promise<void> {
    const b = new Uint8Array(4);
    view(b).setUint32(0, value, true);
    await this.file.write(dirOffset + i * 4, b);
  }

  /** Sets grain `g`'s entry in the grain table and its redundant copy. */
  async setEntry(g: number, value: number): Promise<void> {
    const n = this.facts.numGtes;
    const i = Math.floor(g / n);
    const t = await this.ensureTable(i);
    t[g % n] = value;
    await this.writeEntries(i, t, g % n, 1);
  }

  /** Writes entries [first, first + count) of table `i` (held as `t`): the primary table, then its redundant copy. */
  private async writeEntries(i: number, t: Uint32Array, first: number, count: number): Promise<void> {
    const bytes = u32Bytes(t.subarray(first, first + count));
    await this.file.write(this.gd[i] * SECTOR + first * 4, bytes);
    if (this.rgd && this.rgd[i] !== 0) await this.file.write(this.rgd[i] * SECTOR + first * 4, bytes);
  }

  /**
   * Writes `count` new grains for grains g .. g + count - 1, all in one grain table, from `data` (count whole
   * grains), and points their entries at them. The order keeps every grain old or new whatever step a crash
   * stops at: the data first (appended past everything, so it overwrites nothing), then the entries in the
   * primary table and its redundant copy, one write each. When the table does not exist yet it is written
   * whole, entries filled in, after the data, and only then do the directories point at it (redundant first).
   */
  async writeNewGrains(g: number, count: number, data: Uint8Array): Promise<void> {
    const n = this.facts.numGtes;
    const i = Math.floor(g / n);
    if (count <= 0 || Math.floor((g + count - 1) / n) !== i) throw new Error('vmdk: a run of new grains must lie in one grain table');
    const grainSectors = this.facts.grainBytes / SECTOR;
    const have = await this.table(i);
    if (have) {
      const at = this.allocate(count * grainSectors);
      await this.file.write(at * SECTOR, data);
      for (let k = 0; k < count; k++) have[(g % n) + k] = at + k * grainSectors;
      await this.writeEntries(i, have, g % n, count);
      return;
    }
    if (i >= this.gd.length) throw corrupt(`${this.file.path}: vmdk grain directory is too small for the disk`, this.file.path);
    const tableSectors = Math.ceil((n * 4) / SECTOR);
    const r = this.rgd ? this.allocate(tableSectors) : 0;
    const p = this.allocate(tableSectors);
    const at = this.allocate(count * grainSectors);
    await this.file.write(at * SECTOR, data);
    const t = new Uint32Array(n);
    for (let k = 0; k < count; k++) t[(g % n) + k] = at + k * grainSectors;
    const bytes = new Uint8Array(tableSectors * SECTOR);
    bytes.set(u32Bytes(t));
    if (this.rgd) await this.file.write(r * SECTOR, bytes);
    await this.file.write(p * SECTOR, bytes);
    if (this.rgd) {
      this.rgd[i] = r;
      await this.writeDirEntry(this.facts.rgdOffset!, i, r);
    }
    this.gd[i] = p;
    await this.writeDirEntry(this.facts.gdOffset, i, p);
    this.gts.set(i, t);
  }

  /**
   * Releases grains [g, end): their entries become 0 (unallocated) or, with `zeroed`, the zeroed-grain entry
   * (over a parent, where unallocated would read the parent's data), in the primary table and its redundant
   * copy, one write per run each. Returns where the data grains that were released start in the file (bytes),
   * for the caller to punch out once the tables are durable; their space is otherwise left unused, as qemu does.
   */
  async releaseGrains(g: number, end: number, zeroed: boolean): Promise<number[]> {
    this.checkWritable();
    const n = this.facts.numGtes;
    const value = zeroed ? GTE_ZEROED : 0;
    const freed: number[] = [];
    for (let i = Math.floor(g / n); i * n < end; i++) {
      const from = Math.max(g, i * n) - i * n;
      const to = Math.min(end, (i + 1) * n) - i * n;
      let t = await this.table(i);
      if (!t) {
        if (!zeroed) continue; // no table: every grain of it is unallocated already
        t = await this.ensureTable(i);
      }
      let lo = -1;
      let hi = -1;
      for (let k = from; k < to; k++) {
        const e = t[k];
        if (e === value) continue;
        if (e > GTE_ZEROED) freed.push(e * SECTOR);
        t[k] = value;
        if (lo < 0) lo = k;
        hi = k;
      }
      if (lo >= 0) await this.writeEntries(i, t, lo, hi - lo + 1);
    }
    this.lastGrain = undefined;
    return freed;
  }

  /**
   * Every grain table entry back to 0 (unallocated), in the primary tables and their redundant copies: reads go
   * through to the parent again (commit empties the overlay). Tables are only written where they hold an entry.
   * A crash part way leaves some grains allocated, holding what the parent holds after commit: both read alike.
   * Then the grains' space is given back when every table lies before the first grain (qemu-img's layout): the
   * file is cut back to where the grains begin.
   */
  async makeEmpty(): Promise<void> {
    this.checkWritable();
    const n = this.facts.numGtes;
    const tableSectors = Math.ceil((n * 4) / SECTOR);
    const zero = new Uint8Array(tableSectors * SECTOR);
    let metaEnd = Math.ceil((this.facts.gdOffset + this.gd.length * 4) / SECTOR);
    if (this.facts.rgdOffset !== undefined) metaEnd = Math.max(metaEnd, Math.ceil((this.facts.rgdOffset + this.gd.length * 4) / SECTOR));
    for (let i = 0; i < this.gd.length; i++) {
      const t = await this.table(i);
      if (!t) continue;
      if (t.some((x) => x !== 0)) {
        if (this.rgd && this.rgd[i] !== 0) await this.file.write(this.rgd[i] * SECTOR, zero);
        await this.file.write(this.gd[i] * SECTOR, zero);
        t.fill(0);
      }
      metaEnd = Math.max(metaEnd, this.gd[i] + tableSectors, this.rgd && this.rgd[i] ? this.rgd[i] + tableSectors : 0);
    }
    if (this.rgd) for (let i = 0; i < this.rgd.length; i++) if (this.rgd[i]) metaEnd = Math.max(metaEnd, this.rgd[i] + tableSectors);
    const header = this.facts.header;
    if (header) {
      metaEnd = Math.max(metaEnd, header.overhead, header.descriptorOffset + header.descriptorSize);
      if (metaEnd * SECTOR < this.file.size) {
        // The tables must be on disk, empty, before the grains they pointed at go.
        await this.file.sync();
        await this.file.truncate(metaEnd * SECTOR);
        this.nextSector = metaEnd;
      }
    }
    this.lastGrain = undefined;
  }
}
