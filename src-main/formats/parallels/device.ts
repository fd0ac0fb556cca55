/**
 * The open Parallels image (a BlockDevice): reads and writes through the BAT kept in memory, new clusters at
 * the end of the data area as qemu allocates them, and the in-use mark qemu sets while an image is open for
 * writing and clears on a clean close. The file grows ahead of the data in steps of GROW_AHEAD, as qemu's
 * prealloc-mode=truncate with its default prealloc-size (qemu's own default, falloc, allocates the blocks too;
 * neither option has a way in through OpenOptions), and close truncates it to the data end, as qemu does.
 */
import { readBelow } from '../../block/chain';
import { checkRange, view } from '../../block/bytes';
import { corrupt, DiskError, toDiskError, readOnlyError } from '../../block/errors';
import { ImageFile } from '../../block/file';
import type { BlockDevice, Extent, OpenOptions } from '../../block/types';
import {
  batEntryOffset,
  batMultiplier,
  dataOffsetBytes,
  FORMAT_EXTENSION_MAGIC,
  HEADER_SIZE,
  INUSE_MAGIC,
  parseHeader,
  SECTOR,
  serializeHeader,
  sharedEntries,
  validateHeader,
  type ParallelsHeader,
} from './layout';
import { forEachUsed, RunMemo, uint32TableFromLittleEndian } from '../../block/table-scan';

const ZERO_CHUNK = 1 << 20;
const MAX_BAT_VALUE = 0xffffffff;
/**
 * How far past a new cluster the file is lengthened (qemu's default prealloc-size). Why at all: a write that
 * lengthens the file measured erratic where the same write inside the file's length did not (a 1.1 GB copy
 * into a new image, 1 MiB clusters: 0.44-2.4 s over seven runs against 0.46-0.50 s; docs/performance.md,
 * eighth round). The part past the data is a hole, and close cuts it off.
 */
const GROW_AHEAD = 128 * 1024 * 1024;

/** The header and BAT of an image, read and bounded by the file's length. */
export interface ParallelsImage {
  header: ParallelsHeader;
  bat: Uint32Array;
}

export async function readImage(file: ImageFile): Promise<ParallelsImage> {
  const head = await file.readBlock(0, Math.min(HEADER_SIZE, file.size), 'parallels header');
  const header = parseHeader(head, file.path);
  validateHeader(header, file.path, file.size);
  // validateHeader has bounded the BAT by the file's length, so its size is safe to allocate; the bytes are read
  // into the table itself (no second copy as bytes).
  const bat = new Uint32Array(header.batEntries);
  await file.readExact(HEADER_SIZE, new Uint8Array(bat.buffer), 'parallels BAT');
  if (header.extOff !== 0) {
    // As qemu's read-only open: a format extension cluster must start with its magic.
    const at = header.extOff * SECTOR;
    const magic = view(await file.readBlock(at, 8, 'parallels format extension')).getBigUint64(0, true);
    if (magic !== FORMAT_EXTENSION_MAGIC) throw corrupt(`${file.path}: the parallels format extension at offset ${at} has a wrong magic (0x${magic.toString(16)})`, file.path);
  }
  return { header, bat: uint32TableFromLittleEndian(bat) };
}

/** Where BAT entry `value` puts its cluster in the file, in bytes (past any real file when the entry is damaged). */
export function hostBytes(h: ParallelsHeader, value: number): number {
  return value * batMultiplier(h) * SECTOR;
}

/**
 * The end of the used data area in sectors, as qemu computes it at open: the data offset, or past the last
 * cluster the BAT points to when that lies further.
 */
export function dataEndSectors(h: ParallelsHeader, bat: Uint32Array): number {
  let end = dataOffsetBytes(h) / SECTOR;
  const mult = batMultiplier(h);
  forEachUsed(bat, 0, (_, value) => {
    if (value * mult >= end) end = value * mult + h.tracks;
  });
  return end;
}

/**
 * Why this image may not be written even though it is marked clean: damage a write would make worse (a
 * cluster past the end of the file, one shared by two entries or lying over the BAT), or a format extension
 * (dirty bitmaps) that new clusters could overwrite. Undefined when writing is safe.
 */
function writeRefusal(h: ParallelsHeader, bat: Uint32Array, fileSize: number, path: string): DiskError | undefined {
  if (h.extOff !== 0) {
    return new DiskError('EUNSUPPORTED', `${path}: the image has a Parallels format extension (dirty bitmaps) at offset ${h.extOff * SECTOR}; this build reads such images but does not write them, so that the extension stays intact`, path);
  }
  const start = batEntryOffset(bat.length); // the BAT's end (data_off may itself be damaged)
  const repair = 'repair it first (check -r all)';
  const shared = sharedEntries(bat)[0];
  let refusal: DiskError | undefined;
  forEachUsed(bat, 0, (i, value) => {
    if (refusal) return;
    const off = hostBytes(h, value);
    if (off > fileSize) refusal = corrupt(`${path}: BAT entry ${i} points past the end of the file; ${repair}`, path);
    else if (off < start) refusal = corrupt(`${path}: BAT entry ${i} points into the header and BAT; ${repair}`, path);
    else if (shared?.[0] === i) refusal = corrupt(`${path}: BAT entries ${shared[1]} and ${i} share one cluster; ${repair}`, path);
  });
  return refusal;
}

export class ParallelsDevice implements BlockDevice {
  readonly format = 'parallels' as const;
  readonly size: number;
  readonly clusterSize: number;
  /** Data area end in sectors: where the next cluster goes. */
  private dataEnd: number;
  /** Bytes from here to the end of the file read as zeros (the file's end when opened, then past our own allocations). */
  private zeroFrom: number;
  private noFlush = false;
  /** BAT entries [batDirtyFrom, batDirtyTo) changed in memory and not yet written (under skipFlushes only). */
  private batDirtyFrom = Infinity;
  private batDirtyTo = 0;
  private closed = false;
  /** The last run of unallocated entries run() found in the BAT; forgotten whenever the BAT changes. */
  private readonly runs: RunMemo;

  constructor(
    private readonly file: ImageFile,
    private readonly header: ParallelsHeader,
    private readonly bat: Uint32Array,
    readonly readOnly: boolean,
    /** Set when the image was marked in use: reads work, writes are refused until it is repaired. */
    private readonly unclean: boolean,
    readonly backing?: BlockDevice,
    /** The disk's size where something above the header decides it (a bundle's DiskDescriptor.xml). */
    size?: number,
  ) {
    this.size = size ?? header.nbSectors * SECTOR;
    this.clusterSize = header.tracks * SECTOR;
    this.runs = new RunMemo(bat);
    this.dataEnd = dataEndSectors(header, bat);
    this.zeroFrom = file.size;
  }

  get path(): string {
    return this.file.path;
  }

  /** Host byte offset of guest cluster `idx`, or 0 when it is not allocated (or lies beyond the BAT). */
  private host(idx: number): number {
    return idx < this.bat.length && this.bat[idx] !== 0 ? hostBytes(this.header, this.bat[idx]) : 0;
  }

  /** The run starting at guest `pos` (≤ `len` bytes) whose clusters are all unallocated or host-contiguous. */
  private run(pos: number, len: number): { host: number; n: number } {
    const cs = this.clusterSize;
    const idx = Math.floor(pos / cs);
    const within = pos - idx * cs;
    const first = this.host(idx);
    const last = Math.ceil((pos + len) / cs); // past the last cluster the range touches
    let end = idx + 1;
    if (first === 0) {
      // Without a loop over a sparse disk's BAT; clusters past its end are unallocated too.
      if (idx < this.bat.length) end = this.runs.endOf(idx, Math.min(last, this.bat.length), 0);
      if (end >= this.bat.length) end = last;
    } else while (end < last && this.host(end) === first + (end - idx) * cs) end++;
    return { host: first === 0 ? 0 : first + within, n: Math.min(len, Math.max(1, end - idx) * cs - within) };
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.size, offset, into.length, this.path);
    for (let done = 0; done < into.length; ) {
      const { host, n } = this.run(offset + done, into.length - done);
      const part = into.subarray(done, done + n);
      // A cluster past the end of the file reads as zeros, as qemu reads it.
      if (host) await this.file.readZeroPadded(host, part);
      else await readBelow(this.backing, offset + done, part);
      done += n;
    }
  }

  async status(offset: number, length: number): Promise<Extent> {
    checkRange(this.size, offset, length, this.path);
    const { host, n } = this.run(offset, length);
    return host ? { kind: 'data', length: n, hostOffset: host } : { kind: 'unallocated', length: n };
  }

  private writable(): void {
    if (this.unclean) throw new DiskError('EUNCLEAN', `${this.path}: the image was not closed cleanly; repair it first (check -r all)`, this.path);
    if (this.readOnly) throw readOnlyError(this.path);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.writable();
    checkRange(this.size, offset, data.length, this.path);
    for (let done = 0; done < data.length; ) {
      const pos = offset + done;
      const { host, n } = this.run(pos, data.length - done);
      if (host) await this.file.write(host, data.subarray(done, done + n));
      else await this.allocate(pos, data.subarray(done, done + n));
      done += n;
    }
  }

  /**
   * Allocates the clusters under guest [pos, pos + data.length) at the end of the data area, as qemu does,
   * writes the data into them, then points the BAT at them (data first: a crash leaves a leak, never a BAT
   * entry over garbage; the in-use mark makes the next open repair it either way). The parts of the clusters
   * the write does not cover get the backing image's data, or zeros.
   */
  private async allocate(pos: number, data: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const first = Math.floor(pos / cs);
    const count = Math.ceil((pos + data.length) / cs) - first;
    if (first + count > this.bat.length) throw corrupt(`${this.path}: guest offset ${pos} lies beyond what the image's BAT covers`, this.path);
    const mult = batMultiplier(this.header);
    // Extended images count clusters in the BAT: keep the data area cluster-aligned (qemu 7.2 rounds down).
    const start = Math.ceil(this.dataEnd / mult) * mult;
    if ((start + (count - 1) * this.header.tracks) / mult > MAX_BAT_VALUE) throw new DiskError('EIO', `${this.path}: the image is full: its BAT cannot address clusters past ${MAX_BAT_VALUE * mult * SECTOR} bytes`, this.path);
    const host = start * SECTOR;
    const within = pos - first * cs;
    if (!this.backing && host >= this.zeroFrom) {
      // Past everything ever written: the rest of the clusters already reads as zeros.
      await this.file.write(host + within, data);
    } else {
      const buf = new Uint8Array(count * cs);
      await readBelow(this.backing, first * cs, buf.subarray(0, Math.min(buf.length, this.size - first * cs)));
      buf.set(data, within);
      await this.file.write(host, buf);
    }
    const end = host + count * cs;
    if (this.file.size < end) await this.file.truncate(Math.max(end, Math.min(end + GROW_AHEAD, dataOffsetBytes(this.header) + this.bat.length * cs)));
    this.zeroFrom = Math.max(this.zeroFrom, end);
    const entries = new Uint8Array(count * 4);
    const v = new DataView(entries.buffer);
    this.runs.forget();
    for (let k = 0; k < count; k++) {
      const value = (start + k * this.header.tracks) / mult;
      this.bat[first + k] = value;
      v.setUint32(k * 4, value, true);
    }
    this.dataEnd = start + count * this.header.tracks;
    if (this.noFlush) {
      // Nothing will be flushed, so no order of writes is kept anyway (cache=unsafe): the entries go out with
      // the next flush or at close, as qemu writes its dirty BAT, instead of a 4-byte write per new cluster.
      this.batDirtyFrom = Math.min(this.batDirtyFrom, first);
      this.batDirtyTo = Math.max(this.batDirtyTo, first + count);
    } else await this.file.write(batEntryOffset(first), entries);
  }

  /** Writes the BAT entries allocate left in memory (under skipFlushes). */
  private async writeDirtyBat(): Promise<void> {
    if (this.batDirtyFrom >= this.batDirtyTo) return;
    const from = this.batDirtyFrom;
    const entries = new Uint8Array((this.batDirtyTo - from) * 4);
    const v = view(entries);
    for (let k = 0; k < entries.length / 4; k++) v.setUint32(k * 4, this.bat[from + k], true);
    this.batDirtyFrom = Infinity;
    this.batDirtyTo = 0;
    await this.file.write(batEntryOffset(from), entries);
  }

  /** Zeros in place where clusters are allocated; unallocated ranges already read as zeros unless a backing image shows through. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.size, offset, length, this.path);
    const zero = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; ) {
      const { host, n } = this.run(offset + done, Math.min(length - done, ZERO_CHUNK));
      if (host) await this.file.write(host, zero.subarray(0, n));
      else if (this.backing && offset + done < this.backing.size) await this.write(offset + done, zero.subarray(0, n));
      done += n;
    }
  }

  /**
   * Why discard refuses on this image, from its own facts (undefined: it can release space), asked before
   * anything is written (sparsify's dry run and its in-place run, services/sparsify/refusal.ts): an image marked
   * in use, one that may not be written (what opening it for writing checks; a writable device passed it), or
   * one over a backing image.
   */
  discardRefusal(): string | undefined {
    if (this.unclean) return 'the image is marked in use (it was not closed cleanly): repair it first (check -r all)';
    const cannotWrite = this.readOnly ? writeRefusal(this.header, this.bat, this.file.size, this.path) : undefined;
    if (cannotWrite) return cannotWrite.message.replace(`${this.path}: `, '');
    return this.overBackingRefusal();
  }

  private overBackingRefusal(): string | undefined {
    return this.backing ? "this Parallels image lies over a backing image: a released cluster would read the backing image's data, and the format has no way to mark one as zeros" : undefined;
  }

  async discard(offset: number, length: number): Promise<void> {
    this.writable();
    checkRange(this.size, offset, length, this.path);
    const refusal = this.overBackingRefusal();
    if (refusal !== undefined) throw new DiskError('EUNSUPPORTED', `${this.path}: ${refusal}`, this.path);
    const cs = this.clusterSize;
    const first = Math.ceil(offset / cs);
    const end = Math.min(this.bat.length, offset + length >= this.size ? Math.ceil(this.size / cs) : Math.floor((offset + length) / cs));
    const freed: number[] = [];
    try {
      for (let i = first; i < end; ) {
        if (this.bat[i] === 0) {
          i++;
          continue;
        }
        let j = i;
        while (j < end && this.bat[j] !== 0) {
          freed.push(this.host(j));
          this.bat[j] = 0;
          this.runs.forget();
          j++;
        }
        await this.file.write(batEntryOffset(i), new Uint8Array((j - i) * 4));
        i = j;
      }
      if (freed.length === 0) return;
      if (!this.noFlush) await this.file.sync();
      for (const at of freed) await this.file.punchHole(at, cs);
      this.dataEnd = dataEndSectors(this.header, this.bat);
    } catch (err) {
      throw toDiskError(err, this.path);
    }
  }

  skipFlushes(): void {
    this.noFlush = true;
    this.file.skipWriteback();
  }

  async flush(): Promise<void> {
    await this.writeDirtyBat();
    if (!this.noFlush && !this.readOnly) await this.file.sync();
  }

  /**
   * As qemu's close: the file ends where the data area ends, then the in-use mark is cleared — last, and
   * after a sync, so that a crash before it leaves an image still marked in use.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readOnly && !this.unclean) {
        await this.writeDirtyBat();
        if (this.file.size !== this.dataEnd * SECTOR) await this.file.truncate(this.dataEnd * SECTOR);
        if (!this.noFlush) await this.file.sync();
        await this.file.write(0, serializeHeader({ ...this.header, inUse: 0 }));
        if (!this.noFlush) await this.file.sync();
      }
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }
}

/**
 * Opens a Parallels image. For writing, the in-use mark is set (and synced) before anything else is written,
 * as qemu does. An image already marked in use opens read-only: its writes fail with EUNCLEAN until repaired.
 */
export async function openParallels(path: string, opts: OpenOptions, backing?: BlockDevice, size?: number): Promise<BlockDevice> {
  let file = await ImageFile.open(path, !opts.readOnly);
  try {
    let img = await readImage(file);
    const unclean = img.header.inUse === INUSE_MAGIC;
    if (!opts.readOnly && unclean) {
      // Read-only work opens read-only: this image will not be written.
      await file.close();
      file = await ImageFile.open(path, false);
      img = await readImage(file);
    }
    const readOnly = opts.readOnly || unclean;
    if (!readOnly) {
      const refusal = writeRefusal(img.header, img.bat, file.size, path);
      if (refusal) throw refusal;
      await file.write(0, serializeHeader({ ...img.header, inUse: INUSE_MAGIC }));
      await file.sync();
    }
    return new ParallelsDevice(file, img.header, img.bat, readOnly, unclean, backing, size);
  } catch (err) {
    await file.close();
    await backing?.close();
    throw toDiskError(err, path);
  }
}
